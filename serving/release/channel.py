"""An edge node's side of the release store: channels and releases as central serves them, each file
verified by TUF against the root the node was installed with before the node uses it.

Central is reached over HTTP(S), or as a folder (a plain path or a ``file://`` URL: the store
mounted or copied onto the node). Anything TUF refuses is a :class:`VerificationError` naming what
failed and why; a central that cannot be reached is a :class:`ChannelUnreachable`, worth retrying.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from tuf.api import exceptions
from tuf.api.serialization import DeserializationError
from tuf.ngclient import FetcherInterface, Updater, Urllib3Fetcher

from ctscreen.errors import OutputError
from serving.release.store import CHUNK, RELEASE_RECORD, ReleaseError

# Most specific first: the first class an error is an instance of names the reason.
REFUSALS = (
    (exceptions.ExpiredMetadataError, "expired metadata (central has not re-signed it in time)"),
    (exceptions.UnsignedMetadataError, "bad signature (not signed by the keys the trusted root lists)"),
    (exceptions.BadVersionNumberError, "rollback (older metadata than this node has already seen)"),
    (exceptions.LengthOrHashMismatchError, "length or hash mismatch with the signed metadata"),
    (exceptions.DownloadLengthMismatchError, "longer than the signed metadata allows"),
    (DeserializationError, "unreadable metadata"),
    (exceptions.RepositoryError, "failed verification"),
)


class VerificationError(ReleaseError):
    """Central served something TUF refuses: a bad signature, hash or length, expired or older
    metadata, or a file its signed metadata lists but the store lacks."""

    def __init__(self, subject: str, reason: str):
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


class ChannelUnreachable(ReleaseError):
    """Central cannot be reached (refused, timed out, server error): back off and retry."""

    def __init__(self, subject: str, reason: str):
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


class ReleaseChannel:
    """Central's store as this node saw it at its last successful :meth:`refresh` (done on first
    use, and again after one that failed)."""

    def __init__(self, metadata_dir: Path, metadata_url: str, targets_url: str, trusted_root: bytes, cache_dir: Path):
        self.metadata_dir = Path(metadata_dir)
        self.metadata_url = _as_url(metadata_url)
        self.targets_url = _as_url(targets_url)
        self.trusted_root = trusted_root
        self.cache_dir = Path(cache_dir)
        self._fetcher = _Fetcher()
        self._updater: Updater | None = None

    def refresh(self) -> None:
        """Fetch and verify central's newest metadata; later reads use this state.

        An Updater refreshes once, so each refresh builds a new one; the trusted root is passed
        every time and newer roots central has signed are found from it (and cached under
        ``metadata_dir``, where the Updater keeps everything it has verified).
        """
        self._updater = None
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with _refusals("trusted root"):
            updater = Updater(str(self.metadata_dir), self.metadata_url, str(self.cache_dir), self.targets_url,
                              self._fetcher, bootstrap=self.trusted_root)
        with _refusals(f"metadata at {self.metadata_url}"):
            updater.refresh()
        self._updater = updater

    def channel_version(self, channel: str) -> int:
        """The release version ``channel`` points at."""
        path = self._download(f"channels/{channel}.json")
        if path is None:
            raise ReleaseError(f"no channel {channel!r} in the store at {self.metadata_url}")
        return json.loads(path.read_bytes())["version"]

    def release(self, version: int) -> dict:
        """Release ``version``'s record: its facts and its files (length and sha256 of each)."""
        return json.loads(self._release_record(version).read_bytes())

    def download_release(self, version: int, dest_dir: Path,
                         progress: Callable[[str, int, int], None] | None = None) -> Path:
        """Every file of release ``version`` under ``dest_dir`` (with its ``release.json``).

        Each file is verified into the cache first, and one already there and verified is not
        fetched again, so a download cut short resumes where it stopped. ``dest_dir`` appears only
        once every file has verified, whole; ``progress(path, files_done, files_total)`` follows
        each file.
        """
        dest_dir = Path(dest_dir)
        if dest_dir.exists() and any(dest_dir.iterdir()):
            raise OutputError(dest_dir, "is not empty; a release is assembled in a new folder")
        record_path = self._release_record(version)
        files = sorted(json.loads(record_path.read_bytes())["files"])
        cached = {}
        for done, relpath in enumerate(files, start=1):
            target = f"releases/{version}/{relpath}"
            cached[relpath] = self._download(target)
            if cached[relpath] is None:
                raise VerificationError(f"target {target}", "listed in release.json but not in the signed targets")
            if progress is not None:
                progress(relpath, done, len(files))
        cached[RELEASE_RECORD] = record_path
        _assemble(cached, dest_dir)
        return dest_dir

    def _release_record(self, version: int) -> Path:
        path = self._download(f"releases/{version}/{RELEASE_RECORD}")
        if path is None:
            raise ReleaseError(f"no release {version} in the store at {self.metadata_url}")
        return path

    def _download(self, target: str) -> Path | None:
        """Target ``target``'s verified file in the cache (fetched only if not there already), or
        None when the signed targets have no such target."""
        if self._updater is None:
            self.refresh()
        with _refusals(f"target {target}"):
            info = self._updater.get_targetinfo(target)
            if info is None:
                return None
            return Path(self._updater.find_cached_target(info) or self._updater.download_target(info))


class _Fetcher(FetcherInterface):
    """HTTP(S) through urllib3; ``file://`` URLs from the local disk. There a missing file in a
    folder that exists reads as a 404 (which is how TUF learns there is no newer root); a missing
    folder, like a store not mounted, as central out of reach."""

    def __init__(self):
        self._http = Urllib3Fetcher()

    def _fetch(self, url: str) -> Iterator[bytes]:
        if urlparse(url).scheme != "file":
            return self._http.fetch(url)
        path = url2pathname(urlparse(url).path)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            if not os.path.isdir(os.path.dirname(path)):
                raise
            raise exceptions.DownloadHTTPError(f"{path} not found", 404) from None
        return _chunks(handle)


def _chunks(handle) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _as_url(location: str | Path) -> str:
    """URLs as given; a plain path as a ``file://`` URL."""
    location = str(location)
    return location if "://" in location else Path(location).resolve().as_uri()


@contextmanager
def _refusals(subject: str):
    """TUF's and the fetcher's errors as :class:`VerificationError` or :class:`ChannelUnreachable`."""
    try:
        yield
    except exceptions.DownloadHTTPError as error:
        if error.status_code in (403, 404):
            raise VerificationError(subject, f"missing from the store ({error})") from error
        raise ChannelUnreachable(subject, f"central answered: {error}") from error
    except (exceptions.RepositoryError, exceptions.DownloadLengthMismatchError) as error:
        label = next(label for kind, label in REFUSALS if isinstance(error, kind))
        raise VerificationError(subject, f"refused: {label}: {error}") from error
    except exceptions.DownloadError as error:  # refused, timed out (urllib3 counts both as timeouts)
        raise ChannelUnreachable(subject, f"cannot reach central: {_innermost(error)}") from error


def _innermost(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _assemble(files: dict[str, Path], dest_dir: Path) -> None:
    """Copy ``files`` (relative path -> cached file) into a staging folder beside ``dest_dir``, then
    rename it to ``dest_dir`` in one step: the release appears whole or not at all."""
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest_dir.parent, prefix=f".{dest_dir.name}.partial-"))
    try:
        staging.chmod(0o755)  # mkdtemp's folder is owner-only; the model server may run as another user
        for relpath, source in files.items():
            (staging / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / relpath)
        os.replace(staging, dest_dir)  # onto nothing, or onto the empty folder checked above
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
