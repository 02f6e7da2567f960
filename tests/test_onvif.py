"""The `onvif` camera driver against an ONVIF camera simulator (simulators/onvif_camera.py) over
real HTTP and SOAP, end to end through the real broker and platform."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from prometheus_client import REGISTRY

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.onvif import events
from edge.onvif.camera import OnvifCamera
from edge.onvif.events import TOPICS_NS as TNS1
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import ONVIF_DRIVER, hardware_driver
from simulators.onvif_camera import OnvifCameraSim
from tests.edge_support import site_agent
from tests.support import device_of, rows, scalar, wait_until

FIELD_RULE = "MyFieldDetectorRule"


@dataclass
class Venue:
    sim: OnvifCameraSim
    camera: OnvifCamera
    agent: EdgeAgent
    stack: LocalStack

    def health(self) -> tuple[Any, ...] | None:
        """The platform's latest device.health of the camera: online, condition, detail,
        faults, clock offset."""
        query = """SELECT online, condition, detail, faults, clock_offset_s FROM device_health
                   WHERE device_id = %s ORDER BY seq DESC LIMIT 1"""
        found = rows(self.stack.dsn, query, (self.camera.id,))
        return tuple(found[0]) if found else None

    def condition(self) -> str | None:
        health = self.health()
        return None if health is None else str(health[1])

    def alerts(self, phase: str, zone: str) -> int:
        query = """SELECT count(*) FROM camera_alerts WHERE device_id = %s AND phase = %s
                   AND zone = %s"""
        return int(str(scalar(self.stack.dsn, query, (self.camera.id, phase, zone))))

    def faults(self, fault: str) -> float:
        labels = {"device": self.camera.id, "fault": fault}
        return REGISTRY.get_sample_value("gridwatch_edge_device_faults_total", labels) or 0.0


Start = Callable[..., Venue]


@pytest.fixture
def start(stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path) -> Iterator[Start]:
    """Node 0 with its camera on a simulated ONVIF camera (the other devices simulated, quiet);
    `start(sim_options, settings)` starts it, after changing the simulator if asked."""
    with contextlib.ExitStack() as started:  # closed last first: each agent, then its camera

        def begin(
            settings: dict[str, Any] | None = None,
            before: Callable[[OnvifCameraSim], None] | None = None,
            **sim_options: Any,
        ) -> Venue:
            creds = nodes[0]
            camera_id = device_of(creds, "camera")
            sim = OnvifCameraSim(username="gridwatch", password="camera-pass-1",
                                 camera_id=camera_id, **sim_options)  # fmt: skip
            if before is not None:
                before(sim)
            sim.start()
            started.callback(sim.stop)
            driver_settings = {
                "host": "127.0.0.1", "port": sim.port, "username": "gridwatch",
                "password": "camera-pass-1", "timeout_s": 3, "slow_s": 1,
                "pull_timeout_s": 1, "subscription_s": 6, "backoff_max_s": 1,
                **(settings or {}),
            }  # fmt: skip
            hardware = {camera_id: (ONVIF_DRIVER, driver_settings)}
            site = started.enter_context(site_agent(stack, creds, tmp_path / "edge", hardware))
            camera = site.devices[camera_id]
            assert isinstance(camera, OnvifCamera)
            wait_until(site.agent.watch.connected.is_set, 30, "agent up")
            return Venue(sim, camera, site.agent, stack)

        yield begin


def _subscribed(venue: Venue, count: int = 1) -> None:
    wait_until(lambda: venue.camera.subscriptions >= count and venue.sim.subscriptions >= 1,
               30, "subscribed")  # fmt: skip


def test_detector_events_become_stored_alerts_and_incidents(start: Start, ingest: object) -> None:
    venue = start()
    dsn = venue.stack.dsn
    _subscribed(venue)
    wait_until(lambda: venue.condition() == "ok", 30, "the camera healthy on the platform")
    venue.sim.detect("field", True)  # someone walks into the field detector's area
    wait_until(lambda: venue.alerts("start", FIELD_RULE) == 1, 30, "intrusion start stored")
    incident = """SELECT count(*) FROM incidents WHERE rule = 'camera_intrusion'
                  AND device_id = %s AND detail->>'zone' = %s"""
    wait_until(lambda: scalar(dsn, incident, (venue.camera.id, FIELD_RULE)) == 1, 30, "incident")
    venue.sim.detect("field", False)
    wait_until(lambda: venue.alerts("end", FIELD_RULE) == 1, 30, "intrusion end stored")
    same = """SELECT count(DISTINCT alert_id) FROM camera_alerts WHERE device_id = %s
              AND zone = %s"""
    assert scalar(dsn, same, (venue.camera.id, FIELD_RULE)) == 1  # one alert: start and end
    venue.sim.line_crossed("GateLine")  # an event, not a state: an alert started and ended
    wait_until(lambda: venue.alerts("end", "GateLine") == 1, 30, "line crossing stored")
    assert venue.alerts("start", "GateLine") == 1
    # The behavioural camera covered for a while: ImageTooDark, then clear again.
    venue.sim.model.tamper("tamper_covered", seconds=2)
    tamper = """SELECT phase FROM camera_alerts WHERE device_id = %s AND kind = 'tamper_covered'
                ORDER BY ts, phase DESC"""
    wait_until(lambda: [r[0] for r in rows(dsn, tamper, (venue.camera.id,))] == ["start", "end"],
               30, "tamper start and end stored")  # fmt: skip
    tamper_incident = (
        "SELECT count(*) FROM incidents WHERE rule = 'camera_tamper' AND device_id = %s"
    )
    wait_until(lambda: scalar(dsn, tamper_incident, (venue.camera.id,)) == 1, 30, "tamper incident")
    assert venue.sim.refused == 0, "every request carried a good UsernameToken"


def test_the_subscription_is_renewed_and_comes_back_after_the_camera_restarts(
    start: Start, ingest: object
) -> None:
    venue = start()
    _subscribed(venue)
    wait_until(lambda: venue.camera.renewals >= 2, 30, "renewed before its term ran out")
    assert "Renew" in venue.sim.requests and venue.camera.subscriptions == 1
    lost = venue.faults("subscription_lost")
    venue.sim.restart()  # a reboot: the camera forgets every subscription
    wait_until(lambda: venue.camera.subscriptions == 2, 30, "subscribed again")
    assert venue.faults("subscription_lost") == lost + 1
    venue.sim.detect("field", True)
    wait_until(lambda: venue.alerts("start", FIELD_RULE) == 1, 30, "events flow again")
    venue.sim.restart(down_s=3)  # powered off a while: refused connections, then back
    wait_until(lambda: venue.health() is not None and venue.health()[:2] == (False, "unreachable"),  # type: ignore[index]
               30, "the platform shows the camera unreachable")  # fmt: skip
    wait_until(lambda: venue.camera.subscriptions >= 3, 30, "subscribed after the power cut")
    wait_until(lambda: venue.condition() == "ok", 30, "healthy again")
    # The new subscription's Initialized message still has the field detector on: no new alert.
    venue.sim.detect("field", False)
    wait_until(lambda: venue.alerts("end", FIELD_RULE) == 1, 30, "the alert ends once")
    assert venue.alerts("start", FIELD_RULE) == 1
    assert venue.agent.fatal is None
    venue.camera.stop()  # the driver stopping ends its subscription on the camera
    assert venue.sim.requests[-1] == "Unsubscribe" and venue.sim.subscriptions == 0


def test_the_stream_uri_is_found_and_given_to_the_analytics(start: Start, ingest: object) -> None:
    from simulators import scenes
    from simulators.stream import SceneStream

    scene = scenes.intrusion_scene(4)
    stream = SceneStream(scene).start()
    try:
        analytics = {k: v for k, v in scenes.camera_settings(scene, stream.url).items()
                     if k != "source"}  # fmt: skip
        venue = start({"analytics": analytics}, stream_uri=stream.url)
        wait_until(lambda: venue.camera.stream_uri == stream.url, 30, "GetStreamUri answered")
        assert venue.sim.requests.index("GetProfiles") < venue.sim.requests.index("GetStreamUri")
        wait_until(lambda: getattr(venue.camera.analyzer, "frames", 0) > 5, 30, "frames analysed")
        status = "SELECT bool_and(online) FROM camera_status WHERE device_id = %s"
        wait_until(lambda: scalar(venue.stack.dsn, status, (venue.camera.id,)) is True, 30,
                   "the analysed stream reported online")  # fmt: skip
        started = """SELECT count(*) FROM camera_alerts WHERE device_id = %s AND phase = 'start'
                     AND kind = 'intrusion' AND zone = %s"""
        zone = scenes.RESTRICTED.name
        wait_until(lambda: int(str(scalar(venue.stack.dsn, started, (venue.camera.id, zone)))) >= 1,
                   60, "the analytics' intrusion stored")  # fmt: skip
    finally:
        stream.stop()


def test_the_rtsp_stream_from_get_stream_uri_is_opened_with_the_camera_account(
    start: Start, ingest: object
) -> None:
    """GetStreamUri gives an RTSP URI without the account, as cameras do; the driver adds the
    camera's account for the analytics, and the RTSP camera (digest) lets them in."""
    from simulators import scenes
    from simulators.rtsp import RtspServer

    scene = scenes.intrusion_scene(4)
    server = RtspServer(scene, username="gridwatch", password="camera-pass-1")
    server.start()
    try:
        analytics = {k: v for k, v in scenes.camera_settings(scene, "").items() if k != "source"}
        venue = start({"analytics": analytics}, stream_uri=server.stream_uri)
        wait_until(lambda: venue.camera.stream_uri == server.stream_uri, 30, "the RTSP URI")
        assert "@" not in server.stream_uri
        wait_until(lambda: getattr(venue.camera.analyzer, "frames", 0) > 5, 60, "RTSP frames")
        status = "SELECT bool_and(online) FROM camera_status WHERE device_id = %s"
        wait_until(lambda: scalar(venue.stack.dsn, status, (venue.camera.id,)) is True, 30,
                   "the RTSP stream reported online")  # fmt: skip
    finally:
        server.stop()


