"""Node secrets: made here, shown once, stored as a Mosquitto hash and sealed for the broker.

The broker's dynamic-security plugin takes a plain password when an account is created or its
password set, so whoever reconciles the broker must be able to recover each node's secret. The
secret is therefore also sealed (X25519, HKDF-SHA256, ChaCha20-Poly1305) to a key pair whose
private half only the broker reconcile (the ingest leader) holds; the API and the command line,
which issue secrets, have only the public half from `platform_keys`. A copy of the database
alone reveals no secret.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.broker import hash_password, new_secret

Conn = psycopg.Connection[Any]

SEAL_KEY_NAME = "node-secret-seal"
_INFO = b"gridwatch node secret v1"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class SealError(ValueError):
    """A sealed secret that cannot be opened, or no sealing key; the message says which."""


def new_seal_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(*_RAW)


def save_seal_key(key: X25519PrivateKey, path: Path) -> None:
    """Write the private key (PEM, 0600) where the ingest's settings point."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def init_seal_key(path: Path) -> X25519PrivateKey:
    """The seal key at `path`, made (0600) unless it is there."""
    if path.exists():
        return load_seal_key(path)
    key = new_seal_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_seal_key(key, path)
    return key


def load_seal_key(path: Path) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SealError(f"the node-secret seal key {path} cannot be read: {exc}") from exc
    if not isinstance(key, X25519PrivateKey):
        raise SealError(f"{path} is not an X25519 key; make one with `gridwatch keys init`")
    return key


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral + recipient, info=_INFO).derive(shared)


def seal(secret: str, public_key: bytes) -> bytes:
    """Encrypt `secret` so that only the holder of the private key can read it."""
    recipient = X25519PublicKey.from_public_bytes(public_key)
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes(*_RAW)
    key = _derive(ephemeral.exchange(recipient), eph_pub, public_key)
    return eph_pub + ChaCha20Poly1305(key).encrypt(bytes(12), secret.encode(), None)


def unseal(sealed: bytes, key: X25519PrivateKey) -> str:
    """The secret inside `sealed`; SealError if this key did not seal it or it was altered."""
    if len(sealed) < 32 + 16:
        raise SealError("a sealed node secret is too short to be one")
    eph_pub, box = sealed[:32], sealed[32:]
    mine = public_bytes(key)
    shared = key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    try:
        return (
            ChaCha20Poly1305(_derive(shared, eph_pub, mine)).decrypt(bytes(12), box, None).decode()
        )
    except InvalidTag as exc:
        raise SealError("a node secret was sealed to another key, or altered") from exc


def register_public_key(conn: Conn, key: X25519PrivateKey) -> bool:
    """Publish the seal key's public half for whoever issues secrets (once; never replaced).
    False when another key is registered: secrets are then sealed to that one, which this key
    cannot open."""
    mine = public_bytes(key)
    conn.execute(
        "INSERT INTO platform_keys (name, public_key) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
        (SEAL_KEY_NAME, mine),
    )
    return seal_public_key(conn) == mine


def seal_public_key(conn: Conn) -> bytes:
    row = conn.execute(
        "SELECT public_key FROM platform_keys WHERE name = %s", (SEAL_KEY_NAME,)
    ).fetchone()
    if row is None:
        raise SealError(
            "no node-secret seal key is registered: run `gridwatch keys init` (or start the "
            "ingest once with its seal key configured)"
        )
    return bytes(row[0])


def issue_secret(conn: Conn, node_id: str) -> str:
    """Give a node a new secret (its first, or a rotation) and return it; it is not kept in
    the clear anywhere. The broker reconcile hears of it (NOTIFY) and sets it on the broker,
    which cuts the node's session on its old secret."""
    secret = new_secret()
    sealed = seal(secret, seal_public_key(conn))
    row = conn.execute(
        """UPDATE edge_nodes SET password_hash = %s, secret_sealed = %s, secret_issued_at = %s
           WHERE id = %s RETURNING id""",
        (hash_password(secret), sealed, datetime.now(UTC), node_id),
    ).fetchone()
    if row is None:
        raise LookupError(f"no edge node {node_id!r}: register it first (gridwatch registry apply)")
    return secret
