"""ONVIF over SOAP with zeep: the services of one camera, signed with a WS-Security UsernameToken.

The WSDLs and schemas are those shipped by the onvif-zeep-async package (located, not imported:
this module needs only its files). zeep builds each request from them and parses each answer;
what goes wrong is turned into one `OnvifError` with a fault name and a sentence (the device's
address, what happened, what to do), never the device's raw answer and never the password.

ONVIF devices check the token's `Created` time against their own clock, so the token is dated
by the device's clock: `offset_s` (device minus agent), found by GetSystemDateAndTime, which a
device answers without authentication.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from lxml import etree
from requests.auth import HTTPDigestAuth
from zeep import Client, Settings
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError, XMLParseError, XMLSyntaxError
from zeep.plugins import Plugin
from zeep.proxy import ServiceProxy
from zeep.transports import Transport
from zeep.wsa import WsAddressingPlugin
from zeep.wsdl import Document
from zeep.wsse.username import UsernameToken

from gateway import messages as m

log = logging.getLogger(__name__)
# zeep's transport logs whole envelopes at debug level, tokens (digest, nonce) included.
logging.getLogger("zeep.transports").setLevel(logging.INFO)

DEVICE_NS = "http://www.onvif.org/ver10/device/wsdl"
MEDIA_NS = "http://www.onvif.org/ver10/media/wsdl"
EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
_TER = "http://www.onvif.org/ver10/error"
_WSDL_FILES = {DEVICE_NS: "devicemgmt.wsdl", MEDIA_NS: "media.wsdl", EVENTS_NS: "events.wsdl"}

# Each fault: the device health condition it reports.
CONDITION = {
    "connect_failed": m.DeviceCondition.UNREACHABLE,
    "stream_closed": m.DeviceCondition.UNREACHABLE,
    "timeout": m.DeviceCondition.SLOW,
    "slow": m.DeviceCondition.SLOW,
    "auth_failed": m.DeviceCondition.AUTH_FAILED,
    "malformed_xml": m.DeviceCondition.BAD_INPUT,
    "soap_fault": m.DeviceCondition.BAD_INPUT,
    "unknown_event": m.DeviceCondition.BAD_INPUT,
    "clock_skew": m.DeviceCondition.CLOCK_SKEW,
}


class OnvifError(Exception):
    """A request that did not give a usable answer: `fault` names the kind (see CONDITION)."""

    def __init__(
        self, fault: str, detail: str, *, subcodes: tuple[str, ...] = (), limits: Limits = None
    ) -> None:
        super().__init__(detail)
        self.fault = fault
        self.subcodes = subcodes
        self.limits = limits


# A PullMessagesFaultResponse's limits: (MaxTimeout in seconds, MaxMessageLimit).
Limits = tuple[float, int] | None
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def wsdl_dir() -> Path:
    """Where onvif-zeep-async keeps the ONVIF WSDLs (found without importing the package)."""
    spec = importlib.util.find_spec("onvif")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the ONVIF WSDLs are missing: install the onvif-zeep-async package (pyproject.toml)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "wsdl"


_DOCUMENTS: dict[str, Document] = {}
_DOCUMENTS_LOCK = threading.Lock()


def _document(namespace: str, transport: Transport, settings: Settings) -> Document:
    """The parsed WSDL of a service, parsed once per process (parsing takes a while)."""
    with _DOCUMENTS_LOCK:
        if namespace not in _DOCUMENTS:
            path = wsdl_dir() / _WSDL_FILES[namespace]
            _DOCUMENTS[namespace] = Document(str(path), transport, settings=settings)  # type: ignore[arg-type]
        return _DOCUMENTS[namespace]


class _DatedToken(UsernameToken):
    """A UsernameToken (PasswordDigest) created at the device's time, in UTC with a Z."""

    def __init__(self, username: str, password: str, session: Soap) -> None:
        super().__init__(username, password, use_digest=True, zulu_timestamp=True)
        self._session = session

    def apply(self, envelope: Any, headers: Any) -> Any:
        now = datetime.now(UTC) + timedelta(seconds=self._session.offset_s)
        self.created = now.replace(tzinfo=None, microsecond=0)
        try:
            return super().apply(envelope, headers)
        finally:
            self.created = None


class _Received(Plugin):
    """Keeps the last answer's envelope (lxml), for what zeep's objects do not keep: the
    namespace prefixes of event topics."""

    def __init__(self) -> None:
        self.envelope: Any = None

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> Any:
        self.envelope = envelope
        return envelope, http_headers


