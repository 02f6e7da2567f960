"""Every page of the console in both languages, checked by axe-core (from npm, pinned in
package-lock.json): no serious or critical accessibility violation. On the way: the incident
page (its timeline, task, device, venue and picture, reached and worked from the keyboard),
the KPIs counting only what people did, and the photo picker and gallery on a worker's phone.

Screenshots: incident.png, kpi.png (zh-CN).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect
from psycopg.types.json import Jsonb

from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gateway import messages as m
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.stack import LocalStack
from ingest import registry
from tests import console_support
from tests.console_support import signed_in
from tests.test_api import raise_incident
from tests.test_photos import jpeg_with_gps

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
LOCALES = ("zh-CN", "en")
BLOCKING = {"serious", "critical"}
# Pages another helper of issue 14 is rewriting while this test is written: their violations
# are reported (printed) but do not fail the test until that work has landed. Remove entries
# as the pages are fixed: (page, axe rule).
OTHERS: set[tuple[str, str]] = set()


def _axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Compiled through the DevTools protocol, so the console's CSP (no inline code) allows it.
        page.evaluate("() => {" + AXE.read_text() + "\n}")
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5)"
        ".map(n => ({target: n.target.join(' '), summary: n.failureSummary}))}))"
    )
    return [v for v in result if v["impact"] in BLOCKING]


def _readable(where: str, violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{where}: {v['impact']} {v['id']}: {v['help']}")
        for n in v["nodes"]:
            summary = " ".join(str(n["summary"] or "").split())
            lines.append(f"    {n['target']}: {summary[:300]}")
    return "\n".join(lines)


def _settle(page: Page) -> None:
    """The page's requests done and its content drawn."""
    page.wait_for_load_state("networkidle")
    expect(page.locator("#view > *").first).to_be_attached()


def _visit(
    page: Page, base: str, route: str, locale: str, found: list[str], reported: list[str]
) -> None:
    page.goto(f"{base}/console/#/{route}")
    _settle(page)
    assert page.evaluate("() => document.documentElement.lang") == locale, route
    violations = _axe(page)
    mine = [v for v in violations if (route.split("/", maxsplit=1)[0], v["id"]) not in OTHERS]
    theirs = [v for v in violations if v not in mine]
    if mine:
        found.append(_readable(f"{locale} #/{route}", mine))
    if theirs:
        reported.append(_readable(f"{locale} #/{route} (another helper's page)", theirs))
    if locale == "zh-CN":  # the focus styles are the same in both languages
        unseen = _focus_not_shown(page)
        if unseen:
            found.append(f"{locale} #/{route}: focus not visible on {unseen}")
    uncatalogued = getattr(console_support, "uncatalogued", None)  # tests/test_i18n.py's check
    if uncatalogued is not None and locale == "zh-CN":
        text = uncatalogued(page)
        if text:
            reported.append(f"{locale} #/{route}: text from no catalogue: {text[:10]}")


def _focus_not_shown(page: Page, presses: int = 40) -> list[str]:
    """Tab through the page; the elements that took the focus without showing it."""
    page.locator("body").focus()
    unseen: list[str] = []
    first = None
    for _ in range(presses):
        page.keyboard.press("Tab")
        here = page.evaluate(
            """() => {
                 const e = document.activeElement;
                 if (!e || e === document.body) return null;
                 const s = getComputedStyle(e);
                 const shown = (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0)
                   || s.boxShadow !== "none";
                 const name = e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
                   + (e.getAttribute("href") ? `[href="${e.getAttribute("href")}"]` : "");
                 return {name, shown};
               }"""
        )
        if here is None or here["name"] == first:
            break  # back at the start: every element seen
        first = first or here["name"]
        if not here["shown"] and here["name"] not in unseen:
            unseen.append(here["name"])
    return unseen


