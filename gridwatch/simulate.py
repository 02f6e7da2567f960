"""`gridwatch simulate` and `gridwatch edge`: simulated venues, or one agent from a site file."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge import config as edge_config
from edge import reconfig
from edge.agent import EdgeAgent
from edge.drivers import Device
from gateway.client import MqttSettings
from gateway.messages import DeviceKind
from gridwatch import demo
from gridwatch.local.services import stop_on_signals
from simulators import scenario as scenarios
from simulators.devices import SimDevice, make_device
from simulators.engine import Engine, SimClock
from simulators.fleet import SIMULATED_DRIVER, Fleet
from simulators.protocol import ProtocolSimulators
from simulators.scenes import Scene
from simulators.venues import Venue

log = logging.getLogger(__name__)
OPENCV_DRIVER = "opencv"
MODBUS_DRIVER = "modbus"
ONVIF_DRIVER = "onvif"
HTTP_SPEAKER_DRIVER = "http"
ISAPI_DRIVER = "isapi"
AVAILABLE_DRIVERS = (
    f"{OPENCV_DRIVER} and {ONVIF_DRIVER} for cameras, {ISAPI_DRIVER} for cameras, counters and"
    f" doors, {MODBUS_DRIVER} for doors, {HTTP_SPEAKER_DRIVER} for speakers, {SIMULATED_DRIVER}"
)


def venues_from(creds: list[demo.NodeCredentials]) -> list[Venue]:
    """Simulated venues for the demo nodes (the credentials file `up` writes)."""
    return [
        Venue(c.site, c.node, c.secret, c.kind, c.capacity, c.open_24h, list(c.devices))
        for c in creds
    ]


def check_scenarios(
    paths: list[Path], creds: list[demo.NodeCredentials]
) -> list[scenarios.Scenario]:
    """Load each scenario and check it against the fleet the credentials make, without starting
    anything: raises ScenarioError naming the file and the step."""
    engine = Engine(SimClock(1.0))  # never started: the devices are only looked at
    devices: dict[str, SimDevice] = {}
    for venue in venues_from(creds):
        for device_id, kind in venue.devices:
            devices[device_id] = make_device(
                DeviceKind(kind), device_id, venue, engine, seed=1, report_every_s=60.0
            )
    nodes = {c.node for c in creds}
    plays = []
    for path in paths:
        play = scenarios.load(path)
        try:
            scenarios.check(play, devices, nodes)
        except scenarios.ScenarioError as exc:
            raise scenarios.ScenarioError(f"{path}: {exc}") from None
        plays.append(play)
    return plays


def run_fleet(args: argparse.Namespace) -> int:
    """Run simulated venues, playing the scenarios, until stopped or the duration is over."""
    creds = demo.read_credentials(Path(args.credentials))
    if not creds:
        raise RuntimeError(f"no node credentials in {args.credentials}: run `gridwatch up` "
                           "first (it registers the demo city and keeps its nodes' secrets)")  # fmt: skip
    if args.venues:
        creds = creds[: args.venues]
    plays = [scenarios.load(Path(p)) for p in args.scenario]
    broker = MqttSettings(host=args.broker_host, port=args.broker_port)
    protocol = ProtocolSimulators() if args.devices == "protocol" else None
    fleet = Fleet(
        venues_from(creds), broker, Path(args.folder), rate=args.rate, speed=args.speed,
        seed=args.seed, command_key=args.command_key,
        serve=protocol.serve if protocol else None, build=hardware_driver if protocol else None,
    )  # fmt: skip
    for play in plays:
        scenarios.check(play, fleet.devices, set(fleet.agents))
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    stop = stop_on_signals()
    fleet.start()
    threads = [
        threading.Thread(
            target=scenarios.run, args=(play, fleet.devices, fleet.cut_link, stop), daemon=True
        )
        for play in plays
    ]
    for t in threads:
        t.start()
    try:
        stop.wait(args.duration or None)
    finally:
        stop.set()
        fleet.stop()
        if protocol is not None:
            protocol.stop()
    return 0


class SimulatedSettings(BaseModel):
    """The `settings` of a device with the `simulated` driver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    venue_kind: str = Field(default="community_centre", description="whose daily curve it follows")
    capacity: int = Field(default=100, gt=0, description="people the venue holds")
    open_24h: bool = False
    seed: int = Field(default=1, description="the same seed gives the same behaviour")
    report_every_s: float = Field(default=10.0, gt=0, description="seconds between reports")
    speed: float = Field(
        default=1.0, gt=0, description="simulated time runs this much faster (the first sets it)"
    )


