"""The command line: every command documents itself."""

from __future__ import annotations

import subprocess
import sys

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