def test_a_camera_that_allows_shorter_pulls_is_asked_within_its_limits(
    start: Start, ingest: object
) -> None:
    def strict(sim: OnvifCameraSim) -> None:
        sim.max_pull_s, sim.max_messages = 0.5, 4  # below the driver's 1 s and 32

    venue = start(before=strict)
    _subscribed(venue)
    for _ in range(6):  # more than one answer holds
        venue.sim.line_crossed("Busy")
    wait_until(lambda: venue.alerts("end", "Busy") >= 1, 30, "events within the limits")
    assert (venue.camera.pull_s, venue.camera.pull_limit) == (0.5, 4)
    assert venue.camera.subscriptions == 1, "the limits are no reason to subscribe again"
    assert venue.condition() == "ok"


def test_a_media_profile_the_camera_lacks_is_shown_and_its_events_still_come(
    start: Start, ingest: object
) -> None:
    venue = start({"profile": "no_such_profile", "analytics": {}})
    _subscribed(venue)
    wait_until(lambda: "no media profile 'no_such_profile' (it has profile_1)"
               in str((venue.health() or ())[2:3]), 30, "the missing profile shown")  # fmt: skip
    assert venue.camera.analyzer is None and "GetStreamUri" not in venue.sim.requests
    venue.sim.detect("field", True)
    wait_until(lambda: venue.alerts("start", FIELD_RULE) == 1, 30, "events still relayed")


