"""Dispatch beyond one grid in a real browser: the dispatcher sends a task to a worker of
another grid and reassigns it with a reason; the new assignee's phone sounds, buzzes and shows a
notification, and its card says where (venue, address, a geo: link), what (device, picture); the
worker hands it back with a reason that the dispatcher's card shows."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
from playwright.sync_api import Browser, Page, expect

from api.security import hash_password
from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gateway.contract_doc import TINY_JPEG
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.stack import LocalStack
from ingest import registry
from registry import store
from registry.model import Area, Level, Person
from tests.console_support import signed_in
from tests.support import device_of, rows, scalar
from tests.test_console import WATCH

ZH = "localStorage.setItem('gridwatch.locale', 'zh-CN');"
# The person's stored language where the API keeps one (PUT /api/me/language), else this browser's.
ENGLISH = """async () => {
  const { token } = JSON.parse(localStorage.getItem('gridwatch.session'));
  await fetch('/api/me/language', { method: 'PUT', body: JSON.stringify({ language: 'en' }),
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' } });
  localStorage.setItem('gridwatch.locale', 'en');
}"""


def _zh(page: Page, *scripts: str) -> None:
    """The page again in Chinese (the demo's language), with `scripts` run before the console."""
    for script in (ZH, *scripts):
        page.context.add_init_script(script)
    page.reload()
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)


def _setup(dsn: str, node: NodeCredentials) -> tuple[int, str, str]:
    """A second grid of the community with two workers; a camera incident with a picture whose
    task the grid's own worker handed back. The task id, the grid's worker and the dispatcher."""
    camera = device_of(node, "camera")
    picture, now = uuid.uuid4(), datetime.now(UTC)
    grid, community = rows(dsn, "SELECT g.id, g.parent_id FROM venues v JOIN territory g"
                                " ON g.id = v.grid_id WHERE v.id = %s", (node.site,))[0]  # fmt: skip
    with psycopg.connect(dsn) as conn:
        store.put(conn, [
            Area(id="g_next", level=Level.GRID, name="第二网格", parent=str(community)),
            Person(id="worker-g_next", name="李网格员", role=tasks.Role.GRID_WORKER, scope="g_next"),
            Person(id="worker-g_next2", name="王网格员", role=tasks.Role.GRID_WORKER,
                   scope="g_next"),
        ], "test", audit=False)  # fmt: skip
        conn.execute("UPDATE people SET password_hash = %s WHERE password_hash IS NULL",
                     (hash_password(DEMO_PASSWORD),))  # fmt: skip
        conn.execute(
            """INSERT INTO camera_snapshots (ts, id, node_id, device_id, seq, alert_id, width,
                                             height, jpeg)
               VALUES (%s, %s, %s, %s, 1, %s, 16, 16, %s)""",
            (now, picture, node.node, camera, uuid.uuid4(), base64.b64decode(TINY_JPEG)),
        )
        venue = registry.load(conn).venues[node.site]
        task_id = incidents.apply(conn, [Raise(
            Rule.CAMERA_INTRUSION, f"{camera}:intrusion", Severity.RED, venue, now, device=camera,
            detail={"kind": "intrusion", "snapshot": str(picture)})], tasks.DeadlinePolicy()).tasks[0]  # fmt: skip
        worker = f"worker-{grid}"
        tasks.act(conn, task_id, tasks.Action.HAND_BACK, worker, reason="本人休假")
        # Another of the grid's tasks, with its own worker, so that the board has more to show.
        other = registry.load(conn).venues[nodes_site_2(conn, node.site)]
        incidents.apply(conn, [Raise(Rule.DOOR_FORCED, f"{other.id}-door", Severity.YELLOW,
                                     other, now)], tasks.DeadlinePolicy())  # fmt: skip
    return task_id, worker, f"disp-{community}"


def nodes_site_2(conn: psycopg.Connection[tuple[object, ...]], site: str) -> str:
    """Another venue of the same grid."""
    row = conn.execute(
        """SELECT o.id FROM venues v JOIN venues o ON o.grid_id = v.grid_id AND o.id <> v.id
           WHERE v.id = %s ORDER BY o.id LIMIT 1""",
        (site,),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_dispatch_to_another_grid_reassign_and_the_workers_phone(
    stack: LocalStack, nodes: list[NodeCredentials], api_url: str, browser: Browser, shots: Path
) -> None:
    dsn = stack.dsn
    task_id, _, dispatcher_id = _setup(dsn, nodes[0])
    name, address, lat, lon = rows(dsn, "SELECT name, address, latitude, longitude FROM venues"
                                        " WHERE id = %s", (nodes[0].site,))[0]  # fmt: skip
    device = str(scalar(dsn, "SELECT name FROM devices WHERE id = %s",
                        (device_of(nodes[0], "camera"),)))  # fmt: skip
    errors: list[str] = []
    boss = signed_in(browser, api_url, dispatcher_id, errors)
    _zh(boss)
    phone = signed_in(browser, api_url, "worker-g_next2", errors, phone=True)
    phone.context.grant_permissions(["notifications"], origin=api_url)
    _zh(phone, WATCH)
    expect(phone.locator("#inbox .empty")).to_be_visible()

    # On the board, to dispatch again, with the reason it was handed back.
    card = boss.locator(f"[data-column=reported] [data-task='{task_id}']")
    expect(card.locator(".handed-back")).to_contain_text("本人休假")
    # Dispatched to a worker of the community's other grid, chosen among the three groups.
    card.locator("button[data-action=dispatch]").click()
    choose = boss.locator("dialog select[name=assignee]")
    expect(choose.locator("optgroup[data-group=community] option")).to_have_count(2)
    expect(choose.locator("optgroup[data-group=departments] option")).not_to_have_count(0)
    expect(choose.locator("optgroup[data-group=community]")).to_have_attribute(
        "label", "本社区其他网格"
    )
    choose.select_option("worker-g_next")
    boss.locator("dialog button[value=ok]").click()
    card = boss.locator(f"[data-column=dispatched] [data-task='{task_id}']")
    expect(card.locator(".assignee")).to_contain_text("李网格员")

    # Reassigned, with a reason, to the worker whose phone is open: it sounds, buzzes, shows.
    card.locator("button[data-action=reassign]").click()
    boss.locator("dialog select[name=assignee]").select_option("worker-g_next2")
    boss.locator("dialog textarea[name=reason]").fill("李网格员在处理另一起警情")
    boss.locator("dialog button[value=ok]").click()
    expect(card.locator(".assignee")).to_contain_text("王网格员")
    mine = phone.locator(f"#inbox [data-task='{task_id}']")
    expect(mine).to_be_visible(timeout=10_000)
    phone.wait_for_function("window.__shown.includes('新任务')", timeout=10_000)
    phone.wait_for_function("window.__buzzed.length > 0", timeout=10_000)
    phone.wait_for_function("window.__tones > 0", timeout=10_000)

    # The card on the phone: where, with a link for the phone's maps; what; the picture.
    expect(mine.locator(".venue-name")).to_have_text(str(name))
    expect(mine.locator("address")).to_have_text(str(address))
    at, label = f"{lat},{lon}", quote(str(name), safe="-_.!~*'()")  # as encodeURIComponent
    expect(mine.locator("a[data-geo]")).to_have_attribute("href", f"geo:{at}?q={at}({label})")
    expect(mine.locator(".what")).to_contain_text(device)
    image = mine.locator(".task-picture img")
    expect(image).to_be_visible()
    phone.wait_for_function(
        "img => img.complete && img.naturalWidth === 16", arg=image.element_handle()
    )
    expect(mine.locator(".deadline")).to_be_visible()
    phone.screenshot(path=shots / "inbox.png")

    # Accepted on its own page (a notification's link opens it), where a worker called in from
    # another grid sees the card and not the paging log; then handed back from the inbox with a
    # reason: off the phone, and on the dispatcher's card.
    phone.goto(f"{api_url}/console/#/task/{task_id}")
    alone = phone.locator(f"#task [data-task='{task_id}']")
    expect(alone.locator(".venue-name")).to_have_text(str(name))
    expect(phone.locator(".task-deliveries")).to_have_count(0)
    alone.locator("button[data-action=accept]").click()
    expect(alone).to_have_attribute("data-state", "accepted")
    phone.goto(f"{api_url}/console/#/inbox")
    expect(mine).to_have_attribute("data-state", "accepted")
    mine.locator("button[data-action=hand_back]").click()
    phone.locator("dialog textarea[name=reason]").fill("需要物业配合开门")
    phone.locator("dialog button[value=ok]").click()
    expect(mine).to_have_count(0)
    back = boss.locator(f"[data-column=reported] [data-task='{task_id}']")
    expect(back.locator(".handed-back")).to_contain_text("需要物业配合开门", timeout=10_000)
    expect(back.locator(".handed-back")).to_contain_text("王网格员")
    back.locator("button[data-toggle=timeline]").click()
    timeline = back.locator(".timeline")
    expect(timeline.locator("li[data-action=reassign]")).to_contain_text("李网格员在处理另一起警情")
    expect(timeline.locator("li[data-action=reassign]")).to_contain_text("王网格员")
    boss.screenshot(path=shots / "tasks.png")

    # The same card in English, for a dispatcher who chose it.
    english = signed_in(browser, api_url, dispatcher_id, errors)
    english.evaluate(ENGLISH)
    english.reload()
    card = english.locator(f"[data-column=reported] [data-task='{task_id}']")
    expect(card.locator(".handed-back")).to_contain_text("Handed back by 王网格员")
    expect(card.locator("button[data-action=dispatch]")).to_have_text("Dispatch")
    expect(english.locator("[data-column=reported] h2")).to_contain_text("To dispatch")
    assert scalar(dsn, "SELECT count(*) FROM audit_log WHERE action = 'task.reassign'") == 1
    assert errors == [], errors
