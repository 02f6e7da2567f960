"""Refused actions in the audit log: a 401, 403 or 409 answer to a state-changing request by a
signed-in person (or the holder of one of their genuine tokens): who, what, why."""

from __future__ import annotations

import logging

import psycopg
from fastapi import Request
from psycopg.types.json import Jsonb
from starlette.concurrency import run_in_threadpool

from api.database import Database, DatabaseUnavailable
from api.deps import client_of

log = logging.getLogger(__name__)

_RECORDED = {401, 403, 409}
_READS = {"GET", "HEAD", "OPTIONS"}


async def record(request: Request, status_code: int, detail: str) -> None:
    """Audit a refusal of a state-changing request whose sender is known; never fails the answer."""
    if status_code not in _RECORDED or request.method in _READS:
        return
    user = getattr(request.state, "user", None)
    person = user.id if user is not None else getattr(request.state, "subject", None)
    if person is None:  # nobody we know: a stranger's request is not worth a row each
        return
    database: Database = request.app.state.db
    row = (person, "refused", request.url.path,
           Jsonb({"method": request.method, "status": status_code, "reason": detail}),
           client_of(request))  # fmt: skip

    def insert() -> None:
        with database.connection() as db:
            db.execute(
                "INSERT INTO audit_log (person_id, action, target, detail, client)"
                " VALUES (%s, %s, %s, %s, %s)",
                row,
            )

    try:
        await run_in_threadpool(insert)
    except (psycopg.Error, DatabaseUnavailable) as exc:
        # The refusal still stands; only its audit row is missing, and the log says so.
        log.warning("could not audit a refused %s %s by %s: %s", request.method,
                    request.url.path, person, str(exc).strip())  # fmt: skip
