"""The platform's own outages, told apart from the venues'.

When the ingest loses its broker, every node looks dead: Mosquitto publishes their wills as it
stops, and no birth can arrive until it is back. Those deaths are the platform's fault, not the
venues'. While the leader's broker connection is down, node-offline timers do not fire; when it
comes back they are pushed back by a grace period, so nodes that reconnect cancel them with their
births and only nodes still missing after that raise their own incident. The outage itself is one
red incident for the operators at the top of the territory, with no task for any grid.

With several ingest groups (a broker per district, ingest.groups), each group's leader watches
its own broker and says in `ingest_groups` when it cannot reach it; node-offline timers are held
while any running group's broker is down, whichever group's leader fires the timers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from casework import incidents
from casework.rules import DEFAULTS, Rule, Severity
from casework.titles import Title
from ingest import groups, metrics

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
PLATFORM_BROKER = "platform_broker"
_NODE_OFFLINE_TIMERS = f"{Rule.NODE_OFFLINE.value}:%"
_SHARE_EVERY_S = 1.0


class BrokerWatch:
    """Run by the leader each tick: is the broker reachable, and what follows from it."""

    def __init__(
        self,
        connected: Callable[[], bool],
        down_after_s: float,
        *,
        group: str = groups.DEFAULT_GROUP,
        live_s: float = 30.0,
    ) -> None:
        """`group`: the ingest group whose broker this is; `live_s`: how long another group's
        word on its broker holds (its workers' heartbeats keep it)."""
        self.connected = connected
        self.down_after_s = down_after_s
        self.group = group
        self.live_s = live_s
        self._down_since: float | None = time.monotonic()  # not connected until it says so
        self._reported = False
        self._elsewhere: list[str] = []  # other groups whose broker is down
        self._shared_at = float("-inf")

    @property
    def up(self) -> bool:
        return self._down_since is None

    def check(self, conn: Conn) -> None:
        self._check(conn)
        if time.monotonic() - self._shared_at >= _SHARE_EVERY_S:
            self._shared_at = time.monotonic()
            groups.report_broker(conn, self.group, down=not self.up)
            down = groups.brokers_down(conn, besides=self.group, live_s=self.live_s)
            if down != self._elsewhere:
                log.warning("brokers of other ingest groups unreachable groups=%s:"
                            " node-offline timers held", ",".join(down) or "none")  # fmt: skip
            self._elsewhere = down

    def _check(self, conn: Conn) -> None:
        now = time.monotonic()
        if not self.connected():
            if self._down_since is None:
                self._down_since = now
                log.warning("broker unreachable from the leader: node-offline timers held")
            if not self._reported and now - self._down_since >= self.down_after_s:
                with conn.transaction():
                    opened = open_platform_incident(conn, now - self._down_since, self.group)
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
                resolve_platform_incidents(conn, "the broker is reachable again", self.group)
        log.info("broker reachable again after %.0f s: %d node-offline timers moved %s on",
                 now - self._down_since, moved, grace)  # fmt: skip
        self._down_since = None
        self._reported = False
        metrics.PLATFORM_BROKER_DOWN.set(0)

    def held_timers(self) -> str | None:
        """A LIKE pattern of the timer keys that must not fire now (None: all may)."""
        return None if self.up and not self._elsewhere else _NODE_OFFLINE_TIMERS


def _key_prefix(group: str) -> str:
    """The default group keeps the key it had before groups; another group's names it."""
    return PLATFORM_BROKER if group == groups.DEFAULT_GROUP else f"{PLATFORM_BROKER}:{group}"


def open_platform_incident(conn: Conn, down_s: float, group: str = groups.DEFAULT_GROUP) -> int:
    """One red incident per top of the territory (a city), for its operators; no task."""
    title = (Title(PLATFORM_BROKER) if group == groups.DEFAULT_GROUP
             else Title(f"{PLATFORM_BROKER}_group", {"group": group}))  # fmt: skip
    detail = {"down_s": round(down_s), "ingest_group": group}
    rows = conn.execute(
        """INSERT INTO incidents (dedup_key, rule, severity, title, title_code, title_params,
                                  venue_id, grid_id, path, detail, first_seen, last_seen,
                                  opened_at)
           SELECT %s || ':' || t.id, %s, %s, %s, %s, %s, NULL, t.id, t.path, %s, now(), now(),
                  clock_timestamp()
           FROM territory t WHERE t.parent_id IS NULL
           ON CONFLICT (dedup_key) WHERE status <> 'resolved' DO NOTHING
           RETURNING id""",
        (_key_prefix(group), PLATFORM_BROKER, Severity.RED.value, title.render("en"), title.code,
         Jsonb(title.params), Jsonb(detail)),
    ).fetchall()  # fmt: skip
    for (incident_id,) in rows:
        conn.execute(
            "INSERT INTO incident_events (incident_id, kind, actor, data) VALUES (%s, 'opened', %s, %s)",
            (incident_id, incidents.SYSTEM, Jsonb({"down_s": round(down_s)})),
        )
    return len(rows)


def resolve_platform_incidents(conn: Conn, reason: str, group: str = groups.DEFAULT_GROUP) -> int:
    """Resolve the group's own broker incidents (another group's broker may still be down)."""
    keys = conn.execute(
        """SELECT i.dedup_key FROM incidents i JOIN territory t ON t.parent_id IS NULL
                  AND i.dedup_key = %s || ':' || t.id
           WHERE i.rule = %s AND i.status <> 'resolved'""",
        (_key_prefix(group), PLATFORM_BROKER),
    ).fetchall()
    return sum(incidents.resolve(conn, str(k), reason) for (k,) in keys)
