"""An ONVIF Profile S/T camera on loopback: SOAP 1.2 over HTTP for the operations a client needs to
find its stream and follow its events, written from the ONVIF Core, Media and Event Handling
specifications (with WS-BaseNotification and the WS-Security UsernameToken profile).

- Device (`/onvif/device_service`): GetSystemDateAndTime (answered without authentication, as
  the Core spec allows), GetCapabilities, GetServices, GetDeviceInformation.
- Media (`/onvif/media_service`): GetProfiles, GetStreamUri (answers the `stream_uri` it is given:
  an RTSP server's, or any URL the analytics can read).
- Events (`/onvif/event_service`): CreatePullPointSubscription; each subscription at
  `/onvif/subscription/<n>` takes PullMessages (held until an event or its Timeout; above
  `max_pull_s` or `max_messages`, a PullMessagesFaultResponse with those limits), Renew and
  Unsubscribe, and ends at its termination time. A new subscription gets an `Initialized`
  message per detector, then `Changed` ones.
- Every other request must carry a UsernameToken with a PasswordDigest (Base64(SHA-1(nonce +
  created + password))) created within `token_window_s` of the camera's clock, with a nonce not
  seen before; else a SOAP fault env:Sender / ter:NotAuthorized (HTTP 400, SOAP 1.2's binding).

The detectors follow a behavioural SimCamera: its alerts become the events of the matching ONVIF
topics (intrusion: the field detector; tamper: scene change, too dark, too blurry). Tests and
scenarios also fire detectors directly (`motion`, `cell_motion`, `line_crossed`, `event`) and
use the fault switches: `password` (change it while running), `http_digest` (require HTTP digest
authentication, RFC 7616 MD5 qop=auth, as some cameras do, instead of tokens), `clock_offset_s`,
`delay_s`,
`inject(raw)` (the next PullMessages answer, as given), `cut_next()` (an answer broken
off half-way), `restart()` (subscriptions forgotten,
briefly not answering), `halt()`/`serve()`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import re
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lxml import etree

from edge import drivers as d
from gateway import messages as m
from simulators.devices import SimCamera
from simulators.engine import Engine, SimClock
from simulators.ports import free_port
from simulators.venues import Venue

ENV = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DIGEST = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
TT = "http://www.onvif.org/ver10/schema"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TEV = "http://www.onvif.org/ver10/events/wsdl"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
WSA = "http://www.w3.org/2005/08/addressing"
TNS1 = "http://www.onvif.org/ver10/topics"
TER = "http://www.onvif.org/ver10/error"
WSRF_RW = "http://docs.oasis-open.org/wsrf/rw-2"
NSMAP = {"env": ENV, "tt": TT, "tds": TDS, "trt": TRT, "tev": TEV, "wsnt": WSNT, "wsa": WSA,
         "tns1": TNS1, "ter": TER, "wsrf-rw": WSRF_RW}  # fmt: skip
CONCRETE_SET = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_MAX_TERM_S = 3600.0
_MAX_PULL_S = 60.0

# A detector: its topic, the Data item with its state, its Source items.
_DETECTORS = {
    "motion": ("VideoSource/MotionAlarm", "State", {"Source": "vs_1"}),
    "cell_motion": ("RuleEngine/CellMotionDetector/Motion", "IsMotion",
                    {"VideoSourceConfigurationToken": "vsc_1",
                     "VideoAnalyticsConfigurationToken": "vac_1", "Rule": "MyMotionDetectorRule"}),
    "field": ("RuleEngine/FieldDetector/ObjectsInside", "IsInside",
              {"VideoSourceConfigurationToken": "vsc_1",
               "VideoAnalyticsConfigurationToken": "vac_1", "Rule": "MyFieldDetectorRule"}),
    "scene_change": ("VideoSource/GlobalSceneChange/ImagingService", "State", {"Source": "vs_1"}),
    "too_dark": ("VideoSource/ImageTooDark/ImagingService", "State", {"Source": "vs_1"}),
    "too_blurry": ("VideoSource/ImageTooBlurry/ImagingService", "State", {"Source": "vs_1"}),
}  # fmt: skip
# The behavioural camera's alerts -> the detector that raises them.
_FROM_MODEL = {
    m.CameraAlertKind.INTRUSION: "field",
    m.CameraAlertKind.TAMPER_MOVED: "scene_change",
    m.CameraAlertKind.TAMPER_COVERED: "too_dark",
    m.CameraAlertKind.TAMPER_BLURRED: "too_blurry",
}


class _QuietCamera(SimCamera):
    """A SimCamera without spontaneous alerts: only what it is told."""

    def plan(self, now: object) -> None:
        pass


@dataclass
class _Subscription:
    id: int
    ends: datetime  # camera clock
    queue: deque[etree._Element] = field(default_factory=deque)


class _Fault(Exception):
    def __init__(self, subcodes: list[str], reason: str, status: int = 400,
                 detail: etree._Element | None = None) -> None:  # fmt: skip
        super().__init__(reason)
        self.subcodes, self.reason, self.status, self.detail = subcodes, reason, status, detail


class OnvifCameraSim:
    """One ONVIF camera on 127.0.0.1:`port`."""

    def __init__(self, port: int = 0, *, username: str = "admin", password: str = "secret-1",
                 stream_uri: str = "rtsp://127.0.0.1:554/Streaming/Channels/101",
                 camera_id: str = "camera-1", camera: SimCamera | None = None,
                 token_window_s: float = 60.0) -> None:  # fmt: skip
        """`camera`: the behavioural model whose alerts the detectors follow (a fleet's, which
        scenarios drive); without it a quiet camera of its own on its own engine. Port 0: a
        free port."""
        self.port = port or free_port()
        self.username, self.password = username, password
        self.stream_uri = stream_uri
        self.token_window_s = token_window_s
        self.clock_offset_s = 0.0
        self.delay_s = 0.0
        self.max_pull_s = _MAX_PULL_S  # PullMessages' MaxTimeout and MaxMessageLimit
        self.max_messages = 1000
        self.http_digest = False  # require HTTP digest (401 and a challenge) instead of tokens
        self._digest_nonces: deque[str] = deque(maxlen=1000)
        self.requests: list[str] = []  # operation names, in order
        self.refused = 0  # requests refused NotAuthorized
        self.engine: Engine | None = None
        if camera is None:
            self.engine = Engine(SimClock(1.0))
            venue = Venue(site="sim", node="sim", secret="", kind="community_centre",
                          capacity=10, open_24h=True)  # fmt: skip
            camera = _QuietCamera(camera_id, venue, self.engine, seed=1, report_every_s=3600)
        self.model = camera
        self.states = {name: False for name in _DETECTORS}
        self._subs: dict[int, _Subscription] = {}
        self._ids = itertools.count(1)
        self._nonces: deque[str] = deque(maxlen=1000)
        self._injected: deque[bytes] = deque()
        self._cuts = 0
        self._lock = threading.Condition()
        self.connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def now(self) -> datetime:
        """The camera's clock."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)

    # --- life -------------------------------------------------------------------------------------

    def driver_settings(self) -> dict[str, object]:
        """The `onvif` driver's site-file settings for this camera."""
        return {"host": "127.0.0.1", "port": self.port, "username": self.username,
                "password": self.password}  # fmt: skip

    def start(self) -> None:
        if self.engine is not None:
            self.engine.start()
        self.model.start(self._from_model)
        self.serve()

    def serve(self) -> None:
        """Answer (again, after `halt`)."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="onvif-sim", daemon=True)
        self._thread.start()

    def halt(self) -> None:
        """Stop answering: the listener closes (power off)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:  # open keep-alive connections too: nothing answers any more
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        with self._lock:
            self._lock.notify_all()

    def restart(self, down_s: float = 0.0) -> None:
        """Reboot: every subscription is forgotten (detector states are kept by the scene)."""
        if down_s:
            self.halt()
        with self._lock:
            self._subs.clear()
            self._lock.notify_all()
        if down_s:
            time.sleep(down_s)
            self.serve()

    def stop(self) -> None:
        self.halt()
        self.model.stop()
        if self.engine is not None:
            self.engine.stop()

    @property
    def subscriptions(self) -> int:
        with self._lock:
            return len(self._subs)

    # --- detectors --------------------------------------------------------------------------------

    def _from_model(self, reading: d.Reading) -> None:
        if isinstance(reading, d.CameraAlertSeen) and reading.kind in _FROM_MODEL:
            active = reading.phase is not m.AlertPhase.END
            if active != self.states[_FROM_MODEL[reading.kind]]:
                self.detect(_FROM_MODEL[reading.kind], active)

    def detect(self, detector: str, active: bool) -> None:
        """A detector's state changes (motion, cell_motion, field, scene_change, too_dark,
        too_blurry)."""
        topic, item, source = _DETECTORS[detector]
        self.states[detector] = active
        self.event(topic, source, {item: "true" if active else "false"}, "Changed")

    def motion(self, seconds: float) -> None:
        """Something moves in front of the camera for a while (MotionAlarm)."""
        self.detect("motion", True)
        threading.Timer(seconds, self.detect, args=("motion", False)).start()

    def line_crossed(self, rule: str = "MyLineDetectorRule", object_id: int = 1) -> None:
        """Someone crosses a line detector's line (an event, not a state)."""
        self.event("RuleEngine/LineDetector/Crossed",
                   {"VideoSourceConfigurationToken": "vsc_1",
                    "VideoAnalyticsConfigurationToken": "vac_1", "Rule": rule},
                   {"ObjectId": str(object_id)}, None)  # fmt: skip

    def event(self, topic: str, source: dict[str, str], data: dict[str, str],
              operation: str | None, *, prefix: str = "tns1") -> None:  # fmt: skip
        """A notification on `topic` (under the ONVIF topic namespace with `prefix`) to every
        subscription."""
        with self._lock:
            for sub in self._subs.values():
                sub.queue.append(self._message(topic, source, data, operation, prefix))
            self._lock.notify_all()

    def cut_next(self) -> None:
        """The next answer at a subscription's address stops half-way and the connection
        closes."""
        with self._lock:
            self._cuts += 1

    def take_cut(self) -> bool:
        with self._lock:
            if not self._cuts:
                return False
            self._cuts -= 1
            return True

    def inject(self, raw: bytes) -> None:
        """The next PullMessages answer is `raw`, whatever it is (a garbled body, say)."""
        with self._lock:
            self._injected.append(raw)
            self._lock.notify_all()

    def _message(self, topic: str, source: dict[str, str], data: dict[str, str],
                 operation: str | None, prefix: str) -> etree._Element:  # fmt: skip
        holder = etree.Element(f"{{{WSNT}}}NotificationMessage", nsmap={prefix: TNS1})
        _el(holder, WSNT, "Topic", f"{prefix}:{topic}", Dialect=CONCRETE_SET)
        message = _el(_el(holder, WSNT, "Message"), TT, "Message", UtcTime=_stamp(self.now()))
        if operation:
            message.set("PropertyOperation", operation)
        for part, items in (("Source", source), ("Data", data)):
            box = _el(message, TT, part)
            for name, value in items.items():
                _el(box, TT, "SimpleItem", Name=name, Value=value)
        return holder

    # --- SOAP -------------------------------------------------------------------------------------

    def answer(self, path: str, body: bytes, authorization: str | None = None) -> tuple[int, bytes]:
        """The HTTP status and SOAP envelope answering one request (`authorization`: its HTTP
        Authorization header)."""
        if self.delay_s:
            time.sleep(self.delay_s)
        while self.model.offline and self._server is not None:  # the model's power is cut
            time.sleep(0.05)
        try:
            envelope = etree.fromstring(body, _PARSER)
            request = envelope.find(f"{{{ENV}}}Body")
            if request is None or len(request) == 0:
                raise _Fault(["ter:InvalidArgVal"], "no SOAP body")
            op = request[0]
            name = etree.QName(op).localname
            self.requests.append(name)
            if name != "GetSystemDateAndTime" and not self._digest_ok(path, authorization):
                self._check_token(envelope)
            if path.startswith("/onvif/subscription/"):
                handler = _SUBSCRIPTION_OPS.get(name)
            else:
                handler = _OPERATIONS.get((path, name))
            if handler is None:
                raise _Fault(["ter:ActionNotSupported"], f"{name} is not supported at {path}")
            result = handler(self, op, path)
            if isinstance(result, bytes):
                return 200, result
            return 200, _envelope(result)
        except _Fault as fault:
            if self.http_digest and "ter:NotAuthorized" in fault.subcodes:
                return 401, b""  # the handler adds the Digest challenge
            return fault.status, _envelope(_fault(fault))
        except etree.XMLSyntaxError:
            return 400, _envelope(_fault(_Fault(["ter:WellFormed"], "not well-formed XML")))

    def challenge(self) -> str:
        """A WWW-Authenticate header for HTTP digest (RFC 7616: MD5, qop=auth)."""
        nonce = secrets.token_hex(16)
        with self._lock:
            self._digest_nonces.append(nonce)
        return f'Digest realm="{_REALM}", qop="auth", algorithm=MD5, nonce="{nonce}"'

    def _digest_ok(self, path: str, authorization: str | None) -> bool:
        """In `http_digest` mode: whether the request carries a good HTTP digest answer (then no
        UsernameToken is needed; without one the request is refused with 401)."""
        if not self.http_digest:
            return False
        if not authorization or not authorization.startswith("Digest "):
            self.refused += 1
            raise _Fault(["ter:NotAuthorized"], "HTTP digest authentication required")
        fields = {k: (quoted or bare) for k, quoted, bare in _DIGEST_FIELD.findall(authorization)}
        with self._lock:
            known = fields.get("nonce") in self._digest_nonces

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.username}:{_REALM}:{self.password}")
        ha2 = md5(f"POST:{fields.get('uri', '')}")
        parts = [fields.get(k, "") for k in ("nonce", "nc", "cnonce", "qop")]
        expected = md5(":".join([ha1, *parts, ha2]))
        if not (
            known
            and fields.get("username") == self.username
            and fields.get("realm") == _REALM
            and fields.get("uri") == path
            and fields.get("qop") == "auth"
            and fields.get("response") == expected
        ):
            self.refused += 1
            raise _Fault(["ter:NotAuthorized"], "Sender not Authorized")
        return True

    def _check_token(self, envelope: etree._Element) -> None:
        token = envelope.find(f"{{{ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        refused = _Fault(["ter:NotAuthorized"], "Sender not Authorized")
        if token is None:
            self.refused += 1
            raise refused
        user = token.findtext(f"{{{WSSE}}}Username") or ""
        password = token.find(f"{{{WSSE}}}Password")
        nonce = token.findtext(f"{{{WSSE}}}Nonce") or ""
        created = token.findtext(f"{{{WSU}}}Created") or ""
        try:
            when = datetime.fromisoformat(created.replace("Z", "+00:00"))
            raw_nonce = base64.b64decode(nonce, validate=True)
        except ValueError:
            self.refused += 1
            raise refused from None
        expected = base64.b64encode(
            hashlib.sha1(raw_nonce + created.encode() + self.password.encode()).digest()
        ).decode()
        fresh = abs((when - self.now()).total_seconds()) <= self.token_window_s
        if (
            user != self.username
            or password is None
            or password.get("Type") != DIGEST
            or (password.text or "") != expected
            or not fresh
            or nonce in self._nonces
        ):
            self.refused += 1
            raise refused
        self._nonces.append(nonce)

    # --- device -------------------------------------------------------------------------------------

    def _date_and_time(self, op: etree._Element, path: str) -> etree._Element:
        now = self.now()
        out = etree.Element(f"{{{TDS}}}GetSystemDateAndTimeResponse")
        info = _el(out, TDS, "SystemDateAndTime")
        _el(info, TT, "DateTimeType", "NTP")
        _el(info, TT, "DaylightSavings", "false")
        _el(_el(info, TT, "TimeZone"), TT, "TZ", "UTC0")
        utc = _el(info, TT, "UTCDateTime")
        clock, date = _el(utc, TT, "Time"), _el(utc, TT, "Date")  # tt:DateTime's order
        for box, parts in ((clock, ("Hour", "Minute", "Second")), (date, ("Year", "Month", "Day"))):
            for part in parts:
                _el(box, TT, part, str(getattr(now, part.lower())))
        return out

    def _capabilities(self, op: etree._Element, path: str) -> etree._Element:
        out = etree.Element(f"{{{TDS}}}GetCapabilitiesResponse")
        caps = _el(out, TDS, "Capabilities")
        _el(_el(caps, TT, "Device"), TT, "XAddr", f"{self.base}/onvif/device_service")
        events = _el(caps, TT, "Events")
        _el(events, TT, "XAddr", f"{self.base}/onvif/event_service")
        for flag, value in (("WSSubscriptionPolicySupport", "false"),
                            ("WSPullPointSupport", "true"),
                            ("WSPausableSubscriptionManagerInterfaceSupport", "false")):  # fmt: skip
            _el(events, TT, flag, value)
        media = _el(caps, TT, "Media")
        _el(media, TT, "XAddr", f"{self.base}/onvif/media_service")
        streaming = _el(media, TT, "StreamingCapabilities")
        for flag, value in (("RTPMulticast", "false"), ("RTP_TCP", "true"),
                            ("RTP_RTSP_TCP", "true")):  # fmt: skip
            _el(streaming, TT, flag, value)
        return out

    def _services(self, op: etree._Element, path: str) -> etree._Element:
        out = etree.Element(f"{{{TDS}}}GetServicesResponse")
        for namespace, where in ((TDS, "device_service"), (TRT, "media_service"),
                                 (TEV, "event_service")):  # fmt: skip
            service = _el(out, TDS, "Service")
            _el(service, TDS, "Namespace", namespace)
            _el(service, TDS, "XAddr", f"{self.base}/onvif/{where}")
            version = _el(service, TDS, "Version")
            _el(version, TT, "Major", "2")
            _el(version, TT, "Minor", "60")
        return out

    def _device_information(self, op: etree._Element, path: str) -> etree._Element:
        out = etree.Element(f"{{{TDS}}}GetDeviceInformationResponse")
        for name, value in (("Manufacturer", "gridwatch"), ("Model", "sim-onvif-camera"),
                            ("FirmwareVersion", "1.0"), ("SerialNumber", "SIM0001"),
                            ("HardwareId", "sim")):  # fmt: skip
            _el(out, TDS, name, value)
        return out

    # --- media ----------------------------------------------------------------------------------

    def _profiles(self, op: etree._Element, path: str) -> etree._Element:
        out = etree.Element(f"{{{TRT}}}GetProfilesResponse")
        profile = _el(out, TRT, "Profiles", token="profile_1", fixed="true")
        _el(profile, TT, "Name", "mainStream")
        source = _el(profile, TT, "VideoSourceConfiguration", token="vsc_1")
        _el(source, TT, "Name", "VideoSourceConfig")
        _el(source, TT, "UseCount", "1")
        _el(source, TT, "SourceToken", "vs_1")
        _el(source, TT, "Bounds", x="0", y="0", width="640", height="360")
        encoder = _el(profile, TT, "VideoEncoderConfiguration", token="vec_1")
        _el(encoder, TT, "Name", "VideoEncoderConfig")
        _el(encoder, TT, "UseCount", "1")
        _el(encoder, TT, "Encoding", "JPEG")
        resolution = _el(encoder, TT, "Resolution")
        _el(resolution, TT, "Width", "640")
        _el(resolution, TT, "Height", "360")
        _el(encoder, TT, "Quality", "70")
        _el(encoder, TT, "SessionTimeout", "PT60S")
        return out

    def _stream_uri(self, op: etree._Element, path: str) -> etree._Element:
        token = op.findtext(f"{{{TRT}}}ProfileToken")
        if token != "profile_1":
            raise _Fault(["ter:InvalidArgVal", "ter:NoProfile"], "the profile does not exist")
        out = etree.Element(f"{{{TRT}}}GetStreamUriResponse")
        uri = _el(out, TRT, "MediaUri")
        _el(uri, TT, "Uri", self.stream_uri)
        _el(uri, TT, "InvalidAfterConnect", "false")
        _el(uri, TT, "InvalidAfterReboot", "false")
        _el(uri, TT, "Timeout", "PT0S")
        return out

    # --- events ---------------------------------------------------------------------------------

    def _create_pull_point(self, op: etree._Element, path: str) -> etree._Element:
        now = self.now()
        ends = _termination(op.findtext(f"{{{TEV}}}InitialTerminationTime"), now)
        with self._lock:
            sub = _Subscription(next(self._ids), ends)
            for name, (topic, item, source) in _DETECTORS.items():  # the properties as they are
                value = "true" if self.states[name] else "false"
                sub.queue.append(self._message(topic, source, {item: value}, "Initialized",
                                               "tns1"))  # fmt: skip
            self._subs[sub.id] = sub
        out = etree.Element(f"{{{TEV}}}CreatePullPointSubscriptionResponse")
        reference = _el(out, TEV, "SubscriptionReference")
        _el(reference, WSA, "Address", f"{self.base}/onvif/subscription/{sub.id}")
        _el(out, WSNT, "CurrentTime", _stamp(now))
        _el(out, WSNT, "TerminationTime", _stamp(ends))
        return out

    def _subscription(self, path: str) -> _Subscription:
        """The live subscription at `path` (the caller holds the lock)."""
        try:
            sub_id = int(path.rsplit("/", 1)[-1])
        except ValueError:
            sub_id = -1
        sub = self._subs.get(sub_id)
        if sub is not None and sub.ends <= self.now():
            del self._subs[sub.id]  # its term ran out
            sub = None
        if sub is None:
            raise _Fault(["ter:InvalidArgVal", "wsrf-rw:ResourceUnknownFault"],
                         "the subscription does not exist")  # fmt: skip
        return sub

    def _pull_messages(self, op: etree._Element, path: str) -> etree._Element | bytes:
        wait = _seconds(op.findtext(f"{{{TEV}}}Timeout"))
        try:
            limit = max(1, int(op.findtext(f"{{{TEV}}}MessageLimit") or "1"))
        except ValueError:
            raise _Fault(["ter:InvalidArgVal"], "MessageLimit is not a number") from None
        if wait > self.max_pull_s or limit > self.max_messages:
            # The Event Handling spec's answer: a PullMessagesFaultResponse with the limits.
            detail = etree.Element(f"{{{TEV}}}PullMessagesFaultResponse")
            _el(detail, TEV, "MaxTimeout", f"PT{self.max_pull_s:g}S")
            _el(detail, TEV, "MaxMessageLimit", str(self.max_messages))
            raise _Fault(["ter:InvalidArgVal"], "Timeout or MessageLimit too large", detail=detail)
        deadline = time.monotonic() + wait
        with self._lock:
            while True:
                if self._server is None:
                    raise _Fault(["ter:Action"], "shutting down", status=503)
                sub = self._subscription(path)
                if self._injected:
                    return self._injected.popleft()
                left = deadline - time.monotonic()
                if sub.queue or left <= 0:
                    break
                self._lock.wait(left)
            batch = [sub.queue.popleft() for _ in range(min(limit, len(sub.queue)))]
            ends = sub.ends
        out = etree.Element(f"{{{TEV}}}PullMessagesResponse")
        _el(out, TEV, "CurrentTime", _stamp(self.now()))
        _el(out, TEV, "TerminationTime", _stamp(ends))
        out.extend(batch)
        return out

    def _renew(self, op: etree._Element, path: str) -> etree._Element:
        now = self.now()
        with self._lock:
            sub = self._subscription(path)
            sub.ends = _termination(op.findtext(f"{{{WSNT}}}TerminationTime"), now)
            ends = sub.ends
        out = etree.Element(f"{{{WSNT}}}RenewResponse")
        _el(out, WSNT, "TerminationTime", _stamp(ends))
        _el(out, WSNT, "CurrentTime", _stamp(now))
        return out

    def _unsubscribe(self, op: etree._Element, path: str) -> etree._Element:
        with self._lock:
            sub = self._subscription(path)
            del self._subs[sub.id]
        return etree.Element(f"{{{WSNT}}}UnsubscribeResponse")


_Handler = Any
_OPERATIONS: dict[tuple[str, str], _Handler] = {
    ("/onvif/device_service", "GetSystemDateAndTime"): OnvifCameraSim._date_and_time,
    ("/onvif/device_service", "GetCapabilities"): OnvifCameraSim._capabilities,
    ("/onvif/device_service", "GetServices"): OnvifCameraSim._services,
    ("/onvif/device_service", "GetDeviceInformation"): OnvifCameraSim._device_information,
    ("/onvif/media_service", "GetProfiles"): OnvifCameraSim._profiles,
    ("/onvif/media_service", "GetStreamUri"): OnvifCameraSim._stream_uri,
    ("/onvif/event_service", "CreatePullPointSubscription"): OnvifCameraSim._create_pull_point,
}
_SUBSCRIPTION_OPS: dict[str, _Handler] = {
    "PullMessages": OnvifCameraSim._pull_messages,
    "Renew": OnvifCameraSim._renew,
    "Unsubscribe": OnvifCameraSim._unsubscribe,
}
_REALM = "onvif"
_DIGEST_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _handler(camera: OnvifCameraSim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with camera._lock:
                camera.connections.add(self.connection)

        def finish(self) -> None:
            with camera._lock:
                camera.connections.discard(self.connection)
            super().finish()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1_000_000))
            status, body = camera.answer(self.path, body, self.headers.get("Authorization"))
            cut = camera.take_cut() if self.path.startswith("/onvif/subscription/") else False
            try:
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", camera.challenge())
                self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut:  # half the answer, then the connection closes (a crash mid-answer)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)
            except OSError:  # the client went away while the answer was held
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _el(parent: etree._Element, ns: str, tag: str, text: str | None = None,
        **attrs: str) -> etree._Element:  # fmt: skip
    child = etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        child.text = text
    return child


