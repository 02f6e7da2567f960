"""What every `isapi` device driver shares: hello, the alert stream, bad parts, health.

A driver mixes `EventReader` into its `edge.drivers` class, calls `setup(settings)` in its
`__init__`, and implements `on_event`; `connected` runs each time the stream (re)opens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, tzinfo

from prometheus_client import Counter

from edge import drivers as d
from edge.health import Health, Reporting
from edge.isapi.session import IsapiRefused, IsapiSession, IsapiSettings, IsapiUnavailable
from edge.isapi.stream import BadPart, Event, Part, decode, parse_time, xml_fields
from gateway import messages as m

log = logging.getLogger(__name__)

PARTS = Counter(
    "gridwatch_edge_isapi_parts_total",
    "Alert-stream parts read from ISAPI devices: event, image or bad (dropped)",
    ["device", "part"],
)


class EventReader(Reporting):
    """What every ISAPI device driver shares (mixed into a `edge.drivers.Device` subclass):
    say hello (device info and clock), then read the alert stream and hand each event, decoded
    and with its time checked, to `on_event`. Bad parts are reported here."""

    settings: IsapiSettings
    id: str
    unknown_hint = ""  # what the operator can do about an unmapped event type

    def setup(self, settings: IsapiSettings) -> None:
        """Call from `__init__`, after `self.id` is set."""
        self.health = Health(self.id, clock_limit_s=settings.clock_limit_s)
        self.session = IsapiSession(settings, self.health)
        self.device_model: str | None = None
        self._zone: tzinfo | None = None  # the device's UTC offset, for times sent without one
        self._emit: d.Emit | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, emit: d.Emit) -> None:
        self._emit = emit
        self.health.attach(emit)
        self.spawn(self._run, "isapi")

    def stop(self) -> None:
        self._stop.set()
        self.session.close()  # ends a blocked stream read at once
        for thread in self._threads:
            thread.join(10)

    def spawn(self, target: Callable[[], None], name: str) -> None:
        """A thread of the driver's, joined on `stop`."""
        thread = threading.Thread(target=target, name=f"{name}-{self.id}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def send(self, reading: d.Reading) -> None:
        if self._emit is not None:
            self._emit(reading)

    def _run(self) -> None:
        wait = 0.5
        while not self._stop.is_set() and not self._hello():
            self._stop.wait(wait)
            wait = min(wait * 2, self.settings.backoff_max_s)
        for part in self.session.events(self._stop, on_open=self.connected):
            try:
                self._part(part)
            except Exception:  # a bug here must not end the device's stream
                log.exception("isapi part failed device=%s", self.id)

    def connected(self) -> None:
        """Each time the alert stream (re)opens: e.g. read the device's state (default: none)."""

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
        local = parse_time(clock.get("localTime"))
        self._zone = local.tzinfo if local is not None else None
        self.health.device_time(local)
        log.info("isapi device answers device=%s host=%s model=%s", self.id,
                 self.settings.address, self.device_model)  # fmt: skip
        return True

    def _part(self, part: Part) -> None:
        where = f"ISAPI device {self.settings.address}"
        if part.problem is not None:
            PARTS.labels(self.id, "bad").inc()
            self.health.problem(m.DeviceCondition.BAD_INPUT, "malformed_part",
                                f"{where}: sent a part that cannot be read ({part.problem})")  # fmt: skip
            return
        if part.is_image:
            PARTS.labels(self.id, "image").inc()
            self.on_image(part)
            return
        try:
            event = decode(part)
        except BadPart as exc:
            PARTS.labels(self.id, "bad").inc()
            self.health.problem(m.DeviceCondition.BAD_INPUT, exc.fault, f"{where}: sent {exc}")
            return
        PARTS.labels(self.id, "event").inc()
        channel = getattr(self.settings, "channel", None)
        if channel is not None and event.channel is not None and event.channel != channel:
            return
        when = event.time
        if when is not None and when.tzinfo is None and self._zone is not None:
            when = when.replace(tzinfo=self._zone)  # some firmware omits the offset
        ts = self.health.device_time(when)
        self.on_event(event, ts)

    def unknown(self, event: Event) -> None:
        """Report an event type the driver has no mapping for (counted, logged, not fatal)."""
        self.health.problem(
            m.DeviceCondition.BAD_INPUT, "unknown_event",
            f"ISAPI device {self.settings.address}: sent an event of type {event.type[:64]!r}"
            f" that has no mapping (dropped){self.unknown_hint}",
        )  # fmt: skip

    def on_image(self, part: Part) -> None:
        """A picture part (it follows the event it shows); default: dropped."""

    def on_event(self, event: Event, ts: datetime | None) -> None:
        """One event of this device's channel; `ts` is None when the device clock is off."""
        raise NotImplementedError
