"""Child processes of `gridwatch up`: started, watched, restarted with back-off, stopped in order."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gridwatch.services import terminate

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Child:
    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff_s: float = field(default=1.0)


class Supervisor:
    """Keeps each child running until `stop()`; children stop in reverse order of adding."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def add(self, name: str, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        child = Child(name, start)
        child.proc = start()
        log.info("started %s pid=%s", name, child.proc.pid)
        self.children.append(child)

    def check(self) -> None:
        """Restart any child that has exited, waiting longer after each quick failure."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.next_start == 0.0:
                log.error(
                    "%s exited with code %s; restarting in %.0fs",
                    child.name, child.proc.returncode, child.backoff_s,
                )  # fmt: skip
                child.next_start = now + child.backoff_s
            if now >= child.next_start:
                child.proc = child.start()
                child.restarts += 1
                child.next_start = 0.0
                child.backoff_s = min(child.backoff_s * 2, 60.0)
                log.info(
                    "restarted %s pid=%s restarts=%d", child.name, child.proc.pid, child.restarts
                )

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
