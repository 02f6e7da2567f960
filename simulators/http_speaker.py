"""An IP speaker / PA host with an HTTP API, on loopback, driven by the behavioural SimSpeaker.

The API is of the kind Chinese IP PA hosts and network speaker columns publish (each vendor's
paths differ; this is one such shape, not a copy of any one): JSON answers carrying a result
`code` (0 = done) and a `msg`, HTTP Digest (RFC 7616, MD5, qop=auth) or Basic authentication.

    GET  /api/broadcast/clip?name=&repeat=&priority=     play a stored clip
    POST /api/broadcast/text   JSON or XML {text, language, priority, repeat}: the device speaks
    POST /api/broadcast/audio  multipart/form-data `file` (WAV) + priority, repeat, language;
                               or the WAV itself as the body (audio/wav)
    POST /api/broadcast/stop   stop playing
    POST /api/volume           form `level` (0-100)
    GET  /api/status           {"code":0,"data":{"online","playing","task","volume","fault"}}

An uploaded file must be a real WAV (RIFF/WAVE, PCM, a sane rate, at least 0.1 s of sound): each
accepted upload is kept in `uploads` with its rate, channels, sample width and duration. Fault
switches: `password` (change it while running: the next request gets 401), `delay_s` (every
answer waits so long), `garble` (answers that are not JSON), `halt()`/`serve()` (power off, on). With `tls` it serves
HTTPS.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import io
import json
import logging
import secrets
import ssl
import threading
import time
import urllib.request
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from edge import drivers as d
from gateway import messages as m
from simulators.devices import SimSpeaker
from simulators.engine import Engine, SimClock
from simulators.ports import free_port
from simulators.venues import Venue

log = logging.getLogger(__name__)

REALM = "IP-PA-Host"
MAX_BODY = 20_000_000
CLIPS = ("fire-drill", "anti-fraud", "closing-time", "siren-1")


@dataclass(frozen=True, slots=True)
class Upload:
    """An audio file the speaker accepted and played."""

    rate: int
    channels: int
    sample_width: int
    seconds: float
    size: int
    language: str | None
    priority: str


class _QuietSpeaker(SimSpeaker):
    """A SimSpeaker without spontaneous faults: only what it is told."""

    def plan(self, now: object) -> None:
        pass


class HttpSpeakerSim:
    """One speaker answering HTTP on 127.0.0.1:`port`."""

    def __init__(
        self,
        port: int = 0,
        *,
        username: str = "admin",
        password: str = "pa-host-pass",
        auth: Literal["digest", "basic", "none"] = "digest",
        speaker_id: str = "speaker-1",
        speaker: SimSpeaker | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """`speaker`: the behavioural model to serve (a fleet's, which scenarios drive); without
        it a quiet speaker of its own on its own engine. Port 0: a free port."""
        self.port, self.username, self.password, self.auth = (
            port or free_port(),
            username,
            password,
            auth,
        )
        self.tls = tls  # (certificate file, key file): serve https
        self.engine: Engine | None = None
        if speaker is None:
            self.engine = Engine(SimClock(1.0))
            venue = Venue(site="sim", node="sim", secret="", kind="community_centre",
                          capacity=10, open_24h=True)  # fmt: skip
            speaker = _QuietSpeaker(speaker_id, venue, self.engine, seed=1, report_every_s=3600)
        self.speaker = speaker
        self.clips = set(CLIPS)
        self.uploads: list[Upload] = []
        self.texts: list[dict[str, Any]] = []  # texts it was asked to speak itself
        self.requests: list[tuple[str, str]] = []  # (method, path) of every authorised request
        self.refused = 0  # requests answered 401 after a wrong password
        self.delay_s = 0.0
        self.garble = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._nonces: set[str] = set()

    # --- life -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.engine is not None:
            self.engine.start()
        self.speaker.start(lambda reading: None)  # a PA host reports nothing by itself
        self.serve()

    def driver_settings(self, **changes: Any) -> dict[str, Any]:
        """The `http` driver's site-file settings for this speaker."""
        return driver_settings(self.port, username=self.username, password=self.password,
                               **changes)  # fmt: skip

    def serve(self) -> None:
        """Start answering (again, after `halt`)."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="http-speaker",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def halt(self) -> None:
        """Stop answering: the listener closes (power off)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None

    def stop(self) -> None:
        self.halt()
        self.speaker.stop()
        if self.engine is not None:
            self.engine.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # --- authentication ---------------------------------------------------------------------------

    def _authorised(self, method: str, uri: str, header: str | None) -> bool:
        if self.auth == "none":
            return True
        if header is None:
            return False
        scheme, _, rest = header.partition(" ")
        if self.auth == "basic":
            if scheme.lower() != "basic":
                return False
            try:
                user, _, password = base64.b64decode(rest).decode().partition(":")
            except ValueError:
                return False
            return secrets.compare_digest(f"{user}:{password}", f"{self.username}:{self.password}")
        if scheme.lower() != "digest":
            return False
        fields = urllib.request.parse_keqv_list(urllib.request.parse_http_list(rest))
        if fields.get("nonce") not in self._nonces or fields.get("username") != self.username:
            return False
        if fields.get("uri") != uri or fields.get("qop") != "auth":
            return False
        ha1 = _md5(f"{self.username}:{REALM}:{self.password}")
        ha2 = _md5(f"{method}:{uri}")
        expected = _md5(f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:"
                        f"{fields.get('cnonce', '')}:auth:{ha2}")  # fmt: skip
        return secrets.compare_digest(expected, fields.get("response", ""))

    def _challenge(self) -> str:
        if self.auth == "basic":
            return f'Basic realm="{REALM}"'
        nonce = secrets.token_hex(16)
        self._nonces.add(nonce)
        return f'Digest realm="{REALM}", qop="auth", algorithm=MD5, nonce="{nonce}"'

    # --- the API ----------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], ctype: str, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """One authorised request: (HTTP status, JSON answer)."""
        self.requests.append((method, path))
        sp = self.speaker
        try:
            match method, path:
                case "GET", "/api/status":
                    return 200, _ok(online=not sp.offline, playing=sp.playing is not None,
                                    task=sp.playing, volume=sp.volume,
                                    fault=None if sp.fault is None else str(sp.fault))  # fmt: skip
                case "GET", "/api/broadcast/clip":
                    name = query.get("name", "")
                    if name not in self.clips:
                        return 200, _refuse(404, f"no clip named {name!r} on this device")
                    sp.play(text=None, clip=name, priority=_priority(query.get("priority")),
                            repeat=_int(query.get("repeat"), 1))  # fmt: skip
                    return 200, _ok()
                case "POST", "/api/broadcast/text":
                    fields = _text_fields(ctype, body)
                    self.texts.append(fields)
                    sp.play(text=str(fields["text"]), clip=None,
                            priority=_priority(fields.get("priority")),
                            repeat=_int(fields.get("repeat"), 1))  # fmt: skip
                    return 200, _ok()
                case "POST", "/api/broadcast/audio":
                    return self._audio(ctype, body, query)
                case "POST", "/api/broadcast/stop":
                    sp.stop_playing()
                    return 200, _ok()
                case "POST", "/api/volume":
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    level = _int(form.get("level"), -1)
                    if not 0 <= level <= 100:
                        return 200, _refuse(400, f"level must be 0-100, not {form.get('level')!r}")
                    sp.set_volume(level)
                    return 200, _ok()
        except d.CommandFailed as exc:
            return 200, _refuse(500, str(exc))
        except _BadRequest as exc:
            return 400, _refuse(400, str(exc))
        return 404, _refuse(404, f"no such API: {method} {path}")

    def _audio(self, ctype: str, body: bytes, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        fields: dict[str, str] = dict(query)
        if ctype.startswith("multipart/form-data"):
            parts = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
            )
            audio = None
            for part in parts.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename() is not None or name == "file":
                    audio = part.get_payload(decode=True)
                elif name:
                    fields[str(name)] = str(part.get_content()).strip()
            if audio is None:
                raise _BadRequest("no file part in the upload")
        elif ctype.partition(";")[0].strip() in ("audio/wav", "audio/x-wav", "audio/wave"):
            audio = body
        else:
            raise _BadRequest(f"an upload is multipart/form-data or audio/wav, not {ctype!r}")
        upload = _wav(bytes(audio), fields)
        self.speaker.play(text=None, clip=f"upload:{upload.seconds:.1f}s",
                          priority=_priority(fields.get("priority")),
                          repeat=_int(fields.get("repeat"), 1))  # fmt: skip
        self.uploads.append(upload)
        return 200, _ok(seconds=round(upload.seconds, 2))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "PA-Host/2.1"

            def _serve(self) -> None:
                if sim.speaker.offline:  # the model was cut (a scenario): no answer at all
                    self.close_connection = True
                    return
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, _refuse(413, "too large"))
                    return
                body = self.rfile.read(length) if length else b""
                if sim.delay_s:
                    time.sleep(sim.delay_s)
                if not sim._authorised(self.command, self.path, self.headers.get("Authorization")):
                    if self.headers.get("Authorization"):
                        sim.refused += 1
                    self._answer(401, _refuse(401, "unauthorized"), sim._challenge())
                    return
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, answer = sim.handle(self.command, url.path, query,
                                            self.headers.get("Content-Type", ""), body)  # fmt: skip
                self._answer(status, answer)

            def _answer(self, status: int, answer: dict[str, Any], challenge: str = "") -> None:
                data = b"<html>garbled" if sim.garble else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                if challenge:
                    self.send_header("WWW-Authenticate", challenge)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http speaker: " + format, *args)

        return Handler


