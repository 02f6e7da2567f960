"""A device's health as its driver finds it, kept the same way for every real-hardware driver.

A driver calls `problem` when the device cannot be reached, refuses the account, answers too
slowly or sends what cannot be read, and `ok` after each good exchange. Each problem is counted
by name (`gridwatch_edge_device_faults_total{device, fault}`), logged with the device (once per
distinct problem, not once per retry), and sent to the platform as a `device.health` message when
the device's condition changes. `device_time` checks a device's timestamp against the agent's
clock: a clock far off is a condition too, and the agent's time is used instead.

Conditions that are about the device being there (unreachable, auth_failed) clear on the first
good exchange. Those about single exchanges (slow, bad_input, clock_skew) clear only after
`settle_s` without another, so a device that garbles one message in three does not flap.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from edge import drivers as d
from gateway.messages import DeviceCondition

log = logging.getLogger(__name__)

FAULTS = Counter(
    "gridwatch_edge_device_faults_total",
    "Problems a driver met with its device, by device and fault name",
    ["device", "fault"],
)
ONLINE = Gauge(
    "gridwatch_edge_device_online", "1 while the driver reaches its device (0 before)", ["device"]
)

_LASTING = (DeviceCondition.UNREACHABLE, DeviceCondition.AUTH_FAILED)


class Health:
    """One device's health; thread-safe (a driver's reader and the command thread share it)."""

    def __init__(
        self,
        device_id: str,
        *,
        settle_s: float = 300.0,
        clock_limit_s: float = 300.0,
    ) -> None:
        self.device = device_id
        self.settle_s = settle_s
        self.clock_limit_s = clock_limit_s
        self._emit: d.Emit | None = None
        self._lock = threading.Lock()
        self.online: bool | None = None  # None: not reached yet
        self.condition: DeviceCondition | None = None
        self.detail: str | None = None
        self.faults: dict[str, int] = {}
        self.clock_offset_s: float | None = None
        self._last_problem = float("-inf")
        self._logged: str | None = None
        ONLINE.labels(device_id).set(0)

    def attach(self, emit: d.Emit) -> None:
        """Send health changes through the driver's `emit` from now on."""
        self._emit = emit

    def ok(self) -> None:
        """A good exchange with the device."""
        with self._lock:
            settled = time.monotonic() - self._last_problem >= self.settle_s
            if self.condition in _LASTING or self.condition is None or settled:
                if self.condition is not DeviceCondition.OK and self.condition is not None:
                    log.info("device healthy again device=%s (was %s)", self.device,
                             self.condition.value)  # fmt: skip
                self._logged = None
                reading = self._set(True, DeviceCondition.OK, None)
            else:
                reading = self._set(True, self.condition, self.detail)
        self._send(reading)

    def problem(
        self, condition: DeviceCondition, fault: str, detail: str, *, online: bool | None = None
    ) -> None:
        """Something went wrong with the device: count `fault`, log `detail` once, and report
        `condition`. `online` defaults to False for unreachable and auth_failed, and to whether
        the device was reachable before for the others."""
        if online is None:
            online = condition not in _LASTING and bool(self.online)
        FAULTS.labels(self.device, fault).inc()
        with self._lock:
            self.faults[fault] = self.faults.get(fault, 0) + 1
            self._last_problem = time.monotonic()
            if self._logged != detail:
                self._logged = detail
                log.warning("device problem device=%s condition=%s fault=%s: %s", self.device,
                            condition.value, fault, detail)  # fmt: skip
            # A lasting condition is not hidden by a passing one seen meanwhile.
            if self.condition in _LASTING and condition not in _LASTING and not self.online:
                reading = None
            else:
                reading = self._set(online, condition, detail)
        self._send(reading)

    def device_time(self, ts: datetime | None) -> datetime | None:
        """The device's timestamp if its clock is within `clock_limit_s` of the agent's; None
        (use the agent's time) when it is not, which is reported as clock_skew."""
        if ts is None:
            return None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        offset = (ts - datetime.now(UTC)).total_seconds()
        if abs(offset) <= self.clock_limit_s:
            if self.condition is DeviceCondition.CLOCK_SKEW:
                self.clock_offset_s = offset
            return ts
        self.clock_offset_s = offset
        self.problem(
            DeviceCondition.CLOCK_SKEW,
            "clock_skew",
            f"device clock is {_span(offset)} {'ahead' if offset > 0 else 'behind'}; the"
            " agent's time is used for its events",
            online=True,
        )
        return None

    def _set(
        self, online: bool, condition: DeviceCondition, detail: str | None
    ) -> d.DeviceHealthSeen | None:
        changed = (online, condition, detail) != (self.online, self.condition, self.detail)
        self.online, self.condition, self.detail = online, condition, detail
        ONLINE.labels(self.device).set(1 if online else 0)
        if not changed:
            return None
        offset = self.clock_offset_s if condition is DeviceCondition.CLOCK_SKEW else None
        return d.DeviceHealthSeen(self.device, online=online, condition=condition, detail=detail,
                                  faults=dict(self.faults), clock_offset_s=offset)  # fmt: skip

    def _send(self, reading: d.DeviceHealthSeen | None) -> None:
        if reading is not None and self._emit is not None:
            self._emit(reading)


def _span(seconds: float) -> str:
    s = abs(seconds)
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


class Reporting:
    """Mixed into a driver that keeps its device's health in `self.health`: whether the device
    is reached, and what went wrong while something does."""

    health: Health

    @property
    def online(self) -> bool:
        return bool(self.health.online)

    @property
    def detail(self) -> str | None:
        return self.health.detail
