"""The web console in a real browser (Debian's chromium, driven by Playwright) against the running
system: PostgreSQL, Mosquitto, the ingest, the API in its own process and simulated venues.

Screenshots of the main pages are taken on the way; set GRIDWATCH_SCREENSHOTS=docs/screenshots to
keep them (that is how the README's pictures are made), otherwise they go to the test's folder.

The flows run in one language, the demo's (LANGUAGE: each person's stored language and the
browser's), and the texts they look for are that catalogue's messages, not words written here:
GRIDWATCH_TEST_LANGUAGE=en runs them in English.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gateway.messages import DoorMode
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.services import free_port, wait_for_port
from gridwatch.local.stack import LocalStack
from ingest import registry
from simulators.devices import SimCounter, SimDoor, SimSpeaker
from tests.console_support import DESKTOP, PHONE, catalogue, set_language, signed_in
from tests.edge_support import fleet_of
from tests.support import device_of, rows, scalar, stop_process, wait_until
from tests.test_api import raise_incident

LANGUAGE = os.environ.get(
    "GRIDWATCH_TEST_LANGUAGE", "zh-CN"
)  # the demo's; "en" runs them in English
M = catalogue(LANGUAGE)


def text(key: str, language: str = LANGUAGE, **params: object) -> str:
    """A catalogue message with its parameters; cut before the first one not given (for a
    to_contain_text of what is known)."""
    message = catalogue(language)[key]
    if isinstance(message, dict):
        one = params.get("count") == 1 and "one" in message
        message = message["one" if one else "other"]
    for name, value in params.items():
        message = message.replace(f"{{{name}}}", str(value))
    return message.split("{")[0].strip(" ·") if "{" in message else message


def theirs(key: str, english: str) -> str:
    """A word of a page another branch of issue 14 converts (tasks, incident): its message once
    the catalogue has it, the page's English until then."""
    return str(M[key]) if key in M else english


def incident_title(base: str, incident_id: object) -> str:
    """An incident's title as the console shows it: the API's, in the console's language."""
    token = httpx.post(
        f"{base}/api/token", data={"username": "operator", "password": DEMO_PASSWORD}
    )
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}",
              "Accept-Language": LANGUAGE}  # fmt: skip
    answer = httpx.get(f"{base}/api/incidents/{incident_id}", headers=bearer)
    answer.raise_for_status()
    return str(answer.json()["title"])


