"""Passwords (argon2id) and access tokens (signed JWT)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field, ValidationError

_HASHER = PasswordHasher()
_ALGORITHM = "HS256"
# A hash to verify against when the user does not exist, so timing does not reveal who does.
_DUMMY = _HASHER.hash("not a real password")


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password has at least 8 characters")
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def new_signing_key() -> str:
    """A random key for signing tokens (64 URL-safe characters)."""
    return secrets.token_urlsafe(48)


# What a token is for: "access" signs every API request (in a header); "live" only opens the
# live stream, whose URL carries it (browsers' EventSource cannot send headers), so it lives a
# minute, opens one stream only, and can never stand in for an access token.
Use = Literal["access", "live"]


class Claims(BaseModel):
    sub: str
    exp: datetime
    iat: float = Field(description="issued at, seconds since the epoch (the database's clock)")
    jti: str
    use: Use = "access"
    # A live ticket names the access token it was made with, and when that one expires.
    sid: str | None = None
    sexp: datetime | None = None

    @property
    def session(self) -> str:
        """The id of the access token this token stands for (itself, or the one it came from)."""
        return self.sid or self.jti

    @property
    def session_expires(self) -> datetime:
        return self.sexp or self.exp


def make_token(
    person_id: str,
    secret: str,
    ttl: timedelta,
    issued_at: float,
    use: Use = "access",
    session: Claims | None = None,
) -> tuple[str, Claims]:
    """A signed token and its claims; a live ticket carries the access token it came from."""
    claims = Claims(
        sub=person_id, exp=datetime.now(UTC) + ttl, iat=issued_at, jti=secrets.token_hex(16),
        use=use, sid=session.jti if session else None, sexp=session.exp if session else None,
    )  # fmt: skip
    body: dict[str, Any] = claims.model_dump(mode="json", exclude_none=True)
    body["exp"] = int(claims.exp.timestamp())
    if claims.sexp is not None:
        body["sexp"] = int(claims.sexp.timestamp())
    return jwt.encode(body, secret, algorithm=_ALGORITHM), claims


# iat is the database's clock and is checked against the person's "valid after" there, not
# against this process's clock.
_REQUIRED = ["sub", "exp", "iat", "jti"]


def read_token(token: str, secret: str, use: Use = "access") -> Claims | None:
    """The token's claims, or None when it is forged, malformed, expired or for another use."""
    try:
        claims = Claims.model_validate(
            jwt.decode(
                token,
                secret,
                algorithms=[_ALGORITHM],
                options={"require": _REQUIRED, "verify_iat": False},
            )
        )
    except (jwt.PyJWTError, ValidationError):
        return None
    return claims if claims.use == use else None


def token_subject(token: str, secret: str) -> str | None:
    """Whose token this is when it is genuine, even if expired or revoked (for the audit log)."""
    try:
        body = jwt.decode(token, secret, algorithms=[_ALGORITHM], options={"verify_exp": False})
    except jwt.PyJWTError:
        return None
    sub = body.get("sub")
    return sub if isinstance(sub, str) else None
