"""The command line: every command documents itself, and everything it does is audited."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gridwatch.local.stack import LocalStack
from ingest import registry
from tests.support import rows, scalar

COMMANDS = [
    [], ["up"], ["ingest"], ["db", "migrate"], ["broker", "config"],
    ["registry", "plan"], ["registry", "apply"], ["registry", "export"], ["bench", "registry"],
    ["bench", "ingest"], ["bench", "fleet"], ["bench", "notify"], ["bench", "live"], ["bench", "console"], ["edge"], ["simulate"], ["task", "list"],
    ["task", "act"], ["task", "show"], ["emergency", "start"], ["emergency", "end"], ["kpi"],
    ["rules", "list"], ["rules", "set"], ["maintenance"], ["person", "add"], ["person", "disable"],
    ["person", "enable"], ["audit", "verify"], ["notify", "policies"], ["notify", "policy-set"],
    ["notify", "policy-reset"], ["node", "enrol-code"], ["broker", "refusals"],
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


def _cli(stack: LocalStack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A command run as the command line's own database role."""
    return subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", *args, "--database-url", stack.role_dsn("cli")],
        input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _audit(stack: LocalStack) -> list[tuple[object, ...]]:
    return rows(
        stack.dsn, "SELECT person_id, action, target, client, detail FROM audit_log ORDER BY id"
    )


def test_everything_done_from_the_command_line_is_audited(stack: LocalStack) -> None:
    worker, _ = stack.people_of_venue("v0001")
    grid = str(scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = 'v0001'"))
    device = str(scalar(stack.dsn, "SELECT d.id FROM devices d JOIN edge_nodes n ON n.id = d.node_id"
                                   " WHERE n.venue_id = 'v0001' LIMIT 1"))  # fmt: skip
    task = _raise_task(stack)
    commands = [
        ["task", "act", str(task), "accept", "--as", worker],
        ["emergency", "start", grid, "--as", "operator", "--reason", "drill"],
        ["emergency", "end", grid, "--as", "operator"],
        ["rules", "set", "over_capacity", "--venue", "v0001", "--settings", '{"for_s": 30}',
         "--as", "operator"],
        ["maintenance", "--device", device, "--hours", "1", "--reason", "new battery",
         "--as", "operator"],
    ]  # fmt: skip
    done = [_cli(stack, *c) for c in commands]
    done.append(_cli(stack, "person", "add", "newbie", "--name", "New", "--role", "viewer",
                     "--scope", grid, "--as", "admin", "--password-stdin",
                     stdin="a-secret-password\n"))  # fmt: skip
    assert [r.returncode for r in done] == [0] * len(done), [r.stderr for r in done]
    audit = _audit(stack)
    assert [(a[0], a[1], a[2]) for a in audit] == [
        (worker, "task.accept", str(task)),
        ("operator", "emergency.start", grid),
        ("operator", "emergency.end", grid),
        ("operator", "rules.set", "venue:v0001"),
        ("operator", "maintenance.add", f"device:{device}"),
        ("admin", "person.add", "newbie"),
    ]
    assert {a[3] for a in audit} == {f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"}
    assert audit[0][4] == {"reason": "", "note": "", "state": "accepted"}
    assert audit[1][4] == {"reason": "drill", "id": audit[2][4]["id"]}  # type: ignore[index]
    assert "a-secret-password" not in str(audit)


def test_a_refused_command_is_audited_as_refused(stack: LocalStack) -> None:
    worker, _ = stack.people_of_venue("v0001")
    task = _raise_task(stack)
    approve = _cli(stack, "task", "act", str(task), "approve", "--as", worker)
    nobody = _cli(stack, "emergency", "start", "haicheng", "--as", "nobody", "--reason", "x")
    assert approve.returncode == nobody.returncode == 1
    assert "Traceback" not in approve.stderr + nobody.stderr
    audit = _audit(stack)
    assert [(a[0], a[1]) for a in audit] == [
        (worker, "task.approve"),
        ("nobody", "emergency.start"),
    ]
    assert "cannot approve" in audit[0][4]["refused"]  # type: ignore[index]
    assert audit[1][4]["refused"] == "no active person 'nobody'"  # type: ignore[index]
    assert scalar(stack.dsn, "SELECT count(*) FROM emergencies") == 0  # refused: nothing done


def _raise_task(stack: LocalStack) -> int:
    with psycopg.connect(stack.dsn) as conn:
        venue = registry.load(conn).venues["v0001"]
        raised = Raise(Rule.DOOR_FORCED, "v0001-cli", Severity.RED, venue, datetime.now(UTC))
        return incidents.apply(conn, [raised], tasks.DeadlinePolicy()).tasks[0]


def test_the_command_line_finds_the_local_passwords_where_up_ran(
    stack: LocalStack, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGPASSFILE"}
    cmd = [sys.executable, "-m", "gridwatch.cli", "task", "list", "--area", "haicheng",
           "--database-url", stack.role_dsn("cli")]  # fmt: skip
    elsewhere = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert elsewhere.returncode == 1 and "password" in elsewhere.stderr
    assert "Traceback" not in elsewhere.stderr
    home = tmp_path / ".gridwatch" / "postgres"
    home.mkdir(parents=True)
    shutil.copy(stack.postgres.passfile, home / "pgpass")  # as `gridwatch up` leaves it
    here = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert here.returncode == 0, here.stderr
    assert json.loads(here.stdout) == []


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
    assert "GRIDWATCH_BROKER_INGEST_PASSWORD" in line and "GRIDWATCH_BROKER_SHARE_GROUP" in line


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


def test_notification_policies_are_set_listed_and_reset_from_the_command_line(
    stack: LocalStack,
) -> None:
    rules = (
        '[{"who": "dispatchers", "channels": "all"}, {"who": "assignee", "channels": ["voice"]}]'
    )
    done = _cli(stack, "notify", "policy-set", "task.dispatched", "--severity", "red", rules,
                "--as", "admin")  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = json.loads(_cli(stack, "notify", "policies").stdout)
    [mine] = [p for p in listed if (p["kind"], p["severity"]) == ("task.dispatched", "red")]
    assert mine["stored"] and [r["who"] for r in mine["rules"]] == ["dispatchers", "assignee"]
    bad = _cli(stack, "notify", "policy-set", "task.dispatched", '[{"who": "nobody"}]',
               "--as", "admin")  # fmt: skip
    assert bad.returncode == 1 and "notify policy task.dispatched/any: 0.who" in bad.stderr
    assert "Traceback" not in bad.stderr
    reset = _cli(stack, "notify", "policy-reset", "task.dispatched", "--severity", "red",
                 "--as", "admin")  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    listed = json.loads(_cli(stack, "notify", "policies").stdout)
    assert not any(p["stored"] for p in listed)
    assert [a for _, a, *_ in _audit(stack) if a.startswith("notify.policy")] == [
        "notify.policy.set", "notify.policy.reset"]  # fmt: skip
