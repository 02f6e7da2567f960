"""Leader duties: work the composition root adds to the ingest leader runs when it takes the
lead, on its interval, and at once when the registry announces a change."""

from __future__ import annotations

import threading
import time

import psycopg

from casework import tasks
from casework.rules import RuleBook
from gridwatch.local.stack import LocalStack
from ingest.commands import Publish
from ingest.leader import REGISTRY_CHANNEL, Leader
from ingest.registry import Registry

Conn = psycopg.Connection[tuple[object, ...]]


class Recorder:
    name = "recorder"
    interval_s = 3600.0

    def __init__(self) -> None:
        self.rounds: list[frozenset[str]] = []
        self.stopped = 0

    def run(self, conn: Conn, publish: Publish, changed: frozenset[str]) -> None:
        self.rounds.append(changed)
        if changed == frozenset({"broker:boom"}):
            raise RuntimeError("a duty failing must not stop the leader")

    def stop(self) -> None:
        self.stopped += 1


def _wait_for(condition: object, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def test_a_duty_runs_on_taking_the_lead_and_on_each_registry_notice(stack: LocalStack) -> None:
    duty = Recorder()
    stop = threading.Event()
    leader = Leader(stack.dsn, Registry(60), RuleBook(60), tasks.DeadlinePolicy(),
                    lambda topic, payload: None, stop, "duties", duties=[duty])  # fmt: skip
    leader.start()
    try:
        assert _wait_for(lambda: duty.rounds == [frozenset()])
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, 'broker:boom')", (REGISTRY_CHANNEL,))
            assert _wait_for(lambda: len(duty.rounds) == 2)
            conn.execute("SELECT pg_notify(%s, 'node:n1')", (REGISTRY_CHANNEL,))
            assert _wait_for(lambda: len(duty.rounds) == 3)
        assert duty.rounds[1:] == [frozenset({"broker:boom"}), frozenset({"node:n1"})]
        assert leader.leading and duty.stopped == 0
    finally:
        stop.set()
        leader.thread.join(10)
    assert duty.stopped >= 1  # stepping down lets go of what only a leader may hold
