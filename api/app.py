"""The operator API: `create_app()` builds it; `gridwatch api` serves it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, keys, messages
from api.database import Database
from api.limits import Limits
from api.live import ChangeFeed
from api.metrics import RequestMetrics
from api.routes import (
    admin,
    auth,
    enrol,
    health,
    incidents,
    live,
    notify,
    operations,
    people,
    photos,
    registry_upload,
    tasks,
    venues,
    wall,
    wall_admin,
)
from api.settings import ApiSettings
from api.streams import StreamSlots
from ingest.settings import deadline_policy


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(
            settings.database_url.get_secret_value(), settings.api_pool_size, settings.api_db_wait_s
        )
        db.open()
        app.state.db = db
        app.state.signing_key = None
        keys.load_at_start(app)
        app.state.hashing = asyncio.Semaphore(settings.api_hash_concurrency)
        feed = ChangeFeed(settings.database_url.get_secret_value())
        feed.start()
        app.state.feed = feed
        try:
            yield
        finally:
            feed.stop()
            db.close()

    app = FastAPI(
        title="gridwatch",
        version="0.1.0",
        summary="Venue and safety monitoring for a territory's grids: incidents and grid tasks.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their code from a public CDN: not on the console's origin in
        # production unless asked for (GRIDWATCH_API_DOCS).
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        responses={
            code: {"model": errors.ErrorBody} for code in (400, 401, 403, 404, 409, 413, 503)
        },
    )
    app.state.settings = settings
    app.state.wall = wall.WallSettings()  # read at start: a bad tile URL stops it here
    app.state.deadlines = deadline_policy()
    app.state.streams = StreamSlots(settings.api_live_streams_per_person)
    errors.install(app)
    # admin last: its /api/v1/admin/{kind}/{record_id} would shadow a fixed path under
    # /api/v1/admin/nodes/ of a router included after it.
    for module in (auth, incidents, tasks, photos, venues, people, operations, live, health,
                   enrol, registry_upload, notify, wall, wall_admin, admin):  # fmt: skip
        app.include_router(module.router)
    errors.document_validation_errors(app)
    larger = (("POST", re.compile(photos.PHOTO_PATH), photos.MAX_PHOTO_BYTES, "a photo"),)
    app.add_middleware(Limits, max_body=settings.api_max_body_bytes, larger=larger)
    app.add_middleware(messages.Language)  # outside Limits: its 413s are in the language too
    app.add_middleware(RequestMetrics)  # outside Limits: its 413s are counted too
    app.add_middleware(_Compressed)  # inside the console's headers, which it leaves alone
    _serve_console(app)
    return app


CONSOLE_DIR = Path(__file__).parent / "console"
# The console is plain files from this origin: no inline code, no other hosts, no framing.
# Pictures and clips are fetched with the person's token and shown from blob: URLs.
_CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:;"
    " media-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _serve_console(app: FastAPI) -> None:
    """The web console at /console/ (and / leads there), served from api/console as it is."""
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/console/")

    app.add_middleware(_ConsoleHeaders)


class _ConsoleHeaders:
    """The console's security headers on its responses. Plain ASGI, not BaseHTTPMiddleware:
    that one pipes every response through a task and a memory stream, and its `receive` spawns
    a task group on each call, which a thousand open live streams pay on every change."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/console"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(_CONSOLE_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Compressed:
    """gzip for the console's files and the API's answers when the client takes it (a phone on
    a slow network loads the console in a fraction of the bytes). Never the live stream: each
    event must leave at once, and a thousand open streams should not each carry a compressor;
    pictures are compressed already (GZipMiddleware skips them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Level 6: nearly level 9's size for a fraction of the time, on every API answer.
        self.gzip = GZipMiddleware(app, minimum_size=512, compresslevel=6)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") != "/api/live":
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
