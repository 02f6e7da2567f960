"""KPIs count what people did: acceptance and on-time closure over the tasks a person took,
automatic closures (the condition cleared before anyone acted) in a column of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from gridwatch.demo import NodeCredentials
from gridwatch.local import LocalStack
from ingest import incidents, kpi, tasks
from ingest.tasks import Action
from tests.support import scalar
from tests.test_api import people_of, raise_incident


def _act(dsn: str, task_id: int, *steps: tuple[Action, str, dict[str, str]]) -> None:
    with psycopg.connect(dsn) as conn:
        for action, actor, kw in steps:
            tasks.act(conn, task_id, action, actor, **kw)  # type: ignore[arg-type]


def _clear(dsn: str, task_id: int) -> None:
    """The task's incident's condition cleared by itself."""
    with psycopg.connect(dsn) as conn:
        key = scalar(dsn, "SELECT i.dedup_key FROM incidents i JOIN tasks t ON t.incident_id = i.id"
                          " WHERE t.id = %s", (task_id,))  # fmt: skip
        assert incidents.resolve(conn, str(key), "door closed again") == 1


def test_rates_count_only_tasks_people_took(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    dsn, site = stack.dsn, nodes[0].site
    worker, dispatcher = people_of(dsn, site)
    a, b, c, d, e = (raise_incident(dsn, site, subject) for subject in "abcde")
    accept = (Action.ACCEPT, worker, {})
    start = (Action.START, worker, {})
    feedback = (Action.FEEDBACK, worker, {"note": "done"})
    check = (Action.CHECK, dispatcher, {})
    approve = (Action.APPROVE, dispatcher, {})
    # a: taken, handled, approved in time.
    _act(dsn, a, accept, start, feedback, check, approve)
    # b: nobody took it; the condition cleared: it closes by itself.
    _clear(dsn, b)
    # c: taken, its deadline passed (escalated), reworked once, then approved: late.
    _act(dsn, c, accept)
    with psycopg.connect(dsn) as conn:
        tasks.on_deadline(conn, c, tasks.DeadlinePolicy())
    _act(dsn, c, start, feedback, check, (Action.REJECT, dispatcher, {"reason": "photo"}),
         start, feedback, check, approve)  # fmt: skip
    # d: dispatched, still waiting to be accepted.
    # e: taken and in hand when its condition cleared: it stays with the worker, open.
    _act(dsn, e, accept, start)
    _clear(dsn, e)
    states = {
        t: scalar(dsn, "SELECT state::text FROM tasks WHERE id = %s", (t,)) for t in (b, d, e)
    }
    assert states == {b: "closed", d: "dispatched", e: "handling"}

    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        city = kpi.report(conn, "haicheng", now - timedelta(hours=1), now + timedelta(minutes=1))
        days = kpi.daily(conn, "haicheng", now - timedelta(hours=1), now + timedelta(minutes=1))
        shanghai = kpi.daily(conn, "haicheng", now - timedelta(days=1), now, tz="Asia/Shanghai")
    k = city[0]
    assert (k.tasks, k.dispatched, k.accepted) == (5, 5, 3)
    assert (k.closed, k.closed_by_people, k.closed_automatically) == (3, 2, 1)
    assert (k.closed_on_time, k.reworked) == (1, 1)
    assert k.acceptance_base == 4
    assert k.acceptance_rate == 0.75  # 3 of the 4 that were not closed by themselves untaken
    assert k.on_time_closure_rate == 0.5  # a of a and c; b does not count as "on time"
    assert k.rework_rate == 0.5
    assert k.mean_time_to_close_s is not None and k.mean_time_to_accept_s is not None
    # The rows below the city add up to it.
    assert sum(x.closed_automatically for x in city[1:]) == 1
    assert sum(x.closed_by_people for x in city[1:]) == 2
    today = days[-1]
    assert (today.created, today.closed, today.closed_late, today.closed_automatically) == (
        5, 2, 1, 1,
    )  # fmt: skip
    assert sum(x.created for x in days) == 5
    # Days counted in the venue's zone: the last is today there.
    assert shanghai[-1].day == now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    assert sum(x.created for x in shanghai) == 5
    assert d  # still open: counted in dispatched, not in accepted


def test_no_tasks_taken_gives_no_rates(stack: LocalStack, nodes: list[NodeCredentials]) -> None:
    """Every task closed by itself: the rates are undefined (the console shows a dash), not 100%."""
    dsn, site = stack.dsn, nodes[0].site
    for subject in "xy":
        _clear(dsn, raise_incident(dsn, site, subject))
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        (k, *_) = kpi.report(conn, "haicheng", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert (k.tasks, k.closed, k.closed_automatically, k.closed_by_people) == (2, 2, 2, 0)
    assert k.acceptance_rate is None
    assert k.on_time_closure_rate is None and k.rework_rate is None
    assert k.mean_time_to_close_s is None
