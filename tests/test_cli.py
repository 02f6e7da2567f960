"""The command line: every command documents itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gridwatch.local import LocalStack

COMMANDS = [
    [], ["up"], ["ingest"], ["db", "migrate"], ["db", "seed-demo"], ["broker", "config"],
    ["bench", "ingest"], ["bench", "fleet"], ["edge"], ["simulate"], ["task", "list"],
    ["task", "act"], ["task", "show"], ["emergency", "start"], ["emergency", "end"], ["kpi"],
    ["rules", "list"], ["rules", "set"], ["maintenance"], ["person"],
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
    assert result.stderr.startswith("gridwatch: invalid configuration: GRIDWATCH_BATCH_MAX: ")


def test_unreachable_database_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "db", "migrate",
         "--database-url", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("gridwatch: ") and "Traceback" not in result.stderr


def _gridwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, as a newcomer types it, in a clean environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", *args],
        capture_output=True, text=True, check=False, timeout=60, env={**clean, **(env or {})},
    )  # fmt: skip


def _one_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The error line of a command that failed as it should: `code`, no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("gridwatch"), result.stderr
    return line


def test_up_on_an_unwritable_home_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _one_error(_gridwatch("up", "--home", str(blocker / "home")), 1)
    assert f"cannot use {blocker / 'home'} as the home folder" in line and "--home" in line


def test_unknown_log_level_is_a_usage_error() -> None:
    line = _one_error(_gridwatch("--log-level", "LOUD", "kpi", "haicheng"), 2)
    assert "--log-level" in line and "'LOUD' is not one of DEBUG, INFO, WARNING, ERROR" in line


@pytest.mark.parametrize("url", ["not-a-url", "postgresql//u:hunter2@h/db"])
def test_a_database_url_that_is_not_one_is_a_usage_error(url: str) -> None:
    result = _gridwatch("db", "migrate", "--database-url", url)
    line = _one_error(result, 2)
    assert "--database-url: not a PostgreSQL URL; give one like postgresql://" in line
    assert "hunter2" not in result.stderr  # a URL may carry a password: never repeated


def test_a_bad_database_url_variable_is_a_clear_error() -> None:
    line = _one_error(_gridwatch("kpi", "haicheng", env={"GRIDWATCH_DATABASE_URL": "nope"}), 1)
    assert "GRIDWATCH_DATABASE_URL is not a PostgreSQL URL" in line


def test_broker_config_without_passwords_names_the_variables(tmp_path: Path) -> None:
    line = _one_error(_gridwatch("broker", "config", "--out", str(tmp_path)), 2)
    assert "GRIDWATCH_BROKER_INGEST_PASSWORD" in line and "GRIDWATCH_BROKER_API_PASSWORD" in line


@pytest.mark.parametrize(
    ("command", "env"),
    [
        (["api"], {"GRIDWATCH_API_SECRET": "short-hunter2"}),
        (["ingest"], {"GRIDWATCH_MQTT": '{"password": "hunter2", "port": "x"}'}),
        (["ingest"], {"GRIDWATCH_DATABASE_URL": "postgresql://u:hunter2@h/db",
                      "GRIDWATCH_ENVIRONMENT": "staging"}),
    ],
)  # fmt: skip
def test_configuration_errors_never_print_secrets(command: list[str], env: dict[str, str]) -> None:
    result = _gridwatch(*command, env=env)
    line = _one_error(result, 2)
    assert line.startswith("gridwatch: invalid configuration: GRIDWATCH_")
    assert "hunter2" not in result.stderr


def test_a_metrics_port_already_taken_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _gridwatch("ingest", env={"GRIDWATCH_METRICS_PORT": str(port)})
    line = _one_error(result, 1)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in line
    assert "GRIDWATCH_METRICS_PORT" in line


def test_output_cut_short_stops_quietly(stack: LocalStack) -> None:
    """`gridwatch rules list | head -1`: the reader is gone before the command writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "gridwatch.cli", "rules", "list", "--database-url", stack.dsn],
            stdout=write_end, stderr=subprocess.PIPE, text=True, check=False, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 141  # 128 + SIGPIPE, as for other tools cut off by `head`
    assert result.stderr == ""
