"""Sign-in (OAuth2 password flow, throttled), sign-out, password changes, and who am I."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api import keys, sessions, throttle
from api.database import Database
from api.deps import CurrentSession, CurrentUser, DbDep, User, audit, client_of, record
from api.errors import ErrorBody
from api.messages import ApiError
from api.models import Language, Me, Token
from api.security import hash_password, make_token, verify_password
from api.settings import ApiSettings
from casework.tasks import Role
from ingest import people

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["auth"])
_LONGEST_ID = 64  # people.id allows no more


@router.post(
    "/token",
    response_model=Token,
    summary="Sign in with a person id and password",
    description="Throttled: after too many failures for a person id or from an address within "
    "`GRIDWATCH_API_SIGN_IN_WINDOW_S`, 429 with `Retry-After`. Every failure is in the audit log.",
    responses={429: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request) -> Token:
    state = request.app.state
    settings: ApiSettings = state.settings
    database: Database = state.db
    # What the audit log keeps of the id tried: no NUL (PostgreSQL text cannot hold it), not
    # more than an id can be. The password is never kept.
    tried = form.username.replace("\x00", "")[:_LONGEST_ID]
    client = client_of(request)

    def check_throttle() -> None:
        with database.connection() as db:
            wait = throttle.retry_after(db, tried, client, settings)
        if wait is not None:
            log.info("sign-in throttled person=%s client=%s retry_after=%s", tried, client, wait)
            raise throttle.throttled(wait)

    def attempt() -> Token:
        check_throttle()  # again: attempts that queued for a slot may have failed meanwhile
        with database.connection() as db:
            row = db.execute(
                """SELECT p.id, p.name, p.role::text, p.scope_id, t.path::text, p.password_hash,
                          p.active, extract(epoch FROM clock_timestamp())::float8
                   FROM people p JOIN territory t ON t.id = p.scope_id WHERE p.id = %s""",
                (tried if tried == form.username else None,),
            ).fetchone()
            good = verify_password(row[5] if row else None, form.password)
            if row is None or not row[6] or not good:
                why = (
                    "unknown person"
                    if row is None
                    else "wrong password"
                    if not good
                    else "disabled"
                )
                with db.transaction():
                    record(db, tried, request, throttle.FAILED, tried, {"reason": why})
                # Only someone who knows the password learns that the person is disabled.
                raise ApiError(
                    status.HTTP_401_UNAUTHORIZED, "auth.disabled" if good else "auth.wrong"
                )
            user = User(row[0], row[1], Role(row[2]), row[3], row[4])
            ttl = settings.api_token_ttl_s
            made, claims = make_token(
                user.id, keys.current(request.app), timedelta(seconds=ttl), row[7]
            )
            with db.transaction():
                audit(db, user, request, "sign_in", user.id, {"session": claims.jti})
        return Token(access_token=made, expires_in=ttl)

    await run_in_threadpool(check_throttle)
    async with throttle.hashing_slot(state.hashing):
        return await run_in_threadpool(attempt)


@router.post(
    "/sign-out",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out: this token counts no more, anywhere",
)
def sign_out(session: CurrentSession, db: DbDep, request: Request) -> Response:
    user, claims = session
    with db.transaction():
        sessions.revoke(db, claims.jti, user.id, claims.exp)
        audit(db, user, request, "sign_out", user.id, {"session": claims.jti})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=1024, description="the password you sign in with now")
    new_password: str = Field(min_length=8, max_length=1024, description="at least 8 characters")


@router.post(
    "/me/password",
    response_model=Token,
    summary="Change your password; every session of yours ends, and a new token is returned",
    description="Throttled and audited like sign-in: a wrong current password is a failed "
    "sign-in (403).",
    responses={429: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def change_password(body: PasswordChange, session: CurrentSession, request: Request) -> Token:
    state = request.app.state
    settings: ApiSettings = state.settings
    database: Database = state.db
    user, _ = session
    client = client_of(request)

    def change() -> Token:
        with database.connection() as db:
            wait = throttle.retry_after(db, user.id, client, settings)
            if wait is not None:
                raise throttle.throttled(wait)
            row = db.execute(
                "SELECT password_hash FROM people WHERE id = %s", (user.id,)
            ).fetchone()
            if not verify_password(row[0] if row else None, body.current_password):
                with db.transaction():
                    record(db, user.id, request, throttle.FAILED, user.id,
                           {"reason": "wrong current password"})  # fmt: skip
                raise ApiError(status.HTTP_403_FORBIDDEN, "auth.wrong_current")
            with db.transaction():
                people.set_password_hash(db, user.id, hash_password(body.new_password))
                audit(db, user, request, "password.change", user.id)
            ttl = settings.api_token_ttl_s
            made, claims = make_token(
                user.id, keys.current(request.app), timedelta(seconds=ttl), sessions.now(db)
            )
            with db.transaction():
                audit(db, user, request, "sign_in", user.id, {"session": claims.jti})
        return Token(access_token=made, expires_in=ttl)

    async with throttle.hashing_slot(state.hashing):
        return await run_in_threadpool(change)


def _me(db: DbDep, user: User) -> Me:
    row = db.execute(
        """SELECT p.language, p.language_chosen, n.timezone FROM people p
           LEFT JOIN notify_prefs n ON n.person_id = p.id WHERE p.id = %s""",
        (user.id,),
    ).fetchone()
    language, chosen, tz = row if row else ("zh-CN", False, None)
    return Me(id=user.id, name=user.name, role=user.role.value, scope_id=user.scope_id,
              language=language, language_chosen=chosen,
              timezone=tz or "Asia/Shanghai")  # fmt: skip


@router.get("/me", response_model=Me, summary="The signed-in person")
def me(user: CurrentUser, db: DbDep) -> Me:
    return _me(db, user)


class LanguageChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Language = Field(description="zh-CN or en")


@router.put(
    "/me/language",
    response_model=Me,
    summary="Choose your language (the console's and your notifications'); audited",
)
def set_language(body: LanguageChange, user: CurrentUser, db: DbDep, request: Request) -> Me:
    with db.transaction():
        db.execute(
            "UPDATE people SET language = %s, language_chosen = true WHERE id = %s",
            (body.language, user.id),
        )
        audit(db, user, request, "me.language", user.id, {"language": body.language})
    log.info("language set person=%s language=%s", user.id, body.language)
    return _me(db, user)