class Soap:
    """The SOAP side of one camera: its services by namespace, requests with error mapping."""

    def __init__(
        self, base: str, username: str, password: str, *, timeout_s: float, slow_s: float
    ) -> None:
        self.base = base.rstrip("/")
        self.device_url = f"{self.base}/onvif/device_service"
        self.timeout_s = timeout_s
        self.slow_s = slow_s
        self.offset_s = 0.0
        self.slow: str | None = None  # the last request that answered slowly, until read
        self.received = _Received()
        session = requests.Session()
        session.trust_env = False  # never a proxy from the environment for a LAN camera
        # Cameras that want HTTP digest besides (or instead of) WS-Security answer 401 with a
        # challenge, which requests answers once; the others never ask.
        session.auth = HTTPDigestAuth(username, password)
        self._transport = Transport(session=session, timeout=30, operation_timeout=timeout_s)
        self._settings = Settings(strict=False, xml_huge_tree=False, forbid_dtd=True,
                                  forbid_entities=True, forbid_external=True)  # fmt: skip
        self._token = _DatedToken(username, password, self)
        self._username = username

    def close(self) -> None:
        self._transport.session.close()

    def service(self, namespace: str, binding: str, address: str, *, wsa: bool = False) -> Any:
        """A zeep proxy for `binding` of the service in `namespace`, at `address`."""
        plugins: list[Plugin] = [self.received]
        if wsa:  # the subscription's own address goes in wsa:To, as its manager expects
            plugins.insert(0, WsAddressingPlugin())
        doc = _document(namespace, self._transport, self._settings)
        client = Client(doc, wsse=self._token, transport=self._transport,
                        settings=self._settings, plugins=plugins)  # fmt: skip
        proxy: ServiceProxy = client.create_service(f"{{{namespace}}}{binding}", address)
        return proxy

    def call(self, proxy: Any, operation: str, *, wait_s: float = 0.0, **params: Any) -> Any:
        """Run `operation` on `proxy`; its answer, or OnvifError. `wait_s`: how long the device
        may hold the request on purpose (a PullMessages timeout), beyond which it is slow."""
        started = time.monotonic()
        address = getattr(proxy, "_binding_options", {}).get("address", self.base)
        where = f"ONVIF {operation} at {_origin(address)}"
        try:
            with self._transport.settings(timeout=self.timeout_s + wait_s):
                answer = getattr(proxy, operation)(**params)
        except Fault as fault:
            raise _fault_error(fault, where, self._username) from None
        except TransportError as exc:
            if exc.status_code in (401, 403):
                raise OnvifError("auth_failed", f"{where}: the device refused user "
                                 f"{self._username!r} (HTTP {exc.status_code}): check the "
                                 "account's password on the camera and in the site file"
                                 ) from None  # fmt: skip
            if exc.content is not None and exc.status_code == 200:
                raise OnvifError("malformed_xml", f"{where}: the answer is not XML") from None
            raise OnvifError("soap_fault", f"{where}: HTTP {exc.status_code} without a SOAP "
                             "answer") from None  # fmt: skip
        except (XMLSyntaxError, XMLParseError, etree.XMLSyntaxError):
            raise OnvifError("malformed_xml", f"{where}: the answer is not a SOAP envelope"
                             ) from None  # fmt: skip
        except requests.Timeout:
            raise OnvifError("timeout", f"{where}: no answer within "
                             f"{self.timeout_s + wait_s:g} s") from None  # fmt: skip
        except requests.exceptions.SSLError:
            raise OnvifError("connect_failed", f"{where}: the TLS handshake failed: check the"
                             " camera's certificate, or use scheme http") from None  # fmt: skip
        except requests.ConnectionError as exc:
            if "Connection broken" in str(exc):  # urllib3's words for a body cut short
                raise OnvifError("stream_closed", f"{where}: the connection closed in the middle"
                                 " of the answer") from None  # fmt: skip
            raise OnvifError("connect_failed", f"{where}: cannot connect") from None
        except requests.RequestException:  # a broken chunked or short body, say
            raise OnvifError("stream_closed", f"{where}: the connection closed in the middle"
                             " of the answer") from None  # fmt: skip
        except (ZeepError, ValueError, TypeError) as exc:  # an answer zeep cannot read
            raise OnvifError("malformed_xml", f"{where}: an answer that does not fit the "
                             f"ONVIF schema ({type(exc).__name__})") from None  # fmt: skip
        took = time.monotonic() - started - wait_s
        if took > self.slow_s:
            self.slow = f"{where}: answered in {took + wait_s:.1f} s"
        return answer


def _fault_error(fault: Fault, where: str, username: str) -> OnvifError:
    subcodes = tuple(_local(q) for q in (fault.subcodes or []))
    if "NotAuthorized" in subcodes or "FailedAuthentication" in subcodes:
        return OnvifError("auth_failed", f"{where}: the device refused user {username!r} "
                          "(NotAuthorized): check the account's password on the camera and in"
                          " the site file", subcodes=subcodes)  # fmt: skip
    reason = (fault.message or "").strip()[:160]
    code = "/".join(subcodes) or _local(fault.code or "") or "fault"
    return OnvifError("soap_fault", f"{where}: SOAP fault {code}" + (f" ({reason})" if reason
                      else ""), subcodes=subcodes, limits=_pull_limits(fault.detail))  # fmt: skip


def _pull_limits(detail: Any) -> Limits:
    """The limits in a PullMessagesFaultResponse (the Event Handling spec's answer to a
    PullMessages asking for more than the device allows), if the fault's detail has one."""
    if detail is None:
        return None
    found = detail.find(f".//{{{EVENTS_NS}}}PullMessagesFaultResponse")
    if found is None:
        return None
    match = _DURATION.match((found.findtext(f"{{{EVENTS_NS}}}MaxTimeout") or "").strip())
    try:
        limit = int(found.findtext(f"{{{EVENTS_NS}}}MaxMessageLimit") or "")
    except ValueError:
        return None
    if not match or not any(match.groups()) or limit < 1:
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds, limit


def _local(qname: Any) -> str:
    """The local part of a QName given as lxml QName, '{ns}name' or 'prefix:name'."""
    text = getattr(qname, "localname", None) or str(qname)
    return text.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _origin(url: str) -> str:
    """scheme://host:port of a URL, with any user part dropped (never in logs)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}"
