"""The `onvif` camera driver: an ONVIF Profile S/T camera's own detectors relayed as camera alerts,
and its stream found for the agent's analytics (docs/drivers/onvif.md).

The site file gives the camera's address and account. The driver reads the device's clock
(GetSystemDateAndTime) so its UsernameTokens are dated as the device expects, finds the media and
event services (GetServices, or GetCapabilities on older devices), and, when `analytics` is set,
the RTSP URI of a media profile (GetProfiles, GetStreamUri), which it hands to the opencv
analytics (edge.vision). Events come by PullPoint: CreatePullPointSubscription, a PullMessages
loop, Renew before the termination time, and a new subscription whenever the camera forgets its
own (it restarted). A camera that cannot be reached is retried with back-off from the start.
Whatever goes wrong is counted, logged and reported as the camera's health (edge.health);
nothing else at the venue stops.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field

from edge import drivers as d
from edge.credentials import DeviceAccount
from edge.health import FAULTS, Health, Reporting
from edge.onvif import events as ev
from edge.onvif.soap import CONDITION, DEVICE_NS, EVENTS_NS, MEDIA_NS, OnvifError, Soap
from edge.vision.config import CameraSettings
from gateway import messages as m

log = logging.getLogger(__name__)

DRIVER = "onvif"
_TIMEOUTS_OFFLINE = 3  # timeouts in a row, without a good answer, that make the camera offline
_ZONE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class StreamAnalytics(CameraSettings):
    """The opencv analytics of the camera's stream: `source` is found by GetStreamUri."""

    source: str = Field(default="", description="leave out: the driver finds the stream")


class OnvifCameraSettings(DeviceAccount):
    """The `settings` of a camera with the `onvif` driver: an ONVIF user of the camera
    (`username` with `password` or `password_env`, edge.credentials) and these."""

    host: str = Field(min_length=1, max_length=255, description="the camera's address")
    port: int = Field(default=80, ge=1, le=65535, description="its HTTP (ONVIF) port")
    scheme: Literal["http", "https"] = "http"
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="answer timeout per request")
    slow_s: float = Field(
        default=2.0, gt=0, le=60, description="an answer slower than this is reported slow"
    )
    pull_timeout_s: int = Field(
        default=10, ge=1, le=60, description="PullMessages waits this long for events"
    )
    message_limit: int = Field(default=32, ge=1, le=1000, description="events per PullMessages")
    subscription_s: int = Field(
        default=60, ge=5, le=3600, description="subscription term; renewed at half of it"
    )
    backoff_max_s: float = Field(default=30.0, gt=0, le=600, description="reconnect wait at most")
    clock_limit_s: float = Field(
        default=300.0, gt=0, le=86_400, description="a device clock further off is clock_skew"
    )
    profile: str | None = Field(
        default=None, max_length=64, description="media profile token; default: the first"
    )
    stream_credentials: bool = Field(
        default=True, description="give the account to the RTSP stream too (in memory only)"
    )
    analytics: StreamAnalytics | None = Field(
        default=None, description="analyse the stream at the edge too (edge.vision settings)"
    )


