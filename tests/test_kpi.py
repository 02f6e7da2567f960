"""KPIs count what people did: acceptance and on-time closure over the tasks a person took,
automatic closures (the condition cleared before anyone acted) in a column of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from casework import incidents, kpi, tasks
from casework.tasks import Action
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
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


def test_closures_by_hand_and_after_a_hand_back_are_not_automatic(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """Only the system closing a task nobody took is automatic. An operator resolving the
    incident by hand, and a condition clearing after a worker took the task and handed it back,
    each have their own column; none of them counts as closed by people."""
    dsn, site = stack.dsn, nodes[0].site
    worker, dispatcher = people_of(dsn, site)
    by_hand, handed_back, auto, done = (raise_incident(dsn, site, s) for s in ("h", "r", "a", "d"))
    # by_hand: an operator resolves the incident from the console (`_resolve_many(actor=...)`).
    with psycopg.connect(dsn) as conn:
        key = scalar(dsn, "SELECT i.dedup_key FROM incidents i JOIN tasks t ON t.incident_id = i.id"
                          " WHERE t.id = %s", (by_hand,))  # fmt: skip
        assert incidents.resolve(conn, str(key), "checked on camera", "operator") == 1
    # handed_back: taken, handed back, then the condition cleared.
    _act(dsn, handed_back, (Action.ACCEPT, worker, {}),
         (Action.HAND_BACK, worker, {"reason": "not my venue"}))  # fmt: skip
    _clear(dsn, handed_back)
    _clear(dsn, auto)
    _act(dsn, done, (Action.ACCEPT, worker, {}), (Action.START, worker, {}),
         (Action.FEEDBACK, worker, {"note": "done"}), (Action.CHECK, dispatcher, {}),
         (Action.APPROVE, dispatcher, {}))  # fmt: skip
    closing = "SELECT actor FROM task_events WHERE task_id = %s AND action = 'incident_resolved'"
    actors = {t: scalar(dsn, closing, (t,)) for t in (by_hand, handed_back, auto)}
    assert actors == {by_hand: "operator", handed_back: "system", auto: "system"}

    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        (k, *_) = kpi.report(conn, "haicheng", now - timedelta(hours=1), now + timedelta(minutes=1))
        days = kpi.daily(conn, "haicheng", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert (k.tasks, k.dispatched, k.accepted, k.closed) == (4, 4, 2, 4)
    assert (k.closed_by_people, k.closed_automatically) == (1, 1)
    assert (k.closed_by_operator, k.closed_after_hand_back) == (1, 1)
    # Closed untaken by the system or by hand: out of the base; the one handed back stays in.
    assert k.acceptance_base == 2 and k.acceptance_rate == 1.0
    assert (k.closed_on_time, k.on_time_closure_rate) == (1, 1.0)  # only `done`
    assert sum(d.closed for d in days) == 1 and sum(d.closed_automatically for d in days) == 1


def test_time_to_accept_runs_from_dispatch(stack: LocalStack, nodes: list[NodeCredentials]) -> None:
    """Mean time to accept: from the (first) dispatch event to the first acceptance, not from
    when the task was created. The history is dated back so the arithmetic is exact."""
    dsn, site = stack.dsn, nodes[0].site
    worker, _ = people_of(dsn, site)
    one, two = raise_incident(dsn, site, "m1"), raise_incident(dsn, site, "m2")
    for t in (one, two):
        _act(dsn, t, (Action.ACCEPT, worker, {}))
    with psycopg.connect(dsn) as conn:
        # one: created 50 min ago, dispatched 40 min ago, accepted 30 min ago (600 s).
        # two: created 50 min ago, dispatched 20 min ago, accepted now (1200 s).
        for t, dispatched, accepted in ((one, 40, 30), (two, 20, 0)):
            conn.execute("UPDATE tasks SET created_at = now() - interval '50 minutes'"
                         " WHERE id = %s", (t,))  # fmt: skip
            conn.execute("UPDATE task_events SET at = now() - make_interval(mins => %s)"
                         " WHERE task_id = %s AND action = 'dispatch'", (dispatched, t))  # fmt: skip
            conn.execute("UPDATE task_events SET at = now() - make_interval(mins => %s)"
                         " WHERE task_id = %s AND action = 'accept'", (accepted, t))  # fmt: skip
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        (k, *_) = kpi.report(conn, "haicheng", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert k.accepted == 2
    assert k.mean_time_to_accept_s == 900.0  # (600 + 1200) / 2, from dispatch; 2100 from creation
