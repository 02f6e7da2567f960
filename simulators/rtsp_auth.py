"""A camera's account as RTSP cameras check it: digest (RFC 2617, MD5, no qop offered, as
cameras send it; a client's qop=auth answer is accepted too) or basic (RFC 7617)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from typing import Literal

Scheme = Literal["digest", "basic"]
REALM = "gridwatch simulated camera"
_NONCES_KEPT = 256  # the newest challenges a client may still answer


class CameraAccount:
    """One user name and password; `password` may change while clients are connected."""

    def __init__(self, username: str, password: str, scheme: Scheme = "digest") -> None:
        if scheme not in ("digest", "basic"):
            raise ValueError(f"authentication {scheme!r}: choose 'digest' or 'basic'")
        self.username, self.password, self.scheme = username, password, scheme
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def allows(self, method: str, authorization: str) -> bool:
        """Whether a request's Authorization header carries this account."""
        kind, _, rest = authorization.partition(" ")
        if kind.lower() == "digest" and self.scheme == "digest":
            return self._digest_ok(method, _params(rest))
        if kind.lower() == "basic" and self.scheme == "basic":
            expected = f"{self.username}:{self.password}".encode()
            return hmac.compare_digest(_b64decode(rest.strip()), expected)
        return False

    def challenge(self) -> str:
        """A WWW-Authenticate value; for digest, with a new nonce."""
        if self.scheme == "basic":
            return f'Basic realm="{REALM}"'
        nonce = secrets.token_hex(16)
        with self._lock:
            self._nonces[nonce] = None
            while len(self._nonces) > _NONCES_KEPT:
                self._nonces.popitem(last=False)
        return f'Digest realm="{REALM}", nonce="{nonce}", stale="FALSE"'

    def _digest_ok(self, method: str, p: dict[str, str]) -> bool:
        with self._lock:
            known = p.get("nonce", "") in self._nonces
        if not known or p.get("username") != self.username or p.get("realm") != REALM:
            return False
        if p.get("algorithm", "MD5").upper() != "MD5":
            return False
        ha1 = _md5(f"{self.username}:{REALM}:{self.password}")
        ha2 = _md5(f"{method}:{p.get('uri', '')}")  # the URI the client hashed
        if p.get("qop"):
            parts = [ha1, p["nonce"], p.get("nc", ""), p.get("cnonce", ""), p["qop"], ha2]
        else:
            parts = [ha1, p["nonce"], ha2]
        return hmac.compare_digest(_md5(":".join(parts)), p.get("response", ""))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


def _params(text: str) -> dict[str, str]:
    """The key="value" and key=value pairs of an Authorization header."""
    out: dict[str, str] = {}
    rest = text.strip()
    while rest:
        key, sep, rest = rest.partition("=")
        if not sep:
            break
        rest = rest.lstrip()
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(",")
            value = value.strip()
        out[key.strip().lower()] = value
        rest = rest.lstrip(", ")
    return out
