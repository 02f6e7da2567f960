"""The RTSP camera simulator (simulators/rtsp.py) read by OpenCV's FFmpeg backend, as the edge
agent reads a camera: the frames are the scene's, the account is checked, several clients watch
at once and one leaving stops nobody else; on the wire it speaks RFC 2326 and RFC 2435; and an
intrusion filmed by it becomes an incident on the platform."""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from cv2.typing import MatLike

from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from simulators import scenes
from simulators.rtp_jpeg import NotRtpJpeg
from simulators.rtsp import PATH, RtspServer
from simulators.scenes import Scene, Walker
from tests.support import wait_until

_OPEN = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 20000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 20000]


class Numbered:
    """Frames that show their own number as 16 black or white bars."""

    fps = 20.0  # FFmpeg probes 20 frames before it opens: a second at this rate

    def frames(self) -> int:
        return 1 << 16

    def frame(self, index: int) -> MatLike:
        img = np.zeros((80, 640, 3), np.uint8)
        for bit in range(16):
            if index >> bit & 1:
                img[:, bit * 40 : (bit + 1) * 40] = 255
        return img


def number_of(frame: MatLike) -> int:
    return sum(
        1 << bit for bit in range(16) if frame[20:60, bit * 40 + 10 : bit * 40 + 30].mean() > 128
    )


def capture(url: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, _OPEN)
    assert cap.isOpened(), f"OpenCV could not open {url.rsplit('@', maxsplit=1)[-1]}"
    return cap


def read(cap: cv2.VideoCapture) -> MatLike:
    ok, frame = cap.read()
    assert ok and frame is not None
    return frame


@pytest.fixture
def numbered() -> Iterator[RtspServer]:
    server = RtspServer(Numbered(), username="viewer", password="s3cret-Pass")
    server.start()
    yield server
    server.stop()


# ---- OpenCV reads it ----


