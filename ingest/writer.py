"""Batched, idempotent writes: one transaction per batch, the message id decides what is new.

Time series go in with COPY into a temporary staging table and `INSERT ... ON CONFLICT DO
NOTHING`, so a redelivered message is stored once. Births and deaths apply the presence rules.
What cannot be stored is recorded in `rejected_messages` in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from casework import incidents, rules
from casework.incidents import Applied
from casework.sqljson import records
from casework.tasks import DeadlinePolicy
from casework.venues import VenueInfo
from gateway import topics
from gateway.codec import DecodeError, Inbound, RejectReason, decode_for_topic
from gateway.messages import (
    CLIP_MAX_BYTES,
    CameraAlert,
    CameraClip,
    CameraSnapshot,
    CameraStatus,
    CommandResult,
    ConfigResult,
    ConfigStatus,
    DeviceHealth,
    DeviceMessage,
    DoorAccess,
    DoorForced,
    DoorHeldOpen,
    DoorState,
    Envelope,
    NodeBirth,
    NodeDeath,
    Occupancy,
    SpeakerStatus,
)
from ingest import clips, commands, plausible
from ingest.registry import Registry

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
# A device clock may run this far ahead before its messages are taken as sent now.
MAX_CLOCK_AHEAD_S = 300.0

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
    "camera_clip_parts": (
        *_BASE, "clip_id", "alert_id", "part", "parts", "mime", "width", "height", "fps",
        "started_at", "ended_at", "size", "sha256", "data",
    ),
    "camera_status": (*_BASE, "online", "fps", "detail"),
    "speaker_status": (*_BASE, "online", "volume", "playing", "clip", "fault"),
    "command_results": (*_BASE, "command_id", "status", "detail"),
    "device_health": (
        *_BASE, "online", "condition", "detail", "faults", "clock_offset_s",
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Received:
    """One MQTT message as it came off the wire, with what is needed to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int = 0  # message ids are only meaningful on the connection they came on
    retained: bool = False  # published retained (the ingest subscribes retain-as-published)


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
    receipt: tuple[str, str, int] | None = None  # (site, node, seq) of a known node's message


