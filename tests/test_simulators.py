"""Simulated devices and scenarios: deterministic, plausible, and checked before they run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge import drivers as d
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from simulators import scenario as sc
from simulators.devices import SimCounter, SimDoor
from simulators.engine import Engine, SimClock
from simulators.venues import Venue
from tests.edge_support import fleet_of
from tests.support import rows, scalar, wait_until

ROOT = Path(__file__).resolve().parent.parent
VENUE = Venue("v1", "v1-edge", "s", "community_centre", capacity=200, open_24h=False)
MORNING = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


def _counter(seed: int) -> tuple[SimCounter, list[d.Reading]]:
    counter = SimCounter("v1-counter1", VENUE, Engine(SimClock()), seed=seed, report_every_s=60)
    seen: list[d.Reading] = []
    counter._emit = seen.append
    return counter, seen


def _day(counter: SimCounter) -> None:
    for minute in range(0, 24 * 60, 5):
        counter.report(MORNING + timedelta(minutes=minute))


def test_same_seed_same_behaviour() -> None:
    (a, seen_a), (b, seen_b), (c, seen_c) = _counter(3), _counter(3), _counter(4)
    for counter in (a, b, c):
        _day(counter)
    assert seen_a == seen_b
    assert seen_a != seen_c


def test_counts_follow_the_day_and_never_go_negative() -> None:
    counter, seen = _counter(1)
    _day(counter)
    counts = [r.count for r in seen if isinstance(r, d.OccupancySeen)]
    flows_ok = all(r.entered >= 0 and r.exited >= 0 for r in seen if isinstance(r, d.OccupancySeen))
    assert min(counts) >= 0 and flows_ok
    assert max(counts[:60]) > 50  # busy in the late morning (first five hours from 10:00)
    assert counts[12 * 12] == 0  # 22:00: closed and empty
    counter.linger(7)
    counter.report(MORNING + timedelta(hours=14))  # 00:00, closed
    for _ in range(10):
        counter.report(MORNING + timedelta(hours=14))
    assert seen[-1].count == 7  # type: ignore[attr-defined]


def test_lockdown_refuses_every_card() -> None:
    door = SimDoor("v1-door1", VENUE, Engine(SimClock()), seed=1, report_every_s=60)
    seen: list[d.Reading] = []
    door._emit = seen.append
    door.lockdown(True)
    door.swipe(granted=True)
    access = [r for r in seen if isinstance(r, d.AccessSeen)]
    assert [(a.granted, a.reason) for a in access] == [(False, "lockdown")]


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_fit_the_demo_fleet(path: Path) -> None:
    from gridwatch.demo import devices_for
    from simulators.devices import make_device

    engine = Engine(SimClock())
    devices = {}
    nodes = set()
    for i in range(12):
        venue = Venue(f"v{i + 1:04d}", f"v{i + 1:04d}-edge", "s", "community_centre", 100, False)
        nodes.add(venue.node)
        for dev in devices_for(venue.site, 6):
            devices[dev.id] = make_device(
                dev.kind, dev.id, venue, engine, seed=1, report_every_s=60
            )
    sc.check(sc.load(path), devices, nodes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("step", "error"),
    [
        ({"at": "1s", "device": "nope", "action": "force"}, "no device 'nope'"),
        ({"at": "1s", "device": "v1-door1", "action": "explode"}, "can \\["),
        (
            {"at": "1s", "device": "v1-door1", "action": "hold_open", "args": {"minutes": 3}},
            "unexpected keyword",
        ),
        ({"at": "1s", "node": "v9-edge", "action": "cut_link"}, "no node"),
    ],
)
def test_a_wrong_scenario_is_refused_before_it_runs(step: dict[str, object], error: str) -> None:
    door = SimDoor("v1-door1", VENUE, Engine(SimClock()), seed=1, report_every_s=60)
    scenario = sc.Scenario.model_validate({"name": "x", "steps": [step]})
    with pytest.raises(sc.ScenarioError, match=error):
        sc.check(scenario, {"v1-door1": door}, {"v1-edge"})


@pytest.mark.parametrize(
    ("text", "seconds"), [(5, 5.0), ("5s", 5.0), ("1.5m", 90.0), ("2h", 7200.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert sc.parse_duration(text) == seconds


def test_scenario_end_to_end(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object
) -> None:
    import threading

    fleet = fleet_of(stack, nodes, tmp_path / "fleet")
    door, speaker, camera, counter = (
        next(dev for dev, kind in nodes[0].devices if kind == k)
        for k in ("door", "speaker", "camera", "counter")
    )
    scenario = sc.Scenario.model_validate({
        "name": "test",
        "steps": [
            {"at": 0.2, "device": door, "action": "force"},
            {"at": 0.4, "device": speaker, "action": "cut"},
            {"at": 0.6, "device": camera, "action": "alert", "args": {"kind": "intrusion", "seconds": 30}},
            {"at": 0.8, "device": counter, "action": "spike", "args": {"people": 500}},
            {"at": 1.0, "node": nodes[1].node, "action": "cut_link", "args": {"seconds": 2}},
        ],
    })  # fmt: skip
    sc.check(scenario, fleet.devices, set(fleet.agents))
    assert sc.run(scenario, fleet.devices, fleet.cut_link, threading.Event()) == 5
    fleet.devices[counter].report(fleet.engine.clock.now())  # a reading with the crowd in it
    dsn = stack.dsn
    wait_until(
        lambda: bool(rows(dsn, "SELECT 1 FROM door_events WHERE type = 'door.forced'")),
        what="forced door",
    )
    wait_until(
        lambda: bool(rows(dsn, "SELECT 1 FROM camera_alerts WHERE kind = 'intrusion'")),
        what="intrusion",
    )
    wait_until(lambda: scalar(dsn, "SELECT max(count) FROM occupancy") is not None
               and int(str(scalar(dsn, "SELECT max(count) FROM occupancy"))) > 100, what="the crowd")  # fmt: skip
    assert scalar(dsn, "SELECT device_id FROM door_events WHERE type = 'door.forced'") == door
    assert (
        scalar(
            dsn,
            "SELECT online FROM speaker_status WHERE device_id = %s ORDER BY ts DESC LIMIT 1",
            (speaker,),
        )
        is False
    )
    # The cut venue went offline (the broker published its will) and came back with a new birth.
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM presence_events WHERE node_id = %s AND type = 'node.birth'",
                              (nodes[1].node,)) == 2, 15, "the cut venue's second birth")  # fmt: skip
    assert (
        scalar(
            dsn,
            "SELECT count(*) FROM presence_events WHERE node_id = %s AND type = 'node.death'",
            (nodes[1].node,),
        )
        == 1
    )
    assert (
        scalar(dsn, "SELECT online FROM node_presence WHERE node_id = %s", (nodes[1].node,)) is True
    )
    fleet.stop()