def test_console_from_a_forced_door_to_an_accepted_task(
    stack: LocalStack,
    nodes: list[NodeCredentials],
    ingest: subprocess.Popen[bytes],
    api_url: str,
    browser: Browser,
    shots: Path,
    tmp_path: Path,
) -> None:
    site = nodes[0].site
    worker_id, dispatcher_id = stack.people_of_venue(site)
    fleet = fleet_of(stack, nodes, tmp_path / "fleet")
    errors: list[str] = []
    try:
        operator = signed_in(browser, api_url, "operator", errors, language=LANGUAGE)
        dispatcher = signed_in(browser, api_url, dispatcher_id, errors, language=LANGUAGE)
        worker = signed_in(browser, api_url, worker_id, errors, phone=True, language=LANGUAGE)
        expect(operator).to_have_url(f"{api_url}/console/#/board")
        expect(dispatcher).to_have_url(f"{api_url}/console/#/tasks")
        expect(worker).to_have_url(f"{api_url}/console/#/inbox")
        expect(operator.locator("#incidents")).to_contain_text(M["board.quiet"])

        # A forced door: on the operator's board within 2 seconds, flashing, with the alarm.
        door = fleet.devices[device_of(nodes[0], "door")]
        assert isinstance(door, SimDoor)
        door.force()
        red = operator.locator("#incidents tr[data-severity=red]")
        expect(red).to_have_count(1, timeout=2_000)
        title = incident_title(api_url, red.get_attribute("data-id"))
        expect(red).to_contain_text(title)
        expect(operator.locator("#alarm")).to_be_visible()
        expect(operator.locator("#alarm")).to_contain_text(text("shell.alarm", title=title))
        expect(operator.locator("#alarm a")).to_have_text(  # the venue's name, not its id
            str(scalar(stack.dsn, "SELECT name FROM venues WHERE id = %s", (site,)))
        )
        expect(operator.locator("#count-red")).to_have_text("1")
        operator.screenshot(path=shots / "board.png")
        operator.locator("#alarm button", has_text=M["shell.dismiss"]).click()
        expect(operator.locator("#alarm")).to_be_hidden()

        # Its task reaches the dispatcher's board and the worker's inbox by itself.
        task_id = int(str(scalar(stack.dsn, "SELECT max(id) FROM tasks")))
        card = f"[data-task='{task_id}']"
        expect(dispatcher.locator(f"[data-column=dispatched] {card}")).to_be_visible()
        expect(worker.locator(f"#inbox {card}")).to_be_visible()

        # Accepted on the phone: it moves to "In hand" on the dispatcher's board.
        worker.locator(f"{card} button[data-action=accept]").click()
        expect(dispatcher.locator(f"[data-column=accepted] {card}")).to_be_visible(timeout=5_000)
        worker.locator(f"{card} button[data-action=start]").click()
        worker.locator(f"{card} button[data-action=feedback]").click()
        worker.locator("dialog textarea").fill("Door closed and checked, nobody inside.")
        worker.locator("dialog button[value=ok]").click()
        expect(dispatcher.locator(f"[data-column=reported] {card}")).to_have_count(0)
        expect(dispatcher.locator(f"[data-column=feedback] {card}")).to_be_visible(timeout=5_000)
        dispatcher.locator(f"{card} button", has_text=theirs("task.timeline", "timeline")).click()
        expect(dispatcher.locator(f"{card} .timeline")).to_contain_text("Door closed and checked")
        assert (
            scalar(stack.dsn, "SELECT state::text FROM tasks WHERE id = %s", (task_id,))
            == "feedback"
        )

        # Acknowledge it on the board; the territory shows the venue red.
        operator.locator(
            "#incidents tr[data-severity=red] button", has_text=M["board.acknowledge"]
        ).click()
        expect(operator.locator("#incidents tr[data-severity=red]")).to_contain_text(
            M["status.acknowledged"]
        )
        operator.goto(f"{api_url}/console/#/territory")
        expect(operator.locator(f"[data-venue='{site}']")).to_have_attribute("data-status", "red")
        operator.screenshot(path=shots / "territory.png")

        # The venue page: occupancy, devices with presence, door events, and a broadcast
        # followed to the end.
        counter = fleet.devices[device_of(nodes[0], "counter")]
        assert isinstance(counter, SimCounter)
        counter.spike(40)
        for _ in range(3):
            counter.report(fleet.engine.clock.now())
        wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM occupancy") >= 3, 10, "readings")
        operator.goto(f"{api_url}/console/#/venue/{site}")
        expect(operator.locator("svg.chart rect.bar")).to_have_count(1)
        expect(operator.locator("#devices tbody tr")).to_have_count(len(nodes[0].devices))
        expect(operator.locator("#door-events")).to_contain_text(M["venue.event.forced"])
        operator.screenshot(path=shots / "venue.png", full_page=True)
        operator.get_by_role("button", name=M["venue.broadcast"], exact=True).click()
        operator.locator("dialog textarea").fill("Please keep the side door closed.")
        operator.locator("dialog button[type=submit]").click()
        expect(operator.locator("dialog .tracking")).to_contain_text(
            text("commands.tracking", count=1, answered=1, done=1)
        )
        speaker = fleet.devices[device_of(nodes[0], "speaker")]
        assert isinstance(speaker, SimSpeaker)
        assert speaker.played == ["Please keep the side door closed."]
        operator.screenshot(path=shots / "broadcast.png")
        operator.locator("dialog button", has_text=M["common.close"]).click()
        operator.locator(
            f"#devices tr[data-device='{door.id}'] button", has_text=M["venue.door_button"]
        ).click()
        operator.locator("dialog select[name=action]").select_option("lockdown")
        operator.locator("dialog button[type=submit]").click()
        expect(operator.locator("dialog .error")).to_have_text(
            M["commands.reason_needed"]
        )  # asked first
        operator.locator("dialog input[name=reason]").fill("intruder reported on the stairs")
        operator.locator("dialog button[type=submit]").click()
        expect(operator.locator("dialog .tracking")).to_contain_text(
            text("commands.tracking", count=1, answered=1, done=1)
        )
        assert door.mode is DoorMode.LOCKDOWN
        assert scalar(stack.dsn, "SELECT detail->>'reason' FROM audit_log"
                                 " WHERE action = 'door.lockdown'") == "intruder reported on the stairs"  # fmt: skip
        operator.locator("dialog button", has_text=M["common.close"]).click()

        # Emergency mode on and off for the city, from its page.
        operator.goto(f"{api_url}/console/#/emergency")
        operator.locator("select[name=area]").select_option("haicheng")
        operator.locator("input[name=reason]").fill("flood warning, level 2")
        operator.locator("button", has_text=M["emergency.start"]).click()
        active = operator.locator("#emergencies tr[data-active=yes]")
        expect(active).to_contain_text("flood warning")
        operator.screenshot(path=shots / "emergency.png")
        active.locator("button", has_text=M["emergency.end"]).click()
        expect(active).to_have_count(0)

        # A rule's proposal waits for a person: confirmed from the same page.
        with psycopg.connect(stack.dsn) as conn:
            venue = registry.load(conn).venues[site]
            incidents.apply(conn, [Raise(Rule.FAR_OVER_CAPACITY, f"{site}-counter", Severity.RED,
                                         venue, datetime.now(UTC), emergency_level="community")],
                            tasks.DeadlinePolicy())  # fmt: skip
        assert scalar(stack.dsn, "SELECT count(*) FROM emergencies WHERE ended_at IS NULL") == 0
        operator.reload()
        proposal = operator.locator("#proposals tbody tr")
        expect(proposal).to_have_attribute("data-rule", "far_over_capacity")
        proposal.locator("button", has_text=M["emergency.confirm"]).click()
        expect(proposal).to_have_count(0)
        expect(active).to_have_count(1)
        expect(operator.locator("#emergency-banner")).to_be_visible()  # on every page meanwhile
        active.locator("button", has_text=M["emergency.end"]).click()
        expect(active).to_have_count(0)

        operator.goto(f"{api_url}/console/#/kpi")
        expect(operator.locator("#kpi tbody tr").first).to_contain_text("海城市")
        expect(operator.locator("svg.chart").first).to_be_visible()
    finally:
        fleet.stop()
    assert errors == [], errors


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_console_sign_in_sign_out_and_pages_by_role(
    stack: LocalStack, api_url: str, browser: Browser, language: str
) -> None:
    words = catalogue(language)
    for person in ("operator", "admin"):
        set_language(api_url, person, language)
    errors: list[str] = []
    page = browser.new_page(locale=language)  # before sign-in, the browser's language
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{api_url}/console/#/board")
    expect(page.locator("#username")).to_be_visible()  # not signed in: the login form
    page.fill("#username", "operator")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".login .error")).to_have_text(words["login.wrong"])
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#nav")).to_contain_text(words["nav.board"])
    expect(page.locator("#nav")).not_to_contain_text(words["nav.rejected"])  # for admins only
    expect(page.locator("#nav")).not_to_contain_text(words["nav.people"])
    token = page.evaluate("JSON.parse(localStorage.getItem('gridwatch.session')).token")
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api_url}/api/me", headers=bearer).status_code == 200
    page.click("#sign-out")
    expect(page.locator("#username")).to_be_visible()
    page.reload()
    expect(page.locator("#username")).to_be_visible()  # signing out forgot the token
    assert httpx.get(f"{api_url}/api/me", headers=bearer).status_code == 401  # and revoked it
    page.fill("#username", "admin")
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.locator("#nav a", has_text=words["nav.rejected"]).click()
    expect(page.locator("main")).to_contain_text(words["rejected.none"])

    # People: the admin disables the operator, whose token is refused at once, then enables them.
    theirs = httpx.post(f"{api_url}/api/token",
                        data={"username": "operator", "password": DEMO_PASSWORD}).json()  # fmt: skip
    theirs_bearer = {"Authorization": f"Bearer {theirs['access_token']}"}
    page.locator("#nav a", has_text=words["nav.people"]).click()
    row = page.locator("#people tr[data-person=operator]")
    expect(row).to_have_attribute("data-active", "yes")
    expect(page.locator("#people tr[data-person=admin] button")).to_have_count(0)  # not oneself
    row.get_by_role("button", name=words["people.disable"]).click()
    expect(row).to_have_attribute("data-active", "no")
    expect(row).to_contain_text(words["people.disabled"])
    assert httpx.get(f"{api_url}/api/me", headers=theirs_bearer).status_code == 401
    row.get_by_role("button", name=words["people.enable"]).click()
    expect(row).to_have_attribute("data-active", "yes")
    assert errors == [], errors


