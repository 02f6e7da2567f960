"""Batched, idempotent writes: one transaction per batch, the message id decides what is new.

Time series go in with COPY into a temporary staging table and `INSERT ... ON CONFLICT DO
NOTHING`, so a redelivered message is stored once. Births and deaths apply the presence rules.
What cannot be stored is recorded in `rejected_messages` in the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from gateway.codec import DecodeError, Inbound, RejectReason, decode_for_topic
from gateway.messages import (
    CameraAlert,
    CameraSnapshot,
    CameraStatus,
    CommandResult,
    DeviceMessage,
    DoorAccess,
    DoorForced,
    DoorHeldOpen,
    DoorState,
    NodeBirth,
    NodeDeath,
    Occupancy,
    SpeakerStatus,
)
from ingest import incidents, plausible, rules
from ingest.incidents import Applied
from ingest.registry import Registry
from ingest.tasks import DeadlinePolicy

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]

_BASE = ("ts", "id", "node_id", "device_id", "seq")
COLUMNS: dict[str, tuple[str, ...]] = {
    "door_events": (
        *_BASE, "type", "result", "credential", "direction", "reason",
        "open_s", "is_open", "locked", "mode",
    ),
    "occupancy": (*_BASE, "zone", "count", "entered", "exited"),
    "camera_alerts": (
        *_BASE, "alert_id", "phase", "kind", "zone", "score", "objects", "snapshot",
    ),
    "camera_snapshots": (*_BASE, "alert_id", "width", "height", "jpeg"),
    "camera_status": (*_BASE, "online", "fps", "detail"),
    "speaker_status": (*_BASE, "online", "volume", "playing", "clip", "fault"),
    "command_results": (*_BASE, "command_id", "status", "detail"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Received:
    """One MQTT message as it came off the wire, with what is needed to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int = 0  # message ids are only meaningful on the connection they came on


@dataclass(frozen=True, slots=True)
class Accepted:
    inbound: Inbound
    payload: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    topic: str
    reason: RejectReason
    detail: str
    payload: bytes


@dataclass(slots=True)
class BatchOutcome:
    """What one committed batch did."""

    stored: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    stale_deaths: int = 0
    new_ids: set[uuid.UUID] = field(default_factory=set)
    reactions: Applied = field(default_factory=Applied)


def _v(value: object) -> object:
    """Enum members go to the database as their values."""
    return getattr(value, "value", value)


def to_row(inbound: Inbound) -> tuple[str, tuple[object, ...]]:
    """The table and row for a device message (not births or deaths)."""
    m = inbound.message
    assert isinstance(m, DeviceMessage)
    base = (m.ts, m.id, inbound.topic.node, m.device, m.seq)
    match m:
        case DoorAccess():
            door = (
                m.result.value,
                m.credential,
                m.direction.value,
                _v(m.reason),
                None,
                None,
                None,
                None,
            )
            return "door_events", (*base, m.type.value, *door)
        case DoorForced():
            return "door_events", (*base, m.type.value, *(None,) * 8)
        case DoorHeldOpen():
            return "door_events", (*base, m.type.value, *(None,) * 4, m.open_s, True, None, None)
        case DoorState():
            return "door_events", (
                *base, m.type.value, *(None,) * 5, m.open, m.locked, m.mode.value,
            )  # fmt: skip
        case Occupancy():
            return "occupancy", (*base, m.zone, m.count, m.entered, m.exited)
        case CameraAlert():
            return "camera_alerts", (
                *base, m.alert_id, m.phase.value, m.kind.value, m.zone, m.score, m.objects,
                m.snapshot,
            )  # fmt: skip
        case CameraSnapshot():
            return "camera_snapshots", (*base, m.alert_id, m.width, m.height, m.image())
        case CameraStatus():
            return "camera_status", (*base, m.online, m.fps, m.detail)
        case SpeakerStatus():
            return "speaker_status", (
                *base, m.online, m.volume, m.playing, m.clip, _v(m.fault),
            )  # fmt: skip
        case CommandResult():
            return "command_results", (*base, m.command_id, m.status.value, m.detail)
    raise TypeError(f"no table for {type(m).__name__}")


