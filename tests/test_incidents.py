"""Incidents and grid tasks end to end: simulated devices, real broker, real ingest, PostgreSQL."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from casework import emergency, kpi, tasks
from casework.tasks import Action, TaskError
from gateway import messages as m
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from simulators.devices import SimCounter, SimDoor, SimSpeaker
from simulators.fleet import Fleet
from tests.edge_support import fleet_of
from tests.support import (
    device_of,
    metric,
    rows,
    scalar,
    start_ingest,
    stop_process,
    wait_until,
)

FAST = {"GRIDWATCH_DEADLINES__RED_ACCEPT_S": "3", "GRIDWATCH_DEADLINES__RED_HANDLE_S": "60"}


@pytest.fixture
def fleet(stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path) -> Iterator[Fleet]:
    f = fleet_of(stack, nodes, tmp_path / "fleet")
    yield f
    f.stop()


def door(fleet: Fleet, creds: NodeCredentials) -> SimDoor:
    dev = fleet.devices[device_of(creds, "door")]
    assert isinstance(dev, SimDoor)
    return dev


def one_task(dsn: str) -> tuple[int, int]:
    """(task id, incident id) of the only task, once there is one."""
    wait_until(lambda: bool(rows(dsn, "SELECT 1 FROM tasks")), 15, "a task")
    got = rows(dsn, "SELECT id, incident_id FROM tasks")
    assert len(got) == 1, got
    return int(str(got[0][0])), int(str(got[0][1]))


def act(dsn: str, task_id: int, action: Action, actor: str, **kw: object) -> tasks.State:
    with psycopg.connect(dsn) as conn:
        return tasks.act(conn, task_id, action, actor, **kw)  # type: ignore[arg-type]


def grid_people(dsn: str, venue: str) -> tuple[str, str]:
    """(the grid's worker, its community's dispatcher) for a venue."""
    grid, community = rows(
        dsn,
        "SELECT g.id, g.parent_id FROM venues v JOIN territory g ON g.id = v.grid_id WHERE v.id = %s",
        (venue,),
    )[0]
    return f"worker-{grid}", f"disp-{community}"


def test_forced_door_to_closed_case_with_the_whole_timeline(
    stack: LocalStack, nodes: list[NodeCredentials], fleet: Fleet, ingest: object
) -> None:
    dsn = stack.dsn
    door(fleet, nodes[0]).force()
    task_id, incident_id = one_task(dsn)
    worker, dispatcher = grid_people(dsn, nodes[0].site)
    incident = rows(dsn, "SELECT rule, severity::text, status::text, device_id FROM incidents")[0]
    assert incident == ("door_forced", "red", "open", device_of(nodes[0], "door"))
    assert rows(dsn, "SELECT state::text, assignee FROM tasks") == [("dispatched", worker)]

    other_worker, _ = grid_people(dsn, nodes[1].site)
    refusals = [
        (Action.APPROVE, dispatcher, {}, "only when checking"),
        (Action.ACCEPT, dispatcher, {}, "a dispatcher cannot accept"),
        (Action.ACCEPT, other_worker, {}, "outside"),
    ]
    if other_worker == worker:  # two venues in one grid: the other worker is not the assignee
        refusals.pop()
    for action, actor, kw, error in refusals:
        with pytest.raises(TaskError, match=error):
            act(dsn, task_id, action, actor, **kw)

    act(dsn, task_id, Action.ACCEPT, worker)
    act(dsn, task_id, Action.START, worker)
    with pytest.raises(TaskError, match="needs a note"):
        act(dsn, task_id, Action.FEEDBACK, worker)
    act(dsn, task_id, Action.FEEDBACK, worker, note="door was propped by a delivery; closed it",
        evidence=["photos/door1.jpg"])  # fmt: skip
    act(dsn, task_id, Action.CHECK, dispatcher)
    act(dsn, task_id, Action.REJECT, dispatcher, reason="lock not checked")
    act(dsn, task_id, Action.START, worker)
    act(dsn, task_id, Action.FEEDBACK, worker, note="lock checked and working")
    act(dsn, task_id, Action.CHECK, dispatcher)
    assert act(dsn, task_id, Action.APPROVE, dispatcher) is tasks.State.CLOSED

    timeline = rows(dsn, "SELECT action, to_state::text, actor FROM task_events WHERE task_id = %s"
                         " ORDER BY id", (task_id,))  # fmt: skip
    assert [(a, s) for a, s, _ in timeline] == [
        ("create", "reported"), ("dispatch", "dispatched"), ("accept", "accepted"),
        ("start", "handling"), ("feedback", "feedback"), ("check", "checking"),
        ("reject", "rework"), ("start", "handling"), ("feedback", "feedback"),
        ("check", "checking"), ("approve", "closed"),
    ]  # fmt: skip
    evidence = scalar(
        dsn, "SELECT evidence FROM task_events WHERE action = 'feedback' ORDER BY id LIMIT 1"
    )
    assert evidence == ["photos/door1.jpg"]
    assert scalar(dsn, "SELECT status::text FROM incidents") == "resolved"
    kinds = [r[0] for r in rows(dsn, "SELECT kind FROM incident_events WHERE incident_id = %s"
                                     " ORDER BY id", (incident_id,))]  # fmt: skip
    assert kinds == ["opened", "task", "resolved"]
    assert scalar(dsn, "SELECT count(*) FROM timers WHERE key = %s", (str(task_id),)) == 0

    with psycopg.connect(dsn) as conn:
        now = datetime.now(UTC)
        city = kpi.report(conn, "haicheng", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert city[0].territory_id == "haicheng"
    assert (city[0].tasks, city[0].accepted, city[0].closed, city[0].reworked) == (1, 1, 1, 1)
    assert city[0].acceptance_rate == 1.0 and city[0].rework_rate == 1.0
    assert city[0].on_time_closure_rate == 1.0
    assert sum(k.tasks for k in city[1:]) == 1  # rolled up from the district below


def test_missed_acceptance_escalates_up_the_tree(
    stack: LocalStack, nodes: list[NodeCredentials], fleet: Fleet
) -> None:
    worker, _ = start_ingest(stack, env=FAST)
    try:
        dsn = stack.dsn
        door(fleet, nodes[0]).force()
        one_task(dsn)
        wait_until(lambda: scalar(dsn, "SELECT flagged FROM tasks") is True, 5, "the 80% flag")
        wait_until(lambda: scalar(dsn, "SELECT escalations FROM tasks") == 2, 10, "two escalations")
    finally:
        stop_process(worker)
    chain = rows(dsn, "SELECT data->>'from', data->>'to' FROM task_events WHERE action = 'escalate'"
                      " ORDER BY id")  # fmt: skip
    grid = str(scalar(dsn, "SELECT grid_id FROM venues WHERE id = %s", (nodes[0].site,)))
    levels = dict(rows(dsn, "SELECT id, level::text FROM territory"))
    assert chain[0][0] == grid
    assert [levels[to] for _, to in chain] == ["community", "subdistrict"]
    assert chain[1][0] == chain[0][1]
    notified = {
        r[0] for r in rows(dsn, "SELECT territory_id FROM notifications WHERE kind = 'escalated'")
    }
    assert notified == {to for _, to in chain}
    assert (
        scalar(dsn, "SELECT state::text FROM tasks") == "dispatched"
    )  # still waiting to be accepted


def test_two_workers_fed_the_same_events_make_one_incident(
    stack: LocalStack, nodes: list[NodeCredentials], fleet: Fleet
) -> None:
    # Two share groups: each worker receives every message, as if two deployments overlapped.
    assert stack.broker is not None
    stack.broker.stop()
    stack.start_broker(extra_share_groups=("a", "b"))  # the broker lets the ingest join these
    assert fleet.wait_connected(30)
    a, _ = start_ingest(stack, env={"GRIDWATCH_SHARE_GROUP": "a"})
    b, _ = start_ingest(stack, slot=1, env={"GRIDWATCH_SHARE_GROUP": "b"})
    try:
        dsn = stack.dsn
        target = door(fleet, nodes[0])
        for _ in range(5):
            target.force()
        wait_until(lambda: scalar(dsn, "SELECT coalesce(max(occurrences), 0) FROM incidents") == 5,
                   15, "five occurrences")  # fmt: skip
        time.sleep(1.0)
    finally:
        stop_process(a)
        stop_process(b)
    assert scalar(dsn, "SELECT count(*) FROM incidents") == 1
    assert scalar(dsn, "SELECT count(*) FROM tasks") == 1
    assert scalar(dsn, "SELECT count(*) FROM door_events WHERE type = 'door.forced'") == 5


def test_ingest_restart_with_a_pending_deadline_escalates_once_on_time(
    stack: LocalStack, nodes: list[NodeCredentials], fleet: Fleet
) -> None:
    env = {"GRIDWATCH_DEADLINES__RED_ACCEPT_S": "5"}
    worker, _ = start_ingest(stack, env=env)
    dsn = stack.dsn
    door(fleet, nodes[0]).force()
    one_task(dsn)
    stop_process(worker)  # the deadline is pending in the database, not in a process
    time.sleep(1.0)
    worker, _ = start_ingest(stack, env=env)
    try:
        wait_until(lambda: scalar(dsn, "SELECT escalations FROM tasks") == 1, 10, "the escalation")
        time.sleep(2.0)  # the next level has its own 5 s: nothing more yet
        assert scalar(dsn, "SELECT escalations FROM tasks") == 1
    finally:
        stop_process(worker)
    late = scalar(dsn, """SELECT extract(epoch FROM e.at - t.stage_started_first)
                          FROM task_events e, (SELECT min(at) AS stage_started_first FROM task_events
                                               WHERE action = 'dispatch') t
                          WHERE e.action = 'escalate'""")  # fmt: skip
    # Not before its deadline; how soon after it is the timers' lateness metric's to say (a
    # loaded machine can take seconds to start a worker), and the wait above bounds it.
    assert float(str(late)) >= 5.0, f"escalated {late}s after dispatch, before its deadline"


def test_emergency_broadcasts_opens_shelters_and_reverts(
    stack: LocalStack, nodes: list[NodeCredentials], fleet: Fleet, ingest: object
) -> None:
    dsn = stack.dsn
    shelters = {str(r[0]) for r in rows(dsn, "SELECT id FROM venues WHERE is_shelter")}
    assert shelters and shelters != {c.site for c in nodes}, "the demo has shelters and others"
    speakers = [fleet.devices[device_of(c, "speaker")] for c in nodes]
    doors = {c.site: door(fleet, c) for c in nodes}
    with psycopg.connect(dsn) as conn:
        emergency.start(conn, "haicheng", actor="operator", reason="typhoon",
                        message="Typhoon: go to the nearest shelter")  # fmt: skip
    wait_until(
        lambda: all(isinstance(s, SimSpeaker) and s.played for s in speakers), 15, "broadcast"
    )
    assert all(s.played == ["Typhoon: go to the nearest shelter"] for s in speakers)  # type: ignore[attr-defined]
    wait_until(lambda: all(not doors[v].locked for v in shelters), 10, "shelter doors unlocked")
    # Open until the emergency ends, not for an unlock's default 10 seconds.
    assert all("relock" not in doors[v].timers for v in shelters)
    assert all(doors[v].locked for v in doors if v not in shelters)
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM commands WHERE state <> 'done'") == 0, 10,
               "every command answered")  # fmt: skip

    door(fleet, nodes[0]).force()  # a task raised during the emergency has tighter deadlines
    wait_until(lambda: bool(rows(dsn, "SELECT 1 FROM tasks")), 10, "a task")
    assert rows(
        dsn, "SELECT emergency, extract(epoch FROM deadline_at - stage_started) FROM tasks"
    ) == [(True, 150)]

    with psycopg.connect(dsn) as conn:
        emergency.end(conn, "haicheng", actor="operator")
    wait_until(lambda: all(doors[v].locked for v in shelters), 10, "shelter doors locked again")
    wait_until(lambda: all(isinstance(s, SimSpeaker) and s.playing is None for s in speakers), 10,
               "speakers stopped")  # fmt: skip
    reasons = {r[0] for r in rows(dsn, "SELECT reason FROM commands")}
    assert reasons == {"emergency broadcast", "emergency: shelter open", "emergency over",
                       "emergency over: shelter back to normal"}  # fmt: skip
    assert rows(dsn, "SELECT ended_by FROM emergencies") == [("operator",)]


def test_rules_raise_and_clear(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dsn = stack.dsn
    # Simulated time 30 times faster: a door held open a simulated minute reports in 2 s.
    fleet = fleet_of(stack, nodes[:1], tmp_path / "fleet", speed=30)
    request.addfinalizer(fleet.stop)
    creds = nodes[0]
    with psycopg.connect(dsn) as conn:  # quick rules for the test: short durations
        conn.execute(
            """INSERT INTO rule_overrides (venue_id, rule, settings) VALUES
               (%s, 'over_capacity', '{"for_s": 1}'), (%s, 'node_offline', '{"for_s": 1}')""",
            (creds.site, creds.site),
        )
    worker, _ = start_ingest(stack)  # reads the overrides as it starts
    request.addfinalizer(lambda: stop_process(worker))
    d = door(fleet, creds)
    d.hold_open(300)
    d.deny_burst(6)
    counter = fleet.devices[device_of(creds, "counter")]
    speaker = fleet.devices[device_of(creds, "speaker")]
    assert isinstance(counter, SimCounter) and isinstance(speaker, SimSpeaker)
    speaker.set_fault("amplifier")

    def open_rules() -> set[str]:
        return {
            str(r[0]) for r in rows(dsn, "SELECT rule FROM incidents WHERE status <> 'resolved'")
        }

    def raised() -> set[str]:
        return {str(r[0]) for r in rows(dsn, "SELECT rule FROM incidents")}

    try:
        wait_until(lambda: {"door_held_open", "denied_burst", "speaker_fault"} <= raised(), 20,
                   "held open, denied burst and speaker fault")  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}; raised: {raised()}") from None
    speaker.set_fault(None)
    wait_until(lambda: "speaker_fault" not in open_rules(), 10, "the fault to clear")
    capacity = int(str(scalar(dsn, "SELECT capacity FROM venues WHERE id = %s", (creds.site,))))
    counter.spike(capacity * 3)
    for _ in range(3):
        counter.report(fleet.engine.clock.now())
        time.sleep(0.7)
    wait_until(lambda: {"over_capacity", "far_over_capacity"} <= open_rules(), 15, "over capacity")
    fleet.cut_link(creds.node, 4)
    wait_until(lambda: "node_offline" in open_rules(), 15, "the venue offline")
    wait_until(lambda: "node_offline" not in open_rules(), 20, "the venue back")
    assert scalar(dsn, "SELECT count(*) FROM tasks") == scalar(
        dsn, "SELECT count(*) FROM incidents"
    )


def test_maintenance_silences_a_venue(
    stack: LocalStack, nodes: list[NodeCredentials], fleet: Fleet, ingest: object
) -> None:
    dsn = stack.dsn
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO maintenance_windows (venue_id, starts, ends, reason)"
            " VALUES (%s, now() - interval '1 minute', now() + interval '1 hour', 'door repair')",
            (nodes[0].site,),
        )
    door(fleet, nodes[0]).force()
    door(fleet, nodes[1]).force()
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM door_events WHERE type = 'door.forced'") == 2,
               what="both stored")  # fmt: skip
    wait_until(
        lambda: bool(rows(dsn, "SELECT 1 FROM incidents")), what="the other venue's incident"
    )
    time.sleep(0.5)
    assert rows(dsn, "SELECT venue_id FROM incidents") == [(nodes[1].site,)]


def test_task_cli(
    stack: LocalStack, nodes: list[NodeCredentials], fleet: Fleet, ingest: object
) -> None:
    import json
    import sys

    door(fleet, nodes[0]).force()
    task_id, _ = one_task(stack.dsn)
    worker, _ = grid_people(stack.dsn, nodes[0].site)
    base = [sys.executable, "-m", "gridwatch.cli"]
    db = ["--database-url", stack.role_dsn("cli")]
    inbox = subprocess.run([*base, "task", "list", "--area", "haicheng", "--assignee", worker, *db],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert [t["id"] for t in json.loads(inbox.stdout)] == [task_id]
    refused = subprocess.run([*base, "task", "act", str(task_id), "approve", "--as", worker, *db],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert refused.returncode == 1 and "cannot approve" in refused.stderr
    done = subprocess.run([*base, "task", "act", str(task_id), "accept", "--as", worker, *db],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert "accepted" in done.stdout


def _raise_one(dsn: str, site: str, rule: str = "door_forced") -> int:
    """An incident (and its task) straight through the incident code, without a device."""
    from casework import incidents
    from casework.rules import Raise, Rule, Severity
    from ingest import registry

    with psycopg.connect(dsn) as conn:
        venue = registry.load(conn).venues[site]
        applied = incidents.apply(
            conn,
            [Raise(Rule(rule), f"{site}-x", Severity.YELLOW, venue, datetime.now(UTC))],
            tasks.DeadlinePolicy(),
        )
    return applied.tasks[0]


def test_hand_back_dispatch_suspend_resume_extend(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    dsn = stack.dsn
    task_id = _raise_one(dsn, nodes[0].site)
    worker, dispatcher = grid_people(dsn, nodes[0].site)
    with pytest.raises(TaskError, match="needs a reason"):
        act(dsn, task_id, Action.HAND_BACK, worker)
    act(dsn, task_id, Action.HAND_BACK, worker, reason="off sick")
    assert rows(dsn, "SELECT state::text, assignee FROM tasks") == [("returned", None)]
    with pytest.raises(TaskError, match="needs an assignee"):
        act(dsn, task_id, Action.DISPATCH, dispatcher)
    with pytest.raises(TaskError, match="not a worker"):
        act(dsn, task_id, Action.DISPATCH, dispatcher, assignee=dispatcher)
    act(dsn, task_id, Action.DISPATCH, dispatcher, assignee=worker)
    act(dsn, task_id, Action.ACCEPT, worker)
    deadline = scalar(dsn, "SELECT deadline_at FROM tasks")
    act(dsn, task_id, Action.EXTEND, dispatcher, reason="waiting for a locksmith", extend_s=3600)
    extended = scalar(dsn, "SELECT deadline_at FROM tasks")
    assert isinstance(deadline, datetime) and isinstance(extended, datetime)
    assert (extended - deadline).total_seconds() == pytest.approx(3600, abs=1)
    act(dsn, task_id, Action.SUSPEND, dispatcher, reason="venue closed for repairs")
    assert rows(dsn, "SELECT state::text, deadline_at FROM tasks") == [("suspended", None)]
    assert scalar(dsn, "SELECT count(*) FROM timers WHERE key = %s", (str(task_id),)) == 0
    with pytest.raises(TaskError, match="cannot start a task that is suspended"):
        act(dsn, task_id, Action.START, worker)
    assert act(dsn, task_id, Action.RESUME, dispatcher) is tasks.State.ACCEPTED
    assert scalar(dsn, "SELECT count(*) FROM timers WHERE key = %s", (str(task_id),)) == 2
    actions = [r[0] for r in rows(dsn, "SELECT action FROM task_events ORDER BY id")]
    assert actions == [
        "create",
        "dispatch",
        "hand_back",
        "dispatch",
        "accept",
        "extend",
        "suspend",
        "resume",
    ]
    reasons = dict(rows(dsn, "SELECT action, reason FROM task_events WHERE reason <> ''"))
    assert reasons["hand_back"] == "off sick" and reasons["suspend"] == "venue closed for repairs"


def test_rule_overrides_and_maintenance_from_the_command_line(stack: LocalStack) -> None:
    import sys

    base = [sys.executable, "-m", "gridwatch.cli"]
    db = ["--database-url", stack.role_dsn("cli"), "--as", "operator"]
    ok = subprocess.run([*base, "rules", "set", "over_capacity", "--venue-kind", "shelter",
                         "--settings", '{"for_s": 30, "severity": "red"}', *db],
                        capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    again = subprocess.run([*base, "rules", "set", "over_capacity", "--venue-kind", "shelter",
                            "--settings", '{"for_s": 60}', *db], capture_output=True, text=True,
                           check=False)  # fmt: skip
    assert again.returncode == 0
    assert rows(stack.dsn, "SELECT venue_kind::text, settings FROM rule_overrides") == [
        ("shelter", {"for_s": 60})
    ]
    bad = subprocess.run([*base, "rules", "set", "over_capacity", "--venue-kind", "shelter",
                          "--settings", '{"for_s": -1}', *db], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert bad.returncode == 2 and "for_s" in bad.stderr
    silenced = subprocess.run([*base, "maintenance", "--venue", "v0001", "--hours", "2",
                               "--reason", "repainting", *db],
                              capture_output=True, text=True, check=False)  # fmt: skip
    assert silenced.returncode == 0, silenced.stderr
    assert (
        scalar(stack.dsn, "SELECT count(*) FROM maintenance_windows WHERE venue_id = 'v0001'") == 1
    )


def test_a_condition_that_clears_closes_a_task_nobody_took(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    from casework import incidents

    dsn = stack.dsn
    task_id = _raise_one(dsn, nodes[0].site, rule="door_held_open")
    with psycopg.connect(dsn) as conn:
        assert incidents.resolve(conn, f"door_held_open:{nodes[0].site}-x", "the door closed") == 1
    assert rows(dsn, "SELECT state::text FROM tasks WHERE id = %s", (task_id,)) == [("closed",)]
    assert scalar(dsn, "SELECT count(*) FROM timers WHERE key = %s", (str(task_id),)) == 0
    last = rows(dsn, "SELECT action, reason FROM task_events ORDER BY id DESC LIMIT 1")
    assert last == [("incident_resolved", "the door closed")]


def test_a_short_network_blip_raises_no_venue_offline_incident(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object
) -> None:
    dsn = stack.dsn
    fleet = fleet_of(stack, nodes[:1], tmp_path / "fleet")
    try:
        time.sleep(1.0)
        fleet.cut_link(nodes[0].node, 2)  # the broker publishes the will: a death
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM presence_events"
                                       " WHERE type = 'node.birth'") == 2, 20, "the node back")  # fmt: skip
        time.sleep(1.0)  # the leader ticks several times meanwhile
    finally:
        fleet.stop()
    assert scalar(dsn, "SELECT count(*) FROM presence_events WHERE type = 'node.death'") >= 1  # type: ignore[operator]
    assert scalar(dsn, "SELECT count(*) FROM incidents WHERE rule = 'node_offline'") == 0


def test_silent_devices_are_swept_by_their_venues_own_limit(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """A venue may allow its devices less silence than the default (10 min): the leader's sweep
    raises `device_offline` by that venue's limit, and not earlier anywhere else."""
    import threading

    from casework.rules import RuleBook
    from ingest.leader import Leader
    from ingest.registry import Registry

    dsn = stack.dsn
    strict, relaxed = nodes[0], nodes[1]
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """INSERT INTO rule_overrides (venue_id, rule, settings)
               VALUES (%s, 'device_offline', '{"limit": 60}')""",
            (strict.site,),
        )
        for creds in (strict, relaxed):
            conn.execute(
                """INSERT INTO node_presence (node_id, online, bdseq, birth_ts, last_seen)
                   VALUES (%s, true, 1, now(), now())""",
                (creds.node,),
            )
            conn.execute(  # every device last heard from five minutes ago
                """INSERT INTO device_status (device_id, online, last_seen)
                   SELECT id, true, now() - interval '5 minutes' FROM devices WHERE node_id = %s""",
                (creds.node,),
            )
    leader = Leader(dsn, Registry(60), RuleBook(60), tasks.DeadlinePolicy(),
                    lambda topic, payload: None, threading.Event(), "test")  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        leader.registry.refresh_if_due(conn)
        leader.book.refresh_if_due(conn)
        leader._sweep_silent_devices(conn)
    swept = {
        str(r[0])
        for r in rows(dsn, "SELECT device_id FROM incidents WHERE rule = 'device_offline'")
    }
    kinds = ("door", "counter", "speaker")  # cameras report their own stream (camera.status)
    assert swept == {d for d, k in strict.devices if k in kinds}


