"""Simulated devices: behavioural models behind the same driver classes as real hardware.

Each model is deterministic for a seed and runs on simulated time. Besides what it does by
itself, every model has the fault and event hooks that scenarios drive (`force`, `cut`, `spike`…).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import uuid
import zlib
from datetime import datetime, timedelta

from edge import drivers as d
from gateway import messages as m
from simulators.engine import Engine, SimClock
from simulators.venues import Venue

log = logging.getLogger(__name__)

DAY = 86_400.0
HELD_OPEN_LIMIT_S = 60.0  # the controller's own limit before it reports a held-open door


def _rng(seed: int, device_id: str) -> random.Random:
    return random.Random(seed * 1_000_003 + zlib.crc32(device_id.encode()))


class SimDevice(d.Device):
    """Timers on simulated time, a lock for commands arriving from the agent, and reporting."""

    MODEL = "sim"

    def __init__(
        self, device_id: str, venue: Venue, engine: Engine, *, seed: int, report_every_s: float
    ) -> None:
        super().__init__(device_id, model=self.MODEL)
        self.venue = venue
        self.engine = engine
        self.clock: SimClock = engine.clock
        self.rng = _rng(seed, device_id)
        self.report_every_s = report_every_s
        self._mutex = threading.RLock()
        self.timers: dict[str, datetime] = {}
        self.offline = False  # cut: the device stops answering and reporting
        self._emit: d.Emit | None = None
        self._stopped = False

    # --- driver plumbing ----------------------------------------------------------------------

    def start(self, emit: d.Emit) -> None:
        self._emit = emit
        now = self.clock.now()
        # Spread the first reports so a fleet does not report all at once.
        self.after("report", self.rng.uniform(0, self.report_every_s) * self.clock.speed, now)
        self.plan(now)

    def stop(self) -> None:
        self._stopped = True

    def emit(self, reading: d.Reading) -> None:
        if self._emit is not None and not self.offline:
            self._emit(reading)

    def after(self, timer: str, sim_seconds: float, now: datetime | None = None) -> None:
        with self._mutex:
            self.timers[timer] = (now or self.clock.now()) + timedelta(seconds=sim_seconds)
        self.engine.schedule(self, self.clock.real_delay(sim_seconds))

    def wake(self) -> None:
        """Run the timers that are due (each `after` put one wake on the engine for its timer)."""
        if self._stopped:
            return
        now = self.clock.now()
        with self._mutex:
            due = sorted((at, name) for name, at in self.timers.items() if at <= now)
            for _, name in due:
                at = self.timers.get(name)
                if at is None or at > now:
                    continue  # an earlier handler removed it or set it again for later
                del self.timers[name]
                if name == "report":
                    self.after("report", self.report_every_s * self.clock.speed, now)
                    self.report(now)
                else:
                    self.on_timer(name, now)

    # --- behaviour, per model -----------------------------------------------------------------

    def plan(self, now: datetime) -> None:
        """Schedule the first spontaneous events."""

    def report(self, now: datetime) -> None:
        """The periodic reading."""

    def on_timer(self, name: str, now: datetime) -> None:
        """A timer of the model's own came due."""

    def every(self, mean_days: float) -> float:
        """Simulated seconds until the next of an event that happens about once per `mean_days`."""
        return self.rng.expovariate(1 / (mean_days * DAY))

    # --- scenario hooks common to all ----------------------------------------------------------

    def cut(self) -> None:
        """The device drops off (power, cable): it stops reporting and answering."""
        with self._mutex:
            self.offline = True

    def restore(self) -> None:
        with self._mutex:
            self.offline = False


