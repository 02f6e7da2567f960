"""Worker heartbeats: which slot is consumed by which process, and which slots nobody consumes.

A slot's broker session outlives its worker: the broker goes on queuing that slot's share of the
shared subscription, alarms included, until the session expires. The heartbeat table is how the
platform notices a slot whose worker is gone (see `ingest_workers` in migration 012). Slots are
numbered per ingest group (migration 020): each group's broker has its own worker accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from ingest import groups
from ingest.groups import DEFAULT_GROUP

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class Beat:
    """What a worker reports about itself."""

    client_id: str
    slot: int
    host: str
    pid: int
    started_at: datetime
    last_receive_at: datetime | None
    last_commit_at: datetime | None
    group: str = DEFAULT_GROUP


@dataclass(frozen=True, slots=True)
class SilentSlot:
    """A slot with a broker session that no worker has consumed for `silent_s` seconds."""

    client_id: str
    slot: int
    host: str
    pid: int
    silent_s: float


def beat(conn: Conn, b: Beat) -> None:
    """Record that this worker is alive (one row per group and client id, overwritten), and
    so that its group's claim on its areas holds."""
    conn.execute(
        """INSERT INTO ingest_workers (ingest_group, client_id, slot, host, pid, started_at,
                                       heartbeat_at, last_receive_at, last_commit_at)
           VALUES (%s, %s, %s, %s, %s, %s, now(), %s, %s)
           ON CONFLICT (ingest_group, client_id) DO UPDATE SET slot = excluded.slot,
               host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
               heartbeat_at = now(), last_receive_at = excluded.last_receive_at,
               last_commit_at = excluded.last_commit_at""",
        (b.group, b.client_id, b.slot, b.host, b.pid, b.started_at, b.last_receive_at,
         b.last_commit_at),
    )  # fmt: skip
    groups.beat(conn, b.group)


def retire(conn: Conn, client_id: str, group: str = DEFAULT_GROUP) -> None:
    """Forget a slot whose session was drained and ended."""
    conn.execute(
        "DELETE FROM ingest_workers WHERE ingest_group = %s AND client_id = %s", (group, client_id)
    )


def silent_slots(
    conn: Conn, *, stale_s: float, session_expiry_s: int, group: str = DEFAULT_GROUP
) -> list[SilentSlot]:
    """The group's slots whose last heartbeat is older than `stale_s` while the broker still
    keeps their session (it expires `session_expiry_s` after the worker went away)."""
    rows = conn.execute(
        """SELECT client_id, slot, host, pid, extract(epoch FROM now() - heartbeat_at)::float8
           FROM ingest_workers
           WHERE ingest_group = %s AND heartbeat_at < now() - make_interval(secs => %s)
             AND heartbeat_at > now() - make_interval(secs => %s)
           ORDER BY slot""",
        (group, stale_s, session_expiry_s),
    ).fetchall()
    return [
        SilentSlot(str(c), int(str(s)), str(h), int(str(p)), float(str(q)))
        for c, s, h, p, q in rows
    ]