def test_a_camera_incident_shows_its_picture_on_the_board(
    stack: LocalStack, nodes: list[NodeCredentials], api_url: str, browser: Browser
) -> None:
    import base64
    import uuid
    from datetime import UTC, datetime

    import psycopg

    from casework import incidents, tasks
    from casework.rules import Raise, Rule, Severity
    from gateway.contract_doc import TINY_JPEG
    from ingest import registry

    camera = device_of(nodes[0], "camera")
    picture = uuid.uuid4()
    now = datetime.now(UTC)
    with psycopg.connect(stack.dsn) as conn:
        conn.execute(
            """INSERT INTO camera_snapshots (ts, id, node_id, device_id, seq, alert_id, width, height, jpeg)
               VALUES (%s, %s, %s, %s, 1, %s, 16, 16, %s)""",
            (now, picture, nodes[0].node, camera, uuid.uuid4(), base64.b64decode(TINY_JPEG)),
        )
        venue = registry.load(conn).venues[nodes[0].site]
        incidents.apply(conn, [Raise(Rule.CAMERA_INTRUSION, f"{camera}:intrusion", Severity.RED, venue, now,
                                     device=camera, detail={"kind": "intrusion", "snapshot": str(picture)})],
                        tasks.DeadlinePolicy())  # fmt: skip
    errors: list[str] = []
    page = signed_in(browser, api_url, "operator", errors, language=LANGUAGE)
    row = page.locator("#incidents tr[data-severity=red]")
    row.get_by_role("button", name=M["board.picture"]).click()
    image = row.locator(".snapshot img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") == 16  # loaded, not blocked by the CSP
    assert errors == [], errors


