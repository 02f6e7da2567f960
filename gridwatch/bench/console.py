"""`gridwatch bench console`: a grid worker's first load of the console on a slow mobile network.

Headless Chromium (Debian's, driven by Playwright) opens the worker's inbox over the real API
with an empty cache, its network throttled through the DevTools protocol
(Network.emulateNetworkConditions), and reports what crossed the network (compressed, as sent,
headers included) and the time until the inbox could be used: its task cards shown with their
buttons. Two first loads are measured: signing in from the login page, and opening the console
already signed in (a saved session), which is what a worker does many times a day.

The live stream (/api/live) stays open and is never compressed; its bytes are left out of the
first load (they are the stream's, not the page's) and reported apart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.services import free_port, terminate, wait_for_port
from gridwatch.local.stack import LocalStack

# Chrome DevTools' throttling presets (latency in ms, throughput in bytes per second).
PROFILES: dict[str, dict[str, float]] = {
    # DevTools' "3G" (formerly "Slow 3G"): 2 s round trips, 400 kbit/s.
    "slow-3g": {"latency": 2000, "downloadThroughput": 400_000 / 8, "uploadThroughput": 400_000 / 8},
    # DevTools' "Slow 4G" (formerly "Fast 3G"): 562.5 ms, 1.44 Mbit/s down, 675 kbit/s up.
    "slow-4g": {"latency": 562.5, "downloadThroughput": 1_440_000 / 8,
                "uploadThroughput": 675_000 / 8},
}  # fmt: skip
BUDGET_BYTES = 150 * 1024
# Functions, not expressions: the console's CSP forbids evaluating strings in the page.
_CARDS = "() => document.querySelectorAll('#inbox [data-task] button').length >= 1"


@dataclass
class _Traffic:
    """What the page fetched, from the DevTools protocol's network events."""

    urls: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    encodings: dict[str, str] = field(default_factory=dict)
    wire: dict[str, int] = field(default_factory=dict)  # bytes on the wire, headers included
    body: dict[str, int] = field(default_factory=dict)  # bytes after decompression

    def on_request(self, e: dict[str, Any]) -> None:
        self.urls[e["requestId"]] = e["request"]["url"]
        self.kinds[e["requestId"]] = e.get("type", "Other")

    def on_response(self, e: dict[str, Any]) -> None:
        headers = {k.lower(): v for k, v in e["response"].get("headers", {}).items()}
        self.encodings[e["requestId"]] = headers.get("content-encoding", "")

    def on_data(self, e: dict[str, Any]) -> None:
        rid = e["requestId"]
        self.body[rid] = self.body.get(rid, 0) + int(e.get("dataLength", 0))
        if self._is_live(rid):  # never finishes: count what it received so far
            self.wire[rid] = self.wire.get(rid, 0) + int(e.get("encodedDataLength", 0))

    def on_finished(self, e: dict[str, Any]) -> None:
        self.wire[e["requestId"]] = int(e.get("encodedDataLength", 0))

    def _is_live(self, rid: str) -> bool:
        return urlsplit(self.urls.get(rid, "")).path == "/api/live"

    def summary(self) -> dict[str, Any]:
        page = [r for r in self.urls if not self._is_live(r)]
        by_kind: dict[str, int] = {}
        for r in page:
            by_kind[self.kinds[r]] = by_kind.get(self.kinds[r], 0) + self.wire.get(r, 0)
        largest = sorted(page, key=lambda r: -self.wire.get(r, 0))[:6]
        return {
            "requests": len(page),
            "bytes_compressed": sum(self.wire.get(r, 0) for r in page),
            "bytes_uncompressed_bodies": sum(self.body.get(r, 0) for r in page),
            "bytes_by_type": dict(sorted(by_kind.items())),
            "uncompressed_text_responses": sorted(
                urlsplit(self.urls[r]).path for r in page
                if not self.encodings.get(r) and self.body.get(r, 0) > 1024
                and self.kinds[r] in ("Script", "Stylesheet", "Document", "Fetch", "XHR")
            ),
            "largest": [{"path": urlsplit(self.urls[r]).path, "bytes": self.wire.get(r, 0),
                         "encoding": self.encodings.get(r) or "identity"} for r in largest],
            "live_stream_bytes": sum(self.wire.get(r, 0) for r in self.urls if self._is_live(r)),
        }  # fmt: skip


