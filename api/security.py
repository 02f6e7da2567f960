"""Passwords (argon2id) and access tokens (signed JWT)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ValidationError

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


# What a token is for: "access" signs every API request (in a header); "live" only opens the
# live stream, whose URL carries it (browsers' EventSource cannot send headers), so it lives a
# minute and a logged URL is worth nothing for long, and it can never stand in for an access token.
Use = Literal["access", "live"]


class Claims(BaseModel):
    sub: str
    exp: datetime
    use: Use = "access"


def make_token(person_id: str, secret: str, ttl: timedelta, use: Use = "access") -> str:
    return jwt.encode(
        {"sub": person_id, "exp": datetime.now(UTC) + ttl, "use": use}, secret, algorithm=_ALGORITHM
    )


def read_token(token: str, secret: str, use: Use = "access") -> Claims | None:
    """The token's claims, or None when it is forged, malformed, expired or for another use."""
    try:
        claims = Claims.model_validate(jwt.decode(token, secret, algorithms=[_ALGORITHM]))
    except (jwt.PyJWTError, ValidationError):
        return None
    return claims if claims.use == use else None
