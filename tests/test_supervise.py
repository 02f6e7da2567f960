"""The supervisor of child processes, with real child processes."""

from __future__ import annotations

import subprocess
import sys

from gridwatch.local.supervise import Supervisor
from tests.support import wait_until


def test_back_off_doubles_on_quick_failures_and_resets_after_a_healthy_run() -> None:
    lives = [0, 0, 0, 0, 2, 0]  # seconds each start of the child lives: the fifth is healthy
    starts: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        seconds = lives[len(starts)] if len(starts) < len(lives) else 60
        starts.append(
            subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
        )
        return starts[-1]

    sup = Supervisor(backoff_s=0.1, max_backoff_s=10.0, healthy_after_s=1.5)
    sup.add("flaky", start)

    def started(n: int) -> bool:
        sup.check()
        return len(starts) >= n

    wait_until(lambda: started(len(lives) + 1), 30, "the child started again after each exit")
    child = sup.children[0]
    # Each quick failure waits twice as long; after the healthy run, back to the first step.
    assert child.delays == [0.1, 0.2, 0.4, 0.8, 0.1, 0.2]
    assert child.restarts == len(lives)
    sup.stop()
    assert all(p.poll() is not None for p in starts)
