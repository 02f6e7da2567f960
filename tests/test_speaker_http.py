"""The `http` speaker driver against an HTTP PA-host simulator (simulators/http_speaker.py) over
real HTTP with digest authentication, end to end through the real broker, ingest, PostgreSQL
and API: a broadcast becomes Mandarin speech made at the edge, uploaded as WAV and answered."""

from __future__ import annotations

import array
import io
import json
import re
import subprocess
import uuid
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.app import create_app
from api.settings import ApiSettings
from edge import config as edge_config
from edge import tts
from edge.agent import EdgeAgent
from edge.drivers import CommandFailed
from edge.http_template import (
    RequestTemplate,
    Unreadable,
    as_text,
    field,
    parse,
    truthy,
    xml_escape,
)
from edge.speaker_http import HttpSpeaker, HttpSpeakerSettings
from gateway import codec, topics
from gateway import messages as m
from gateway.signing import Signer
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import HTTP_SPEAKER_DRIVER, hardware_driver
from simulators.http_speaker import HttpSpeakerSim, driver_settings
from tests.edge_support import platform_client, site_agent
from tests.support import device_of, rows, wait_until

PASSWORD = "pa-host-pass"
# Chinese text takes its own full-width punctuation.
WARNING = "防汛预警：河水上涨，请沿河居民立即转移到安全地带。"  # noqa: RUF001


def settings_for(port: int, **changes: Any) -> dict[str, Any]:
    """Site-file settings for the simulator's API (as docs/drivers/http-speaker.md shows)."""
    quick: dict[str, Any] = {"timeout_s": 20, "backoff_max_s": 1.0}
    return driver_settings(port, password=PASSWORD, poll_s=0.3, **(quick | changes))


@dataclass
class Venue:
    sim: HttpSpeakerSim
    speaker: HttpSpeaker
    agent: EdgeAgent
    creds: NodeCredentials


@pytest.fixture
def venue(stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path) -> Iterator[Venue]:
    """Node 0 with its speaker on a simulated PA host (the other devices simulated, quiet)."""
    creds = nodes[0]
    speaker_id = device_of(creds, "speaker")
    sim = HttpSpeakerSim(password=PASSWORD, speaker_id=speaker_id)
    sim.start()
    hardware = {speaker_id: (HTTP_SPEAKER_DRIVER, settings_for(sim.port))}
    with site_agent(stack, creds, tmp_path / "edge", hardware) as site:
        speaker, agent = site.devices[speaker_id], site.agent
        assert isinstance(speaker, HttpSpeaker)
        wait_until(lambda: agent.watch.connected.is_set() and speaker.online, 30, "agent, speaker")
        yield Venue(sim, speaker, agent, creds)
    sim.stop()


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    app = create_app(ApiSettings(database_url=stack.role_dsn("api")))  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


@pytest.fixture
def platform(stack: LocalStack) -> Iterator[mqtt.Client]:
    with platform_client(stack, "speaker-test") as client:
        yield client


