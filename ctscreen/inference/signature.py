"""The bundle's OpenSSF model signature (``model-signing``, key-based, elliptic curve P-256), made
when the bundle is registered and checked wherever it is used after: the release build refuses a
bundle that does not verify, and so does every edge node. The signature lives in the bundle as
``model.sig`` and covers every other file in it."""

from __future__ import annotations

import os
from pathlib import Path

from ctscreen.errors import CTScreenError, InputError

SIGNATURE = "model.sig"


class SignatureError(CTScreenError):
    """A bundle whose model signature is missing or does not verify against the trusted key."""


def generate_signing_key(private_key: str | Path) -> Path:
    """A new P-256 key pair: ``private_key`` (PEM, mode 0600) and its public half beside it (``.pub``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private_key = Path(private_key)
    public_key = public_key_of(private_key)
    for path in (private_key, public_key):
        if path.exists():
            raise InputError(path, "a key is already there; refusing to replace it")
    key = ec.generate_private_key(ec.SECP256R1())
    private_key.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public_key.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_key


def public_key_of(private_key: str | Path) -> Path:
    return Path(private_key).with_suffix(".pub")


def sign_bundle(bundle_dir: str | Path, private_key: str | Path) -> Path:
    from model_signing import hashing, signing

    bundle_dir = Path(bundle_dir)
    if not Path(private_key).is_file():
        raise InputError(private_key, "no signing key: make one with `ctscreen release keygen`")
    config = signing.Config().use_elliptic_key_signer(private_key=str(private_key))
    config.set_hashing_config(hashing.Config().set_ignored_paths(paths=[SIGNATURE]))
    config.sign(bundle_dir, bundle_dir / SIGNATURE)
    return bundle_dir / SIGNATURE


def verify_bundle(bundle_dir: str | Path, public_key: str | Path) -> None:
    """Raises ``SignatureError`` unless every file of the bundle is exactly what was signed with the key."""
    from model_signing import verifying

    bundle_dir = Path(bundle_dir)
    signature = bundle_dir / SIGNATURE
    if not signature.is_file():
        raise SignatureError(f"{bundle_dir}: the bundle carries no model signature ({SIGNATURE})")
    if not Path(public_key).is_file():
        raise InputError(public_key, "no public key to verify the bundle's signature with")
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=str(public_key)).verify(bundle_dir, signature)
    except ValueError as error:
        raise SignatureError(f"{bundle_dir}: model signature does not verify ({error})") from None
