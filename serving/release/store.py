"""The central release store: a TUF repository on disk, served to edge nodes as plain static files.

Every model file, every release's facts and every channel pointer is a signed TUF target, so a node
trusts nothing it cannot check against the root it was installed with. Layout::

    store.json                              expiry settings, kept for later writes
    .lock                                   held by the one writer at a time
    metadata/1.root.json, root.json         the root (1.root.json is what nodes are installed with)
    metadata/<N>.targets.json               every target: release files, release.json, channels
    metadata/<N>.snapshot.json              the targets version
    metadata/timestamp.json                 the snapshot version; short-lived, re-signed by central
    targets/releases/<v>/[<dir>/]<sha256>.<name>  release files, named by content (consistent snapshot)
    targets/channels/<sha256>.<channel>.json

Versioned files are never rewritten once referenced. A change writes new target files, then
``N.targets.json``, then ``N.snapshot.json``, and replaces ``timestamp.json`` last, each through a
synced temporary file, so a reader or a crash mid-write sees the previous state whole. Nodes are
installed with ``metadata/1.root.json``; private keys live outside the store, which is served.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Signed, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from ctscreen.errors import CTScreenError, InputError, OutputError
from ctscreen.locking import exclusive

ROLES = ("root", "targets", "snapshot", "timestamp")
ROOT_EXPIRY = timedelta(days=365)
# Targets and snapshot are re-signed by every write; the root's year bounds trust anyway, so the
# timestamp is the only thing central must re-sign on a schedule.
DEFAULT_TARGETS_EXPIRY = timedelta(days=365)
DEFAULT_SNAPSHOT_EXPIRY = timedelta(days=365)
DEFAULT_TIMESTAMP_EXPIRY = timedelta(days=1)
CONFIG = "store.json"
LOCK = ".lock"
RELEASE_RECORD = "release.json"
RECORD_PATH = re.compile(rf"releases/\d+/{re.escape(RELEASE_RECORD)}")
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_-]+")
FILE_NAME_PART = re.compile(r"[A-Za-z0-9._-]+")  # target paths go into URLs unquoted
CHUNK = 1 << 20


class ReleaseError(CTScreenError):
    """A release request the store or a node refuses: a version that exists, a channel that does not."""


def generate_keys(keys_dir: Path) -> Path:
    """One Ed25519 key per top-level role: ``<role>.key`` (PEM, owner-only) and ``<role>.pub``.

    Existing keys are never overwritten: losing a key that a store's root lists locks that store.
    """
    keys_dir = Path(keys_dir)
    for role in ROLES:
        for path in (keys_dir / f"{role}.key", keys_dir / f"{role}.pub"):
            if path.exists():
                raise ReleaseError(f"{path}: a key is already there; keys are never overwritten")
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for role in ROLES:
        signer = CryptoSigner.generate_ed25519()
        private = signer.private_bytes
        public = load_pem_private_key(private, password=None).public_key()
        fd = os.open(keys_dir / f"{role}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(private)
        (keys_dir / f"{role}.pub").write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return keys_dir


def load_signer(keys_dir: Path, role: str) -> CryptoSigner:
    """The signer in ``keys_dir/<role>.key``."""
    path = Path(keys_dir) / f"{role}.key"
    try:
        private = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise InputError(path, "no such key; make the store's keys with generate_keys") from None
    except (ValueError, TypeError) as error:
        raise InputError(path, f"not an unencrypted PEM private key ({error})") from None
    return CryptoSigner(private)


@dataclass
class _State:
    """The store as served: the chain timestamp -> snapshot -> targets, and the root."""

    root: Metadata[Root]
    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot]
    timestamp: Metadata[Timestamp]


class ReleaseStore:
    """Releases and channels in one TUF repository; ``keys_dir`` is needed only to change it."""

    def __init__(self, store_dir: Path, keys_dir: Path | None, expiry: dict[str, timedelta]):
        self.store_dir = Path(store_dir)
        self.keys_dir = None if keys_dir is None else Path(keys_dir)
        self.expiry = expiry
        if self.keys_dir is not None and self.keys_dir.resolve().is_relative_to(self.store_dir.resolve()):
            raise InputError(self.keys_dir, "is inside the store, which is served to nodes; keep keys elsewhere")

    @property
    def metadata_dir(self) -> Path:
        return self.store_dir / "metadata"

    @property
    def targets_dir(self) -> Path:
        return self.store_dir / "targets"

    @property
    def root_path(self) -> Path:
        """The root nodes are installed with: every later state must verify against it."""
        return self.metadata_dir / "1.root.json"

    @classmethod
    def create(cls, store_dir: Path, keys_dir: Path, timestamp_expiry: timedelta = DEFAULT_TIMESTAMP_EXPIRY,
               snapshot_expiry: timedelta = DEFAULT_SNAPSHOT_EXPIRY,
               targets_expiry: timedelta = DEFAULT_TARGETS_EXPIRY) -> ReleaseStore:
        """A new store with no releases, its root (version 1) listing one key per role."""
        store_dir = Path(store_dir)
        if store_dir.exists() and any(store_dir.iterdir()):
            raise OutputError(store_dir, "is not empty; a release store is created in a new folder")
        expiry = {"targets": targets_expiry, "snapshot": snapshot_expiry, "timestamp": timestamp_expiry}
        store = cls(store_dir, keys_dir, expiry)
        signers = {role: load_signer(keys_dir, role) for role in ROLES}
        root = Root(expires=datetime.now(timezone.utc) + ROOT_EXPIRY, consistent_snapshot=True)
        for role, signer in signers.items():
            root.add_key(signer.public_key, role)
        root_bytes = store._signed_bytes(root, root)
        store.metadata_dir.mkdir(parents=True)
        _write_file(store_dir / CONFIG, json.dumps({"expiry_seconds": {
            role: period.total_seconds() for role, period in expiry.items()}}, indent=2).encode())
        _write_file(store.root_path, root_bytes)
        _write_file(store.metadata_dir / "root.json", root_bytes)
        with store._locked():
            store._serve(root, Targets(version=1), snapshot_version=1, timestamp_version=1)
        return store

    @classmethod
    def open(cls, store_dir: Path, keys_dir: Path | None = None) -> ReleaseStore:
        store_dir = Path(store_dir)
        try:
            config = json.loads((store_dir / CONFIG).read_text())
        except FileNotFoundError:
            raise InputError(store_dir, f"not a release store (no {CONFIG})") from None
        expiry = {role: timedelta(seconds=seconds) for role, seconds in config["expiry_seconds"].items()}
        return cls(store_dir, keys_dir, expiry)

    def add_release(self, version: int, files_dir: Path, facts: dict) -> dict:
        """Every file under ``files_dir`` as target ``releases/<version>/<path>``, and the release's
        record (``releases/<version>/release.json``: facts and files) with the facts also in its
        custom field (numbers with a fraction there as decimal strings: TUF signs canonical JSON,
        which has no floats; the record keeps them as given). Versions are immutable.
        """
        _check_version(version)
        files = _release_files(Path(files_dir))
        facts = {**facts}
        facts.setdefault("version", version)
        facts.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if facts["version"] != version:
            raise ReleaseError(f"facts say version {facts['version']} but the release is version {version}")
        with self._locked():
            state = self._read_state()
            targets = state.targets.signed
            if _record_path(version) in targets.targets:
                raise ReleaseError(f"release {version} already exists; releases are immutable, use a new version")
            listed = {}
            for relpath, source in files:
                with open(source, "rb") as content:
                    target = self._store_target(f"releases/{version}/{relpath}", content)
                targets.targets[target.path] = target
                listed[relpath] = {"length": target.length, "sha256": target.hashes["sha256"]}
            record = {"version": version, "facts": facts, "files": listed}
            target = self._store_target(_record_path(version), io.BytesIO(_json_bytes(record)),
                                        custom=_signable(facts))
            targets.targets[target.path] = target
            self._commit(state)
        return record

    def publish(self, channel: str, version: int) -> dict:
        """Point ``channel`` at release ``version``; the version it pointed at goes on its history."""
        _check_channel_name(channel)
        with self._locked():
            state = self._read_state()
            if _record_path(version) not in state.targets.signed.targets:
                raise ReleaseError(f"no release {version} in {self.store_dir}; add it before publishing")
            current = self._channel_record(state.targets.signed, channel)
            if current is not None and current["version"] == version:
                return current
            history = [] if current is None else [*current["history"], current["version"]]
            record = {"channel": channel, "version": version, "history": history}
            self._set_channel(state, record)
        return record

    def rollback(self, channel: str) -> int:
        """Point ``channel`` back at the version it pointed at before; returns that version."""
        _check_channel_name(channel)
        with self._locked():
            state = self._read_state()
            current = self._channel_record(state.targets.signed, channel)
            if current is None:
                raise ReleaseError(f"no channel {channel!r} in {self.store_dir}")
            if not current["history"]:
                raise ReleaseError(f"channel {channel!r} has no earlier version to roll back to")
            *history, previous = current["history"]
            self._set_channel(state, {"channel": channel, "version": previous, "history": history})
        return previous

    def refresh_timestamp(self) -> None:
        """Re-sign the timestamp with a fresh expiry, targets untouched: nodes refuse an expired one,
        so central runs this well within the timestamp's expiry."""
        with self._locked():
            state = self._read_state()
            timestamp = state.timestamp.signed
            timestamp.version += 1
            timestamp.expires = datetime.now(timezone.utc) + self.expiry["timestamp"]
            _write_file(self.metadata_dir / "timestamp.json", self._signed_bytes(timestamp, state.root.signed))

    def releases(self) -> list[dict]:
        targets = self._read_state().targets.signed
        records = [json.loads(self._target_content(target)) for path, target in targets.targets.items()
                   if RECORD_PATH.fullmatch(path)]
        return sorted(records, key=lambda record: record["version"])

    def channels(self) -> dict[str, int]:
        targets = self._read_state().targets.signed
        return {path.removeprefix("channels/").removesuffix(".json"): target.custom["version"]
                for path, target in sorted(targets.targets.items()) if path.startswith("channels/")}

    def describe(self) -> dict:
        """Everything ``release list --json`` shows."""
        state = self._read_state()
        return {
            "releases": self.releases(),
            "channels": self.channels(),
            "metadata_versions": {role: getattr(state, role).signed.version for role in ROLES},
            "timestamp_expires": state.timestamp.signed.expires.isoformat(),
        }

    def _read_state(self) -> _State:
        try:
            timestamp = Metadata[Timestamp].from_file(str(self.metadata_dir / "timestamp.json"))
            snapshot = Metadata[Snapshot].from_file(
                str(self.metadata_dir / f"{timestamp.signed.snapshot_meta.version}.snapshot.json"))
            targets = Metadata[Targets].from_file(
                str(self.metadata_dir / f"{snapshot.signed.meta['targets.json'].version}.targets.json"))
            root = Metadata[Root].from_file(str(self.metadata_dir / "root.json"))
        except FileNotFoundError as error:
            raise InputError(error.filename, "missing from the release store") from None
        return _State(root, targets, snapshot, timestamp)

    def _locked(self):
        """Exclusive use of the store for one writer; others wait."""
        return exclusive(self.store_dir / LOCK)

    def _commit(self, state: _State) -> None:
        """Serve the changed ``state.targets`` as the next version of targets, snapshot and timestamp."""
        state.targets.signed.version += 1
        self._serve(state.root.signed, state.targets.signed, snapshot_version=state.snapshot.signed.version + 1,
                    timestamp_version=state.timestamp.signed.version + 1)

    def _serve(self, root: Root, targets: Targets, snapshot_version: int, timestamp_version: int) -> None:
        """Sign and write ``targets``, then the snapshot naming it, then the timestamp naming that."""
        now = datetime.now(timezone.utc)
        targets.expires = now + self.expiry["targets"]
        snapshot = Snapshot(version=snapshot_version, expires=now + self.expiry["snapshot"],
                            meta={"targets.json": MetaFile(targets.version)})
        timestamp = Timestamp(version=timestamp_version, expires=now + self.expiry["timestamp"],
                              snapshot_meta=MetaFile(snapshot.version))
        _write_file(self.metadata_dir / f"{targets.version}.targets.json", self._signed_bytes(targets, root))
        _write_file(self.metadata_dir / f"{snapshot.version}.snapshot.json", self._signed_bytes(snapshot, root))
        _write_file(self.metadata_dir / "timestamp.json", self._signed_bytes(timestamp, root))

    def _signed_bytes(self, signed: Signed, root: Root) -> bytes:
        """``signed`` as metadata signed with this store's key for its role, checked against the root."""
        if self.keys_dir is None:
            raise ReleaseError(f"{self.store_dir} was opened without keys; changing it needs the store's keys")
        role = signed.type
        metadata = Metadata(signed)
        key = self.keys_dir / f"{role}.key"
        metadata.sign(load_signer(self.keys_dir, role))
        try:
            root.verify_delegate(role, metadata.signed_bytes, metadata.signatures)
        except UnsignedMetadataError:
            raise ReleaseError(f"{key} is not the {role} key this store's root trusts") from None
        return metadata.to_bytes(JSONSerializer(compact=False))

    def _store_target(self, path: str, content: BinaryIO, custom: dict | None = None) -> TargetFile:
        """Write ``content`` as target ``path`` under its content-hashed name; returns its TargetFile."""
        directory, _, name = (self.targets_dir / path).as_posix().rpartition("/")
        staged, length, sha256 = _stage(Path(directory), content)
        _install(staged, Path(directory) / f"{sha256}.{name}")
        return TargetFile(length, {"sha256": sha256}, path,
                          unrecognized_fields=None if custom is None else {"custom": custom})

    def _target_content(self, target: TargetFile) -> bytes:
        directory, _, name = target.path.rpartition("/")
        return (self.targets_dir / directory / f"{target.hashes['sha256']}.{name}").read_bytes()

    def _channel_record(self, targets: Targets, channel: str) -> dict | None:
        target = targets.targets.get(_channel_path(channel))
        return None if target is None else json.loads(self._target_content(target))

    def _set_channel(self, state: _State, record: dict) -> None:
        target = self._store_target(_channel_path(record["channel"]), io.BytesIO(_json_bytes(record)),
                                    custom={"version": record["version"]})
        state.targets.signed.targets[target.path] = target
        self._commit(state)


