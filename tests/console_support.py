"""The console's browser tests' common parts: Debian's Chromium driven by Playwright, the API in
its own process, a signed-in page per person, and where screenshots go.

Screenshots: set GRIDWATCH_SCREENSHOTS=docs/screenshots to keep them (that is how the README's
pictures are made), otherwise they go to the test's folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local import LocalStack
from gridwatch.services import free_port, wait_for_port
from tests.support import stop_process

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container, without a GPU, and without Chromium calling home (this network is
# closed; its background requests would only fail, many at a time).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def api_url(stack: LocalStack) -> Iterator[str]:
    port = free_port()
    proc = stack.start_api(port)
    try:
        assert wait_for_port("127.0.0.1", port, 20), (stack.logs / "api.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: scripts/setup installs it with apt"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("GRIDWATCH_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def signed_in(
    browser: Browser, base: str, person: str, errors: list[str], phone: bool = False
) -> Page:
    """A page in a browser context of its own, signed in through the login form."""
    context = browser.new_context(
        viewport=PHONE if phone else DESKTOP, is_mobile=phone, has_touch=phone,
        device_scale_factor=2 if phone else 1,
    )  # fmt: skip
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(f"{person}: {e}"))
    page.goto(f"{base}/")
    page.fill("#username", person)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
    return page
