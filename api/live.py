"""The live feed: one LISTEN connection per API process wakes every open event stream.

The `changes` table (filled by triggers on incidents, tasks and node presence) is the truth; the
notification only says "look again". So a stream that reconnects with Last-Event-ID gets exactly
what it missed, from whichever API replica it reaches.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "gridwatch_changes"


class ChangeFeed:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
        self.closing = False

    def close_streams(self) -> None:
        """End every open stream now (the server is shutting down), and refuse new ones."""
        self.closing = True
        self._wake()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiters.add((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters = {(loop, e) for loop, e in self._waiters if e is not event}

    def _wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._wake()  # anything committed while we were not listening
                    while not self._stop.is_set():
                        if any(True for _ in conn.notifies(timeout=1.0, stop_after=1)):
                            self._wake()
            except psycopg.Error as exc:
                log.warning("change feed lost its connection, retrying: %s", str(exc).strip())
                self._stop.wait(2.0)