def _record_path(version: int) -> str:
    return f"releases/{version}/{RELEASE_RECORD}"


def _channel_path(channel: str) -> str:
    return f"channels/{channel}.json"


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ReleaseError(f"release version must be a positive integer, not {version!r}")


def _check_channel_name(channel: str) -> None:
    if not CHANNEL_NAME.fullmatch(channel):
        raise ReleaseError(f"channel name {channel!r} must be letters, digits, '-' and '_' only")


def _release_files(files_dir: Path) -> list[tuple[str, Path]]:
    """(relative path, file) for every file under ``files_dir``, each path safe to serve as a URL."""
    if not files_dir.is_dir():
        raise InputError(files_dir, "not a folder of release files")
    files = sorted((path.relative_to(files_dir).as_posix(), path) for path in files_dir.rglob("*") if path.is_file())
    if not files:
        raise InputError(files_dir, "has no files to release")
    for relpath, path in files:
        if relpath == RELEASE_RECORD:
            raise InputError(path, f"{RELEASE_RECORD} is the name of the release's own record; rename the file")
        if not all(FILE_NAME_PART.fullmatch(part) for part in relpath.split("/")):
            raise InputError(path, "file and folder names must be letters, digits, '.', '-' and '_' only")
    return files


def _signable(value):
    """``value`` with its floats as decimal strings, so canonical JSON can sign it."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {key: _signable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_signable(item) for item in value]
    return value


def _json_bytes(record: dict) -> bytes:
    return json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"


def _write_file(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole, or what it held before: never a partial write."""
    staged, _, _ = _stage(path.parent, io.BytesIO(data))
    _install(staged, path)


def _stage(directory: Path, content: BinaryIO) -> tuple[Path, int, str]:
    """``content`` in a synced temporary file in ``directory``: its path, length and sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    digest, length = hashlib.sha256(), 0
    fd, name = tempfile.mkstemp(dir=directory, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)  # served to nodes by whatever web server reads the store
            while chunk := content.read(CHUNK):
                digest.update(chunk)
                length += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name), length, digest.hexdigest()


def _install(staged: Path, path: Path) -> None:
    """Move a staged file to ``path`` in one step, and make the move itself durable."""
    try:
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
