"""The platform's own outages, told apart from the venues'.

When the ingest loses its broker, every node looks dead: Mosquitto publishes their wills as it
stops, and no birth can arrive until it is back. Those deaths are the platform's fault, not the
venues'. While the leader's broker connection is down, node-offline timers do not fire; when it
comes back they are pushed back by a grace period, so nodes that reconnect cancel them with their
births and only nodes still missing after that raise their own incident. The outage itself is one
red incident for the operators at the top of the territory, with no task for any grid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from ingest import incidents, metrics
from ingest.rules import DEFAULTS, Rule, Severity

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
PLATFORM_BROKER = "platform_broker"
_TITLE = "The platform cannot reach its MQTT broker"
_NODE_OFFLINE_TIMERS = f"{Rule.NODE_OFFLINE.value}:%"


class BrokerWatch:
    """Run by the leader each tick: is the broker reachable, and what follows from it."""

    def __init__(self, connected: Callable[[], bool], down_after_s: float) -> None:
        self.connected = connected
        self.down_after_s = down_after_s
        self._down_since: float | None = time.monotonic()  # not connected until it says so
        self._reported = False

    @property
    def up(self) -> bool:
        return self._down_since is None

    def check(self, conn: Conn) -> None:
        now = time.monotonic()
        if not self.connected():
            if self._down_since is None:
                self._down_since = now
                log.warning("broker unreachable from the leader: node-offline timers held")
            if not self._reported and now - self._down_since >= self.down_after_s:
                with conn.transaction():
                    opened = open_platform_incident(conn, now - self._down_since)
                self._reported = True
                metrics.PLATFORM_BROKER_DOWN.set(1)
                log.error("platform incident: broker unreachable for %.0f s (incidents=%d)",
                          now - self._down_since, opened)  # fmt: skip
            return
        if self._down_since is None:
            return
        grace = timedelta(seconds=DEFAULTS[Rule.NODE_OFFLINE].for_s)
        with conn.transaction():
            moved = conn.execute(
                """UPDATE timers SET due_at = greatest(due_at, now() + %s)
                   WHERE kind = %s AND key LIKE %s""",
                (grace, incidents.TIMER_RULE, _NODE_OFFLINE_TIMERS),
            ).rowcount
            if self._reported:
                resolve_platform_incidents(conn, "the broker is reachable again")
        log.info("broker reachable again after %.0f s: %d node-offline timers moved %s on",
                 now - self._down_since, moved, grace)  # fmt: skip
        self._down_since = None
        self._reported = False
        metrics.PLATFORM_BROKER_DOWN.set(0)

    def held_timers(self) -> str | None:
        """A LIKE pattern of the timer keys that must not fire now (None: all may)."""
        return None if self.up else _NODE_OFFLINE_TIMERS


def open_platform_incident(conn: Conn, down_s: float) -> int:
    """One red incident per top of the territory (a city), for its operators; no task."""
    rows = conn.execute(
        """INSERT INTO incidents (dedup_key, rule, severity, title, venue_id, grid_id, path,
                                  detail, first_seen, last_seen, opened_at)
           SELECT %s || ':' || t.id, %s, %s, %s, NULL, t.id, t.path, %s, now(), now(),
                  clock_timestamp()
           FROM territory t WHERE t.parent_id IS NULL
           ON CONFLICT (dedup_key) WHERE status <> 'resolved' DO NOTHING
           RETURNING id""",
        (PLATFORM_BROKER, PLATFORM_BROKER, Severity.RED.value, _TITLE,
         Jsonb({"down_s": round(down_s)})),
    ).fetchall()  # fmt: skip
    for (incident_id,) in rows:
        conn.execute(
            "INSERT INTO incident_events (incident_id, kind, actor, data) VALUES (%s, 'opened', %s, %s)",
            (incident_id, incidents.SYSTEM, Jsonb({"down_s": round(down_s)})),
        )
    return len(rows)


def resolve_platform_incidents(conn: Conn, reason: str) -> int:
    keys = conn.execute(
        "SELECT dedup_key FROM incidents WHERE rule = %s AND status <> 'resolved'",
        (PLATFORM_BROKER,),
    ).fetchall()
    return sum(incidents.resolve(conn, str(k), reason) for (k,) in keys)
