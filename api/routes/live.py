"""Server-Sent Events: incidents, tasks and presence changes in the person's subtree, live."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import keys, messages, sessions
from api.database import Database, DatabaseUnavailable
from api.deps import CurrentSession, DbDep, KeyDep, User, not_signed_in, user_for
from api.errors import ErrorBody
from api.live import RESYNCS, ChangeFeed, frame
from api.messages import ApiError
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
    lang: Annotated[
        Literal["zh-CN", "en"] | None,
        Query(description="the language of titles (else Accept-Language; zh-CN by default)"),
    ] = None,
) -> StreamingResponse:
    settings: ApiSettings = request.app.state.settings
    db: Database = request.app.state.db
    feed: ChangeFeed = request.app.state.feed
    if feed.closing:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, "live.closing")
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
        raise ApiError(status.HTTP_429_TOO_MANY_REQUESTS, "live.too_many", person=claims.sub,
                       count=slots.per_person)  # fmt: skip

    def who() -> tuple[User, int]:
        with db.connection() as conn:
            user = user_for(conn, token, key, use)
            if use == "live" and not sessions.revoke(conn, claims.jti, user.id, claims.exp):
                raise not_signed_in("auth.ticket_used")
            row = conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()
        assert row is not None  # an aggregate always has a row
        return user, int(row[0])

    try:
        user, newest = await run_in_threadpool(who)
    except BaseException:
        slots.give_back(claims.sub, slot)
        raise
    start = next((i for i in (last_event_id, after) if i is not None), newest)

    def backlog(after: int, upto: int) -> list[tuple[Any, ...]]:
        with db.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                """SELECT id, kind, payload::text FROM changes
                   WHERE id > %s AND id <= %s AND path <@ %s::ltree
                     AND (person_id IS NULL OR person_id = %s) ORDER BY id LIMIT 500""",
                (after, upto, user.scope_path, user.id),
            ).fetchall()
        return rows

    def still_counts() -> bool:
        if claims.session_expires <= datetime.now(UTC):
            return False
        with db.connection() as conn:
            return sessions.person_row(conn, claims) is not None

    async def stream() -> AsyncIterator[str]:
        wake = feed.subscribe(user.scope_path, user.id)
        # The first re-check at a random point of the period: streams opened together (a
        # restart, a shift's start) would otherwise all ask the database at the same moment.
        recheck = time.monotonic() + settings.api_live_recheck_s * random.uniform(0.5, 1.0)
        view = _View(feed, user.scope_path, user.id, start, lang or messages.current())
        try:
            yield "retry: 2000\n\n"
            # A client that went away ends the stream when a write to it fails (a change or the
            # keep-alive); asking the request each round costs every stream on every change.
            while not feed.closing:
                if time.monotonic() >= recheck:
                    if await request.is_disconnected():
                        return
                    if not await run_in_threadpool(still_counts):
                        yield 'event: end\ndata: {"reason": "the session ended"}\n\n'
                        return
                    recheck = time.monotonic() + settings.api_live_recheck_s
                wake.clear()
                if view.needs_table():
                    async for frames in view.read_table(backlog):
                        yield frames
                frames = view.take()
                if frames:
                    yield frames
                if view.behind:
                    continue  # the feed's memory moved past it: read the table at once
                wait = min(_KEEPALIVE_S, max(0.0, recheck - time.monotonic()))
                try:
                    async with asyncio.timeout(wait):  # no task per round, as wait_for makes
                        await wake.wait()
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


Backlog = Callable[[int, int], list[tuple[Any, ...]]]


class _View:
    """One stream's place in the feed: the changes its person may see, each once, in order.

    It joins the feed at a position; what came before it (after the id the stream resumes
    from) it reads from the table with its own scoped query, once, and again only if it falls
    so far behind that the feed's memory has moved on."""

    def __init__(
        self, feed: ChangeFeed, scope: str, person: str, after: int, lang: str = "zh-CN"
    ) -> None:
        self.feed, self.scope, self.person, self.lang = feed, scope, person, lang
        self.last = after  # the newest id this stream has sent (or resumes after)
        self.seq: int | None = None  # where it reads the feed's memory; None: must join
        self.skip_upto = after
        self.late: frozenset[int] = frozenset()  # ids skipped when it joined, welcome late
        self.from_table: set[int] = set()
        self.behind = False  # fell so far behind that the feed's memory moved on

    def needs_table(self) -> bool:
        return self.seq is None

    async def read_table(self, backlog: Backlog) -> AsyncIterator[str]:
        """Join the feed, and send what the table holds between the last id and that point."""
        pos = self.feed.position()
        if pos is None:
            return  # the feed has not read the table yet; it wakes the stream when it has
        if pos.upto > self.last:
            RESYNCS.inc()
        after = self.last
        self.from_table = set()
        while after < pos.upto:
            rows = await run_in_threadpool(backlog, after, pos.upto)
            if not rows:
                break
            after = int(rows[-1][0])
            self.from_table.update(int(cid) for cid, _, _ in rows if int(cid) in pos.gaps)
            yield "".join(frame(int(cid), str(kind), str(payload), self.lang)
                          for cid, kind, payload in rows)  # fmt: skip
        self.behind = False
        self.last = max(self.last, pos.upto)
        self.skip_upto, self.late, self.seq = self.last, pos.gaps, pos.seq

    def take(self) -> str:
        """The frames of what the feed read since this stream last looked."""
        if self.seq is None:
            return ""
        got = self.feed.since(self.seq)
        if got is None:
            self.seq, self.behind = None, True  # the next round reads the table
            return ""
        changes, self.seq = got
        out = []
        for c in changes:
            if not c.visible_to(self.scope, self.person):
                continue
            if c.id <= self.skip_upto and (c.id not in self.late or c.id in self.from_table):
                continue
            out.append(c.frame_in(self.lang))
            self.last = max(self.last, c.id)
        return "".join(out)
