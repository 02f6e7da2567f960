"""`gridwatch simulate` and `gridwatch edge`: simulated venues, or one agent from a site file."""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.drivers import Device
from gateway.client import MqttSettings
from gateway.messages import DeviceKind
from gridwatch import demo
from gridwatch.services import stop_on_signals
from simulators import scenario as scenarios
from simulators.devices import SimDevice, make_device
from simulators.engine import Engine, SimClock
from simulators.fleet import SIMULATED_DRIVER, Fleet
from simulators.scenes import Scene
from simulators.venues import Venue

log = logging.getLogger(__name__)
OPENCV_DRIVER = "opencv"


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
    fleet = Fleet(
        venues_from(creds), broker, Path(args.folder), rate=args.rate, speed=args.speed,
        seed=args.seed, command_key=args.command_key,
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
    return 0


def run_edge(args: argparse.Namespace) -> int:
    """Run one edge agent from its site file until SIGTERM or SIGINT."""
    config = edge_config.load(Path(args.config))
    engine: Engine | None = None
    devices: list[Device] = []
    for dev in config.devices:
        if dev.driver == OPENCV_DRIVER:
            devices.append(_opencv_camera(dev, args.config))
            continue
        if dev.driver != SIMULATED_DRIVER:
            raise edge_config.ConfigError(
                f"{args.config}: devices.{dev.id}.driver: unknown driver {dev.driver!r}"
                f" (available: {SIMULATED_DRIVER}, {OPENCV_DRIVER} for cameras)"
            )
        if engine is None:
            engine = Engine(SimClock(float(dev.settings.get("speed", 1.0))))
        devices.append(_simulated(dev, config, engine))
    agent = EdgeAgent(config, devices)
    if config.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(config.metrics_port)
    stop = stop_on_signals()
    if engine is not None:
        engine.start()
    agent.start()
    try:
        agent.run(stop)
    finally:
        if engine is not None:
            engine.stop()
        agent.stop()
    if agent.fatal is not None:
        raise RuntimeError(agent.fatal)  # one line from `gridwatch`, exit code 1
    return 0


def _opencv_camera(dev: edge_config.DeviceConfig, path: str) -> Device:
    """A camera whose stream the agent analyses itself (edge.vision)."""
    from pydantic import ValidationError

    from edge.vision.camera import AnalyzedCamera
    from edge.vision.config import CameraSettings

    where = f"{path}: devices.{dev.id}"
    if dev.kind is not DeviceKind.CAMERA:
        raise edge_config.ConfigError(f"{where}.driver: {OPENCV_DRIVER} drives cameras only")
    try:
        settings = CameraSettings.model_validate(dev.settings)
    except ValidationError as exc:
        raise edge_config.ConfigError(edge_config.problems(exc, f"{where}.settings.")) from None
    return AnalyzedCamera(dev.id, settings, model=dev.model)


def _simulated(
    dev: edge_config.DeviceConfig, config: edge_config.SiteConfig, engine: Engine
) -> Device:
    s = dev.settings
    venue = Venue(
        site=config.site, node=config.node, secret="", kind=str(s.get("venue_kind", "community_centre")),
        capacity=int(s.get("capacity", 100)), open_24h=bool(s.get("open_24h", False)),
    )  # fmt: skip
    return make_device(
        DeviceKind(dev.kind), dev.id, venue, engine,
        seed=int(s.get("seed", 1)), report_every_s=float(s.get("report_every_s", 10.0)),
    )  # fmt: skip


def _scene(kind: str, seed: int) -> Scene:
    from simulators import scenes

    if kind.startswith("tamper-"):
        return scenes.tamper_scene(seed, kind.removeprefix("tamper-"))  # type: ignore[arg-type]
    make = {"intrusion": scenes.intrusion_scene, "loitering": scenes.loitering_scene,
            "crowd": scenes.crowd_scene, "counting": scenes.counting_scene,
            "quiet": scenes.quiet_scene}[kind]  # fmt: skip
    return make(seed)


def run_scene_write(args: argparse.Namespace) -> int:
    """Render a synthetic camera scene to a video file, with its ground truth beside it."""
    from simulators import scenes

    scene = _scene(args.kind, args.seed)
    video, truth = scenes.write_clip(scene, Path(args.out))
    print(json.dumps({"video": str(video), "truth": str(truth),
                      "camera_settings": scenes.camera_settings(scene, str(video))}, indent=2))  # fmt: skip
    return 0


def run_scene_serve(args: argparse.Namespace) -> int:
    """Serve a synthetic camera scene as a live MJPEG stream until SIGTERM or SIGINT."""
    from simulators import scenes
    from simulators.stream import SceneStream

    scene = _scene(args.kind, args.seed)
    stream = SceneStream(scene, host=args.host, port=args.port).start()
    print(json.dumps({"url": stream.url, "camera_settings": scenes.camera_settings(scene, stream.url)},
                     indent=2), flush=True)  # fmt: skip
    stop = stop_on_signals()
    stop.wait()
    stream.stop()
    return 0
