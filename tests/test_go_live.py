"""Putting a city into service, as docs/go-live.md does it: from an empty database, a city's
registry file applied from the command line, two nodes enrolled by code, their agents started
with nothing but the code and the platform's address, their messages stored. No broker restart
and no file written by hand: the ingest leader's broker reconcile gives each node its account."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridwatch.local.services import LocalPostgres, free_port, wait_for_port
from gridwatch.local.stack import LocalStack, Ports
from tests.support import rows, scalar, start_ingest, stop_process, wait_until

CITY = """\
version: 1
areas:
  - {id: linhai, level: city, name: 临海市}
  - {id: linhai_dongcheng, level: district, name: 东城区, parent: linhai}
  - {id: linhai_dongcheng_jiefang, level: subdistrict, name: 解放街道, parent: linhai_dongcheng}
  - {id: linhai_taoyuan, level: community, name: 桃园社区, parent: linhai_dongcheng_jiefang}
  - {id: linhai_taoyuan_g1, level: grid, name: 桃园社区第一网格, parent: linhai_taoyuan}
venues:
  - id: ty-centre
    grid: linhai_taoyuan_g1
    name: 桃园社区党群服务中心
    kind: community_centre
    address: 临海市东城区解放街道桃园路 18 号
    location: {lat: 28.8584, lon: 121.1446}
    capacity: 120
    shelter: true
    opening_hours: {mon: [["08:30", "17:30"]], tue: [["08:30", "17:30"]]}
  - id: ty-station
    grid: linhai_taoyuan_g1
    name: 桃园 24 小时自助服务站
    kind: self_service_station
    capacity: 12
    open_24h: true
    unstaffed: true
nodes:
  - {id: ty-centre-edge, venue: ty-centre}
  - {id: ty-station-edge, venue: ty-station}
people:
  - {id: admin, name: 系统管理员, role: admin, scope: linhai}
"""

DEVICES = """\
id,node,kind,name,driver,settings
ty-centre-counter,ty-centre-edge,counter,大厅客流计数,simulated,"{""report_every_s"": 0.3}"
ty-station-counter,ty-station-edge,counter,自助站客流计数,simulated,"{""report_every_s"": 0.3}"
ty-station-door,ty-station-edge,door,自助站门禁,simulated,
"""

_numbers = itertools.count(1)


@pytest.fixture
def empty(tmp_path: Path, postgres: LocalPostgres) -> Iterator[LocalStack]:
    """A migrated database with nothing in its registry, and a running Mosquitto."""
    s = LocalStack(tmp_path / "home", preferred=Ports(postgres.port, free_port(), free_port()),
                   postgres=postgres, database=f"golive_{next(_numbers)}")  # fmt: skip
    s.start_database()
    s.start_broker()
    yield s
    s.stop()


def _gridwatch(stack: LocalStack, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", *args, "--database-url", stack.role_dsn("cli")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_city_from_an_empty_database_to_its_first_venues_reporting(
    empty: LocalStack, tmp_path: Path
) -> None:
    stack = empty
    assert scalar(stack.dsn, "SELECT count(*) FROM venues") == 0
    city = tmp_path / "linhai.yaml"
    city.write_text(CITY.replace("nodes:", "devices: {csv: devices.csv}\nnodes:"))
    (tmp_path / "devices.csv").write_text(DEVICES)

    planned = _gridwatch(stack, "registry", "plan", str(city))
    assert "nothing was applied" not in planned and "ty-station-door" in planned
    _gridwatch(stack, "registry", "apply", str(city), "--as", "installer")
    assert "no changes" in _gridwatch(stack, "registry", "plan", str(city))

    ingest, _ = start_ingest(stack)
    port = free_port()
    api = stack.start_api(port)
    agents: list[subprocess.Popen[bytes]] = []
    try:
        assert wait_for_port("127.0.0.1", port, 60), (stack.logs / "api.log").read_text()
        for node in ("ty-centre-edge", "ty-station-edge"):
            said = _gridwatch(stack, "node", "enrol-code", node, "--hours", "4")
            code = re.search(r"\(valid 4 h, once\): (\S+)", said)
            assert code is not None, said
            folder = tmp_path / node
            with (tmp_path / f"{node}.log").open("ab") as log:
                agents.append(subprocess.Popen(
                    [sys.executable, "-m", "gridwatch.cli", "edge", "--enrol", code.group(1),
                     "--platform", f"http://127.0.0.1:{port}",
                     "--site-file", str(folder / "site.yaml")],
                    stdout=log, stderr=subprocess.STDOUT,
                ))  # fmt: skip
        for counter in ("ty-centre-counter", "ty-station-counter"):
            wait_until(
                lambda c=counter: scalar(stack.dsn, "SELECT count(*) FROM occupancy"  # type: ignore[misc]
                                         " WHERE device_id = %s", (c,)) >= 3,
                120, f"readings of {counter}",
            )  # fmt: skip
        online = rows(stack.dsn, "SELECT node_id FROM node_presence WHERE online ORDER BY node_id")
        assert online == [("ty-centre-edge",), ("ty-station-edge",)]
        # Each node's account came from the reconcile, not from a regenerated broker file.
        created = rows(stack.dsn, "SELECT changes FROM broker_reconciles WHERE error IS NULL")
        assert any("ty-station-edge" in str(c) for c in created)
        assert scalar(stack.dsn, "SELECT count(*) FROM audit_log WHERE action = 'node.enrol'") == 2
        assert scalar(stack.dsn, "SELECT count(*) FROM rejected_messages") == 0
    finally:
        for agent in agents:
            stop_process(agent)
        stop_process(api)
        stop_process(ingest)
