"""Child processes (of `gridwatch up`, of `gridwatch ingest --workers N`): started, watched,
restarted with back-off, stopped in order."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gridwatch.local.services import terminate

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Child:
    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    backoff_s: float
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    delays: list[float] = field(default_factory=list)  # the wait before each restart

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Supervisor:
    """Keeps each child running until `stop()`; children stop in reverse order of adding.

    A child that fails again soon after a start waits twice as long before the next one (up to
    `max_backoff_s`); one that ran at least `healthy_after_s` before it exited was healthy, and
    starts again after `backoff_s` as if it had never failed.
    """

    def __init__(
        self, *, backoff_s: float = 1.0, max_backoff_s: float = 60.0, healthy_after_s: float = 60.0
    ) -> None:
        if not 0 < backoff_s <= max_backoff_s:
            raise ValueError("backoff_s must be positive and at most max_backoff_s")
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.healthy_after_s = healthy_after_s
        self.children: list[Child] = []

    def add(self, name: str, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        child = Child(name, start, self.backoff_s)
        self._start(child)
        log.info("started %s pid=%s", name, child.pid)
        self.children.append(child)

    def check(self) -> None:
        """Restart any child that has exited, waiting longer after each quick failure."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.next_start == 0.0:
                ran_s = now - child.started_at
                if ran_s >= self.healthy_after_s:
                    child.backoff_s = self.backoff_s
                log.error(
                    "%s exited with code %s after %.0fs; restarting in %.1fs",
                    child.name, child.proc.returncode, ran_s, child.backoff_s,
                )  # fmt: skip
                child.next_start = now + child.backoff_s
                child.delays.append(child.backoff_s)
                child.backoff_s = min(child.backoff_s * 2, self.max_backoff_s)
            if now >= child.next_start:
                self._start(child)
                child.restarts += 1
                child.next_start = 0.0
                log.info("restarted %s pid=%s restarts=%d", child.name, child.pid, child.restarts)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM each child (last added first) and wait; SIGKILL what does not stop in time."""
        for child in reversed(self.children):
            proc = child.proc
            if proc is None or proc.poll() is not None:
                continue
            if terminate(proc, timeout_s):
                log.info("stopped %s", child.name)
            else:
                log.error("%s did not stop in %.0fs; it was killed", child.name, timeout_s)

    @staticmethod
    def _start(child: Child) -> None:
        child.proc = child.start()
        child.started_at = time.monotonic()
