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
through `alert`, `event`, `camera` and `counter`; a model's `cut` powers the camera off (it
stops answering) until `restore`.
"""

from __future__ import annotations

import logging
import threading
import time

from edge import drivers as d
from gateway import messages as m
from simulators.devices import SimCamera, SimCounter, SimDevice
from simulators.engine import Engine, SimClock
from simulators.isapi_http import IsapiServer, part
from simulators.ports import free_port
from simulators.venues import Venue

log = logging.getLogger(__name__)

# Our alert kinds as the camera event that raises them (crowding has no such camera event).
EVENT_OF: dict[m.CameraAlertKind, str] = {
    m.CameraAlertKind.INTRUSION: "fielddetection",
    m.CameraAlertKind.LOITERING: "loitering",
    m.CameraAlertKind.OBJECT_LEFT: "unattendedBaggage",
    m.CameraAlertKind.TAMPER_COVERED: "shelteralarm",
    m.CameraAlertKind.TAMPER_BLURRED: "defocus",
    m.CameraAlertKind.TAMPER_MOVED: "scenechangedetection",
}
_NO_INACTIVE = {"linedetection", "fielddetection"}  # pulses: `active` parts only
_DESCRIPTION = {"VMD": "Motion alarm", "linedetection": "linedetection alarm",
                "fielddetection": "fielddetection alarm", "shelteralarm": "shelteralarm alarm",
                "PeopleCounting": "peopleCounting alarm"}  # fmt: skip


class _QuietCamera(SimCamera):
    """A SimCamera without spontaneous alerts: only what it is told."""

    def plan(self, now: object) -> None:
        pass


class HikvisionCamera:
    """One ISAPI camera on 127.0.0.1:`port` (0: a free one). Its models: `camera` and `counter`
    when given (a fleet's, which scenarios drive; either may be None), else a quiet camera
    `device_id` and, with `counter_id`, a counter of its own on an engine of its own. A model
    cut (the scenario hook) powers the camera off: it stops answering until restored."""

    def __init__(
        self,
        port: int = 0,
        *,
        device_id: str = "camera-1",
        counter_id: str | None = None,
        camera: SimCamera | None = None,
        counter: SimCounter | None = None,
        password: str = "Hik-12345",
        repeat_s: float = 1.0,
        heartbeat_s: float = 10.0,
        report_every_s: float = 5.0,
        pictures: bool = False,
    ) -> None:
        self.camera: SimCamera | None = camera
        self.counter: SimCounter | None = counter
        self.engine: Engine | None = None  # its own, when it makes its own models
        if camera is None and counter is None:
            self.engine = Engine(SimClock(1.0))
            venue = Venue(site="sim", node="sim", secret="", kind="community_centre",
                          capacity=200, open_24h=True)  # fmt: skip
            self.camera = _QuietCamera(device_id, venue, self.engine, seed=1, report_every_s=3600)
            if counter_id:
                self.counter = SimCounter(counter_id, venue, self.engine, seed=1,
                                          report_every_s=report_every_s)  # fmt: skip
        counting = self.counter is not None
        self.server = IsapiServer(port or free_port(), password=password, heartbeat_s=heartbeat_s,
                                  model="iDS-2CD6810F/C" if counting else "DS-2CD2T47G2-L")  # fmt: skip
        self.repeat_s = repeat_s
        self.pictures = pictures  # a JPEG part after each alert's first event part
        self._picture: bytes | None = None
        self.totals = [0, 0]  # people counted in and out since the camera's last reset
        self._active: dict[str, str] = {}  # event type → description, while it lasts
        self._lock = threading.Lock()
        self._cut = False  # powered off because a model is cut
        self._stop = threading.Event()
        self._repeater = threading.Thread(target=self._repeat, name="isapi-cam-sim", daemon=True)

    @property
    def models(self) -> list[SimDevice]:
        return [model for model in (self.camera, self.counter) if model is not None]

    def driver_settings(self) -> dict[str, object]:
        """The `isapi` driver's site-file settings for this camera (a fleet's protocol mode)."""
        return {"host": "127.0.0.1", "port": self.port, "username": self.server.username,
                "password": self.server.password, "heartbeat_timeout_s": 30.0,
                "timeout_s": 5.0, "backoff_max_s": 10.0}  # fmt: skip

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.server.start()
        if self.pictures:
            self.picture()  # rendered once, before any alert
        if self.engine is not None:
            self.engine.start()
        for model in self.models:
            model.start(self._reading)
        self._repeater.start()

    def stop(self) -> None:
        self._stop.set()
        for model in self.models:
            model.stop()
        if self.engine is not None:
            self.engine.stop()
        self.server.stop()
        self._repeater.join(5)

    # --- scenario hooks -------------------------------------------------------------------------

    def alert(self, kind: m.CameraAlertKind | str, seconds: float = 30) -> None:
        """The camera's analytics raise `kind` for `seconds` (through the SimCamera)."""
        assert self.camera is not None, "a counter-only camera has no alerts"
        self.camera.alert(kind, seconds)

    def event(self, event_type: str, state: str = "active") -> None:
        """One event part as it is, by its ISAPI name (VMD, linedetection, regionEntrance…)."""
        self.server.publish(self.server.alert(event_type, state,
                                              description=_DESCRIPTION.get(event_type)))  # fmt: skip

    def _power(self) -> None:
        """Off while a model is cut (one device: either cuts it), on again when restored."""
        off = any(model.offline for model in self.models)
        if off and not self._cut:
            self._cut = True
            log.info("isapi camera sim powered off port=%d", self.port)
            self.server.halt()
        elif not off and self._cut:  # a halt by hand (tests) stays until serve()
            self._cut = False
            log.info("isapi camera sim powered on port=%d", self.port)
            self.server.serve()

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
        due = time.monotonic() + self.repeat_s
        while not self._stop.wait(0.2):
            self._power()
            if time.monotonic() < due:
                continue
            due += self.repeat_s
            with self._lock:  # held while sending: a start and its picture are not split
                for name in self._active:
                    self._send(name, "active")
