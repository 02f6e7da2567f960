"""The `http` speaker driver: IP speakers and PA hosts that take an HTTP request to play a stored
clip, a text or an audio file (docs/drivers/http-speaker.md).

Each command is one request, described in the site file (edge.http_template) and sent with
httpx, with Basic or Digest authentication. A text is spoken by the device itself, or at the
edge (edge.tts, espeak-ng) and uploaded as WAV for speakers that only play audio. Every command
is answered with the device's real outcome: its HTTP status and, where configured, its own result
code and words. An optional status poll reads online, playing and volume from the device's
answer. A device that cannot be reached, refuses the account, answers slowly or garbles its
answer is counted, logged and reported as the speaker's health (edge.health); nothing else stops.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from typing import Any, Literal

import httpx
from prometheus_client import Histogram
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge import drivers as d
from edge import tts
from edge.credentials import DeviceAccount
from edge.health import Health, Reporting
from edge.http_template import (
    AUDIO_BODIES,
    Answer,
    RequestTemplate,
    Unreadable,
    as_text,
    parse,
    truthy,
)
from edge.http_template import field as field_of
from gateway import messages as m

log = logging.getLogger(__name__)

DRIVER = "http"
REQUEST_SECONDS = Histogram(
    "gridwatch_edge_speaker_request_seconds",
    "Seconds an HTTP speaker took to answer, by device and request (answered ones only)",
    ["device", "request"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
SPEECH_SECONDS = Histogram(
    "gridwatch_edge_tts_seconds",
    "Seconds espeak-ng took to speak a broadcast's text at the edge",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
_FAULTS = {f.value for f in m.SpeakerFault}


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Requests(_Settings):
    """The request for each thing the speaker is asked to do (leave out what it cannot)."""

    play_clip: RequestTemplate | None = Field(default=None, description="play a stored clip")
    play_text: RequestTemplate | None = Field(default=None, description="speak a text (device TTS)")
    play_audio: RequestTemplate | None = Field(default=None, description="play an uploaded WAV")
    stop: RequestTemplate | None = Field(default=None, description="stop playing")
    volume: RequestTemplate | None = Field(default=None, description="set the volume")


class StatusPoll(_Settings):
    """A status request polled every `interval_s`, and where its answer says what."""

    request: RequestTemplate = Field(description="the status request (usually a GET)")
    format: Literal["json", "xml"] = Field(default="json", description="the answer's format")
    interval_s: float = Field(default=30.0, ge=0.2, le=3600, description="seconds between polls")
    online: str | None = Field(default=None, description="path of 'online' (absent: answering is)")
    playing: str | None = Field(default=None, description="path of 'playing'")
    volume: str | None = Field(default=None, description="path of the volume (0-100)")
    clip: str | None = Field(default=None, description="path of what is playing")
    fault: str | None = Field(default=None, description="path of the fault (amplifier, power…)")
    report_every_s: float = Field(
        default=60.0, gt=0, le=3600, description="an unchanged status is reported this often"
    )


class HttpSpeakerSettings(DeviceAccount):
    """The `settings` of a speaker with the `http` driver (the account: edge.credentials)."""

    host: str = Field(min_length=1, max_length=255, description="the speaker's address")
    port: int | None = Field(default=None, ge=1, le=65535, description="default 80 / 443")
    scheme: Literal["http", "https"] = Field(default="http", description="http or https")
    tls_ca: str | None = Field(default=None, description="CA file to check an https speaker with")
    auth: Literal["none", "basic", "digest"] = Field(default="digest", description="HTTP auth")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="an answer must come by then")
    slow_s: float = Field(default=2.0, gt=0, le=120, description="an answer slower is 'slow'")
    speech: Literal["device", "edge"] = Field(
        default="edge",
        description="who speaks a text: the device (play_text) or the agent (espeak-ng, then"
        " play_audio)",
    )
    words_per_minute: int = Field(default=160, ge=80, le=400, description="edge speech rate")
    volume: int = Field(default=60, ge=0, le=100, description="volume assumed until set or read")
    requests: Requests = Field(default_factory=Requests, description="the device's requests")
    answer: Answer | None = Field(default=None, description="how every answer says done or not")
    status: StatusPoll | None = Field(default=None, description="optional status poll")
    backoff_max_s: float = Field(default=30.0, gt=0, le=600, description="poll retry wait at most")

    @model_validator(mode="after")
    def _one_password(self) -> HttpSpeakerSettings:
        """A password (once) unless the speaker takes requests without an account."""
        if self.auth == "none":
            if self.password is not None or self.password_env is not None:
                raise ValueError("auth: none takes no password; set auth to basic or digest")
            return self
        DeviceAccount._one_password(self)  # type: ignore[operator]  # a function at run time
        return self

    @model_validator(mode="after")
    def _consistent(self) -> HttpSpeakerSettings:
        r = self.requests
        if self.speech == "device" and r.play_text is None:
            raise ValueError("speech: device needs requests.play_text")
        if self.speech == "edge" and r.play_audio is None:
            raise ValueError("speech: edge needs requests.play_audio (the WAV upload)")
        if r.play_audio is not None and r.play_audio.body_type not in AUDIO_BODIES:
            raise ValueError("requests.play_audio needs body_type audio or multipart")
        for name in ("play_clip", "play_text", "stop", "volume"):
            request = getattr(r, name)
            if request is not None and request.body_type in AUDIO_BODIES:
                raise ValueError(f"requests.{name} cannot send audio; only play_audio does")
        return self

    @property
    def base_url(self) -> str:
        port = self.port or (443 if self.scheme == "https" else 80)
        return f"{self.scheme}://{self.host}:{port}"


class HttpSpeaker(Reporting, d.Speaker):
    """An IP speaker or PA host driven by templated HTTP requests."""

    def __init__(self, device_id: str, settings: HttpSpeakerSettings, model: str | None = None):
        super().__init__(device_id, model=model or "http-speaker")
        self.settings = settings
        self.health = Health(device_id)
        self.volume = settings.volume
        self.playing: str | None = None
        self.fault: m.SpeakerFault | None = None
        self._reported: tuple[object, ...] | None = None
        self._reported_at = 0.0
        self._emit: d.Emit | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(
            base_url=settings.base_url, auth=_auth(settings), timeout=settings.timeout_s,
            verify=_verify(settings), follow_redirects=False,
        )  # fmt: skip

    # --- life -----------------------------------------------------------------------------------

    def start(self, emit: d.Emit) -> None:
        self._emit = emit
        self.health.attach(emit)
        if self.settings.speech == "edge" and not tts.available():
            log.warning("speaker %s speaks texts at the edge but %s is missing: install the apt "
                        "package %s", self.id, tts.COMMAND, tts.APT_PACKAGE)  # fmt: skip
        if self.settings.status is not None:
            self._thread = threading.Thread(target=self._poll, name=f"speaker-{self.id}",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.timeout_s + 5)
        self._client.close()

    def _poll(self) -> None:
        poll = self.settings.status
        assert poll is not None
        wait = poll.interval_s
        while not self._stop.is_set():
            try:
                self._read_status(poll)
                wait = poll.interval_s
            except _Failed:
                wait = min(max(wait, poll.interval_s) * 2, self.settings.backoff_max_s)
            except Exception:  # a bug here must not end the polling
                log.exception("speaker status poll failed device=%s", self.id)
            self._stop.wait(wait)

    def _read_status(self, poll: StatusPoll) -> None:
        try:
            response = self._send("status", poll.request, self._values(), answer=None)
        except _Refused as refused:  # answered, but not with a status: the settings or device
            raise self._problem(m.DeviceCondition.BAD_INPUT, "status_refused", str(refused),
                                online=True) from None  # fmt: skip
        try:
            doc = parse(response.content, poll.format)
        except Unreadable as exc:
            raise self._bad(poll.format, f"status answer {exc}") from None
        online = True if poll.online is None else truthy(field_of(doc, poll.online))
        if poll.playing is not None:
            playing = truthy(field_of(doc, poll.playing))
            clip = as_text(field_of(doc, poll.clip)) if poll.clip else None
            self.playing = (clip or "playing") if playing else None
        if poll.volume is not None:
            with contextlib.suppress(ValueError):  # a missing volume keeps the last known one
                self.volume = max(0, min(100, int(float(as_text(field_of(doc, poll.volume))))))
        fault = as_text(field_of(doc, poll.fault)) if poll.fault else ""
        self.fault = m.SpeakerFault(fault) if fault in _FAULTS else None
        now = time.monotonic()
        state = (online, self.volume, self.playing, self.fault)
        if state != self._reported or now - self._reported_at >= poll.report_every_s:
            self._status(online=online)

    # --- commands (the agent's command thread) --------------------------------------------------

    def play(
        self,
        *,
        text: str | None,
        clip: str | None,
        priority: m.SpeakerPriority,
        repeat: int,
        language: m.SpeechLanguage = m.SpeechLanguage.ZH_CN,
    ) -> None:
        r = self.settings.requests
        values = self._values(text=text or "", clip=clip or "", priority=priority.value,
                              repeat=repeat, language=language.value)  # fmt: skip
        if clip is not None:
            self._command("play_clip", r.play_clip, values)
            self.playing = clip
        elif self.settings.speech == "device":
            self._command("play_text", r.play_text, values)
            self.playing = f"tts:{(text or '')[:40]}"
        else:
            began = time.monotonic()
            try:
                speech = tts.speak(text or "", language, volume=self.volume,
                                   words_per_minute=self.settings.words_per_minute)  # fmt: skip
            except tts.TtsError as exc:
                log.warning("text-to-speech failed device=%s: %s", self.id, exc)
                raise d.CommandFailed(f"text-to-speech at the agent: {exc}") from None
            SPEECH_SECONDS.observe(time.monotonic() - began)
            values["seconds"] = round(speech.seconds, 1)
            self._command("play_audio", r.play_audio, values, audio=speech.wav)
            self.playing = f"tts:{(text or '')[:40]}"
        self._status(online=True)

    def stop_playing(self) -> None:
        self._command("stop", self.settings.requests.stop, self._values())
        self.playing = None
        self._status(online=True)

    def set_volume(self, level: int) -> None:
        self._command("volume", self.settings.requests.volume, self._values(volume=level))
        self.volume = level
        self._status(online=True)

    # --- requests ---------------------------------------------------------------------------------

    def _values(self, **given: object) -> dict[str, object]:
        values: dict[str, object] = {
            "text": "", "clip": "", "priority": "routine", "repeat": 1, "language": "zh-CN",
            "volume": self.volume, "seconds": 0,
        }  # fmt: skip
        values.update(given)
        return values

    def _command(
        self,
        name: str,
        request: RequestTemplate | None,
        values: dict[str, object],
        audio: bytes | None = None,
    ) -> None:
        """Send one command; CommandFailed with the reason unless the device says it did it."""
        if request is None:
            raise d.CommandFailed(f"this speaker's site file has no requests.{name}: it cannot "
                                  f"{name.replace('_', ' ')}")  # fmt: skip
        try:
            self._send(name, request, values, answer=request.answer or self.settings.answer,
                       audio=audio)  # fmt: skip
        except _Failed as failed:
            log.warning("speaker command failed device=%s request=%s: %s", self.id, name, failed)
            raise d.CommandFailed(str(failed)) from None

    def _send(
        self,
        name: str,
        request: RequestTemplate,
        values: dict[str, object],
        *,
        answer: Answer | None,
        audio: bytes | None = None,
    ) -> httpx.Response:
        s = self.settings
        where = f"speaker {s.base_url}"
        kw = request.build(values, audio)
        began = time.monotonic()
        try:
            response = self._client.request(**kw)
        except httpx.ConnectTimeout:
            raise self._problem(
                m.DeviceCondition.UNREACHABLE, "connect_failed",
                f"{where}: no connection within {s.timeout_s:g} s",
            ) from None  # fmt: skip
        except httpx.TimeoutException:
            raise self._problem(m.DeviceCondition.SLOW, "timeout",
                                f"{where}: no answer to {name} within {s.timeout_s:g} s",
                                online=False) from None  # fmt: skip
        except httpx.ConnectError as exc:
            raise self._problem(m.DeviceCondition.UNREACHABLE, "connect_failed",
                                f"{where}: cannot connect ({_reason(exc)})") from None  # fmt: skip
        except httpx.TransportError as exc:
            raise self._problem(
                m.DeviceCondition.UNREACHABLE, "connection_lost",
                f"{where}: the connection broke during {name} ({_reason(exc)})",
            ) from None  # fmt: skip
        took = time.monotonic() - began
        REQUEST_SECONDS.labels(self.id, name).observe(took)
        if response.status_code == 401:
            raise self._problem(
                m.DeviceCondition.AUTH_FAILED, "auth_failed",
                f"{where} refused user {s.username!r} (HTTP 401): check the password in the site"
                " file (was it changed on the device?)",
            )  # fmt: skip
        if took > s.slow_s:
            self.health.problem(m.DeviceCondition.SLOW, "slow",
                                f"{where} took {took:.1f} s to answer {name} (slow_s {s.slow_s:g})",
                                online=True)  # fmt: skip
        else:
            self.health.ok()
        if not response.is_success:
            said = _words(response)
            raise _Refused(f"{where} answered {name} with HTTP {response.status_code}"
                          + (f": {said}" if said else ""))  # fmt: skip
        if answer is not None:
            self._check(name, response, answer)
        return response

    def _check(self, name: str, response: httpx.Response, answer: Answer) -> None:
        where = f"speaker {self.settings.base_url}"
        try:
            doc = parse(response.content, answer.format)
        except Unreadable as exc:
            raise self._bad(answer.format, f"answer to {name} {exc}") from None
        result = field_of(doc, answer.field)
        if result is None:
            raise self._bad(answer.format, f"answer to {name} has no {answer.field}")
        if as_text(result) not in answer.ok:
            said = as_text(field_of(doc, answer.message)) if answer.message else ""
            raise _Failed(f"{where} refused {name}: {answer.field} {as_text(result)}"
                          + (f": {said[:300]}" if said else ""))  # fmt: skip

    def _problem(
        self, condition: m.DeviceCondition, fault: str, detail: str, *, online: bool | None = None
    ) -> _Failed:
        self.health.problem(condition, fault, detail, online=online)
        if online is False or condition in (m.DeviceCondition.UNREACHABLE,
                                            m.DeviceCondition.AUTH_FAILED):  # fmt: skip
            self.playing = None
        return _Failed(detail)

    def _bad(self, fmt: str, what: str) -> _Failed:
        detail = f"speaker {self.settings.base_url}: {what}"
        return self._problem(m.DeviceCondition.BAD_INPUT, f"malformed_{fmt}", detail, online=True)

    def _status(self, *, online: bool) -> None:
        self._reported = (online, self.volume, self.playing, self.fault)
        self._reported_at = time.monotonic()
        if self._emit is not None:
            self._emit(d.SpeakerStatusSeen(self.id, online=online, volume=self.volume,
                                           playing=self.playing is not None, clip=self.playing,
                                           fault=self.fault))  # fmt: skip


class _Failed(Exception):
    """A request did not do what it should; the message says why (no secrets in it)."""


class _Refused(_Failed):
    """The device answered with an HTTP error status."""


def _auth(s: HttpSpeakerSettings) -> httpx.Auth | None:
    if s.auth == "none":
        return None
    secret = s.secret
    return (
        httpx.DigestAuth(s.username, secret)
        if s.auth == "digest"
        else httpx.BasicAuth(s.username, secret)
    )


def _verify(s: HttpSpeakerSettings) -> ssl.SSLContext | bool:
    if s.tls_ca is not None:
        return ssl.create_default_context(cafile=s.tls_ca)
    return True


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _words(response: httpx.Response) -> str:
    """The start of a refusal's body, as text on one line."""
    text: Any = response.text[:300] if response.content else ""
    return " ".join(str(text).split())
