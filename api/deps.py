"""FastAPI dependencies: the database connection, the signed-in person, the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from psycopg.types.json import Jsonb

from api.database import Database
from api.security import Use, read_token
from api.settings import ApiSettings
from ingest.tasks import Role

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


def user_for(db: Conn, token: str | None, settings: ApiSettings, use: Use = "access") -> User:
    """The person a token stands for; 401 if it is missing, forged, expired, for another use or
    theirs no more."""
    claims = read_token(token, settings.api_secret.get_secret_value(), use) if token else None
    row = None
    if claims is not None:
        row = db.execute(
            """SELECT p.id, p.name, p.role::text, p.scope_id, t.path::text
               FROM people p JOIN territory t ON t.id = p.scope_id WHERE p.id = %s AND p.active""",
            (claims.sub,),
        ).fetchone()
    if row is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "not signed in, or the session expired",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return User(row[0], row[1], Role(row[2]), row[3], row[4])


def current_user(token: Annotated[str, Depends(_oauth2)], db: DbDep, settings: SettingsDep) -> User:
    return user_for(db, token, settings)


CurrentUser = Annotated[User, Depends(current_user)]


def audit(
    db: Conn,
    user: User,
    request: Request,
    what: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an action in the audit log (in the caller's transaction)."""
    client = request.client.host if request.client else ""
    db.execute(
        "INSERT INTO audit_log (person_id, action, target, detail, client) VALUES (%s, %s, %s, %s, %s)",
        (user.id, what, target, Jsonb(detail or {}), client),
    )
