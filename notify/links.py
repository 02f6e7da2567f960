"""Short links that open a task for one person: /t/TOKEN. The token is 128 random bits; only
its SHA-256 is stored, with the task, the person and when it expires. The ingest renders the
messages, and must not hold the key that signs the API's access tokens, so a link is a stored
capability rather than a signature: as unforgeable, and it can be revoked."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]
_TOKEN_RE = r"^[A-Za-z0-9_-]{16,64}$"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def make(conn: Conn, task_id: int, person_id: str, ttl_s: float) -> str:
    """A new token for the task and the person, good for `ttl_s` seconds."""
    token = secrets.token_urlsafe(16)
    conn.execute(
        """INSERT INTO notify_links (token_hash, task_id, person_id, expires_at)
           VALUES (%s, %s, %s, now() + %s)""",
        (_hash(token), task_id, person_id, timedelta(seconds=ttl_s)),
    )
    return token


def resolve(conn: Conn, token: str) -> tuple[int, str] | None:
    """(task id, person id) of a link that is genuine and not expired, else None."""
    if not 16 <= len(token) <= 64:
        return None
    row = conn.execute(
        "SELECT task_id, person_id FROM notify_links WHERE token_hash = %s AND expires_at > now()",
        (_hash(token),),
    ).fetchone()
    return (int(str(row[0])), str(row[1])) if row is not None else None


def prune(conn: Conn, retention_days: int) -> None:
    """Expired links, and settled deliveries and events older than the retention."""
    conn.execute("DELETE FROM notify_links WHERE expires_at < now() - interval '1 day'")
    cutoff = timedelta(days=retention_days)
    conn.execute(
        "DELETE FROM deliveries WHERE created_at < now() - %s AND state <> 'pending'", (cutoff,)
    )
    conn.execute(
        """DELETE FROM notify_events e WHERE e.at < now() - %s AND e.routed_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)""",
        (cutoff,),
    )
