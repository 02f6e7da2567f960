"""A Hikvision camera (and people-counting camera) over ISAPI, driven by the behavioural models.

The camera's analytics are a SimCamera: each alert it starts becomes the matching ISAPI event,
sent as `active` parts on the alert stream every `repeat_s` while it lasts (as cameras repeat
them, `activePostCount` rising), and an `inactive` part when it ends, except for line crossing
and intrusion (field) detection, which real cameras send as `active` parts only. Its people
counting is a SimCounter: each of its readings becomes a `PeopleCounting` event with the
running totals (`statisticalMethods` realTime) since the camera's last reset. With `pictures`,
each alert's first event part is followed by an `image/jpeg` part (a frame of a synthetic
scene), as cameras upload the event's picture. Event bodies follow Hikvision's published
EventNotificationAlert schema; the HTTP side, digest
authentication and fault switches are simulators/isapi_http.py's. Tests and scenarios drive it
through `alert`, `event`, `camera` and `counter`; the models' `cut` and `restore` power the
camera off and on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edge import drivers as d
from gateway import messages as m
from simulators.devices import SimCamera, SimCounter, SimDevice
from simulators.engine import Engine, SimClock
from simulators.isapi_http import IsapiServer, part
from simulators.venues import Venue

log = logging.getLogger(__name__)

# Our alert kinds as the camera event that raises them (crowding has no such camera event).
EVENT_OF: dict[m.CameraAlertKind, str] = {
    m.CameraAlertKind.INTRUSION: "fielddetection",
    m.CameraAlertKind.LOITERING: "loitering",
    m.CameraAlertKind.TAMPER_COVERED: "shelteralarm",
    m.CameraAlertKind.TAMPER_BLURRED: "defocus",
    m.CameraAlertKind.TAMPER_MOVED: "scenechangedetection",
}
_NO_INACTIVE = {"linedetection", "fielddetection"}  # pulses: `active` parts only
_DESCRIPTION = {"VMD": "Motion alarm", "linedetection": "linedetection alarm",
                "fielddetection": "fielddetection alarm", "shelteralarm": "shelteralarm alarm",
                "PeopleCounting": "peopleCounting alarm"}  # fmt: skip


class _Powered(SimDevice):
    """A model whose `cut` and `restore` (scenario hooks) power the camera off and on: its
    ISAPI server stops answering, as a camera without power does."""

    power: Callable[[bool], None] | None = None

    def cut(self) -> None:
        super().cut()
        if self.power is not None:
            self.power(False)

    def restore(self) -> None:
        super().restore()
        if self.power is not None:
            self.power(True)


class _Camera(_Powered, SimCamera):
    pass


class _QuietCamera(_Camera):
    """A SimCamera without spontaneous alerts: only what it is told."""

    def plan(self, now: object) -> None:
        pass


class _Counter(_Powered, SimCounter):
    pass


class HikvisionCamera:
    """One ISAPI camera on 127.0.0.1:`port`; with `counter_id`, a people-counting camera too.
    A fleet passes its `engine` and `venue` (and `quiet=False` for the models' own alerts)."""

    def __init__(
        self,
        port: int = 0,
        *,
        device_id: str = "camera-1",
        counter_id: str | None = None,
        password: str = "Hik-12345",
        repeat_s: float = 1.0,
        heartbeat_s: float = 10.0,
        report_every_s: float = 5.0,
        engine: Engine | None = None,
        venue: Venue | None = None,
        pictures: bool = False,
        quiet: bool = True,
        seed: int = 1,
    ) -> None:
        model = "iDS-2CD6810F/C" if counter_id else "DS-2CD2T47G2-L"
        self.server = IsapiServer(port, password=password, model=model,
                                  heartbeat_s=heartbeat_s)  # fmt: skip
        self.repeat_s = repeat_s
        self.pictures = pictures  # a JPEG part after each alert's first event part
        self._picture: bytes | None = None
        self._own_engine = engine is None
        self.engine = engine or Engine(SimClock(1.0))
        venue = venue or Venue(site="sim", node="sim", secret="", kind="community_centre",
                               capacity=200, open_24h=True)  # fmt: skip
        # Quiet: only what tests and scenarios tell it; else the model's own alerts as well.
        behaviour = _QuietCamera if quiet else _Camera
        self.camera: SimCamera = behaviour(device_id, venue, self.engine, seed=seed,
                                           report_every_s=3600)  # fmt: skip
        self.camera.power = self._power
        self.counter: SimCounter | None = None
        if counter_id:
            self.counter = _Counter(counter_id, venue, self.engine, seed=seed,
                                    report_every_s=report_every_s)  # fmt: skip
            self.counter.power = self._power
        self.totals = [0, 0]  # people counted in and out since the camera's last reset
        self._active: dict[str, str] = {}  # event type → description, while it lasts
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._repeater = threading.Thread(target=self._repeat, name="isapi-cam-sim", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> HikvisionCamera:
        self.server.start()
        if self.pictures:
            self.picture()  # rendered once, before any alert
        if self._own_engine:
            self.engine.start()
        self.camera.start(self._reading)
        if self.counter is not None:
            self.counter.start(self._reading)
        self._repeater.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.camera.stop()
        if self.counter is not None:
            self.counter.stop()
        if self._own_engine:
            self.engine.stop()
        self.server.stop()
        self._repeater.join(5)

    # --- scenario hooks -------------------------------------------------------------------------

    def alert(self, kind: m.CameraAlertKind | str, seconds: float = 30) -> None:
        """The camera's analytics raise `kind` for `seconds` (through the SimCamera)."""
        self.camera.alert(kind, seconds)

    def event(self, event_type: str, state: str = "active") -> None:
        """One event part as it is, by its ISAPI name (VMD, linedetection, regionEntrance…)."""
        self.server.publish(self.server.alert(event_type, state,
                                              description=_DESCRIPTION.get(event_type)))  # fmt: skip

    def _power(self, on: bool) -> None:
        """The camera (both models: one device) loses power or gets it back."""
        with self._lock:
            if on and not self.server.serving:
                self.server.serve()
            elif not on and self.server.serving:
                self.server.halt()

    def picture(self) -> bytes:
        """The camera's event picture: a frame of a synthetic intrusion scene, full size."""
        if self._picture is None:
            import cv2

            from simulators.scenes import intrusion_scene

            scene = intrusion_scene(1)
            ok, data = cv2.imencode(".jpg", scene.frame(int(scene.fps * 40)))
            assert ok
            self._picture = data.tobytes()
        return self._picture

    def reset_counts(self) -> None:
        """The camera's daily reset of its counting totals."""
        with self._lock:
            self.totals = [0, 0]

    # --- the models' readings, as ISAPI events --------------------------------------------------

    def _reading(self, reading: d.Reading) -> None:
        match reading:
            case d.CameraAlertSeen(kind=kind, phase=phase):
                name = EVENT_OF.get(kind)
                if name is None:
                    log.info("isapi camera sim: no camera event for %s (not sent)", kind.value)
                    return
                if phase is m.AlertPhase.START:
                    body = self.server.alert(name, "active", description=_DESCRIPTION.get(name))
                    raw = part(body)
                    if self.pictures:  # right after its event, in the same write
                        raw += part(self.picture(), "image/jpeg")
                    with self._lock:
                        self.server.inject(raw)
                        self._active[name] = _DESCRIPTION.get(name, f"{name} alarm")
                elif phase is m.AlertPhase.END:
                    with self._lock:
                        self._active.pop(name, None)
                    if name not in _NO_INACTIVE:
                        self._send(name, "inactive")
            case d.OccupancySeen(entered=entered, exited=exited):
                with self._lock:
                    self.totals[0] += entered
                    self.totals[1] += exited
                    enter, leave = self.totals
                counts = (f"<peopleCounting>\n<statisticalMethods>realTime</statisticalMethods>\n"
                          f"<RealTime>\n<time>{self.server.now().replace(microsecond=0).isoformat()}"
                          f"</time>\n</RealTime>\n<enter>{enter}</enter>\n<exit>{leave}</exit>\n"
                          f"<regionsID>1</regionsID>\n</peopleCounting>\n")  # fmt: skip
                self.server.publish(self.server.alert("PeopleCounting", "active",
                                                      description="peopleCounting alarm",
                                                      extra=counts))  # fmt: skip

    def _send(self, name: str, state: str) -> None:
        self.server.publish(self.server.alert(name, state, description=_DESCRIPTION.get(name)))

    def _repeat(self) -> None:
        while not self._stop.wait(self.repeat_s):
            with self._lock:  # held while sending: a start and its picture are not split
                for name in self._active:
                    self._send(name, "active")
