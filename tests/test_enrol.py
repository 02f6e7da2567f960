"""Enrolment by code and configuration pushed to running nodes: real Mosquitto, real PostgreSQL,
the real ingest (its leader pushes configurations), the real API and real `gridwatch edge`
processes with simulated devices."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from psycopg.types.json import Jsonb

from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.services import free_port, wait_for_port
from gridwatch.local.stack import LocalStack
from registry import enrol
from tests.edge_support import config_version_of, site_file
from tests.support import rows, scalar, start_ingest, stop_process, wait_until

NEW_NODE = "v0001-edge2"


def _sql(stack: LocalStack, query: str, params: tuple[object, ...] = ()) -> None:
    with psycopg.connect(stack.dsn) as conn:
        conn.execute(query, params)  # type: ignore[arg-type]


def _add_device(stack: LocalStack, device: str, node: str, kind: str, **settings: object) -> None:
    _sql(stack, "INSERT INTO devices (id, node_id, kind, driver, settings) VALUES"
                " (%s, %s, %s, 'simulated', %s)", (device, node, kind, Jsonb(settings)))  # fmt: skip


def _readings(stack: LocalStack, device: str) -> int:
    return int(str(scalar(stack.dsn, "SELECT count(*) FROM occupancy WHERE device_id = %s",
                          (device,))))  # fmt: skip


def _edge(args: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gridwatch.cli", "edge", *args],
                                stdout=out, stderr=subprocess.STDOUT, cwd=cwd)  # fmt: skip


@pytest.fixture
def api(stack: LocalStack) -> Iterator[str]:
    """A `gridwatch api` process; its base URL."""
    port = free_port()
    proc = stack.start_api(port)
    try:
        assert wait_for_port("127.0.0.1", port, 30), (stack.logs / "api.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _admin(api: str) -> dict[str, str]:
    r = httpx.post(f"{api}/api/token", data={"username": "admin", "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_a_node_enrolled_by_code_runs_from_the_site_file_it_received(
    stack: LocalStack, api: str, tmp_path: Path
) -> None:
    # The ingest runs before the node is registered: its registry cache and the broker
    # reconcile both learn of the node from the registry's notices.
    ingest, _ = start_ingest(stack)
    _sql(stack, "INSERT INTO edge_nodes (id, venue_id, name) VALUES (%s, 'v0001', 'second')",
         (NEW_NODE,))  # fmt: skip
    counter = f"{NEW_NODE}-counter1"
    _add_device(stack, counter, NEW_NODE, "counter", report_every_s=0.3)
    try:
        _enrol_and_run(stack, api, tmp_path, counter)
    finally:
        stop_process(ingest)


def _enrol_and_run(stack: LocalStack, api: str, tmp_path: Path, counter: str) -> None:
    admin = _admin(api)
    r = httpx.post(f"{api}/api/v1/admin/nodes/{NEW_NODE}/enrolment-code", headers=admin, json={})
    assert r.status_code == 200, r.text
    code = r.json()["code"]

    site = tmp_path / "node" / "site.yaml"
    args = ["--enrol", code, "--platform", api, "--site-file", str(site)]
    agent = _edge(args, tmp_path / "agent.log")
    try:
        wait_until(site.exists, 60, "the site file from the platform")
        assert stat.S_IMODE(site.stat().st_mode) == 0o600
        written = yaml.safe_load(site.read_text())
        assert (written["node"], written["site"]) == (NEW_NODE, "v0001")
        assert written["command_key"] == stack.command_public_key
        assert [d["id"] for d in written["devices"]] == [counter]
        assert written["config_version"] == config_version_of(stack, NEW_NODE)
        assert written["outbox"]["path"] == str(site.parent.resolve() / "outbox.db")
        wait_until(lambda: _readings(stack, counter) >= 3, 90, "the enrolled node's readings")
        wait_until(
            lambda: scalar(stack.dsn, "SELECT config_version FROM node_presence WHERE node_id = %s",
                           (NEW_NODE,)) == written["config_version"],
            30, "the birth to report the configuration version",
        )  # fmt: skip
    finally:
        stop_process(agent)
    # A second start uses the written file: the code, used, is not needed again.
    before = _readings(stack, counter)
    agent = _edge(args, tmp_path / "agent.log")
    try:
        wait_until(lambda: _readings(stack, counter) > before + 2, 60, "readings after a restart")
    finally:
        stop_process(agent)
    assert "enrolled before, running it" in (tmp_path / "agent.log").read_text()

    # The used code, an expired one and a made-up one get the same answer, and each is audited.
    with psycopg.connect(stack.dsn) as conn:
        expired = enrol.create_code(conn, NEW_NODE, "admin", 1)
        conn.execute("UPDATE enrolment_codes SET created_at = now() - interval '2 hours',"
                     " expires_at = now() - interval '1 hour' WHERE used_at IS NULL")  # fmt: skip
    for tried in (code, expired, "ABCDE-FGHJK"):
        r = httpx.post(f"{api}/api/v1/enrol", json={"code": tried})
        assert (r.status_code, r.json()["detail"]) == (403, enrol.INVALID)
    reasons = rows(stack.dsn, "SELECT detail->>'reason' FROM audit_log"
                              " WHERE action = 'node.enrol.failed' ORDER BY id")  # fmt: skip
    assert reasons == [("used",), ("expired",), ("unknown code",)]
    assert scalar(stack.dsn, "SELECT count(*) FROM audit_log WHERE action = 'node.enrol'") == 1
    assert scalar(stack.dsn, "SELECT count(*) FROM audit_log"
                             " WHERE action = 'node.enrolment_code'") == 2  # fmt: skip


def test_a_running_node_starts_a_device_added_in_the_registry_and_refuses_a_bad_config(
    stack: LocalStack, nodes: list[NodeCredentials], ingest: object, tmp_path: Path
) -> None:
    creds = nodes[0]
    # The registry's settings as the test's site file has them: those drivers stay untouched.
    _sql(stack, "UPDATE devices SET settings = %s WHERE node_id = %s",
         (Jsonb({"report_every_s": 3600}), creds.node))  # fmt: skip
    config = site_file(stack, creds, tmp_path / "site")
    running = config_version_of(stack, creds.node)
    agent = _edge(["--config", str(config)], tmp_path / "agent.log")

    def presence() -> tuple[object, ...]:
        found = rows(stack.dsn, "SELECT config_version, config_error FROM node_presence"
                                " WHERE node_id = %s", (creds.node,))  # fmt: skip
        return found[0] if found else (None, None)

    try:
        wait_until(lambda: presence()[0] == running, 60, "the birth with the site file's version")
        added = f"{creds.site}-counter90"
        _add_device(stack, added, creds.node, "counter", report_every_s=0.3)
        wanted = config_version_of(stack, creds.node)
        wait_until(lambda: presence() == (wanted, None), 60, "the new configuration applied")
        wait_until(lambda: _readings(stack, added) >= 3, 60, "the added device's readings")
        assert agent.poll() is None, "applied without a restart"

        _sql(stack, "UPDATE devices SET driver = 'zkteco' WHERE id = %s", (added,))
        wait_until(lambda: "zkteco" in str(presence()[1]), 60, "the unknown driver refused")
        assert presence()[0] == wanted, "the old configuration keeps running"
        assert "unknown driver 'zkteco'" in str(presence()[1])
        before = _readings(stack, added)
        wait_until(lambda: _readings(stack, added) > before + 2, 60, "the old devices reporting")

        _sql(stack, "UPDATE devices SET driver = 'simulated', settings = %s WHERE id = %s",
             (Jsonb({"report_every_s": -1}), added))  # fmt: skip
        wait_until(lambda: "report_every_s" in str(presence()[1]), 60, "bad settings refused")
        assert f"devices.{added}.settings.report_every_s" in str(presence()[1])
        assert presence()[0] == wanted
    finally:
        stop_process(agent)
    kept = tmp_path / "site" / f"{creds.node}.config.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    log = (tmp_path / "agent.log").read_text()
    assert f"started=['{added}'] stopped=[] restarted=[] kept={len(creds.devices)}" in log

    # A restart runs the configuration it applied, not the site file's older devices.
    agent = _edge(["--config", str(config)], tmp_path / "agent2.log")
    try:
        before = _readings(stack, added)
        wait_until(lambda: _readings(stack, added) > before + 2, 60, "the kept configuration")
    finally:
        stop_process(agent)
    assert "running the kept configuration" in (tmp_path / "agent2.log").read_text()


def test_node_commands_write_a_site_file_the_agent_accepts_and_show_the_versions(
    stack: LocalStack, tmp_path: Path
) -> None:
    from edge import config as edge_config

    def node(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gridwatch.cli", "node", *args], capture_output=True,
            text=True, env=stack.service_env("cli"), timeout=60, check=False,
        )  # fmt: skip

    out = tmp_path / "n.yaml"
    done = node("site-file", "v0002-edge", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "NEW secret" in done.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    loaded = edge_config.load(out)
    assert loaded.node == "v0002-edge" and loaded.broker.port == stack.ports.edge
    assert loaded.config_version == config_version_of(stack, "v0002-edge")
    shown = node("show", "v0002-edge")
    assert shown.returncode == 0, shown.stderr
    assert '"wanted": ' + str(loaded.config_version) in shown.stdout
    code = node("enrol-code", "v0002-edge", "--hours", "2")
    assert code.returncode == 0 and "gridwatch edge --enrol" in code.stdout
    missing = node("rotate", "nope")
    assert missing.returncode == 1 and "no edge node 'nope'" in missing.stderr


def test_enrolment_endpoints_are_for_admins_in_their_area_and_wrong_codes_are_throttled(
    stack: LocalStack, nodes: list[NodeCredentials], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings

    settings = ApiSettings(database_url=stack.role_dsn("api"),  # type: ignore[arg-type]
                           api_sign_in_failures_per_address=3)  # fmt: skip
    node = nodes[0].node
    monkeypatch.setenv("GRIDWATCH_EDGE_BROKER_URL", f"mqtt://127.0.0.1:{stack.ports.edge}")
    with TestClient(create_app(settings)) as client:

        def headers(person: str) -> dict[str, str]:
            r = client.post("/api/token", data={"username": person, "password": DEMO_PASSWORD})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        admin, operator = headers("admin"), headers("operator")
        url = f"/api/v1/admin/nodes/{node}"
        assert client.post(f"{url}/enrolment-code", headers=operator, json={}).status_code == 403
        assert client.post("/api/v1/admin/nodes/nope/site-file", headers=admin).status_code == 404
        before = scalar(stack.dsn, "SELECT password_hash FROM edge_nodes WHERE id = %s", (node,))
        r = client.post(f"{url}/site-file", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["site_file"]["broker"]["port"] == stack.ports.edge
        after = scalar(stack.dsn, "SELECT password_hash FROM edge_nodes WHERE id = %s", (node,))
        assert after != before, "a downloaded site file carries a new secret"
        states = client.get("/api/v1/admin/nodes/config", headers=admin).json()
        assert {s["node"] for s in states} == {n.node for n in nodes}
        assert all(s["config_outdated"] for s in states)  # never ran by any agent yet

        answers = [client.post("/api/v1/enrol", json={"code": f"WRONG-{i:05d}"}) for i in range(4)]
        assert [a.status_code for a in answers] == [403, 403, 403, 429]
        assert "Retry-After" in answers[-1].headers