@dataclass(slots=True)
class BatchOutcome:
    """What one committed batch did."""

    stored: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    stale_deaths: int = 0
    late: int = 0  # states older than the device's latest: stored, judged by no rule
    new_ids: set[uuid.UUID] = field(default_factory=set)
    reactions: Applied = field(default_factory=Applied)
    # What each node may forget: (site, node) -> seqs stored, or recorded as rejected.
    receipts: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    clock_ahead: dict[str, float] = field(default_factory=dict)  # node -> seconds ahead, clamped
    answered: list[uuid.UUID] = field(default_factory=list)  # commands their results closed

    def merge(self, other: BatchOutcome) -> None:
        self.stored.update(other.stored)
        self.duplicates += other.duplicates
        self.stale_deaths += other.stale_deaths
        self.late += other.late
        self.new_ids |= other.new_ids
        self.reactions.merge(other.reactions)
        for target, seqs in other.receipts.items():
            self.receipts.setdefault(target, []).extend(seqs)
        for node, ahead in other.clock_ahead.items():
            self.clock_ahead[node] = max(ahead, self.clock_ahead.get(node, 0.0))

    def confirm(self, site: str, node: str, seq: int) -> None:
        self.receipts.setdefault((site, node), []).append(seq)


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
        case CameraClip():
            return "camera_clip_parts", (
                *base, m.clip_id, m.alert_id, m.part, m.parts, m.mime, m.width, m.height, m.fps,
                m.start, m.end, m.size, m.sha256, m.chunk(),
            )  # fmt: skip
        case CameraStatus():
            return "camera_status", (*base, m.online, m.fps, m.detail)
        case SpeakerStatus():
            return "speaker_status", (
                *base, m.online, m.volume, m.playing, m.clip, _v(m.fault),
            )  # fmt: skip
        case CommandResult():
            return "command_results", (*base, m.command_id, m.status.value, m.detail)
        case DeviceHealth():
            return "device_health", (
                *base, m.online, m.condition.value, m.detail, json.dumps(m.faults, sort_keys=True),
                m.clock_offset_s,
            )  # fmt: skip
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
        max_clock_ahead_s: float = MAX_CLOCK_AHEAD_S,
        rejected_per_node: int = 1000,
        clip_max_bytes: int = CLIP_MAX_BYTES,
        clip_max_incomplete: int = clips.DEFAULT_MAX_INCOMPLETE,
    ) -> None:
        self.registry = registry
        self.book = book or rules.RuleBook()
        self.policy = policy or DeadlinePolicy()
        self.max_payload = max_payload
        self.payload_cap = payload_cap
        self.max_clock_ahead = timedelta(seconds=max_clock_ahead_s)
        self.rejected_per_node = rejected_per_node
        self.clip_max_bytes = clip_max_bytes
        self.clip_max_incomplete = clip_max_incomplete

    def classify(self, items: Iterable[Received]) -> tuple[list[Accepted], list[Rejection]]:
        """Decode and registry-check each message, and bring clocks from the future back to now;
        never raises for bad input."""
        accepted: list[Accepted] = []
        rejected: list[Rejection] = []
        now = datetime.now(UTC)
        for item in items:
            if not item.payload:
                continue  # nothing to store: how a retained message is deleted (see the worker)
            try:
                inbound = decode_for_topic(item.topic, item.payload, self.max_payload)
                self.registry.check(inbound)
                plausible.check(inbound, self.registry.venue_of_node(inbound.topic.node))
            except DecodeError as exc:
                rejected.append(
                    Rejection(
                        item.topic, exc.reason, exc.detail, item.payload, self._receipt_for(item)
                    )
                )
                continue
            accepted.append(Accepted(self._clamped(inbound, now), item.payload))
        return accepted, rejected

    def _clamped(self, inbound: Inbound, now: datetime) -> Inbound:
        """A message dated more than a few minutes ahead is taken as sent now: a device clock in
        the future must not decide anything (a birth dated 2099 would outrank every real one).
        The node's clock error is reported, not hidden."""
        m = inbound.message
        if not isinstance(m, Envelope) or m.ts <= now + self.max_clock_ahead:
            return inbound
        ahead = (m.ts - now).total_seconds()
        log.warning("message from the future taken as now node=%s type=%s ahead_s=%.0f",
                    inbound.topic.node, m.type, ahead)  # fmt: skip
        return Inbound(inbound.topic, m.model_copy(update={"ts": now}), ahead_s=ahead)

    def _receipt_for(self, item: Received) -> tuple[str, str, int] | None:
        """(site, node, seq) of a rejected message from a registered node, so the node can
        forget it: it is recorded, and sending it again cannot help."""
        try:
            topic = topics.parse(item.topic)
            seq = json.loads(item.payload).get("seq")
        except (ValueError, AttributeError):
            return None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            return None
        if self.registry.snapshot.node_site.get(topic.node) != topic.site:
            return None
        return topic.site, topic.node, seq

    def write(
        self, conn: Conn, accepted: Sequence[Accepted], rejected: Sequence[Rejection]
    ) -> BatchOutcome:
        """Write everything inside the current transaction; raises on any database error."""
        outcome = BatchOutcome(rejected=list(rejected))
        by_table: dict[str, list[tuple[Accepted, tuple[object, ...]]]] = {}
        presence: list[Accepted] = []
        for a in accepted:
            if a.inbound.ahead_s:
                node = a.inbound.topic.node
                outcome.clock_ahead[node] = max(a.inbound.ahead_s, outcome.clock_ahead.get(node, 0))
            if isinstance(a.inbound.message, NodeBirth | NodeDeath):
                presence.append(a)
            elif isinstance(a.inbound.message, ConfigResult):
                self._record_config_result(conn, a.inbound.topic.node, a.inbound.message)
            else:
                table, row = to_row(a.inbound)
                by_table.setdefault(table, []).append((a, row))
        conflicts: list[Accepted] = []
        for table, items in by_table.items():
            new, refused = self._insert_series(conn, table, items)
            conflicts += refused
            outcome.stored[table] += len(new)
            outcome.duplicates += len(items) - len(new) - len(refused)
            outcome.new_ids |= new
        # Clips whose last part came are joined now, before any shared row is locked: a clip's
        # lock is then the first this transaction waits for, so workers cannot deadlock on it.
        clip_parts = [a for a, _ in by_table.get("camera_clip_parts", [])]
        if clip_parts:
            outcome.rejected += [
                Rejection(r.topic, r.reason, r.detail, r.payload)
                for r in clips.assemble(
                    conn, clip_parts, self.clip_max_bytes, outcome.stored,
                    self.clip_max_incomplete,
                )
            ]  # fmt: skip
        # Device messages refused as conflicts take no further part (by identity: the first
        # message with that id, earlier in the batch, stands).
        series_conflicts = {id(a) for a in conflicts}
        devices = [
            a for a in accepted
            if isinstance(a.inbound.message, DeviceMessage) and id(a) not in series_conflicts
        ]  # fmt: skip
        # What the rules make of each new message is worked out before any shared row is
        # locked; which states are current is known only once their latest rows are.
        judged = self._device_signals(conn, devices, outcome)
        # The latest states are locked before presence touches any device, in one order for
        # every worker, and held until the commit: from here on the batch is quick.
        current = self._current_states(conn, devices)
        changes: list[tuple[Inbound, bool]] = []
        # Every worker gets every birth and death, and a clamped one has a new ts in each: the
        # workers take its id in turn, so the second sees the first's row (ids in one order).
        clamped_ids = sorted({str(a.inbound.message.id) for a in presence if a.inbound.ahead_s})  # type: ignore[union-attr]
        for mid in clamped_ids:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (mid,))
        for a in presence:
            match self._stored_presence(conn, a):
                case "conflict":
                    conflicts.append(a)
                case "duplicate":
                    outcome.duplicates += 1
                case _:
                    if change := self._apply_presence(conn, a.inbound, outcome):
                        changes.append(change)
        outcome.rejected += [self._conflict(a) for a in conflicts]
        self._record_rejections(conn, outcome.rejected)
        if outcome.clock_ahead:
            nodes = sorted(outcome.clock_ahead)
            conn.execute(
                """UPDATE node_presence p SET clock_ahead_s = u.ahead, clock_checked_at = now()
                   FROM unnest(%s::text[], %s::float8[]) AS u(node, ahead)
                   WHERE p.node_id = u.node""",
                (nodes, [outcome.clock_ahead[n] for n in nodes]),
            )
        signals: list[rules.Signal] = []
        now = datetime.now(UTC)
        for inbound, died in changes:
            venue = self.registry.venue_of_node(inbound.topic.node)
            if venue is not None:
                signals += rules.node_signals(inbound, venue, self.book, died=died, now=now)
        for message_id, state, said in judged:
            if state and message_id not in current:
                outcome.late += 1  # stored in the series; the present is what came after it
            else:
                signals += said
        # device_status before incidents, as presence (above) takes it: one order for everyone.
        self._update_device_state(conn, devices)
        outcome.reactions = incidents.apply(conn, signals, self.policy)
        # Last: the audit log's chain holds its lock until the commit.
        commands.audit_door_outcomes(conn, outcome.answered)
        self._confirm(accepted, outcome)
        return outcome

    @staticmethod
    def _record_config_result(conn: Conn, node: str, m: ConfigResult) -> None:
        """A node's answer to a configuration: the version it runs now, or why it refused one
        (its birth came first, so its presence row is there). A redelivered or late answer
        changes nothing once the node runs a newer version."""
        if m.status is ConfigStatus.APPLIED:
            conn.execute(
                """UPDATE node_presence SET config_version = %(v)s, config_error = NULL,
                       updated_at = now()
                   WHERE node_id = %(node)s AND coalesce(config_version, -1) <= %(v)s""",
                {"node": node, "v": m.version},
            )
            log.info("node configuration applied node=%s version=%d", node, m.version)
        else:
            reason = f"version {m.version}: {m.reason}"
            conn.execute(
                """UPDATE node_presence SET config_error = %(reason)s, updated_at = now()
                   WHERE node_id = %(node)s AND coalesce(config_version, -1) < %(v)s""",
                {"node": node, "reason": reason, "v": m.version},
            )
            log.warning("node refused its configuration node=%s %s", node, reason)

    @staticmethod
    def _confirm(accepted: Sequence[Accepted], outcome: BatchOutcome) -> None:
        """Everything handled in this transaction may be forgotten by its node once committed:
        new, duplicate, conflicting and rejected messages alike (births and deaths are not in a
        node's outbox)."""
        for a in accepted:
            msg = a.inbound.message
            if isinstance(msg, DeviceMessage):
                outcome.confirm(a.inbound.topic.site, a.inbound.topic.node, msg.seq)
        for r in outcome.rejected:
            if r.receipt is not None:
                outcome.confirm(*r.receipt)

    @staticmethod
    def _conflict(a: Accepted) -> Rejection:
        msg = a.inbound.message
        assert isinstance(msg, Envelope)
        topic = a.inbound.topic
        # No receipt of its own: `_confirm` confirms it with the rest of what was accepted.
        return Rejection(
            str(topic), RejectReason.CONFLICT,
            f"message id {msg.id} is already stored with other content; the first version stands",
            a.payload,
        )  # fmt: skip

    @staticmethod
    def _current_states(conn: Conn, devices: Sequence[Accepted]) -> set[uuid.UUID]:
        """The state messages that are newer than the latest of their device and kind, judged in
        the order they arrived (by the device's timestamp, then the node's sequence). The latest
        rows are locked, so two workers holding one device's messages judge them one after the
        other."""
        states = [a.inbound.message for a in devices if a.inbound.message.type in rules.STATES]
        if not states:
            return set()
        pairs = sorted({(m.device, m.type.value) for m in states})  # type: ignore[union-attr]
        rows = conn.execute(
            """SELECT device_id, type, ts, coalesce(seq, -1) FROM device_latest
               WHERE (device_id, type) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
               ORDER BY device_id, type FOR UPDATE""",
            ([p[0] for p in pairs], [p[1] for p in pairs]),
        ).fetchall()
        latest: dict[tuple[str, str], tuple[datetime, int]] = {}
        for d, t, ts, q in rows:
            assert isinstance(ts, datetime)
            latest[(str(d), str(t))] = (ts, int(str(q)))
        current: set[uuid.UUID] = set()
        for msg in states:
            assert isinstance(msg, DeviceMessage)
            key, mark = (msg.device, msg.type.value), (msg.ts, msg.seq)
            if key not in latest or mark >= latest[key]:
                current.add(msg.id)
                latest[key] = mark
        return current

    def _device_signals(
        self, conn: Conn, devices: Sequence[Accepted], outcome: BatchOutcome
    ) -> list[tuple[uuid.UUID, bool, list[rules.Signal]]]:
        """The rules' signals for each device message new in this batch (a redelivery already
        had its effect), with its id and whether it is a state; and command results onto their
        commands."""
        results: list[CommandResult] = []
        fresh: list[tuple[Accepted, DeviceMessage, bool, VenueInfo | None]] = []
        for a in devices:
            msg = a.inbound.message
            assert isinstance(msg, DeviceMessage)
            if msg.id not in outcome.new_ids:
                continue
            if isinstance(msg, CommandResult):
                results.append(msg)
            venue = self.registry.venue_of_node(a.inbound.topic.node)
            fresh.append((a, msg, msg.type in rules.STATES, venue))
        denied = rules.denied_counts(
            conn, [(m, v) for _, m, _, v in fresh if isinstance(m, DoorAccess) and v], self.book
        )
        if results:
            outcome.answered = [r[0] for r in conn.execute(  # type: ignore[misc]
                """UPDATE commands c SET state = u.status::command_state, detail = u.detail,
                       result_at = now()
                   FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[])
                        AS u(id, status, detail, device)
                   WHERE c.id = u.id AND c.device_id = u.device
                     AND c.state IN ('queued', 'sent', 'expired')
                   RETURNING c.id""",
                (
                    [r.command_id for r in results],
                    [r.status.value for r in results],
                    [r.detail for r in results],
                    [r.device for r in results],
                ),
            ).fetchall()]  # fmt: skip
        return [
            (msg.id, state,
             rules.evaluate(a.inbound, venue, self.book, denied) if venue else [])
            for a, msg, state, venue in fresh
        ]  # fmt: skip

    def write_isolating(
        self, conn: Conn, accepted: Sequence[Accepted], rejected: Sequence[Rejection]
    ) -> BatchOutcome:
        """Write message by message, each in a savepoint; what the database refuses is rejected."""
        total = BatchOutcome()
        refused: list[Rejection] = list(rejected)
        recorded: set[int] = set()  # rejections `write` recorded itself (conflicts, clips)
        for a in accepted:
            try:
                with conn.transaction():
                    one = self.write(conn, [a], [])
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                log.warning("database refused message topic=%s error=%s", a.inbound.topic, exc)
                msg = a.inbound.message
                topic = a.inbound.topic
                refused.append(
                    Rejection(
                        str(topic), RejectReason.UNSTORABLE, str(exc).strip(), a.payload,
                        (topic.site, topic.node, msg.seq) if isinstance(msg, DeviceMessage) else None,
                    )
                )  # fmt: skip
                continue
            refused += one.rejected  # conflicts and clips, recorded by `write` itself
            recorded |= {id(r) for r in one.rejected}
            one.rejected = []
            total.merge(one)
        self._record_rejections(conn, [r for r in refused if id(r) not in recorded])
        total.rejected = refused
        for r in refused:
            if r.receipt is not None:
                total.confirm(*r.receipt)
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
        self, conn: Conn, table: str, items: list[tuple[Accepted, tuple[object, ...]]]
    ) -> tuple[set[uuid.UUID], list[Accepted]]:
        """Insert rows whose id is new; (ids stored now, messages refused as conflicts). An id
        comes in once: a copy of what is stored (or earlier in the batch) is a duplicate, other
        content under a stored id is a conflict and is not applied."""
        first: dict[uuid.UUID, tuple[object, ...]] = {}
        rows: list[tuple[object, ...]] = []
        conflicts: list[Accepted] = []
        for a, row in items:
            mid = a.inbound.message.id  # type: ignore[union-attr]
            if mid not in first:
                first[mid] = row
                rows.append(row)
            elif first[mid] != row:
                conflicts.append(a)
        cols = sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
        stage = sql.Identifier(f"stage_{table}")
        target = sql.Identifier(table)
        # A message taken as sent now (its clock was in the future) has a new ts each time it
        # comes: its copies differ from the stored one in ts alone.
        clamped = [a.inbound.message.id for a, _ in items if a.inbound.ahead_s]  # type: ignore[union-attr]
        differs = sql.SQL(" OR ").join(
            sql.SQL("(t.ts IS DISTINCT FROM s.ts AND NOT s.id = ANY(%(clamped)s))")
            if c == "ts"
            else sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=sql.Identifier(c))
            for c in COLUMNS[table]
        )
        with conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)) as copy:
                for row in rows:
                    copy.write_row(row)
            # One index probe per staged row (the LATERAL ... LIMIT 1): as a plain join the
            # planner hashes the whole stored series, a scan that grows with the table.
            cur.execute(
                sql.SQL(
                    "WITH clash AS (SELECT s.id FROM {stage} s CROSS JOIN LATERAL"
                    " (SELECT 1 FROM {target} t WHERE t.id = s.id AND ({differs}) LIMIT 1) x)"
                    " DELETE FROM {stage} s USING clash WHERE s.id = clash.id RETURNING s.id"
                ).format(stage=stage, target=target, differs=differs),
                {"clamped": clamped},
            )
            clashing = {r[0] for r in cur.fetchall()}
            # What is left is new, or a copy of a stored row; a copy has its stored ts, so the
            # primary key (id, ts) turns it away, except a clamped one (a new ts each time).
            again = (
                sql.SQL(" WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.id = s.id)").format(
                    target=target
                )
                if clamped
                else sql.SQL("")
            )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} s{again}"
                    " ON CONFLICT DO NOTHING RETURNING id"
                ).format(target=target, cols=cols, stage=stage, again=again)
            )
            new = {r[0] for r in cur.fetchall()}
            # Staging rows of a failed transaction vanish with it; of a good one, at commit.
            cur.execute(sql.SQL("DELETE FROM {}").format(stage))
        conflicts += [a for a, _ in items if a.inbound.message.id in clashing]  # type: ignore[union-attr]
        return new, conflicts  # type: ignore[return-value]

    @staticmethod
    def _stored_presence(conn: Conn, a: Accepted) -> str:
        """Whether a birth or death is "new", a "duplicate" of the stored one with its id, or a
        "conflict" with it (other content under the same id)."""
        m = a.inbound.message
        assert isinstance(m, NodeBirth | NodeDeath)
        row = conn.execute(
            "SELECT ts, node_id, seq, type, bdseq FROM presence_events WHERE id = %s", (m.id,)
        ).fetchone()
        if row is None:
            return "new"
        same_ts = a.inbound.ahead_s > 0 or row[0] == m.ts
        same = same_ts and row[1:] == (a.inbound.topic.node, m.seq, m.type.value, m.bdseq)
        return "duplicate" if same else "conflict"

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
            """INSERT INTO node_presence AS p (node_id, online, bdseq, birth_ts, last_seen, software, inventory,
                                               config_version)
               VALUES (%(node)s, true, %(bdseq)s, %(ts)s, %(ts)s, %(software)s, %(inventory)s,
                       %(config)s)
               ON CONFLICT (node_id) DO UPDATE SET
                   online = true, bdseq = excluded.bdseq, birth_ts = excluded.birth_ts,
                   last_seen = GREATEST(p.last_seen, excluded.last_seen),
                   software = excluded.software, inventory = excluded.inventory,
                   config_version = excluded.config_version, updated_at = now()
               WHERE p.birth_ts IS NULL OR excluded.birth_ts >= p.birth_ts
               RETURNING 1""",
            {
                "node": node,
                "bdseq": m.bdseq,
                "ts": m.ts,
                "software": m.software,
                "inventory": Jsonb(inventory),
                "config": m.config_version,
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
            if isinstance(m, CameraSnapshot | CameraClip):
                continue  # a picture or a video, not a state: it stays in its own table
            key = (m.device, m.type)
            prev = latest.get(key)
            if prev is None or (m.ts, m.seq) >= _mark(prev):
                latest[key] = a
        if seen:
            # Sorted, so that concurrent workers lock rows in the same order and cannot deadlock.
            devices = sorted(seen)
            conn.execute(
                """INSERT INTO device_status AS s (device_id, online, last_seen, last_seq)
                   SELECT d, o, t, q FROM jsonb_to_recordset(%s::jsonb)
                        AS u(n int, d text, o boolean, t timestamptz, q bigint)
                   ORDER BY n
                   ON CONFLICT (device_id) DO UPDATE SET
                       online = CASE WHEN excluded.last_seen >= s.last_seen THEN excluded.online
                                     ELSE s.online END,
                       last_seen = GREATEST(s.last_seen, excluded.last_seen),
                       last_seq = CASE WHEN excluded.last_seen >= s.last_seen THEN excluded.last_seq
                                       ELSE s.last_seq END,
                       updated_at = now()""",
                (
                    records(
                        {"n": n, "d": d, "o": seen[d][2], "t": seen[d][0], "q": seen[d][1]}
                        for n, d in enumerate(devices)
                    ),
                ),
            )
        if not latest:
            return
        keys = sorted(latest)
        rows = [latest[k] for k in keys]
        conn.execute(
            """INSERT INTO device_latest AS l (device_id, type, ts, seq, id, payload)
               SELECT d, t, ts, q, i, p FROM jsonb_to_recordset(%s::jsonb)
                    AS u(n int, d text, t text, ts timestamptz, q bigint, i uuid, p jsonb)
               ORDER BY n
               ON CONFLICT (device_id, type) DO UPDATE SET ts = excluded.ts, seq = excluded.seq,
                   id = excluded.id, payload = excluded.payload
               WHERE (excluded.ts, excluded.seq) >= (l.ts, coalesce(l.seq, -1))""",
            (
                records(
                    {"n": n, "d": k[0], "t": k[1], "ts": _mark(r)[0], "q": _mark(r)[1],
                     "i": r.inbound.message.id,  # type: ignore[union-attr]
                     "p": json.loads(r.payload)}
                    for n, (k, r) in enumerate(zip(keys, rows, strict=True))
                ),
            ),
        )  # fmt: skip

    def _record_rejections(self, conn: Conn, rejected: Sequence[Rejection]) -> None:
        """Keep what was refused, one row per topic and payload. A node (or a topic that names
        none) holds at most `rejected_per_node` rows: past that, its refusals are only counted,
        on one row per node, so one misbehaving node cannot fill the table."""
        if not rejected:
            return
        nodes = sorted({_node_of(r.topic) or "" for r in rejected})
        counted = conn.execute(
            """SELECT coalesce(node_id, ''), count(*) FROM rejected_messages
               WHERE coalesce(node_id, '') = ANY(%s) GROUP BY 1""",
            (nodes,),
        ).fetchall()
        held = {str(node): int(str(n)) for node, n in counted}
        rows = []
        for r in rejected:
            node = _node_of(r.topic)
            if held.get(node or "", 0) >= self.rejected_per_node:
                topic = f"(over the cap of {self.rejected_per_node} rows) {node or '(no node)'}"
                detail = "further refusals of this node are counted here, not kept"
                payload, digest = b"", hashlib.sha256(topic.encode()).digest()
            else:
                topic = _clean_text(r.topic)[:1024]  # it is indexed: keep it well under 2 kB
                detail = _clean_text(r.detail)[:2000]
                payload, digest = r.payload[: self.payload_cap], hashlib.sha256(r.payload).digest()
                held[node or ""] = held.get(node or "", 0) + 1  # at most: it may be a repeat
            rows.append((topic, node, r.reason.value, detail, payload, len(r.payload), digest))
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO rejected_messages (topic, node_id, reason, detail, payload, payload_size, digest)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (topic, digest) DO UPDATE SET
                       occurrences = rejected_messages.occurrences + 1, last_seen = now()""",
                rows,
            )


def _mark(a: Accepted) -> tuple[datetime, int]:
    """Where a device message stands in its device's time: its timestamp, then its sequence."""
    m = a.inbound.message
    assert isinstance(m, DeviceMessage)
    return m.ts, m.seq


def _clean_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL; a rejected message's topic or detail may contain one."""
    return text.replace("\x00", "\\0")


def _node_of(topic: str) -> str | None:
    parts = topic.split("/")
    return _clean_text(parts[3])[:64] if len(parts) > 3 else None