def test_the_console_takes_a_new_ticket_for_each_reconnection(
    stack: LocalStack, nodes: list[NodeCredentials], browser: Browser
) -> None:
    """A ticket opens one stream: when the API goes away and comes back, the console asks for a
    new one and resumes, and what happens next still reaches the board."""
    from tests.test_api import raise_incident

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = stack.start_api(port)
    context = browser.new_context(viewport=DESKTOP)
    try:
        assert wait_for_port("127.0.0.1", port, 20), (stack.logs / "api.log").read_text()
        errors: list[str] = []
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/")
        page.fill("#username", "operator")
        page.fill("#password", DEMO_PASSWORD)
        page.click("button[type=submit]")
        state = page.locator("#live-state")
        expect(state).to_have_attribute("data-state", "live", timeout=10_000)
        api.kill()  # gone at once, streams and all
        api.wait()
        expect(state).not_to_have_attribute("data-state", "live", timeout=10_000)
        api = stack.start_api(port)
        assert wait_for_port("127.0.0.1", port, 20), (stack.logs / "api.log").read_text()
        expect(state).to_have_attribute("data-state", "live", timeout=20_000)
        assert scalar(stack.dsn, "SELECT count(*) FROM revoked_tokens") == 2  # two tickets, used
        raise_incident(stack.dsn, nodes[0].site, subject="after")
        expect(page.locator("#incidents tr[data-severity=red]")).to_have_count(1, timeout=5_000)
        assert errors == [], errors
    finally:
        context.close()  # its stream open would hold the API's graceful stop
        stop_process(api)


def test_console_says_offline_when_actions_fail_and_not_live_when_the_api_stops(
    stack: LocalStack, nodes: list[NodeCredentials], browser: Browser
) -> None:
    import signal

    from tests.test_api import raise_incident
    from tests.test_api_faults import _read_only

    raise_incident(stack.dsn, nodes[0].site)
    port = free_port()
    api = stack.start_api(port)
    errors: list[str] = []
    try:
        assert wait_for_port("127.0.0.1", port, 20), (stack.logs / "api.log").read_text()
        page = signed_in(browser, f"http://127.0.0.1:{port}", "operator", errors, language=LANGUAGE)
        state = page.locator("#live-state")
        acknowledge = page.locator(
            "#incidents tr[data-severity=red] button", has_text=M["board.acknowledge"]
        )
        # The database turns read-only: reads (and so the stream) still work, actions do not.
        _read_only(stack, True)
        try:
            expect(state).to_have_attribute("data-state", "live", timeout=10_000)
            acknowledge.click()
            expect(state).to_have_attribute("data-state", "offline")
            expect(state).to_have_text(M["shell.live.offline"])
        finally:
            _read_only(stack, False)
        acknowledge.click()  # it works again, and the header says so
        expect(page.locator("#incidents tr[data-severity=red]")).to_contain_text(
            M["status.acknowledged"]
        )
        expect(state).to_have_attribute("data-state", "live")
        # The API stops (Ctrl-C): its stream ends at once and the header stops saying "live".
        api.send_signal(signal.SIGINT)
        assert api.wait(15) in (0, 130)
        expect(state).not_to_have_attribute("data-state", "live", timeout=5_000)
        assert state.get_attribute("data-state") in ("reconnecting", "offline")
        api = stack.start_api(port)  # back: live again by itself
        expect(state).to_have_attribute("data-state", "live", timeout=20_000)
    finally:
        stop_process(api)
    assert errors == [], errors


