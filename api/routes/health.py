"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

import psycopg
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import errors
from api.database import Database, DatabaseUnavailable, write_blocker

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database answers and can take writes",
    responses={503: {"model": errors.ErrorBody, "description": "not ready, and why"}},
)
def readyz(request: Request) -> dict[str, str]:
    db: Database = request.app.state.db
    try:
        with db.connection(wait_s=2) as conn:
            blocker = write_blocker(conn)
    except psycopg.Error as exc:  # the detail goes to the log, not to whoever asks
        log.warning("readiness check failed: %s", str(exc).strip())
        raise DatabaseUnavailable("the database check failed", "db.unreachable") from None
    if blocker is not None:
        raise DatabaseUnavailable(f"the database cannot take writes ({blocker})", "db.read_only")
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
