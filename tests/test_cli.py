"""The command line: every command documents itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    [], ["up"], ["ingest"], ["db", "migrate"], ["db", "seed-demo"], ["broker", "config"],
    ["bench", "ingest"], ["bench", "fleet"], ["edge"], ["simulate"], ["task", "list"],
    ["task", "act"], ["task", "show"], ["emergency", "start"], ["emergency", "end"], ["kpi"],
    ["rules", "list"], ["rules", "set"], ["maintenance"], ["person", "add"], ["person", "disable"],
    ["person", "enable"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "gridwatch")
def test_help(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: gridwatch" in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_bad_configuration_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "ingest"],
        capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "GRIDWATCH_BATCH_MAX": "many"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "batch_max" in result.stderr


def test_unreachable_database_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "db", "migrate",
         "--database-url", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("gridwatch: ") and "Traceback" not in result.stderr


def test_an_outbox_that_cannot_be_created_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    site = {
        "site": "v0001", "node": "v0001-edge",
        "broker": {"host": "127.0.0.1", "port": 1, "password": "secret"},
        "site_secret": "0123456789abcdef0123",
        "outbox": {"path": str(tmp_path / "a-file" / "outbox.db")},
        "devices": [{"id": "v0001-door1", "kind": "door", "driver": "simulated"}],
    }  # fmt: skip
    (tmp_path / "site.yaml").write_text(json.dumps(site))
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "edge", "--config", str(tmp_path / "site.yaml")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        f"gridwatch: outbox {tmp_path}/a-file/outbox.db: cannot create it (Not a directory); set"
        " outbox.path in the site file to a file in a folder this agent can write\n"
    )
