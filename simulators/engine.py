"""Simulated time and the scheduler that wakes simulated devices when they have something to do.

Behaviour runs on simulated time (`speed` times faster than real time, so a test can live through
a day in minutes); reporting intervals are in real seconds so a fleet's message rate is what it
was configured to be. One engine thread serves every device of a fleet: devices say when they next
need waking, and the engine sleeps until then.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Protocol

from gateway import messages as m

log = logging.getLogger(__name__)


class SimClock:
    """Simulated wall-clock time: starts at `start` and runs `speed` times faster than real time."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start = start or m.now()
        self._real0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._real0) * self.speed)

    def real_delay(self, sim_seconds: float) -> float:
        """Real seconds until `sim_seconds` of simulated time have passed."""
        return sim_seconds / self.speed


class Wakeable(Protocol):
    def wake(self) -> None:
        """Do what is due now."""


class Engine:
    """Wakes scheduled devices on one thread, in time order."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Wakeable]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sim-engine", daemon=True)
        self.lag_s = 0.0  # how late the last wake ran: the engine is overloaded when this grows

    def schedule(self, device: Wakeable, delay_s: float = 0.0) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._order), device))
            self._cond.notify()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stop:
                    return
                due, _, device = heapq.heappop(self._heap)
            self.lag_s = time.monotonic() - due
            try:
                device.wake()
            except Exception:  # a faulty model must not stop the whole fleet
                log.exception("simulated device failed device=%r", device)
