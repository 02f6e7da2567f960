"""The `isapi` camera and people counter against a simulated Hikvision camera (simulators/
isapi_camera.py on simulators/isapi_http.py) over real HTTP with digest authentication, end to
end through the real broker and platform; and the alert-stream reader on its own."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.drivers import CameraAlertSeen, DeviceHealthSeen
from edge.health import Health
from edge.isapi.camera import IsapiCamera, IsapiCameraSettings, IsapiCounter
from edge.isapi.session import IsapiSession, IsapiSettings, IsapiUnavailable, refusal
from edge.isapi.stream import BadPart, MultipartReader, Part, boundary_of, decode
from gateway import messages as m
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import ISAPI_DRIVER, hardware_driver
from simulators.isapi_camera import HikvisionCamera
from simulators.isapi_http import IsapiServer, part, response_status
from simulators.ports import free_port
from tests.edge_support import site_agent
from tests.support import device_of, rows, scalar, wait_until

PASSWORD = "Hik-12345"


@dataclass
class Venue:
    sim: HikvisionCamera
    camera: IsapiCamera
    counter: IsapiCounter
    agent: EdgeAgent


@pytest.fixture
def venue(stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path) -> Iterator[Venue]:
    """Node 0 with its first camera and its counter on one simulated people-counting camera
    (the node's other devices simulated, quiet)."""
    creds = nodes[0]
    camera_id, counter_id = device_of(creds, "camera"), device_of(creds, "counter")
    sim = HikvisionCamera(free_port(), device_id=camera_id, counter_id=counter_id,
                          password=PASSWORD, repeat_s=0.5, heartbeat_s=0.5,
                          report_every_s=1.0, pictures=True)  # fmt: skip
    sim.start()
    common = {"host": "127.0.0.1", "port": sim.port, "username": "admin", "password": PASSWORD,
              "timeout_s": 1.0, "heartbeat_timeout_s": 3.0, "backoff_max_s": 1.0}  # fmt: skip
    hardware = {
        camera_id: (ISAPI_DRIVER, {**common, "zone": "gate", "end_after_s": 2.0,
                                   "update_every_s": 1.0,
                                   "events": {"attendedBaggage": "ignore"}}),
        counter_id: (ISAPI_DRIVER, {**common, "zone": "hall"}),
    }  # fmt: skip
    with site_agent(stack, creds, tmp_path / "edge", hardware) as site:
        camera, counter, agent = site.devices[camera_id], site.devices[counter_id], site.agent
        assert isinstance(camera, IsapiCamera) and isinstance(counter, IsapiCounter)
        wait_until(lambda: agent.watch.connected.is_set() and camera.online and counter.online,
                   30, "agent, camera and counter up")  # fmt: skip
        wait_until(lambda: sim.server.streams == 2, 30, "both alert streams open")
        yield Venue(sim, camera, counter, agent)
    sim.stop()


def _health(stack: LocalStack, device: str) -> list[tuple[object, ...]]:
    """The device's stored health, oldest first: (online, condition, detail, faults)."""
    query = """SELECT online, condition::text, detail, faults FROM device_health
               WHERE device_id = %s ORDER BY seq"""
    return rows(stack.dsn, query, (device,))


def _latest(stack: LocalStack, device: str) -> tuple[object, ...] | None:
    found = _health(stack, device)
    return found[-1] if found else None


def _faults(device: str, fault: str) -> float:
    labels = {"device": device, "fault": fault}
    return REGISTRY.get_sample_value("gridwatch_edge_device_faults_total", labels) or 0.0


# --- end to end -------------------------------------------------------------------------------


def test_camera_events_are_stored_then_incidents_and_end_as_isapi_says(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    cam = venue.camera.id
    phases = "SELECT phase::text, kind::text, zone FROM camera_alerts WHERE device_id = %s ORDER BY ts, seq"
    # Intrusion (field detection): `active` parts only; it ends when they stop coming.
    venue.sim.alert(m.CameraAlertKind.INTRUSION, seconds=3)
    intrusion = "SELECT count(*) FROM incidents WHERE rule = 'camera_intrusion' AND device_id = %s"
    wait_until(lambda: scalar(stack.dsn, intrusion, (cam,)) == 1, 30, "intrusion incident")
    wait_until(lambda: ("end", "intrusion", "gate") in rows(stack.dsn, phases, (cam,)), 30,
               "the intrusion ended after its parts stopped")  # fmt: skip
    got = [tuple(r) for r in rows(stack.dsn, phases, (cam,))]
    assert got[0] == ("start", "intrusion", "gate")
    assert ("update", "intrusion", "gate") in got  # the repeated `active` parts
    # The event's picture (the JPEG part after it) is the alert's snapshot, small, and the
    # incident names it.
    pictures = """SELECT s.id::text, s.width, s.height, length(s.jpeg) FROM camera_snapshots s
                  JOIN camera_alerts a ON a.alert_id = s.alert_id AND a.phase = 'start'
                  WHERE s.device_id = %s AND a.snapshot = s.id::text"""
    [(snapshot, width, height, size)] = rows(stack.dsn, pictures, (cam,))
    assert (width, height) == (320, 180) and 0 < int(str(size)) <= m.SNAPSHOT_MAX_BYTES
    named = "SELECT detail->>'snapshot' FROM incidents WHERE rule = 'camera_intrusion' AND device_id = %s"
    assert scalar(stack.dsn, named, (cam,)) == snapshot
    # Video tampering (shelteralarm): `active` then `inactive`, which ends it and its incident.
    venue.sim.alert(m.CameraAlertKind.TAMPER_COVERED, seconds=2)
    tamper = """SELECT count(*) FROM incidents WHERE rule = 'camera_tamper' AND device_id = %s
                AND resolved_at IS NOT NULL"""
    wait_until(lambda: scalar(stack.dsn, tamper, (cam,)) == 1, 30, "tamper raised and resolved")
    # A motion event and a line crossing, by their ISAPI names, on the one intrusion rule.
    venue.sim.event("VMD", "active")
    venue.sim.event("VMD", "inactive")
    venue.sim.event("linedetection", "active")
    # Unattended baggage (the camera's own left-object detection) is an object left behind,
    # with its own incident, which its end does not resolve (someone must look at the thing).
    venue.sim.event("unattendedBaggage", "active")
    venue.sim.event("unattendedBaggage", "inactive")
    left = """SELECT count(*) FROM incidents WHERE rule = 'camera_object_left' AND device_id = %s
              AND resolved_at IS NULL"""
    wait_until(lambda: scalar(stack.dsn, left, (cam,)) == 1, 30, "object-left incident")
    ends = "SELECT count(*) FROM camera_alerts WHERE device_id = %s AND phase = 'end'"
    wait_until(lambda: scalar(stack.dsn, ends, (cam,)) == 5, 30, "every alert ended")
    assert venue.agent.fatal is None
    assert venue.camera.health.condition is m.DeviceCondition.OK


def test_people_counting_is_stored_as_occupancy(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    counter = venue.counter
    assert venue.sim.counter is not None
    venue.sim.counter.spike(40, seconds=3600)
    latest = """SELECT count, zone FROM occupancy WHERE device_id = %s ORDER BY ts DESC, seq DESC
                LIMIT 1"""

    def stored() -> tuple[object, ...] | None:
        found = rows(stack.dsn, latest, (counter.id,))
        return tuple(found[0]) if found else None

    wait_until(lambda: (stored() or (0,))[0] == venue.sim.counter.count > 0, 60,  # type: ignore[union-attr]
               "the camera's count stored")  # fmt: skip
    assert stored() is not None and stored()[1] == "hall"  # type: ignore[index]
    # The flows add up to the change in count (the first event seen carries no flow), read in
    # one statement: the camera goes on counting meanwhile.
    flows = """SELECT sum(entered) - sum(exited),
                      (array_agg(count ORDER BY ts DESC, seq DESC))[1]
                      - (array_agg(count ORDER BY ts, seq))[1]
               FROM occupancy WHERE device_id = %s"""
    net, change = rows(stack.dsn, flows, (counter.id,))[0]
    assert net == change, (net, change)
    venue.sim.reset_counts()  # the camera's daily reset: totals start again from zero
    before = int(str(scalar(stack.dsn, "SELECT count(*) FROM occupancy WHERE device_id = %s",
                            (counter.id,))))  # fmt: skip
    wait_until(lambda: int(str(scalar(stack.dsn, "SELECT count(*) FROM occupancy WHERE device_id = %s",
                                      (counter.id,)))) > before + 2, 30, "counts after the reset")  # fmt: skip
    assert counter.health.condition is m.DeviceCondition.OK


def test_bad_input_and_a_clock_hours_off_are_counted_logged_and_shown_as_health(
    stack: LocalStack, venue: Venue, ingest: object, caplog: pytest.LogCaptureFixture
) -> None:
    cam, sim = venue.camera.id, venue.sim
    caplog.set_level(logging.WARNING, logger="edge.health")
    malformed_before = _faults(cam, "malformed_xml")
    sim.server.publish(b"<EventNotificationAlert><eventType>VMD</eventType><eventState>act")
    wait_until(lambda: _faults(cam, "malformed_xml") > malformed_before, 30, "malformed counted")
    sim.event("faceSnap", "active")  # a real ISAPI event with no mapping here
    sim.event("attendedBaggage", "active")  # object removal, mapped to `ignore` by the site
    wait_until(lambda: venue.camera.health.faults.get("unknown_event") == 1, 30, "unknown counted")
    sim.server.inject(b"\r\nthis is no part at all\r\n")
    wait_until(lambda: _faults(cam, "malformed_part") >= 1, 30, "garbage counted")
    bad = {"device": cam, "part": "bad"}
    assert (REGISTRY.get_sample_value("gridwatch_edge_isapi_parts_total", bad) or 0) >= 2

    # Health is published as it changes, so an earlier report (the malformed XML alone) may be
    # the latest stored for a while: wait for the one that carries every fault seen.
    def stored_all() -> bool:
        found = _latest(stack, cam)
        return found is not None and {"malformed_part", "unknown_event"} <= set(found[3])  # type: ignore[call-overload]

    wait_until(stored_all, 30, "stored bad input with every fault")
    online, condition, _, faults = _latest(stack, cam)  # type: ignore[misc]
    assert online is True and condition == "bad_input", (online, condition, faults)
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"device={cam}" in line and "'faceSnap' that has no mapping" in line
               for line in logged), logged  # fmt: skip
    assert any("malformed_xml" in line and "does not parse" in line for line in logged), logged
    # The stream goes on: a real event after all that is an alert.
    sim.alert(m.CameraAlertKind.LOITERING, seconds=2)
    loiter = "SELECT count(*) FROM camera_alerts WHERE device_id = %s AND kind = 'loitering'"
    wait_until(lambda: int(str(scalar(stack.dsn, loiter, (cam,)))) >= 2, 30, "loitering stored")
    # The camera's clock goes five hours behind: reported, and the agent's time is used.
    sim.server.clock_offset_s = -5 * 3600
    wait_until(lambda: (_latest(stack, cam) or ())[1:2] == ("clock_skew",), 30, "clock skew stored")
    offset = scalar(stack.dsn, """SELECT clock_offset_s FROM device_health WHERE device_id = %s
                                  ORDER BY seq DESC LIMIT 1""", (cam,))  # fmt: skip
    assert -5 * 3600 - 60 < float(str(offset)) < -5 * 3600 + 60
    sim.alert(m.CameraAlertKind.TAMPER_MOVED, seconds=1)
    moved = "SELECT ts FROM camera_alerts WHERE device_id = %s AND kind = 'tamper_moved'"
    wait_until(lambda: bool(rows(stack.dsn, moved, (cam,))), 30, "tamper stored")
    ts = rows(stack.dsn, moved, (cam,))[0][0]
    assert isinstance(ts, datetime) and abs((ts - datetime.now(UTC)).total_seconds()) < 600
    assert venue.agent.fatal is None and venue.agent.watch.connected.is_set()
    assert venue.counter.online  # the counter on the same camera is not disturbed


def test_a_half_closed_stream_and_a_slow_device_are_reported_and_recovered_from(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    cam, sim = venue.camera.id, venue.sim
    before = _faults(cam, "heartbeat_missed")
    sim.server.inject(part(sim.server.alert("VMD", "active"))[:120])  # half a part, then silence
    sim.server.half_close()  # both streams stop mid-stream; their sockets stay open
    wait_until(lambda: _faults(cam, "heartbeat_missed") > before, 30, "heartbeat missed")
    wait_until(lambda: any(r[1] == "unreachable" and r[0] is False for r in _health(stack, cam)),
               30, "stored offline")  # fmt: skip
    wait_until(lambda: (_latest(stack, cam) or ())[:2] == (True, "ok"), 30, "stored back online")
    status = "SELECT online FROM device_status WHERE device_id = %s"
    wait_until(lambda: scalar(stack.dsn, status, (cam,)) is True, 30, "device status online")
    # Now it answers slowly (2 s for a 1 s timeout): the reconnected stream is slow, yet works.
    sim.server.delay_s = 2.0
    sim.server.half_close()
    wait_until(lambda: (_latest(stack, cam) or ())[1:2] == ("slow",), 30, "stored slow")
    assert (_latest(stack, cam) or ())[0] is True  # slow is not offline
    sim.alert(m.CameraAlertKind.TAMPER_BLURRED, seconds=1)
    blurred = "SELECT count(*) FROM camera_alerts WHERE device_id = %s AND kind = 'tamper_blurred'"
    wait_until(lambda: scalar(stack.dsn, blurred, (cam,)) == 2, 30, "alert from the slow device")
    assert venue.agent.fatal is None and venue.agent.watch.connected.is_set()


def test_a_password_changed_on_the_device_is_auth_failed_until_it_matches_again(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    cam, sim = venue.camera.id, venue.sim
    sim.server.password = "changed-by-the-installer"  # ends the open streams, as a device does
    wait_until(lambda: (_latest(stack, cam) or ())[:2] == (False, "auth_failed"), 30,
               "stored auth_failed")  # fmt: skip
    detail = str((_latest(stack, cam) or ())[2])
    assert "refused user 'admin': check the password" in detail, detail
    assert "changed-by-the-installer" not in detail and PASSWORD not in detail
    assert venue.camera.health.faults["auth_failed"] >= 1
    status = "SELECT online FROM device_status WHERE device_id = %s"
    wait_until(lambda: scalar(stack.dsn, status, (cam,)) is False, 30, "device shown offline")
    assert venue.agent.fatal is None and venue.agent.watch.connected.is_set()
    sim.server.password = PASSWORD
    wait_until(lambda: (_latest(stack, cam) or ())[:2] == (True, "ok"), 30, "back")
    sim.alert(m.CameraAlertKind.INTRUSION, seconds=1)
    intrusion = "SELECT count(*) FROM camera_alerts WHERE device_id = %s AND kind = 'intrusion'"
    wait_until(lambda: int(str(scalar(stack.dsn, intrusion, (cam,)))) >= 1, 30, "events again")


# --- the session on its own -------------------------------------------------------------------


def test_a_request_slower_than_the_timeout_is_slow_and_a_refusal_has_the_devices_words() -> None:
    server = IsapiServer(password=PASSWORD).start()
    server.route("PUT", "/ISAPI/System/reboot",
                 lambda request: response_status(request.path, 4, "lowPrivilege", http=403))  # fmt: skip
    health = Health("cam-s")
    settings = IsapiSettings(host="127.0.0.1", port=server.port, password=PASSWORD, timeout_s=0.5)
    session = IsapiSession(settings, health)
    try:
        assert session.request("GET", "/ISAPI/System/deviceInfo").status_code == 200
        assert health.condition is m.DeviceCondition.OK
        with pytest.raises(Exception, match="Invalid Operation: lowPrivilege") as refused:
            session.request("PUT", "/ISAPI/System/reboot", content=b"")
        assert type(refused.value).__name__ == "IsapiRefused"
        server.delay_s = 1.5
        with pytest.raises(IsapiUnavailable, match=r"no answer to GET /ISAPI/System/time within"):
            session.request("GET", "/ISAPI/System/time")
        assert health.condition is m.DeviceCondition.SLOW and health.faults["timeout"] == 1
        server.halt()
        with pytest.raises(IsapiUnavailable, match="cannot connect"):
            session.request("GET", "/ISAPI/System/time")
        assert health.condition is m.DeviceCondition.UNREACHABLE and health.online is False
    finally:
        session.close()
        server.stop()


def test_isapi_response_status_bodies_are_read_in_xml_and_json() -> None:
    import httpx

    ok = response_status("/x")
    assert refusal(httpx.Response(200, content=ok.body)) is None
    busy = response_status("/x", 2, "deviceBusy", as_json=True)
    refused = refusal(httpx.Response(400, content=busy.body))
    assert refused is not None and refused.status == "2" and "Device Busy" in str(refused)
    assert "deviceBusy" in str(refused)
    assert refusal(httpx.Response(200, content=b"<DeviceInfo/>")) is None
    plain = refusal(httpx.Response(404, content=b"not here"))
    assert plain is not None and str(plain) == "HTTP 404 Not Found"


# --- the stream reader on its own -------------------------------------------------------------

_EVENT = (b'<?xml version="1.0" encoding="UTF-8"?>\r\n<EventNotificationAlert version="2.0" '
          b'xmlns="http://www.hikvision.com/ver20/XMLSchema">\r\n<ipAddress>10.0.0.64</ipAddress>'
          b"\r\n<channelID>2</channelID>\r\n<dateTime>2026-12-01T21:10:40+08:00</dateTime>\r\n"
          b"<activePostCount>3</activePostCount>\r\n<eventType>linedetection</eventType>\r\n"
          b"<eventState>active</eventState>\r\n</EventNotificationAlert>\r\n")  # fmt: skip
_JSON = (b'{"ipAddress":"10.0.0.65","dateTime":"2026-12-01T21:10:41+08:00","eventType":'
         b'"AccessControllerEvent","eventState":"active","AccessControllerEvent":'
         b'{"majorEventType":5,"subEventType":1}}')  # fmt: skip


def _feed(raw: bytes, step: int) -> list[Part]:
    reader = MultipartReader("boundary", max_part=4096)
    out: list[Part] = []
    for i in range(0, len(raw), step):
        out += reader.feed(raw[i : i + step])
    return out


@pytest.mark.parametrize("step", [1, 3, 64, 100_000])
def test_the_multipart_reader_reads_parts_however_the_bytes_arrive(step: int) -> None:
    raw = (
        part(_EVENT)  # with Content-Length
        + b"--boundary\nContent-Type: application/json\n\n" + _JSON + b"\n"  # LF, no length
        + b"--boundary\r\nContent-Type: image/jpeg\r\nContent-Length: 9999\r\n\r\n"
        + b"\xff" * 9999 + b"\r\n"  # over the limit: dropped as it comes, reported
        + b"stray bytes between parts\r\n"
        + part(_EVENT)
        + b"--boundary--\r\n"
    )  # fmt: skip
    parts = _feed(raw, step)
    assert [(p.content_type, p.problem is None) for p in parts] == [
        ("application/xml", True), ("application/json", True), ("image/jpeg", False),
        ("", False), ("application/xml", True),
    ]  # fmt: skip
    assert "over the 4096-byte limit" in str(parts[2].problem)
    assert parts[0].body == _EVENT and parts[1].body == _JSON
    event = decode(parts[0])
    assert (event.type, event.state, event.channel) == ("linedetection", "active", 2)
    assert event.time is not None and event.time.utcoffset() is not None
    assert event.data["activePostCount"] == "3"
    access = decode(parts[1])
    assert access.type == "AccessControllerEvent"
    assert access.data["AccessControllerEvent"] == {"majorEventType": 5, "subEventType": 1}


def test_the_reader_resynchronises_after_garbage_headers() -> None:
    raw = b"--boundary\r\nno colon here\r\n\r\n<x/>\r\n" + part(_EVENT)
    parts = _feed(raw, 5)
    assert parts[0].problem is not None and "without a colon" in parts[0].problem
    assert [p.problem for p in parts[1:]] == [None] and parts[1].body == _EVENT


@pytest.mark.parametrize(
    ("body", "content_type", "fault"),
    [
        (b"<EventNotificationAlert><eventType>VMD", "application/xml", "malformed_xml"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', "application/xml", "malformed_xml"),
        # The same in UTF-16 and UTF-32, which a byte search for <!DOCTYPE does not see.
        ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "VMD">]>'
         "<EventNotificationAlert><eventType>&a;</eventType></EventNotificationAlert>"
         .encode("utf-16"), "application/xml", "malformed_xml"),
        ('<?xml version="1.0" encoding="UTF-32"?><!DOCTYPE x [<!ENTITY a "VMD">]><x>&a;</x>'
         .encode("utf-32"), "application/xml", "malformed_xml"),
        (b"<EventNotificationAlert><eventState>active</eventState></EventNotificationAlert>",
         "application/xml", "malformed_xml"),
        (b'{"eventType": ', "application/json", "malformed_json"),
        (b"[1, 2]", "application/json", "malformed_json"),
        (b"\xff\xd8\xff", "image/jpeg", "unsupported_part"),
    ],
)  # fmt: skip
def test_undecodable_event_bodies_are_bad_parts(body: bytes, content_type: str, fault: str) -> None:
    with pytest.raises(BadPart) as caught:
        decode(Part(content_type, body))
    assert caught.value.fault == fault


def test_the_boundary_is_read_from_the_content_type() -> None:
    assert boundary_of("multipart/mixed; boundary=boundary") == "boundary"
    assert boundary_of('multipart/mixed;boundary="MIME_boundary"') == "MIME_boundary"
    assert boundary_of("application/xml") is None
    assert boundary_of("multipart/mixed") is None


# --- site-file settings -----------------------------------------------------------------------


def test_site_file_settings_are_checked_naming_the_field_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def problem(kind: str, settings: dict[str, object]) -> str:
        dev = edge_config.DeviceConfig(id="c1", kind=kind, driver=ISAPI_DRIVER, settings=settings)
        with pytest.raises(edge_config.ConfigError) as caught:
            hardware_driver(dev, "site.yaml: ")
        return str(caught.value)

    assert "settings.(file): Value error, give the device's password once" in problem(
        "camera", {"host": "h"}
    )
    monkeypatch.delenv("CAMERA3_PASSWORD", raising=False)
    unset = problem("camera", {"host": "h", "password_env": "CAMERA3_PASSWORD"})
    assert "the environment variable CAMERA3_PASSWORD is not set for the edge agent" in unset
    monkeypatch.setenv("CAMERA3_PASSWORD", "from-the-environment")
    dev = edge_config.DeviceConfig(id="c1", kind="camera", driver=ISAPI_DRIVER,
                                   settings={"host": "h", "password_env": "CAMERA3_PASSWORD"})  # fmt: skip
    camera = hardware_driver(dev, "")
    assert isinstance(camera, IsapiCamera) and camera.settings.secret == "from-the-environment"
    wrong = problem("camera", {"host": "h", "password": "s3cret!", "events": {"VMD": "motion"}})
    assert wrong.startswith("site.yaml: devices.c1.settings.events.VMD"), wrong
    assert "s3cret!" not in wrong
    assert problem("counter", {"host": "h", "password": "p", "zone": ""}).startswith(
        "site.yaml: devices.c1.settings.zone"
    )
    assert problem("speaker", {}) == (
        "site.yaml: devices.c1.driver: isapi drives cameras, counters and doors only"
    )


def test_an_event_picture_is_made_small_enough_for_a_snapshot() -> None:
    import cv2
    import numpy as np

    from edge.isapi.picture import small_jpeg

    noise = np.random.default_rng(1).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok and len(data) > m.SNAPSHOT_MAX_BYTES  # a 4 MP-class picture of pure noise
    made = small_jpeg(data.tobytes(), 320)
    assert made is not None
    jpeg, width, height = made
    assert len(jpeg) <= m.SNAPSHOT_MAX_BYTES and jpeg.startswith(b"\xff\xd8\xff")
    assert width <= 320 and abs(width / height - 16 / 9) < 0.05
    assert small_jpeg(b"\xff\xd8\xff not really a picture", 320) is None
    assert small_jpeg(b"GIF89a", 320) is None


def _certificates(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (its PEM file) and a server context for 127.0.0.1 signed by it."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
             signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:  # fmt: skip
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IP Camera test CA")])
    ca = cert("IP Camera test CA", ca_key, ca_name, ca_key, True)
    leaf = cert("127.0.0.1", key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "device.pem").write_bytes(leaf.public_bytes(pem))
    (folder / "device.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "device.pem", folder / "device.key")
    return folder / "ca.pem", context


def test_https_with_the_devices_ca_works_and_an_untrusted_certificate_says_what_to_do(
    tmp_path: Path,
) -> None:
    ca, context = _certificates(tmp_path)
    sim = HikvisionCamera(password=PASSWORD, heartbeat_s=0.2)
    sim.server.tls = context
    sim.start()
    base = {"host": "127.0.0.1", "port": sim.port, "scheme": "https", "password": PASSWORD,
            "heartbeat_timeout_s": 2.0, "backoff_max_s": 0.5}  # fmt: skip
    trusted = IsapiCamera(
        "cam-tls", IsapiCameraSettings.model_validate({**base, "tls_ca": str(ca)})
    )
    stranger = IsapiCamera("cam-tls-x", IsapiCameraSettings.model_validate(base))
    seen: list[object] = []
    trusted.start(seen.append)
    stranger.start(lambda reading: None)
    try:
        wait_until(lambda: sim.server.streams == 1 and trusted.online, 30, "stream over TLS")
        sim.alert(m.CameraAlertKind.LOITERING, seconds=1)
        wait_until(lambda: any(getattr(r, "kind", None) is m.CameraAlertKind.LOITERING
                               for r in seen), 30, "an alert over TLS")  # fmt: skip
        wait_until(lambda: stranger.health.faults.get("tls_failed", 0) >= 1, 30, "refused")
        assert (
            stranger.online is False and stranger.health.condition is m.DeviceCondition.UNREACHABLE
        )
        assert "give the device's CA certificate in settings.tls_ca" in str(stranger.detail)
        assert "CERTIFICATE_VERIFY_FAILED" in str(stranger.detail)
        assert sim.server.streams == 1  # the failed handshakes did not disturb the server
    finally:
        trusted.stop()
        stranger.stop()
        sim.stop()


def test_a_camera_powered_off_is_unreachable_and_reconnects_when_it_is_back() -> None:
    sim = HikvisionCamera(password=PASSWORD, heartbeat_s=0.2)
    sim.start()
    settings = IsapiCameraSettings(host="127.0.0.1", port=sim.port, password=PASSWORD,
                                   heartbeat_timeout_s=2.0, backoff_max_s=0.5)  # fmt: skip
    camera = IsapiCamera("cam-power", settings)
    seen: list[object] = []
    camera.start(seen.append)
    try:
        wait_until(lambda: sim.server.streams == 1 and camera.online, 30, "stream open")
        sim.server.halt()
        wait_until(lambda: camera.health.faults.get("connect_failed", 0) >= 2, 30, "retrying")
        assert camera.online is False and "cannot connect" in str(camera.detail)
        lost = {"stream_closed", "connection_lost", "heartbeat_missed"} & set(camera.health.faults)
        assert lost, camera.health.faults  # the open stream's end was itself reported
        sim.server.serve()
        wait_until(lambda: sim.server.streams == 1 and camera.online, 30, "reconnected")
        assert camera.health.condition is m.DeviceCondition.OK
        sim.event("VMD", "active")
        wait_until(lambda: any(getattr(r, "phase", None) is m.AlertPhase.START for r in seen), 30,
                   "events after the restart")  # fmt: skip
    finally:
        camera.stop()
        sim.stop()


def test_json_event_bodies_and_the_channel_setting() -> None:
    sim = HikvisionCamera(password=PASSWORD, heartbeat_s=0.2)
    sim.start()
    settings = IsapiCameraSettings(host="127.0.0.1", port=sim.port, password=PASSWORD, channel=2,
                                   picture_wait_s=0, end_after_s=60)  # fmt: skip
    camera = IsapiCamera("cam-json", settings)
    seen: list[object] = []
    camera.start(seen.append)

    def body(channel: int, state: str) -> bytes:
        return (f'{{"ipAddress":"127.0.0.1","channelID":{channel},"dateTime":'
                f'"{sim.server.now().isoformat()}","activePostCount":1,"eventType":"regionEntrance",'
                f'"eventState":"{state}","eventDescription":"regionEntrance alarm"}}').encode()  # fmt: skip

    try:
        wait_until(lambda: sim.server.streams == 1, 30, "stream open")
        sim.server.publish(body(1, "active"), "application/json")  # another channel: not ours
        sim.server.publish(body(2, "active"), "application/json")
        sim.server.publish(body(2, "inactive"), "application/json")
        wait_until(lambda: len([r for r in seen if hasattr(r, "phase")]) == 2, 30, "start and end")
        alerts = [r for r in seen if hasattr(r, "phase")]
        assert [(a.phase, a.kind) for a in alerts] == [  # type: ignore[attr-defined]
            (m.AlertPhase.START, m.CameraAlertKind.INTRUSION),
            (m.AlertPhase.END, m.CameraAlertKind.INTRUSION),
        ]
        assert alerts[0].ts is not None  # type: ignore[attr-defined]
    finally:
        camera.stop()
        sim.stop()


def test_a_scenario_plays_through_the_protocol_camera(tmp_path: Path) -> None:
    from simulators import scenario as scenarios

    sim = HikvisionCamera(device_id="v0001-camera3", counter_id="v0001-counter2",
                          password=PASSWORD, heartbeat_s=0.2, report_every_s=0.5)  # fmt: skip
    sim.start()
    settings = IsapiCameraSettings(host="127.0.0.1", port=sim.port, password=PASSWORD,
                                   heartbeat_timeout_s=2.0, backoff_max_s=0.5,
                                   picture_wait_s=0)  # fmt: skip
    camera = IsapiCamera("v0001-camera3", settings)
    seen: list[object] = []
    camera.start(seen.append)
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump({"name": "a camera's night", "steps": [
        {"at": 0, "device": "v0001-camera3", "action": "tamper",
         "args": {"kind": "tamper_covered", "seconds": 1}},
        {"at": 2, "device": "v0001-camera3", "action": "cut"},
        {"at": 4, "device": "v0001-camera3", "action": "restore"},
    ]}))  # fmt: skip
    play = scenarios.load(path)
    assert sim.counter is not None
    devices = {sim.camera.id: sim.camera, sim.counter.id: sim.counter}
    scenarios.check(play, devices, set())  # type: ignore[arg-type]
    try:
        wait_until(lambda: sim.server.streams == 1 and camera.online, 30, "stream open")
        assert scenarios.run(play, devices, lambda node, s: None, threading.Event()) == 3  # type: ignore[arg-type]
        phases = [(r.phase, r.kind) for r in seen if isinstance(r, CameraAlertSeen)]
        assert phases[:2] == [(m.AlertPhase.START, m.CameraAlertKind.TAMPER_COVERED),
                              (m.AlertPhase.END, m.CameraAlertKind.TAMPER_COVERED)]  # fmt: skip
        offline = [r for r in seen if isinstance(r, DeviceHealthSeen) and not r.online]
        assert offline, "the cut camera was seen offline"
        wait_until(lambda: sim.server.streams == 1 and camera.online, 30, "back after restore")
    finally:
        camera.stop()
        sim.stop()


def test_the_demo_fleet_in_protocol_mode_reads_its_cameras_and_counters_over_isapi(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object
) -> None:
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
        drivers = fleet.drivers
        camera_id, counter_id = device_of(nodes[0], "camera"), device_of(nodes[0], "counter")
        assert drivers[camera_id] == drivers[counter_id] == ISAPI_DRIVER
        model = fleet.devices[camera_id]
        assert isinstance(model, SimCamera)
        health = "SELECT condition::text FROM device_health WHERE device_id = %s ORDER BY seq DESC LIMIT 1"
        wait_until(lambda: rows(stack.dsn, health, (camera_id,)) == [("ok",)], 60, "camera read")
        model.tamper(m.CameraAlertKind.TAMPER_MOVED, seconds=2)  # a scenario's `tamper` step
        incident = "SELECT count(*) FROM incidents WHERE rule = 'camera_tamper' AND device_id = %s"
        wait_until(lambda: scalar(stack.dsn, incident, (camera_id,)) == 1, 60, "tamper incident")
        with_picture = """SELECT count(*) FROM camera_alerts WHERE device_id = %s
                          AND phase = 'start' AND snapshot IS NOT NULL"""
        assert scalar(stack.dsn, with_picture, (camera_id,)) == 1
        model.cut()  # the scenario hook: the camera loses power, and the driver sees it
        offline = "SELECT online FROM device_status WHERE device_id = %s"
        wait_until(lambda: scalar(stack.dsn, offline, (camera_id,)) is False, 60, "camera offline")
        model.restore()
        wait_until(lambda: scalar(stack.dsn, offline, (camera_id,)) is True, 60, "camera back")
    finally:
        fleet.stop()
        protocol.stop()
