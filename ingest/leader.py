"""The work that must happen in exactly one place however many ingest workers run. Every
worker runs a Leader; only one holding a PostgreSQL advisory lock acts, and a worker that dies
releases it with its connection.

Two kinds of work, two locks (see ingest.groups for ingest groups, one per broker):
- the broker's work, for the nodes of the group's areas: publishing their commands, raising an
  incident for those undelivered, the duties the composition root adds (node configurations,
  broker accounts), the group's worker slots, its nodes' silent devices. One leader per group
  (a lock keyed by the group's name), on the group's own broker connection.
- the database's work: timers (rules with durations, task deadlines), expiring unanswered
  commands, retention, and the `database_duties` (notifications). One leader of all the groups
  takes it (LEADER_LOCK), beside its group's work. Timers are also deleted in the transaction
  that acts on them, so even two leaders could not fire one twice.
With one group (the default) its leader does both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import psycopg

from casework import incidents, tasks
from casework.emergency import COMMANDS_CHANNEL
from casework.rules import Rule, RuleBook
from casework.tasks import DeadlinePolicy
from gateway.signing import Signer
from ingest import commands, heartbeat, metrics
from ingest.commands import CommandPolicy, Publish
from ingest.groups import WHOLE, Scope, within
from ingest.platform import BrokerWatch
from ingest.registry import Registry

log = logging.getLogger(__name__)
SNAPSHOT_RETENTION_DAYS = 90  # as the retention policy in migrations/006_camera.timescale.sql
CLIP_RETENTION_DAYS = 30  # as the retention policy in migrations/029_camera_clips.timescale.sql
CLIP_PARTS_KEPT_HOURS = 24  # the parts of a clip that never completed

Conn = psycopg.Connection[tuple[object, ...]]
REGISTRY_CHANNEL = "gridwatch_registry"  # 013: 'node:<id>' and 'broker:<id>' on registry changes


class Duty(Protocol):
    """Leader work wired in from outside the ingest by the composition root (the registry's
    broker reconcile and node configuration): run at the start of leadership, every
    `interval_s`, and at once when the registry announces a change on REGISTRY_CHANNEL."""

    name: str
    interval_s: float

    def run(self, conn: Conn, publish: Publish, changed: frozenset[str]) -> None:
        """One round; `changed` holds the registry notices since the last round (empty when
        the round is due by time). Exceptions are logged and the round is tried again later."""

    def stop(self) -> None:
        """The lead is lost or the worker stops: let go of what only a leader may hold (the
        broker's control connection). The next round, if the lead comes back, starts afresh."""


LEADER_LOCK = 0x67726965  # "grie": one leader of the database's work among all ingest workers
_TICK_S = 0.25
_DATABASE_LEAD_EVERY_S = 2.0  # how often a group's leader tries for the database's work
_SWEEP_EVERY_S = 30.0
TIMER_BATCH = 500  # timers fired per transaction


class Leader:
    """Runs in a thread of every ingest worker; works only while it holds the leader lock."""

    def __init__(
        self,
        dsn: str,
        registry: Registry,
        book: RuleBook,
        policy: DeadlinePolicy,
        publish: Publish,
        stop: threading.Event,
        name: str,
        broker: BrokerWatch | None = None,
        *,
        rejected_retention_days: int = 30,
        slot_stale_s: float = 30.0,
        session_expiry_s: int = 7 * 86_400,
        signer: Signer | None = None,
        command_policy: CommandPolicy | None = None,
        duties: Sequence[Duty] = (),
        scope: Scope = WHOLE,
        database_duties: Sequence[Duty] = (),
    ) -> None:
        """`signer`: the platform's command key; without it commands go unsigned, and the edge
        refuses them. `duties`: work the composition root adds (see Duty), done for the group's
        nodes (`scope`) by its leader; `database_duties`: done by one leader of all groups."""
        self.dsn = dsn
        self.registry = registry
        self.book = book
        self.policy = policy
        self.publish = publish
        self.stop = stop
        self.name = name
        self.signer = signer
        self.commands = command_policy or CommandPolicy()
        self.leading = False
        self.broker = broker
        self.rejected_retention_days = rejected_retention_days
        self._conn: Conn | None = None
        self._last_sweep = 0.0
        self.slot_stale_s = slot_stale_s
        self.session_expiry_s = session_expiry_s
        self._last_slot_check = 0.0
        self._silent: set[str] = set()  # client ids of the slots reported as not consumed
        self.scope = scope
        # Commands go out on a thread of their own, while this worker leads (see Publisher).
        self.publisher = commands.Publisher(dsn, publish, signer, scope.param, name)
        self.duties = list(duties)
        self.database_duties = list(database_duties)
        self.database_lead = False
        self._database_tried = float("-inf")
        self._duty_due: dict[str, float] = {}  # monotonic time each duty runs next
        self._registry_notices: set[str] = set()
        self.thread = threading.Thread(target=self._run, name="leader", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = self._connection()
                if not self.leading:
                    self._try_lead(conn)
                if self.leading:
                    self.tick(conn)
                    self._wait(conn, _TICK_S)
                else:
                    self.stop.wait(2.0)
            except psycopg.Error as exc:
                log.warning("leader connection lost: %s", str(exc).strip())
                self._drop()
                self.stop.wait(2.0)
            except Exception:
                log.exception("leader failed; stepping down and starting again")
                self._drop()
                self.stop.wait(2.0)
        self._drop()

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.dsn, autocommit=True, application_name=f"gridwatch-leader-{self.name}"
            )
            self.leading = False
        return self._conn

    def _drop(self) -> None:
        if self.leading:
            log.info("leader stepping down worker=%s", self.name)
        self.leading = False
        self.database_lead = False
        self.publisher.stop()
        for duty in [*self.duties, *self.database_duties]:
            try:
                duty.stop()
            except Exception:
                log.exception("leader duty did not stop cleanly duty=%s", duty.name)
        metrics.LEADER.set(0)
        metrics.DATABASE_LEADER.set(0)
        metrics.UNCONSUMED_SLOTS.set(0)  # the next leader reports them
        self._silent = set()
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _try_lead(self, conn: Conn) -> None:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.scope.lock_key,)).fetchone()
        if row and row[0]:
            self.leading = True
            metrics.LEADER.set(1)
            conn.execute(f"LISTEN {COMMANDS_CHANNEL}")
            conn.execute(f"LISTEN {REGISTRY_CHANNEL}")
            self._duty_due = {}  # every duty runs at once on taking the lead
            self.publisher.start()
            self._database_tried = float("-inf")
            log.info("leader elected worker=%s ingest_group=%s areas=%s", self.name,
                     self.scope.group, self.scope.describe())  # fmt: skip

    def _lead_database(self, conn: Conn) -> bool:
        """Whether this group's leader also does the database's work (trying for it now and
        then: the leader that had it may be another group's, and stop)."""
        if self.database_lead:
            return True
        if time.monotonic() - self._database_tried < _DATABASE_LEAD_EVERY_S:
            return False
        self._database_tried = time.monotonic()
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
        if row and row[0]:
            self.database_lead = True
            metrics.DATABASE_LEADER.set(1)
            self._duty_due = {d: t for d, t in self._duty_due.items()
                              if d not in {x.name for x in self.database_duties}}  # fmt: skip
            log.info("leader takes the database's work (timers, retention, notifications)"
                     " worker=%s ingest_group=%s", self.name, self.scope.group)  # fmt: skip
        return self.database_lead

    def _wait(self, conn: Conn, timeout_s: float) -> None:
        """Sleep until the next tick, or until a command is queued or the registry changes."""
        for notice in conn.notifies(timeout=timeout_s, stop_after=1):
            if notice.channel == REGISTRY_CHANNEL:
                self._registry_notices.add(notice.payload)

    def _run_duties(self, conn: Conn, database: bool) -> None:
        # Notices that arrived during other work are waiting in the connection, unread.
        for notice in conn.notifies(timeout=0):
            if notice.channel == REGISTRY_CHANNEL:
                self._registry_notices.add(notice.payload)
        changed = frozenset(self._registry_notices)
        self._registry_notices.clear()
        now = time.monotonic()
        for duty in [*self.duties, *(self.database_duties if database else [])]:
            if not changed and now < self._duty_due.get(duty.name, 0.0):
                continue
            self._duty_due[duty.name] = now + duty.interval_s
            try:
                duty.run(conn, self.publish, changed)
            except psycopg.Error:
                raise  # the connection: step down and start again
            except Exception:
                log.exception("leader duty failed duty=%s; tried again in %.0f s", duty.name,
                              duty.interval_s)  # fmt: skip

    def tick(self, conn: Conn) -> None:
        """One round of leader work."""
        self.book.refresh_if_due(conn)
        if self.broker is not None:
            self.broker.check(conn)
        database = self._lead_database(conn)
        if database:
            while self._fire_due_timers(conn) >= TIMER_BATCH:
                pass  # more may be due
        areas = self.scope.param()
        if database:
            commands.expire(conn)
        commands.alarm(conn, self.registry, self.book, self.policy, self.commands, areas=areas)
        if self.duties or (database and self.database_duties):
            self._run_duties(conn, database)
        if time.monotonic() - self._last_slot_check >= self.slot_stale_s / 4:
            self._last_slot_check = time.monotonic()
            self._check_slots(conn)
        if time.monotonic() - self._last_sweep >= _SWEEP_EVERY_S:
            self._last_sweep = time.monotonic()
            self._sweep_silent_devices(conn)
            if database:
                self._retention(conn)

    def _retention(self, conn: Conn) -> None:
        """What the database keeps only a while (the database's work: one leader does it)."""
        conn.execute("DELETE FROM changes WHERE at < now() - interval '1 day'")
        # TimescaleDB drops old snapshot and clip chunks by itself; plain PostgreSQL needs this.
        conn.execute(
            "DELETE FROM camera_snapshots WHERE ts < now() - make_interval(days => %s)",
            (SNAPSHOT_RETENTION_DAYS,),
        )
        conn.execute(
            "DELETE FROM camera_clips WHERE ts < now() - make_interval(days => %s)",
            (CLIP_RETENTION_DAYS,),
        )
        # Parts whose clip never completed: the edge dropped the others from a full outbox.
        conn.execute(
            "DELETE FROM camera_clip_parts WHERE received_at < now() - make_interval(hours => %s)",
            (CLIP_PARTS_KEPT_HOURS,),
        )
        conn.execute(
            "DELETE FROM rejected_messages WHERE last_seen < now() - make_interval(days => %s)",
            (self.rejected_retention_days,),
        )

    # --- timers -------------------------------------------------------------------------------

    def _fire_due_timers(self, conn: Conn, limit: int = TIMER_BATCH) -> int:
        """Fire up to `limit` due timers; how many fired. Rule timers (which raise incidents)
        and task timers (which lock tasks) go in separate transactions, each taking its rows in
        the order a worker does, so the leader never holds a task while waiting for an incident
        a worker holds, or the reverse."""
        held = self.broker.held_timers() if self.broker is not None else None
        due = [
            (str(kind), str(key))
            for kind, key in conn.execute(
                """SELECT kind, key FROM timers WHERE due_at <= now()
                     AND (%s::text IS NULL OR key NOT LIKE %s) ORDER BY due_at LIMIT %s""",
                (held, held, limit),
            )
        ]
        task_kinds = (tasks.TIMER_WARN, tasks.TIMER_DEADLINE)
        fired = 0
        for group in (
            [t for t in due if t[0] not in task_kinds],
            [t for t in due if t[0] in task_kinds],
        ):
            if group:
                fired += self._fire_group(conn, group)
        return fired

    def _fire_group(self, conn: Conn, due: list[tuple[str, str]]) -> int:
        """Fire these timers in one transaction. Should it fail, each is fired in a transaction
        of its own, so that one bad timer is dropped (and counted) without holding up the rest;
        a deadlock or a cancelled statement leaves them all for the next round."""
        try:
            with conn.transaction():
                return self._fire(conn, due)
        except (psycopg.errors.TransactionRollback, psycopg.errors.QueryCanceled) as exc:
            log.warning("timer batch of %d left for the next round: %s", len(due), exc)
            return 0
        except psycopg.OperationalError:
            raise  # the connection is gone: the caller reconnects
        except (psycopg.Error, ValueError, KeyError) as exc:
            log.warning("timer batch of %d failed, firing them one by one: %s", len(due), exc)
        fired = 0
        for timer in due:
            try:
                with conn.transaction():
                    fired += self._fire(conn, [timer])
            except (psycopg.errors.TransactionRollback, psycopg.errors.QueryCanceled) as exc:
                log.warning("timer left for the next round kind=%s key=%s: %s", *timer, exc)
            except psycopg.OperationalError:
                raise
            except (psycopg.Error, ValueError, KeyError) as exc:
                kind, key = timer
                log.exception("timer failed, dropped kind=%s key=%s: %s", kind, key, exc)
                metrics.TIMER_FAILURES.inc()
                conn.execute("DELETE FROM timers WHERE kind = %s AND key = %s", (kind, key))
        return fired

    def _fire(self, conn: Conn, due: list[tuple[str, str]]) -> int:
        """Fire these timers in the caller's transaction; how many fired (a timer moved or
        cancelled meanwhile, or whose task a person is acting on right now, is left)."""
        # A task timer locks its task before the timer row, in the same order as a person acting
        # on the task does, so the two never deadlock; a task locked by a person just now is
        # left for the next round.
        task_kinds = (tasks.TIMER_WARN, tasks.TIMER_DEADLINE)
        asked = sorted({int(key) for kind, key in due if kind in task_kinds})
        free = {
            int(str(r[0]))
            for r in conn.execute(
                "SELECT id FROM tasks WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE SKIP LOCKED",
                (asked,),
            )
        } if asked else set()  # fmt: skip
        take = [(k, key) for k, key in due if k not in task_kinds or int(key) in free]
        rows = conn.execute(
            """DELETE FROM timers t USING unnest(%s::text[], %s::text[]) AS u(kind, key)
               WHERE t.kind = u.kind AND t.key = u.key AND t.due_at <= now()
               RETURNING t.kind, t.key, t.data, t.due_at""",
            ([k for k, _ in take], [key for _, key in take]),
        ).fetchall()
        signals: list[incidents.Signal] = []
        for row in sorted(rows, key=lambda r: (r[3], r[0], r[1])):
            kind, key, data, due_at = str(row[0]), str(row[1]), row[2], row[3]
            assert isinstance(due_at, datetime) and isinstance(data, dict | None)
            metrics.TIMER_LATENESS.observe(max(time.time() - due_at.timestamp(), 0.0))
            metrics.TIMERS_FIRED.labels(kind=kind).inc()
            match kind:
                case incidents.TIMER_RULE:
                    assert isinstance(data, dict)
                    signal = incidents.decode(data, self.registry.snapshot.venues)
                    if signal is not None and _still_true(conn, signal):
                        signals.append(signal)
                case tasks.TIMER_WARN:
                    tasks.on_warn(conn, int(key))
                case tasks.TIMER_DEADLINE:
                    tasks.on_deadline(conn, int(key), self.policy)
                case _:
                    log.error("unknown timer kind=%s key=%s: dropped", kind, key)
        incidents.apply(conn, signals, self.policy)
        return len(rows)

    # --- worker slots -------------------------------------------------------------------------

    def _check_slots(self, conn: Conn) -> None:
        """Report slots whose broker session queues traffic that no worker consumes."""
        silent = heartbeat.silent_slots(
            conn, stale_s=self.slot_stale_s, session_expiry_s=self.session_expiry_s,
            group=self.scope.group,
        )  # fmt: skip
        metrics.UNCONSUMED_SLOTS.set(len(silent))
        for s in silent:
            if s.client_id not in self._silent:
                log.error(
                    "ingest slot %d (client id %s, last pid %d on %s) has had no worker for %.0fs:"
                    " the broker queues its share of the traffic, alarms included, unread;"
                    " start `gridwatch ingest --slot %d` or retire the slot with"
                    " `gridwatch ingest --slot %d --drain`",
                    s.slot, s.client_id, s.pid, s.host, s.silent_s, s.slot, s.slot,
                )  # fmt: skip
        now = {s.client_id for s in silent}
        for back in sorted(self._silent - now):
            log.info("ingest slot consumed again client_id=%s", back)
        self._silent = now

    # --- silent devices -----------------------------------------------------------------------

    def _sweep_silent_devices(self, conn: Conn) -> None:
        """Devices of the group's online nodes that stopped reporting: the rule `device_offline`
        (a node that is offline stands in for its devices, so they are not swept)."""
        # The shortest silence any venue allows; each venue's own limit is applied below.
        silence = self.book.smallest(Rule.DEVICE_OFFLINE, "limit")
        rows = conn.execute(
            f"""SELECT s.device_id, d.node_id, s.last_seen,
                      extract(epoch FROM now() - s.last_seen)::float8
               FROM device_status s
               JOIN devices d ON d.id = s.device_id
               JOIN node_presence p ON p.node_id = d.node_id
               JOIN edge_nodes n ON n.id = d.node_id
               JOIN venues v ON v.id = n.venue_id
               JOIN territory t ON t.id = v.grid_id
               WHERE p.online AND d.kind IN ('door', 'counter', 'speaker')
                 AND {within("t.path")}
                 AND s.last_seen < now() - make_interval(secs => %s)
                 AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.status <> 'resolved'
                                 AND i.dedup_key = 'device_offline:' || s.device_id)
               ORDER BY s.last_seen LIMIT 1000""",
            (self.scope.param(), silence),
        ).fetchall()
        signals: list[incidents.Signal] = []
        for device, node, last_seen, silent_s in rows:
            venue = self.registry.venue_of_node(str(node))
            if venue is None:
                continue
            s = self.book.settings(Rule.DEVICE_OFFLINE, venue)
            if s.enabled and float(str(silent_s)) >= s.limit:
                signals.append(
                    incidents.Raise(
                        Rule.DEVICE_OFFLINE, str(device), s.severity, venue, last_seen,  # type: ignore[arg-type]
                        device=str(device), node=str(node),
                        detail={"silent_since": str(last_seen)},
                    )
                )  # fmt: skip
        if signals:
            with conn.transaction():
                incidents.apply(conn, signals, self.policy)


def _still_true(conn: Conn, signal: incidents.Raise) -> bool:
    """Whether a rule timer's condition still holds when it fires: a clear signal handled by
    another worker at the same moment may have missed the timer (it was not committed yet)."""
    if signal.rule is Rule.NODE_OFFLINE:
        row = conn.execute(
            "SELECT online FROM node_presence WHERE node_id = %s", (signal.node,)
        ).fetchone()
        return row is not None and row[0] is False
    if signal.rule in (Rule.OVER_CAPACITY, Rule.INSIDE_WHEN_CLOSED) and signal.device:
        row = conn.execute(
            "SELECT (payload->>'count')::int FROM device_latest"
            " WHERE device_id = %s AND type = 'occupancy'",
            (signal.device,),
        ).fetchone()
        count = int(str(row[0])) if row is not None else 0
        if signal.rule is Rule.OVER_CAPACITY:
            return count > (signal.venue.capacity or 0)
        return count > 0
    return True
