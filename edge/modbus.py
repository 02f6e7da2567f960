"""The `modbus` door driver: a door wired to a Modbus TCP IO module (docs/drivers/modbus.md).

The module knows only bits: the door contact and the exit button on inputs, the lock on a relay
coil. This driver polls the inputs at a set rate (pymodbus's client), debounces them, and works
out at the edge what a door controller would: the door's state, forced (opened while locked with
no exit request shortly before) and held open (open past a limit). Door commands drive the
relay and are answered with the module's real outcome. A module that does not answer, or
answers with a Modbus exception, is counted, logged, reported as the door's health (edge.health)
and reconnected with back-off; the platform shows the door offline with the reason. Nothing else
stops.
"""

from __future__ import annotations

import logging
import threading
import time
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge import drivers as d
from edge.health import Health, Reporting
from gateway import messages as m

log = logging.getLogger(__name__)

DRIVER = "modbus"

# Each fault: the health condition it reports (the door cannot be read in any of them).
_CONDITION = {
    "connect_failed": m.DeviceCondition.UNREACHABLE,
    "timeout": m.DeviceCondition.UNREACHABLE,
    "modbus_exception": m.DeviceCondition.BAD_INPUT,
}


class Table(StrEnum):
    DISCRETE_INPUT = "discrete_input"
    COIL = "coil"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Input(_Settings):
    """One input bit: where it is and which level means active (door open, button pressed)."""

    table: Table = Field(default=Table.DISCRETE_INPUT, description="discrete_input or coil")
    address: int = Field(ge=0, le=65535, description="0-based bit address on the module")
    active_high: bool = Field(default=True, description="true: 1 means active; false: 0 does")


class Relay(_Settings):
    """The lock relay: a coil, and whether switching it on unlocks (a strike) or locks."""

    coil: int = Field(ge=0, le=65535, description="0-based coil address of the lock relay")
    on_means: Literal["unlocked", "locked"] = Field(
        default="unlocked", description="what the door is while the coil is on"
    )


class ModbusDoorSettings(_Settings):
    """The `settings` of a door with the `modbus` driver."""

    host: str = Field(min_length=1, max_length=255, description="the IO module's address")
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255, description="Modbus unit (device) id")
    poll_interval_s: float = Field(default=0.2, ge=0.02, le=10, description="seconds between polls")
    debounce_s: float = Field(
        default=0.1, ge=0, le=5, description="an input must hold a new level this long to count"
    )
    timeout_s: float = Field(default=1.0, gt=0, le=30, description="answer timeout per request")
    contact: Input = Field(description="the door contact: active while the door is open")
    exit_button: Input | None = Field(default=None, description="request to exit: active pressed")
    lock: Relay
    exit_window_s: float = Field(
        default=10.0, ge=0, le=300, description="an exit request this recent makes an opening fine"
    )
    held_open_s: float = Field(
        default=60.0, gt=0, le=86_400, description="open longer than this: held open (again each)"
    )
    report_every_s: float = Field(
        default=60.0, gt=0, le=3600, description="seconds between periodic door states"
    )
    backoff_max_s: float = Field(default=30.0, gt=0, le=600, description="reconnect wait at most")

    @field_validator("exit_button")
    @classmethod
    def _not_the_contact(cls, button: Input | None, info: ValidationInfo) -> Input | None:
        contact = info.data.get("contact")
        if (
            button is not None
            and contact is not None
            and (button.table, button.address) == (contact.table, contact.address)
        ):
            raise ValueError("the same input as the contact; give each its own")
        return button


