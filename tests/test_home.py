"""A `gridwatch up` home as a newcomer uses it: run it again and it keeps what it was made with,
run it twice at once and the second refuses, and the other commands find its database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from gridwatch import demo
from gridwatch.local import home as homes
from gridwatch.local.stack import LocalStack
from tests.support import rows

SCENARIO_NAMING_A_MISSING_DEVICE = """\
name: a door that is not there
steps:
  - at: 1s
    device: v0042-door1
    action: force
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")}


def _up(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gridwatch.cli", "up", "--home", str(home), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        process_group=0,  # its own group, like a command in a terminal
    )  # fmt: skip


def _summary(proc: subprocess.Popen[str]) -> str:
    """What `up` printed up to the end of its summary (the line that names the logs)."""
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith("logs "):
            return "".join(lines)
    raise AssertionError("gridwatch up did not come up:\n" + "".join(lines))


def _broker_files(home: Path) -> dict[str, bytes]:
    """The configuration `up` writes for Mosquitto (not its log or its data)."""
    return {
        p.name: p.read_bytes()
        for p in (home / "broker").iterdir()
        if p.is_file() and p.suffix != ".log"
    }


def _ctrl_c(proc: subprocess.Popen[str]) -> int:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()


def _gridwatch(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", *args],
        capture_output=True, text=True, check=False, timeout=60, cwd=cwd, env={**_env(), **env},
    )  # fmt: skip


def _last_line(result: subprocess.CompletedProcess[str] | tuple[str, str]) -> str:
    err = result.stderr if isinstance(result, subprocess.CompletedProcess) else result[1]
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_a_home_runs_once_keeps_its_demo_and_serves_the_commands(tmp_path: Path) -> None:
    home = tmp_path / ".gridwatch"  # the default home of a checkout in tmp_path
    first = _up(home, "--venues", "3", "--devices-per-venue", "2", "--no-fleet")
    try:
        summary = _summary(first)
        assert "demo        3 venues, 6 devices" in summary
        secrets = json.loads((home / "nodes.json").read_text())
        broker_files = _broker_files(home)

        # A second `up` on the same home refuses and leaves the first one alone.
        second = _up(home, "--no-fleet")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1, out + err
        assert _last_line((out, err)) == (
            f"gridwatch: {home} is already running (pid {first.pid}); stop that `gridwatch up` "
            "first (Ctrl-C in its terminal) or use another --home"
        )
        assert _broker_files(home) == broker_files

        # `up` printed the line to export; the other commands find the running home's database
        # without it, whichever way the home is named.
        dsn = (home / "database.url").read_text().strip()
        assert f"export GRIDWATCH_DATABASE_URL={dsn}" in summary
        for found in (
            _gridwatch("kpi", "haicheng", cwd=tmp_path),
            _gridwatch("kpi", "haicheng", "--home", str(home)),
            _gridwatch("task", "list", "--area", "haicheng", GRIDWATCH_HOME=str(home)),
        ):
            assert found.returncode == 0, found.stderr
            assert isinstance(json.loads(found.stdout), list)
        with psycopg.connect(dsn, passfile=str(home / "postgres" / "pgpass")) as conn:
            assert conn.execute("SELECT 1").fetchone()  # the first one's database still answers
    finally:
        assert _ctrl_c(first) == 0
    stopped = _gridwatch("kpi", "haicheng", "--home", str(home))
    assert stopped.returncode == 1
    assert _last_line(stopped).startswith(f"gridwatch: the gridwatch home {home} is not running")

    # A scenario that names a device the demo does not have stops `up` with the error.
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCENARIO_NAMING_A_MISSING_DEVICE)
    refused = _up(home, "--fleet-rate", "5", "--scenario", str(bad))
    out, err = refused.communicate(timeout=120)
    assert refused.returncode == 1, out + err
    assert _last_line((out, err)) == (
        f"gridwatch: {bad}: step 1 (force at 1s): no device 'v0042-door1' in the fleet"
    )
    assert "gridwatch is up" not in out
    assert not (home / "postgres" / "data" / "postmaster.pid").exists()  # stopped again

    # Run again without --venues: the same demo and the same node secrets.
    again = _up(home, "--no-fleet")
    try:
        assert "demo        3 venues, 6 devices" in _summary(again)
        assert json.loads((home / "nodes.json").read_text()) == secrets
    finally:
        assert _ctrl_c(again) == 0

    # A smaller demo is refused (nodes left out would go silent); a larger one grows it.
    smaller = _gridwatch("up", "--home", str(home), "--venues", "2", "--no-fleet")
    assert smaller.returncode == 1
    assert "has a demo of 3 venues, and a demo never shrinks" in _last_line(smaller)


def test_a_broken_scenario_file_stops_up_before_anything_starts(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: typo\nsteps:\n  - at: soon\n    device: v0001-door1\n")
    home = tmp_path / "home"
    result = _gridwatch("up", "--home", str(home), "--scenario", str(broken))
    assert result.returncode == 1, result.stdout + result.stderr
    line = _last_line(result)
    assert line.startswith(f"gridwatch: {broken}: steps.0.at: ") and "steps.0.action" in line
    assert not (home / "postgres").exists()  # nothing was started


def test_a_reapplied_demo_never_replaces_a_node_secret(stack: LocalStack) -> None:
    """Node secrets already issued survive the demo applied again, even without the saved
    credentials."""
    before = rows(stack.dsn, "SELECT id, password_hash FROM edge_nodes ORDER BY id")
    saved = demo.read_credentials(stack.credentials_file)
    with psycopg.connect(stack.dsn) as conn:
        smaller = demo.apply_and_save(conn, demo.generate(2, 6), stack.credentials_file)
    assert [c.node for c in smaller] == [c.node for c in saved[:2]]
    assert demo.read_credentials(stack.credentials_file) == saved  # the third one is kept
    stack.credentials_file.unlink()  # lost: applying again cannot know the secrets
    with psycopg.connect(stack.dsn) as conn:
        assert demo.apply_and_save(conn, demo.generate(4, 6), stack.credentials_file)[0].node == (
            "v0004-edge"
        )
    after = rows(stack.dsn, "SELECT id, password_hash FROM edge_nodes ORDER BY id")
    assert after[:3] == before  # the three issued secrets were not replaced
    assert len(after) == 4


def test_an_explicit_larger_demo_grows_the_home_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert homes.demo_size(tmp_path, None, None) == homes.DemoSize(12, 6)  # a new home
    assert homes.demo_size(tmp_path, None, None) == homes.DemoSize(12, 6)  # kept
    assert homes.demo_size(tmp_path, 20, None) == homes.DemoSize(20, 6)
    assert "growing this home's demo from 12 to 20 venues" in capsys.readouterr().out
    assert homes.demo_size(tmp_path, None, None) == homes.DemoSize(20, 6)  # the new size is kept
    with pytest.raises(homes.HomeError, match="6 devices per venue, and a demo never shrinks"):
        homes.demo_size(tmp_path, None, 4)