class SimDoor(SimDevice, d.DoorController):
    """A door controller with a card reader: swipes in opening hours, rare forced or held doors."""

    MODEL = "sim-door"

    def __init__(
        self, device_id: str, venue: Venue, engine: Engine, *, seed: int, report_every_s: float
    ) -> None:
        super().__init__(device_id, venue, engine, seed=seed, report_every_s=report_every_s)
        self.is_open = False
        self.locked = True
        self.mode = m.DoorMode.NORMAL
        self.jammed = False
        self.open_since: datetime | None = None
        self.cards = [f"card-{self.rng.randrange(10**8):08d}" for _ in range(40)]

    def plan(self, now: datetime) -> None:
        self.after("swipe", self._swipe_gap(now), now)
        self.after("forced", self.every(30), now)
        self.after("held", self.every(10), now)

    def _swipe_gap(self, now: datetime) -> float:
        per_hour = max(0.3, self.venue.capacity * self.venue.expected_share(now) * 0.4)
        return self.rng.expovariate(per_hour / 3600)

    def report(self, now: datetime) -> None:
        self._state()

    def _state(self) -> None:
        self.emit(d.DoorStateSeen(self.id, open=self.is_open, locked=self.locked, mode=self.mode))

    def on_timer(self, name: str, now: datetime) -> None:
        match name:
            # Each recurring event is set again first, so a failing reading cannot end it.
            case "swipe":
                self.after("swipe", self._swipe_gap(now), now)
                self.swipe(granted=self.rng.random() < 0.93)
            case "forced":
                self.after("forced", self.every(30), now)
                self.force()
            case "held":
                self.after("held", self.every(10), now)
                self.hold_open(self.rng.uniform(90, 300))
            case "close":
                self._close()
            case "held_report":
                if self.is_open and self.open_since is not None:
                    self.emit(
                        d.HeldOpenSeen(self.id, open_s=(now - self.open_since).total_seconds())
                    )
                    self.after("held_report", 30, now)
            case "relock":
                self.locked, self.mode = True, m.DoorMode.NORMAL
                self._state()
            case name if name.startswith("deny"):
                self.swipe(granted=False)

    def _open(self, seconds: float) -> None:
        now = self.clock.now()
        if not self.is_open:
            self.is_open, self.open_since = True, now
            self._state()
        closing = self.timers.get("close")
        if closing is not None and closing > now + timedelta(seconds=seconds):
            return  # already open for longer (propped): someone passing does not close it sooner
        self.after("close", seconds, now)
        if seconds > HELD_OPEN_LIMIT_S and "held_report" not in self.timers:
            self.after("held_report", HELD_OPEN_LIMIT_S, now)

    def _close(self) -> None:
        self.timers.pop("held_report", None)
        if self.is_open:
            self.is_open, self.open_since = False, None
            self._state()

    # --- scenario hooks ------------------------------------------------------------------------

    def swipe(self, granted: bool = True) -> None:
        """Someone presents a card."""
        with self._mutex:
            card = self.rng.choice(self.cards)
            if self.mode is m.DoorMode.LOCKDOWN:
                granted, reason = False, m.DenyReason.LOCKDOWN
            elif not granted:
                card = f"card-{self.rng.randrange(10**8):08d}"
                reason = self.rng.choice(
                    [
                        m.DenyReason.UNKNOWN_CREDENTIAL,
                        m.DenyReason.EXPIRED,
                        m.DenyReason.OUTSIDE_SCHEDULE,
                    ]
                )
            else:
                reason = None
            direction = self.rng.choice([m.Direction.IN, m.Direction.OUT])
            self.emit(d.AccessSeen(self.id, granted=granted, raw_credential=card,
                                   direction=direction, reason=reason))  # fmt: skip
            if granted:
                self._open(self.rng.uniform(3, 8))

    def deny_burst(self, count: int = 6) -> None:
        """Someone tries card after card."""
        for i in range(count):
            self.after(f"deny{i}", i * self.rng.uniform(2, 6))

    def force(self) -> None:
        """The door is pushed open without a valid access."""
        with self._mutex:
            self.emit(d.ForcedSeen(self.id))
            self._open(self.rng.uniform(5, 20))

    def hold_open(self, seconds: float = 120) -> None:
        """The door is propped open."""
        with self._mutex:
            self._open(seconds)

    def jam(self, jammed: bool = True) -> None:
        """The lock motor fails: commands to this door fail until it is repaired."""
        with self._mutex:
            self.jammed = jammed

    # --- commands -------------------------------------------------------------------------------

    def _check(self) -> None:
        if self.offline:
            raise d.CommandFailed("door controller not responding")
        if self.jammed:
            raise d.CommandFailed("lock motor jammed")

    def unlock(self, duration_s: int | None) -> None:
        with self._mutex:
            self._check()
            self.locked, self.mode = False, m.DoorMode.UNLOCKED
            self._state()
            self.timers.pop("relock", None)
            if duration_s is not None:  # a command's duration is real time
                self.after("relock", duration_s * self.clock.speed)

    def lock(self) -> None:
        with self._mutex:
            self._check()
            self.timers.pop("relock", None)
            self.locked, self.mode = True, m.DoorMode.NORMAL
            self._state()

    def lockdown(self, active: bool) -> None:
        with self._mutex:
            self._check()
            self.timers.pop("relock", None)
            self.locked = True
            self.mode = m.DoorMode.LOCKDOWN if active else m.DoorMode.NORMAL
            self._state()


