"""The HTTP side every simulated Hikvision ISAPI device shares, written from Hikvision's
published ISAPI documents and RFC 7616.

An `IsapiServer` listens on 127.0.0.1 and answers like a device's web server: digest
authentication (MD5, qop=auth; the password can be changed while it runs, as an installer
changes it on a real device), routes by method and path, `/ISAPI/System/deviceInfo` and
`/ISAPI/System/time`, and the alert stream `/ISAPI/Event/notification/alertStream`: one
`multipart/mixed` response that never ends, one part per event, and a `videoloss`/`inactive`
part as the heartbeat when nothing happens (what Hikvision cameras send). Devices built on it
(simulators/isapi_camera.py, simulators/isapi_access.py) add their routes and `publish` their
event bodies. Fault switches for tests: `delay_s` (answers slowly), `clock_offset_s` (device
clock off), `inject` (raw bytes into the open streams: a malformed body, an unknown event),
`half_close` (open streams go silent, sockets left open), `halt`/`serve` (power off and on).
Nothing here imports the edge's ISAPI code: the protocol side is written from the documents.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit
from urllib.request import parse_http_list, parse_keqv_list
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

ALERT_STREAM = "/ISAPI/Event/notification/alertStream"
BOUNDARY = "boundary"  # what Hikvision devices use
XML = 'application/xml; charset="UTF-8"'
JSON = "application/json; charset=utf-8"
NS = "http://www.hikvision.com/ver20/XMLSchema"
CHINA = timezone(timedelta(hours=8))  # the devices' local time in the demo venues
_UNAUTHORIZED = (b"<html><head><title>Document Error: Unauthorized</title></head><body>"
                 b"<h2>Access Error: 401 -- Unauthorized</h2><p>Authentication Error</p>"
                 b"</body></html>")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]  # names lower case
    body: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = XML
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Reply]


def part(body: bytes, content_type: str = XML) -> bytes:
    """One part of the alert stream, framed as devices frame it (with Content-Length)."""
    head = f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body + b"\r\n"


def response_status(
    url: str, code: int = 1, sub: str = "ok", *, as_json: bool = False, http: int | None = None
) -> Reply:
    """ISAPI's ResponseStatus: statusCode 1 OK, 2 Device Busy, 3 Device Error, 4 Invalid
    Operation, 5 Invalid XML Format, 6 Invalid XML Content, 7 Reboot Required."""
    words = {1: "OK", 2: "Device Busy", 3: "Device Error", 4: "Invalid Operation",
             5: "Invalid XML Format", 6: "Invalid XML Content", 7: "Reboot Required"}[code]  # fmt: skip
    status = http or (200 if code == 1 else 400)
    if as_json:
        import json

        body = {"requestURL": url, "statusCode": code, "statusString": words,
                "subStatusCode": sub, "errorCode": 1 if code == 1 else code,
                "errorMsg": "ok" if code == 1 else sub}  # fmt: skip
        return Reply(status, json.dumps(body).encode(), JSON)
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ResponseStatus version="2.0" xmlns="{NS}">\n'
           f"<requestURL>{escape(url)}</requestURL>\n<statusCode>{code}</statusCode>\n"
           f"<statusString>{words}</statusString>\n<subStatusCode>{escape(sub)}</subStatusCode>\n"
           "</ResponseStatus>\n")  # fmt: skip
    return Reply(status, xml.encode(), XML)


def isapi_time(ts: datetime) -> str:
    """An ISAPI dateTime: ISO 8601 local time with its offset, whole seconds."""
    return ts.replace(microsecond=0).isoformat()


class IsapiServer:
    """A device's web server on 127.0.0.1:`port` (0: any free port, kept across halt/serve)."""

    def __init__(
        self,
        port: int = 0,
        *,
        username: str = "admin",
        password: str = "Hik-12345",
        model: str = "DS-2CD2T47G2-L",
        device_type: str = "IPCamera",
        serial: str = "DS-2CD2T47G2-L20261201AAWRJ00000001",
        mac: str = "c4:2f:90:00:00:01",
        heartbeat_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.tls = tls  # a server context: HTTPS, as devices serve it on 443
        self.username = username
        self._password = password
        self.realm = f"IP Camera({serial[-9:]})"
        self.model, self.device_type, self.serial, self.mac = model, device_type, serial, mac
        self.heartbeat_s = heartbeat_s
        self.delay_s = 0.0  # each answer waits this long first (a slow device)
        self.clock_offset_s = 0.0  # the device's clock is off by this much
        self.routes: dict[tuple[str, str], Handler] = {}
        # (method, path, status) of the latest requests answered, for tests to look at
        self.requests: deque[tuple[str, str, int]] = deque(maxlen=1000)
        self._nonces: deque[str] = deque(maxlen=256)
        self._streams: list[_Stream] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._post_count = 0
        self.route("GET", "/ISAPI/System/deviceInfo", self._device_info)
        self.route("GET", "/ISAPI/System/time", self._time)

    # --- life -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def serving(self) -> bool:
        """Listening and answering (not halted)."""
        return self._server is not None

    def start(self) -> IsapiServer:
        self.serve()
        return self

    def serve(self) -> None:
        """Start answering (again, after `halt`)."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        server.daemon_threads = True
        server.block_on_close = False
        if self.tls is not None:  # the handshake in the connection's thread, not in accept()
            server.socket = self.tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="isapi-http",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def halt(self) -> None:
        """Power off: stop listening and drop every connection, the alert streams too."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            streams, self._streams = list(self._streams), []
            sockets = list(self._sockets)
        for stream in streams:
            stream.end()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(10)

    def stop(self) -> None:
        self.halt()

    @property
    def password(self) -> str:
        return self._password

    @password.setter
    def password(self, value: str) -> None:
        """Change the account's password while running (as an installer does on the device):
        the open alert streams end, and requests with the old one are refused (401)."""
        self._password = value
        with self._lock:
            streams, self._streams = list(self._streams), []
        for stream in streams:
            stream.end()

    # --- what devices built on it use -------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method.upper(), path)] = handler

    def now(self) -> datetime:
        """The device's clock (local time, UTC+8), offset by `clock_offset_s`."""
        return (datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)).astimezone(CHINA)

    def publish(self, body: bytes, content_type: str = XML) -> None:
        """Send one event body to every open alert stream."""
        self.inject(part(body, content_type))

    def inject(self, raw: bytes) -> None:
        """Raw bytes into every open alert stream, as they are (the caller frames them or not)."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.queue.put(raw)

    def half_close(self) -> None:
        """The open alert streams go silent mid-stream; their sockets stay open (new streams
        are served as usual)."""
        with self._lock:
            streams, self._streams = list(self._streams), []
        for stream in streams:
            stream.silent.set()

    @property
    def streams(self) -> int:
        """Alert streams open and sending."""
        with self._lock:
            return len(self._streams)

    def alert(
        self,
        event_type: str,
        state: str,
        *,
        description: str | None = None,
        channel: int = 1,
        extra: str = "",
    ) -> bytes:
        """An EventNotificationAlert body as cameras send it (extra: XML appended inside)."""
        with self._lock:
            self._post_count += 1 if state == "active" else 0
            count = self._post_count if state == "active" else 0
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<EventNotificationAlert version="2.0" xmlns="{NS}">\n'
            f"<ipAddress>127.0.0.1</ipAddress>\n<portNo>{self.port}</portNo>\n"
            f"<protocol>HTTP</protocol>\n<macAddress>{self.mac}</macAddress>\n"
            f"<channelID>{channel}</channelID>\n<dateTime>{isapi_time(self.now())}</dateTime>\n"
            f"<activePostCount>{count}</activePostCount>\n<eventType>{escape(event_type)}</eventType>\n"
            f"<eventState>{state}</eventState>\n"
            f"<eventDescription>{escape(description or event_type + ' alarm')}</eventDescription>\n"
            f"{extra}</EventNotificationAlert>\n"
        ).encode()

    def heartbeat(self) -> bytes:
        """Hikvision's idle part: video loss, inactive."""
        return self.alert("videoloss", "inactive", description="videoloss alarm")

    # --- built-in routes ------------------------------------------------------------------------

    def _device_info(self, request: Request) -> Reply:
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<DeviceInfo version="2.0" xmlns="{NS}">\n'
               f"<deviceName>{self.device_type}</deviceName>\n<deviceID>{self.serial[-12:]}</deviceID>\n"
               f"<model>{self.model}</model>\n<serialNumber>{self.serial}</serialNumber>\n"
               f"<macAddress>{self.mac}</macAddress>\n<firmwareVersion>V5.7.3</firmwareVersion>\n"
               f"<firmwareReleasedDate>build 231111</firmwareReleasedDate>\n"
               f"<deviceType>{self.device_type}</deviceType>\n</DeviceInfo>\n")  # fmt: skip
        return Reply(200, xml.encode())

    def _time(self, request: Request) -> Reply:
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Time version="2.0" xmlns="{NS}">\n'
               f"<timeMode>NTP</timeMode>\n<localTime>{isapi_time(self.now())}</localTime>\n"
               "<timeZone>CST-8:00:00</timeZone>\n</Time>\n")  # fmt: skip
        return Reply(200, xml.encode())

    # --- digest authentication (RFC 7616: MD5, qop=auth) ----------------------------------------

    def _challenge(self) -> str:
        nonce = os.urandom(16).hex()
        with self._lock:
            self._nonces.append(nonce)
        return f'Digest qop="auth", realm="{self.realm}", nonce="{nonce}", stale="FALSE"'

    def _authorized(self, method: str, uri: str, header: str | None) -> bool:
        if not header or not header.lower().startswith("digest "):
            return False
        try:
            fields = parse_keqv_list(parse_http_list(header[7:]))
        except ValueError:
            return False
        with self._lock:
            known = fields.get("nonce") in self._nonces
        if not known or fields.get("username") != self.username or fields.get("uri") != uri:
            return False
        if fields.get("realm") != self.realm or fields.get("qop") != "auth":
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

        ha1 = md5(f"{self.username}:{self.realm}:{self.password}")
        ha2 = md5(f"{method}:{uri}")
        expected = md5(f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:"
                       f"{fields.get('cnonce', '')}:auth:{ha2}")  # fmt: skip
        return bool(fields.get("response") == expected)

    # --- the handler --------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        device = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "App-webs/"  # what Hikvision's web server calls itself

            def setup(self) -> None:
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.settimeout(10)
                    self.request.do_handshake()  # a failed one ends this connection only
                    self.request.settimeout(None)
                super().setup()
                with device._lock:
                    device._sockets.add(self.connection)

            def finish(self) -> None:
                with device._lock:
                    device._sockets.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, format: str, *args: object) -> None:
                log.debug("isapi sim %s", format % args)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def _serve(self, method: str) -> None:
                length_text = self.headers.get("Content-Length") or "0"
                length = int(length_text) if length_text.isdigit() else -1
                if not 0 <= length <= 1_000_000:
                    self.close_connection = True
                    self._reply(response_status(self.path, 5, "badXmlFormat", http=400), method,
                                urlsplit(self.path).path)  # fmt: skip
                    return
                body = self.rfile.read(length) if length else b""
                if device.delay_s:
                    time.sleep(device.delay_s)
                split = urlsplit(self.path)
                if not device._authorized(method, self.path, self.headers.get("Authorization")):
                    self._reply(Reply(401, _UNAUTHORIZED, "text/html",
                                      {"WWW-Authenticate": device._challenge()}), method, split.path)  # fmt: skip
                    return
                if method == "GET" and split.path == ALERT_STREAM:
                    device._stream(self)
                    return
                handler = device.routes.get((method, split.path))
                if handler is None:
                    known = any(path == split.path for _, path in device.routes)
                    reply = (response_status(split.path, 4, "methodNotAllowed", http=405) if known
                             else response_status(split.path, 4, "notSupport", http=404))  # fmt: skip
                else:
                    request = Request(method, split.path, dict(parse_qsl(split.query)),
                                      {k.lower(): v for k, v in self.headers.items()}, body)  # fmt: skip
                    try:
                        reply = handler(request)
                    except Exception:  # a simulator bug answers 500, as a device would
                        log.exception("isapi sim handler failed %s %s", method, split.path)
                        reply = response_status(split.path, 3, "deviceError", http=500)
                self._reply(reply, method, split.path)

            def _reply(self, reply: Reply, method: str, path: str) -> None:
                device.requests.append((method, path, reply.status))
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)

        return _Handler

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        """Serve one alert stream until the client goes, the device halts, or it goes silent."""
        self.requests.append(("GET", ALERT_STREAM, 200))
        stream = _Stream()
        with self._lock:
            self._streams.append(stream)
        handler.close_connection = True
        try:
            handler.send_response(200)
            handler.send_header("MIME-Version", "1.0")
            handler.send_header("Connection", "close")
            handler.send_header("Content-Type", f"multipart/mixed; boundary={BOUNDARY}")
            handler.end_headers()
            handler.wfile.flush()
            while not stream.ended.is_set():
                if stream.silent.is_set():
                    _linger(handler.connection, stream.ended)
                    return
                try:
                    raw = stream.queue.get(timeout=self.heartbeat_s)
                except queue.Empty:
                    raw = part(self.heartbeat())
                if stream.silent.is_set():
                    continue
                handler.wfile.write(raw)
                handler.wfile.flush()
        except OSError:
            pass  # the client went
        finally:
            with self._lock:
                if stream in self._streams:
                    self._streams.remove(stream)


class _Stream:
    def __init__(self) -> None:
        self.queue: queue.Queue[bytes] = queue.Queue()
        self.silent = threading.Event()
        self.ended = threading.Event()

    def end(self) -> None:
        self.ended.set()
        self.queue.put(b"")


def _linger(sock: socket.socket, ended: threading.Event) -> None:
    """Keep a silent stream's socket open until the client closes it or the device halts."""
    sock.settimeout(0.2)
    while not ended.is_set():
        try:
            if not sock.recv(1024):
                return
        except TimeoutError:
            continue
        except OSError:
            return
