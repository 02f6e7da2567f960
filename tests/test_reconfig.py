"""Configuration push at the edge without services: what a configuration changes, whom it is
trusted from, how it is kept, and enrolment codes as people type them."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import drivers as d
from edge import reconfig
from edge.agent import EdgeAgent
from edge.config import ConfigError, DeviceConfig, SiteConfig
from gateway import codec
from gateway import messages as m
from gateway.signing import Signer, Verifier
from gridwatch.simulate import Drivers
from registry import enrol

SIGNER = Signer(Ed25519PrivateKey.generate())


def _site(tmp_path: Path, **changes: object) -> SiteConfig:
    data: dict[str, object] = {
        "site": "v0001", "node": "v0001-edge",
        "broker": {"host": "127.0.0.1", "port": 1883, "password": "secret"},
        "site_secret": "0123456789abcdef0123", "command_key": SIGNER.public_key(),
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "devices": [{"id": "v0001-door1", "kind": "door", "driver": "simulated"}],
    }  # fmt: skip
    return SiteConfig.model_validate(data | changes)


def _config(version: int, *devices: m.ConfigDevice, node: str = "v0001-edge") -> m.NodeConfig:
    return m.NodeConfig(v=1, ts=datetime.now(UTC), site="v0001", node=node, version=version,
                        devices=devices)  # fmt: skip


def _signed(config: m.NodeConfig, signer: Signer = SIGNER) -> bytes:
    return json.dumps(signer.sign(codec.to_wire(config))).encode()


DOOR = m.ConfigDevice(id="v0001-door1", kind=m.DeviceKind.DOOR, driver="simulated")
COUNTER = m.ConfigDevice(id="v0001-counter2", kind=m.DeviceKind.COUNTER, driver="simulated")


def test_a_plan_starts_new_stops_removed_restarts_changed_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    drivers = Drivers(_site(tmp_path), "")
    kinds = {"v0001-door1": "door", "v0001-speaker3": "speaker", "v0001-camera4": "camera"}
    running = {
        i: DeviceConfig(id=i, kind=m.DeviceKind(k), driver="simulated") for i, k in kinds.items()
    }
    camera = m.ConfigDevice(id="v0001-camera4", kind=m.DeviceKind.CAMERA, driver="simulated",
                            settings={"report_every_s": 5})  # fmt: skip
    wanted = reconfig.devices_of(_config(2, DOOR, COUNTER, camera))
    plan = reconfig.plan(running, wanted, drivers.build)
    assert (sorted(plan.start), sorted(plan.stop), plan.kept) == (
        ["v0001-camera4", "v0001-counter2"], ["v0001-camera4", "v0001-speaker3"], ["v0001-door1"],
    )  # fmt: skip
    assert plan.restarted == ["v0001-camera4"]


def test_every_device_that_cannot_be_driven_is_named_and_nothing_starts(tmp_path: Path) -> None:
    drivers = Drivers(_site(tmp_path), "")
    bad = (
        m.ConfigDevice(id="v0001-door7", kind=m.DeviceKind.DOOR, driver="zkteco"),
        m.ConfigDevice(id="v0001-door8", kind=m.DeviceKind.DOOR, driver="simulated",
                       settings={"report_every_s": "often"}),
        m.ConfigDevice(id="v0001-door9", kind=m.DeviceKind.DOOR, driver="opencv"),
    )  # fmt: skip
    with pytest.raises(ConfigError) as err:
        reconfig.plan({}, reconfig.devices_of(_config(2, *bad)), drivers.build)
    text = str(err.value)
    assert "devices.v0001-door7.driver: unknown driver 'zkteco'" in text
    assert "devices.v0001-door8.settings.report_every_s" in text
    assert "devices.v0001-door9.driver: opencv drives cameras only" in text


def test_an_agent_with_fixed_drivers_applies_only_what_changes_no_driver(tmp_path: Path) -> None:
    running = {"v0001-door1": DeviceConfig(id="v0001-door1", kind=m.DeviceKind.DOOR,
                                           driver="simulated")}  # fmt: skip
    same = reconfig.plan(running, reconfig.devices_of(_config(2, DOOR)), None)
    assert same.kept == ["v0001-door1"] and not same.start and not same.stop
    with pytest.raises(ConfigError, match="fixed drivers"):
        reconfig.plan(running, reconfig.devices_of(_config(2, DOOR, COUNTER)), None)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (codec.encode(_config(2, DOOR)), "not signed by the platform: unsigned"),
        (_signed(_config(2, DOOR), Signer(Ed25519PrivateKey.generate())), "bad signature"),
        (_signed(_config(2, DOOR, node="v0002-edge")), "meant for node v0002-edge"),
    ],
)
def test_a_configuration_not_from_the_platform_for_this_node_is_refused(
    payload: bytes, why: str
) -> None:
    config = m.NodeConfig.model_validate_json(payload)
    refused = reconfig.refusal(
        config, payload, Verifier(SIGNER.public_key()), "v0001", "v0001-edge"
    )
    assert refused is not None and why in refused


def test_the_kept_configuration_is_private_and_runs_on_the_next_start(tmp_path: Path) -> None:
    site = _site(tmp_path)
    kept = reconfig.Kept(site.outbox.path, site.node)
    kept.save(_signed(_config(5, DOOR, COUNTER)))
    assert stat.S_IMODE(kept.path.stat().st_mode) == 0o600
    started = reconfig.effective(site)
    assert started.config_version == 5
    assert [d.id for d in started.devices] == ["v0001-door1", "v0001-counter2"]
    assert reconfig.effective(_site(tmp_path, config_version=6)).config_version == 6  # newer file
    kept.path.write_bytes(_signed(_config(7, DOOR), Signer(Ed25519PrivateKey.generate())))
    assert reconfig.effective(site).config_version == 0, "a forged kept file is not used"


def test_an_inline_broker_ca_counts_as_tls(tmp_path: Path) -> None:
    remote = {"host": "10.0.0.5", "port": 8883, "password": "secret"}
    with pytest.raises(ValueError, match="plaintext"):
        _site(tmp_path, broker=remote)
    with pytest.raises(ValueError, match="not a PEM certificate"):
        _site(tmp_path, broker=remote, broker_ca="hello")
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert _site(tmp_path, broker=remote, broker_ca=pem).broker_ca == pem


def test_a_site_file_from_the_platform_may_list_no_device_yet(tmp_path: Path) -> None:
    assert _site(tmp_path, devices=[], config_version=3).devices == []
    with pytest.raises(ValueError, match="at least one device"):
        _site(tmp_path, devices=[])


@pytest.mark.parametrize("typed", ["abcde-fghjk", "ABCDEFGHJK", " abcde fghjk "])
def test_an_enrolment_code_is_read_as_people_type_it(typed: str) -> None:
    assert enrol.normalise(typed) == "ABCDEFGHJK"
    assert enrol.normalise("O1L-I") == "0111"


class _Hardware(d.Device):
    """A device whose driver start can fail, as a lost serial port or camera does."""

    kind = m.DeviceKind.COUNTER

    def __init__(self, device_id: str, log: list[str], fails: bool = False) -> None:
        super().__init__(device_id)
        self.log, self.fails = log, fails

    def start(self, emit: d.Emit) -> None:
        if self.fails:
            raise OSError(f"{self.id}: the port is gone")
        self.log.append(f"start {self.id}")

    def stop(self) -> None:
        self.log.append(f"stop {self.id}")


def test_a_driver_failing_to_start_leaves_what_ran_running(tmp_path: Path) -> None:
    log: list[str] = []
    counter = m.ConfigDevice(id="v0001-counter2", kind=m.DeviceKind.COUNTER, driver="simulated")
    site = _site(tmp_path, devices=[{"id": "v0001-counter2", "kind": "counter",
                                     "driver": "simulated"}])  # fmt: skip
    failing = {"v0001-counter5"}

    def factory(config: DeviceConfig) -> d.Device:
        return _Hardware(config.id, log, fails=config.id in failing)

    running = _Hardware("v0001-counter2", log)
    agent = EdgeAgent(site, [running], drivers=factory)
    try:
        # A new device whose driver fails: the other new one is stopped again, the old one runs.
        fresh = [m.ConfigDevice(id=i, kind=m.DeviceKind.COUNTER, driver="simulated")
                 for i in ("v0001-counter4", "v0001-counter5")]  # fmt: skip
        plan = reconfig.plan(agent._device_configs,
                             reconfig.devices_of(_config(2, counter, *fresh)), factory)  # fmt: skip
        with pytest.raises(OSError, match="port is gone"):
            agent._switch_drivers(plan)
        assert log == ["start v0001-counter4", "stop v0001-counter4"]
        assert agent.devices == {"v0001-counter2": running}
        # A changed device whose new driver fails gets its old driver back.
        log.clear()
        failing.add("v0001-counter2")
        changed = counter.model_copy(update={"settings": {"report_every_s": 9}})
        plan = reconfig.plan(agent._device_configs,
                             reconfig.devices_of(_config(3, changed)), factory)  # fmt: skip
        failing.discard("v0001-counter2")  # the rebuilt old driver starts
        plan.start["v0001-counter2"].fails = True  # type: ignore[attr-defined]
        with pytest.raises(OSError):
            agent._switch_drivers(plan)
        assert log == ["stop v0001-counter2", "start v0001-counter2"]
        assert agent.devices["v0001-counter2"] is not running  # a fresh driver, started
    finally:
        agent.outbox.store.close()
