"""Serving the API: uvicorn with limits on connections and on slow or half-sent requests, and a
shutdown that ends the open live streams at once instead of waiting for them."""

from __future__ import annotations

import asyncio
import logging
import socket

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.app import create_app
from api.live import ChangeFeed
from api.settings import ApiSettings

log = logging.getLogger(__name__)
_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1, plus a deadline for the request's headers: uvicorn 0.54 has none, so a
    client that sends half a request (or nothing) would hold its connection for ever."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # headers not complete yet (or the next request)
            if self._header_timer is None and data:
                self._arm()
        elif self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("closing a connection whose request headers did not come within %.0f s",
                     self.header_timeout_s)  # fmt: skip
            self.transport.write(_TIMEOUT)
            self.transport.close()


class ApiServer(uvicorn.Server):
    """On SIGINT/SIGTERM, ends the live streams first: uvicorn otherwise waits for them."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        feed: ChangeFeed | None = getattr(self.app.state, "feed", None)  # made by the lifespan
        if feed is not None:
            feed.close_streams()
        await super().shutdown(sockets)


def server(settings: ApiSettings, app: FastAPI | None = None) -> ApiServer:
    """A server for the API with the limits from `settings`."""
    app = app or create_app(settings)
    protocol = type("Protocol", (_Protocol,), {"header_timeout_s": settings.api_header_timeout_s})
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        http=protocol,
        limit_concurrency=settings.api_limit_concurrency,
        timeout_keep_alive=settings.api_keep_alive_s,
        timeout_graceful_shutdown=5,  # what still runs after the streams ended: a slow request
        log_config=None,
        access_log=False,
    )
    return ApiServer(config, app)
