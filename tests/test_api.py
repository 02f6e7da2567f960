"""The operator API over a real PostgreSQL: sign-in, scoping, task actions, errors, audit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.stack import LocalStack
from ingest import registry
from tests.support import rows, scalar


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    app = create_app(ApiSettings(database_url=stack.role_dsn("api")))  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


def sign_in(client: TestClient, person: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
    r = client.post("/api/token", data={"username": person, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def raise_incident(dsn: str, site: str, subject: str = "x") -> int:
    with psycopg.connect(dsn) as conn:
        venue = registry.load(conn).venues[site]
        applied = incidents.apply(
            conn, [Raise(Rule.DOOR_FORCED, f"{site}-{subject}", Severity.RED, venue, datetime.now(UTC))],
            tasks.DeadlinePolicy(),
        )  # fmt: skip
    return applied.tasks[0]


def people_of(dsn: str, site: str) -> tuple[str, str]:
    grid, community = rows(dsn, "SELECT g.id, g.parent_id FROM venues v JOIN territory g"
                                " ON g.id = v.grid_id WHERE v.id = %s", (site,))[0]  # fmt: skip
    return f"worker-{grid}", f"disp-{community}"


def _second_grid(dsn: str, site: str) -> str:
    """A venue in another grid of the same community, with its own worker; its id."""
    from api.security import hash_password
    from gridwatch.demo import DEMO_PASSWORD as pw
    from registry import store
    from registry.model import Area, Level, Person, Venue, VenueKind

    community = str(scalar(dsn, "SELECT g.parent_id FROM venues v JOIN territory g ON g.id = v.grid_id"
                                " WHERE v.id = %s", (site,)))  # fmt: skip
    with psycopg.connect(dsn) as conn:
        store.put(conn, [
            Area(id="g_other", level=Level.GRID, name="Other", parent=community),
            Venue(id="v-other", grid="g_other", name="Other station", kind=VenueKind.GRID_STATION),
            Person(id="worker-g_other", name="Other worker", role=tasks.Role.GRID_WORKER,
                   scope="g_other"),
        ], "test", audit=False)  # fmt: skip
        conn.execute(
            "UPDATE people SET password_hash = %s WHERE id = 'worker-g_other'", (hash_password(pw),)
        )
    return "v-other"


def test_sign_in(client: TestClient) -> None:
    wrong = client.post("/api/token", data={"username": "operator", "password": "nope-nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "unauthorized", "detail": "wrong person id or password",
                            "message": "账号或密码错误"}  # fmt: skip
    nobody = client.post("/api/token", data={"username": "nobody", "password": DEMO_PASSWORD})
    assert nobody.status_code == 401
    headers = sign_in(client, "operator")
    assert client.get("/api/me", headers=headers).json()["role"] == "operator"
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_a_person_sees_and_touches_only_their_subtree(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    dsn = stack.dsn
    mine = raise_incident(dsn, nodes[0].site)
    worker, _ = people_of(dsn, nodes[0].site)
    other = _second_grid(dsn, nodes[0].site)
    theirs = raise_incident(dsn, other)
    me = sign_in(client, worker)
    listed = client.get("/api/tasks", headers=me).json()
    assert [t["id"] for t in listed["items"]] == [mine]
    operator = sign_in(client, "operator")
    assert {t["id"] for t in client.get("/api/tasks", headers=operator).json()["items"]} == {
        mine,
        theirs,
    }
    inbox = client.get("/api/tasks", params={"mine": True}, headers=me).json()["items"]
    assert [t["id"] for t in inbox] == [mine]


def test_every_resource_is_closed_to_another_grid(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """Each route that names something, tried on another grid's venue, incident, task and area,
    by that grid's neighbours: a worker and an operator whose area is one grid. Nothing is
    readable and nothing changes."""
    from gateway.messages import DeviceKind
    from registry import store
    from registry.model import Device, Node, Person

    dsn = stack.dsn
    site = nodes[0].site
    other = _second_grid(dsn, site)
    incident_task = raise_incident(dsn, other)
    incident = int(scalar(dsn, "SELECT incident_id FROM tasks WHERE id = %s", (incident_task,)))
    grid = str(scalar(dsn, "SELECT grid_id FROM venues WHERE id = %s", (site,)))
    with psycopg.connect(dsn) as conn:
        store.put(conn, [
            Node(id="n-other", venue=other),
            Device(id="other-door", node="n-other", kind=DeviceKind.DOOR, name="Door"),
            Device(id="other-speaker", node="n-other", kind=DeviceKind.SPEAKER, name="Speaker"),
            Person(id="op-grid", name="Grid operator", role=tasks.Role.OPERATOR, scope=grid),
        ], "test", audit=False)  # fmt: skip
        conn.execute("UPDATE people SET password_hash = (SELECT password_hash FROM people"
                     " WHERE id = 'operator') WHERE id = 'op-grid'")  # fmt: skip
    _far_over_capacity(dsn, other, alone=False, level="grid")  # a proposal for g_other
    proposal = scalar(dsn, "SELECT id FROM emergency_proposals WHERE territory_id = 'g_other'")
    values = {"incident_id": incident, "task_id": incident_task, "venue_id": other,
              "area": "g_other", "person_id": "worker-g_other", "proposal_id": proposal,
              "node_id": "n-other", "record_id": "n-other", "photo_id": 1,
              "token": "not-a-link-of-anyone-here", "token_id": 1}  # fmt: skip
    bodies: dict[str, Any] = {
        "/api/tasks/{task_id}/actions": {"action": "accept"},
        "/api/incidents/{incident_id}/silence": {"minutes": 5},
        "/api/venues/{venue_id}/broadcast": {"message": {"kind": "text", "text": "x"}},
        "/api/areas/{area}/broadcast": {"message": {"kind": "text", "text": "x"}},
    }
    paths = client.get("/openapi.json").json()["paths"]
    named = [(path, method.upper()) for path, ops in paths.items() if "{" in path for method in ops]
    assert len(named) >= 14
    before = rows(
        dsn, "SELECT status::text, silenced_until FROM incidents WHERE id = %s", (incident,)
    )
    for person in (people_of(dsn, site)[0], "op-grid"):
        headers = sign_in(client, person)
        for path, method in named:
            url = path.format(**values)
            r = client.request(method, url, json=bodies.get(path, {}), headers=headers)
            # The registry's admin routes refuse anyone but an admin (403) before looking.
            admin_only = path.startswith("/api/v1/admin/")
            allowed = {404} if person == "op-grid" and not admin_only else {403, 404}
            assert r.status_code in allowed, (person, method, url, r.status_code, r.text)
        for url, params in [
            ("/api/incidents", {"area": "g_other"}), ("/api/tasks", {"area": "g_other"}),
            ("/api/venues", {"area": "g_other"}), ("/api/kpi", {"area": "g_other"}),
        ]:  # fmt: skip
            r = client.get(url, params=params, headers=headers)
            assert r.status_code == 404 or r.json()["items"] == [], (url, r.text)
        seen = client.get("/api/incidents", params={"venue": other}, headers=headers).json()
        assert seen["items"] == []
        assert other not in {v["id"] for v in client.get("/api/venues", headers=headers).json()}
        assert "g_other" not in {
            t["id"] for t in client.get("/api/territory", headers=headers).json()
        }
        door = client.post("/api/commands/door", json={"device_id": "other-door", "action": "unlock",
                                                       "reason": "test"}, headers=headers)  # fmt: skip
        assert door.status_code == (404 if person == "op-grid" else 403)
    # A wall token of the neighbours' grid (docs/wall.md) opens none of them either.
    from api import wall_tokens

    with psycopg.connect(dsn) as conn, conn.transaction():
        wall = {"Authorization": f"Bearer {wall_tokens.issue(conn, grid, '', 'admin')[0]}"}
    for path, method in named:
        r = client.request(method, path.format(**values), json=bodies.get(path, {}), headers=wall)
        assert r.status_code in {401, 403, 404}, ("wall token", method, path, r.status_code)
    assert scalar(dsn, "SELECT count(*) FROM commands") == 0
    assert scalar(dsn, "SELECT count(*) FROM emergency_proposals WHERE decided_at IS NULL") == 1
    assert rows(dsn, "SELECT status::text, silenced_until FROM incidents WHERE id = %s",
                (incident,)) == before  # fmt: skip
    assert (
        scalar(dsn, "SELECT state::text FROM tasks WHERE id = %s", (incident_task,)) != "accepted"
    )
    assert scalar(dsn, "SELECT active FROM people WHERE id = 'worker-g_other'") is True


def test_task_actions_refusals_and_audit(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    dsn = stack.dsn
    task_id = raise_incident(dsn, nodes[0].site)
    worker, dispatcher = people_of(dsn, nodes[0].site)
    me = sign_in(client, worker)
    refused = client.post(f"/api/tasks/{task_id}/actions", json={"action": "approve"}, headers=me)
    assert refused.status_code == 403  # not a worker's to do, whatever the task's state
    assert refused.json() == {"error": "forbidden", "detail": "a grid_worker cannot approve a task",
                              "message": "网格员不能办结任务"}  # fmt: skip
    boss = sign_in(client, dispatcher)
    early = client.post(f"/api/tasks/{task_id}/actions", json={"action": "approve"}, headers=boss)
    assert early.status_code == 409  # theirs to do, but not now
    assert early.json()["error"] == "conflict" and "cannot approve" in early.json()["detail"]
    bad = client.post(f"/api/tasks/{task_id}/actions", json={"action": "fly"}, headers=me)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid"
    for body in ({"action": "accept"}, {"action": "start"},
                 {"action": "feedback", "note": "checked", "evidence": ["p/1.jpg"]}):  # fmt: skip
        r = client.post(f"/api/tasks/{task_id}/actions", json=body, headers=me)
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "feedback"
    for action in ("check", "approve"):
        r = client.post(f"/api/tasks/{task_id}/actions", json={"action": action}, headers=boss)
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "closed"
    timeline = client.get(f"/api/tasks/{task_id}/events", headers=boss).json()
    assert [e["action"] for e in timeline][-3:] == ["feedback", "check", "approve"]
    audited = [r[0] for r in rows(dsn, "SELECT action FROM audit_log WHERE person_id <> 'operator'"
                                       " ORDER BY id")]  # fmt: skip
    assert audited == ["sign_in", "refused", "sign_in", "refused", "task.accept", "task.start",
                       "task.feedback", "task.check", "task.approve"]  # fmt: skip
    refusals = rows(dsn, "SELECT person_id, target, detail FROM audit_log WHERE action = 'refused'"
                         " ORDER BY id")  # fmt: skip
    assert refusals == [
        (worker, f"/api/tasks/{task_id}/actions",
         {"method": "POST", "status": 403, "reason": refused.json()["detail"]}),
        (dispatcher, f"/api/tasks/{task_id}/actions",
         {"method": "POST", "status": 409, "reason": early.json()["detail"]}),
    ]  # fmt: skip
    assert scalar(dsn, "SELECT count(*) FROM audit_log WHERE client = ''") == 0


def test_incidents_page_filter_and_resolve(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    dsn = stack.dsn
    for i in range(5):
        raise_incident(dsn, nodes[0].site, subject=f"d{i}")
    operator = sign_in(client, "operator")
    first = client.get("/api/incidents", params={"limit": 2}, headers=operator).json()
    second = client.get("/api/incidents", params={"limit": 2, "cursor": first["next_cursor"]},
                        headers=operator).json()  # fmt: skip
    ids = [i["id"] for i in first["items"] + second["items"]]
    assert len(ids) == 4 and ids == sorted(ids, reverse=True)
    target = ids[0]
    done = client.post(
        f"/api/incidents/{target}/resolve", json={"note": "false alarm"}, headers=operator
    )
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    again = client.post(f"/api/incidents/{target}/resolve", json={}, headers=operator)
    assert again.status_code == 409
    open_now = client.get("/api/incidents", params={"status": "open"}, headers=operator).json()
    assert target not in [i["id"] for i in open_now["items"]]
    either = client.get("/api/incidents", params={"status": ["open", "resolved"]},
                        headers=operator).json()  # fmt: skip
    assert {i["status"] for i in either["items"]} == {"open", "resolved"}
    worker, _ = people_of(dsn, nodes[0].site)
    forbidden = client.post(
        f"/api/incidents/{ids[1]}/acknowledge", json={}, headers=sign_in(client, worker)
    )
    assert forbidden.status_code == 403


def test_silencing_an_incident_keeps_it_open_for_a_while(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    raise_incident(stack.dsn, nodes[0].site)
    operator = sign_in(client, "operator")
    incident = client.get("/api/incidents", headers=operator).json()["items"][0]
    assert incident["silenced_until"] is None
    url = f"/api/incidents/{incident['id']}"
    quiet = client.post(f"{url}/silence", json={"minutes": 30, "note": "on site"}, headers=operator)
    assert quiet.status_code == 200, quiet.text
    until = datetime.fromisoformat(quiet.json()["silenced_until"])
    assert 29 * 60 < (until - datetime.now(UTC)).total_seconds() <= 30 * 60
    assert quiet.json()["status"] == "open"
    loud = client.post(f"{url}/silence", json={"minutes": 0}, headers=operator).json()
    assert loud["silenced_until"] is None
    too_long = client.post(f"{url}/silence", json={"minutes": 5000}, headers=operator)
    assert too_long.status_code == 422
    worker, _ = people_of(stack.dsn, nodes[0].site)
    refused = client.post(f"{url}/silence", json={"minutes": 5}, headers=sign_in(client, worker))
    assert refused.status_code == 403
    timeline = client.get(f"{url}/events", headers=operator).json()
    assert [(e["kind"], e["actor"]) for e in timeline][-2:] == [
        ("silenced", "operator"),
        ("unsilenced", "operator"),
    ]
    assert timeline[-2]["note"] == "on site" and timeline[-2]["data"] == {"minutes": 30}
    client.post(f"{url}/resolve", json={}, headers=operator)
    assert client.post(f"{url}/silence", json={"minutes": 5}, headers=operator).status_code == 409


def test_people_to_dispatch_to_and_daily_kpis(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    task_id = raise_incident(stack.dsn, nodes[0].site)
    worker, dispatcher = people_of(stack.dsn, nodes[0].site)
    boss = sign_in(client, dispatcher)
    workers = client.get("/api/people", params={"role": "grid_worker"}, headers=boss).json()
    mine = next(p for p in workers if p["id"] == worker)
    assert mine["on_duty"] is True and mine["open_tasks"] == 1
    assert {p["role"] for p in workers} == {"grid_worker"}
    both = client.get("/api/people", params={"role": ["grid_worker", "dispatcher"]}, headers=boss)
    assert {p["role"] for p in both.json()} == {"grid_worker", "dispatcher"}
    everyone = {p["id"] for p in client.get("/api/people", headers=boss).json()}
    assert dispatcher in everyone and "operator" not in everyone  # the city is above them
    seen_by_worker = client.get("/api/people", headers=sign_in(client, worker)).json()
    assert [p["id"] for p in seen_by_worker] == [worker]
    days = client.get("/api/kpi/daily", params={"days": 7}, headers=boss).json()
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()  # the person's days
    assert len(days) == 7 and days[-1]["day"] == today
    assert days[-1]["created"] == 1 and sum(d["created"] for d in days) == 1
    me = sign_in(client, worker)
    for body in ({"action": "accept"}, {"action": "start"}, {"action": "feedback", "note": "ok"}):
        assert (
            client.post(f"/api/tasks/{task_id}/actions", json=body, headers=me).status_code == 200
        )
    for action in ("check", "approve"):
        client.post(f"/api/tasks/{task_id}/actions", json={"action": action}, headers=boss)
    days = client.get("/api/kpi/daily", params={"days": 1}, headers=boss).json()
    assert days == [{"day": days[0]["day"], "created": 1, "closed": 1, "closed_late": 0,
                     "closed_automatically": 0}]  # fmt: skip
    assert client.get("/api/kpi/daily", params={"days": 0}, headers=boss).status_code == 422


def test_health_readiness_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert "python_info" in client.get("/metrics").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/token", "/api/tasks", "/api/tasks/{task_id}/actions", "/api/incidents"} <= set(
        paths
    )


def _events(
    response: object, want: int, timeout_s: float = 5.0
) -> list[tuple[int, str, dict[str, object]]]:
    """Read `want` events from an open SSE response."""
    import json
    import time

    events: list[tuple[int, str, dict[str, object]]] = []
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    for line in response.iter_lines():  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            break
        if line == "":
            if "data" in fields:
                events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
                if len(events) >= want:
                    break
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


def _emergencies(response: object, want: int) -> list[dict[str, object]]:
    """The payloads of the next `want` emergency events of an open SSE response (other kinds
    skipped: starting an emergency also tightens tasks' deadlines)."""
    import json

    found: list[dict[str, object]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():  # type: ignore[attr-defined]
        if line == "":
            if fields.get("event") == "emergency":
                found.append(json.loads(fields["data"]))
                if len(found) >= want:
                    break
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return found


def test_live_stream_is_scoped_and_resumes(stack: LocalStack, nodes: list[NodeCredentials]) -> None:
    import httpx

    from gridwatch.local.services import free_port, wait_for_port
    from tests.support import stop_process

    port = free_port()
    api = stack.start_api(port)
    try:
        assert wait_for_port("127.0.0.1", port, 20), (stack.logs / "api.log").read_text()
        base = f"http://127.0.0.1:{port}"
        tokens = {
            who: httpx.post(
                f"{base}/api/token", data={"username": who, "password": DEMO_PASSWORD}
            ).json()["access_token"]
            for who in ("operator",)
        }
        other = _second_grid(stack.dsn, nodes[0].site)
        tokens["worker-g_other"] = httpx.post(
            f"{base}/api/token", data={"username": "worker-g_other", "password": DEMO_PASSWORD}
        ).json()["access_token"]
        timeout = httpx.Timeout(10.0)
        tickets = {
            who: httpx.post(f"{base}/api/live/ticket",
                            headers={"Authorization": f"Bearer {token}"}).json()["ticket"]
            for who, token in tokens.items()
        }  # fmt: skip
        # Each kind of token does its own job only.
        assert (
            httpx.get(f"{base}/api/live", params={"ticket": tokens["operator"]}).status_code == 401
        )
        me = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {tickets['operator']}"})
        assert me.status_code == 401
        with httpx.stream("GET", f"{base}/api/live", params={"ticket": tickets["operator"]},
                          timeout=timeout) as live, \
             httpx.stream("GET", f"{base}/api/live", params={"ticket": tickets["worker-g_other"]},
                          timeout=timeout) as outsider:  # fmt: skip
            assert live.status_code == 200
            raise_incident(stack.dsn, nodes[0].site, subject="live1")
            got = _events(live, 2)
            assert [kind for _, kind, _ in got] == ["incident", "task"]  # within 5 s, live
            assert got[0][2]["severity"] == "red"
            # Titles as codes, and rendered in the stream's language (zh-CN: no Accept-Language).
            assert got[1][2]["title_code"] == "task.door_forced"
            assert got[1][2]["title"].endswith("门被强行打开")
            last_seen = got[-1][0]
            raise_incident(stack.dsn, other, subject="live2")
            mine = _events(outsider, 2)
            assert [p.get("venue_id") for _, k, p in mine if k == "incident"] == [other]
        raise_incident(stack.dsn, nodes[0].site, subject="missed")  # while nobody listens
        # A ticket opens one stream: reconnecting takes a new one.
        used = httpx.get(f"{base}/api/live", params={"ticket": tickets["operator"]})
        assert used.status_code == 401 and "used already" in used.json()["detail"]
        fresh_ticket = httpx.post(f"{base}/api/live/ticket", headers={
            "Authorization": f"Bearer {tokens['operator']}"}).json()["ticket"]  # fmt: skip
        with httpx.stream("GET", f"{base}/api/live", params={"ticket": fresh_ticket},
                          headers={"Last-Event-ID": str(last_seen)}, timeout=timeout) as again:  # fmt: skip
            missed = int(str(scalar(stack.dsn, "SELECT count(*) FROM changes WHERE id > %s",
                                    (last_seen,))))  # fmt: skip
            resumed = _events(again, missed)
        venues = [p.get("venue_id") for _, k, p in resumed if k == "incident"]
        assert venues == [other, nodes[0].site]  # what came after last_seen, in order
        # A fresh start (a new ticket) resumes the same way with ?after=.
        bearer = {"Authorization": f"Bearer {tokens['operator']}"}
        with httpx.stream("GET", f"{base}/api/live", params={"after": last_seen, "lang": "en"},
                          headers=bearer, timeout=timeout) as fresh:  # fmt: skip
            again_en = _events(fresh, missed)
            assert [e[0] for e in again_en] == [e[0] for e in resumed]
        assert [p["title"] for _, k, p in again_en if k == "incident"] == ["Door forced open"] * 2
        # An emergency reaches at once whoever its area covers or who looks after it: one on the
        # venue's grid the city's operator (above it) but not another grid's worker; one on the
        # community that worker too (below it, addressed to them).
        grid = str(scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = %s", (nodes[0].site,)))
        community = str(scalar(stack.dsn, "SELECT parent_id FROM territory WHERE id = %s", (grid,)))
        streams = {
            who: httpx.post(f"{base}/api/live/ticket",
                            headers={"Authorization": f"Bearer {token}"}).json()["ticket"]
            for who, token in tokens.items()
        }  # fmt: skip
        with httpx.stream("GET", f"{base}/api/live", params={"ticket": streams["operator"]},
                          timeout=timeout) as boss, \
             httpx.stream("GET", f"{base}/api/live", params={"ticket": streams["worker-g_other"]},
                          timeout=timeout) as below:  # fmt: skip
            for area in (grid, community):
                started = httpx.post(f"{base}/api/emergencies", headers=bearer,
                                     json={"area": area, "reason": "防汛演练"})  # fmt: skip
                assert started.status_code == 200, started.text
            assert [p["territory_id"] for p in _emergencies(boss, 2)] == [grid, community]
            assert [p["territory_id"] for p in _emergencies(below, 1)] == [community]
        unauthorised = httpx.get(f"{base}/api/live", timeout=timeout)
        assert unauthorised.status_code == 401
    finally:
        stop_process(api)


def test_venues_devices_occupancy_and_door_events(
    client: TestClient,
    stack: LocalStack,
    nodes: list[NodeCredentials],
    tmp_path: object,
    ingest: object,
) -> None:
    from pathlib import Path

    from simulators.devices import SimCounter, SimDoor
    from tests.edge_support import fleet_of
    from tests.support import device_of, wait_until

    fleet = fleet_of(stack, nodes[:1], Path(str(tmp_path)) / "fleet")
    try:
        counter = fleet.devices[device_of(nodes[0], "counter")]
        door = fleet.devices[device_of(nodes[0], "door")]
        assert isinstance(counter, SimCounter) and isinstance(door, SimDoor)
        counter.spike(40)
        for _ in range(3):
            counter.report(fleet.engine.clock.now())
        for _ in range(3):
            door.swipe(granted=False)
        wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM occupancy") == 3, 10, "readings")
        wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM door_events") >= 3, 10, "swipes")
    finally:
        fleet.stop()
    site = nodes[0].site
    me = sign_in(client, "operator")
    listed = {v["id"]: v for v in client.get("/api/venues", headers=me).json()}
    assert set(listed) == {n.site for n in nodes}
    assert listed[site]["occupancy"] == counter.count and listed[site]["devices"] == 6
    detail = client.get(f"/api/venues/{site}", headers=me).json()
    by_id = {d["id"]: d for d in detail["devices_list"]}
    assert by_id[counter.id]["latest"]["occupancy"]["count"] == counter.count
    series = client.get(
        f"/api/venues/{site}/occupancy", params={"bucket": "hour"}, headers=me
    ).json()
    assert len(series) >= 1 and series[-1]["max_count"] == max(
        int(str(r[0])) for r in rows(stack.dsn, "SELECT count FROM occupancy")
    )
    page = client.get(f"/api/venues/{site}/door-events", params={"limit": 2}, headers=me).json()
    assert len(page["items"]) == 2 and page["next_cursor"] is not None
    rest = client.get(f"/api/venues/{site}/door-events",
                      params={"limit": 100, "cursor": page["next_cursor"]}, headers=me).json()  # fmt: skip
    all_ts = [e["ts"] for e in page["items"] + rest["items"]]
    assert len(all_ts) == len(set(all_ts)) == scalar(stack.dsn, "SELECT count(*) FROM door_events")
    denied_only = client.get(f"/api/venues/{site}/door-events",
                             params={"type": "door.access"}, headers=me).json()  # fmt: skip
    assert {e["type"] for e in denied_only["items"]} == {"door.access"}
    assert len(denied_only["items"]) == scalar(
        stack.dsn, "SELECT count(*) FROM door_events WHERE type = 'door.access'"
    )
    tree = client.get("/api/territory", headers=me).json()
    assert tree[0]["id"] == "haicheng" and tree[0]["venues"] == len(nodes)
    assert client.get("/api/venues/nowhere", headers=me).status_code == 404


def test_commands_broadcast_and_emergency_through_the_api(
    client: TestClient,
    stack: LocalStack,
    nodes: list[NodeCredentials],
    tmp_path: object,
    ingest: object,
) -> None:
    from pathlib import Path

    from simulators.devices import SimDoor, SimSpeaker
    from tests.edge_support import fleet_of
    from tests.support import device_of, wait_until

    fleet = fleet_of(stack, nodes, Path(str(tmp_path)) / "fleet")
    try:
        me = sign_in(client, "operator")
        door = fleet.devices[device_of(nodes[0], "door")]
        assert isinstance(door, SimDoor)
        sent = client.post("/api/commands/door", json={"device_id": door.id, "action": "unlock",
                                                       "duration_s": 30, "reason": "delivery"},
                           headers=me)  # fmt: skip
        assert sent.status_code == 200, sent.text
        ids = [c["id"] for c in sent.json()]
        wait_until(lambda: client.get("/api/commands", params={"ids": ids}, headers=me).json()[0]["state"] == "done",
                   10, "the door's answer")  # fmt: skip
        assert door.locked is False
        outcome = rows(stack.dsn, "SELECT person_id, target, detail FROM audit_log"
                                  " WHERE action = 'door.outcome'")  # fmt: skip
        assert len(outcome) == 1 and outcome[0][:2] == ("system", door.id)
        detail = outcome[0][2]
        assert isinstance(detail, dict)
        assert (detail["issued_by"], detail["status"], detail["action"]["duration_s"]) == (
            "operator", "done", 30)  # fmt: skip
        cast = client.post("/api/areas/haicheng/broadcast",
                           json={"message": {"kind": "text", "text": "Drill at 10:00"}}, headers=me)  # fmt: skip

        assert cast.status_code == 200 and len(cast.json()) == len(nodes)
        speakers = [fleet.devices[device_of(n, "speaker")] for n in nodes]
        wait_until(lambda: all(isinstance(s, SimSpeaker) and s.played == ["Drill at 10:00"] for s in speakers),
                   10, "every speaker")  # fmt: skip
        bad = client.post("/api/areas/haicheng/broadcast", json={"message": {"kind": "smell"}},
                          headers=me)  # fmt: skip
        assert bad.status_code == 422 and bad.json()["error"] == "invalid"
        worker = people_of(stack.dsn, nodes[0].site)[0]
        denied = client.post("/api/emergencies", json={"area": "haicheng", "reason": "x"},
                             headers=sign_in(client, worker))  # fmt: skip
        assert denied.status_code == 403
        on = client.post(
            "/api/emergencies", json={"area": "haicheng", "reason": "flood"}, headers=me
        )
        assert on.status_code == 200 and on.json()[0]["ended_at"] is None
        twice = client.post(
            "/api/emergencies", json={"area": "haicheng", "reason": "flood"}, headers=me
        )
        assert twice.status_code == 409
        off = client.post("/api/emergencies/haicheng/end", headers=me)
        assert off.status_code == 200 and off.json()[0]["ended_by"] == "operator"
        assert client.get("/api/rejected", headers=me).status_code == 403
        assert client.get("/api/rejected", headers=sign_in(client, "admin")).json()["items"] == []
        assert client.get("/api/kpi", headers=me).json()[0]["territory_id"] == "haicheng"
    finally:
        fleet.stop()


def test_door_commands_need_a_reason_and_dispatchers_get_a_shorter_unlock(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    from tests.support import device_of

    door = device_of(nodes[0], "door")
    _, dispatcher = people_of(stack.dsn, nodes[0].site)
    disp, op = sign_in(client, dispatcher), sign_in(client, "operator")

    def unlock(headers: dict[str, str], **body: Any) -> Any:
        return client.post("/api/commands/door", json={"device_id": door, "action": "unlock",
                                                       **body}, headers=headers)  # fmt: skip

    for reasonless in ({}, {"reason": ""}, {"reason": "   "}):
        r = unlock(op, duration_s=30, **reasonless)
        assert r.status_code == 422 and "reason" in r.json()["detail"], r.text
    long = unlock(disp, duration_s=3600, reason="event")
    assert long.status_code == 403
    assert long.json()["detail"] == (
        "a dispatcher may unlock a door for at most 900 s; ask an operator for longer"
    )
    forever = unlock(disp, duration_s=None, reason="event")
    assert forever.status_code == 403 and "until it is locked" in forever.json()["detail"]
    assert unlock(disp, duration_s=900, reason="cleaners, 15 minutes").status_code == 200
    assert unlock(op, duration_s=3600, reason="community event").status_code == 200
    assert unlock(op, duration_s=None, reason="shelter opened for the night").status_code == 200
    assert unlock(op, duration_s=86_401, reason="too long").status_code == 422
    audited = rows(stack.dsn, "SELECT person_id, detail->>'reason', detail->'duration_s' FROM"
                              " audit_log WHERE action = 'door.unlock' ORDER BY id")  # fmt: skip
    assert audited == [
        (dispatcher, "cleaners, 15 minutes", 900),
        ("operator", "community event", 3600),
        ("operator", "shelter opened for the night", None),
    ]


def test_only_admins_see_door_credential_hashes(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    import uuid

    from psycopg.types.json import Jsonb

    from tests.support import device_of

    door, site = device_of(nodes[0], "door"), nodes[0].site
    credential = "ab" * 32
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("INSERT INTO device_latest (device_id, type, ts, id, payload)"
                     " VALUES (%s, 'door.access', now(), %s, %s)",
                     (door, uuid.uuid4(), Jsonb({"result": "denied", "credential": credential})))  # fmt: skip
    _, dispatcher = people_of(stack.dsn, site)
    for person, sees in (("admin", True), ("operator", False), (dispatcher, False)):
        venue = client.get(f"/api/venues/{site}", headers=sign_in(client, person)).json()
        latest = next(d for d in venue["devices_list"] if d["id"] == door)["latest"]
        assert latest["door.access"]["result"] == "denied"
        assert ("credential" in latest["door.access"]) is sees, person
        assert (credential in str(venue)) is sees


def test_rejected_messages_are_limited_to_the_admins_area(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    from api.security import hash_password
    from registry import store
    from registry.model import Node, Person

    mine = nodes[0]
    other = _second_grid(stack.dsn, mine.site)  # another grid, with a node of its own
    grid = str(scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = %s", (mine.site,)))
    with psycopg.connect(stack.dsn) as conn:
        store.put(conn, [
            Node(id="n-other", venue=other),
            Person(id="admin-grid", name="Grid admin", role=tasks.Role.ADMIN, scope=grid),
        ], "test", audit=False)  # fmt: skip
        conn.execute("UPDATE people SET password_hash = %s WHERE id = 'admin-grid'",
                     (hash_password(DEMO_PASSWORD),))  # fmt: skip
        for topic, node in ((f"t/{mine.node}", mine.node), ("t/n-other", "n-other"),
                            ("t/stranger", "n-nobody"), ("t/none", None)):  # fmt: skip
            conn.execute("INSERT INTO rejected_messages (topic, node_id, reason, detail, payload,"
                         " payload_size, digest) VALUES (%s, %s, 'bad_json', 'x', '', 0, %s)",
                         (topic, node, topic.encode()))  # fmt: skip
    everything = {"t/none", "t/stranger", f"t/{mine.node}", "t/n-other"}
    seen = {r["topic"] for r in client.get("/api/rejected", headers=sign_in(client, "admin"))
            .json()["items"]}  # fmt: skip
    assert seen == everything  # an admin of the whole city
    local = client.get("/api/rejected", headers=sign_in(client, "admin-grid")).json()["items"]
    assert [(r["topic"], r["node_id"]) for r in local] == [(f"t/{mine.node}", mine.node)]


def _far_over_capacity(dsn: str, site: str, *, alone: bool, level: str = "community") -> None:
    with psycopg.connect(dsn) as conn:
        venue = registry.load(conn).venues[site]
        incidents.apply(
            conn,
            [Raise(Rule.FAR_OVER_CAPACITY, f"{site}-counter", Severity.RED, venue,
                   datetime.now(UTC), emergency_level=level, emergency_alone=alone)],
            tasks.DeadlinePolicy(),
        )  # fmt: skip


def test_a_rule_proposes_an_emergency_and_a_person_confirms_it(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    dsn = stack.dsn
    site = nodes[0].site
    _far_over_capacity(dsn, site, alone=False)
    assert scalar(dsn, "SELECT count(*) FROM emergencies") == 0, "no emergency on a rule alone"
    proposal = rows(dsn, "SELECT severity::text, status::text FROM incidents"
                         " WHERE rule = 'emergency_proposed'")  # fmt: skip
    assert proposal == [("red", "open")]
    me = sign_in(client, "operator")
    listed = client.get("/api/emergencies/proposals", headers=me).json()
    assert [p["rule"] for p in listed] == ["far_over_capacity"]
    pid = listed[0]["id"]
    _, dispatcher = people_of(dsn, site)
    denied = client.post(f"/api/emergencies/proposals/{pid}/confirm",
                         headers=sign_in(client, dispatcher))  # fmt: skip
    assert denied.status_code == 403
    ok = client.post(f"/api/emergencies/proposals/{pid}/confirm", headers=me)
    assert ok.status_code == 200, ok.text
    assert ok.json()[0]["started_by"] == "operator"
    assert rows(dsn, "SELECT status::text FROM incidents WHERE rule = 'emergency_proposed'") == [
        ("resolved",)
    ]
    audited = rows(dsn, "SELECT person_id, action FROM audit_log WHERE action LIKE 'emergency.%%'")
    assert audited == [("operator", "emergency.confirm")]
    again = client.post(f"/api/emergencies/proposals/{pid}/confirm", headers=me)
    assert again.status_code == 404 and "already decided" in again.json()["detail"]


def test_a_rule_an_admin_let_act_alone_starts_the_emergency_audited_as_such(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    _far_over_capacity(stack.dsn, nodes[0].site, alone=True)
    assert rows(stack.dsn, "SELECT started_by FROM emergencies") == [("system",)]
    (detail,) = rows(stack.dsn, "SELECT detail FROM audit_log WHERE action = 'emergency.start'")[0]
    assert isinstance(detail, dict) and detail["acts_alone"] is True
    assert detail["rule"] == "far_over_capacity"
    assert scalar(stack.dsn, "SELECT count(*) FROM emergency_proposals") == 0