def _sign_in(client: TestClient, person: str) -> dict[str, str]:
    r = client.post("/api/token", data={"username": person, "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _broadcast(client: TestClient, site: str, message: dict[str, Any]) -> tuple[str, str | None]:
    """A broadcast to the venue through the API, followed to the speaker's answer."""
    me = _sign_in(client, "operator")
    sent = client.post(f"/api/venues/{site}/broadcast", headers=me,
                       json={"message": message, "priority": "emergency"})  # fmt: skip
    assert sent.status_code == 200, sent.text
    ids = [c["id"] for c in sent.json()]
    assert len(ids) == 1

    def answered() -> dict[str, Any] | None:
        state = client.get("/api/commands", params={"ids": ids}, headers=me).json()[0]
        return state if state["state"] not in ("queued", "sent") else None

    wait_until(lambda: answered() is not None, 60, "the speaker's answer")
    state = answered()
    assert state is not None
    return str(state["state"]), state["detail"]


def _send(stack: LocalStack, client: object, creds: NodeCredentials, action: object) -> uuid.UUID:
    now = m.now()
    command = m.Command(
        v=1, id=uuid.uuid4(), ts=now, device=device_of(creds, "speaker"),
        deadline=now + timedelta(seconds=60), action=action,  # type: ignore[arg-type]
    )  # fmt: skip
    payload = json.dumps(Signer.from_file(stack.command_key_file).sign(codec.to_wire(command)))
    topic = topics.command(creds.site, creds.node, command.device)
    client.publish(topic, payload.encode(), qos=1)  # type: ignore[attr-defined]
    return command.id


def _result(stack: LocalStack, command_id: uuid.UUID) -> tuple[str, str | None]:
    query = "SELECT status::text, detail FROM command_results WHERE command_id = %s"
    wait_until(lambda: bool(rows(stack.dsn, query, (command_id,))), 60, "command result")
    status, detail = rows(stack.dsn, query, (command_id,))[0]
    return str(status), None if detail is None else str(detail)


def _health(stack: LocalStack, device: str) -> tuple[object, ...] | None:
    """The platform's latest stored health of the device and its status's online."""
    query = """SELECT h.online, h.condition, h.detail, s.online FROM device_health h
               JOIN device_status s ON s.device_id = h.device_id
               WHERE h.device_id = %s ORDER BY h.seq DESC LIMIT 1"""
    found = rows(stack.dsn, query, (device,))
    return tuple(found[0]) if found else None


def _faults(device: str, fault: str) -> float:
    labels = {"device": device, "fault": fault}
    return REGISTRY.get_sample_value("gridwatch_edge_device_faults_total", labels) or 0.0


# --- end to end ---------------------------------------------------------------------------------


def test_a_broadcast_reaches_the_speaker_as_mandarin_wav_and_is_answered_done(
    stack: LocalStack, venue: Venue, ingest: object, client: TestClient
) -> None:
    message = {"kind": "text", "text": WARNING, "language": "zh-CN"}
    assert _broadcast(client, venue.creds.site, message) == ("done", None)
    assert len(venue.sim.uploads) == 1
    upload = venue.sim.uploads[0]
    assert (upload.rate, upload.channels, upload.sample_width) == (22050, 1, 2)
    assert (upload.language, upload.priority) == ("zh-CN", "emergency")
    # Spoken by the Mandarin voice: 0.2-0.55 s a character (English reads each as a letter
    # name, about 0.7 s; a stub file would be far shorter).
    han = len(re.findall(r"[\u4e00-\u9fff]", WARNING))
    assert 0.2 * han <= upload.seconds <= 0.55 * han, upload.seconds
    assert venue.sim.speaker.playing is not None and venue.sim.speaker.playing.startswith("upload")
    wait_until(lambda: venue.speaker.playing is not None, 30, "the driver knows it plays")
    english = "Flood warning: please move to higher ground now."
    message = {"kind": "text", "text": english, "language": "en"}
    assert _broadcast(client, venue.creds.site, message) == ("done", None)
    spoken = venue.sim.uploads[-1]
    assert spoken.language == "en"  # the API's language reached the agent's voice choice
    assert 0.15 * len(english.split()) <= spoken.seconds <= 0.6 * len(english.split())


def test_a_stored_clip_plays_and_an_unknown_one_fails_with_the_devices_words(
    stack: LocalStack, venue: Venue, ingest: object, client: TestClient
) -> None:
    assert _broadcast(client, venue.creds.site, {"kind": "clip", "clip": "fire-drill"}) == (
        "done", None)  # fmt: skip
    assert venue.sim.speaker.playing == "fire-drill"
    assert ("GET", "/api/broadcast/clip") in venue.sim.requests
    status, detail = _broadcast(client, venue.creds.site, {"kind": "clip", "clip": "no/such"})
    assert status == "failed"
    assert detail is not None and "no clip named 'no/such'" in detail, detail


def test_volume_and_stop_are_done_by_the_device(
    stack: LocalStack, venue: Venue, ingest: object, platform: object
) -> None:
    play = _send(stack, platform, venue.creds, m.SpeakerPlay(clip="anti-fraud"))
    assert _result(stack, play) == ("done", None)
    volume = _send(stack, platform, venue.creds, m.SpeakerVolume(level=35))
    assert _result(stack, volume) == ("done", None)
    assert venue.sim.speaker.volume == 35
    stop = _send(stack, platform, venue.creds, m.SpeakerStop())
    assert _result(stack, stop) == ("done", None)
    assert venue.sim.speaker.playing is None
    # The status poll reports the device's own view to the platform.
    last = """SELECT volume, playing FROM speaker_status WHERE device_id = %s
              ORDER BY ts DESC LIMIT 1"""
    wait_until(lambda: rows(stack.dsn, last, (venue.speaker.id,)) == [(35, False)], 30, "stored")


def test_a_fault_on_the_device_is_stored_and_becomes_an_incident(
    stack: LocalStack, venue: Venue, ingest: object, platform: object
) -> None:
    venue.sim.speaker.set_fault("amplifier")
    incident = "SELECT count(*) FROM incidents WHERE rule = 'speaker_fault' AND device_id = %s"
    wait_until(lambda: rows(stack.dsn, incident, (venue.speaker.id,)) == [(1,)], 30, "incident")
    stored = "SELECT count(*) FROM speaker_status WHERE device_id = %s AND fault = 'amplifier'"
    assert rows(stack.dsn, stored, (venue.speaker.id,)) != [(0,)]
    play = _send(stack, platform, venue.creds, m.SpeakerPlay(clip="siren-1"))
    status, detail = _result(stack, play)
    assert status == "failed" and detail is not None and "speaker fault: amplifier" in detail


def test_a_password_changed_on_the_device_is_auth_failed_on_the_platform(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    before = _faults(venue.speaker.id, "auth_failed")
    venue.sim.password = "changed-at-the-device"
    wait_until(lambda: (_health(stack, venue.speaker.id) or ())[:2] == (False, "auth_failed"),
               30, "stored auth_failed")  # fmt: skip
    detail = (_health(stack, venue.speaker.id) or ())[2]
    assert isinstance(detail, str) and "refused user 'admin' (HTTP 401)" in detail
    assert PASSWORD not in detail and "changed-at-the-device" not in detail
    assert _faults(venue.speaker.id, "auth_failed") > before
    with pytest.raises(CommandFailed, match="HTTP 401"):
        venue.speaker.set_volume(10)
    assert venue.sim.speaker.volume != 10
    venue.sim.password = PASSWORD
    wait_until(lambda: _health(stack, venue.speaker.id) == (True, "ok", None, True), 30, "ok")


def test_a_slow_device_is_slow_on_the_platform_and_still_answers(
    stack: LocalStack, venue: Venue, ingest: object, platform: object
) -> None:
    venue.sim.delay_s = 4.0  # slow_s is 2.5
    wait_until(lambda: (_health(stack, venue.speaker.id) or ())[:2] == (True, "slow"),
               60, "stored slow")  # fmt: skip
    assert _faults(venue.speaker.id, "slow") >= 1
    volume = _send(stack, platform, venue.creds, m.SpeakerVolume(level=50))
    assert _result(stack, volume) == ("done", None)  # slow, but done
    assert venue.sim.speaker.volume == 50
    venue.sim.delay_s = 0


def test_a_speaker_that_goes_offline_is_offline_on_the_platform_then_back(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    before = _faults(venue.speaker.id, "connect_failed")
    venue.sim.halt()
    wait_until(lambda: (_health(stack, venue.speaker.id) or ())[:2] == (False, "unreachable"),
               30, "stored offline")  # fmt: skip
    assert (_health(stack, venue.speaker.id) or ())[3] is False  # the device shown offline
    # (a poll cut off by the halt is connection_lost; the polls after it cannot connect)
    wait_until(lambda: _faults(venue.speaker.id, "connect_failed") > before, 30, "counted")
    with pytest.raises(CommandFailed, match=r"speaker http://127\.0\.0\.1:\d+: cannot connect"):
        venue.speaker.stop_playing()
    assert venue.agent.fatal is None and venue.agent.watch.connected.is_set()
    venue.sim.serve()
    wait_until(lambda: _health(stack, venue.speaker.id) == (True, "ok", None, True), 30, "back")


# --- the driver alone ---------------------------------------------------------------------------


def _alone(sim: HttpSpeakerSim, **changes: Any) -> HttpSpeaker:
    settings = HttpSpeakerSettings.model_validate(settings_for(sim.port, **changes))
    return HttpSpeaker("speaker-x", settings)


@pytest.fixture
def sim() -> Iterator[HttpSpeakerSim]:
    device = HttpSpeakerSim(password=PASSWORD)
    device.start()
    yield device
    device.stop()


HOSTILE = 'Fire </text><volume>100</volume> & "quotes" \' {volume} 请撤离'


@pytest.mark.parametrize("body_type", ["json", "xml"])
def test_a_text_reaches_a_device_that_speaks_it_exactly_as_sent(
    sim: HttpSpeakerSim, body_type: str
) -> None:
    requests = settings_for(sim.port)["requests"]
    if body_type == "xml":
        requests["play_text"] = {
            "path": "/api/broadcast/text", "body_type": "xml",
            "body": "<Broadcast><text>{text}</text><language>{language}</language></Broadcast>",
        }  # fmt: skip
    speaker = _alone(sim, speech="device", requests=requests, auth="basic", status=None)
    sim.auth = "basic"
    speaker.start(lambda reading: None)
    try:
        speaker.play(text=HOSTILE, clip=None, priority=m.SpeakerPriority.NOTICE, repeat=2,
                     language=m.SpeechLanguage.EN)  # fmt: skip
    finally:
        speaker.stop()
    assert sim.texts[-1]["text"] == HOSTILE  # neither the shape nor the volume changed
    assert sim.texts[-1]["language"] == "en"
    assert set(sim.texts[-1]) <= {"text", "language", "priority", "repeat"}
    assert sim.speaker.volume == 60 and sim.uploads == []


def test_placeholders_are_escaped_for_their_place() -> None:
    template = RequestTemplate.model_validate(
        {"path": "/clips/{clip}/play", "query": {"t": "{text}"}, "headers": {"X-Note": "{text}"},
         "body_type": "json",
         "body": {"v": "{volume}", "say": "{text} at {volume}", "lit": "{{x}}"}}
    )  # fmt: skip
    kw = template.build({"clip": "a/../b?c", "text": 'x"\r\nEvil: 1', "volume": 70})
    assert kw["url"] == "/clips/a%2F..%2Fb%3Fc/play"
    assert kw["headers"]["X-Note"] == 'x"  Evil: 1'
    assert kw["json"] == {"v": 70, "say": 'x"\r\nEvil: 1 at 70', "lit": "{x}"}
    assert kw["params"] == {"t": 'x"\r\nEvil: 1'}  # encoded by httpx
    request = httpx.Request("POST", "http://speaker" + kw["url"], params=kw["params"])
    assert "\r" not in str(request.url) and "%0D%0A" in str(request.url)
    assert xml_escape("<a b='1'>&\x00") == "&lt;a b=&apos;1&apos;&gt;&amp;"


def test_answers_are_read_by_path_in_json_and_in_namespaced_xml() -> None:
    xml = parse(b'<ResponseStatus version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">'
                b"<statusCode>1</statusCode><subStatusCode>ok</subStatusCode>"
                b"<statusString>OK</statusString></ResponseStatus>", "xml")  # fmt: skip
    assert field(xml, "ResponseStatus/statusCode") == "1" and field(xml, "statusString") == "OK"
    assert field(xml, "ResponseStatus/nothing") is None
    doc = parse(b'{"result": {"code": 0, "items": [{"playing": true}]}}', "json")
    assert as_text(field(doc, "result.code")) == "0"
    assert truthy(field(doc, "result.items.0.playing")) and field(doc, "result.items.3") is None
    with pytest.raises(Unreadable, match="not XML"):
        parse(b"<a><b></a>", "xml")
    with pytest.raises(Unreadable, match="not JSON"):
        parse(b"{'code': 0}", "json")
    bomb = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'
    with pytest.raises(Unreadable, match="with a DTD"):
        parse(bomb, "xml")
    with pytest.raises(Unreadable, match="with a DTD"):
        parse(bomb.decode().replace('1.0"', '1.0" encoding="UTF-16"').encode("utf-16"), "xml")


def test_a_status_request_the_device_refuses_is_bad_input(sim: HttpSpeakerSim) -> None:
    status = settings_for(sim.port)["status"] | {"request": {"method": "GET", "path": "/api/st"}}
    speaker = _alone(sim, status=status)
    speaker.start(lambda reading: None)
    try:
        wait_until(lambda: speaker.health.faults.get("status_refused", 0) >= 1, 30, "refused")
        assert speaker.health.condition is m.DeviceCondition.BAD_INPUT and speaker.online
        assert speaker.detail is not None and "answered status with HTTP 404" in speaker.detail
    finally:
        speaker.stop()


def test_an_https_speaker_is_checked_against_the_configured_ca(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    device = HttpSpeakerSim(password=PASSWORD, tls=(str(cert), str(key)))
    device.start()
    trusted = _alone(device, scheme="https", tls_ca=str(cert), status=None)
    stranger = _alone(device, scheme="https", status=None)  # the system's CAs only
    try:
        trusted.set_volume(25)
        assert device.speaker.volume == 25
        with pytest.raises(CommandFailed, match="CERTIFICATE_VERIFY_FAILED"):
            stranger.set_volume(90)
        assert device.speaker.volume == 25
        assert stranger.health.condition is m.DeviceCondition.UNREACHABLE
    finally:
        trusted.stop()
        stranger.stop()
        device.stop()


def test_a_cut_model_answers_nothing_and_the_speaker_is_unreachable_until_restored(
    sim: HttpSpeakerSim,
) -> None:
    speaker = _alone(sim)
    speaker.start(lambda reading: None)
    try:
        wait_until(lambda: speaker.online, 30, "online")
        sim.speaker.cut()  # as a scenario's `cut` step does
        wait_until(lambda: speaker.health.condition is m.DeviceCondition.UNREACHABLE, 30, "cut")
        assert not speaker.online and speaker.health.faults.get("connection_lost", 0) >= 1
        sim.speaker.restore()
        wait_until(lambda: speaker.health.condition is m.DeviceCondition.OK, 30, "restored")
    finally:
        speaker.stop()


def test_a_garbled_answer_is_bad_input_and_the_command_fails(sim: HttpSpeakerSim) -> None:
    speaker = _alone(sim, status=None)
    seen: list[object] = []
    speaker.start(seen.append)
    try:
        speaker.set_volume(40)
        sim.garble = True
        with pytest.raises(CommandFailed, match="answer to volume not JSON"):
            speaker.set_volume(45)
        assert speaker.health.condition is m.DeviceCondition.BAD_INPUT and speaker.online
        assert speaker.health.faults == {"malformed_json": 1}
    finally:
        speaker.stop()


def test_a_device_that_does_not_answer_in_time_fails_the_command_and_is_slow(
    sim: HttpSpeakerSim,
) -> None:
    speaker = _alone(sim, status=None, timeout_s=2.0, slow_s=1.5)
    speaker.start(lambda reading: None)
    try:
        sim.delay_s = 5.0
        with pytest.raises(CommandFailed, match=r"no answer to stop within 2 s"):
            speaker.stop_playing()
        assert speaker.health.condition is m.DeviceCondition.SLOW and not speaker.online
        assert speaker.health.faults == {"timeout": 1}
        sim.delay_s = 0
        speaker.set_volume(20)  # answers again: online, still `slow` until it settles
        assert speaker.online and sim.speaker.volume == 20
    finally:
        speaker.stop()


def test_an_upload_that_is_not_wav_is_refused_by_the_simulator(sim: HttpSpeakerSim) -> None:
    auth = httpx.DigestAuth("admin", PASSWORD)
    fake = httpx.post(f"{sim.url}/api/broadcast/audio", auth=auth, content=b"ID3" + b"\0" * 200,
                      headers={"Content-Type": "audio/wav"})  # fmt: skip
    assert fake.status_code == 400 and "not a WAV file" in fake.json()["msg"]
    wav = tts.speak("测试", volume=50).wav
    short = httpx.post(f"{sim.url}/api/broadcast/audio", auth=auth, content=wav[:2000],
                       headers={"Content-Type": "audio/wav"})  # fmt: skip
    assert short.status_code == 400, short.text
    assert sim.uploads == []


def test_speech_needs_espeak_ng_and_says_which_package(sim: HttpSpeakerSim) -> None:
    with pytest.raises(tts.TtsError, match=r"install the apt package espeak-ng"):
        tts.speak("你好", command="espeak-ng-not-here")
    loud, quiet = tts.speak("你好", volume=100), tts.speak("你好", volume=10)
    assert tts.amplitude(100) == 200 and tts.amplitude(50) == 100
    assert _peak(loud.wav) > _peak(quiet.wav) * 3


def _peak(wav: bytes) -> int:
    with wave.open(io.BytesIO(wav)) as w:
        samples = array.array("h", w.readframes(w.getnframes()))
    return max(abs(s) for s in samples)


def test_site_file_settings_are_checked_with_a_sentence_naming_the_field() -> None:
    def problem(kind: str, settings: dict[str, Any]) -> str:
        dev = edge_config.DeviceConfig(id="s1", kind=kind, driver=HTTP_SPEAKER_DRIVER,
                                       settings=settings)  # fmt: skip
        with pytest.raises(edge_config.ConfigError) as caught:
            hardware_driver(dev, "site.yaml: ")
        return str(caught.value)

    good = settings_for(80)
    assert problem("door", good) == "site.yaml: devices.s1.driver: http drives speakers only"
    bad_name = json.loads(json.dumps(good))
    bad_name["requests"]["stop"] = {"path": "/stop/{channel}"}
    assert problem("speaker", bad_name).startswith(
        "site.yaml: devices.s1.settings.requests.stop: Value error, unknown placeholder {channel}"
    )
    no_audio = json.loads(json.dumps(good))
    del no_audio["requests"]["play_audio"]
    assert "speech: edge needs requests.play_audio" in problem("speaker", no_audio)
    secret = dict(good, password=None)
    said = problem("speaker", secret)
    assert "give the device's password once: password (in a site file on the node) or" in said
    assert "auth: none takes no password" in problem("speaker", dict(good, auth="none"))
    assert hardware_driver(edge_config.DeviceConfig(
        id="s1", kind="speaker", driver=HTTP_SPEAKER_DRIVER,
        settings=dict(good, auth="none", password=None)), "")  # fmt: skip
    wrong = dict(good, timeout_s="soon", password="hunter2-secret")
    assert "hunter2-secret" not in problem("speaker", wrong)
