"""Store and forward: every outgoing message is on disk before it is published.

A message leaves the outbox only when the platform's receipt says it is stored in the database
(a broker's PUBACK is not enough: a broker that crashes loses what it acknowledged since its last
save). The node's
sequence numbers, its birth/death sequence and the ids of commands it has executed live in the
same SQLite file, so a restart (even `kill -9`) resumes exactly where the node stopped.

When the outbox is full the oldest *bulk* (alerts' video clips) is dropped first, then the oldest
*telemetry* (occupancy, states, statuses, snapshots), then the oldest of anything: a venue that
is cut off for days keeps its alarms and loses its clips and oldest routine readings. Every drop
is counted, persisted and logged.

Bulk is a lane of its own in the same file: it is sent only when nothing else is waiting (see
EdgeAgent.pump), so its messages leave out of sequence order, which the platform does not mind
(it orders states by their time, then sequence, and clips are no state). Its disk use is bounded
in bytes (`max_bulk_bytes`): past it, the oldest whole clips (rows of one `grp`) are dropped, so
no clip is left half-sent. Everything else keeps the same guarantees as bulk: on disk before it
is published, gone only on the platform's receipt, and a restart resumes both lanes.

One file (a Store) can hold the outboxes of several nodes: a simulated fleet keeps its hundreds
of nodes in one file, since a process has only so many file descriptors (and paho's `select`
loop cannot use any above 1024).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    node     TEXT NOT NULL,
    seq      INTEGER NOT NULL,  -- the node's sequence number, also the sending order
    topic    TEXT NOT NULL,
    payload  BLOB NOT NULL,
    retain   INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    created  REAL NOT NULL,
    grp      TEXT,              -- the messages dropped together (a clip's parts), or NULL
    PRIMARY KEY (node, seq)
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (node, priority, seq);
CREATE TABLE IF NOT EXISTS refused (
    node    TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason  TEXT NOT NULL,
    at      REAL NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE TABLE IF NOT EXISTS counters (
    node  TEXT NOT NULL,
    name  TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (node, name)
);
CREATE TABLE IF NOT EXISTS commands (
    node     TEXT NOT NULL,
    id       TEXT NOT NULL,
    payload  BLOB NOT NULL,
    status   TEXT,            -- NULL until executed
    received REAL NOT NULL,
    PRIMARY KEY (node, id)
);
"""


class Priority(IntEnum):
    BULK = -1  # dropped first when the outbox is full: alerts' video clips
    TELEMETRY = 0  # dropped next
    EVENT = 1


class Durability(StrEnum):
    FULL = "full"  # fsync on every commit: survives a power cut
    NORMAL = "normal"  # survives a process crash; a power cut may lose the last commits


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    topic: str
    payload: bytes
    retain: bool


_WHAT_TO_DO = "set outbox.path in the site file to a file in a folder this agent can write"


def _create_private(path: Path) -> None:
    """Create the outbox file (and its folder) readable by this agent's user only.

    The outbox holds every message the site has not yet delivered (hashed card numbers, the
    venue's comings and goings). SQLite gives its -wal and -shm files the mode of the database
    file, so making the database file 0600 before SQLite opens it covers all three.
    """
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        for suffix in ("", "-wal", "-shm", "-journal"):
            part = path.with_name(path.name + suffix)
            if part.exists():
                part.chmod(0o600)  # an outbox made by an older agent, or under another umask
    except OSError as exc:
        raise OutboxError(
            f"outbox {path}: cannot create it ({exc.strerror}); {_WHAT_TO_DO}"
        ) from None


class OutboxError(RuntimeError):
    """An outbox file that cannot be opened; the message says what to change."""


