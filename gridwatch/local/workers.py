"""`gridwatch ingest --workers N`: one process per worker slot, each supervised and restarted.

A slot's broker session outlives its worker and goes on queuing that slot's share of the
traffic, so a worker that dies must come back: a slot left without one is half the alarms
unread (the leader also reports such a slot, see ingest/heartbeat.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from gridwatch.local.services import stop_on_signals
from gridwatch.local.supervise import Supervisor

log = logging.getLogger(__name__)

_CHECK_EVERY_S = 0.5


def run(first_slot: int, count: int, log_args: list[str]) -> int:
    """Run `count` workers on slots `first_slot`… until SIGTERM or SIGINT; restart any that exits."""
    if count < 1:
        raise ValueError(f"--workers must be at least 1, not {count}")
    stop = stop_on_signals()
    supervisor = Supervisor()
    slots = range(first_slot, first_slot + count)
    try:
        for slot in slots:
            supervisor.add(f"ingest-{slot}", _starter(slot, log_args))
        log.info("ingest started workers=%d slots=%d..%d", count, slots[0], slots[-1])
        while not stop.wait(_CHECK_EVERY_S):
            supervisor.check()
    finally:
        supervisor.stop()
    return 0


def _starter(slot: int, log_args: list[str]) -> Callable[[], subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "gridwatch.cli", *log_args, "ingest", "--slot", str(slot),
               "--supervised"]  # fmt: skip
    # Same stdout/stderr (one log) and process group (a terminal's Ctrl-C reaches every worker).
    return lambda: subprocess.Popen(command)


def stop_when_orphaned(stop: Callable[[], None], every_s: float = 1.0) -> None:
    """Call `stop` once this process's parent is gone (a supervisor killed with SIGKILL)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        log.error("the supervising process %d is gone: stopping this worker", parent)
        stop()

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
