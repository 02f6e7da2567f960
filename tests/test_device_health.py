"""A driver's record of its device (edge.health) and a device's account (edge.credentials)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from edge.credentials import DeviceAccount
from edge.drivers import DeviceHealthSeen, Reading
from edge.health import Health
from gateway.messages import DeviceCondition as C


def _health(device: str, settle_s: float = 300.0) -> tuple[Health, list[DeviceHealthSeen]]:
    seen: list[Reading] = []
    health = Health(device, settle_s=settle_s)
    health.attach(seen.append)
    return health, seen  # type: ignore[return-value]


def test_changes_are_sent_once_and_problems_counted_each_time() -> None:
    health, seen = _health("dh-1")
    health.ok()
    health.ok()
    assert [(r.online, r.condition) for r in seen] == [(True, C.OK)]
    for _ in range(3):  # a device retried three times: counted three times, sent once
        health.problem(C.UNREACHABLE, "connect_failed", "cannot connect to 10.0.0.9:80")
    assert [(r.online, r.condition) for r in seen] == [(True, C.OK), (False, C.UNREACHABLE)]
    assert seen[-1].faults == {"connect_failed": 1}  # as it was when the condition changed
    assert health.faults == {"connect_failed": 3}
    labels = {"device": "dh-1", "fault": "connect_failed"}
    assert REGISTRY.get_sample_value("gridwatch_edge_device_faults_total", labels) == 3
    assert REGISTRY.get_sample_value("gridwatch_edge_device_online", {"device": "dh-1"}) == 0
    health.ok()  # a lasting condition clears on the first good exchange
    assert (seen[-1].online, seen[-1].condition) == (True, C.OK)


def test_a_passing_problem_holds_until_it_has_settled() -> None:
    health, seen = _health("dh-2", settle_s=3600)
    health.ok()
    health.problem(C.BAD_INPUT, "malformed_xml", "part 3 is not XML")
    assert (seen[-1].online, seen[-1].condition) == (True, C.BAD_INPUT)
    health.ok()  # one good event after a garbled one: not healthy yet (no flapping)
    assert seen[-1].condition is C.BAD_INPUT and len(seen) == 2
    settled, _ = _health("dh-3", settle_s=0)
    settled.problem(C.BAD_INPUT, "malformed_xml", "x")
    settled.ok()
    assert settled.condition is C.OK


def test_an_auth_failure_is_offline_and_names_the_problem_once_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health, seen = _health("dh-4")
    for _ in range(5):
        health.problem(C.AUTH_FAILED, "auth_failed", "401 from 10.0.0.9: check the password")
    assert (seen[-1].online, seen[-1].condition) == (False, C.AUTH_FAILED)
    logged = [r for r in caplog.records if "dh-4" in r.getMessage()]
    assert len(logged) == 1 and "auth_failed" in logged[0].getMessage()


def test_a_device_clock_far_off_is_replaced_by_the_agents_and_reported() -> None:
    health, seen = _health("dh-5")
    near = datetime.now(UTC) - timedelta(seconds=20)
    assert health.device_time(near) == near
    assert health.device_time(None) is None
    far = datetime.now(UTC) - timedelta(hours=8)  # a camera left on Beijing time as if UTC
    assert health.device_time(far) is None
    assert seen[-1].condition is C.CLOCK_SKEW and seen[-1].online
    assert seen[-1].clock_offset_s is not None and -8 * 3600 - 60 < seen[-1].clock_offset_s < 0
    assert "8.0 h behind" in (seen[-1].detail or "")


def test_a_device_account_takes_its_password_once_from_the_file_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert DeviceAccount(password="s3cret").secret == "s3cret"  # type: ignore[arg-type]
    monkeypatch.setenv("DOOR1_PASSWORD", "from-env")
    assert DeviceAccount(password_env="DOOR1_PASSWORD").secret == "from-env"
    with pytest.raises(ValidationError, match="give the device's password once"):
        DeviceAccount()
    with pytest.raises(ValidationError, match="give the device's password once"):
        DeviceAccount(password="x", password_env="DOOR1_PASSWORD")  # type: ignore[arg-type]
    monkeypatch.delenv("DOOR1_PASSWORD")
    with pytest.raises(ValidationError, match="DOOR1_PASSWORD is not set") as caught:
        DeviceAccount(password_env="DOOR1_PASSWORD")
    assert "from-env" not in str(caught.value)
    shown = repr(DeviceAccount(password="s3cret"))  # type: ignore[arg-type]
    assert "s3cret" not in shown