class BatchWriter:
    """Turns received messages into rows and writes a batch in the caller's transaction."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_payload: int,
        payload_cap: int,
        book: rules.RuleBook | None = None,
        policy: DeadlinePolicy | None = None,
    ) -> None:
        self.registry = registry
        self.book = book or rules.RuleBook()
        self.policy = policy or DeadlinePolicy()
        self.max_payload = max_payload
        self.payload_cap = payload_cap

    def classify(self, items: Iterable[Received]) -> tuple[list[Accepted], list[Rejection]]:
        """Decode and registry-check each message; never raises for bad input."""
        accepted: list[Accepted] = []
        rejected: list[Rejection] = []
        for item in items:
            try:
                inbound = decode_for_topic(item.topic, item.payload, self.max_payload)
                self.registry.check(inbound)
                self._plausible(inbound)
            except DecodeError as exc:
                rejected.append(Rejection(item.topic, exc.reason, exc.detail, item.payload))
                continue
            accepted.append(Accepted(inbound, item.payload))
        return accepted, rejected

    def _plausible(self, inbound: Inbound) -> None:
        """Readings far outside the device's plausible range are rejected (ingest.plausible)."""
        plausible.check(inbound, self.registry.venue_of_node(inbound.topic.node))

    def write(
        self, conn: Conn, accepted: Sequence[Accepted], rejected: Sequence[Rejection]
    ) -> BatchOutcome:
        """Write everything inside the current transaction; raises on any database error."""
        outcome = BatchOutcome(rejected=list(rejected))
        by_table: dict[str, list[tuple[object, ...]]] = {}
        presence: list[Inbound] = []
        for a in accepted:
            if isinstance(a.inbound.message, NodeBirth | NodeDeath):
                presence.append(a.inbound)
            else:
                table, row = to_row(a.inbound)
                by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            new = self._insert_series(conn, table, rows)
            outcome.stored[table] += len(new)
            outcome.duplicates += len(rows) - len(new)
            outcome.new_ids |= new
        changes = [c for inbound in presence if (c := self._apply_presence(conn, inbound, outcome))]
        self._update_device_state(
            conn, [a for a in accepted if isinstance(a.inbound.message, DeviceMessage)]
        )
        self._record_rejections(conn, outcome.rejected)
        self._react(conn, accepted, changes, outcome)
        return outcome

    def _react(
        self,
        conn: Conn,
        accepted: Sequence[Accepted],
        presence: list[tuple[Inbound, bool]],
        outcome: BatchOutcome,
    ) -> None:
        """Rules on what is new in this batch, and command results onto their commands."""
        signals: list[rules.Signal] = []
        results: list[CommandResult] = []
        now = datetime.now(UTC)
        for inbound, died in presence:
            venue = self.registry.venue_of_node(inbound.topic.node)
            if venue is not None:
                signals += rules.node_signals(inbound, venue, self.book, died=died, now=now)
        for a in accepted:
            msg = a.inbound.message
            if not isinstance(msg, DeviceMessage) or msg.id not in outcome.new_ids:
                continue  # births and deaths are above; a redelivery already had its effect
            if isinstance(msg, CommandResult):
                results.append(msg)
            venue = self.registry.venue_of_node(a.inbound.topic.node)
            if venue is not None:
                signals += rules.evaluate(conn, a.inbound, venue, self.book)
        if results:
            conn.execute(
                """UPDATE commands c SET state = u.status::command_state, detail = u.detail,
                       result_at = now()
                   FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[])
                        AS u(id, status, detail, device)
                   WHERE c.id = u.id AND c.device_id = u.device
                     AND c.state IN ('queued', 'sent', 'expired')""",
                (
                    [r.command_id for r in results],
                    [r.status.value for r in results],
                    [r.detail for r in results],
                    [r.device for r in results],
                ),
            )
        outcome.reactions = incidents.apply(conn, signals, self.policy)

    def write_isolating(
        self, conn: Conn, accepted: Sequence[Accepted], rejected: Sequence[Rejection]
    ) -> BatchOutcome:
        """Write message by message, each in a savepoint; what the database refuses is rejected."""
        total = BatchOutcome()
        refused: list[Rejection] = list(rejected)
        for a in accepted:
            try:
                with conn.transaction():
                    one = self.write(conn, [a], [])
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                log.warning("database refused message topic=%s error=%s", a.inbound.topic, exc)
                refused.append(
                    Rejection(
                        str(a.inbound.topic), RejectReason.UNSTORABLE, str(exc).strip(), a.payload
                    )
                )
                continue
            total.stored.update(one.stored)
            total.duplicates += one.duplicates
            total.stale_deaths += one.stale_deaths
            total.new_ids |= one.new_ids
            total.reactions.merge(one.reactions)
        self._record_rejections(conn, refused)
        total.rejected = refused
        return total

    @staticmethod
    def prepare(conn: Conn) -> None:
        """Create this session's staging tables; once per new (autocommit) connection."""
        for table in COLUMNS:
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                ).format(sql.Identifier(f"stage_{table}"), sql.Identifier(table))
            )

    def _insert_series(
        self, conn: Conn, table: str, rows: list[tuple[object, ...]]
    ) -> set[uuid.UUID]:
        cols = sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
        stage = sql.Identifier(f"stage_{table}")
        with conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING RETURNING id"
                ).format(sql.Identifier(table), cols, cols, stage)
            )
            new = {r[0] for r in cur.fetchall()}
            # Staging rows of a failed transaction vanish with it; of a good one, at commit.
            cur.execute(sql.SQL("DELETE FROM {}").format(stage))
        return new  # type: ignore[return-value]

    def _apply_presence(
        self, conn: Conn, inbound: Inbound, outcome: BatchOutcome
    ) -> tuple[Inbound, bool] | None:
        """Apply a birth or death; (it, whether the node died) if it changed the node's state."""
        m = inbound.message
        assert isinstance(m, NodeBirth | NodeDeath)
        node = inbound.topic.node
        inserted = conn.execute(
            "INSERT INTO presence_events (ts, id, node_id, seq, type, bdseq) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (m.ts, m.id, node, m.seq, m.type.value, m.bdseq),
        ).fetchone()
        if inserted is None:  # a redelivery: its effect was applied when it was first stored
            outcome.duplicates += 1
            return None
        outcome.stored["presence_events"] += 1
        outcome.new_ids.add(m.id)
        if isinstance(m, NodeBirth):
            return (inbound, False) if self._apply_birth(conn, node, m) else None
        if not self._apply_death(conn, node, m):
            outcome.stale_deaths += 1
            conn.execute(
                "UPDATE presence_events SET stale = true WHERE id = %s AND ts = %s", (m.id, m.ts)
            )
            log.info("stale death ignored node=%s bdseq=%s", node, m.bdseq)
            return None
        return inbound, True

    def _apply_birth(self, conn: Conn, node: str, m: NodeBirth) -> bool:
        """Mark the node and its listed devices online; False for a birth older than the last."""
        inventory = [d.model_dump(mode="json", exclude_none=True) for d in m.devices]
        took = conn.execute(
            """INSERT INTO node_presence AS p (node_id, online, bdseq, birth_ts, last_seen, software, inventory)
               VALUES (%(node)s, true, %(bdseq)s, %(ts)s, %(ts)s, %(software)s, %(inventory)s)
               ON CONFLICT (node_id) DO UPDATE SET
                   online = true, bdseq = excluded.bdseq, birth_ts = excluded.birth_ts,
                   last_seen = GREATEST(p.last_seen, excluded.last_seen),
                   software = excluded.software, inventory = excluded.inventory, updated_at = now()
               WHERE p.birth_ts IS NULL OR excluded.birth_ts >= p.birth_ts
               RETURNING 1""",
            {
                "node": node,
                "bdseq": m.bdseq,
                "ts": m.ts,
                "software": m.software,
                "inventory": Jsonb(inventory),
            },
        ).fetchone()
        if took is None:  # an older birth arriving after a newer one
            return False
        listed = [d.id for d in m.devices]
        conn.execute(
            """INSERT INTO device_status AS s (device_id, online, last_seen)
               SELECT id, id = ANY(%(listed)s), %(ts)s FROM devices WHERE node_id = %(node)s ORDER BY id
               ON CONFLICT (device_id) DO UPDATE SET online = excluded.online,
                   last_seen = CASE WHEN excluded.online THEN GREATEST(s.last_seen, excluded.last_seen)
                                    ELSE s.last_seen END,
                   updated_at = now()""",
            {"listed": listed, "ts": m.ts, "node": node},
        )
        return True

    def _apply_death(self, conn: Conn, node: str, m: NodeDeath) -> bool:
        """Mark the node and its devices offline; False if the death is stale."""
        died = conn.execute(
            "UPDATE node_presence SET online = false, death_ts = now(), updated_at = now()"
            " WHERE node_id = %s AND bdseq = %s AND online RETURNING 1",
            (node, m.bdseq),
        ).fetchone()
        if died is None:
            return False
        conn.execute(
            """UPDATE device_status SET online = false, updated_at = now()
               WHERE device_id IN (SELECT id FROM devices WHERE node_id = %s ORDER BY id)""",
            (node,),
        )
        return True

    def _update_device_state(self, conn: Conn, accepted: Sequence[Accepted]) -> None:
        """Last-seen per device and the newest message of each type per device."""
        seen: dict[str, tuple[datetime, int, bool]] = {}
        latest: dict[tuple[str, str], Accepted] = {}
        for a in accepted:
            m = a.inbound.message
            assert isinstance(m, DeviceMessage)
            life = rules.sign_of_life(m)
            if life is not None and (m.device not in seen or m.ts >= seen[m.device][0]):
                seen[m.device] = (m.ts, m.seq, life)  # down by its own report: seen, not online
            if isinstance(m, CameraSnapshot):
                continue  # a picture, not a state: it stays in camera_snapshots
            key = (m.device, m.type)
            prev = latest.get(key)
            if prev is None or m.ts >= prev.inbound.message.ts:
                latest[key] = a
        if seen:
            # Sorted, so that concurrent workers lock rows in the same order and cannot deadlock.
            devices = sorted(seen)
            conn.execute(
                """INSERT INTO device_status AS s (device_id, online, last_seen, last_seq)
                   SELECT d, o, t, q
                   FROM unnest(%s::text[], %s::boolean[], %s::timestamptz[], %s::bigint[]) AS u(d, o, t, q)
                   ON CONFLICT (device_id) DO UPDATE SET
                       online = CASE WHEN excluded.last_seen >= s.last_seen THEN excluded.online
                                     ELSE s.online END,
                       last_seen = GREATEST(s.last_seen, excluded.last_seen),
                       last_seq = CASE WHEN excluded.last_seen >= s.last_seen THEN excluded.last_seq
                                       ELSE s.last_seq END,
                       updated_at = now()""",
                (
                    devices,
                    [seen[d][2] for d in devices],
                    [seen[d][0] for d in devices],
                    [seen[d][1] for d in devices],
                ),
            )
        if not latest:
            return
        keys = sorted(latest)
        rows = [latest[k] for k in keys]
        conn.execute(
            """INSERT INTO device_latest AS l (device_id, type, ts, id, payload)
               SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::uuid[], %s::jsonb[])
               ON CONFLICT (device_id, type) DO UPDATE SET ts = excluded.ts, id = excluded.id,
                   payload = excluded.payload
               WHERE excluded.ts >= l.ts""",
            (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [r.inbound.message.ts for r in rows],
                [r.inbound.message.id for r in rows],
                [r.payload.decode() for r in rows],
            ),
        )

    def _record_rejections(self, conn: Conn, rejected: Sequence[Rejection]) -> None:
        if not rejected:
            return
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO rejected_messages (topic, node_id, reason, detail, payload, payload_size, digest)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (topic, digest) DO UPDATE SET
                       occurrences = rejected_messages.occurrences + 1, last_seen = now()""",
                [
                    (
                        _clean_text(r.topic)[:1024],  # it is indexed: keep it well under 2 kB
                        _node_of(r.topic),
                        r.reason.value,
                        _clean_text(r.detail)[:2000],
                        r.payload[: self.payload_cap],
                        len(r.payload),
                        hashlib.sha256(r.payload).digest(),
                    )
                    for r in rejected
                ],
            )


def _clean_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL; a rejected message's topic or detail may contain one."""
    return text.replace("\x00", "\\0")


def _node_of(topic: str) -> str | None:
    parts = topic.split("/")
    return _clean_text(parts[3])[:64] if len(parts) > 3 else None
