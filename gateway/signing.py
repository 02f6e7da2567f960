"""Signed commands: the platform signs each command with Ed25519, the edge verifies it.

What is signed is the command's JSON object without `sig`, canonicalised (keys sorted, no
spaces, UTF-8). The edge canonicalises the JSON it received, not its own parse of it, so two
pydantic versions can never make the two sides disagree about the bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_FIELD = "sig"


class SigningError(ValueError):
    """A key that cannot be used or a signature that does not verify; the message says which."""


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes signed for a command's JSON object: every field but `sig`, keys sorted."""
    unsigned = {k: v for k, v in obj.items() if k != SIG_FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Signer:
    """The platform's private key; signs command objects."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise SigningError(f"command key {path}: cannot read: {exc.strerror}") from None
        except ValueError:
            raise SigningError(
                f"command key {path}: not a PEM private key; make one with `gridwatch keys init`"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningError(f"command key {path}: not an Ed25519 key")
        return cls(key)

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object with its `sig` (base64 Ed25519 over `canonical(obj)`)."""
        sig = base64.b64encode(self._key.sign(canonical(obj))).decode()
        return {**obj, SIG_FIELD: sig}

    def public_key(self) -> str:
        return public_text(self._key.public_key())


class Verifier:
    """The platform's public key, as the edge holds it; checks command signatures."""

    def __init__(self, public: str) -> None:
        try:
            raw = base64.b64decode(public, validate=True)
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError):
            raise SigningError(
                "command_key is not an Ed25519 public key (44 characters of base64, as"
                " `gridwatch keys init` prints it)"
            ) from None

    def verify(self, payload: bytes) -> None:
        """Raise SigningError unless `payload` is a JSON object with a valid `sig`."""
        try:
            obj = json.loads(payload)
        except ValueError:
            raise SigningError("not JSON") from None
        sig = obj.get(SIG_FIELD) if isinstance(obj, dict) else None
        if not isinstance(sig, str):
            raise SigningError("unsigned")
        try:
            self._key.verify(base64.b64decode(sig, validate=True), canonical(obj))
        except (binascii.Error, InvalidSignature):
            raise SigningError("bad signature") from None


def public_text(key: Ed25519PublicKey) -> str:
    """A public key as a site file holds it: the 32 raw bytes, base64."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def init_key(path: Path) -> str:
    """Make the platform's key pair at `path` (0600) unless it is there; the public key."""
    if path.exists():
        return Signer.from_file(path).public_key()
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_text(key.public_key())