def _envelope(content: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{ENV}}}Envelope", nsmap=NSMAP)
    _el(envelope, ENV, "Header")
    etree.SubElement(envelope, f"{{{ENV}}}Body").append(content)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def _fault(fault: _Fault) -> etree._Element:
    out = etree.Element(f"{{{ENV}}}Fault")
    code = _el(out, ENV, "Code")
    _el(code, ENV, "Value", "env:Sender")
    parent = code
    for sub in fault.subcodes:
        parent = _el(parent, ENV, "Subcode")
        _el(parent, ENV, "Value", sub)
    reason = _el(out, ENV, "Reason")
    text = _el(reason, ENV, "Text", fault.reason)
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    if fault.detail is not None:
        _el(out, ENV, "Detail").append(fault.detail)
    return out


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(duration: str | None) -> float:
    """An xs:duration of days, hours, minutes and seconds, in seconds."""
    match = _DURATION.match((duration or "").strip())
    if not match or not any(match.groups()):
        raise _Fault(["ter:InvalidArgVal"], f"not a duration: {duration!r}")
    days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + secs


def _termination(value: str | None, now: datetime) -> datetime:
    """A termination time given as a duration from now or as a time (camera clock)."""
    text = (value or "PT60S").strip()
    if text.startswith("P"):
        return now + timedelta(seconds=min(_seconds(text), _MAX_TERM_S))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Fault(["ter:InvalidArgVal"], f"not a termination time: {text!r}") from None
    return min(when, now + timedelta(seconds=_MAX_TERM_S))