def _in_language(browser: Browser, base: str, dsn: str, person: str, locale: str,
                 errors: list[str], *, phone: bool = False) -> Page:  # fmt: skip
    with psycopg.connect(dsn) as conn:  # the person's stored language (013), which /api/me gives
        conn.execute("UPDATE people SET language = %s WHERE id = %s", (locale, person))
    page = signed_in(browser, base, person, errors, phone=phone)
    # The person's stored language, where the console reads one (PUT /api/me/language), and
    # this browser's saved one otherwise.
    page.evaluate(
        """async (locale) => {
             const s = JSON.parse(localStorage.getItem("gridwatch.session"));
             await fetch("/api/me/language", {method: "PUT", headers: {
               "Authorization": `Bearer ${s.token}`, "Content-Type": "application/json"},
               body: JSON.stringify({language: locale})});
             localStorage.setItem("gridwatch.locale", locale);
           }""",
        locale,
    )
    page.reload()
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
    return page


def _incident_with_picture(dsn: str, site: str) -> tuple[int, int]:
    """A camera intrusion at the venue with its snapshot stored: (incident id, task id)."""
    ok, jpeg = cv2.imencode(".jpg", np.full((180, 320, 3), (40, 90, 160), np.uint8))
    assert ok
    with psycopg.connect(dsn) as conn:
        venue = registry.load(conn).venues[site]
        camera, node = conn.execute(
            "SELECT d.id, d.node_id FROM devices d JOIN edge_nodes n ON n.id = d.node_id"
            " WHERE n.venue_id = %s AND d.kind = 'camera' ORDER BY d.id LIMIT 1",
            (site,),
        ).fetchone() or (None, None)
        assert camera is not None, "the demo venue has a camera"
        snapshot = uuid.uuid4()
        conn.execute(
            """INSERT INTO camera_snapshots (ts, id, node_id, device_id, seq, alert_id, width,
                                             height, jpeg)
               VALUES (now(), %s, %s, %s, 1, %s, 320, 180, %s)""",
            (snapshot, node, camera, uuid.uuid4(), jpeg.tobytes()),
        )
        applied = incidents.apply(conn, [Raise(
            Rule.CAMERA_INTRUSION, f"{camera}-intrusion", Severity.RED, venue, datetime.now(UTC),
            device=str(camera), node=str(node), detail={"snapshot": str(snapshot)},
        )], tasks.DeadlinePolicy())  # fmt: skip
        task_id = applied.tasks[0]
        incident_id = conn.execute(
            "SELECT incident_id FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()
        assert incident_id is not None
        conn.execute("UPDATE incidents SET occurrences = 3 WHERE id = %s", (incident_id[0],))
    return int(incident_id[0]), task_id


def _kpi_history(dsn: str, site: str, worker: str, dispatcher: str) -> None:
    """A few tasks for the KPIs: one closed by people, one that closed by itself."""
    done = raise_incident(dsn, site, "kpi-done")
    cleared = raise_incident(dsn, site, "kpi-cleared")
    with psycopg.connect(dsn) as conn:
        for action, actor, kw in [
            (tasks.Action.ACCEPT, worker, {}), (tasks.Action.START, worker, {}),
            (tasks.Action.FEEDBACK, worker, {"note": "门已关好"}), (tasks.Action.CHECK, dispatcher, {}),
            (tasks.Action.APPROVE, dispatcher, {}),
        ]:  # fmt: skip
            tasks.act(conn, done, action, actor, **kw)  # type: ignore[arg-type]
        key = conn.execute("SELECT i.dedup_key FROM incidents i JOIN tasks t ON t.incident_id = i.id"
                           " WHERE t.id = %s", (cleared,)).fetchone()  # fmt: skip
        assert key is not None
        incidents.resolve(conn, str(key[0]), "cleared")


@pytest.mark.timeout(240)
def test_every_page_in_both_languages_passes_axe(
    stack: LocalStack, nodes: list[NodeCredentials], api_url: str, browser: Browser, shots: Path
) -> None:
    assert AXE.exists(), "axe-core is missing: scripts/setup installs it (npm ci)"
    dsn, site = stack.dsn, nodes[0].site
    worker, dispatcher = stack.people_of_venue(site)
    incident_id, task_id = _incident_with_picture(dsn, site)
    _kpi_history(dsn, site, worker, dispatcher)
    door = _door_refusing_our_account(dsn, site)
    with psycopg.connect(dsn) as conn:  # the picture's task, in the worker's hands
        for action in (tasks.Action.ACCEPT, tasks.Action.START):
            tasks.act(conn, task_id, action, worker)
    _compressed_but_not_the_live_stream(api_url, worker)
    errors: list[str] = []
    found: list[str] = []
    reported: list[str] = []
    supervisor_pages = ["board", "territory", "tasks", "emergency", "kpi", f"venue/{site}",
                        f"task/{task_id}", f"incident/{incident_id}", "settings/notifications"]  # fmt: skip
    admin_pages = ["people", "rejected", "registry/areas", "registry/venues", "registry/people"]
    worker_pages = ["inbox", "territory", f"task/{task_id}", f"incident/{incident_id}",
                    "settings/notifications"]  # fmt: skip
    for locale in LOCALES:
        operator = _in_language(browser, api_url, dsn, "operator", locale, errors)
        for route in supervisor_pages:
            _visit(operator, api_url, route, locale, found, reported)
            if locale == "zh-CN" and route.startswith("incident/"):
                _check_incident_page(operator, incident_id, task_id, site)
                operator.screenshot(path=shots / "incident.png", full_page=True)
                _acknowledge_from_the_keyboard(operator)
            if locale == "zh-CN" and route == "board":
                _alarm_banner(operator, dsn, site, found)
            if route.startswith("venue/"):
                row = operator.locator(f'#devices tr[data-device="{door}"]')
                expect(row).to_contain_text(
                    "账号被拒绝" if locale == "zh-CN" else "account refused"
                )
                expect(row).to_contain_text("check the password")  # the driver's own words
            if locale == "zh-CN" and route == "kpi":
                _check_kpi_page(operator)
                operator.screenshot(path=shots / "kpi.png", full_page=True)
        operator.context.close()
        admin = _in_language(browser, api_url, dsn, "admin", locale, errors)
        for route in admin_pages:
            _visit(admin, api_url, route, locale, found, reported)
        admin.context.close()
        phone = _in_language(browser, api_url, dsn, worker, locale, errors, phone=True)
        for route in worker_pages:
            _visit(phone, api_url, route, locale, found, reported)
        if locale == "zh-CN":
            _photos_on_the_phone(phone, task_id, incident_id, found)
        phone.context.close()
    if reported:
        print("\n".join(["Reported, not failing (other helpers' areas):", *reported]))
    assert not found, "axe-core found serious or critical violations:\n" + "\n".join(found)
    assert not errors, errors


def _door_refusing_our_account(dsn: str, site: str) -> str:
    """The venue's door, whose driver last reported that the device refuses its account (as
    the ingest keeps a `device.health` message): the door's id."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT d.id, d.node_id FROM devices d JOIN edge_nodes n ON n.id = d.node_id"
            " WHERE n.venue_id = %s AND d.kind = 'door' ORDER BY d.id LIMIT 1",
            (site,),
        ).fetchone()
        assert row is not None, "the demo venue has a door"
        health = m.DeviceHealth(
            **m.envelope(1), device=str(row[0]), online=False,
            condition=m.DeviceCondition.AUTH_FAILED,
            detail="401 from 10.0.5.31: the device refused user admin; check the password",
            faults={"auth_failed": 2},
        )  # fmt: skip
        conn.execute(
            "INSERT INTO device_latest (device_id, type, ts, seq, id, payload)"
            " VALUES (%s, 'device.health', %s, 1, %s, %s)"
            " ON CONFLICT (device_id, type) DO UPDATE SET payload = excluded.payload",
            (health.device, health.ts, health.id, Jsonb(health.model_dump(mode="json"))),
        )
    return health.device


def _alarm_banner(page: Page, dsn: str, site: str, found: list[str]) -> None:
    """A new red incident raises the alarm banner; its text, link and button pass axe (the
    link was the accent blue on red, 1.33:1, before issue 14)."""
    raise_incident(dsn, site, "alarm")
    banner = page.locator("#alarm")
    expect(banner).to_be_visible(timeout=10_000)
    link = banner.locator("a").first
    colours = link.evaluate(
        "a => [getComputedStyle(a).color, getComputedStyle(a.parentElement).backgroundColor]"
    )
    assert colours[0] == "rgb(255, 255, 255)", colours
    violations = [v for v in _axe(page) if (("board", v["id"]) not in OTHERS)]
    if violations:
        found.append(_readable("zh-CN #/board with the alarm banner", violations))
    banner.locator("button").click()
    expect(banner).to_be_hidden()


def _compressed_but_not_the_live_stream(base: str, person: str) -> None:
    """The console's files and the API's JSON come gzipped; the live stream never does."""
    gzip = {"Accept-Encoding": "gzip"}
    with httpx.Client(base_url=base, timeout=30, headers=gzip) as client:
        for path in ("/console/js/main.js", "/console/style.css", "/console/i18n/zh-CN.json"):
            r = client.get(path)
            assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip", path
        token = client.post("/api/token", data={"username": person, "password": DEMO_PASSWORD})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        r = client.get("/api/tasks", params={"open": "false"}, headers=auth)
        assert r.headers.get("content-encoding") == "gzip" and r.json()["items"]
        tiny = client.get("/api/me", headers=auth)  # under 512 bytes: not worth compressing
        assert "content-encoding" not in tiny.headers
        ticket = client.post("/api/live/ticket", headers=auth).json()["ticket"]
        with client.stream("GET", "/api/live", params={"ticket": ticket}) as live:
            assert live.status_code == 200
            assert live.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in live.headers


def _check_incident_page(page: Page, incident_id: int, task_id: int, site: str) -> None:
    expect(page.locator("#incident h1")).to_be_visible()
    expect(page.locator("#incident-venue")).to_have_attribute("href", f"#/venue/{site}")
    expect(page.locator("#incident-task")).to_have_attribute("href", f"#/task/{task_id}")
    expect(page.locator("#incident-facts")).to_contain_text("处置人")
    expect(page.locator("#incident-facts")).to_contain_text("共 3 次")
    expect(page.locator("#incident-snapshot img")).to_be_visible(timeout=10_000)
    width = page.locator("#incident-snapshot img").evaluate("img => img.naturalWidth")
    assert width == 320
    timeline = page.locator("#incident-timeline li")
    kinds = timeline.evaluate_all("items => items.map(li => li.dataset.kind)")
    assert kinds[0] == "opened"
    assert {"task", "task_dispatch", "task_accept", "task_start", "repeated"} <= set(kinds)
    expect(page.locator("#incident-timeline")).to_contain_text("签收")


def _acknowledge_from_the_keyboard(page: Page) -> None:
    """Reach the incident's first action with Tab alone, see where the focus is, press Enter."""
    button = page.locator("#incident-actions button").first
    for _ in range(60):
        page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    else:
        raise AssertionError("the incident's actions cannot be reached with the Tab key")
    outline = button.evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline != "none", "the focused button shows no focus"
    page.keyboard.press("Enter")
    expect(page.locator("#incident-timeline li[data-kind=acknowledged]")).to_have_count(1)


def _check_kpi_page(page: Page) -> None:
    expect(page.locator("#kpi tbody tr").first).to_contain_text("%")
    # Every axis ticks on round values: steps of 1, 2 or 5 times a power of ten, or a round
    # length of time; every tick a whole number of steps.
    charts = page.locator("svg.chart").evaluate_all(
        "svgs => svgs.map(s => ({axis: s.dataset.axis, step: Number(s.dataset.step),"
        " ticks: [...s.querySelectorAll('text[data-tick]')].map(t => Number(t.dataset.tick))}))"
    )
    assert len(charts) == 3, charts
    time_steps = page.evaluate("async () => (await import('/console/js/dom.js')).TIME_STEPS")
    for chart in charts:
        step = chart["step"]
        if chart["axis"] == "time":
            assert step in time_steps, chart
        else:
            mantissa = round(step / 10 ** np.floor(np.log10(step)), 9)
            assert mantissa in {1, 2, 5}, chart
        assert all(abs(v / step - round(v / step)) < 1e-9 for v in chart["ticks"]), chart
    cases = page.evaluate(
        """async () => {
             const { niceTicks } = await import('/console/js/dom.js');
             return [niceTicks(7), niceTicks(0.75), niceTicks(13, {integer: true}),
                     niceTicks(1234), niceTicks(3, {integer: true}), niceTicks(0, {integer: true})];
           }"""
    )
    assert [c["ticks"] for c in cases] == [
        [0, 2, 4, 6, 8], [0, 0.2, 0.4, 0.6, 0.8], [0, 5, 10, 15],
        [0, 500, 1000, 1500], [0, 1, 2, 3], [0, 1],
    ]  # fmt: skip


def _photos_on_the_phone(page: Page, task_id: int, incident_id: int, found: list[str]) -> None:
    """The picker H4's feedback dialog uses: a picture chosen, uploaded, its thumbnail shown,
    its id given; the gallery shows it and opens it full size."""
    page.evaluate(
        """async (taskId) => {
             const { photoPicker, photoGallery } = await import("/console/js/views/photos.js");
             const picker = photoPicker(taskId);
             picker.element.id = "picker-under-test";
             document.getElementById("view").prepend(picker.element);
             window.pickerUnderTest = picker;
             window.galleryUnderTest = photoGallery;
           }""",
        task_id,
    )
    page.locator("#picker-under-test input[type=file]").set_input_files(
        files=[{"name": "door.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps()}]
    )
    expect(page.locator("#picker-under-test .photo-item[data-state=done] img")).to_be_visible(
        timeout=15_000
    )
    ids = page.evaluate("() => window.pickerUnderTest.ids()")
    assert len(ids) == 1
    violations = _axe(page)
    if violations:
        found.append(_readable("zh-CN photo picker", violations))
    # One taken by mistake: deleted on the server by its button, not only left out.
    page.locator("#picker-under-test input[type=file]").set_input_files(
        files=[{"name": "oops.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps()}]
    )
    done = page.locator("#picker-under-test .photo-item[data-state=done]")
    expect(done).to_have_count(2, timeout=15_000)
    expect(done.nth(1).locator("img")).to_be_visible(timeout=15_000)
    done.nth(1).locator("button").click()
    expect(done).to_have_count(1, timeout=10_000)
    assert page.evaluate("() => window.pickerUnderTest.ids()") == ids
    stored = page.evaluate(
        """async (taskId) => {
             const s = JSON.parse(localStorage.getItem("gridwatch.session"));
             const r = await fetch(`/api/tasks/${taskId}/photos`,
                                   {headers: {"Authorization": `Bearer ${s.token}`}});
             return (await r.json()).map((p) => p.id);
           }""",
        task_id,
    )
    assert stored == ids
    page.evaluate(
        """([taskId, ids]) => {
             const g = window.galleryUnderTest(taskId, ids);
             g.id = "gallery-under-test";
             document.getElementById("view").prepend(g);
           }""",
        [task_id, ids],
    )
    page.locator("#gallery-under-test button").click()
    expect(page.locator("dialog.photo-dialog img")).to_be_visible(timeout=10_000)
    page.keyboard.press("Escape")
    expect(page.locator("dialog.photo-dialog")).to_have_count(0)
    # Sent with the feedback, they are in the incident's timeline for the assignee and checkers.
    status = page.evaluate(
        """async ([taskId, ids]) => {
             const s = JSON.parse(localStorage.getItem("gridwatch.session"));
             const r = await fetch(`/api/tasks/${taskId}/actions`, {method: "POST", headers: {
               "Authorization": `Bearer ${s.token}`, "Content-Type": "application/json"},
               body: JSON.stringify({action: "feedback", note: "门已关好", photos: ids})});
             return r.status;
           }""",
        [task_id, ids],
    )
    assert status == 200
    page.goto(page.url.split("#")[0] + f"#/incident/{incident_id}")
    feedback = page.locator("#incident-timeline li[data-kind=task_feedback]")
    expect(feedback.locator(".photo-gallery img")).to_be_visible(timeout=10_000)
