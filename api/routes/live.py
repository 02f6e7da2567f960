"""Server-Sent Events: incidents, tasks and presence changes in the person's subtree, live."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import keys, sessions
from api.database import Database, DatabaseUnavailable
from api.deps import CurrentSession, DbDep, KeyDep, User, not_signed_in, user_for
from api.errors import ErrorBody
from api.live import ChangeFeed
from api.security import Use, make_token, read_token
from api.settings import ApiSettings
from api.streams import StreamSlots

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)
_KEEPALIVE_S = 15.0


_TICKET_TTL = timedelta(seconds=60)


class Ticket(BaseModel):
    ticket: str = Field(description="opens /api/live?ticket= once, within `expires_in` seconds")
    expires_in: int


@router.post("/api/live/ticket", response_model=Ticket, summary="A ticket for the live stream")
def ticket(session: CurrentSession, db: DbDep, key: KeyDep) -> Ticket:
    """Browsers cannot send headers with an EventSource, so the stream's URL carries a ticket: it
    opens one stream within a minute, and is good for nothing else. Each reconnection needs a
    new one. The stream lasts while the session the ticket came from does."""
    user, access = session
    made, _ = make_token(user.id, key, _TICKET_TTL, sessions.now(db), use="live", session=access)
    return Ticket(ticket=made, expires_in=int(_TICKET_TTL.total_seconds()))


@router.get(
    "/api/live",
    summary="A live stream of changes (text/event-stream)",
    description="Events `incident`, `task` and `presence`, each with an `id`, and `notification`"
    " (an item of GET /api/v1/notifications), to its person only. Reconnect with "
    "the `Last-Event-ID` header or `?after=` to get what was missed. Authenticate with the "
    "`Authorization` header, or, from a browser's EventSource, which cannot set headers, with "
    "`?ticket=` from `POST /api/live/ticket` (one ticket per connection). The stream re-checks "
    "its person every `GRIDWATCH_API_LIVE_RECHECK_S` and ends with an `end` event once the "
    "session no longer counts (expired, signed out, password changed, person disabled); a "
    "person may hold `GRIDWATCH_API_LIVE_STREAMS_PER_PERSON` streams open per process (429).",
    response_class=StreamingResponse,
    responses={429: {"model": ErrorBody}},
)
async def live(
    request: Request,
    ticket: Annotated[str | None, Query(description="from POST /api/live/ticket")] = None,
    after: Annotated[int | None, Query(ge=0, description="the last event id seen")] = None,
    authorization: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    settings: ApiSettings = request.app.state.settings
    db: Database = request.app.state.db
    feed: ChangeFeed = request.app.state.feed
    if feed.closing:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the server is shutting down")
    key = await run_in_threadpool(keys.current, request.app)
    slots: StreamSlots = request.app.state.streams
    bearer = authorization.removeprefix("Bearer ").strip() if authorization else None
    use: Use = "access" if bearer is not None else "live"
    token = bearer if bearer is not None else ticket
    claims = read_token(token, key, use) if token else None
    if claims is None:
        raise not_signed_in()
    slot = slots.take(claims.sub)
    if slot is None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{claims.sub} has {slots.per_person} live streams open already; close one first",
        )

    def who() -> tuple[User, int]:
        with db.connection() as conn:
            user = user_for(conn, token, key, use)
            if use == "live" and not sessions.revoke(conn, claims.jti, user.id, claims.exp):
                raise not_signed_in("this live ticket was used already; ask for a new one")
            row = conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()
        assert row is not None  # an aggregate always has a row
        return user, int(row[0])

    try:
        user, newest = await run_in_threadpool(who)
    except BaseException:
        slots.give_back(claims.sub, slot)
        raise
    start = next((i for i in (last_event_id, after) if i is not None), newest)

    def fetch(after: int) -> list[tuple[Any, ...]]:
        with db.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                """SELECT id, kind, payload::text FROM changes
                   WHERE id > %s AND path <@ %s::ltree
                     AND (person_id IS NULL OR person_id = %s) ORDER BY id LIMIT 500""",
                (after, user.scope_path, user.id),
            ).fetchall()
        return rows

    def still_counts() -> bool:
        if claims.session_expires <= datetime.now(UTC):
            return False
        with db.connection() as conn:
            return sessions.person_row(conn, claims) is not None

    async def stream() -> AsyncIterator[str]:
        wake = feed.subscribe()
        last = start
        recheck = time.monotonic() + settings.api_live_recheck_s
        try:
            yield "retry: 2000\n\n"
            while not feed.closing and not await request.is_disconnected():
                if time.monotonic() >= recheck:
                    if not await run_in_threadpool(still_counts):
                        yield 'event: end\ndata: {"reason": "the session ended"}\n\n'
                        return
                    recheck = time.monotonic() + settings.api_live_recheck_s
                wake.clear()
                for cid, kind, payload in await run_in_threadpool(fetch, last):
                    last = int(cid)
                    yield f"id: {cid}\nevent: {kind}\ndata: {payload}\n\n"  # JSON as stored
                wait = min(_KEEPALIVE_S, max(0.0, recheck - time.monotonic()))
                try:
                    await asyncio.wait_for(wake.wait(), wait)
                except TimeoutError:
                    if time.monotonic() < recheck:
                        yield ": keep-alive\n\n"
        except DatabaseUnavailable as exc:
            # End the stream: the browser reconnects (with Last-Event-ID) and learns the state
            # from the answer, instead of watching a stream that can carry nothing.
            log.warning("live stream ended: %s", exc.reason)
        finally:
            feed.unsubscribe(wake)
            slots.give_back(claims.sub, slot)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip
