"""Prometheus metrics of the API's own requests: how many, with which status, and how fast.

Labelled by the matched route's template (`/api/tasks/{task_id}`), never the raw path, so a
scan of random URLs cannot grow the series without bound."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "gridwatch_api_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "gridwatch_api_request_seconds",
    "Time from a request's arrival to its response's headers (a live stream counts its opening)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge("gridwatch_api_requests_in_flight", "HTTP requests being handled now")

_OTHER = "other"  # no route matched (a 404, a refused body before routing)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if str(scope.get("path", "")).startswith("/console"):
        return "/console"
    return _OTHER


class RequestMetrics:
    """Counts every HTTP request by route and status and times it to its response's start. A
    request whose handler raised is counted as the 500 it becomes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        def done(code: int) -> None:
            method, route = str(scope.get("method", "")), _route(scope)
            REQUESTS.labels(method, route, str(code)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - start)

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start" and status is None:
                status = int(message["status"])
                done(status)
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, timed)
        except BaseException:
            if status is None:
                done(500)
            raise
        finally:
            IN_FLIGHT.dec()
