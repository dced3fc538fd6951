"""Who may read the site's pages, API and viewer: users with passwords (HTTP Basic, for people
in a browser) and named API tokens (Bearer, for scripts and Prometheus). Only salted hashes are
stored (scrypt for passwords, SHA-256 for long random tokens); nothing secret is ever logged.

Because browsers send Basic credentials to any page that asks, requests that change something
must come from the site's own pages (their Origin, where a browser sends one, is checked)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import yaml

from ctscreen.errors import InputError

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
OPEN_PATHS = ("/healthz",)  # liveness, for the orchestrator; says nothing about any study
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _read(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {}
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(path, f"not a YAML mapping of name: hash ({error})") from None
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise InputError(path, "not a YAML mapping of name: hash")
    return {str(k): v for k, v in document.items()}


def _write(path: Path, entries: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.touch(mode=0o600)
    partial.write_text(yaml.safe_dump(entries, sort_keys=True))
    partial.replace(path)


def set_password(users_file: Path, name: str, password: str) -> None:
    if len(password) < 12:
        raise InputError(users_file, "passwords must be at least 12 characters")
    _write(users_file, {**_read(users_file), name: hash_password(password)})


def new_token(tokens_file: Path, name: str) -> str:
    """A new token for ``name`` (replacing any earlier one); shown once, only its hash is kept."""
    token = secrets.token_urlsafe(32)
    _write(tokens_file, {**_read(tokens_file), name: hash_token(token)})
    return token


class Authenticator:
    def __init__(self, users_file: Path | None, tokens_file: Path | None):
        self.users_file, self.tokens_file = users_file, tokens_file

    def who(self, authorization: str | None) -> str | None:
        """The user or token name the Authorization header proves, or None. Files are read each
        time, so a password changed or a token revoked takes effect at once."""
        if not authorization:
            return None
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            stored = _read(self.users_file).get(name)
            return name if stored and check_password(password, stored) else None
        if scheme.lower() == "bearer":
            presented = hash_token(credentials.strip())
            for name, stored in _read(self.tokens_file).items():
                if hmac.compare_digest(presented, stored):
                    return f"token:{name}"
        return None


class AuthenticationMiddleware:
    """Pure ASGI, so the viewer proxy's streamed answers pass through untouched."""

    def __init__(self, app, authenticator: Authenticator, realm: str):
        self.app, self.authenticator, self.realm = app, authenticator, realm

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        user = self.authenticator.who(headers.get("authorization"))
        if user is None:
            return await _answer(send, 401, b"authentication required\n",
                                 [(b"www-authenticate", f'Basic realm="{self.realm}", charset="UTF-8"'.encode())])
        if scope["method"] not in SAFE_METHODS and "origin" in headers and headers["origin"] != _origin(scope, headers):
            return await _answer(send, 403, b"cross-site request refused\n", [])
        scope = {**scope, "user": user}
        return await self.app(scope, receive, send)


def _origin(scope, headers) -> str:
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"


async def _answer(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
