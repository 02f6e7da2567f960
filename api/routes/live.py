"""Server-Sent Events: incidents, tasks and presence changes in the person's subtree, live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import User, user_for
from api.live import ChangeFeed
from api.settings import ApiSettings

router = APIRouter(tags=["live"])
_KEEPALIVE_S = 15.0


@router.get(
    "/api/live",
    summary="A live stream of changes (text/event-stream)",
    description="Events `incident`, `task` and `presence`, each with an `id`. Reconnect with "
    "the `Last-Event-ID` header (browsers do it by themselves) to get what was missed. "
    "Browsers cannot set headers on an EventSource, so the token may also come as `?token=`.",
    response_class=StreamingResponse,
)
async def live(
    request: Request,
    token: Annotated[str | None, Query(description="access token, for EventSource")] = None,
    authorization: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    settings: ApiSettings = request.app.state.settings
    pool = request.app.state.pool
    feed: ChangeFeed = request.app.state.feed
    bearer = authorization.removeprefix("Bearer ").strip() if authorization else token

    def who() -> tuple[User, int]:
        with pool.connection() as db:
            user = user_for(db, bearer, settings)
            row = db.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()
        return user, int(row[0])

    user, newest = await run_in_threadpool(who)
    start = last_event_id if last_event_id is not None else newest

    def fetch(after: int) -> list[tuple[Any, ...]]:
        with pool.connection() as db:
            rows: list[tuple[Any, ...]] = db.execute(
                """SELECT id, kind, payload FROM changes
                   WHERE id > %s AND path <@ %s::ltree ORDER BY id LIMIT 500""",
                (after, user.scope_path),
            ).fetchall()
        return rows

    async def stream() -> AsyncIterator[str]:
        wake = feed.subscribe()
        last = start
        try:
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                wake.clear()
                for cid, kind, payload in await run_in_threadpool(fetch, last):
                    last = int(cid)
                    yield f"id: {cid}\nevent: {kind}\ndata: {json.dumps(payload)}\n\n"
                try:
                    await asyncio.wait_for(wake.wait(), _KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            feed.unsubscribe(wake)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip
