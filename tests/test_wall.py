"""The control room's wall: view-only tokens (scope, revocation, audit, the command line), the
summary's figures against known data, and the page itself in Chromium at 1920x1080."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect

from api import wall_tokens
from api.app import create_app
from api.settings import ApiSettings
from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.stack import LocalStack
from ingest import registry
from tests.console_support import signed_in
from tests.support import rows, scalar


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    app = create_app(ApiSettings(database_url=stack.role_dsn("api")))  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


def sign_in(client: TestClient, person: str) -> dict[str, str]:
    r = client.post("/api/token", data={"username": person, "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def areas_of(dsn: str, site: str) -> tuple[str, str]:
    """The venue's grid and community."""
    grid, community = rows(dsn, "SELECT g.id, g.parent_id FROM venues v JOIN territory g"
                                " ON g.id = v.grid_id WHERE v.id = %s", (site,))[0]  # fmt: skip
    return str(grid), str(community)


def raise_incident(dsn: str, site: str, rule: Rule, severity: Severity, subject: str) -> int:
    """An open incident (and its task) at a venue; the task's id."""
    with psycopg.connect(dsn) as conn:
        venue = registry.load(conn).venues[site]
        applied = incidents.apply(
            conn, [Raise(rule, f"{site}-{subject}", severity, venue, datetime.now(UTC))],
            tasks.DeadlinePolicy(),
        )  # fmt: skip
    return applied.tasks[0]


def _formatted(path: str) -> str:
    values = {"incident_id": 1, "task_id": 1, "venue_id": "v0001", "area": "haicheng",
              "person_id": "admin", "proposal_id": 1, "node_id": "v0001-edge",
              "record_id": "v0001-edge", "token": "x", "token_id": 1, "kind": "nodes",
              "device_id": "v0001-door1", "photo_id": 1, "pid": 1}  # fmt: skip
    return path.format(**values)


