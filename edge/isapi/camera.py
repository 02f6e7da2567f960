"""The `isapi` camera and people counter: a Hikvision camera's own analytics, relayed.

A smart camera decides by itself that someone crossed a line or entered a field; this driver
reads its alert stream (edge.isapi.session) and turns each event into our camera alerts
(start, updates, end) or, for a people-counting camera, occupancy readings. The table of event
types to alert kinds is `DEFAULT_ALERTS` (docs/drivers/isapi.md), and a site can change it per
camera (`events`). ISAPI sends `active` parts again and again while an event lasts and often
no `inactive` at the end of a smart event, so an alert ends on `inactive` or when no `active`
came for `end_after_s`. Bad input (a body that does not parse, an event type with no mapping,
a clock hours off) is counted, logged and reported as the device's health; nothing stops.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from edge import drivers as d
from edge.health import Health
from edge.isapi.session import IsapiRefused, IsapiSession, IsapiSettings, IsapiUnavailable
from edge.isapi.stream import BadPart, Event, Part, decode, parse_time, xml_fields
from gateway import messages as m

log = logging.getLogger(__name__)

DRIVER = "isapi"
K = m.CameraAlertKind
Mapping = K | Literal["ignore"]

# Hikvision eventType (compared lower case) → our camera alert kind. Hikvision has no crowd
# event of this kind; crowding comes from the agent's own analytics (the opencv driver).
DEFAULT_ALERTS: dict[str, Mapping] = {
    "vmd": K.INTRUSION,  # motion detection: armed by the camera's own schedule
    "linedetection": K.INTRUSION,  # line crossing
    "fielddetection": K.INTRUSION,  # intrusion detection
    "regionentrance": K.INTRUSION,
    "regionexiting": K.INTRUSION,
    "loitering": K.LOITERING,
    "shelteralarm": K.TAMPER_COVERED,  # video tampering (the lens covered)
    "tamperdetection": K.TAMPER_COVERED,
    "videoloss": K.TAMPER_COVERED,  # the picture is gone; `inactive` alone is the heartbeat
    "defocus": K.TAMPER_BLURRED,
    "scenechangedetection": K.TAMPER_MOVED,  # the camera was turned away
}
PEOPLE_COUNTING = "peoplecounting"
HEARTBEAT = "videoloss"


class IsapiCameraSettings(IsapiSettings):
    """The `settings` of a camera with the `isapi` driver."""

    channel: int | None = Field(
        default=None, ge=1, le=512, description="only this video channel's events (all if unset)"
    )
    zone: str | None = Field(default=None, min_length=1, max_length=64,
                             description="the zone named in this camera's alerts")  # fmt: skip
    events: dict[str, Mapping] = Field(
        default_factory=dict,
        description="eventType → alert kind or 'ignore', over the built-in table",
    )
    end_after_s: float = Field(
        default=10.0, gt=0, le=3600, description="an alert with no `active` part this long ended"
    )
    update_every_s: float = Field(
        default=10.0, gt=0, le=3600, description="an ongoing alert is updated at most this often"
    )

    @field_validator("events")
    @classmethod
    def _lower(cls, events: dict[str, Mapping]) -> dict[str, Mapping]:
        return {name.strip().lower(): kind for name, kind in events.items()}


class IsapiCounterSettings(IsapiSettings):
    """The `settings` of a people counter with the `isapi` driver."""

    channel: int | None = Field(
        default=None, ge=1, le=512, description="only this video channel's counts (all if unset)"
    )
    zone: str = Field(default="main", min_length=1, max_length=64,
                      description="the zone its occupancy readings name")  # fmt: skip


class _IsapiEvents:
    """The reader both kinds share: say hello (device info and clock), then read the stream."""

    settings: IsapiSettings
    id: str

    def _setup(self, settings: IsapiSettings) -> None:
        self.health = Health(self.id, clock_limit_s=settings.clock_limit_s)
        self.session = IsapiSession(settings, self.health)
        self.device_model: str | None = None
        self._emit: d.Emit | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def online(self) -> bool:
        return bool(self.health.online)

    @property
    def detail(self) -> str | None:
        return self.health.detail

    def start(self, emit: d.Emit) -> None:
        self._emit = emit
        self.health.attach(emit)
        self._spawn(self._run, "isapi")

    def stop(self) -> None:
        self._stop.set()
        self.session.close()  # ends a blocked stream read at once
        for thread in self._threads:
            thread.join(10)

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=f"{name}-{self.id}", daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _send(self, reading: d.Reading) -> None:
        if self._emit is not None:
            self._emit(reading)

    def _run(self) -> None:
        wait = 0.5
        while not self._stop.is_set() and not self._hello():
            self._stop.wait(wait)
            wait = min(wait * 2, self.settings.backoff_max_s)
        for part in self.session.events(self._stop):
            try:
                self._part(part)
            except Exception:  # a bug here must not end the device's stream
                log.exception("isapi part failed device=%s", self.id)

    def _hello(self) -> bool:
        """Device info and clock, once: False while the device cannot be asked."""
        try:
            info = xml_fields(self.session.request("GET", "/ISAPI/System/deviceInfo").content)
            self.device_model = str(info.get("model") or "") or None
            clock = xml_fields(self.session.request("GET", "/ISAPI/System/time").content)
        except IsapiUnavailable:
            return False
        except (IsapiRefused, BadPart) as exc:
            log.info("isapi device info not read device=%s: %s", self.id, exc)
            return True
        self.health.device_time(parse_time(clock.get("localTime")))
        log.info("isapi device answers device=%s host=%s model=%s", self.id,
                 self.settings.address, self.device_model)  # fmt: skip
        return True

    def _part(self, part: Part) -> None:
        where = f"ISAPI device {self.settings.address}"
        if part.problem is not None:
            self.health.problem(m.DeviceCondition.BAD_INPUT, "malformed_part",
                                f"{where}: sent a part that cannot be read ({part.problem})")  # fmt: skip
            return
        if part.is_image:
            return  # event pictures are not relayed (yet): the alert goes without one
        try:
            event = decode(part)
        except BadPart as exc:
            self.health.problem(m.DeviceCondition.BAD_INPUT, exc.fault, f"{where}: sent {exc}")
            return
        channel = getattr(self.settings, "channel", None)
        if channel is not None and event.channel is not None and event.channel != channel:
            return
        ts = self.health.device_time(event.time)
        self._event(event, ts)

    def _unknown(self, event: Event) -> None:
        self.health.problem(
            m.DeviceCondition.BAD_INPUT, "unknown_event",
            f"ISAPI device {self.settings.address}: sent an event of type {event.type[:64]!r}"
            " that has no mapping (dropped); map it or ignore it in settings.events",
        )  # fmt: skip

    def _event(self, event: Event, ts: datetime | None) -> None:
        raise NotImplementedError


@dataclass
class _Open:
    alert_id: uuid.UUID
    kind: m.CameraAlertKind
    last_active: float
    last_update: float


class IsapiCamera(_IsapiEvents, d.CameraAlertSource):
    """A Hikvision camera whose analytics events become our camera alerts."""

    settings: IsapiCameraSettings

    def __init__(
        self, device_id: str, settings: IsapiCameraSettings, model: str | None = None
    ) -> None:
        super().__init__(device_id, model=model or "hikvision-isapi")
        self.settings = settings
        self._setup(settings)
        self.alerts = {**DEFAULT_ALERTS, **settings.events}
        self._open: dict[tuple[str, int | None], _Open] = {}
        self._lock = threading.Lock()

    def start(self, emit: d.Emit) -> None:
        super().start(emit)
        self._spawn(self._expire_loop, "isapi-expire")

    @property
    def open_alerts(self) -> dict[tuple[str, int | None], m.CameraAlertKind]:
        with self._lock:
            return {key: alert.kind for key, alert in self._open.items()}

    def _event(self, event: Event, ts: datetime | None) -> None:
        name = event.type.lower()
        kind = self.alerts.get(name)
        key = (name, event.channel)
        if kind is None:
            if name != PEOPLE_COUNTING:  # a counting camera's counts go to its counter device
                self._unknown(event)
            return
        if kind == "ignore":
            return
        now = time.monotonic()
        with self._lock:
            alert = self._open.get(key)
            if event.state == "inactive":
                if alert is not None:  # `videoloss` `inactive` with none open: the heartbeat
                    del self._open[key]
                    self._phase(alert, m.AlertPhase.END, ts)
                return
            if alert is None:
                alert = _Open(uuid.uuid4(), m.CameraAlertKind(kind), now, now)
                self._open[key] = alert
                log.info("isapi camera alert device=%s event=%s kind=%s", self.id, event.type,
                         alert.kind.value)  # fmt: skip
                self._phase(alert, m.AlertPhase.START, ts)
                return
            alert.last_active = now
            if now - alert.last_update >= self.settings.update_every_s:
                alert.last_update = now
                self._phase(alert, m.AlertPhase.UPDATE, ts)

    def _expire_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.settings.end_after_s / 2)):
            now = time.monotonic()
            with self._lock:
                done = [key for key, alert in self._open.items()
                        if now - alert.last_active >= self.settings.end_after_s]  # fmt: skip
                for key in done:
                    self._phase(self._open.pop(key), m.AlertPhase.END, None)

    def _phase(self, alert: _Open, phase: m.AlertPhase, ts: datetime | None) -> None:
        # The camera decided; ISAPI events carry no confidence, so the score is 1.
        self._send(d.CameraAlertSeen(self.id, ts=ts, alert_id=alert.alert_id, phase=phase,
                                     kind=alert.kind, score=1.0, zone=self.settings.zone))  # fmt: skip


class IsapiCounter(_IsapiEvents, d.PeopleCounter):
    """A Hikvision people-counting camera: its PeopleCounting events become occupancy."""

    settings: IsapiCounterSettings

    def __init__(
        self, device_id: str, settings: IsapiCounterSettings, model: str | None = None
    ) -> None:
        super().__init__(device_id, model=model or "hikvision-isapi-counter")
        self.settings = settings
        self._setup(settings)
        self.count = 0
        self._totals: tuple[int, int] | None = None  # realTime: the device's running totals

    def _event(self, event: Event, ts: datetime | None) -> None:
        name = event.type.lower()
        if name != PEOPLE_COUNTING:
            if name not in DEFAULT_ALERTS:  # a counting camera's other events are not ours
                self._unknown(event)
            return
        counts = event.data.get("peopleCounting")
        where = f"ISAPI device {self.settings.address}"
        try:
            if not isinstance(counts, dict):
                raise ValueError("no peopleCounting element")
            enter, leave = _count(counts.get("enter")), _count(counts.get("exit"))
            method = str(counts.get("statisticalMethods") or "realTime")
        except ValueError as exc:
            self.health.problem(m.DeviceCondition.BAD_INPUT, "malformed_counts",
                                f"{where}: sent a PeopleCounting event that cannot be read ({exc})")  # fmt: skip
            return
        if method == "realTime":
            # Running totals since the device's own reset (daily, usually): the flow is the
            # difference from the last totals, and totals that went down mean a reset.
            last = self._totals
            if last is None or enter < last[0] or leave < last[1]:
                entered, exited = (0, 0) if last is None else (enter, leave)
            else:
                entered, exited = enter - last[0], leave - last[1]
            self._totals = (enter, leave)
            self.count = max(0, enter - leave)
        else:  # timeRange: the people who came and went within the period
            entered, exited = enter, leave
            self.count = min(1_000_000, max(0, self.count + enter - leave))
        self._send(d.OccupancySeen(self.id, ts=ts, zone=self.settings.zone, count=self.count,
                                   entered=entered, exited=exited))  # fmt: skip


def _count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        raise ValueError(f"a count of {str(value)[:20]!r}")
    if number > 1_000_000:
        raise ValueError(f"a count of {number}, over a million")
    return number
