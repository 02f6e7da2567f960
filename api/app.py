"""The operator API: `create_app()` builds it; `gridwatch api` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from api import errors
from api.live import ChangeFeed
from api.routes import auth, health, incidents, live, operations, tasks, venues
from api.settings import ApiSettings
from ingest.settings import deadline_policy


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: ConnectionPool = ConnectionPool(
            settings.database_url.get_secret_value(),
            min_size=1,
            max_size=settings.api_pool_size,
            kwargs={"autocommit": True},
            open=False,
        )
        pool.open()
        app.state.pool = pool
        feed = ChangeFeed(settings.database_url.get_secret_value())
        feed.start()
        app.state.feed = feed
        try:
            yield
        finally:
            feed.stop()
            pool.close()

    app = FastAPI(
        title="gridwatch",
        version="0.1.0",
        summary="Venue and safety monitoring for a territory's grids: incidents and grid tasks.",
        lifespan=lifespan,
        responses={code: {"model": errors.ErrorBody} for code in (400, 401, 403, 404, 409)},
    )
    app.state.settings = settings
    app.state.deadlines = deadline_policy()
    errors.install(app)
    for module in (auth, incidents, tasks, venues, operations, live, health):
        app.include_router(module.router)
    errors.document_validation_errors(app)
    return app