def test_end_of_emergency_lock_reaches_a_shelter_that_was_offline(
    stack: LocalStack, nodes: list[NodeCredentials], fleet: Fleet
) -> None:
    """The relock is retried until the shelter's node is back, an incident says meanwhile that
    someone must go and lock it, and the incident resolves when the door answers."""
    proc, port = start_ingest(stack, env={"GRIDWATCH_COMMAND_ALARM_S": "2"})
    try:
        dsn = stack.dsn
        shelter = next(c for c in nodes if c.site in
                       {str(r[0]) for r in rows(dsn, "SELECT id FROM venues WHERE is_shelter")})  # fmt: skip
        shelter_door = door(fleet, shelter)
        with psycopg.connect(dsn) as conn:
            emergency.start(conn, "haicheng", actor="operator", reason="typhoon")
        wait_until(lambda: not shelter_door.locked, 15, "the shelter open")
        fleet.cut_link(shelter.node, 8)
        # No presence row yet is not offline: wait for the row that says so.
        wait_until(
            lambda: rows(dsn, "SELECT online FROM node_presence WHERE node_id = %s",
                         (shelter.node,)) == [(False,)], 10, "the shelter's node offline",
        )  # fmt: skip
        with psycopg.connect(dsn) as conn:
            emergency.end(conn, "haicheng", actor="operator")

        def undelivered() -> list[tuple[object, ...]]:
            return rows(dsn, "SELECT status::text FROM incidents WHERE rule = 'command_undelivered'"
                        " AND device_id = %s", (shelter_door.id,))  # fmt: skip

        wait_until(lambda: undelivered() == [("open",)], 15, "an incident: go and lock it")
        assert not shelter_door.locked
        wait_until(lambda: shelter_door.locked, 30, "the shelter locked once its node is back")
        wait_until(lambda: undelivered() == [("resolved",)], 15, "the incident resolved")
        state, attempts = rows(
            dsn, "SELECT state::text, attempts FROM commands WHERE device_id = %s"
            " AND action->>'action' = 'door.lock'", (shelter_door.id,),
        )[0]  # fmt: skip
        assert state == "done" and int(str(attempts)) >= 2
        red = rows(dsn, "SELECT i.device_id, t.severity::text FROM tasks t"
                   " JOIN incidents i ON i.id = t.incident_id WHERE i.rule = 'command_undelivered'")  # fmt: skip
        doors = {d for d, k in shelter.devices if k == "door"}
        assert sorted(red) == sorted((d, "red") for d in doors), "one red task per shelter door"
        assert metric(port, "gridwatch_commands_undelivered_total") == len(doors)
        assert metric(port, "gridwatch_commands_retried_total") >= len(doors)
    finally:
        stop_process(proc)


