"""S3 locations as Triton and the intake write them: ``s3://bucket/prefix``, or
``s3://host:port/bucket/prefix`` for an S3-compatible store other than AWS (plain HTTP, as Triton
reads it). Credentials and region are boto3's to find (environment, profile, instance role), never
the URL's: a URL ends up in logs, error messages and the results store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ctscreen.errors import InputError

SCHEME = "s3://"
FORM = "an S3 location is s3://bucket/prefix or s3://host:port/bucket/prefix"


def is_s3_url(location: str | Path) -> bool:
    return str(location).startswith(SCHEME)


@dataclass(frozen=True)
class S3Location:
    url: str
    endpoint: str | None  # http://host:port, or None for AWS
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    def key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint) if self.endpoint else boto3.client("s3")


def parse_s3_url(url: str) -> S3Location:
    parts = url.removeprefix(SCHEME).strip("/").split("/")
    if parts and "@" in parts[0]:
        raise InputError(url, f"{FORM}; credentials do not belong in the URL (boto3 reads them from the environment)")
    endpoint = f"http://{parts.pop(0)}" if parts and ":" in parts[0] else None
    if not parts or not parts[0]:
        raise InputError(url, FORM)
    return S3Location(url, endpoint, parts[0], "/".join(p for p in parts[1:] if p))
