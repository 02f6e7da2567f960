"""Sign-in (OAuth2 password flow) and who am I."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import CurrentUser, DbDep, SettingsDep, User, audit
from api.models import Me, Token
from api.security import make_token, verify_password
from ingest.tasks import Role

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/token", response_model=Token, summary="Sign in with a person id and password")
def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    db: DbDep,
    settings: SettingsDep,
    request: Request,
) -> Token:
    if "\x00" in form.username:  # PostgreSQL text cannot hold it; no person id has one
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong person id or password")
    row = db.execute(
        """SELECT p.id, p.name, p.role::text, p.scope_id, t.path::text, p.password_hash
           FROM people p JOIN territory t ON t.id = p.scope_id WHERE p.id = %s AND p.active""",
        (form.username,),
    ).fetchone()
    if not verify_password(row[5] if row else None, form.password) or row is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong person id or password")
    user = User(row[0], row[1], Role(row[2]), row[3], row[4])
    with db.transaction():
        audit(db, user, request, "sign_in", user.id)
    ttl = settings.api_token_ttl_s
    secret = settings.api_secret.get_secret_value()
    return Token(access_token=make_token(user.id, secret, timedelta(seconds=ttl)), expires_in=ttl)


@router.get("/me", response_model=Me, summary="The signed-in person")
def me(user: CurrentUser) -> Me:
    return Me(id=user.id, name=user.name, role=user.role.value, scope_id=user.scope_id)