def test_a_newer_door_command_supersedes_older_unanswered_ones_but_never_a_lock_by_an_unlock(
    stack: LocalStack,
) -> None:
    with psycopg.connect(stack.dsn) as conn:
        device = str(
            conn.execute("SELECT id FROM devices WHERE kind = 'door' LIMIT 1").fetchone()[0]
        )  # type: ignore[index]
        lock = emergency.queue_command(conn, device, m.DoorLock(), issued_by="operator")
        conn.execute("UPDATE commands SET state = 'sent' WHERE id = %s", (lock,))
        queued = emergency.queue_command(conn, device, m.DoorLockdown(), issued_by="operator")
        unlock = emergency.queue_command(conn, device, m.DoorUnlock(), issued_by="operator")
    got = {
        r[0]: r[1:]
        for r in rows(
            stack.dsn, "SELECT id, state::text, superseded_by, must_deliver FROM commands"
        )
    }
    assert got[lock] == ("sent", queued, True)  # no longer retried; it may still be answered
    # A momentary unlock, which may expire unheard, must not cancel what secures the door.
    assert got[queued] == ("queued", None, True)
    assert got[unlock] == ("queued", None, False)  # a momentary unlock must never happen late


def test_a_door_command_that_expires_is_an_outcome_in_the_audit_log(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    from ingest import commands

    door_id = device_of(nodes[0], "door")
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        cid = emergency.queue_command(conn, door_id, m.DoorUnlock(duration_s=30),
                                      issued_by="operator", reason="delivery",
                                      deadline=timedelta(seconds=1))  # fmt: skip
        conn.execute("UPDATE commands SET deadline = now() - interval '1 minute' WHERE id = %s",
                     (cid,))  # fmt: skip
        commands.expire(conn)
    assert scalar(stack.dsn, "SELECT state::text FROM commands WHERE id = %s", (cid,)) == "expired"
    (detail,) = rows(stack.dsn, "SELECT detail FROM audit_log WHERE action = 'door.outcome'")[0]
    assert isinstance(detail, dict)
    assert (detail["issued_by"], detail["status"], detail["action"]["duration_s"]) == (
        "operator", "expired", 30)  # fmt: skip


def test_a_door_that_refuses_or_fails_a_lock_is_an_incident_at_once(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """Retrying cannot help a door that refused the lock (a node without the platform's key) or
    could not carry it out (a jammed lock): someone must go, so the incident opens at once, and
    only a newer lock the door carries out clears it."""
    from casework.rules import RuleBook
    from ingest import commands
    from ingest.registry import Registry

    door_id = device_of(nodes[0], "door")

    def tick(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        registry, book = Registry(30), RuleBook()
        registry.refresh_if_due(conn)
        book.refresh_if_due(conn)
        commands.alarm(conn, registry, book, tasks.DeadlinePolicy(), commands.CommandPolicy())

    def state() -> list[tuple[object, ...]]:
        return rows(
            stack.dsn, "SELECT status::text FROM incidents WHERE rule = 'command_undelivered'"
        )

    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        lock = emergency.queue_command(conn, door_id, m.DoorLock(), issued_by="operator",
                                       reason="emergency over")  # fmt: skip
        conn.execute("UPDATE commands SET state = 'rejected', detail = 'no command_key'"
                     " WHERE id = %s", (lock,))  # fmt: skip
        tick(conn)
        assert state() == [("open",)]
        again = emergency.queue_command(conn, door_id, m.DoorLock(), issued_by="operator",
                                        reason="key installed, lock again")  # fmt: skip
        conn.execute("UPDATE commands SET state = 'done' WHERE id = %s", (again,))
        tick(conn)
    assert state() == [("resolved",)]