def test_the_registry_page_adds_edits_and_shows_a_stale_edit(
    stack: LocalStack, nodes: list[NodeCredentials], api_url: str, browser: Browser, shots: Path
) -> None:
    site, node = nodes[0].site, nodes[0].node
    grid = str(scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = %s", (site,)))
    with psycopg.connect(stack.dsn) as conn:  # the node runs an older configuration
        conn.execute("INSERT INTO node_presence (node_id, online, bdseq, last_seen, config_version)"
                     " VALUES (%s, true, 1, now(), 0)", (node,))  # fmt: skip
    errors: list[str] = []
    page = signed_in(browser, api_url, "admin", errors, language=LANGUAGE)
    page.on("dialog", lambda d: d.accept())  # the browser's own confirm() before a new secret
    page.locator("#nav a", has_text=M["nav.registry"]).click()
    table = page.locator("#registry[data-kind=venues]")
    expect(table.locator(f"tr[data-id='{site}']")).to_be_visible()

    # Add a venue through the form; its labels name its fields.
    page.get_by_role("button", name=text("registry.add", what=M["registry.one.venues"])).click()
    form = page.locator("dialog.registry-form")
    form.get_by_label(M["registry.field.id"], exact=True).fill("v-console")
    form.get_by_label(M["registry.field.grid"], exact=True).fill(grid)
    form.get_by_label(M["registry.field.name"], exact=True).fill("控制台驿站")
    form.get_by_label(M["registry.field.kind"], exact=True).select_option("grid_station")
    form.get_by_label(M["registry.field.capacity"], exact=True).fill("0")
    form.get_by_role("button", name=M["common.save"]).click()
    expect(form.locator(".error")).not_to_be_empty()  # the API's 422, at its field:
    expect(form.get_by_label(M["registry.field.capacity"], exact=True)).to_have_attribute(
        "aria-invalid", "true"
    )
    form.get_by_label(M["registry.field.capacity"], exact=True).fill("25")
    form.get_by_role("button", name=M["common.save"]).click()
    row = table.locator("tr[data-id='v-console']")
    expect(row).to_contain_text("控制台驿站")
    assert scalar(stack.dsn, "SELECT capacity FROM venues WHERE id = 'v-console'") == 25

    # A stale edit: someone else saves first; the form shows what changed, then edits afresh.
    row.get_by_role("button", name=M["registry.edit_button"]).click()
    expect(form.get_by_label(M["registry.field.id"], exact=True)).to_be_disabled()
    token = page.evaluate("JSON.parse(localStorage.getItem('gridwatch.session')).token")
    bearer = {"Authorization": f"Bearer {token}"}
    current = httpx.get(f"{api_url}/api/v1/admin/venues/v-console", headers=bearer).json()
    theirs = {k: v for k, v in current.items() if k != "updated_at"} | {"name": "别人改的"}
    assert httpx.put(f"{api_url}/api/v1/admin/venues/v-console", json=theirs,
                     headers=bearer).status_code == 200  # fmt: skip
    form.get_by_label(M["registry.field.capacity"], exact=True).fill("30")
    form.get_by_role("button", name=M["common.save"]).click()
    conflict = form.locator(".conflict")
    expect(conflict).to_be_visible()
    expect(conflict.locator("tr[data-field=name]")).to_contain_text("别人改的")
    expect(conflict.locator("tr[data-field=capacity]")).to_contain_text("30")
    page.screenshot(path=shots / "registry-stale.png")
    conflict.get_by_role("button", name=M["registry.stale_retry"]).click()
    expect(form.get_by_label(M["registry.field.name"], exact=True)).to_have_value("别人改的")
    form.get_by_label(M["registry.field.capacity"], exact=True).fill("30")
    form.get_by_role("button", name=M["common.save"]).click()
    expect(form).to_have_count(0)
    assert rows(stack.dsn, "SELECT name, capacity, version FROM venues WHERE id = 'v-console'") == [
        ("别人改的", 30, 3)]  # fmt: skip
    row.get_by_role("button", name=M["registry.disable"]).click()
    expect(row).to_have_count(0)  # disabled ones are hidden until asked for
    page.get_by_label(M["registry.include_disabled"], exact=True).check()
    expect(row).to_have_attribute("data-disabled", "yes")

    # Nodes: registering one shows its first secret once; the one behind on its configuration
    # is marked; a new secret is shown once.
    page.get_by_role("link", name=M["registry.tab.nodes"]).click()
    page.get_by_role("button", name=text("registry.add", what=M["registry.one.nodes"])).click()
    form.get_by_label(M["registry.field.id"], exact=True).fill("v-console-edge")
    form.get_by_label(M["registry.field.venue"], exact=True).fill(site)
    form.get_by_role("button", name=M["common.save"]).click()
    first = page.locator("dialog.once")
    expect(first.locator(".warning")).to_contain_text(M["registry.secret_warn"][:6])
    assert len(first.locator("input.once").input_value()) >= 32
    first.get_by_role("button", name=M["common.close"]).click()
    expect(first).to_have_count(0)
    node_row = page.locator(f"#registry[data-kind=nodes] tr[data-id='{node}']")
    expect(node_row.locator("[data-behind=yes]")).to_be_visible()
    node_row.get_by_role("button", name=M["registry.secret_button"]).click()
    once = page.locator("dialog.once")
    expect(once.locator(".warning")).to_contain_text(M["registry.secret_warn"][:6])
    secret = once.locator("input.once").input_value()
    assert len(secret) >= 32
    assert secret not in str(scalar(stack.dsn, "SELECT password_hash FROM edge_nodes WHERE id = %s",
                                    (node,)))  # fmt: skip
    once.get_by_role("button", name=M["common.close"]).click()
    expect(once).to_have_count(0)
    node_row.get_by_role("button", name=M["registry.enrol_button"]).click()
    code = page.locator("dialog.once")
    expect(code).to_be_visible()
    expect(code.locator(".warning")).to_contain_text(M["registry.secret_warn"][:6])
    shown = code.locator("input.once").input_value()
    assert re.fullmatch(r"[0-9A-Z]{5}-[0-9A-Z]{5}", shown), shown
    code.get_by_role("button", name=M["common.close"]).click()
    expect(code).to_have_count(0)

    # Bulk upload: the plan first, then apply.
    page.get_by_role("link", name=M["registry.tab.bulk"]).click()
    page.get_by_label(M["registry.file_text"], exact=True).fill(
        f"version: 1\nvenues:\n  - {{id: v-bulk, grid: {grid}, name: 批量驿站, kind: estate}}\n"
    )
    page.get_by_role("button", name=M["registry.plan"]).click()
    plan = page.locator("#bulk-plan")
    expect(plan).to_contain_text("v-bulk")
    expect(plan.locator("[data-count=added] b")).to_have_text("1")
    assert scalar(stack.dsn, "SELECT count(*) FROM venues WHERE id = 'v-bulk'") == 0
    page.screenshot(path=shots / "registry-plan.png")
    page.get_by_role("button", name=M["registry.apply"], exact=True).click()
    expect(plan).to_contain_text(M["registry.applied"])
    assert scalar(stack.dsn, "SELECT name FROM venues WHERE id = 'v-bulk'") == "批量驿站"

    with psycopg.connect(stack.dsn) as conn:
        conn.execute("INSERT INTO broker_refusals (client, reason) VALUES ('stranger', 'unknown')")
    page.get_by_role("link", name=M["registry.tab.refused"]).click()
    expect(page.locator("#refused tr[data-client=stranger]")).to_contain_text("unknown")
    assert errors == [], errors


# ---- notifications (issue 13): the bell, alerts, preferences, deliveries, the manifest ----

# Records what the page asks of the browser's notification and vibration APIs, and still calls
# them: the browser's own objects, watched, not replaced.
WATCH = """
window.__shown = [];
window.__buzzed = [];
window.__tones = 0;
const tone = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () { window.__tones += 1; return tone.call(this); };
const vibrate = navigator.vibrate ? navigator.vibrate.bind(navigator) : null;
navigator.vibrate = (pattern) => { window.__buzzed.push(pattern); return vibrate ? vibrate(pattern) : true; };
if (window.ServiceWorkerRegistration) {
  const show = ServiceWorkerRegistration.prototype.showNotification;
  ServiceWorkerRegistration.prototype.showNotification = function (title, options) {
    window.__shown.push(title);
    return show.call(this, title, options);
  };
}
if (window.Notification) {
  const Original = window.Notification;
  window.Notification = class extends Original {
    constructor(title, options) { super(title, options); window.__shown.push(title); }
  };
}
"""


def _bearer(page: Page) -> dict[str, str]:
    token = page.evaluate("JSON.parse(localStorage.getItem('gridwatch.session')).token")
    return {"Authorization": f"Bearer {token}"}


def test_the_manifest_is_served_with_its_icons_and_linked_from_the_page(
    stack: LocalStack, api_url: str, browser: Browser
) -> None:
    answer = httpx.get(f"{api_url}/console/manifest.webmanifest")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/manifest+json")
    manifest = json.loads(answer.text)
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/console/#/inbox"
    assert manifest["scope"] == "/console/"
    assert manifest["theme_color"] and manifest["background_color"]
    assert {i["purpose"] for i in manifest["icons"]} == {"any", "maskable"}
    for icon in manifest["icons"]:
        got = httpx.get(f"{api_url}/console/{icon['src']}")
        assert got.status_code == 200, icon
        assert got.headers["content-type"].startswith("image/svg+xml")
        assert got.text.startswith("<svg") and icon["type"] == "image/svg+xml"
    worker = httpx.get(f"{api_url}/console/sw.js")
    assert worker.status_code == 200
    assert "javascript" in worker.headers["content-type"]

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{api_url}/console/")
    href = page.locator("link[rel=manifest]").get_attribute("href")
    assert href == "manifest.webmanifest"
    # The browser reads it under the console's CSP (manifest-src falls back to 'self').
    fetched = page.evaluate(
        "fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json())"
    )
    assert fetched["name"] == "gridwatch"
    assert (
        page.locator("meta[name=theme-color]").get_attribute("content") == manifest["theme_color"]
    )
    assert errors == [], errors


def test_the_bell_counts_a_new_notification_over_the_live_stream_and_reading_lowers_it(
    stack: LocalStack,
    nodes: list[NodeCredentials],
    ingest: subprocess.Popen[bytes],
    api_url: str,
    browser: Browser,
    tmp_path: Path,
) -> None:
    site = nodes[0].site
    worker_id, _ = stack.people_of_venue(site)
    errors: list[str] = []
    page = signed_in(browser, api_url, worker_id, errors, phone=True, language=LANGUAGE)
    page.context.grant_permissions(["notifications"], origin=api_url)
    page.context.add_init_script(WATCH)
    page.reload()
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
    bell = page.locator("#bell")
    expect(bell).to_be_visible()
    expect(bell).to_have_attribute("data-unread", "0")
    expect(page.locator("#unread")).to_be_hidden()
    # Alerts: on, since this browser allows notifications for the console; turned off and on
    # again from a click (the browser lets a page ask only then), the choice remembered.
    bell.click()
    panel = page.locator("#notifications")
    expect(panel).to_be_visible()
    expect(bell).to_have_attribute("aria-expanded", "true")
    alerts = panel.locator("#alerts")
    expect(alerts).to_have_attribute("aria-pressed", "true")
    panel.get_by_role("button", name=M["notify.alerts_off"]).click()
    expect(alerts).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("localStorage.getItem('gridwatch.alerts')") == "off"
    panel.get_by_role("button", name=M["notify.alerts_on"]).click()
    expect(alerts).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("localStorage.getItem('gridwatch.alerts')") == "on"
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()

    # A red task for the worker: its notification arrives over the live stream.
    task_id = raise_incident(stack.dsn, site)
    wait_until(lambda: scalar(stack.dsn, "SELECT assignee FROM tasks WHERE id = %s", (task_id,))
               == worker_id, 30, "the task dispatched to the worker")  # fmt: skip
    expect(bell).not_to_have_attribute("data-unread", "0", timeout=30_000)
    unread = int(str(bell.get_attribute("data-unread")))
    expect(page.locator("#unread")).to_have_text(str(unread))
    expect(page.locator("#unread-live")).to_contain_text(text("notify.unread", count=unread))
    assert text("notify.unread", count=unread) in str(bell.get_attribute("aria-label"))
    page.wait_for_function("window.__buzzed.length > 0", timeout=10_000)  # red: it buzzed,
    page.wait_for_function("window.__tones > 0", timeout=10_000)  # sounded
    page.wait_for_function("window.__shown.length > 0", timeout=10_000)  # and showed itself

    # In the panel, linked to the task; reading one lowers the count, reading all empties it.
    bell.click()
    items = panel.locator(".notification[data-read=no]")
    expect(items).to_have_count(unread)
    expect(panel.locator(f".notification a[href='#/task/{task_id}']").first).to_be_visible()
    page.screenshot(path=tmp_path / "notifications.png")
    items.first.get_by_role("button", name=M["notify.mark_read"], exact=False).click()
    expect(bell).to_have_attribute("data-unread", str(unread - 1))
    if unread > 1:
        panel.get_by_role("button", name=M["notify.all_read"]).click()
    expect(bell).to_have_attribute("data-unread", "0")
    expect(page.locator("#unread")).to_be_hidden()
    expect(panel.locator(".notification[data-read=no]")).to_have_count(0)
    state = httpx.get(f"{api_url}/api/v1/notifications", headers=_bearer(page)).json()
    assert state["unread"] == 0

    # The panel's entry opens the task page; so does the message's short link, after sign-in,
    # where its assignee can accept it.
    panel.locator(f".notification a[href='#/task/{task_id}']").first.click()
    expect(page).to_have_url(f"{api_url}/console/#/task/{task_id}")
    expect(page.locator(f"#task [data-task='{task_id}']")).to_be_visible()
    link = next(n["link"] for n in state["items"] if n["task_id"] == task_id and n["link"])
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale=LANGUAGE)
    page = phone.new_page()
    page.on("pageerror", lambda e: errors.append(f"link: {e}"))
    page.goto(f"{api_url}{urlsplit(link).path}")  # the link names the public address
    page.fill("#username", worker_id)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#link-for")).to_have_count(0)  # sent to this very person
    page.locator(f"#task [data-task='{task_id}'] button[data-action=accept]").click()
    expect(page.locator(f"#task [data-task='{task_id}']")).to_have_attribute(
        "data-state", "accepted"
    )
    assert errors == [], errors


