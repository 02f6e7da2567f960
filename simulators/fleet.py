"""A fleet of simulated venues in one process: each venue a real edge agent with simulated devices."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edge.agent import PUMP_INTERVAL_S, EdgeAgent
from edge.config import DeviceConfig, OutboxConfig, SiteConfig
from edge.drivers import Device
from edge.outbox import Durability, Store
from gateway.client import MqttSettings
from gateway.messages import DeviceKind
from simulators.devices import SimDevice, make_device
from simulators.engine import Engine, SimClock
from simulators.venues import Venue

log = logging.getLogger(__name__)

_PERIODIC = {DeviceKind.DOOR, DeviceKind.COUNTER, DeviceKind.SPEAKER}
_RATE_WINDOW_S = 10.0
SIMULATED_DRIVER = "simulated"


def site_secret_for(node_secret: str) -> str:
    """A simulated site's credential-hashing key, derived from its node secret."""
    return hashlib.sha256(f"site-key:{node_secret}".encode()).hexdigest()


class Fleet:
    """Simulated venues reporting at about `rate` messages per second in all."""

    def __init__(
        self,
        venues: list[Venue],
        broker: MqttSettings,
        folder: Path,
        *,
        rate: float,
        speed: float = 1.0,
        seed: int = 1,
        replay_rate: float = 500.0,
        command_key: str | None = None,
        serve: Callable[[SimDevice], DeviceConfig | None] | None = None,
        build: Callable[[DeviceConfig], Device] | None = None,
    ) -> None:
        """`command_key`: the platform's public command key; without it the nodes refuse every
        command. `serve` and `build`: protocol mode (simulators.protocol) — `serve` puts a model
        behind a protocol simulator and gives the site-file entry of the real driver for it (or
        None: the model stays in-process), `build` makes that driver."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.engine = Engine(SimClock(speed))
        periodic = sum(1 for v in venues for _, k in v.devices if DeviceKind(k) in _PERIODIC)
        # Every periodic device reports once per interval, so together they make the rate.
        self.report_every_s = max(periodic, 1) / rate
        self.agents: dict[str, EdgeAgent] = {}
        # Crash-safe, not power-cut-safe: hundreds of simulated nodes share one file.
        self.store = Store(folder / "fleet.outbox", Durability.NORMAL)
        self.devices: dict[str, SimDevice] = {}
        self.drivers: dict[str, str] = {}  # each device: the driver that reads it (protocol mode)
        # Protocol mode: the drivers report at their devices' pace, not the fleet's rate.
        self.drivers_read_models = serve is not None and build is not None
        for venue in venues:
            devices: list[Device] = []
            entries: list[DeviceConfig] = []
            for device_id, kind_name in venue.devices:
                kind = DeviceKind(kind_name)
                every = self.report_every_s if kind in _PERIODIC else 3600.0
                model = make_device(
                    kind, device_id, venue, self.engine, seed=seed, report_every_s=every
                )
                self.devices[device_id] = model  # what scenarios drive, in either mode
                entry = serve(model) if serve is not None and build is not None else None
                if entry is not None and build is not None:
                    devices.append(build(entry))
                    self.drivers[device_id] = entry.driver
                else:
                    devices.append(model)
                    self.drivers[device_id] = SIMULATED_DRIVER
                # The agent's entry is the registry's (`simulated`), whichever driver reads the
                # model: the configuration the platform pushes then matches, as in-process.
                entries.append(DeviceConfig(id=model.id, kind=model.kind,
                                            driver=SIMULATED_DRIVER))  # fmt: skip
            config = SiteConfig(
                site=venue.site,
                node=venue.node,
                broker=broker.as_account(venue.node, venue.secret),
                site_secret=site_secret_for(venue.secret),
                command_key=command_key,
                outbox=OutboxConfig(
                    path=self.store.path,
                    durability=Durability.NORMAL,
                    replay_rate=replay_rate,
                ),
                devices=entries,
            )
            self.agents[venue.node] = EdgeAgent(config, devices, self.store)
        self._stop = threading.Event()
        self._pump = threading.Thread(target=self._pump_all, name="fleet-pump", daemon=True)
        self.short_of_rate = False
        self._link_timers: list[threading.Timer] = []

    @property
    def readings(self) -> int:
        return sum(a.readings for a in self.agents.values())

    @property
    def backlog(self) -> int:
        return sum(len(a.outbox) for a in self.agents.values())

    def connected(self) -> int:
        return sum(1 for a in self.agents.values() if a.watch.connected.is_set())

    def start(self) -> None:
        self.engine.start()
        for agent in self.agents.values():
            agent.start()
        self._pump.start()
        log.info(
            "fleet started venues=%d devices=%d rate=%.0f/s report_every=%.1fs speed=%g",
            len(self.agents), len(self.devices), self.rate, self.report_every_s,
            self.engine.clock.speed,
        )  # fmt: skip

    def wait_connected(self, timeout_s: float = 60) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.connected() < len(self.agents):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def cut_link(self, node: str, seconds: float) -> None:
        """A venue's network goes down for `seconds`: no goodbye, so the broker sends its will."""
        agent = self.agents[node]
        agent.client.loop_stop()
        agent.watch.connected.clear()
        agent.cut_link()
        log.info("network cut node=%s for %.0fs", node, seconds)
        timer = threading.Timer(seconds, agent.client.loop_start)
        timer.daemon = True
        self._link_timers.append(timer)
        timer.start()

    def stop(self) -> None:
        self._stop.set()
        for timer in self._link_timers:
            timer.cancel()
        self._pump.join(5)
        self.engine.stop()
        # Each agent waits briefly for its last PUBACKs: stop them side by side.
        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(EdgeAgent.stop, self.agents.values()))
        self.store.close()
        log.info("fleet stopped readings=%d backlog=%d", self.readings, self.backlog)

    def _pump_all(self) -> None:
        window_start, window_readings = time.monotonic(), self.readings
        while not self._stop.wait(PUMP_INTERVAL_S):
            for agent in self.agents.values():
                if agent.failed.is_set():
                    agent.stop()  # that venue only (it logged why); a no-op once stopped
                    continue
                agent.pump()
            now = time.monotonic()
            if now - window_start >= _RATE_WINDOW_S and not self.drivers_read_models:
                achieved = (self.readings - window_readings) / (now - window_start)
                self._check_rate(achieved)
                window_start, window_readings = now, self.readings

    def _check_rate(self, achieved: float) -> None:
        short = self.rate - achieved > max(1.0, 0.1 * self.rate) or self.engine.lag_s > 1.0
        if short:
            log.warning(
                "fleet cannot keep the rate: target %.0f/s, achieved %.0f/s, engine lag %.1fs,"
                " outbox backlog %d",
                self.rate, achieved, self.engine.lag_s, self.backlog,
            )  # fmt: skip
        elif self.short_of_rate:
            log.info("fleet back at its rate: %.0f/s", achieved)
        self.short_of_rate = short