class _Debounced:
    """An input's level, changed only after the raw level held for `hold_s`."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.value: bool | None = None
        self._pending: bool | None = None
        self._since = 0.0

    def feed(self, raw: bool, now: float) -> bool:
        """Take a raw sample; True when the debounced value changed."""
        if self.value is None:
            self.value = raw
            return True
        if raw == self.value:
            self._pending = None
            return False
        if self._pending != raw:
            self._pending, self._since = raw, now
        if now - self._since >= self.hold_s:
            self.value, self._pending = raw, None
            return True
        return False


class ModbusDoor(Reporting, d.DoorController):
    """A door on a Modbus TCP IO module."""

    def __init__(self, device_id: str, settings: ModbusDoorSettings, model: str | None = None):
        super().__init__(device_id, model=model or "modbus-io")
        self.settings = settings
        self.health = Health(device_id)
        self.locked = True
        self.mode = m.DoorMode.NORMAL
        self._client = ModbusTcpClient(
            settings.host, port=settings.port, timeout=settings.timeout_s, retries=0,
            reconnect_delay=0, reconnect_delay_max=0,
        )  # fmt: skip
        self._io = threading.Lock()  # one request at a time: poller and commands share it
        self._emit: d.Emit | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._contact = _Debounced(settings.debounce_s)
        self._button = _Debounced(settings.debounce_s)
        self._last_exit = float("-inf")
        self._open_since: float | None = None
        self._held_reported = 0
        self._relock_at: float | None = None
        self._last_report = 0.0
        self._wait = settings.poll_interval_s

    @property
    def is_open(self) -> bool | None:
        """The debounced door contact (None until first read)."""
        return self._contact.value

    # --- life -----------------------------------------------------------------------------------

    def start(self, emit: d.Emit) -> None:
        self._emit = emit
        self.health.attach(emit)
        self._thread = threading.Thread(target=self._run, name=f"modbus-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._io:
            self._client.close()  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll(time.monotonic())
            except _Fault as fault:
                self._fault(fault)
                self._stop.wait(self._wait)
                self._wait = min(self._wait * 2, self.settings.backoff_max_s)
                continue
            except Exception:  # a bug here must not end the door's polling
                log.exception("modbus poll failed device=%s", self.id)
            self._stop.wait(self.settings.poll_interval_s)

    # --- polling ----------------------------------------------------------------------------------

    def _poll(self, now: float) -> None:
        s = self.settings
        contact = self._read(s.contact)
        button = self._read(s.exit_button) if s.exit_button is not None else False
        first = self._contact.value is None
        self._button.feed(button, now)
        if self._button.value:
            self._last_exit = now
        if self._contact.feed(contact, now):
            if first:  # the door as found: reported below, never forced
                self._open_since = now if self._contact.value else None
            elif self._contact.value:
                self._opened(now)
            else:
                self._open_since, self._held_reported = None, 0
            if not first:
                self._report(now)
        if not self.online:
            self._wait = s.poll_interval_s
            log.info("modbus io module answers device=%s host=%s:%d", self.id, s.host, s.port)
            self.health.ok()
            self._report(now)
        if self._open_since is not None:
            limit = s.held_open_s * (self._held_reported + 1)
            if now - self._open_since >= limit:
                self._held_reported += 1
                self._send(d.HeldOpenSeen(self.id, open_s=round(now - self._open_since, 1)))
        if self._relock_at is not None and now >= self._relock_at:
            self._drive(locked=True)  # a failure keeps the relock due: tried after reconnect
            self._relock_at = None
            self.locked, self.mode = True, m.DoorMode.NORMAL
            self._report(now)
        if now - self._last_report >= s.report_every_s:
            self._report(now)

    def _opened(self, now: float) -> None:
        self._open_since, self._held_reported = now, 0
        if self.locked and now - self._last_exit > self.settings.exit_window_s:
            log.warning("door forced device=%s (opened while locked, no exit request)", self.id)
            self._send(d.ForcedSeen(self.id))

    def _report(self, now: float) -> None:
        self._last_report = now

        self._send(d.DoorStateSeen(self.id, open=bool(self._contact.value), locked=self.locked,
                                   mode=self.mode))  # fmt: skip

    def _send(self, reading: d.Reading) -> None:
        if self._emit is not None:
            self._emit(reading)

    def _fault(self, fault: _Fault) -> None:
        s = self.settings
        self.health.problem(_CONDITION[fault.reason], fault.reason,
                            f"IO module {s.host}:{s.port}: {fault}", online=False)  # fmt: skip
        with self._io:
            self._client.close()  # type: ignore[no-untyped-call]

    # --- requests ---------------------------------------------------------------------------------

    def _read(self, point: Input) -> bool:
        unit = self.settings.unit_id
        with self._io:
            self._connect()
            try:
                if point.table is Table.COIL:
                    answer = self._client.read_coils(point.address, count=1, device_id=unit)
                else:
                    answer = self._client.read_discrete_inputs(
                        point.address, count=1, device_id=unit
                    )
            except (ModbusException, OSError) as exc:
                raise _Fault(
                    "timeout", f"no answer reading {point.table} {point.address}: {exc}"
                ) from None
        if answer.isError():
            raise _Fault("modbus_exception", f"Modbus exception {getattr(answer, 'exception_code', '?')}"
                         f" reading {point.table} {point.address}")  # fmt: skip
        return bool(answer.bits[0]) == point.active_high

    def _connect(self) -> None:
        connected = self._client.connected or self._client.connect()  # type: ignore[no-untyped-call]
        if not connected:
            s = self.settings
            raise _Fault("connect_failed", f"cannot connect to {s.host}:{s.port}")

    def _drive(self, *, locked: bool) -> None:
        """Set the lock relay; _Fault when the module does not do it."""
        s = self.settings
        on = (not locked) if s.lock.on_means == "unlocked" else locked
        with self._io:
            self._connect()
            try:
                answer = self._client.write_coil(s.lock.coil, on, device_id=s.unit_id)
            except (ModbusException, OSError) as exc:
                raise _Fault(
                    "timeout", f"no answer writing lock coil {s.lock.coil}: {exc}"
                ) from None
        if answer.isError():
            code = getattr(answer, "exception_code", "?")
            raise _Fault(
                "modbus_exception", f"Modbus exception {code} writing lock coil {s.lock.coil}"
            )

    def _command(self, *, locked: bool, mode: m.DoorMode, relock_in: float | None) -> None:
        try:
            self._drive(locked=locked)
        except _Fault as fault:
            log.warning("door command failed device=%s: %s", self.id, fault)
            raise d.CommandFailed(f"IO module {self.settings.host}: {fault}") from None
        self.locked, self.mode = locked, mode
        self._relock_at = None if relock_in is None else time.monotonic() + relock_in
        self._report(time.monotonic())

    # --- commands (the agent's command thread) --------------------------------------------------

    def unlock(self, duration_s: int | None) -> None:
        self._command(locked=False, mode=m.DoorMode.UNLOCKED, relock_in=duration_s)

    def lock(self) -> None:
        self._command(locked=True, mode=m.DoorMode.NORMAL, relock_in=None)

    def lockdown(self, active: bool) -> None:
        mode = m.DoorMode.LOCKDOWN if active else m.DoorMode.NORMAL
        self._command(locked=True, mode=mode, relock_in=None)


class _Fault(Exception):
    """The IO module did not answer, or answered with an exception."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