def test_garbled_answers_and_unknown_topics_are_counted_shown_and_events_go_on(
    start: Start, ingest: object
) -> None:
    venue = start()
    _subscribed(venue)
    wait_until(lambda: venue.condition() == "ok", 30, "healthy first")
    venue.sim.inject(b"<env:Envelope><unclosed")  # a PullMessages answer that is not XML
    wait_until(lambda: venue.faults("malformed_xml") >= 1, 30, "the garbled answer counted")
    wait_until(lambda: venue.condition() == "bad_input", 30, "shown as bad input")
    health = venue.health()
    assert health is not None and health[0] is True and "is not" in str(health[2])
    venue.sim.event("RuleEngine/MyVendor/Thing", {"Rule": "X"}, {"State": "true"}, "Changed")
    wait_until(lambda: venue.faults("unknown_event") >= 1, 30, "the unknown topic counted")
    wait_until(lambda: "tns1:RuleEngine/MyVendor/Thing" in str((venue.health() or ())[2:3]), 30,
               "the unknown topic shown with its name")  # fmt: skip
    # A notification without its state and a topic in another namespace are no alerts either.
    venue.sim.event("RuleEngine/FieldDetector/ObjectsInside", {"Rule": "NoState"}, {}, "Changed")
    venue.sim.event("VideoSource/MotionAlarm", {"Source": "x"}, {"State": "true"}, "Changed",
                    prefix="vendor")  # fmt: skip
    venue.sim.detect("field", True)
    wait_until(lambda: venue.alerts("start", FIELD_RULE) == 1, 30, "events still go through")
    assert venue.alerts("start", "NoState") == 0 and venue.alerts("start", "x") == 0
    assert venue.camera.subscriptions == 1, "one garbled answer does not end the subscription"
    assert venue.agent.fatal is None and venue.agent.watch.connected.is_set()


