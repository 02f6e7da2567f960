"""The console's browser tests' common parts: Debian's Chromium driven by Playwright, the API in
its own process, a signed-in page per person, and where screenshots go.

Screenshots: set GRIDWATCH_SCREENSHOTS=docs/screenshots to keep them (that is how the README's
pictures are made), otherwise they go to the test's folder.

Languages: the browser prefers zh-CN unless told otherwise; `signed_in(..., language="en")` stores
the person's language first (`set_language`), `catalogue(language)` is a locale's messages to
look for, and `uncatalogued(page)` lists the visible text that comes from no catalogue.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.services import free_port, wait_for_port
from gridwatch.local.stack import LocalStack
from tests.support import stop_process

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container, without a GPU, and without Chromium calling home (this network is
# closed; its background requests would only fail, many at a time).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
CATALOGUES = Path(__file__).resolve().parent.parent / "api" / "console" / "i18n"
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


def set_language(base: str, person: str, language: str) -> None:
    """Stores a person's language (PUT /api/me/language), as their menu's switch does."""
    token = httpx.post(f"{base}/api/token", data={"username": person, "password": DEMO_PASSWORD})
    token.raise_for_status()
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    answer = httpx.put(f"{base}/api/me/language", json={"language": language}, headers=bearer)
    answer.raise_for_status()
    httpx.post(f"{base}/api/sign-out", headers=bearer)


def catalogue(language: str) -> dict[str, Any]:
    """The console's messages in a language (api/console/i18n/<language>.json)."""
    data: dict[str, Any] = json.loads((CATALOGUES / f"{language}.json").read_text("utf-8"))
    return data


def signed_in(
    browser: Browser,
    base: str,
    person: str,
    errors: list[str],
    phone: bool = False,
    language: str | None = None,
) -> Page:
    """A page in a browser context of its own, signed in through the login form. The browser
    prefers zh-CN; `language` (zh-CN or en), when given, is stored as the person's first."""
    if language is not None:
        set_language(base, person, language)
    context = browser.new_context(
        viewport=PHONE if phone else DESKTOP, is_mobile=phone, has_touch=phone,
        device_scale_factor=2 if phone else 1, locale=language or "zh-CN",
    )  # fmt: skip
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(f"{person}: {e}"))
    page.goto(f"{base}/")
    page.fill("#username", person)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
    return page


# ---- text that comes from no catalogue ----

_UNCATALOGUED_JS = r"""
(allow) => {
  const g = globalThis.gridwatchI18n;
  if (!g) return ["(the console's i18n.js is not loaded)"];
  const norm = (s) => s.replace(/\s+/g, " ").trim();
  const LATIN = /[A-Za-z]{2,}/; // a word: single letters are units and marks ("v1", "5 h")
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const exact = new Set(allow.map(norm));
  const patterns = [];
  for (const value of Object.values(g.messages())) {
    for (const message of typeof value === "object" ? Object.values(value) : [value]) {
      const m = norm(message);
      const parts = m.split(/\{\w+\}/);
      if (parts.length === 1) exact.add(m);
      else patterns.push(new RegExp(`^${parts.map(esc).join("(.+?)")}$`, "s"));
    }
  }
  for (const f of g.formatted) exact.add(norm(f));
  // Is this text made of catalogue messages? A message as it is; a message whose parameters
  // are themselves such text (or hold no Latin words: names, numbers); an id; or pieces of such
  // text joined by separators.
  function ok(text, depth) {
    text = norm(text);
    if (!LATIN.test(text) || exact.has(text)) return true;
    if (/^[A-Za-z0-9_.:\/#-]+$/.test(text) && /[0-9_.:\/#-]/.test(text)) return true; // an id
    if (depth > 3) return false;
    for (const re of patterns) {
      const m = text.match(re);
      if (m && m.slice(1).every((c) => norm(c) !== text && ok(c, depth + 1))) return true;
    }
    const pieces = text.split(SEPARATORS).filter((p) => p.trim());
    if (pieces.length === 1 && norm(pieces[0]) === text) return false;
    return pieces.length > 0 && pieces.every((p) => ok(p, depth + 1));
  }
  const SEPARATORS = /\s*[·,;:()\/|\u2192\u203a\u3001\uff0c\uff1b\uff1a\uff08\uff09]\s*/; // and their full-width forms
  const DATA = "code, pre, kbd, samp, textarea, script, style, noscript, [data-raw]";
  const visible = (el) => {
    if (el.tagName === "OPTION" || el.tagName === "OPTGROUP") el = el.closest("select") || el;
    return el.checkVisibility ? el.checkVisibility({ visibilityProperty: true }) : el.getClientRects().length > 0;
  };
  const found = [];
  const say = (text, where) => { if (!ok(text, 0)) found.push(`${norm(text)}  [${where}]`); };
  const where = (el) => el.tagName.toLowerCase() + (el.id ? `#${el.id}` : "") +
    (el.className && typeof el.className === "string" ? `.${el.className.trim().split(/\s+/).join(".")}` : "");
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || !n.data.trim() || el.closest(DATA) || !visible(el)) continue;
    say(n.data, where(el));
  }
  for (const el of document.body.querySelectorAll("[title], [aria-label], [placeholder], [alt]")) {
    if (el.closest(DATA) || !visible(el)) continue;
    for (const a of ["title", "aria-label", "placeholder", "alt"]) {
      const v = el.getAttribute(a);
      if (v) say(v, `${where(el)} @${a}`);
    }
  }
  say(document.title, "title");
  return [...new Set(found)];
}
"""


def uncatalogued(page: Page, allow: Sequence[str] = ()) -> list[str]:
    """The visible texts of the page (and its title, aria-label, placeholder and alt attributes)
    that are not made from the console's catalogue in its current language, each with where it
    is. Made from the catalogue: a message as it is, or with its parameters filled by such text
    or by words without Latin letters (names, numbers); times and numbers the locale's formats
    wrote (i18n.js notes them); ids; pieces of such text joined by separators. Not looked at:
    data elements (<code>, <pre>, <kbd>, <samp>, <textarea>, `[data-raw]`). `allow`: data the
    test put there itself (a title the server still writes in English, say)."""
    found: list[str] = page.evaluate(_UNCATALOGUED_JS, list(allow))
    return found
