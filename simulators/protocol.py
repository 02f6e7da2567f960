"""The demo fleet through protocol-true simulators (`gridwatch up --devices protocol`).

Each behavioural model a fleet builds (the SimDoor, SimCounter, SimCamera or SimSpeaker that
scenarios drive) is put behind the simulator of a real device's protocol, on loopback, and the
venue's agent gets the real driver pointed at it: the same path a venue's own hardware takes.
Which protocol each device speaks is chosen here, alternating where several exist, so that one
demo exercises all of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from edge.config import DeviceConfig
from gateway.messages import DeviceKind
from simulators.devices import SimCamera, SimCounter, SimDevice, SimDoor, SimSpeaker

log = logging.getLogger(__name__)


class Simulator(Protocol):
    """A protocol simulator wrapping one model."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def driver_settings(self) -> dict[str, object]: ...


def _modbus(model: SimDevice) -> tuple[str, Simulator]:
    from simulators.modbus_io import IoModule

    assert isinstance(model, SimDoor)
    return "modbus", IoModule(door=model)


def _onvif(model: SimDevice) -> tuple[str, Simulator]:
    from simulators.onvif_camera import OnvifCameraSim

    assert isinstance(model, SimCamera)
    return "onvif", OnvifCameraSim(camera=model, camera_id=model.id)


def _http_speaker(model: SimDevice) -> tuple[str, Simulator]:
    from simulators.http_speaker import HttpSpeakerSim

    assert isinstance(model, SimSpeaker)
    return "http", HttpSpeakerSim(speaker=model)


def _isapi(model: SimDevice) -> tuple[str, Simulator]:
    from simulators.isapi_camera import HikvisionCamera

    if isinstance(model, SimCamera):
        return "isapi", HikvisionCamera(camera=model, pictures=True)
    assert isinstance(model, SimCounter)
    return "isapi", HikvisionCamera(counter=model)


def _isapi_door(model: SimDevice) -> tuple[str, Simulator]:
    from simulators.isapi_access import AccessController

    assert isinstance(model, SimDoor)
    return "isapi", AccessController(door=model)


# For each kind, the protocols it is served by, in turn.
Factory = Callable[[SimDevice], tuple[str, Simulator]]
PROTOCOLS: dict[DeviceKind, list[Factory]] = {
    DeviceKind.DOOR: [_modbus, _isapi_door],
    DeviceKind.CAMERA: [_isapi, _onvif],
    DeviceKind.COUNTER: [_isapi],
    DeviceKind.SPEAKER: [_http_speaker],
}


class ProtocolSimulators:
    """Starts a simulator per model and gives the site-file entry of the driver that reads it."""

    def __init__(self) -> None:
        self.running: list[Simulator] = []
        self._turn: dict[DeviceKind, int] = {}
        self._lock = threading.Lock()

    def serve(self, model: SimDevice) -> DeviceConfig | None:
        """Put `model` behind a simulator; None when no protocol serves its kind (it then stays
        an in-process simulated device)."""
        kind = model.kind
        factories = PROTOCOLS.get(kind)
        if not factories:
            return None
        with self._lock:
            turn = self._turn.get(kind, 0)
            self._turn[kind] = turn + 1
        driver, sim = factories[turn % len(factories)](model)
        sim.start()
        self.running.append(sim)
        log.info("protocol simulator device=%s driver=%s", model.id, driver)
        return DeviceConfig(id=model.id, kind=kind, driver=driver, model=model.model,
                            settings=sim.driver_settings())  # fmt: skip

    def stop(self) -> None:
        for sim in reversed(self.running):
            try:
                sim.stop()
            except Exception:  # one simulator failing to stop must not keep the others running
                log.exception("protocol simulator did not stop cleanly")
        self.running.clear()