def test_an_answer_broken_off_half_way_is_counted_and_the_camera_followed_again(
    start: Start, ingest: object
) -> None:
    venue = start()
    _subscribed(venue)
    venue.sim.cut_next()  # the next PullMessages answer stops half-way, the connection closes
    wait_until(lambda: venue.faults("stream_closed") >= 1, 30, "the broken answer counted")
    wait_until(lambda: venue.camera.subscriptions >= 2, 30, "connected and subscribed again")
    wait_until(lambda: venue.condition() == "ok", 30, "healthy again")
    stored = "SELECT count(*) FROM device_health WHERE device_id = %s AND detail LIKE %s"
    broken = "%closed in the middle of the answer"
    assert int(str(scalar(venue.stack.dsn, stored, (venue.camera.id, broken)))) >= 1
    venue.sim.detect("field", True)
    wait_until(lambda: venue.alerts("start", FIELD_RULE) == 1, 30, "events relayed again")
    assert venue.agent.fatal is None


def test_a_camera_clock_hours_off_is_shown_and_its_events_carry_the_agent_time(
    start: Start, ingest: object
) -> None:
    def three_hours_ahead(sim: OnvifCameraSim) -> None:
        sim.clock_offset_s = 3 * 3600

    venue = start(before=three_hours_ahead)
    _subscribed(venue)  # tokens dated by the camera's clock: accepted
    assert venue.sim.refused == 0
    wait_until(lambda: venue.condition() == "clock_skew", 30, "clock skew shown")
    health = venue.health()
    assert health is not None and health[0] is True
    assert health[4] == pytest.approx(3 * 3600, abs=60), health
    assert "3.0 h ahead" in str(health[2])
    venue.sim.detect("field", True)
    wait_until(lambda: venue.alerts("start", FIELD_RULE) == 1, 30, "the alert stored")
    query = "SELECT ts FROM camera_alerts WHERE device_id = %s AND zone = %s"
    ts = rows(venue.stack.dsn, query, (venue.camera.id, FIELD_RULE))[0][0]
    assert isinstance(ts, datetime)
    assert abs(ts - datetime.now(UTC)) < timedelta(minutes=10), "the agent's time, not 3 h on"
    assert venue.faults("clock_skew") >= 2  # the clock, and the event's own time


def test_a_slow_camera_is_shown_slow_and_still_relayed(start: Start, ingest: object) -> None:
    venue = start()
    _subscribed(venue)
    venue.sim.delay_s = 1.5  # every answer 1.5 s late (slow_s is 1, the timeout 3)
    wait_until(lambda: venue.condition() == "slow", 30, "shown slow")
    assert "answered in" in str((venue.health() or ())[2])
    assert venue.faults("slow") >= 1
    venue.sim.detect("field", True)
    wait_until(lambda: venue.alerts("start", FIELD_RULE) == 1, 30, "still relayed")
    venue.sim.delay_s = 4  # past the timeout: counted; gone once it keeps timing out
    wait_until(lambda: venue.faults("timeout") >= 1, 30, "timeout counted")
    wait_until(lambda: (venue.health() or ())[:2] == (False, "unreachable"), 60,
               "unreachable after timeouts in a row")  # fmt: skip
    subscriptions = venue.camera.subscriptions
    venue.sim.delay_s = 0
    wait_until(lambda: venue.camera.subscriptions > subscriptions, 30, "subscribed again")
    wait_until(lambda: (venue.health() or ())[:2] == (True, "ok"), 30, "healthy again")
    assert venue.agent.fatal is None