def _first_load(browser: Any, base: str, worker: str, profile: str, *, signed_in: bool,
                token: str | None) -> dict[str, Any]:  # fmt: skip
    """One cold first load of the inbox; its traffic and timings."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
        device_scale_factor=2, service_workers="block",  # the worker is for notifications only
    )  # fmt: skip
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    traffic = _Traffic()
    cdp.on("Network.requestWillBeSent", traffic.on_request)
    cdp.on("Network.responseReceived", traffic.on_response)
    cdp.on("Network.dataReceived", traffic.on_data)
    cdp.on("Network.loadingFinished", traffic.on_finished)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send("Network.emulateNetworkConditions", {"offline": False, **PROFILES[profile]})
    if signed_in:
        assert token is not None
        session = json.dumps({"token": token, "expires": int(time.time() * 1000) + 3_600_000})
        context.add_init_script(f"localStorage.setItem('gridwatch.session', {json.dumps(session)})")
    started = time.perf_counter()
    if signed_in:
        page.goto(f"{base}/console/#/inbox", wait_until="commit")
    else:
        page.goto(f"{base}/console/", wait_until="commit")
        page.wait_for_selector("#username", timeout=120_000)
        login_ms = round((time.perf_counter() - started) * 1000)
        page.fill("#username", worker)
        page.fill("#password", DEMO_PASSWORD)
        page.click("button[type=submit]")
    page.wait_for_function(_CARDS, timeout=180_000, polling="raf")
    interactive_ms = round((time.perf_counter() - started) * 1000)
    nav_ms = page.evaluate("() => Math.round(performance.now())")
    page.wait_for_function(
        "() => document.getElementById('live-state')?.dataset.state === 'live'", timeout=120_000
    )
    live_ms = round((time.perf_counter() - started) * 1000)
    page.wait_for_timeout(500)  # whatever the page asks for right after, counted too
    result = {"signed_in_already": signed_in, "profile": profile,
              "time_to_interactive_ms": interactive_ms, "page_clock_ms": nav_ms,
              "live_stream_open_ms": live_ms, **traffic.summary()}  # fmt: skip
    if not signed_in:
        result["login_form_ms"] = login_ms
    context.close()
    return result


def _tasks_for(dsn: str, site: str, n: int) -> None:
    """`n` open tasks in the venue's worker's inbox (red door incidents)."""
    from casework import incidents, tasks
    from casework.rules import Raise, Rule, Severity
    from ingest import registry

    with psycopg.connect(dsn) as conn:
        venue = registry.load(conn).venues[site]
        incidents.apply(conn, [
            Raise(Rule.DOOR_FORCED, f"{site}-bench-{i}", Severity.RED, venue, datetime.now(UTC))
            for i in range(n)
        ], tasks.DeadlinePolicy())  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        raise RuntimeError("chromium is missing: scripts/setup installs it with apt")
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    stack = LocalStack.for_bench(home, getattr(args, "database_url", None))
    api = None
    try:
        stack.start_database()
        creds = stack.apply_demo(venues=args.venues, devices_per_venue=6)
        stack.start_broker()
        site = creds[0].site
        worker = stack.people_of_venue(site)[0]
        _tasks_for(stack.dsn, site, args.tasks)
        port = free_port()
        api = stack.start_api(port)
        if not wait_for_port("127.0.0.1", port, 30):
            raise RuntimeError("the API did not start (see logs/api.log)")
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(f"{base}/api/token",
                           data={"username": worker, "password": DEMO_PASSWORD}).json()  # fmt: skip
        loads = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ])  # fmt: skip
            version = browser.version
            try:
                for profile in args.profile or ["slow-4g", "slow-3g"]:
                    for signed_in in (False, True):
                        loads.append(_first_load(browser, base, worker, profile,
                                                 signed_in=signed_in,
                                                 token=token["access_token"]))  # fmt: skip
            finally:
                browser.close()
        worst = max(x["bytes_compressed"] for x in loads)
        print(json.dumps({"chromium": version, "venues": len(creds), "inbox_tasks": args.tasks,
                          "budget_bytes": BUDGET_BYTES, "within_budget": worst <= BUDGET_BYTES,
                          "loads": loads}, indent=2))  # fmt: skip
        return 0 if worst <= BUDGET_BYTES else 1
    finally:
        if api is not None:
            terminate(api)
        stack.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