@pytest.mark.parametrize(
    ("transport", "auth"), [("tcp", "digest"), ("udp", "digest"), ("tcp", "basic")]
)
def test_opencv_reads_the_scenes_frames(
    transport: str, auth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each frame read is the scene's frame of that moment (JPEG's loss aside), in order."""
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", f"rtsp_transport;{transport}")
    scene = Scene("rtsp", 8, fps=10, walkers=[Walker(((0, 0.05, 0.7), (8, 0.95, 0.7)), height=0.4)])
    server = RtspServer(scene, auth=auth)  # type: ignore[arg-type]
    url = server.start()
    assert url.endswith("/Streaming/Channels/101") and url.startswith("rtsp://admin:")

    def small(img: MatLike) -> np.typing.NDArray[np.int16]:
        return cv2.resize(img, (80, 45), interpolation=cv2.INTER_AREA).astype(np.int16)

    truth = [small(scene.frame(i)) for i in range(scene.frames())]
    try:
        cap = capture(url)
        assert cap.get(cv2.CAP_PROP_FPS) == 10  # from the SDP's a=framerate
        matched = []
        for _ in range(8):
            frame = read(cap)
            assert frame.shape == (360, 640, 3)
            errors = [float(np.abs(small(frame) - t).mean()) for t in truth]
            best = int(np.argmin(errors))
            # within a grey level or two of its frame, far from the frame two seconds away
            assert errors[best] < 2.0 and errors[(best + 20) % len(truth)] > 2.5, errors[best]
            matched.append(best)
        cap.release()
    finally:
        server.stop()
    steps = [(b - a) % len(truth) for a, b in itertools.pairwise(matched)]
    assert all(0 < s < 10 for s in steps), matched  # later frames, in order


@pytest.mark.parametrize("auth", ["digest", "basic"])
def test_a_wrong_password_is_refused_and_never_logged(
    auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = RtspServer(Numbered(), username="viewer", password="right-Pass1", auth=auth)  # type: ignore[arg-type]
    url = server.start()
    try:
        cap = cv2.VideoCapture(url.replace("right-Pass1", "wrong-Pass2"), cv2.CAP_FFMPEG, _OPEN)
        assert not cap.isOpened()
        cap.release()
        assert server.refused >= 1 and server.sessions() == 0
        server.password = "ch@nged:Pass/3"  # the camera's password changed: the old one fails
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, _OPEN)
        assert not cap.isOpened()
        cap.release()
        assert "ch%40nged%3APass%2F3@" in server.url  # percent-encoded in the URL
        cap = capture(server.url)
        read(cap)
        cap.release()
    finally:
        server.stop()
    logged = caplog.text
    assert "refused" in logged
    secrets = ("right-Pass1", "wrong-Pass2", "ch@nged:Pass/3", "ch%40nged")
    assert not any(p in logged for p in secrets)


def test_two_clients_at_once_and_one_leaving_stops_nobody(numbered: RtspServer) -> None:
    first, second = capture(numbered.url), capture(numbered.url)
    a = [number_of(read(first)) for _ in range(5)]
    b = [number_of(read(second)) for _ in range(5)]
    assert a == sorted(a) and b == sorted(b) and len(set(a)) == len(set(b)) == 5
    first.release()  # one viewer leaves (TEARDOWN, then its connection closes)
    wait_until(lambda: numbered.sessions() == 1, 20, "the first viewer's session ended")
    left_at = number_of(read(second))
    seen = left_at
    for _ in range(400):  # the other keeps receiving new frames (well past its buffer)
        seen = number_of(read(second))
        if seen >= left_at + 40:
            break
    assert seen >= left_at + 40
    third = capture(numbered.url)  # and a newcomer gets in
    assert number_of(read(third)) > left_at
    third.release()
    second.release()


def test_a_tcp_only_camera_refuses_udp_and_ffmpeg_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="simulators.rtsp")
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp+tcp")  # UDP first
    server = RtspServer(Numbered(), transports=("tcp",))
    try:
        cap = capture(server.start())
        read(cap)
        cap.release()
    finally:
        server.stop()
    refused = [r.getMessage() for r in caplog.records if r.getMessage().endswith(": 461")]
    assert len(refused) == 1 and "RTP/AVP/UDP;unicast;client_port=" in refused[0]
    assert " over tcp" in caplog.text and " over udp" not in caplog.text


def test_keep_alives_hold_a_udp_session_and_silence_ends_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """FFmpeg sends GET_PARAMETER every half session timeout; a client that sends nothing for
    the timeout loses its UDP session (RFC 2326 12.37) though its connection stays open."""
    caplog.set_level(logging.DEBUG, logger="simulators.rtsp")
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp")
    server = RtspServer(Numbered(), username=None, password=None, session_timeout_s=2)
    server.start()
    try:
        cap = capture(server.url)
        numbers = [number_of(read(cap)) for _ in range(160)]  # 8 s and more: four timeouts
        assert numbers[-1] - numbers[0] >= 100 and server.sessions() == 1
        cap.release()
        assert caplog.text.count(": GET_PARAMETER ") >= 3

        c = Client(server)
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        port = rtp.getsockname()[1]
        status, headers, _ = c.request("SETUP", f"{c.base}/trackID=1",
                                       Transport=f"RTP/AVP;unicast;client_port={port}-{port + 1}")  # fmt: skip
        assert status == 200 and "server_port=" in headers["transport"]
        assert headers["session"].endswith(";timeout=2")
        session = headers["session"].partition(";")[0]
        assert c.request("PLAY", c.base, Session=session)[0] == 200
        rtp.settimeout(20)
        packet = rtp.recv(2048)
        assert packet[0] >> 6 == 2 and packet[1] & 0x7F == 26  # RTP/JPEG by UDP
        wait_until(lambda: server.sessions() == 0, 30, "the silent client's session ended")
        assert c.request("GET_PARAMETER", c.base, Session=session)[0] == 454
        rtp.close()
        c.file.close()
        c.sock.close()
    finally:
        server.stop()


def test_a_source_played_once_ends_the_stream() -> None:
    server = RtspServer(Scene("once", 3, fps=20), loop=False)
    try:
        cap = capture(server.start())
        assert not all(cap.read()[0] for _ in range(200))  # 60 frames, then the end
        cap.release()
    finally:
        server.stop()


def test_a_frame_rtp_jpeg_cannot_carry_is_refused_with_the_reason() -> None:
    with pytest.raises(NotRtpJpeg, match="8-pixel units up to 2040: 642x360"):
        RtspServer(Scene("odd", 2, width=642))


# ---- on the wire ----


class Client:
    """A bare RTSP client on a socket, to look at what the server says."""

    def __init__(self, server: RtspServer) -> None:
        self.sock = socket.create_connection(server.address, timeout=20)
        self.file = self.sock.makefile("rb")
        self.cseq = 0
        host, port = server.address
        self.base = f"rtsp://{host}:{port}{PATH}"

    def request(self, method: str, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}"]
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while True:  # interleaved packets may come before the answer
            first = self.file.read(1)
            if first != b"$":
                break
            size = struct.unpack(">xH", self.file.read(3))[0]
            self.file.read(size)
        status = int((first + self.file.readline()).split()[1])
        got: dict[str, str] = {}
        while (line := self.file.readline().decode()) not in ("\r\n", ""):
            name, _, value = line.partition(":")
            got[name.strip().lower()] = value.strip()
        assert got["cseq"] == str(self.cseq)
        return status, got, self.file.read(int(got.get("content-length", "0")))

    def packet(self) -> tuple[int, bytes]:
        """The next interleaved packet: its channel and data."""
        assert self.file.read(1) == b"$"
        channel, size = struct.unpack(">BH", self.file.read(3))
        return channel, self.file.read(size)


def _digest(params: dict[str, str], method: str, uri: str, password: str, qop: bool) -> str:
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    realm, nonce = params["realm"], params["nonce"]
    ha1, ha2 = md5(f"viewer:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = f'username="viewer", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if not qop:
        return f'Digest {fields}, response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
    answer = md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}")
    return f'Digest {fields}, qop=auth, nc=00000001, cnonce="c0ffee", response="{answer}"'


@pytest.mark.parametrize("qop", [False, True])
def test_the_server_speaks_rtsp_and_rtp_jpeg(numbered: RtspServer, qop: bool) -> None:
    c = Client(numbered)
    status, headers, _ = c.request("OPTIONS", c.base)
    assert status == 200 and "GET_PARAMETER" in headers["public"] and "SETUP" in headers["public"]
    status, headers, _ = c.request("DESCRIBE", c.base, Accept="application/sdp")
    assert status == 401
    challenge = dict(re.findall(r'(\w+)="([^"]*)"', headers["www-authenticate"]))
    assert headers["www-authenticate"].startswith("Digest ") and challenge["nonce"]
    status, _, _ = c.request(
        "DESCRIBE", c.base, Authorization=_digest(challenge, "DESCRIBE", c.base, "nope", qop)
    )
    assert status == 401
    auth = _digest(challenge, "DESCRIBE", c.base, "s3cret-Pass", qop)
    status, headers, sdp = c.request("DESCRIBE", c.base, Authorization=auth)
    assert status == 200 and headers["content-type"] == "application/sdp"
    assert b"m=video 0 RTP/AVP 26" in sdp and b"a=framerate:20" in sdp
    track = re.search(rb"a=control:(rtsp://\S+)", sdp)
    assert track is not None
    url = track.group(1).decode()

    def auth_for(method: str, uri: str) -> str:
        return _digest(challenge, method, uri, "s3cret-Pass", qop)

    status, _, _ = c.request("SETUP", url, Authorization=auth_for("SETUP", url),
                             Transport="RTP/AVP;multicast;port=5000-5001")  # fmt: skip
    assert status == 461  # multicast is not offered
    status, _, _ = c.request(
        "PLAY", c.base, Authorization=auth_for("PLAY", c.base), Session="12345"
    )
    assert status == 454
    status, headers, _ = c.request("SETUP", url, Authorization=auth_for("SETUP", url),
                                   Transport="RTP/AVP/TCP;unicast;interleaved=4-5")  # fmt: skip
    assert status == 200 and "interleaved=4-5" in headers["transport"]
    session = headers["session"].partition(";")[0]
    assert headers["session"].endswith(";timeout=60")
    status, headers, _ = c.request(
        "PLAY", c.base, Authorization=auth_for("PLAY", c.base), Session=session
    )
    assert status == 200 and "seq=" in headers["rtp-info"]

    # one frame's RTP packets (RFC 3550) carrying JPEG (RFC 2435)
    packets: list[bytes] = []
    while not packets or not packets[-1][1] & 0x80:
        channel, data = c.packet()
        assert channel == 4
        if packets or struct.unpack(">I", data[12:16])[0] & 0xFFFFFF == 0:  # from a frame's start
            packets.append(data)
    offset = 0
    for i, p in enumerate(packets):
        version, pt, seq, stamp = p[0] >> 6, p[1] & 0x7F, struct.unpack(">H", p[2:4])[0], p[4:8]
        assert (version, pt) == (2, 26) and stamp == packets[0][4:8]
        assert seq == (struct.unpack(">H", packets[0][2:4])[0] + i) & 0xFFFF
        assert bool(p[1] & 0x80) == (i == len(packets) - 1)  # the marker ends the frame
        frag, kind, q, w8, h8 = (
            struct.unpack(">I", p[12:16])[0] & 0xFFFFFF,
            p[16],
            p[17],
            p[18],
            p[19],
        )
        assert (frag, kind, q, w8, h8) == (offset, 1, 255, 80, 10)
        body = p[20:]
        if i == 0:  # the quantization table header: 8-bit, two tables
            assert body[:4] == b"\x00\x00\x00\x80"
            body = body[4 + 128 :]
        offset += len(body)
    status, _, _ = c.request("GET_PARAMETER", c.base, Authorization=auth_for("GET_PARAMETER", c.base),
                             Session=session)  # fmt: skip
    assert status == 200
    for method in ("PAUSE", "PLAY"):  # paused and played again: still one sender
        status, _, _ = c.request(method, c.base, Authorization=auth_for(method, c.base),
                                 Session=session)  # fmt: skip
        assert status == 200
    assert c.packet()[0] == 4
    assert [t.name for t in threading.enumerate()].count(f"rtp-{session}") == 1
    status, _, _ = c.request("FLY", c.base)
    assert status == 501
    # the client vanishes without a TEARDOWN: its session ends, the server goes on
    c.file.close()
    c.sock.close()
    wait_until(lambda: numbered.sessions() == 0, 20, "the vanished client's session ended")
    cap = capture(numbered.url)
    read(cap)
    cap.release()


def test_a_malformed_request_is_answered_400(numbered: RtspServer) -> None:
    sock = socket.create_connection(numbered.address, timeout=20)
    sock.sendall(b"HELLO\r\nCSeq: 1\r\n\r\n")
    assert sock.makefile("rb").readline().startswith(b"RTSP/1.0 400")
    sock.close()
    cap = capture(numbered.url)
    read(cap)
    cap.release()


def test_the_rtsp_benchmark_runs() -> None:
    from gridwatch.bench.rtsp import measure

    figures = measure(25.0, 2, 1.0)
    assert figures["clients"] == 2 and figures["frames_per_s_per_client_min"] > 0


# ---- end to end ----


def test_gridwatch_scene_serve_rtsp(tmp_path: Path) -> None:
    """`gridwatch scene serve --rtsp` prints the URL (account in it) and camera settings."""
    import json
    import os

    from tests.support import stop_process

    env = {**os.environ, "GRIDWATCH_SCENE_PASSWORD": "Cli-pass-42"}
    serve = subprocess.Popen([sys.executable, "-m", "gridwatch.cli", "scene", "serve", "intrusion",
                              "--rtsp", "--port", "0", "--user", "guard"],
                             stdout=subprocess.PIPE, stderr=(tmp_path / "serve.log").open("ab"),
                             env=env, text=True)  # fmt: skip
    try:
        assert serve.stdout is not None
        lines = []
        while (line := serve.stdout.readline()) and line != "}\n":
            lines.append(line)
        printed = json.loads("".join([*lines, "}"]))
        url = printed["url"]
        assert url.startswith("rtsp://guard:Cli-pass-42@127.0.0.1:") and url.endswith(PATH)
        assert printed["camera_settings"]["source"] == url
        cap = capture(url)
        assert read(cap).shape == (360, 640, 3)
        cap.release()
    finally:
        stop_process(serve)


def test_an_intrusion_filmed_over_rtsp_becomes_an_incident(
    stack: LocalStack, nodes: list[NodeCredentials], ingest: object, tmp_path: Path
) -> None:
    """A real edge agent's opencv camera driver reads the simulated camera's RTSP stream (digest
    account in the URL, as for a real camera): the intrusion in the yard is stored as a camera
    alert with its snapshot and raises an incident; the account's password is in no log."""
    from tests.edge_support import site_file
    from tests.support import device_of, rows, stop_process

    scene = Scene("rtsp-e2e", 20, walkers=[Walker(((2, 0.3, 0.45), (4, 0.75, 0.8), (9, 0.75, 0.8), (11, 0.3, 0.45)))],
                  zones=[scenes.RESTRICTED])  # fmt: skip
    server = RtspServer(scene, username="admin", password="Yard-cam-8831")
    url = server.start()
    camera = device_of(nodes[0], "camera")
    settings = {
        **scenes.camera_settings(scene, url),
        "reconnect_min_s": 0.5,
        "reconnect_max_s": 1.0,
    }
    config = site_file(stack, nodes[0], tmp_path / "site", cameras={camera: settings})
    log_file = tmp_path / "agent.log"
    agent = subprocess.Popen([sys.executable, "-m", "gridwatch.cli", "edge", "--config", str(config)],
                             stdout=log_file.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
    dsn = stack.dsn
    try:
        started = "SELECT snapshot FROM camera_alerts WHERE device_id = %s AND phase = 'start' AND kind = 'intrusion'"
        wait_until(lambda: bool(rows(dsn, started, (camera,))), 60, "an intrusion alert")
        ref = str(rows(dsn, started, (camera,))[0][0])
        wait_until(lambda: bool(rows(dsn, "SELECT 1 FROM camera_snapshots WHERE id = %s", (ref,))), 20,
                   "its snapshot")  # fmt: skip
        incident = "SELECT detail->>'snapshot' FROM incidents WHERE rule = 'camera_intrusion' AND device_id = %s"
        wait_until(lambda: bool(rows(dsn, incident, (camera,))), 20, "an incident")
        assert rows(dsn, incident, (camera,))[0][0] == ref
        assert server.refused == 0
    finally:
        stop_process(agent)
        server.stop()
    assert "Yard-cam-8831" not in log_file.read_text(errors="replace")
