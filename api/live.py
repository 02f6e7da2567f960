"""The live feed: one LISTEN connection per API process reads each change once for every open
event stream.

The `changes` table (filled by triggers on incidents, tasks, node presence and console
deliveries) is the truth; a notification only says "look again". On each notice the feed runs
one query for everything new (not one per stream) and keeps the newest changes in memory; each
stream takes from there what its person may see (their subtree, and notifications addressed to
them). A stream that reconnects with Last-Event-ID reads what it missed from the table first,
with its own scoped query, so it gets exactly that from whichever API replica it reaches.

Ids come from a sequence and are taken before commit, so a change can become visible after one
with a higher id. The feed remembers the ids it skipped for a while (`_GAP_S`) and asks for them
again with every read, so such a change still reaches the open streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from prometheus_client import Counter, Gauge, Histogram

from casework import titles

log = logging.getLogger(__name__)

CHANNEL = "gridwatch_changes"
BUFFER = 20_000  # changes kept in memory for the streams; one further behind reads the table
_READ_LIMIT = 2_000
_GAP_S = 30.0  # how long an id skipped by the sequence is looked for again
_MAX_GAPS = 10_000

_TITLED = frozenset({"incident", "task"})
_READ = """SELECT id, kind, path::text, person_id, payload::text FROM changes
           WHERE id > %s OR id = ANY(%s) ORDER BY id LIMIT %s"""

STREAMS = Gauge("gridwatch_api_live_streams", "Live streams open in this API process")
CHANGES = Counter("gridwatch_api_live_changes_total", "Changes the live feed read for its streams")
READS = Histogram(
    "gridwatch_api_live_read_seconds",
    "One read of new changes by the live feed (one query for all the streams)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
RESYNCS = Counter(
    "gridwatch_api_live_resyncs_total",
    "Streams that read the table themselves: resuming from an older id, or fallen behind",
)


def frame(cid: int, kind: str, payload: str, lang: str = titles.DEFAULT_LANGUAGE) -> str:
    """A change's server-sent event. An incident's or task's carries its title code and
    parameters, and its title in `lang` (consoles may render the code themselves)."""
    if kind in _TITLED:
        data = json.loads(payload)
        if isinstance(data, dict) and isinstance(data.get("title_code"), str):
            data["title"] = titles.render(data["title_code"], data.get("title_params"), lang)
            payload = json.dumps(data, ensure_ascii=False, separators=(", ", ": "))
    return f"id: {cid}\nevent: {kind}\ndata: {payload}\n\n"


def in_scope(path: str, scope: str) -> bool:
    """Whether an ltree `path` lies in the subtree `scope` (`path <@ scope`)."""
    return scope in ("", path) or path.startswith(scope + ".")


Viewer = tuple[str, str]  # a stream's scope path and person id


@dataclass(frozen=True, slots=True)
class Change:
    """One row of `changes`, with its server-sent event ready to write."""

    id: int
    path: str
    person_id: str | None
    frame: str  # its title (if it has one) in zh-CN
    frame_en: str | None = None  # in English, for a change with a title

    @classmethod
    def of(cls, cid: int, kind: str, path: str, person: str | None, payload: str) -> Change:
        """Rendered once per language, whatever the number of streams."""
        english = frame(cid, kind, payload, "en") if kind in _TITLED else None
        return cls(cid, path, person, frame(cid, kind, payload), english)

    def frame_in(self, lang: str) -> str:
        return self.frame_en if lang == "en" and self.frame_en is not None else self.frame

    def visible_to(self, scope: str, person: str) -> bool:
        """What the SQL filter says: `path <@ scope AND (person_id IS NULL OR person_id = me)`."""
        return (self.person_id is None or self.person_id == person) and in_scope(self.path, scope)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream joins the feed: changes after `seq` come from memory; ids up to `upto`
    (and `gaps`, not read yet) are the stream's to read from the table."""

    seq: int
    upto: int
    gaps: frozenset[int]