def _move(page: Page, channel: str, to: int) -> None:
    """Moves a channel in the preferences' list to position `to` with its arrow buttons."""
    order = page.locator("#channels li")
    for _ in range(10):
        now = [order.nth(i).get_attribute("data-channel") for i in range(order.count())]
        at = now.index(channel)
        if at == to:
            return
        page.locator(
            f"#channels li[data-channel={channel}] button[data-move={'up' if at > to else 'down'}]"
        ).click()
    raise AssertionError(f"{channel} did not move to {to}")


def test_notification_preferences_are_saved_and_read_back(
    stack: LocalStack, nodes: list[NodeCredentials], api_url: str, browser: Browser
) -> None:
    worker_id, _ = stack.people_of_venue(nodes[0].site)
    errors: list[str] = []
    page = signed_in(browser, api_url, worker_id, errors, phone=True, language=LANGUAGE)
    page.locator("#me-menu").click()
    page.get_by_role("link", name=M["shell.menu_notifications"]).click()
    expect(page).to_have_url(f"{api_url}/console/#/settings/notifications")
    form = page.locator("#notify-prefs")
    expect(form.locator("#channels li").first).to_be_visible()
    expect(form.locator("#red-note")).to_have_text(M["prefs.red_note"])

    # Console first, then SMS moved up to second; quiet hours 22:30 to 06:45; English, which
    # the console follows at once (the person's one language).
    console = form.get_by_role("checkbox", name=M["prefs.channel.console"])
    if not console.is_checked():
        console.check()
    sms = form.locator("#channels li[data-channel=sms]")
    sms_box = sms.get_by_role("checkbox")
    if sms_box.is_enabled() and not sms_box.is_checked():
        sms_box.check()
    _move(page, "console", 0)
    _move(page, "sms", 1)
    form.get_by_label(M["prefs.quiet_between"]).check()
    form.locator("#quiet-from").fill("22:30")
    form.locator("#quiet-to").fill("06:45")
    form.get_by_label(M["prefs.language"]).select_option("en")
    form.get_by_role("button", name=M["common.save"]).click()
    expect(page.locator("#toast")).to_have_text(M["prefs.saved"])
    en = catalogue("en")
    expect(page.locator("#nav")).to_contain_text(en["nav.inbox"])
    assert page.evaluate("document.documentElement.lang") == "en"

    saved = httpx.get(f"{api_url}/api/v1/me/notify", headers=_bearer(page)).json()
    assert saved["channels"][:2] == ["console", "sms"]
    assert saved["quiet_hours"] == {"from": "22:30", "to": "06:45"}
    assert saved["language"] == "en"

    page.reload()  # read back into the form
    expect(form.locator("#channels li").nth(0)).to_have_attribute("data-channel", "console")
    expect(form.locator("#channels li").nth(1)).to_have_attribute("data-channel", "sms")
    expect(form.locator("#quiet-from")).to_have_value("22:30")
    expect(form.locator("#quiet-to")).to_have_value("06:45")
    expect(form.get_by_label(en["prefs.language"])).to_have_value("en")

    form.get_by_label(en["prefs.quiet_between"]).uncheck()
    form.get_by_role("button", name=en["common.save"]).click()
    expect(page.locator("#toast")).to_have_text(en["prefs.saved"])
    again = httpx.get(f"{api_url}/api/v1/me/notify", headers=_bearer(page)).json()
    assert again["quiet_hours"] is None
    assert errors == [], errors