class SimCounter(SimDevice, d.PeopleCounter):
    """A people counter following the venue's daily curve; never below zero."""

    MODEL = "sim-counter"

    def __init__(
        self, device_id: str, venue: Venue, engine: Engine, *, seed: int, report_every_s: float
    ) -> None:
        super().__init__(device_id, venue, engine, seed=seed, report_every_s=report_every_s)
        self.count = 0
        self.extra = 0  # people brought by an event (a spike)
        self.lingering = 0  # people who stay after closing

    def target(self, now: datetime) -> int:
        share = self.venue.expected_share(now) * self.rng.uniform(0.85, 1.15)
        return max(0, round(self.venue.capacity * share) + self.extra + self.lingering)

    def report(self, now: datetime) -> None:
        target = self.target(now)
        # Move part of the way to the target, with people passing through both ways.
        step = (target - self.count) / 2
        delta = math.ceil(step) if step > 0 else math.floor(step)
        churn = self.rng.randint(0, max(1, self.count // 20))
        entered = max(0, delta) + churn
        exited = min(self.count + entered, max(0, -delta) + churn)
        self.count = self.count + entered - exited
        self.emit(
            d.OccupancySeen(self.id, zone="main", count=self.count, entered=entered, exited=exited)
        )

    def on_timer(self, name: str, now: datetime) -> None:
        if name == "spike_end":
            self.extra = 0

    def spike(self, people: int, seconds: float = 600) -> None:
        """An event brings `people` more for a while."""
        with self._mutex:
            self.extra = people
            self.after("spike_end", seconds)

    def linger(self, people: int) -> None:
        """`people` stay inside whatever the hour (0 clears it)."""
        with self._mutex:
            self.lingering = people


class SimSpeaker(SimDevice, d.Speaker):
    """A broadcast speaker column: plays on command, sometimes faults, can go offline."""

    MODEL = "sim-speaker"

    def __init__(
        self, device_id: str, venue: Venue, engine: Engine, *, seed: int, report_every_s: float
    ) -> None:
        super().__init__(device_id, venue, engine, seed=seed, report_every_s=report_every_s)
        self.volume = 60
        self.playing: str | None = None
        self.priority = m.SpeakerPriority.ROUTINE
        self.fault: m.SpeakerFault | None = None
        self.played: list[str] = []  # what it played, for tests and demos

    def plan(self, now: datetime) -> None:
        self.after("fault", self.every(60), now)

    def report(self, now: datetime) -> None:
        self._status()

    def _status(self) -> None:
        # An offline speaker is reported by its controller as not online (not silently missing).
        if self._emit is not None:
            self._emit(
                d.SpeakerStatusSeen(
                    self.id, online=not self.offline, volume=self.volume,
                    playing=self.playing is not None, clip=self.playing, fault=self.fault,
                )
            )  # fmt: skip

    def on_timer(self, name: str, now: datetime) -> None:
        match name:
            case "fault":
                self.after("fault", self.every(60), now)
                self.after("fault_clear", self.rng.uniform(3600, 6 * 3600), now)
                self.set_fault(self.rng.choice(list(m.SpeakerFault)))
            case "fault_clear":
                self.set_fault(None)
            case "done":
                self.playing = None
                self._status()

    def set_fault(self, fault: m.SpeakerFault | str | None) -> None:
        """A fault (amplifier, line_open, line_short, overheat, power) or, with None, its repair."""
        with self._mutex:
            self.fault = None if fault is None else m.SpeakerFault(fault)
            if fault is not None:
                self.playing = None
            self._status()

    def cut(self) -> None:
        super().cut()
        self._status()

    def restore(self) -> None:
        super().restore()
        self._status()

    # --- commands -------------------------------------------------------------------------------

    def play(
        self,
        *,
        text: str | None,
        clip: str | None,
        priority: m.SpeakerPriority,
        repeat: int,
        language: m.SpeechLanguage = m.SpeechLanguage.ZH_CN,
    ) -> None:
        with self._mutex:
            if self.offline:
                raise d.CommandFailed("speaker not responding")
            if self.fault is not None:
                raise d.CommandFailed(f"speaker fault: {self.fault}")
            order = list(m.SpeakerPriority)
            if self.playing is not None and order.index(priority) < order.index(self.priority):
                raise d.CommandFailed(f"busy with a {self.priority} announcement")
            what = clip or f"tts:{(text or '')[:40]}"
            seconds = (20 if clip else max(3, len(text or "") / 8)) * repeat
            self.playing, self.priority = what, priority
            self.played.append(text or clip or "")
            self._status()
            self.after("done", seconds * self.clock.speed)

    def stop_playing(self) -> None:
        with self._mutex:
            if self.offline:
                raise d.CommandFailed("speaker not responding")
            self.timers.pop("done", None)
            self.playing = None
            self._status()

    def set_volume(self, level: int) -> None:
        with self._mutex:
            if self.offline:
                raise d.CommandFailed("speaker not responding")
            self.volume = level
            self._status()


class SimCamera(SimDevice, d.CameraAlertSource):
    """A camera's analytics as an alert source: intrusion after hours, loitering, crowds, tampering."""

    MODEL = "sim-camera"

    def __init__(
        self, device_id: str, venue: Venue, engine: Engine, *, seed: int, report_every_s: float
    ) -> None:
        super().__init__(device_id, venue, engine, seed=seed, report_every_s=report_every_s)
        self.active: dict[str, tuple[uuid.UUID, m.CameraAlertKind, str | None]] = {}

    def plan(self, now: datetime) -> None:
        for kind, days in _CAMERA_RATES.items():
            self.after(f"auto:{kind}", self.every(days), now)

    def on_timer(self, name: str, now: datetime) -> None:
        kind_name = name.split(":", 1)[1]
        if name.startswith("auto:"):
            kind = m.CameraAlertKind(kind_name)
            after_hours_only = kind is m.CameraAlertKind.INTRUSION and not self.venue.open_24h
            self.after(name, self.every(_CAMERA_RATES[kind]), now)
            if not after_hours_only or not self.venue.is_open(now):
                self.alert(kind, seconds=self.rng.uniform(20, 120))
        elif name.startswith("update:") and kind_name in self.active:
            self._phase(kind_name, m.AlertPhase.UPDATE)
            self.after(name, 10)
        elif name.startswith("end:") and kind_name in self.active:
            self._phase(kind_name, m.AlertPhase.END)
            self.timers.pop(f"update:{kind_name}", None)
            del self.active[kind_name]

    def _phase(self, key: str, phase: m.AlertPhase) -> None:
        alert_id, kind, zone = self.active[key]
        crowd = kind is m.CameraAlertKind.CROWD
        self.emit(
            d.CameraAlertSeen(
                self.id, alert_id=alert_id, phase=phase, kind=kind, zone=zone,
                score=round(self.rng.uniform(0.7, 0.99), 2),
                objects=self.rng.randint(12, 40) if crowd else self.rng.randint(1, 2),
            )
        )  # fmt: skip

    def alert(
        self, kind: m.CameraAlertKind | str, seconds: float = 60, zone: str | None = None
    ) -> None:
        """Start an alert of `kind` that lasts `seconds` (simulated), with updates meanwhile."""
        kind = m.CameraAlertKind(kind)
        with self._mutex:
            key = kind.value
            if key in self.active:
                return
            self.active[key] = (
                uuid.UUID(int=self.rng.getrandbits(128), version=4),
                kind,
                zone or "main",
            )
            self._phase(key, m.AlertPhase.START)
            self.after(f"update:{key}", 10)
            self.after(f"end:{key}", seconds)

    def tamper(self, kind: m.CameraAlertKind | str, seconds: float = 300) -> None:
        """The camera is covered, blurred or turned away for a while."""
        self.alert(kind, seconds)


_CAMERA_RATES = {  # mean days between spontaneous alerts of each kind, per camera
    m.CameraAlertKind.INTRUSION: 20.0,
    m.CameraAlertKind.LOITERING: 10.0,
    m.CameraAlertKind.CROWD: 15.0,
    m.CameraAlertKind.TAMPER_COVERED: 120.0,
    m.CameraAlertKind.TAMPER_BLURRED: 120.0,
    m.CameraAlertKind.TAMPER_MOVED: 120.0,
}

MODELS: dict[m.DeviceKind, type[SimDevice]] = {
    m.DeviceKind.DOOR: SimDoor,
    m.DeviceKind.COUNTER: SimCounter,
    m.DeviceKind.SPEAKER: SimSpeaker,
    m.DeviceKind.CAMERA: SimCamera,
}


def make_device(
    kind: m.DeviceKind,
    device_id: str,
    venue: Venue,
    engine: Engine,
    *,
    seed: int,
    report_every_s: float,
) -> SimDevice:
    """A simulated device of `kind`."""
    return MODELS[kind](device_id, venue, engine, seed=seed, report_every_s=report_every_s)