class OnvifCamera(Reporting, d.CameraAlertSource):
    """An ONVIF camera: its detectors' events as camera alerts, its stream to the analytics."""

    def __init__(self, device_id: str, settings: OnvifCameraSettings, model: str | None = None,
                 state_dir: Path | None = None):  # fmt: skip
        super().__init__(device_id, model=model or "onvif-camera")
        self.settings = settings
        self.state_dir = state_dir  # the analytics' (edge.vision.camera)
        self.health = Health(device_id, clock_limit_s=settings.clock_limit_s)
        self.origin = f"{settings.scheme}://{settings.host}:{settings.port}"
        self.stream_uri: str | None = None  # as the camera gave it (no account in it)
        self.analyzer: d.Device | None = None
        self.subscriptions = 0  # subscriptions made, for tests and logs
        self.renewals = 0
        self._active: dict[tuple[m.CameraAlertKind, str], uuid.UUID] = {}
        self._emit: d.Emit | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed = False
        self._timeouts = 0  # timeouts since the last good answer
        self.pull_s: float = settings.pull_timeout_s  # lowered to the camera's MaxTimeout
        self.pull_limit = settings.message_limit  # and MaxMessageLimit, if it says so

    # --- life -----------------------------------------------------------------------------------

    def start(self, emit: d.Emit) -> None:
        self._emit = emit
        self.health.attach(emit)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"onvif-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            s = self.settings
            self._thread.join(s.timeout_s * 2 + s.pull_timeout_s + 5)
        if self.analyzer is not None:
            self.analyzer.stop()

    def _run(self) -> None:
        wait = 1.0
        while not self._stop.is_set():
            self._subscribed = False
            try:
                self._session()
            except OnvifError as err:
                self._problem(err)
            except Exception:  # a bug here must not end the camera's events
                log.exception("onvif session failed device=%s", self.id)
            if self._subscribed:  # it worked for a while: start the back-off over
                wait = 1.0
            if self._stop.wait(wait):
                break
            wait = min(wait * 2, self.settings.backoff_max_s)

    def _session(self) -> None:
        """One connection: clock, services, stream, then subscriptions until stopped or the
        camera fails (OnvifError)."""
        s = self.settings
        soap = Soap(self.origin, s.username, s.secret,
                    timeout_s=s.timeout_s, slow_s=s.slow_s)  # fmt: skip
        try:
            device = soap.service(DEVICE_NS, "DeviceBinding", soap.device_url)
            self._sync_clock(soap, device)
            media_url, events_url = self._addresses(soap, device)
            if s.analytics is not None:
                try:
                    self._find_stream(soap, media_url)
                except OnvifError as err:
                    if err.fault not in ("soap_fault", "malformed_xml"):
                        raise
                    self._problem(err)  # no stream to analyse: the camera's own events go on
            events = soap.service(EVENTS_NS, "EventBinding", events_url)
            while not self._stop.is_set():
                self._pull(soap, self._subscribe(soap, events))
        finally:
            soap.close()

    # --- device and media -------------------------------------------------------------------------

    def _sync_clock(self, soap: Soap, device: Any) -> None:
        answer = soap.call(device, "GetSystemDateAndTime")
        utc: Any = getattr(answer, "UTCDateTime", None)
        try:
            day, clock = utc.Date, utc.Time
            device_now = datetime(day.Year, day.Month, day.Day, clock.Hour, clock.Minute,
                                  clock.Second, tzinfo=UTC)  # fmt: skip
        except (AttributeError, TypeError, ValueError):
            raise OnvifError("malformed_xml", f"ONVIF GetSystemDateAndTime at {self.origin}: no"
                             " UTC date and time in the answer") from None  # fmt: skip
        soap.offset_s = (device_now - datetime.now(UTC)).total_seconds()
        self.health.device_time(device_now)  # a clock far off is reported, and its events dated
        # by the agent; the tokens carry the device's time either way, or it refuses them.

    def _addresses(self, soap: Soap, device: Any) -> tuple[str, str]:
        """The media and event services' addresses, by GetServices or else GetCapabilities."""
        found: dict[str, str] = {}
        try:
            for service in soap.call(device, "GetServices", IncludeCapability=False) or []:
                found[str(service.Namespace)] = str(service.XAddr)
        except OnvifError as err:
            if err.fault != "soap_fault":
                raise
        if EVENTS_NS not in found:  # a Profile S device before GetServices
            caps = soap.call(device, "GetCapabilities", Category=["All"])
            for namespace, part in ((MEDIA_NS, "Media"), (EVENTS_NS, "Events")):
                xaddr = getattr(getattr(caps, part, None), "XAddr", None)
                if xaddr:
                    found[namespace] = str(xaddr)
        if EVENTS_NS not in found:
            raise OnvifError("soap_fault", f"camera {self.origin} has no ONVIF event service")
        media = self._here(found.get(MEDIA_NS, f"{self.origin}/onvif/media_service"))
        return media, self._here(found[EVENTS_NS])

    def _here(self, url: str) -> str:
        """A service address with the host and port of the site file: a camera behind NAT or
        port forwarding names its own address, which the agent may not reach."""
        parts = urlsplit(url)
        netloc = f"{self.settings.host}:{self.settings.port}"
        return urlunsplit((self.settings.scheme, netloc, parts.path, parts.query, ""))

    def _find_stream(self, soap: Soap, media_url: str) -> None:
        s = self.settings
        media = soap.service(MEDIA_NS, "MediaBinding", media_url)
        profiles = soap.call(media, "GetProfiles") or []
        tokens = [str(p.token) for p in profiles if getattr(p, "token", None)]
        if s.profile is not None and s.profile not in tokens:
            raise OnvifError("soap_fault", f"camera {self.origin} has no media profile "
                             f"{s.profile!r} (it has {', '.join(tokens) or 'none'})")  # fmt: skip
        if not tokens:
            raise OnvifError("soap_fault", f"camera {self.origin} has no media profile")
        token = s.profile or tokens[0]
        setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        answer = soap.call(media, "GetStreamUri", StreamSetup=setup, ProfileToken=token)
        uri = str(getattr(answer, "Uri", "") or "")
        if not uri.startswith(("rtsp://", "rtsps://", "http://", "https://")):
            raise OnvifError("malformed_xml", f"ONVIF GetStreamUri at {self.origin}: no stream"
                             " URI in the answer") from None  # fmt: skip
        if uri != self.stream_uri:
            log.info("onvif stream found device=%s profile=%s uri=%s", self.id, token,
                     _without_user(uri))  # fmt: skip
            self._analyse(uri)

    def _analyse(self, uri: str) -> None:
        """(Re)start the opencv analytics on `uri`."""
        from edge.vision.camera import AnalyzedCamera

        s = self.settings
        assert s.analytics is not None and self._emit is not None
        if self.analyzer is not None:
            self.analyzer.stop()
        self.stream_uri = uri
        source = uri
        if s.stream_credentials:
            source = _with_user(uri, s.username, s.secret)
        camera = CameraSettings.model_validate({**s.analytics.model_dump(), "source": source})
        self.analyzer = AnalyzedCamera(self.id, camera, model=self.model, state_dir=self.state_dir)
        self.analyzer.start(self._emit)

    # --- events -----------------------------------------------------------------------------------

    def _subscribe(self, soap: Soap, events: Any) -> _Subscription:
        s = self.settings
        answer = soap.call(events, "CreatePullPointSubscription",
                           InitialTerminationTime=f"PT{s.subscription_s}S")  # fmt: skip
        try:
            address = self._here(str(_text(answer.SubscriptionReference.Address)))
        except AttributeError:
            raise OnvifError("malformed_xml", f"ONVIF CreatePullPointSubscription at "
                             f"{self.origin}: no subscription address") from None  # fmt: skip
        self.subscriptions += 1
        self._subscribed = True
        log.info("onvif subscribed device=%s subscription=%s", self.id, urlsplit(address).path)
        sub = _Subscription(
            pull=soap.service(EVENTS_NS, "PullPointSubscriptionBinding", address, wsa=True),
            manager=soap.service(EVENTS_NS, "SubscriptionManagerBinding", address, wsa=True),
        )  # fmt: skip
        sub.terms(answer, s.subscription_s)
        self._good(soap)
        return sub

    def _pull(self, soap: Soap, sub: _Subscription) -> None:
        """Pull until stopped or the subscription is gone (returns: subscribe again); an
        OnvifError for a camera that fails."""
        s = self.settings
        try:
            while not self._stop.is_set():
                if time.monotonic() >= sub.renew_at:
                    answer = soap.call(sub.manager, "Renew",
                                       TerminationTime=f"PT{s.subscription_s}S")  # fmt: skip
                    sub.terms(answer, s.subscription_s)
                    self.renewals += 1
                try:
                    answer = soap.call(sub.pull, "PullMessages", wait_s=self.pull_s,
                                       Timeout=_duration(self.pull_s),
                                       MessageLimit=self.pull_limit)  # fmt: skip
                except OnvifError as err:
                    if err.limits is not None and self._within(err.limits):
                        continue  # asked for more than the camera allows: asked again within
                    if err.fault != "malformed_xml":
                        raise
                    self._problem(err)  # one garbled answer: the subscription goes on
                    continue
                sub.terms(answer, None)
                self._good(soap)
                for note in ev.notifications(soap.received.envelope):
                    self._on(note)
        except OnvifError as err:
            if err.fault != "soap_fault":
                raise
            # The camera no longer knows the subscription (it restarted, or the term ran out):
            # counted and logged, not a problem with the camera while it answers.
            FAULTS.labels(self.id, "subscription_lost").inc()
            log.warning("onvif subscription lost device=%s: %s; subscribing again", self.id, err)
            return
        self._unsubscribe(soap, sub)

    def _within(self, limits: tuple[float, int]) -> bool:
        """Take a camera's PullMessages limits; False when they change nothing."""
        timeout_s, limit = limits
        pull_s, limit = max(min(self.pull_s, timeout_s), 0.1), min(self.pull_limit, limit)
        if (pull_s, limit) == (self.pull_s, self.pull_limit):
            return False
        log.info("onvif camera limits PullMessages device=%s timeout=%gs messages=%d", self.id,
                 pull_s, limit)  # fmt: skip
        self.pull_s, self.pull_limit = pull_s, limit
        return True

    def _unsubscribe(self, soap: Soap, sub: _Subscription) -> None:
        try:
            soap.call(sub.manager, "Unsubscribe")
        except OnvifError as err:  # stopping anyway: the term ends it on the camera
            log.info("onvif unsubscribe failed device=%s: %s", self.id, err)

    def _on(self, note: ev.Notification | ev.Malformed) -> None:
        if isinstance(note, ev.Malformed):
            self._problem(OnvifError("malformed_xml", f"camera {self.origin}: {note}"))
            return
        mapping = ev.TOPICS.get(note.topic)
        if mapping is None:
            if not ev.quiet(note.topic):
                self._problem(OnvifError("unknown_event", f"camera {self.origin}: event topic "
                                         f"{note.raw_topic} has no mapping; ignored"))  # fmt: skip
            return
        zone = _zone(note.source)
        if mapping.state is None:
            active: bool | None = None  # a single event: start and end at once
        elif mapping.state in note.data:
            active = ev.is_true(note.data[mapping.state]) and note.operation != "Deleted"
        else:
            self._problem(OnvifError("malformed_xml", f"camera {self.origin}: a "
                                     f"{note.raw_topic} event without its {mapping.state}"))  # fmt: skip
            return
        ts = self.health.device_time(note.utc_time)
        key = (mapping.kind, zone)
        if active is not False and key not in self._active:
            self._active[key] = uuid.uuid4()
            self._alert(key, m.AlertPhase.START, ts)
        if active is not True and key in self._active:
            self._alert(key, m.AlertPhase.END, ts)
            del self._active[key]

    def _alert(self, key: tuple[m.CameraAlertKind, str], phase: m.AlertPhase,
               ts: datetime | None) -> None:  # fmt: skip
        kind, zone = key
        log.info("camera alert device=%s kind=%s zone=%s phase=%s (onvif)", self.id, kind.value,
                 zone, phase.value)  # fmt: skip
        if self._emit is not None:  # the camera gives no confidence: its detector fired
            self._emit(d.CameraAlertSeen(self.id, alert_id=self._active[key], phase=phase,
                                         kind=kind, score=1.0, zone=zone, ts=ts))  # fmt: skip

    # --- health -----------------------------------------------------------------------------------

    def _good(self, soap: Soap) -> None:
        self._timeouts = 0
        self.health.ok()
        if soap.slow is not None:
            slow, soap.slow = soap.slow, None
            self._problem(OnvifError("slow", f"{slow} (over {self.settings.slow_s:g} s)"))

    def _problem(self, err: OnvifError) -> None:
        condition = CONDITION.get(err.fault, m.DeviceCondition.BAD_INPUT)
        online: bool | None = None  # the default: unreachable and auth_failed are offline
        if err.fault in ("unknown_event", "malformed_xml", "slow"):
            online = True  # the camera answers: what it said was wrong, or late
        if err.fault == "timeout":
            self._timeouts += 1
            if self._timeouts >= _TIMEOUTS_OFFLINE:  # not slow any more: gone
                condition, online = m.DeviceCondition.UNREACHABLE, False
        self.health.problem(condition, err.fault, str(err), online=online)


