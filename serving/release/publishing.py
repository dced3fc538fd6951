"""Where central makes releases: a built Triton repository version added to the release store as a
release, and the store's keys. Private keys stay here; nodes get the root metadata and the bundle
key's public half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ctscreen.inference.signature import generate_signing_key
from serving.release.store import ReleaseError, ReleaseStore, generate_keys
from serving.triton.repository import BuiltRelease


def keygen(release_keys: Path, signing_key: Path) -> dict:
    """The store's four role keys and the bundle-signing key, each made only where none exists yet."""
    made = {}
    if not any(release_keys.glob("*.key")):
        generate_keys(release_keys)
        made["release_keys"] = str(release_keys)
    if not signing_key.exists():
        generate_signing_key(signing_key)
        made["bundle_signing_key"] = str(signing_key)
    return {"made": made, "release_keys": str(release_keys), "bundle_signing_key": str(signing_key),
            "bundle_public_key": str(signing_key.with_suffix(".pub"))}


def add_to_store(built: BuiltRelease, store: ReleaseStore) -> dict:
    """The release's files (hard links, not copies) as release ``built.version`` of the store; a
    release already there is returned as it is when it holds the same bundle."""
    known = next((r for r in store.releases() if r["version"] == built.version), None)
    if known is not None:
        if known["facts"].get("bundle_sha256") != built.facts["bundle_sha256"]:
            raise ReleaseError(f"release {built.version} in {store.store_dir} holds another bundle than {built.repository}'s version "
                               f"{built.version}: the store and the repository disagree")
        return known
    with tempfile.TemporaryDirectory(dir=built.repository.parent, prefix=".release-") as scratch:
        for relpath, source in built.files().items():
            target = Path(scratch) / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:  # another file system
                target.write_bytes(source.read_bytes())
        return store.add_release(built.version, Path(scratch), built.facts)