class ChangeFeed:
    def __init__(self, dsn: str, buffer: int = BUFFER) -> None:
        self.dsn = dsn
        # The open streams, by event loop: each one's event, and whose view it is.
        self._waiters: dict[asyncio.AbstractEventLoop, dict[asyncio.Event, Viewer]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
        self._buffer: deque[Change] = deque(maxlen=buffer)
        self._seq = 0  # changes appended so far; the buffer holds the last len(_buffer) of them
        self._cursor: int | None = None  # the highest id read (None: not connected yet)
        self._gaps: dict[int, float] = {}  # id -> until when it is looked for
        self.ready = threading.Event()
        self.closing = False

    def close_streams(self) -> None:
        """End every open stream now (the server is shutting down), and refuse new ones."""
        self.closing = True
        self._wake()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def subscribe(self, scope: str, person: str) -> asyncio.Event:
        """An event set when a change that this person may see (or the end) comes."""
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(asyncio.get_running_loop(), {})[event] = (scope, person)
        STREAMS.inc()
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            for loop, events in list(self._waiters.items()):
                events.pop(event, None)
                if not events:
                    del self._waiters[loop]
        STREAMS.dec()

    def position(self) -> Position | None:
        """Where a stream joins now, or None while the feed has not read the table yet."""
        with self._lock:
            if self._cursor is None:
                return None
            return Position(self._seq, self._cursor, frozenset(self._gaps))

    def since(self, seq: int) -> tuple[list[Change], int] | None:
        """The changes appended after `seq` and the new position, or None when some of them
        have left memory already (the stream fell behind and must read the table)."""
        with self._lock:
            first = self._seq - len(self._buffer)
            if seq < first:
                return None
            buffer, end = self._buffer, self._seq
            # From the right: the newest are at the end of the deque, where indexing is cheap.
            return [buffer[i] for i in range(seq - end, 0)], end

    def _wake(self, changes: list[Change] | None = None) -> None:
        """Wake the streams that may see one of `changes` (all of them without)."""
        with self._lock:
            waiters = [(loop, list(events.items())) for loop, events in self._waiters.items()]
        sees: dict[Viewer, bool] = {}  # many streams share a view: each is worked out once
        for loop, streams in waiters:  # one call into each loop, however many streams it holds
            events = []
            for event, viewer in streams:
                if changes is not None and viewer not in sees:
                    sees[viewer] = any(c.visible_to(*viewer) for c in changes)
                if changes is None or sees[viewer]:
                    events.append(event)
            if not events:
                continue
            with contextlib.suppress(RuntimeError):  # that loop is closed: its streams are gone
                loop.call_soon_threadsafe(_set_all, events)

    def _read(self, conn: psycopg.Connection[tuple[object, ...]]) -> int:
        """Read what is new (and late ids skipped before) into memory; how many changes."""
        read = 0
        while True:
            now = time.monotonic()
            self._gaps = {i: t for i, t in self._gaps.items() if t > now}
            assert self._cursor is not None
            started = time.perf_counter()
            rows = conn.execute(_READ, (self._cursor, list(self._gaps), _READ_LIMIT)).fetchall()
            READS.observe(time.perf_counter() - started)
            if not rows:
                return read
            fresh: list[Change] = []
            cursor = self._cursor
            for cid, kind, path, person, payload in rows:
                c = Change.of(int(str(cid)), str(kind), str(path),
                              None if person is None else str(person), str(payload))  # fmt: skip
                fresh.append(c)
                if c.id > cursor:
                    if c.id - cursor - 1 + len(self._gaps) <= _MAX_GAPS:
                        self._gaps.update((i, now + _GAP_S) for i in range(cursor + 1, c.id))
                    cursor = c.id
                else:
                    self._gaps.pop(c.id, None)
            with self._lock:
                self._buffer.extend(fresh)
                self._seq += len(fresh)
                self._cursor = cursor
            CHANGES.inc(len(fresh))
            read += len(fresh)
            self._wake(fresh)
            if len(rows) < _READ_LIMIT:
                return read

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if self._cursor is None:
                        row = conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()
                        assert row is not None  # an aggregate always has a row
                        with self._lock:
                            self._cursor = int(str(row[0]))
                        self.ready.set()
                    self._read(conn)  # anything committed while we were not listening
                    self._wake()
                    while not self._stop.is_set():
                        if any(True for _ in conn.notifies(timeout=1.0, stop_after=1)):
                            # The other notices of this burst are read by the same query.
                            for _ in conn.notifies(timeout=0):
                                pass
                            self._read(conn)  # a late id comes with its own notice too
            except psycopg.Error as exc:
                log.warning("change feed lost its connection, retrying: %s", str(exc).strip())
                self._stop.wait(2.0)


def _set_all(events: Iterable[asyncio.Event]) -> None:
    for event in events:
        event.set()