def test_a_task_shows_who_was_notified_on_which_channel(
    stack: LocalStack,
    nodes: list[NodeCredentials],
    ingest: subprocess.Popen[bytes],
    api_url: str,
    browser: Browser,
) -> None:
    site = nodes[0].site
    worker_id, dispatcher_id = stack.people_of_venue(site)
    task_id = raise_incident(stack.dsn, site)
    token = httpx.post(f"{api_url}/api/token",
                       data={"username": dispatcher_id, "password": DEMO_PASSWORD}).json()  # fmt: skip
    bearer = {"Authorization": f"Bearer {token['access_token']}"}

    def delivered() -> bool:
        answer = httpx.get(f"{api_url}/api/v1/tasks/{task_id}/deliveries", headers=bearer)
        data = answer.json() if answer.status_code == 200 else []
        items = data if isinstance(data, list) else data.get("items", [])
        return any(d.get("channel") == "console" for d in items)

    wait_until(delivered, 30, "the task's console delivery")
    errors: list[str] = []
    page = signed_in(browser, api_url, dispatcher_id, errors, language=LANGUAGE)
    page.goto(f"{api_url}/console/#/task/{task_id}")
    table = page.locator(f"[data-deliveries='tasks/{task_id}'] tbody tr")
    expect(table.first).to_be_visible(timeout=10_000)
    worker_name = str(scalar(stack.dsn, "SELECT name FROM people WHERE id = %s", (worker_id,)))
    expect(page.locator(f"[data-deliveries='tasks/{task_id}']")).to_contain_text(worker_name)
    expect(
        table.filter(has=page.locator("td", has_text=M["deliveries.channel.console"])).first
    ).to_be_visible()

    # The same on the dispatcher's board, under the card.
    page.goto(f"{api_url}/console/#/tasks")
    card = page.locator(f"[data-task='{task_id}']")
    card.get_by_role("button", name=M["deliveries.button"]).click()
    expect(card.locator(f"[data-deliveries='tasks/{task_id}'] tbody tr").first).to_be_visible()

    # Its incident's page, and the incident's row on the board, show the incident's deliveries.
    incident_id = scalar(stack.dsn, "SELECT incident_id FROM tasks WHERE id = %s", (task_id,))
    answer = httpx.get(f"{api_url}/api/v1/incidents/{incident_id}/deliveries", headers=bearer)
    assert answer.status_code == 200
    page.goto(f"{api_url}/console/#/incident/{incident_id}")
    expect(page.locator("#incident h1")).to_contain_text(incident_title(api_url, incident_id))
    box = page.locator(f"[data-deliveries='incidents/{incident_id}']")
    expect(box.locator("tbody tr")).to_have_count(len(answer.json()))
    page.goto(f"{api_url}/console/#/board")
    row = page.locator(f"#incidents tr[data-id='{incident_id}']")
    row.get_by_role("button", name=M["deliveries.button"]).click()
    expect(row.locator(f"[data-deliveries='incidents/{incident_id}']")).to_be_visible()
    assert errors == [], errors
