"""A downloaded release checked once more before it goes near Triton, and installed into the node's
Triton repository.

TUF has verified every file against central's signed metadata; here the node also checks the
bundle's own model signature (made at registration, so central's release tooling cannot swap the
networks unseen), that the graphs Triton will run are the bundle's, byte for byte, and that nothing
changed on the node's disk since the download."""

from __future__ import annotations

import shutil
from pathlib import Path

from ctscreen.digests import file_sha256
from ctscreen.inference.signature import SignatureError, verify_bundle
from serving.release.channel import VerificationError
from serving.triton.config import NETWORK_FILES, SCREENING


def check_files(folder: Path, record: dict) -> None:
    """Every file the release lists is in ``folder`` with its signed length and hash."""
    for relpath, expected in record["files"].items():
        path = folder / relpath
        if not path.is_file():
            raise VerificationError(f"release {record['version']}", f"{relpath} is missing")
        if path.stat().st_size != expected["length"] or file_sha256(path) != expected["sha256"]:
            raise VerificationError(f"release {record['version']}", f"{relpath} differs from its signed length or hash")


def verify_release(folder: Path, record: dict, public_key: Path) -> None:
    version = record["version"]
    check_files(folder, record)
    bundle = folder / SCREENING / str(version) / "bundle"
    try:
        verify_bundle(bundle, public_key)
    except SignatureError as error:
        raise VerificationError(f"release {version}", f"the bundle's model signature does not verify: {error}") from None
    released = released_models(record)
    for model, file in NETWORK_FILES.items():  # the release serves exactly the networks its signed bundle has
        in_bundle = (bundle / file).is_file()
        served = folder / model / str(version) / "model.onnx"
        if in_bundle != (model in released) or (in_bundle and (not served.is_file() or file_sha256(served) != file_sha256(bundle / file))):
            raise VerificationError(f"release {version}", f"{model}'s model.onnx is not the signed bundle's {file}")


def released_models(record: dict) -> list[str]:
    """The Triton models a release's signed record lists files of."""
    return sorted({relpath.split("/", 1)[0] for relpath in record["files"]})


def install_release(folder: Path, record: dict, repository: Path) -> None:
    """Each model's version folder into ``repository`` (a partial copy renamed into place); a version
    already installed whole is kept, a partial or altered one replaced."""
    version = str(record["version"])
    for model in released_models(record):
        target = repository / model / version
        if target.is_dir() and _matches(target, folder / model / version, record, model):
            continue
        partial = repository / model / f".{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(folder / model / version, partial)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)


def _matches(installed: Path, source: Path, record: dict, model: str) -> bool:
    prefix = f"{model}/{record['version']}/"
    listed = {k.removeprefix(prefix): v for k, v in record["files"].items() if k.startswith(prefix)}
    present = {p.relative_to(installed).as_posix() for p in installed.rglob("*") if p.is_file()}
    return present == set(listed) and all(file_sha256(installed / name) == entry["sha256"] for name, entry in listed.items())