@pytest.mark.parametrize("refusal", ["NotAuthorized", "HTTP 401"])
def test_a_password_changed_on_the_camera_is_shown_as_auth_failed_until_it_matches(
    start: Start, ingest: object, refusal: str
) -> None:
    """Refused by WS-Security (a SOAP fault), or by a camera that wants HTTP digest (401)."""

    def digest_only(sim: OnvifCameraSim) -> None:
        sim.http_digest = refusal == "HTTP 401"

    venue = start(before=digest_only)
    _subscribed(venue)  # with HTTP digest: the driver answered the challenges
    wait_until(lambda: venue.condition() == "ok", 30, "healthy first")
    venue.sim.password = "changed-on-the-camera"
    wait_until(lambda: venue.condition() == "auth_failed", 30, "auth_failed shown")
    health = venue.health()
    assert health is not None and health[0] is False
    assert "refused user 'gridwatch'" in str(health[2]) and "check the account" in str(health[2])
    assert refusal in str(health[2])
    assert "camera-pass-1" not in str(health) and "changed-on" not in str(health)
    assert venue.faults("auth_failed") >= 1
    offline = "SELECT online FROM device_status WHERE device_id = %s"
    wait_until(lambda: scalar(venue.stack.dsn, offline, (venue.camera.id,)) is False, 30,
               "the camera offline on the platform")  # fmt: skip
    venue.sim.password = "camera-pass-1"  # put back
    wait_until(lambda: venue.condition() == "ok", 30, "healthy again")
    venue.sim.detect("field", True)
    wait_until(lambda: venue.alerts("start", FIELD_RULE) == 1, 30, "relayed again")


def test_a_fleet_camera_behind_the_simulator_relays_a_scenarios_tamper(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object
) -> None:
    """Protocol mode (`--devices protocol`): the fleet's SimCamera behind the ONVIF simulator,
    read by the onvif driver; a scenario's tamper step reaches the platform as a tamper alert."""
    from gridwatch.simulate import hardware_driver, venues_from
    from simulators.devices import SimCamera
    from simulators.fleet import Fleet
    from simulators.protocol import ProtocolSimulators
    from tests.edge_support import QUIET_RATE

    protocol = ProtocolSimulators()
    fleet = Fleet(
        venues_from(nodes[:1]), stack.edge_mqtt(), tmp_path, rate=QUIET_RATE,
        command_key=stack.command_public_key, serve=protocol.serve, build=hardware_driver,
    )  # fmt: skip
    fleet.start()
    try:
        assert fleet.wait_connected(20), "fleet did not connect"
        # Cameras take ISAPI and ONVIF in turn: the venue's two cameras get one each.
        onvif = [d for d, driver in fleet.drivers.items() if driver == ONVIF_DRIVER]
        assert len(onvif) == 1, fleet.drivers
        camera_id = onvif[0]
        model = fleet.devices[camera_id]
        assert isinstance(model, SimCamera)
        wait_until(lambda: any(isinstance(sim, OnvifCameraSim) and sim.subscriptions
                               for sim in protocol.running), 30, "the driver subscribed")  # fmt: skip
        model.tamper("tamper_blurred", seconds=2)  # as a scenario's `tamper` step does
        phases = """SELECT phase FROM camera_alerts WHERE device_id = %s
                    AND kind = 'tamper_blurred' ORDER BY ts, phase DESC"""
        wait_until(lambda: [r[0] for r in rows(stack.dsn, phases, (camera_id,))] == ["start", "end"],
                   60, "the tamper's start and end stored")  # fmt: skip
    finally:
        fleet.stop()
        protocol.stop()


