"""FastAPI dependencies: the database connection, the signing key, the signed-in person, the
audit log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from api import keys, sessions
from api.database import Database
from api.messages import ApiError
from api.security import Claims, Use, read_token, token_subject
from api.settings import ApiSettings
from casework.tasks import Role
from ingest import audit as audit_log

Conn = psycopg.Connection[tuple[Any, ...]]  # the same as api.database.Conn
_oauth2 = OAuth2PasswordBearer(tokenUrl="/api/token")


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Conn]:
    db: Database = request.app.state.db
    with db.connection() as conn:
        yield conn


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
DbDep = Annotated[Conn, Depends(get_db)]


@dataclass(frozen=True, slots=True)
class User:
    """The signed-in person and the subtree they may see and act in."""

    id: str
    name: str
    role: Role
    scope_id: str
    scope_path: str


def get_signing_key(request: Request) -> str:
    """The key tokens are signed with (read from the database when the API started without one
    at hand, e.g. because the database was down then)."""
    return keys.current(request.app)


KeyDep = Annotated[str, Depends(get_signing_key)]


def not_signed_in(code: str = "auth.not_signed_in") -> HTTPException:
    return ApiError(status.HTTP_401_UNAUTHORIZED, code, headers={"WWW-Authenticate": "Bearer"})


def session_for(
    db: Conn, token: str | None, key: str, use: Use = "access", request: Request | None = None
) -> tuple[User, Claims]:
    """The person a token stands for and its claims; 401 if it is missing, forged, expired, for
    another use, signed out, older than the person's last password change, or theirs no more."""
    claims = read_token(token, key, use) if token else None
    if token and request is not None:
        # Whose genuine token was refused goes into the audit log with a refused action (the
        # token is decoded again only when it did not count: expired, for another use).
        request.state.subject = claims.sub if claims is not None else token_subject(token, key)
    row = sessions.person_row(db, claims) if claims is not None else None
    if claims is None or row is None:
        raise not_signed_in()
    user = User(row[0], row[1], Role(row[2]), row[3], row[4])
    if request is not None:
        request.state.user = user
    return user, claims


def user_for(db: Conn, token: str | None, key: str, use: Use = "access") -> User:
    return session_for(db, token, key, use)[0]


def current_session(
    token: Annotated[str, Depends(_oauth2)], db: DbDep, key: KeyDep, request: Request
) -> tuple[User, Claims]:
    return session_for(db, token, key, request=request)


def current_user(
    session: Annotated[tuple[User, Claims], Depends(current_session)],
) -> User:
    return session[0]


CurrentSession = Annotated[tuple[User, Claims], Depends(current_session)]
# The bearer token itself, for a route that signs the person in on a connection of its own
# (an upload: a pooled connection is not held while the body comes in).
BearerToken = Annotated[str, Depends(_oauth2)]
CurrentUser = Annotated[User, Depends(current_user)]


def admin_user(user: CurrentUser) -> User:
    """The signed-in person, who must be an admin (403 otherwise)."""
    if user.role is not Role.ADMIN:
        raise ApiError(status.HTTP_403_FORBIDDEN, "role.admin_only", role=user.role)
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def client_of(request: Request) -> str:
    """The client's address, as the audit log and the sign-in throttle know it."""
    return request.client.host if request.client else ""


def audit(
    db: Conn,
    user: User,
    request: Request,
    what: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an action in the audit log (in the caller's transaction)."""
    record(db, user.id, request, what, target, detail)


def record(
    db: Conn,
    person_id: str,
    request: Request,
    what: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record something a person (or someone claiming to be them) did, in the audit log."""
    audit_log.write(db, person_id, what, target, detail, client_of(request))
