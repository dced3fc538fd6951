"""Where a Triton model repository lives, as Triton itself accepts it: a local path, or an S3 URL
(``s3://bucket/prefix``, or ``s3://host:port/bucket/prefix`` for an S3-compatible store other than
AWS; credentials and region as boto3 finds them).

A release is always written into a local folder first — the repository itself, or for S3 a local
mirror under ``$CTSCREEN_HOME/s3-mirror`` — and then put in place: renamed for a path, uploaded for
S3, the networks first, the entry model that calls them next, the configurations last.
"""

from __future__ import annotations

import json
from pathlib import Path

from ctscreen.home import home
from ctscreen.storage_url import is_s3_url, parse_s3_url
from serving.triton.config import SCREENING

FACTS = "facts.json"


def versions(repository: Path) -> list[int]:
    """The release versions a local repository holds (those of the entry model)."""
    folder = Path(repository) / SCREENING
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []


def release_facts(repository: Path, version: int) -> dict:
    return json.loads((Path(repository) / SCREENING / str(version) / FACTS).read_text())


class LocalRepository:
    def __init__(self, root: str | Path):
        self.local = Path(root)
        self.url = str(self.local)

    def versions(self) -> list[int]:
        return versions(self.local)

    def facts(self, version: int) -> dict:
        return release_facts(self.local, version)

    def put_version(self, staging: Path, version: int, configs: dict[str, str]) -> None:
        """The release's models (``configs``' keys) moved into place, then their configurations."""
        for model in configs:
            (self.local / model).mkdir(parents=True, exist_ok=True)
            (staging / model / str(version)).rename(self.local / model / str(version))
        for model in configs:
            partial = self.local / model / "config.pbtxt.partial"
            partial.write_text(configs[model])
            partial.replace(self.local / model / "config.pbtxt")


class S3Repository:
    def __init__(self, url: str):
        self.location = parse_s3_url(url)
        self.url, self.bucket, self.prefix = url, self.location.bucket, self.location.prefix
        self.client = self.location.client()
        self.local = home() / "s3-mirror" / self.bucket / self.prefix

    def _key(self, relpath: str) -> str:
        return self.location.key(relpath)

    def versions(self) -> list[int]:
        found, token = [], None
        while True:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(f"{SCREENING}/"), Delimiter="/",
                                               **({"ContinuationToken": token} if token else {}))
            found += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return sorted(int(name) for name in found if name.isdigit())

    def facts(self, version: int) -> dict:
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=self._key(f"{SCREENING}/{version}/{FACTS}"))["Body"].read())

    def put_version(self, staging: Path, version: int, configs: dict[str, str]) -> None:
        for model in configs:
            folder = staging / model / str(version)
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                self.client.upload_file(str(path), self.bucket, self._key(path.relative_to(staging).as_posix()))
        for model in configs:
            self.client.put_object(Bucket=self.bucket, Key=self._key(f"{model}/config.pbtxt"), Body=configs[model].encode())
        LocalRepository(self.local).put_version(staging, version, configs)  # the mirror: what a release store publishes


def open_repository(location: str | Path) -> LocalRepository | S3Repository:
    return S3Repository(location) if is_s3_url(location) else LocalRepository(location)


