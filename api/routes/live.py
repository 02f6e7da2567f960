"""Server-Sent Events: incidents, tasks and presence changes in the person's subtree, live."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.database import Database, DatabaseUnavailable
from api.deps import CurrentUser, User, user_for
from api.live import ChangeFeed
from api.security import make_token
from api.settings import ApiSettings

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)
_KEEPALIVE_S = 15.0


_TICKET_TTL = timedelta(seconds=60)


class Ticket(BaseModel):
    ticket: str = Field(description="opens /api/live?ticket= within `expires_in` seconds")
    expires_in: int


@router.post("/api/live/ticket", response_model=Ticket, summary="A ticket for the live stream")
def ticket(user: CurrentUser, request: Request) -> Ticket:
    """Browsers cannot send headers with an EventSource, so the stream's URL carries a ticket: it
    opens the stream for a minute (reconnections included) and is good for nothing else."""
    settings: ApiSettings = request.app.state.settings
    made = make_token(user.id, settings.api_secret.get_secret_value(), _TICKET_TTL, use="live")
    return Ticket(ticket=made, expires_in=int(_TICKET_TTL.total_seconds()))


@router.get(
    "/api/live",
    summary="A live stream of changes (text/event-stream)",
    description="Events `incident`, `task` and `presence`, each with an `id`. Reconnect with "
    "the `Last-Event-ID` header (browsers do it by themselves) or `?after=` to get what was "
    "missed. Authenticate with the `Authorization` header, or, from a browser's EventSource, "
    "which cannot set headers, with `?ticket=` from `POST /api/live/ticket`.",
    response_class=StreamingResponse,
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
    bearer = authorization.removeprefix("Bearer ").strip() if authorization else None

    def who() -> tuple[User, int]:
        with db.connection() as conn:
            if bearer is not None:
                user = user_for(conn, bearer, settings)
            else:
                user = user_for(conn, ticket, settings, use="live")
            row = conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()
        assert row is not None  # an aggregate always has a row
        return user, int(row[0])

    if feed.closing:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the server is shutting down")
    user, newest = await run_in_threadpool(who)
    start = next((i for i in (last_event_id, after) if i is not None), newest)

    def fetch(after: int) -> list[tuple[Any, ...]]:
        with db.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                """SELECT id, kind, payload::text FROM changes
                   WHERE id > %s AND path <@ %s::ltree ORDER BY id LIMIT 500""",
                (after, user.scope_path),
            ).fetchall()
        return rows

    async def stream() -> AsyncIterator[str]:
        wake = feed.subscribe()
        last = start
        try:
            yield "retry: 2000\n\n"
            while not feed.closing and not await request.is_disconnected():
                wake.clear()
                for cid, kind, payload in await run_in_threadpool(fetch, last):
                    last = int(cid)
                    yield f"id: {cid}\nevent: {kind}\ndata: {payload}\n\n"  # JSON as stored
                try:
                    await asyncio.wait_for(wake.wait(), _KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        except DatabaseUnavailable as exc:
            # End the stream: the browser reconnects (with Last-Event-ID) and learns the state
            # from the answer, instead of watching a stream that can carry nothing.
            log.warning("live stream ended: %s", exc.reason)
        finally:
            feed.unsubscribe(wake)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip
