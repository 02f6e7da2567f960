"""One account on one ISAPI device: requests with digest authentication, and the alert stream.

Every exchange reports the device's health (edge.health): a 401 is auth_failed (the password
changed on the device), no connection is unreachable, an answer slower than `timeout_s` is
slow, and an ISAPI `ResponseStatus` other than OK raises `IsapiRefused` with the device's own
words (the device answered: that is a refusal, not a health problem). `events` keeps the alert
stream open: it reconnects with back-off, and a stream that goes quiet for longer than
`heartbeat_timeout_s` (devices send a heartbeat part every few seconds) is taken for lost.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import logging
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any, Literal

import httpx
from pydantic import ConfigDict, Field

from edge import xmlsafe
from edge.credentials import DeviceAccount
from edge.health import Health
from edge.isapi.stream import MultipartReader, Part, boundary_of
from gateway.messages import DeviceCondition

log = logging.getLogger(__name__)

ALERT_STREAM = "/ISAPI/Event/notification/alertStream"
_OK_CODES = {"1", "ok"}
_BACKOFF_START_S = 0.5


class IsapiSettings(DeviceAccount):
    """How to reach one ISAPI device: the settings every `isapi` device shares (with the
    account: `username`, and `password` or `password_env`)."""

    # Errors never repeat input values: the settings hold the device's password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    host: str = Field(min_length=1, max_length=255, description="the device's address")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="HTTP(S) port (default 80, or 443 for https)"
    )
    scheme: Literal["http", "https"] = Field(default="http", description="http or https")
    tls_ca: str | None = Field(
        default=None, description="https: a CA file (PEM) to trust for the device's certificate"
    )
    timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="an answer slower than this is slow (and dropped)"
    )
    heartbeat_timeout_s: float = Field(
        default=30.0, gt=0, le=600,
        description="no event or heartbeat on the alert stream this long: reconnect, offline",
    )  # fmt: skip
    backoff_max_s: float = Field(default=30.0, gt=0, le=600, description="reconnect wait at most")
    clock_limit_s: float = Field(
        default=300.0, gt=0, le=86_400,
        description="a device clock further off than this is reported; the agent's time is used",
    )  # fmt: skip

    @property
    def address(self) -> str:
        """host:port, as named in health details and logs."""
        return f"{self.host}:{self.port or (443 if self.scheme == 'https' else 80)}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.address}"


class IsapiRefused(Exception):
    """The device answered with an ISAPI ResponseStatus other than OK; the message is the
    device's own words."""

    def __init__(self, status: str, sub_status: str, message: str, http_status: int) -> None:
        super().__init__(message)
        self.status, self.sub_status, self.http_status = status, sub_status, http_status


class IsapiUnavailable(Exception):
    """The device could not be asked (no connection, refused account, too slow); the health
    problem is already reported. `fault` is its lower_snake name."""

    def __init__(self, fault: str, detail: str) -> None:
        super().__init__(detail)
        self.fault = fault


class IsapiSession:
    """One device's account: `request` for single exchanges (thread-safe), `events` for the
    alert stream (one reader at a time)."""

    def __init__(self, settings: IsapiSettings, health: Health) -> None:
        self.settings = settings
        self.health = health
        self._lock = threading.Lock()
        self._client = self._new_client()
        self._stream_client = self._new_client()  # its own digest state: a stream lasts long
        self._stream_socket: socket.socket | None = None

    def _new_client(self) -> httpx.Client:
        s = self.settings
        auth = httpx.DigestAuth(s.username, s.secret)
        verify: ssl.SSLContext | bool = True
        if s.scheme == "https" and s.tls_ca:
            verify = ssl.create_default_context(cafile=s.tls_ca)
        return httpx.Client(base_url=s.base_url, auth=auth, verify=verify,
                            timeout=httpx.Timeout(s.timeout_s), trust_env=False)  # fmt: skip

    def close(self) -> None:
        """Close both clients; an alert stream waiting for its next part ends at once."""
        sock, self._stream_socket = self._stream_socket, None
        if sock is not None:
            # Closing a socket does not wake a read blocked on it in another thread; this does.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._stream_client.close()

    # --- single exchanges -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | str | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One exchange; IsapiUnavailable (health reported) or IsapiRefused (the device's
        words) when it does not succeed."""
        started = time.monotonic()
        try:
            with self._lock:
                response = self._client.request(
                    method, path, content=content, json=json, params=params
                )
        except httpx.HTTPError as exc:
            raise self._unavailable(exc, f"{method} {path}") from None
        self._check_auth(response)
        took = time.monotonic() - started
        refused = refusal(response)
        self.health.ok()  # it answered: reachable, whatever else follows
        if took > self.settings.timeout_s:  # possible across the 401 round trip
            self._problem(DeviceCondition.SLOW, "slow",
                          f"answered {method} {path} in {took:.1f} s", online=True)  # fmt: skip
        if refused is not None:
            raise refused
        return response

    def _check_auth(self, response: httpx.Response) -> None:
        if response.status_code == 401:
            detail = (f"the device refused user {self.settings.username!r}: check the password"
                      " in the site file (was it changed on the device?)")  # fmt: skip
            self._problem(DeviceCondition.AUTH_FAILED, "auth_failed", detail, online=False)
            raise IsapiUnavailable("auth_failed", f"{self.settings.address}: {detail}")

    def _unavailable(self, exc: httpx.HTTPError, what: str) -> IsapiUnavailable:
        s = self.settings
        tls = _tls_error(exc)
        if tls is not None:
            fault, condition, online = "tls_failed", DeviceCondition.UNREACHABLE, False
            detail = (f"the TLS handshake failed ({tls.reason or type(tls).__name__}): give the"
                      " device's CA certificate in settings.tls_ca")  # fmt: skip
        elif isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            fault, condition, online = "connect_failed", DeviceCondition.UNREACHABLE, False
            detail = "cannot connect"
        elif isinstance(exc, httpx.TimeoutException):
            fault, condition, online = "timeout", DeviceCondition.SLOW, True
            detail = f"no answer to {what} within {s.timeout_s:g} s"
        else:
            fault, condition, online = "connection_lost", DeviceCondition.UNREACHABLE, False
            detail = f"the connection broke during {what} ({type(exc).__name__})"
        self._problem(condition, fault, detail, online=online)
        return IsapiUnavailable(fault, f"{s.address}: {detail}")

    def _problem(
        self, condition: DeviceCondition, fault: str, detail: str, *, online: bool
    ) -> None:
        self.health.problem(condition, fault, f"ISAPI device {self.settings.address}: {detail}",
                            online=online)  # fmt: skip

    # --- the alert stream -----------------------------------------------------------------------

    def events(
        self,
        stop: threading.Event,
        path: str = ALERT_STREAM,
        *,
        on_open: Callable[[], None] | None = None,
    ) -> Iterator[Part]:
        """The alert stream's parts, for as long as `stop` is not set: reconnecting with
        back-off (doubling up to backoff_max_s) after every loss, each loss reported;
        `on_open` is called each time the stream opens, before its first part."""
        s = self.settings
        wait = _BACKOFF_START_S
        while not stop.is_set():
            got_part = False
            try:
                for part in self._stream_once(path, stop, on_open):
                    got_part = True
                    wait = _BACKOFF_START_S
                    yield part
            except IsapiUnavailable:
                pass  # reported
            except IsapiRefused as exc:
                self._problem(DeviceCondition.BAD_INPUT, "refused",
                              f"refused the alert stream: {exc}", online=False)  # fmt: skip
            if stop.is_set():
                return
            if got_part:
                wait = _BACKOFF_START_S
            log.info("isapi alert stream reconnecting device=%s host=%s in %.1f s",
                     self.health.device, s.address, wait)  # fmt: skip
            stop.wait(wait)
            wait = min(wait * 2, s.backoff_max_s)

    def _stream_once(
        self, path: str, stop: threading.Event, on_open: Callable[[], None] | None
    ) -> Iterator[Part]:
        s = self.settings
        # Reads wait for the next part up to the heartbeat timeout; connecting does not.
        timeout = httpx.Timeout(s.timeout_s, read=s.heartbeat_timeout_s)
        started = time.monotonic()
        try:
            with self._stream_client.stream("GET", path, timeout=timeout) as response:
                self._check_auth(response)
                took = time.monotonic() - started
                if response.status_code != 200:
                    response.read()
                    refused = refusal(response)
                    raise refused or IsapiRefused(
                        str(response.status_code), "", f"HTTP {response.status_code}",
                        response.status_code,
                    )  # fmt: skip
                boundary = boundary_of(response.headers.get("content-type", ""))
                if boundary is None:
                    kind = response.headers.get("content-type", "none")
                    self._problem(DeviceCondition.BAD_INPUT, "malformed_stream",
                                  f"the alert stream is not multipart (Content-Type {kind[:60]})",
                                  online=False)  # fmt: skip
                    return
                self.health.ok()  # it answered: reachable, whatever else follows
                if took > s.timeout_s:
                    self._problem(DeviceCondition.SLOW, "slow",
                                  f"opened the alert stream in {took:.1f} s", online=True)  # fmt: skip
                reader = MultipartReader(boundary)
                network = response.extensions.get("network_stream")
                self._stream_socket = network.get_extra_info("socket") if network else None
                if on_open is not None:
                    try:
                        on_open()
                    except Exception:  # the driver's hook must not end the stream
                        log.exception("isapi on_open failed device=%s", self.health.device)
                log.info("isapi alert stream open device=%s host=%s", self.health.device,
                         s.address)  # fmt: skip
                for chunk in response.iter_raw():
                    if stop.is_set():
                        return
                    for part in reader.feed(chunk):
                        if part.problem is None:
                            self.health.ok()
                        yield part
                    if reader.closed:
                        break
        except RuntimeError:
            if stop.is_set():
                return  # the client was closed on stop between two reads
            raise
        except httpx.HTTPError as exc:
            if stop.is_set():
                return  # closed under us on stop
            if not isinstance(exc, httpx.ReadTimeout):
                raise self._unavailable(exc, f"GET {path}") from None
            self._problem(DeviceCondition.UNREACHABLE, "heartbeat_missed",
                          f"no event or heartbeat on the alert stream for"
                          f" {s.heartbeat_timeout_s:g} s; reconnecting",
                          online=False)  # fmt: skip
            return
        if not stop.is_set():
            self._problem(DeviceCondition.UNREACHABLE, "stream_closed",
                          "closed the alert stream; reconnecting", online=False)  # fmt: skip


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind an httpx error (a certificate not trusted, a bad handshake)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def refusal(response: httpx.Response) -> IsapiRefused | None:
    """The device's refusal in an ISAPI ResponseStatus (XML or JSON), or for an HTTP error
    status without one; None when the answer is a success."""
    status, sub, message = _response_status(response)
    if status is None:
        if response.is_success:
            return None
        return IsapiRefused(str(response.status_code), "",
                            f"HTTP {response.status_code} {response.reason_phrase}".strip(),
                            response.status_code)  # fmt: skip
    if status.lower() in _OK_CODES and response.is_success:
        return None
    return IsapiRefused(status, sub, message, response.status_code)


def _response_status(response: httpx.Response) -> tuple[str | None, str, str]:
    """statusCode, subStatusCode and the device's words, from a ResponseStatus body."""
    body = response.content.strip()
    if not body or len(body) > 64 * 1024:
        return None, "", ""
    if body.startswith(b"{"):
        try:
            data = jsonlib.loads(body)
        except ValueError:
            return None, "", ""
        if not isinstance(data, dict) or "statusCode" not in data:
            return None, "", ""
        words = [str(data.get(k)) for k in ("statusString", "subStatusCode", "errorMsg")
                 if data.get(k) not in (None, "")]  # fmt: skip
        return (
            str(data["statusCode"]),
            str(data.get("subStatusCode", "")),
            ": ".join(dict.fromkeys(words)),
        )
    if not body.startswith(b"<") or b"ResponseStatus" not in body[:300]:
        return None, "", ""
    try:
        root = xmlsafe.parse(body)
    except (ET.ParseError, xmlsafe.UnsafeXml):
        return None, "", ""
    fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in root}
    if "statusCode" not in fields:
        return None, "", ""
    words = [fields[k] for k in ("statusString", "subStatusCode", "errorMsg") if fields.get(k)]
    return fields["statusCode"], fields.get("subStatusCode", ""), ": ".join(dict.fromkeys(words))