class _Subscription:
    """A PullPoint subscription: its proxies and when to renew it (agent's monotonic clock)."""

    def __init__(self, pull: Any, manager: Any) -> None:
        self.pull, self.manager = pull, manager
        self.renew_at = 0.0

    def terms(self, answer: Any, asked_s: int | None) -> None:
        """Take CurrentTime and TerminationTime (both device clock) from an answer: renew at
        half the remaining term."""
        now, end = getattr(answer, "CurrentTime", None), getattr(answer, "TerminationTime", None)
        if isinstance(now, datetime) and isinstance(end, datetime):
            left = (end - now).total_seconds()
        elif asked_s is not None:
            left = float(asked_s)
        else:
            return
        renew_at = time.monotonic() + max(left / 2, 1.0)
        # A pull's answer only brings renewal forward (a term cut short); a renewal resets it.
        self.renew_at = renew_at if asked_s is not None else min(self.renew_at, renew_at)


def _duration(seconds: float) -> str:
    """An xs:duration of seconds (PT10S, PT0.5S)."""
    return f"PT{seconds:g}S"


def _text(value: Any) -> Any:
    """An AttributedURIType's text (zeep keeps it in _value_1) or the value itself."""
    return getattr(value, "_value_1", value)


def _zone(source: dict[str, str]) -> str:
    """The zone an event is about: its rule's name, else its video source."""
    name = source.get("Rule") or source.get("VideoSourceConfigurationToken")
    name = name or source.get("VideoSourceToken") or source.get("Source") or "main"
    return _ZONE_CHARS.sub("_", name)[:64] or "main"


def _with_user(uri: str, username: str, password: str) -> str:
    parts = urlsplit(_without_user(uri))
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _without_user(uri: str) -> str:
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