class Drivers:
    """Builds the driver of each device from its site-file entry (or a pushed configuration):
    `simulated` for every kind, `opencv` for cameras. A device that cannot be driven is a
    ConfigError naming it."""

    def __init__(self, config: edge_config.SiteConfig, where: str) -> None:
        self.site, self.node, self.where = config.site, config.node, where
        self.state_dir = config.outbox.path.parent  # what drivers learn is kept beside the outbox
        self.engine: Engine | None = None
        self._started = False

    def build(self, dev: edge_config.DeviceConfig) -> Device:
        if dev.driver != SIMULATED_DRIVER:
            return hardware_driver(dev, self.where, self.state_dir)
        try:
            settings = SimulatedSettings.model_validate(dev.settings)
        except ValidationError as exc:
            raise edge_config.ConfigError(
                edge_config.problems(exc, f"{self.where}devices.{dev.id}.settings.")
            ) from None
        if self.engine is None:
            self.engine = Engine(SimClock(settings.speed))
            if self._started:
                self.engine.start()
        return _simulated(dev, settings, self.site, self.node, self.engine)

    def start(self) -> None:
        self._started = True
        if self.engine is not None:
            self.engine.start()

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()


Kinds = dict[DeviceKind, tuple[type[BaseModel], Callable[..., Device]]]


def _opencv() -> Kinds:
    """Cameras whose stream the agent analyses itself (edge.vision)."""
    from edge.vision.camera import AnalyzedCamera
    from edge.vision.config import CameraSettings

    return {DeviceKind.CAMERA: (CameraSettings, AnalyzedCamera)}


def _onvif() -> Kinds:
    """ONVIF cameras: their own detectors' events, their stream to the analytics."""
    from edge.onvif.camera import OnvifCamera, OnvifCameraSettings

    return {DeviceKind.CAMERA: (OnvifCameraSettings, OnvifCamera)}


def _isapi() -> Kinds:
    """Hikvision devices over ISAPI, by kind."""
    from edge.isapi import access, camera

    return {
        DeviceKind.CAMERA: (camera.IsapiCameraSettings, camera.IsapiCamera),
        DeviceKind.COUNTER: (camera.IsapiCounterSettings, camera.IsapiCounter),
        DeviceKind.DOOR: (access.IsapiDoorSettings, access.IsapiDoor),
    }


def _modbus() -> Kinds:
    """Doors on Modbus TCP IO modules."""
    from edge.modbus import ModbusDoor, ModbusDoorSettings

    return {DeviceKind.DOOR: (ModbusDoorSettings, ModbusDoor)}


def _http() -> Kinds:
    """IP speakers and PA hosts driven by templated HTTP requests."""
    from edge.speaker_http import HttpSpeaker, HttpSpeakerSettings

    return {DeviceKind.SPEAKER: (HttpSpeakerSettings, HttpSpeaker)}


# Each hardware driver: what it drives, imported only when a device uses it (OpenCV, zeep).
_LEARNING = (OPENCV_DRIVER, ONVIF_DRIVER)  # drivers whose analytics learn a perspective
HARDWARE: dict[str, Callable[[], Kinds]] = {
    OPENCV_DRIVER: _opencv, ONVIF_DRIVER: _onvif, ISAPI_DRIVER: _isapi,
    MODBUS_DRIVER: _modbus, HTTP_SPEAKER_DRIVER: _http,
}  # fmt: skip


