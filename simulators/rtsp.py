"""A synthetic scene as an IP camera's RTSP stream: RTSP 1.0 (RFC 2326) serving Motion JPEG over
RTP (RFC 2435, simulators.rtp_jpeg), on a Hikvision-like path with digest or basic
authentication, so the edge agent opens it with OpenCV exactly as it opens a camera:
``cv2.VideoCapture("rtsp://user:password@127.0.0.1:8554/Streaming/Channels/101")``.

RTP goes interleaved on the RTSP connection (RTP/AVP/TCP, RFC 2326 10.12) or by UDP to the
client's ports (RTP/AVP), one session per client; every viewer sees the same moment of the
scene, whose clock starts with the server. A client that goes away ends only its own session.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import BinaryIO, Literal
from urllib.parse import quote

from simulators.rtp_jpeg import CLOCK_RATE, PAYLOAD_TYPE, payloads, rtp_packet
from simulators.rtsp_auth import CameraAccount, Scheme
from simulators.rtsp_frames import Frames, FrameSource

log = logging.getLogger(__name__)

Transport = Literal["tcp", "udp"]
PATH = "/Streaming/Channels/101"  # Hikvision's main stream of channel 1
TRACK = "trackID=1"
SESSION_TIMEOUT_S = 60  # default; announced in Session: a UDP session silent this long ends
_METHODS = ("OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER")
_MAX_LINE, _MAX_HEADERS, _MAX_BODY = 8192, 64, 65536
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            454: "Session Not Found", 455: "Method Not Valid in This State",
            459: "Aggregate Operation Not Allowed", 461: "Unsupported Transport",
            501: "Not Implemented", 505: "RTSP Version Not Supported"}  # fmt: skip

__all__ = ["PATH", "FrameSource", "RtspServer"]


@dataclass
class _Request:
    method: str
    url: str
    path: str  # of the URL, without query
    headers: dict[str, str]  # names in lower case

    @property
    def cseq(self) -> str:
        return self.headers.get("cseq", "0")


@dataclass(eq=False)
class _Session:
    id: str
    connection: _Connection
    transport: Transport
    channel: int = 0  # interleaved RTP channel (RTCP would be channel + 1)
    client: tuple[str, int] | None = None  # UDP: where RTP goes
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    seq: int = field(default_factory=lambda: secrets.randbits(16))
    rtp_base: int = field(default_factory=lambda: secrets.randbits(32))
    seen: float = field(default_factory=time.monotonic)
    playing: threading.Event = field(default_factory=threading.Event)
    streaming: bool = False  # its sender thread was started
    ended: threading.Event = field(default_factory=threading.Event)


class _Connection:
    """One client's RTSP connection: responses and interleaved RTP share it, one write at a time."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        self.sock, self.peer = sock, peer
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already gone
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class RtspServer:
    """An RTSP camera serving `source` at `path`; `start()` returns the URL to open (with the
    account in it, as OpenCV takes it; keep it out of logs). `password` may be changed while
    it runs, as after a password change on a camera."""

    def __init__(
        self, source: FrameSource, host: str = "127.0.0.1", port: int = 0,
        username: str | None = "admin", password: str | None = "admin12345", *,
        auth: Scheme = "digest", path: str = PATH, transports: tuple[Transport, ...] = ("udp", "tcp"),
        loop: bool = True, quality: int = 85, session_timeout_s: int = SESSION_TIMEOUT_S,
    ) -> None:  # fmt: skip
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError(f"the stream path {path!r} must start with / and not end with one")
        if (username is None) != (password is None):
            raise ValueError("give both a username and a password, or neither for no account")
        if not transports or not set(transports) <= {"tcp", "udp"}:
            raise ValueError(f"transports {transports!r}: choose from 'tcp' and 'udp'")
        self.account = None if username is None or password is None else CameraAccount(
            username, password, auth)  # fmt: skip
        if session_timeout_s < 1:
            raise ValueError("session_timeout_s is whole seconds, at least 1")
        self.path, self.transports, self.session_timeout_s = path, transports, session_timeout_s
        self.frames = Frames(source, loop=loop, quality=quality)
        self.refused = 0  # requests refused for a wrong or missing account
        self._listener = socket.create_server((host, port))
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((host, 0))
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def password(self) -> str | None:
        return None if self.account is None else self.account.password

    @password.setter
    def password(self, value: str) -> None:
        """A new password, as after a password change on the camera."""
        if self.account is None:
            raise ValueError("this camera has no account to change the password of")
        self.account.password = value

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The stream's URL with the account in it (percent-encoded, as FFmpeg decodes it)."""
        host, port = self.address
        account = ""
        if self.account is not None:
            user, password = self.account.username, self.account.password
            account = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"rtsp://{account}{host}:{port}{self.path}"

    @property
    def stream_uri(self) -> str:
        """The stream's URL without the account, as ONVIF's GetStreamUri gives it."""
        host, port = self.address
        return f"rtsp://{host}:{port}{self.path}"

    def start(self) -> str:
        self.frames.start()
        self._spawn(self._accept, "rtsp-accept")
        log.info("serving RTSP at rtsp://%s:%d%s (%s)", *self.address, self.path,
                 "/".join(self.transports))  # fmt: skip
        return self.url

    def stop(self) -> None:
        """Stop serving; every client's connection is closed."""
        self._closing.set()
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
            sessions = list(self._sessions.values())
        for s in sessions:
            s.ended.set()
        for c in connections:
            c.close()
        self.frames.stop()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=5)
        self._udp.close()

    def sessions(self) -> int:
        """How many sessions are set up."""
        with self._lock:
            return len(self._sessions)

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    # ---- connections ----

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError:
                return  # closed by stop()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, peer[:2])
            with self._lock:
                self._connections.add(conn)
            self._spawn(self._serve, f"rtsp-{peer[0]}:{peer[1]}", conn)

    def _serve(self, conn: _Connection) -> None:
        reader = conn.sock.makefile("rb")
        try:
            while not self._closing.is_set():
                request = self._read(reader, conn)
                if request is None:
                    break
                self._answer(request, conn)
        except (OSError, ValueError) as exc:
            log.info("rtsp client %s:%d gone: %s", *conn.peer, exc)
        finally:
            reader.close()
            conn.close()
            with self._lock:
                self._connections.discard(conn)
                mine = [s for s in self._sessions.values() if s.connection is conn]
                for s in mine:
                    del self._sessions[s.id]
            for s in mine:
                s.ended.set()
            log.debug("rtsp client %s:%d closed, %d session(s) ended", *conn.peer, len(mine))

    def _read(self, reader: BinaryIO, conn: _Connection) -> _Request | None:
        """The next request on the connection, skipping interleaved packets (the client's RTCP
        reports); None at its end. A malformed request is answered 400 and ends it."""
        while True:
            first = reader.read(1)
            if not first:
                return None
            if first == b"$":  # RFC 2326 10.12: $, channel, 16-bit length, packet
                header = reader.read(3)
                if len(header) < 3:
                    return None
                reader.read(struct.unpack(">H", header[1:])[0])
                continue
            if first in b"\r\n":
                continue
            line = first + reader.readline(_MAX_LINE)
            break
        parts = line.decode("latin-1").split()
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = reader.readline(_MAX_LINE).decode("latin-1")
            if raw in ("\r\n", "\n", ""):
                break
            name, sep, value = raw.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        else:
            self._bad(conn, headers, "too many header lines")
            return None
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > _MAX_BODY:
            self._bad(conn, headers, f"Content-Length {length[:20]!r} is not 0 to 64 KiB")
            return None
        reader.read(int(length))
        if len(parts) != 3 or not parts[2].startswith("RTSP/"):
            self._bad(conn, headers, f"not an RTSP request line: {line[:80]!r}")
            return None
        if parts[2] != "RTSP/1.0":
            self._reply(conn, headers.get("cseq", "0"), 505)
            return None
        method, url = parts[0], parts[1]
        path = url.split("://", 1)[-1].partition("/")[2].partition("?")[0]
        return _Request(method, url, "/" + path, headers)

    def _bad(self, conn: _Connection, headers: dict[str, str], why: str) -> None:
        log.warning("rtsp client %s:%d sent a malformed request (%s): closing", *conn.peer, why)
        self._reply(conn, headers.get("cseq", "0"), 400)

    # ---- methods ----

    def _answer(self, req: _Request, conn: _Connection) -> None:
        log.debug("rtsp client %s:%d: %s %s", *conn.peer, req.method, req.path)
        if req.method not in _METHODS:
            self._reply(conn, req.cseq, 501, {"Public": ", ".join(_METHODS)})
            return
        if req.method == "OPTIONS":  # cameras answer it without an account
            self._reply(conn, req.cseq, 200, {"Public": ", ".join(_METHODS)})
            return
        if not self._authorised(req, conn):
            return
        stream = self.path.rstrip("/")
        track = f"{stream}/{TRACK}"
        if req.path.rstrip("/") not in (stream, track):
            self._reply(conn, req.cseq, 404)
            return
        if req.method == "DESCRIBE":
            base = req.url.partition("?")[0].rstrip("/")
            if base.endswith("/" + TRACK):
                base = base[: -len(TRACK) - 1]
            sdp = self._sdp(base).encode()
            self._reply(conn, req.cseq, 200, {"Content-Type": "application/sdp",
                        "Content-Base": base + "/"}, sdp)  # fmt: skip
            return
        if req.method == "SETUP":
            self._setup(req, conn)
            return
        session = self._session(req, conn)
        if session is None:
            return
        session.seen = time.monotonic()
        extra = {"Session": f"{session.id};timeout={self.session_timeout_s}"}
        if req.method == "PLAY":
            self._reply(conn, req.cseq, 200, {**extra, "Range": "npt=0.000-",
                        "RTP-Info": f"url={req.url.partition('?')[0]};seq={session.seq}"})  # fmt: skip
            if not session.playing.is_set():
                session.playing.set()
                if not session.streaming:  # after a PAUSE its sender is still there
                    session.streaming = True
                    self._spawn(self._stream, f"rtp-{session.id}", session)
                log.info("rtsp session %s plays to %s:%d over %s", session.id, *conn.peer,
                         session.transport)  # fmt: skip
        elif req.method == "PAUSE":
            session.playing.clear()
            self._reply(conn, req.cseq, 200, extra)
        elif req.method == "TEARDOWN":
            with self._lock:
                self._sessions.pop(session.id, None)
            session.ended.set()
            self._reply(conn, req.cseq, 200)
            log.info("rtsp session %s torn down by %s:%d", session.id, *conn.peer)
        else:  # GET_PARAMETER: the clients' keep-alive
            self._reply(conn, req.cseq, 200, extra)

    def _sdp(self, base: str) -> str:
        host = self.address[0]
        fps = self.frames.fps
        lines = ["v=0", f"o=- {secrets.randbits(31)} 1 IN IP4 {host}", "s=gridwatch simulated camera",
                 "c=IN IP4 0.0.0.0", "t=0 0", "a=control:*", f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
                 f"a=rtpmap:{PAYLOAD_TYPE} JPEG/{CLOCK_RATE}", f"a=framerate:{fps:g}",
                 f"a=control:{base}/{TRACK}"]  # fmt: skip
        return "\r\n".join(lines) + "\r\n"

    def _setup(self, req: _Request, conn: _Connection) -> None:
        if "session" in req.headers:  # one track only: a second SETUP has nothing to add
            self._reply(conn, req.cseq, 459)
            return
        chosen = self._transport(req.headers.get("transport", ""), conn)
        if chosen is None:
            log.info("rtsp client %s:%d asked for no transport offered here (%s): 461", *conn.peer,
                     req.headers.get("transport", "none")[:200])  # fmt: skip
            self._reply(conn, req.cseq, 461)
            return
        session, reply = chosen
        log.debug("rtsp transport asked %r, given %r", req.headers.get("transport"), reply)
        with self._lock:
            self._sessions[session.id] = session
        self._reply(conn, req.cseq, 200, {"Transport": reply,
                    "Session": f"{session.id};timeout={self.session_timeout_s}"})  # fmt: skip

    def _transport(self, header: str, conn: _Connection) -> tuple[_Session, str] | None:
        """The first of the client's transports (RFC 2326 12.39) this server offers."""
        for spec in header.split(","):
            fields = [f.strip() for f in spec.split(";")]
            params = dict(f.partition("=")[::2] for f in fields[1:])
            mode = params.get("mode", "PLAY").strip('"').upper()
            if "multicast" in fields or mode != "PLAY":
                continue
            sid = secrets.token_hex(8)
            ssrc = f"{secrets.randbits(32):08X}"
            if fields[0] == "RTP/AVP/TCP" and "tcp" in self.transports:
                low = int(params.get("interleaved", "0-1").partition("-")[0])
                session = _Session(sid, conn, "tcp", channel=low, ssrc=int(ssrc, 16))
                return session, f"RTP/AVP/TCP;unicast;interleaved={low}-{low + 1};ssrc={ssrc}"
            if fields[0] in ("RTP/AVP", "RTP/AVP/UDP") and "udp" in self.transports:
                if "client_port" not in params:
                    continue
                rtp = int(params["client_port"].partition("-")[0])
                port = self._udp.getsockname()[1]
                session = _Session(sid, conn, "udp", client=(conn.peer[0], rtp), ssrc=int(ssrc, 16))
                return session, (f"RTP/AVP;unicast;client_port={params['client_port']};"
                                 f"server_port={port}-{port + 1};ssrc={ssrc}")  # fmt: skip
        return None

    def _session(self, req: _Request, conn: _Connection) -> _Session | None:
        sid = req.headers.get("session", "").partition(";")[0].strip()
        with self._lock:
            session = self._sessions.get(sid)
        if session is None:
            self._reply(conn, req.cseq, 454 if sid or req.method != "GET_PARAMETER" else 200)
        return session

    # ---- authentication ----

    def _authorised(self, req: _Request, conn: _Connection) -> bool:
        if self.account is None:
            return True
        given = req.headers.get("authorization", "")
        if self.account.allows(req.method, given):
            return True
        if given:  # a client's first try carries no account: only a wrong one is worth a line
            self.refused += 1
            log.warning("rtsp client %s:%d refused: wrong account for %s", *conn.peer, req.method)
        self._reply(conn, req.cseq, 401, {"WWW-Authenticate": self.account.challenge()})
        return False

    # ---- replies and media ----

    def _reply(
        self, conn: _Connection, cseq: str, status: int, headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:  # fmt: skip
        lines = [f"RTSP/1.0 {status} {_REASONS[status]}", f"CSeq: {cseq}",
                 f"Date: {formatdate(usegmt=True)}", "Server: gridwatch-rtsp-simulator"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _stream(self, session: _Session) -> None:
        """Send the scene's frames to one session until it ends; its failure is its own."""
        number = -1
        try:
            while not session.ended.is_set() and not self._closing.is_set():
                if (
                    session.transport == "udp"
                    and time.monotonic() - session.seen > self.session_timeout_s
                ):
                    log.info("rtsp session %s timed out", session.id)
                    break
                frame = self.frames.next_after(number, timeout=1.0)
                if frame is None or not session.playing.is_set():
                    if self.frames.ended:  # played once to its end: the client sees it end
                        log.info("rtsp session %s: the source has ended", session.id)
                        session.connection.close()
                        break
                    continue
                number = frame.number
                stamp = session.rtp_base + frame.rtp_time
                chunks = payloads(frame.jpeg)
                packets = []
                for i, chunk in enumerate(chunks):
                    packets.append(rtp_packet(chunk, seq=session.seq, timestamp=stamp,
                                              ssrc=session.ssrc, marker=i == len(chunks) - 1))  # fmt: skip
                    session.seq = (session.seq + 1) & 0xFFFF
                if session.transport == "tcp":
                    session.connection.send(b"".join(
                        struct.pack(">cBH", b"$", session.channel, len(p)) + p for p in packets))  # fmt: skip
                else:
                    assert session.client is not None
                    for p in packets:
                        self._udp.sendto(p, session.client)
        except OSError as exc:  # the client went away mid-frame
            log.info("rtsp session %s ended: %s", session.id, exc)
        finally:
            session.ended.set()
            with self._lock:
                self._sessions.pop(session.id, None)
