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
from edge.isapi.picture import small_jpeg
from edge.isapi.reader import EventReader
from edge.isapi.session import IsapiSettings
from edge.isapi.stream import Event, Part
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
    "unattendedbaggage": K.OBJECT_LEFT,  # unattended baggage: an object left behind
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
    snapshots: bool = Field(
        default=True, description="relay the event picture the camera sends as the snapshot"
    )
    snapshot_width: int = Field(default=320, ge=80, le=1280, description="snapshot width, px")
    picture_wait_s: float = Field(
        default=1.0, ge=0, le=10,
        description="hold an alert's start this long for the picture that follows its event",
    )  # fmt: skip

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


@dataclass
class _Open:
    alert_id: uuid.UUID
    kind: m.CameraAlertKind
    last_active: float
    last_update: float


@dataclass
class _Start:
    """An alert's start held for the picture that follows its event part."""

    alert: _Open
    ts: datetime | None
    until: float


class IsapiCamera(EventReader, d.CameraAlertSource):
    """A Hikvision camera whose analytics events become our camera alerts."""

    settings: IsapiCameraSettings
    unknown_hint = "; map it or ignore it in settings.events"

    def __init__(
        self, device_id: str, settings: IsapiCameraSettings, model: str | None = None
    ) -> None:
        super().__init__(device_id, model=model or "hikvision-isapi")
        self.settings = settings
        self.setup(settings)
        self.alerts = {**DEFAULT_ALERTS, **settings.events}
        self._open: dict[tuple[str, int | None], _Open] = {}
        self._held: _Start | None = None
        self._lock = threading.Lock()

    def start(self, emit: d.Emit) -> None:
        super().start(emit)
        self.spawn(self._expire_loop, "isapi-expire")

    def on_event(self, event: Event, ts: datetime | None) -> None:
        name = event.type.lower()
        kind = self.alerts.get(name)
        key = (name, event.channel)
        if kind is None:
            if name != PEOPLE_COUNTING:  # a counting camera's counts go to its counter device
                self.unknown(event)
            return
        if kind == "ignore":
            return
        now = time.monotonic()
        with self._lock:
            self._release(None)  # the part after a start was no picture
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
                if self.settings.snapshots and self.settings.picture_wait_s > 0:
                    self._held = _Start(alert, ts, now + self.settings.picture_wait_s)
                else:
                    self._phase(alert, m.AlertPhase.START, ts)
                return
            alert.last_active = now
            if now - alert.last_update >= self.settings.update_every_s:
                alert.last_update = now
                self._phase(alert, m.AlertPhase.UPDATE, ts)

    def on_image(self, part: Part) -> None:
        with self._lock:
            if self._held is None:
                return  # a picture of nothing we started (or snapshots are off)
            picture = small_jpeg(part.body, self.settings.snapshot_width)
            if picture is None:
                self.health.problem(m.DeviceCondition.BAD_INPUT, "malformed_picture",
                                    f"ISAPI device {self.settings.address}: sent an event picture"
                                    " that is no readable JPEG (the alert goes without)")  # fmt: skip
                self._release(None)
                return
            jpeg, width, height = picture
            snapshot = uuid.uuid4()
            self.send(d.CameraSnapshotSeen(self.id, ts=self._held.ts, message_id=snapshot,
                                           alert_id=self._held.alert.alert_id, width=width,
                                           height=height, jpeg=jpeg))  # fmt: skip
            self._release(snapshot)

    def _release(self, snapshot: uuid.UUID | None) -> None:
        """Send the held start, with its snapshot if one came (the lock held)."""
        held, self._held = self._held, None
        if held is not None:
            self._phase(held.alert, m.AlertPhase.START, held.ts, snapshot)

    def _expire_loop(self) -> None:
        tick = min(0.2, self.settings.end_after_s / 2)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                if self._held is not None and now >= self._held.until:
                    self._release(None)
                done = [key for key, alert in self._open.items()
                        if now - alert.last_active >= self.settings.end_after_s]  # fmt: skip
                for key in done:
                    alert = self._open.pop(key)
                    if self._held is not None and self._held.alert is alert:
                        self._release(None)
                    self._phase(alert, m.AlertPhase.END, None)

    def _phase(
        self,
        alert: _Open,
        phase: m.AlertPhase,
        ts: datetime | None,
        snapshot: uuid.UUID | None = None,
    ) -> None:
        # The camera decided; ISAPI events carry no confidence, so the score is 1.
        self.send(d.CameraAlertSeen(self.id, ts=ts, alert_id=alert.alert_id, phase=phase,
                                    kind=alert.kind, score=1.0, zone=self.settings.zone,
                                    snapshot=None if snapshot is None else str(snapshot)))  # fmt: skip


class IsapiCounter(EventReader, d.PeopleCounter):
    """A Hikvision people-counting camera: its PeopleCounting events become occupancy."""

    settings: IsapiCounterSettings

    def __init__(
        self, device_id: str, settings: IsapiCounterSettings, model: str | None = None
    ) -> None:
        super().__init__(device_id, model=model or "hikvision-isapi-counter")
        self.settings = settings
        self.setup(settings)
        self.count = 0
        self._totals: tuple[int, int] | None = None  # realTime: the device's running totals

    def on_event(self, event: Event, ts: datetime | None) -> None:
        name = event.type.lower()
        if name != PEOPLE_COUNTING:
            if name not in DEFAULT_ALERTS:  # a counting camera's other events are not ours
                self.unknown(event)
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
        self.send(d.OccupancySeen(self.id, ts=ts, zone=self.settings.zone, count=self.count,
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