def hardware_driver(
    dev: edge_config.DeviceConfig, where: str = "", state_dir: Path | None = None
) -> Device:
    """The driver of a device on real hardware (any driver but `simulated`), from its site-file
    entry; ConfigError naming the device and the field when it cannot be driven. Cameras the
    agent analyses keep what they learn in `state_dir`."""
    at = f"{where}devices.{dev.id}"
    load = HARDWARE.get(dev.driver)
    if load is None:
        raise edge_config.ConfigError(
            f"{at}.driver: unknown driver {dev.driver!r} (available: {AVAILABLE_DRIVERS})"
        )
    kinds = load()
    if dev.kind not in kinds:
        *most, last = [f"{kind.value}s" for kind in kinds]
        names = f"{', '.join(most)} and {last}" if most else last
        raise edge_config.ConfigError(f"{at}.driver: {dev.driver} drives {names} only")
    settings_class, make = kinds[dev.kind]
    try:
        settings = settings_class.model_validate(dev.settings)
    except ValidationError as exc:
        raise edge_config.ConfigError(edge_config.problems(exc, f"{at}.settings.")) from None
    if dev.driver in _LEARNING:
        return make(dev.id, settings, model=dev.model, state_dir=state_dir)
    return make(dev.id, settings, model=dev.model)


def run_edge(args: argparse.Namespace) -> int:
    """Run one edge agent from its site file until SIGTERM or SIGINT; with --enrol, get the site
    file from the platform first (once: a later start uses the file written)."""
    path = Path(args.config) if args.config else None
    if args.enrol:
        from gridwatch import enrolment

        path = enrolment.enrol_once(args, path)
    if path is None:
        raise ValueError("give the site file (--config FILE), or --enrol CODE --platform URL")
    config = reconfig.effective(edge_config.load(path))
    drivers = Drivers(config, f"{path}: ")
    devices = [drivers.build(dev) for dev in config.devices]
    drivers.where = ""  # a pushed configuration's problems name the device, not the file
    agent = EdgeAgent(config, devices, drivers=drivers.build)
    if config.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(config.metrics_port)
    stop = stop_on_signals()
    drivers.start()
    agent.start()
    try:
        agent.run(stop)
    finally:
        agent.stop()
        drivers.stop()
    if agent.fatal is not None:
        raise RuntimeError(agent.fatal)  # one line from `gridwatch`, exit code 1
    return 0


def _simulated(
    dev: edge_config.DeviceConfig, s: SimulatedSettings, site: str, node: str, engine: Engine
) -> Device:
    venue = Venue(site=site, node=node, secret="", kind=s.venue_kind, capacity=s.capacity,
                  open_24h=s.open_24h)  # fmt: skip
    return make_device(
        DeviceKind(dev.kind), dev.id, venue, engine, seed=s.seed, report_every_s=s.report_every_s
    )


def _scene(kind: str, seed: int) -> Scene:
    from simulators import scenes

    return scenes.KINDS[kind](seed)


def run_scene_write(args: argparse.Namespace) -> int:
    """Render a synthetic camera scene to a video file, with its ground truth beside it."""
    from simulators import scenes

    scene = _scene(args.kind, args.seed)
    write = scenes.write_h264 if args.h264 else scenes.write_clip
    video, truth = write(scene, Path(args.out))
    print(json.dumps({"video": str(video), "truth": str(truth),
                      "camera_settings": scenes.camera_settings(scene, str(video))}, indent=2))  # fmt: skip
    return 0


def run_scene_serve(args: argparse.Namespace) -> int:
    """Serve a synthetic camera scene as a live stream (MJPEG over HTTP, or RTSP with --rtsp)
    until SIGTERM or SIGINT."""
    from simulators import scenes
    from simulators.rtsp import RtspServer
    from simulators.stream import SceneStream

    scene = _scene(args.kind, args.seed)
    server: RtspServer | SceneStream
    if args.rtsp:
        password = os.environ.get("GRIDWATCH_SCENE_PASSWORD") or secrets.token_urlsafe(12)
        server = RtspServer(scene, args.host, args.port, args.user, password)
        url = server.start()
    else:
        server = SceneStream(scene, host=args.host, port=args.port).start()
        url = server.url
    print(json.dumps({"url": url, "camera_settings": scenes.camera_settings(scene, url)},
                     indent=2), flush=True)  # fmt: skip
    stop = stop_on_signals()
    stop.wait()
    server.stop()
    return 0
