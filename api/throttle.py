"""The sign-in throttle: recent failures per address and per person id, counted in the audit log
(so it holds across API replicas), and a bound on password hashes checked at once."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import HTTPException, status

from api.messages import ApiError
from api.settings import ApiSettings

Conn = psycopg.Connection[tuple[Any, ...]]
FAILED = "sign_in.failed"
# How long a sign-in waits for a free hashing slot before the server says it is busy.
_QUEUE_WAIT_S = 20.0

# When the Nth most recent failure in the window ages out, fewer than N remain: that is the
# wait. A person's count starts again after they sign in.
_RETRY_AFTER = """
WITH w AS (SELECT make_interval(secs => %(window)s) AS span)
SELECT greatest(
  (SELECT extract(epoch FROM a.at + w.span - now()) FROM audit_log a, w
    WHERE a.action = 'sign_in.failed' AND a.person_id = %(person)s AND a.at > now() - w.span
      AND a.at > coalesce((SELECT max(s.at) FROM audit_log s
                           WHERE s.action = 'sign_in' AND s.person_id = %(person)s), '-infinity')
    ORDER BY a.at DESC OFFSET %(per_person)s - 1 LIMIT 1),
  (SELECT extract(epoch FROM a.at + w.span - now()) FROM audit_log a, w
    WHERE a.action = 'sign_in.failed' AND a.client = %(client)s AND a.at > now() - w.span
    ORDER BY a.at DESC OFFSET %(per_address)s - 1 LIMIT 1))
"""


def retry_after(db: Conn, person_id: str, client: str, settings: ApiSettings) -> int | None:
    """Seconds until this person id may try again from this address, or None if it may now."""
    row = db.execute(_RETRY_AFTER, {
        "window": settings.api_sign_in_window_s, "person": person_id, "client": client,
        "per_person": settings.api_sign_in_failures_per_person,
        "per_address": settings.api_sign_in_failures_per_address,
    }).fetchone()  # fmt: skip
    if row is None or row[0] is None:
        return None
    return max(1, math.ceil(float(row[0])))


def throttled(seconds: int) -> HTTPException:
    return ApiError(status.HTTP_429_TOO_MANY_REQUESTS, "auth.throttled",
                    headers={"Retry-After": str(seconds)}, seconds=seconds)  # fmt: skip


@asynccontextmanager
async def hashing_slot(slots: asyncio.Semaphore) -> AsyncIterator[None]:
    """One of the few slots for checking a password (argon2 takes 64 MiB each); 503 if the
    server stays busy."""
    try:
        async with asyncio.timeout(_QUEUE_WAIT_S):
            await slots.acquire()
    except TimeoutError:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, "auth.busy",
                       headers={"Retry-After": "5"}) from None  # fmt: skip
    try:
        yield
    finally:
        slots.release()