def test_a_wall_token_reads_its_area_wall_and_nothing_else(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    dsn = stack.dsn
    grid, community = areas_of(dsn, nodes[0].site)
    admin = sign_in(client, "admin")
    made = client.post("/api/v1/admin/wall-tokens", json={"area": community, "name": "指挥中心大屏"},
                       headers=admin)  # fmt: skip
    assert made.status_code == 201, made.text
    token, token_id = made.json()["token"], made.json()["id"]
    assert token.startswith("gwwall_") and made.json()["expires_at"] is None
    # Only its hash is kept.
    assert scalar(dsn, "SELECT count(*) FROM wall_tokens WHERE token_hash = %s",
                  (wall_tokens.digest(token),)) == 1  # fmt: skip
    assert token not in str(rows(dsn, "SELECT * FROM wall_tokens"))
    assert token not in str(rows(dsn, "SELECT * FROM audit_log"))

    wall = bearer(token)
    own = client.get(f"/api/wall/{community}", headers=wall)
    assert own.status_code == 200, own.text
    assert own.json()["area"]["id"] == community
    assert client.get(f"/api/wall/{grid}", headers=wall).status_code == 200  # an area under it
    shapes = client.get(f"/api/wall/{community}/map", headers=wall).json()
    assert {a["id"] for a in shapes["areas"]} >= {community, grid}
    assert all(a["boundary"]["type"] == "Polygon" for a in shapes["areas"])
    assert shapes["version"] == own.json()["map_version"]
    # Not an area above it or beside it.
    for other in ("haicheng", "dongcheng"):
        assert client.get(f"/api/wall/{other}", headers=wall).status_code == 404
        assert client.get(f"/api/wall/{other}/map", headers=wall).status_code == 404

    # Every other route answers a wall token exactly as it answers no token at all.
    paths = client.get("/openapi.json").json()["paths"]
    tried = 0
    for path, ops in paths.items():
        if path == "/api/wall" or path.startswith("/api/wall/"):
            continue
        for method in ops:
            url = _formatted(path)
            anonymous = client.request(method.upper(), url, json={})
            with_token = client.request(method.upper(), url, json={}, headers=wall)
            assert with_token.status_code == anonymous.status_code, (method, url, with_token.text)
            assert with_token.status_code not in (200, 201) or anonymous.is_success, url
            tried += 1
    assert tried > 60
    # The live stream's query token: a wall token is no ticket either.
    assert client.get("/api/live", params={"ticket": token}).status_code in (401, 422)

    # People: a wall token's list and revocation are for admins of the area.
    worker = sign_in(client, f"worker-{grid}")
    assert client.get("/api/v1/admin/wall-tokens", headers=worker).status_code == 403
    assert client.post("/api/v1/admin/wall-tokens", json={"area": grid},
                       headers=worker).status_code == 403  # fmt: skip
    assert client.post("/api/v1/admin/wall-tokens", json={"area": "nowhere"},
                       headers=admin).status_code == 404  # fmt: skip
    listed = client.get("/api/v1/admin/wall-tokens", headers=admin).json()
    assert [(t["id"], t["name"], t["last_used_at"] is not None) for t in listed] == [
        (token_id, "指挥中心大屏", True)]  # fmt: skip
    # A person of the area reads the wall with their own token; one outside it does not.
    assert client.get(f"/api/wall/{grid}", headers=worker).status_code == 200
    assert client.get(f"/api/wall/{community}", headers=worker).status_code == 404
    assert client.get(f"/api/wall/{community}").status_code == 401

    revoked = client.post(f"/api/v1/admin/wall-tokens/{token_id}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = client.get(f"/api/wall/{community}", headers=wall)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    again = client.post(f"/api/v1/admin/wall-tokens/{token_id}/revoke", headers=admin)
    assert again.status_code == 409
    assert client.get(f"/api/wall/{community}", headers=bearer("gwwall_guessed")).status_code == 401

    # The command line: a token printed once, one that expires, a revocation; all audited.
    cli = [sys.executable, "-m", "gridwatch.cli", "wall"]
    dsn_cli = ["--database-url", stack.role_dsn("cli")]
    out = subprocess.run([*cli, "token", "--area", grid, "--name", "值班室", "--days", "30",
                          "--as", "ops-lead", *dsn_cli], capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    printed = out.stdout.strip()
    assert printed.startswith("gwwall_") and "#token=" in out.stderr
    assert client.get(f"/api/wall/{grid}", headers=bearer(printed)).status_code == 200
    assert client.get(f"/api/wall/{community}", headers=bearer(printed)).status_code == 404
    listing = subprocess.run([*cli, "list", *dsn_cli], capture_output=True, text=True, check=False)
    assert (
        "值班室" in listing.stdout and "revoked" in listing.stdout and printed not in listing.stdout
    )
    cli_id = int(scalar(dsn, "SELECT id FROM wall_tokens WHERE name = '值班室'"))  # type: ignore[arg-type]
    # Expired is refused like revoked.
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE wall_tokens SET expires_at = now() - interval '1 s' WHERE id = %s",
                     (cli_id,))  # fmt: skip
    assert client.get(f"/api/wall/{grid}", headers=bearer(printed)).status_code == 401
    # ...and listed as expired, not as "expires <a past date>".
    listed = subprocess.run([*cli, "list", *dsn_cli], capture_output=True, text=True, check=False)
    (line,) = [ln for ln in listed.stdout.splitlines() if ln.startswith(f"{cli_id}\t")]
    assert "\texpired " in line and "expires" not in line, line
    # The command line cannot mark a token used (only the API checks them).
    with (
        psycopg.connect(stack.role_dsn("cli")) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("UPDATE wall_tokens SET last_used_at = now() WHERE id = %s", (cli_id,))
    gone = subprocess.run([*cli, "revoke", str(cli_id), *dsn_cli], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert gone.returncode == 0 and "revoked" in gone.stdout
    bad = subprocess.run([*cli, "token", "--area", "nowhere", *dsn_cli], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert (
        bad.returncode == 1 and "no area 'nowhere'" in bad.stderr and "Traceback" not in bad.stderr
    )
    audit = rows(dsn, "SELECT person_id, action, target, detail->>'area' FROM audit_log"
                      " WHERE action LIKE 'wall.%%' ORDER BY id")  # fmt: skip
    assert [a[:3] for a in audit] == [
        ("admin", "wall.token.issue", f"wall-token:{token_id}"),
        ("admin", "wall.token.revoke", f"wall-token:{token_id}"),
        ("ops-lead", "wall.token.issue", f"wall-token:{cli_id}"),
        (str(audit[3][0]), "wall.token.revoke", f"wall-token:{cli_id}"),
    ]
    assert [a[3] for a in audit] == [community, community, grid, grid]


def _device_states(dsn: str, nodes: list[NodeCredentials], offline: set[str]) -> None:
    """Every node online and every device online but `offline`, as the ingest would record."""
    with psycopg.connect(dsn) as conn:
        for n in nodes:
            conn.execute("INSERT INTO node_presence (node_id, online, bdseq, last_seen)"
                         " VALUES (%s, true, 1, now())", (n.node,))  # fmt: skip
            for device, _ in n.devices:
                conn.execute("INSERT INTO device_status (device_id, online, last_seen)"
                             " VALUES (%s, %s, now())", (device, device not in offline))  # fmt: skip


def test_the_summary_counts_what_is_there(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    dsn = stack.dsn
    first, second, third = (n.site for n in nodes)
    grid, community = areas_of(dsn, first)
    _device_states(dsn, nodes, offline={nodes[1].devices[0][0]})
    red = raise_incident(dsn, first, Rule.DOOR_FORCED, Severity.RED, "front")
    yellow = raise_incident(dsn, first, Rule.DOOR_HELD_OPEN, Severity.YELLOW, "back")
    with psycopg.connect(dsn) as conn:
        # One task past 80% of its stage's time, one that missed its deadline (escalated).
        conn.execute("UPDATE tasks SET stage_started = now() - interval '9 minutes',"
                     " deadline_at = now() + interval '1 minute' WHERE id = %s", (yellow,))  # fmt: skip
        conn.execute("UPDATE tasks SET escalations = 1 WHERE id = %s", (red,))
        counter = next(d for d, kind in nodes[2].devices if kind == "counter")
        for hours_ago, count in ((3, 4), (2, 10), (1, 6)):
            conn.execute(
                "INSERT INTO occupancy (ts, id, node_id, device_id, seq, zone, count, entered,"
                " exited) VALUES (now() - %s * interval '1 hour', gen_random_uuid(), %s, %s, %s,"
                " 'main', %s, 0, 0)", (hours_ago, nodes[2].node, counter, hours_ago, count),
            )  # fmt: skip
        conn.execute("INSERT INTO device_latest (device_id, type, ts, id, payload) VALUES"
                     " (%s, 'occupancy', now(), gen_random_uuid(), '{\"count\": 6}')", (counter,))  # fmt: skip
    me = sign_in(client, "operator")
    s = client.get(f"/api/wall/{community}", headers=me).json()
    assert s["timezone"] == "Asia/Shanghai"
    status = {v["id"]: v["status"] for v in s["venues"]}
    assert status == {first: "red", second: "yellow", third: "green"}
    assert all(v["lat"] is not None for v in s["venues"])
    assert s["open_incidents"] == {"red": 1, "yellow": 1, "green": 0}
    assert [(i["id"], i["severity"]) for i in s["ticker"]][:2] == [
        (int(scalar(dsn, "SELECT incident_id FROM tasks WHERE id = %s", (yellow,))), "yellow"),  # type: ignore[call-overload]
        (int(scalar(dsn, "SELECT incident_id FROM tasks WHERE id = %s", (red,))), "red"),  # type: ignore[call-overload]
    ]
    assert s["ticker"][0]["venue_name"] == scalar(
        dsn, "SELECT name FROM venues WHERE id = %s", (first,)
    )
    due = s["tasks_due"]
    assert (due["near"], due["overdue"]) == (1, 1)
    assert [(t["id"], t["overdue"]) for t in due["items"]] == [(red, True), (yellow, False)]
    devices = sum(len(n.devices) for n in nodes)
    total = s["online"]["total"]
    assert (total["devices"], total["online"]) == (devices, devices - 1)
    assert total["rate"] == round((devices - 1) / devices, 4) and total["below_target"]
    assert s["online"]["target"] == 0.98
    assert [(a["id"], a["devices"], a["online"]) for a in s["online"]["areas"]] == [
        (grid, devices, devices - 1)]  # fmt: skip
    today = s["today"]
    assert (today["incidents"], today["incidents_red"], today["resolved"], today["tasks"]) == (
        2,
        1,
        0,
        2,
    )
    assert today["day"] == datetime.now(UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date().isoformat()  # fmt: skip
    [occ] = s["occupancy"]
    assert occ["venue_id"] == third and occ["now"] == 6
    assert sorted(h["max_count"] for h in occ["hours"]) == [4, 6, 10]
    assert s["emergencies"] == []

    started = client.post("/api/emergencies", json={"area": "haicheng", "reason": "台风"},
                          headers=me)  # fmt: skip
    assert started.status_code == 200, started.text
    client.app.state.wall_cache = None  # type: ignore[attr-defined]  # not wait out the cache
    s = client.get(f"/api/wall/{community}", headers=me).json()
    assert [(e["territory_id"], e["reason"]) for e in s["emergencies"]] == [("haicheng", "台风")]


def test_the_wall_on_a_control_room_screen(
    stack: LocalStack, api_url: str, browser: Browser, shots: Path
) -> None:
    dsn = stack.dsn
    nodes = stack.apply_demo(venues=12, devices_per_venue=6)  # the demo city: districts, grids
    community = areas_of(dsn, nodes[0].site)[1]
    _device_states(dsn, nodes, offline={nodes[1].devices[0][0], nodes[4].devices[2][0]})
    late = raise_incident(dsn, nodes[3].site, Rule.DOOR_HELD_OPEN, Severity.YELLOW, "late")
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("UPDATE tasks SET escalations = 1 WHERE id = %s", (late,))
        for n in nodes:
            if not n.open_24h:
                continue
            counter = next(d for d, kind in n.devices if kind == "counter")
            conn.execute(
                "INSERT INTO occupancy (ts, id, node_id, device_id, seq, zone, count, entered,"
                " exited) SELECT now() - h * interval '1 hour', gen_random_uuid(), %s, %s, h,"
                " 'main', 3 + (h * 7) %% 11, 0, 0 FROM generate_series(1, 23) h", (n.node, counter),
            )  # fmt: skip
            conn.execute("INSERT INTO device_latest (device_id, type, ts, id, payload) VALUES"
                         " (%s, 'occupancy', now(), gen_random_uuid(), '{\"count\": 7}')",
                         (counter,))  # fmt: skip
    errors: list[str] = []
    # An admin makes the wall's token on the People page; the address is shown once.
    admin = signed_in(browser, api_url, "admin", errors)
    admin.goto(f"{api_url}/#/people")
    admin.select_option("#wall-area", "haicheng")
    admin.fill("#wall-name", "指挥中心大屏")
    admin.click("#wall-tokens button[type=submit]")
    address = admin.locator("#wall-address")
    expect(address).to_contain_text("/console/wall.html#token=gwwall_")
    token = address.inner_text().split("#token=")[1]
    expect(admin.locator("#wall-tokens tbody tr")).to_have_count(1)
    admin.context.close()
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{api_url}/console/wall.html#token={token}")
    expect(page.locator("#map svg [data-venue]")).to_have_count(len(nodes), timeout=20_000)
    expect(page.locator("#map svg path[data-area]").first).to_be_visible()
    # The token left the address bar for this browser's storage, and never went into a URL.
    assert token not in page.url
    assert page.evaluate("localStorage.getItem('gridwatch.wall.token')") == token
    assert not any(token in u for u in requests)
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    raise_incident(dsn, nodes[0].site, Rule.DOOR_FORCED, Severity.RED, "wall")
    expect(page.locator("#ticker .red").first).to_be_visible(timeout=30_000)
    expect(page.locator(f"#map svg [data-venue='{nodes[0].site}']")).to_have_attribute(
        "data-status", "red", timeout=30_000)  # fmt: skip
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO emergencies (territory_id, path, reason, message, started_by)"
                     " SELECT id, path, '台风', '台风红色预警', 'operator' FROM territory"
                     " WHERE id = %s", (community,))  # fmt: skip
    banner = page.locator("#emergency")
    expect(banner).to_be_visible(timeout=30_000)
    expect(banner).to_contain_text("台风")
    # Readable from five metres: body text of at least 28 px, and the key figures far larger.
    sizes: dict[str, Any] = page.evaluate(
        """() => ({body: parseFloat(getComputedStyle(document.body).fontSize),
                   figure: parseFloat(getComputedStyle(document.querySelector('.figure')).fontSize)})"""
    )
    assert sizes["body"] >= 28 and sizes["figure"] >= 72, sizes
    smallest = page.evaluate(
        """() => Math.min(...[...document.querySelectorAll('body *')]
             .filter((e) => e.checkVisibility() && [...e.childNodes].some(
                 (n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim()))
             .map((e) => parseFloat(getComputedStyle(e).fontSize)))"""
    )
    assert smallest >= 28, smallest  # no text on the wall is smaller
    # Nothing outside the page: no scroll bars at 1920x1080.
    assert page.evaluate("document.documentElement.scrollHeight <= innerHeight + 1")
    page.screenshot(path=str(shots / "wall.png"))
    # In English when the fragment says so (the token is remembered: no need to give it again).
    english = context.new_page()
    english.goto(f"{api_url}/console/wall.html#lang=en")
    expect(english.locator("html")).to_have_attribute("lang", "en")
    expect(english.locator("#h-online")).to_have_text("Devices online")
    expect(english.locator("#emergency")).to_contain_text("EMERGENCY", timeout=30_000)
    english.close()
    assert errors == [], errors
    # The token revoked: the wall says so (and keeps trying, in case a new one is put in).
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("UPDATE wall_tokens SET revoked_at = now(), revoked_by = 'admin'")
    expect(page.locator("#stale")).to_contain_text("令牌", timeout=30_000)
    context.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [("https://tiles.example/{z}/{x}/{y}.png", "not a path on the console's origin"),
     ("//tiles.example/{z}/{x}/{y}.png", "not a path on the console's origin"),
     ("/tiles/{z}/{x}.png", "lacks {z}, {x} or {y}")],
)  # fmt: skip
def test_a_tile_server_must_be_on_the_consoles_origin(
    value: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from api.routes.wall import WallSettings

    monkeypatch.setenv("GRIDWATCH_WALL_TILE_URL", value)
    with pytest.raises(ValidationError, match=problem):
        WallSettings()
    monkeypatch.setenv("GRIDWATCH_WALL_TILE_URL", "/tiles/{z}/{x}/{y}.png")
    assert WallSettings().tile_url == "/tiles/{z}/{x}/{y}.png"


def _inside(point: tuple[float, float], ring: list[list[float]]) -> bool:
    """Whether a point is strictly inside a ring (ray casting)."""
    x, y = point
    hit = False
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            hit = not hit
    return hit


@pytest.mark.parametrize("venues", [12, 200])
def test_the_demo_areas_nest_and_venues_stand_inside_their_grid(venues: int) -> None:
    from gridwatch import demo

    doc = demo.generate(venues, 1)
    areas = doc.areas
    ring = {a.id: a.boundary["coordinates"][0] for a in areas.values() if a.boundary}
    assert set(ring) == set(areas)
    for a in areas.values():
        assert ring[a.id][0] == ring[a.id][-1]  # closed
        if a.parent is None:
            continue
        parent = ring[a.parent]
        corners = {tuple(p) for p in parent}
        # Each vertex is on the parent's outline (one of its vertices) or inside it.
        assert all(tuple(p) in corners or _inside((p[0], p[1]), parent) for p in ring[a.id]), a.id
    for v in doc.venues.values():
        assert v.location is not None
        area: str | None = v.grid
        while area is not None:
            assert _inside((v.location.lon, v.location.lat), ring[area]), (v.id, area)
            area = areas[area].parent