class _BadRequest(Exception):
    pass


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _ok(**data: object) -> dict[str, Any]:
    return {"code": 0, "msg": "ok", "data": data} if data else {"code": 0, "msg": "ok"}


def _refuse(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "msg": msg}


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _priority(value: object) -> m.SpeakerPriority:
    try:
        return m.SpeakerPriority(str(value))
    except ValueError:
        return m.SpeakerPriority.ROUTINE


def _text_fields(ctype: str, body: bytes) -> dict[str, Any]:
    try:
        if "xml" in ctype:
            root = ET.fromstring(body)
            fields: dict[str, Any] = {c.tag: (c.text or "") for c in root}
        else:
            fields = json.loads(body)
    except (ValueError, ET.ParseError) as exc:
        raise _BadRequest(f"unreadable body: {exc}") from None
    if not isinstance(fields, dict) or not str(fields.get("text") or "").strip():
        raise _BadRequest("no text to speak")
    return fields


def _wav(data: bytes, fields: dict[str, str]) -> Upload:
    """The upload as a checked WAV; _BadRequest saying what is wrong with it."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _BadRequest("not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width, frames = (w.getframerate(), w.getnchannels(),
                                             w.getsampwidth(), w.getnframes())  # fmt: skip
            sound = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise _BadRequest(f"unreadable WAV: {exc}") from None
    if not 8000 <= rate <= 48000 or channels not in (1, 2) or width not in (1, 2):
        raise _BadRequest(f"unsupported WAV: {rate} Hz, {channels} channels, {width * 8} bit")
    if len(sound) != frames * channels * width:
        raise _BadRequest("WAV data shorter than its header says")
    seconds = frames / rate
    if seconds < 0.1:
        raise _BadRequest(f"WAV of {seconds:.2f} s: too short to be speech")
    return Upload(rate, channels, width, seconds, len(data), fields.get("language"),
                  fields.get("priority", "routine"))  # fmt: skip


def driver_settings(
    port: int,
    *,
    username: str = "admin",
    password: str = "pa-host-pass",
    poll_s: float = 5.0,
    **changes: Any,
) -> dict[str, Any]:
    """The `http` driver's site-file settings for this simulator's API, its status polled every
    `poll_s` (`changes` replace top-level keys); docs/drivers/http-speaker.md shows the same."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "auth": "digest", "username": username,
        "password": password, "timeout_s": 10, "slow_s": 2.5, "backoff_max_s": 10,
        "speech": "edge",
        "requests": {
            "play_clip": {"method": "GET", "path": "/api/broadcast/clip",
                          "query": {"name": "{clip}", "repeat": "{repeat}",
                                    "priority": "{priority}"}},
            "play_audio": {"path": "/api/broadcast/audio", "body_type": "multipart",
                           "body": {"priority": "{priority}", "repeat": "{repeat}",
                                    "language": "{language}"}},
            "play_text": {"path": "/api/broadcast/text", "body_type": "json",
                          "body": {"text": "{text}", "language": "{language}",
                                   "priority": "{priority}", "repeat": "{repeat}"}},
            "stop": {"path": "/api/broadcast/stop"},
            "volume": {"path": "/api/volume", "body_type": "form", "body": {"level": "{volume}"}},
        },
        "answer": {"format": "json", "field": "code", "ok": ["0"], "message": "msg"},
        "status": {"request": {"method": "GET", "path": "/api/status"}, "interval_s": poll_s,
                   "online": "data.online", "playing": "data.playing", "volume": "data.volume",
                   "clip": "data.task", "fault": "data.fault"},
    }  # fmt: skip
    settings.update(changes)
    return settings