@pytest.mark.parametrize(
    ("topic", "nsmap", "read"),
    [
        ("tns1:RuleEngine/FieldDetector/ObjectsInside", {"tns1": TNS1},
         "RuleEngine/FieldDetector/ObjectsInside"),
        ("ns2:VideoSource/MotionAlarm", {"ns2": TNS1}, "VideoSource/MotionAlarm"),  # any prefix
        ("tns1:VideoSource/MotionAlarm", {"tns1": "http://vendor.example/topics"}, ""),
        ("tns1:Device/tnsaxis:Sensor/PIR", {"tns1": TNS1, "tnsaxis": "http://axis"}, ""),
    ],
)  # fmt: skip
def test_an_event_topic_is_onvifs_only_under_the_onvif_topic_namespace(
    topic: str, nsmap: dict[str, str], read: str
) -> None:
    namespaces = " ".join(f'xmlns:{p}="{ns}"' for p, ns in nsmap.items())
    envelope = etree.fromstring(
        f'<r xmlns:wsnt="{events.WSNT}" xmlns:tt="{events.TT}" {namespaces}>'
        f"<wsnt:NotificationMessage><wsnt:Topic>{topic}</wsnt:Topic><wsnt:Message>"
        '<tt:Message UtcTime="2026-01-02T03:04:05Z" PropertyOperation="Changed"><tt:Source/>'
        '<tt:Data><tt:SimpleItem Name="State" Value="true"/></tt:Data></tt:Message>'
        "</wsnt:Message></wsnt:NotificationMessage></r>"
    )
    [note] = events.notifications(envelope)
    assert isinstance(note, events.Notification)
    assert note.topic == read and note.raw_topic == topic and note.data == {"State": "true"}


def test_a_notification_without_its_message_or_with_a_bad_time_is_malformed() -> None:
    envelope = etree.fromstring(
        f'<r xmlns:wsnt="{events.WSNT}" xmlns:tt="{events.TT}" xmlns:tns1="{TNS1}">'
        "<wsnt:NotificationMessage><wsnt:Topic>tns1:VideoSource/MotionAlarm</wsnt:Topic>"
        "</wsnt:NotificationMessage><wsnt:NotificationMessage><wsnt:Topic>tns1:VideoSource/"
        'MotionAlarm</wsnt:Topic><wsnt:Message><tt:Message UtcTime="yesterday"/></wsnt:Message>'
        "</wsnt:NotificationMessage></r>"
    )
    found = [str(n) for n in events.notifications(envelope)]
    assert found == [
        "a tns1:VideoSource/MotionAlarm notification without a tt:Message",
        "a tns1:VideoSource/MotionAlarm notification with UtcTime 'yesterday'",
    ]


def test_site_file_settings_are_checked_with_a_sentence_naming_the_field() -> None:
    def problem(kind: str, settings: dict[str, object]) -> str:
        dev = edge_config.DeviceConfig(id="c1", kind=kind, driver=ONVIF_DRIVER, settings=settings)
        with pytest.raises(edge_config.ConfigError) as caught:
            hardware_driver(dev, "site.yaml: ")
        return str(caught.value)

    account = {"host": "cam", "username": "u", "password": "p-secret"}
    assert "give the device's password once" in problem("camera", {"host": "cam", "username": "u"})
    unset = {"host": "cam", "password_env": "NO_SUCH_ONVIF_PASSWORD"}
    assert "NO_SUCH_ONVIF_PASSWORD is not set for the edge agent" in problem("camera", unset)
    bad_zone = {**account, "analytics": {"zones": [{"name": "z", "purpose": "restricted",
                                                    "points": [[0, 0], [2, 0], [1, 1]]}]}}  # fmt: skip
    text = problem("camera", bad_zone)
    assert text.startswith("site.yaml: devices.c1.settings.analytics.zones.0.points"), text
    assert "p-secret" not in problem("camera", {**account, "port": 0})
    assert problem("door", account) == "site.yaml: devices.c1.driver: onvif drives cameras only"