class Store:
    """One SQLite file, opened once, shared by the outboxes in it."""

    def __init__(self, path: Path, durability: Durability = Durability.FULL) -> None:
        self.path = path
        self.lock = threading.Lock()
        _create_private(path)
        # Python opens a transaction before each write and `with db` commits it, so every
        # Outbox method is one atomic transaction.
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, timeout=1.0)
        except sqlite3.OperationalError as exc:
            raise OutboxError(f"outbox {path}: cannot open ({exc}); {_WHAT_TO_DO}") from None
        # Exclusive: a second process cannot open the same outbox and send its messages twice.
        self.db.execute("PRAGMA locking_mode = EXCLUSIVE")
        try:
            self.db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            self.db.close()
            raise OutboxError(
                f"outbox {path} is in use by another agent ({exc}); stop the other agent"
                " or give this one its own outbox.path"
            ) from None
        self.db.execute(f"PRAGMA synchronous = {durability.value.upper()}")
        self.db.executescript(_SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(outbox)")}
        if "grp" not in columns:  # an outbox made before clips had a lane of their own
            with self.db:
                self.db.execute("ALTER TABLE outbox ADD COLUMN grp TEXT")

    def close(self) -> None:
        with self.lock:
            self.db.close()


DEFAULT_MAX_BULK_BYTES = 64 * 1024 * 1024
_BULK = int(Priority.BULK)


class Outbox:
    """A node's bounded, durable FIFO of messages waiting for the platform's receipt."""

    def __init__(
        self, store: Store, node: str, *, max_messages: int,
        max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES,
    ) -> None:  # fmt: skip
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if max_bulk_bytes < 1:
            raise ValueError("max_bulk_bytes must be at least 1")
        self.store = store
        self.node = node
        self.max_messages = max_messages
        self.max_bulk_bytes = max_bulk_bytes
        self._lock = store.lock
        self._db = store.db
        row = self._db.execute(
            "SELECT count(*), coalesce(max(seq), 0) FROM outbox WHERE node = ?", (node,)
        ).fetchone()
        self._count: int = row[0]
        self.last_seq: int = max(row[1], self._counter("seq"))
        # The newest bulk message's seq: a sender with nothing of bulk beyond it need not ask.
        self.last_bulk_seq: int = self._db.execute(
            "SELECT coalesce(max(seq), 0) FROM outbox WHERE node = ? AND priority = ?",
            (node, _BULK),
        ).fetchone()[0]

    # --- counters kept with the data ---------------------------------------------------------

    def _counter(self, name: str) -> int:
        row = self._db.execute(
            "SELECT value FROM counters WHERE node = ? AND name = ?", (self.node, name)
        ).fetchone()
        return int(row[0]) if row else 0

    def _set_counter(self, name: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO counters (node, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT (node, name) DO UPDATE SET value = excluded.value",
            (self.node, name, value),
        )

    def next_bdseq(self) -> int:
        """The birth/death sequence for a new connection (+1 each time, kept across restarts)."""
        with self._lock, self._db:
            value = self._counter("bdseq") + 1
            self._set_counter("bdseq", value)
            return value

    @property
    def dropped(self) -> int:
        """Messages dropped because the outbox was full, over the outbox's whole life."""
        with self._lock:
            return self._counter("dropped")

    @property
    def dropped_groups(self) -> int:
        """Whole groups (clips) of bulk dropped to keep within `max_bulk_bytes`, over the
        outbox's whole life (their messages are counted in `dropped` too)."""
        with self._lock:
            return self._counter("dropped_groups")

    def bulk_bytes(self) -> int:
        """The bytes of bulk messages waiting."""
        with self._lock:
            return self._bulk_bytes()

    def _bulk_bytes(self) -> int:
        row = self._db.execute(
            "SELECT coalesce(sum(length(payload)), 0) FROM outbox WHERE node = ? AND priority = ?",
            (self.node, _BULK),
        ).fetchone()
        return int(row[0])

    def __len__(self) -> int:
        return self._count

    # --- messages ----------------------------------------------------------------------------

    def add(
        self,
        build: Callable[[int], tuple[str, bytes]],
        priority: Priority,
        *,
        retain: bool = False,
        group: str | None = None,
    ) -> tuple[int, int]:
        """Store a message built for the next sequence number; (its seq, messages dropped).
        Messages of one `group` (a clip's parts) are dropped together."""
        groups = 0
        with self._lock, self._db:
            seq = self.last_seq + 1
            topic, payload = build(seq)
            self._db.execute(
                "INSERT INTO outbox (node, seq, topic, payload, retain, priority, created, grp)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.node, seq, topic, payload, int(retain), int(priority), time.time(), group),
            )
            self.last_seq = seq
            if priority is Priority.BULK:
                self.last_bulk_seq = seq
            self._set_counter("seq", seq)
            self._count += 1
            dropped = 0
            while self._count > self.max_messages:
                dropped += self._drop_oldest(None)
            if priority is Priority.BULK:
                while self._bulk_bytes() > self.max_bulk_bytes:
                    # The oldest other clip first; the new one itself when it alone is too big.
                    gone = self._drop_oldest(_BULK, spare=group) or self._drop_oldest(_BULK)
                    if not gone:
                        break
                    dropped += gone
                    groups += 1
            if dropped:
                self._set_counter("dropped", self._counter("dropped") + dropped)
            if groups:
                self._set_counter("dropped_groups", self._counter("dropped_groups") + groups)
        if groups:
            log.warning("outbox bulk over %d bytes, dropped oldest clips node=%s clips=%d"
                        " messages=%d", self.max_bulk_bytes, self.node, groups, dropped)  # fmt: skip
        elif dropped:
            log.warning("outbox full, dropped oldest node=%s count=%d", self.node, dropped)
        return seq, dropped

    def _drop_oldest(self, priority: int | None, spare: str | None = None) -> int:
        """Drop the first message in dropping order (of `priority` only, if given), with the
        rest of its group; how many messages went. `spare`: a group not to drop."""
        where = "node = ?" + ("" if priority is None else " AND priority = ?")
        args: tuple[object, ...] = (self.node,) if priority is None else (self.node, priority)
        if spare is not None:
            where += " AND grp IS NOT ?"
            args += (spare,)
        victim = self._db.execute(
            f"SELECT seq, grp FROM outbox WHERE {where} ORDER BY priority, seq LIMIT 1", args
        ).fetchone()
        if victim is None:
            return 0
        if victim[1] is None:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE node = ? AND seq = ?", (self.node, victim[0])
            )
        else:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE node = ? AND grp = ?", (self.node, victim[1])
            )
        self._count -= cur.rowcount
        return cur.rowcount

    def pending(self, after_seq: int, limit: int, *, bulk: bool = False) -> list[Entry]:
        """Up to `limit` messages of one lane (bulk, or everything else) with a sequence
        number above `after_seq`, oldest first."""
        lane = "priority = ?" if bulk else "priority <> ?"
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain FROM outbox WHERE node = ? AND seq > ?"
                f" AND {lane} ORDER BY seq LIMIT ?",
                (self.node, after_seq, _BULK, limit),
            ).fetchall()
        return [Entry(s, t, bytes(p), bool(r)) for s, t, p, r in rows]

    def confirm(self, ranges: Iterable[tuple[int, int]]) -> int:
        """The platform has stored these messages (inclusive seq ranges): forget them; how many
        were still here."""
        removed = 0
        with self._lock, self._db:
            for first, last in ranges:
                cur = self._db.execute(
                    "DELETE FROM outbox WHERE node = ? AND seq BETWEEN ? AND ?",
                    (self.node, first, last),
                )
                removed += cur.rowcount
            self._count -= removed
        return removed

    def _delete(self, seq: int) -> None:
        cur = self._db.execute("DELETE FROM outbox WHERE node = ? AND seq = ?", (self.node, seq))
        self._count -= cur.rowcount

    def refuse(self, seq: int, reason: str) -> None:
        """The broker will never take this message: keep it aside, out of the sending queue."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO refused (node, seq, topic, payload, reason, at)"
                " SELECT node, seq, topic, payload, ?, ? FROM outbox WHERE node = ? AND seq = ?",
                (reason, time.time(), self.node, seq),
            )
            self._delete(seq)

    def refused_count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM refused WHERE node = ?", (self.node,))
            return int(row.fetchone()[0])

    # --- commands: each id is executed once --------------------------------------------------

    def remember_command(self, command_id: str, payload: bytes) -> bool:
        """Record a received command; False if this id was received before. One answered
        `expired` was not executed: the platform's retry of it, with a fresh deadline, is new."""
        with self._lock, self._db:
            cur = self._db.execute(
                """INSERT INTO commands (node, id, payload, received) VALUES (?, ?, ?, ?)
                   ON CONFLICT (node, id) DO UPDATE SET payload = excluded.payload,
                       status = NULL, received = excluded.received
                   WHERE commands.status = 'expired'""",
                (self.node, command_id, payload, time.time()),
            )
            return cur.rowcount == 1

    def command_done(self, command_id: str, status: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE commands SET status = ? WHERE node = ? AND id = ?",
                (status, self.node, command_id),
            )

    def unfinished_commands(self) -> list[bytes]:
        """Commands received but not executed before the agent stopped, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT payload FROM commands WHERE node = ? AND status IS NULL ORDER BY received",
                (self.node,),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def forget_commands_before(self, cutoff: float) -> None:
        """Drop the record of finished commands received before `cutoff` (epoch seconds)."""
        with self._lock, self._db:
            self._db.execute(
                "DELETE FROM commands WHERE node = ? AND status IS NOT NULL AND received < ?",
                (self.node, cutoff),
            )
