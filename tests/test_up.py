"""`gridwatch up` as a newcomer runs it: everything starts, the console answers, the demo fleet's
first incidents arrive within a minute, and Ctrl-C stops it all cleanly, in order."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gridwatch.demo import DEMO_PASSWORD
from tests.support import wait_until


def _read_until_up(proc: subprocess.Popen[str], deadline_s: float) -> str:
    """What `up` printed up to the end of its summary (the line that names the logs)."""
    assert proc.stdout is not None
    lines: list[str] = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("logs "):
            return "".join(lines)
    raise AssertionError("gridwatch up did not come up:\n" + "".join(lines))


def test_up_serves_the_console_and_shows_incidents_within_a_minute(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridwatch.cli", "up", "--home", str(tmp_path / "home"),
         "--venues", "6", "--fleet-rate", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        process_group=0,  # its own group, like a command in a terminal: Ctrl-C reaches it all
    )  # fmt: skip
    try:
        summary = _read_until_up(proc, 90)
        match = re.search(r"console\s+(http://127\.0\.0\.1:\d+)/", summary)
        assert match, summary
        base = match.group(1)
        assert "sign in as operator / gridwatch-demo" in summary and "playing demo.yaml" in summary
        page = httpx.get(f"{base}/", follow_redirects=True, timeout=10)
        assert page.status_code == 200 and "js/main.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        worker = re.search(r"password for (worker-\S+) and (disp-\S+)\)", summary)
        assert worker, summary
        token = httpx.post(f"{base}/api/token", timeout=10,
                           data={"username": "operator", "password": DEMO_PASSWORD}).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}

        def incidents() -> list[dict[str, object]]:
            got: list[dict[str, object]] = httpx.get(
                f"{base}/api/incidents", headers=headers, timeout=10
            ).json()["items"]
            return got

        # The demo scenario forces a door 15 s after the fleet starts.
        wait_until(
            lambda: any(i["rule"] == "door_forced" for i in incidents()), 60, "a forced door"
        )
        inbox = httpx.post(f"{base}/api/token", timeout=10,
                           data={"username": worker.group(1), "password": DEMO_PASSWORD})  # fmt: skip
        mine = httpx.get(f"{base}/api/tasks", params={"mine": True}, timeout=10,
                         headers={"Authorization": f"Bearer {inbox.json()['access_token']}"})  # fmt: skip
        assert len(mine.json()["items"]) >= 1  # the forced door's task, in the worker's inbox
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group gets it
        try:
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0
    # `up` alone took the Ctrl-C and stopped the rest in order: the fleet never saw its broker go.
    assert "Unspecified error" not in (tmp_path / "home" / "logs" / "fleet.log").read_text()
