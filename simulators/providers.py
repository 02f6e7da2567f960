"""Messaging providers on loopback: WeCom and DingTalk robots, Aliyun SMS and voice, a generic
SMS gateway. Each checks what the real one checks (key, signature, body shape, its own limits)
and answers with the provider's success and error codes; tests can force a rate limit, a 429,
a 5xx or a request that never gets an answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

WECOM_PATH = "/cgi-bin/webhook/send"
DINGTALK_PATH = "/robot/send"
SMS_PATH = "/sms/"
VOICE_PATH = "/voice/"
GATEWAY_PATH = "/gateway/send"
ROBOT_PER_MINUTE = 20
ALIYUN_VERSION = "2017-05-25"
ALIYUN_COMMON = (
    "AccessKeyId", "Action", "Format", "RegionId", "SignatureMethod", "SignatureNonce",
    "SignatureVersion", "Timestamp", "Version", "Signature",
)  # fmt: skip


class Provider(StrEnum):
    WECOM = "wecom"
    DINGTALK = "dingtalk"
    SMS = "sms"
    VOICE = "voice"
    GATEWAY = "gateway"


class Forced(StrEnum):
    """An answer a test forces on a provider's next requests."""

    RATE_LIMITED = "rate_limited"  # the provider's own rate-limit code
    TOO_MANY = "too_many"  # HTTP 429 with Retry-After
    UNAVAILABLE = "unavailable"  # HTTP 503
    HANG = "hang"  # no answer until the server stops (or `hang_s`)


@dataclass(frozen=True)
class Received:
    """A request a provider accepted (answered with success)."""

    provider: Provider
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # the JSON body, or the form for Aliyun's GET


@dataclass
class Accounts:
    """The credentials the providers accept."""

    wecom_key: str = "wecom-robot-key"
    dingtalk_token: str = "dingtalk-access-token"
    dingtalk_secret: str = "SECdingtalk-signing-secret"
    aliyun_key_id: str = "LTAI-test-key-id"
    aliyun_key_secret: str = "aliyun-test-key-secret"
    sms_sign_name: str = "网格守望"
    sms_templates: frozenset[str] = frozenset({"SMS_100001", "SMS_100002"})
    tts_templates: frozenset[str] = frozenset({"TTS_200001", "TTS_200002"})
    gateway_token: str = "gateway-bearer-token"


@dataclass
class _State:
    accounts: Accounts
    hang_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    forced: dict[Provider, deque[Forced]] = field(default_factory=lambda: defaultdict(deque))
    sent_at: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    nonces: set[str] = field(default_factory=set)
    stopping: threading.Event = field(default_factory=threading.Event)
    requests: int = 0


def aliyun_encode(value: str) -> str:
    """Percent-encoding as Aliyun's signature version 1.0 defines it."""
    return quote(value, safe="~")


def aliyun_signature(params: dict[str, str], secret: str) -> str:
    """What Aliyun computes from a GET request's parameters (Signature left out)."""
    canonical = "&".join(
        f"{aliyun_encode(k)}={aliyun_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )
    to_sign = "GET&%2F&" + aliyun_encode(canonical)
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `received`
        pass

    # -- plumbing

    def _answer(self, status: int, data: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _forced(self, provider: Provider) -> Forced | None:
        state = self.server.state
        with state.lock:
            state.requests += 1
            queue = state.forced[provider]
            return queue.popleft() if queue else None

    def _within_limit(self, sender: str, per_minute: int, window_s: float = 60.0) -> bool:
        state, now = self.server.state, time.monotonic()
        with state.lock:
            times = state.sent_at[sender]
            while times and now - times[0] >= window_s:
                times.popleft()
            if len(times) >= per_minute:
                return False
            times.append(now)
            return True

    def _accept(self, provider: Provider, query: dict[str, str], body: Any) -> None:
        state = self.server.state
        with state.lock:
            state.received.append(
                Received(provider, query, {k.lower(): v for k, v in self.headers.items()}, body)
            )

    def _json_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _generic_forced(self, forced: Forced | None) -> bool:
        """Answer a forced 429/503/hang; True when answered (or left hanging)."""
        if forced is Forced.TOO_MANY:
            self._answer(429, {"message": "too many requests"}, {"Retry-After": "7"})
        elif forced is Forced.UNAVAILABLE:
            self._answer(503, {"message": "service unavailable"})
        elif forced is Forced.HANG:
            self.server.state.stopping.wait(self.server.state.hang_s)
            self.close_connection = True
        else:
            return False
        return True

    # -- routing

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path == WECOM_PATH:
            self._wecom(query)
        elif url.path == DINGTALK_PATH:
            self._dingtalk(query)
        elif url.path == GATEWAY_PATH:
            self._gateway(query)
        else:
            self._answer(404, {"message": "no such path"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path == SMS_PATH:
            self._aliyun(Provider.SMS, query)
        elif url.path == VOICE_PATH:
            self._aliyun(Provider.VOICE, query)
        else:
            self._answer(404, {"message": "no such path"})

    # -- WeCom group robot

    def _wecom(self, query: dict[str, str]) -> None:
        body = self._json_body()
        forced = self._forced(Provider.WECOM)
        if self._generic_forced(forced):
            return
        accounts = self.server.state.accounts
        if not hmac.compare_digest(query.get("key", ""), accounts.wecom_key):
            self._answer(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
            return
        problem = _wecom_problem(body)
        if problem:
            self._answer(200, {"errcode": problem[0], "errmsg": problem[1]})
            return
        if forced is Forced.RATE_LIMITED or not self._within_limit("wecom", ROBOT_PER_MINUTE):
            self._answer(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
            return
        self._accept(Provider.WECOM, query, body)
        self._answer(200, {"errcode": 0, "errmsg": "ok"})

    # -- DingTalk custom robot

    def _dingtalk(self, query: dict[str, str]) -> None:
        body = self._json_body()
        forced = self._forced(Provider.DINGTALK)
        if self._generic_forced(forced):
            return
        accounts = self.server.state.accounts
        if not hmac.compare_digest(query.get("access_token", ""), accounts.dingtalk_token):
            self._answer(200, {"errcode": 300001, "errmsg": "token is not exist"})
            return
        timestamp = query.get("timestamp", "")
        if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3_600_000:
            self._answer(200, {"errcode": 310000, "errmsg": "sign not match, timestamp expired"})
            return
        secret = accounts.dingtalk_secret
        digest = hmac.new(
            secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(query.get("sign", ""), base64.b64encode(digest).decode()):
            self._answer(200, {"errcode": 310000, "errmsg": "sign not match"})
            return
        problem = _dingtalk_problem(body)
        if problem:
            self._answer(200, {"errcode": problem[0], "errmsg": problem[1]})
            return
        if forced is Forced.RATE_LIMITED or not self._within_limit("dingtalk", ROBOT_PER_MINUTE):
            self._answer(
                200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
            )
            return
        self._accept(Provider.DINGTALK, query, body)
        self._answer(200, {"errcode": 0, "errmsg": "ok"})

    # -- Aliyun SendSms and SingleCallByTts (RPC style, signature version 1.0)

    def _aliyun(self, provider: Provider, query: dict[str, str]) -> None:
        forced = self._forced(provider)
        if self._generic_forced(forced):
            return
        state, accounts = self.server.state, self.server.state.accounts
        request_id = str(uuid.uuid4()).upper()

        def error(status: int, code: str, message: str) -> None:
            self._answer(status, {"RequestId": request_id, "Code": code, "Message": message})

        missing = [name for name in ALIYUN_COMMON if not query.get(name)]
        if missing:
            error(400, f"MissingParameter.{missing[0]}", f"{missing[0]} is mandatory")
            return
        if query["AccessKeyId"] != accounts.aliyun_key_id:
            error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
            return
        if query["SignatureMethod"] != "HMAC-SHA1" or query["SignatureVersion"] != "1.0":
            error(400, "InvalidSignatureMethod", "Specified signature method is not supported.")
            return
        expected = aliyun_signature(query, accounts.aliyun_key_secret)
        if not hmac.compare_digest(query["Signature"], expected):
            error(400, "SignatureDoesNotMatch", "Specified signature is not matched.")
            return
        try:
            at = datetime.strptime(query["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            error(400, "InvalidTimeStamp.Format", "Specified time stamp is not valid.")
            return
        if abs((datetime.now(UTC) - at).total_seconds()) > 900:
            error(400, "InvalidTimeStamp.Expired", "Specified time stamp has expired.")
            return
        with state.lock:
            reused = query["SignatureNonce"] in state.nonces
            state.nonces.add(query["SignatureNonce"])
        if reused:
            error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            return
        if query["Version"] != ALIYUN_VERSION or query["Format"] != "JSON":
            error(400, "InvalidVersion", "Specified parameter Version is not valid.")
            return
        wanted = "SendSms" if provider is Provider.SMS else "SingleCallByTts"
        if query["Action"] != wanted:
            error(400, "InvalidAction.NotFound", "Specified api is not found.")
            return
        number = query.get("PhoneNumbers" if provider is Provider.SMS else "CalledNumber", "")
        problem = (
            _sms_problem(query, accounts)
            if provider is Provider.SMS
            else _tts_problem(query, accounts)
        )
        if problem:
            error(200, problem[0], problem[1])
            return
        if not (len(number) == 11 and number.startswith("1") and number.isdigit()):
            error(200, "isv.MOBILE_NUMBER_ILLEGAL", "invalid mobile number")
            return
        # Flow control: one message (or call) a minute to the same number.
        if forced is Forced.RATE_LIMITED or not self._within_limit(f"{provider}:{number}", 1):
            error(200, "isv.BUSINESS_LIMIT_CONTROL", "触发号码天级流控Permits:1")
            return
        self._accept(provider, query, query)
        ref = (
            {"BizId": f"{int(time.time() * 1000)}^0"}
            if provider is Provider.SMS
            else {"CallId": f"{int(time.time() * 1000)}^{uuid.uuid4().int % 10**9}"}
        )
        self._answer(200, {"RequestId": request_id, "Code": "OK", "Message": "OK", **ref})

    # -- a generic SMS gateway

    def _gateway(self, query: dict[str, str]) -> None:
        body = self._json_body()
        forced = self._forced(Provider.GATEWAY)
        if self._generic_forced(forced):
            return
        token = self.server.state.accounts.gateway_token
        if not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
            self._answer(401, {"message": "bad token"})
            return
        if forced is Forced.RATE_LIMITED:
            self._answer(429, {"message": "slow down"}, {"Retry-After": "30"})
            return
        if not (
            isinstance(body, dict)
            and isinstance(body.get("to"), str)
            and body["to"].isdigit()
            and isinstance(body.get("text"), str)
            and body["text"]
        ):
            self._answer(400, {"message": "to (digits) and text are required"})
            return
        self._accept(Provider.GATEWAY, query, body)
        self._answer(200, {"id": str(uuid.uuid4())}, {"X-Request-Id": str(uuid.uuid4())})


def _wecom_problem(body: Any) -> tuple[int, str] | None:
    if not isinstance(body, dict) or body.get("msgtype") not in ("markdown", "text"):
        return 40008, "invalid message type"
    kind = body["msgtype"]
    block = body.get(kind)
    if set(body) != {"msgtype", kind} or not isinstance(block, dict):
        return 40035, "invalid parameter"
    content = block.get("content")
    if not isinstance(content, str) or not content:
        return 44004, "empty content"
    limit = 4096 if kind == "markdown" else 2048
    if len(content.encode()) > limit:
        return 40058, f"content exceed max length {limit}"
    allowed = (
        {"content"}
        if kind == "markdown"
        else {"content", "mentioned_list", "mentioned_mobile_list"}
    )
    if not set(block) <= allowed:
        return 40035, "invalid parameter"
    for name in ("mentioned_list", "mentioned_mobile_list"):
        if name in block and not (
            isinstance(block[name], list) and all(isinstance(v, str) for v in block[name])
        ):
            return 40035, f"invalid {name}"
    return None


def _dingtalk_problem(body: Any) -> tuple[int, str] | None:
    if not isinstance(body, dict) or body.get("msgtype") != "markdown":
        return 40035, "缺少参数 json / msgtype"
    markdown = body.get("markdown")
    if not (
        isinstance(markdown, dict)
        and isinstance(markdown.get("title"), str)
        and isinstance(markdown.get("text"), str)
        and markdown["title"]
        and markdown["text"]
    ):
        return 40035, "markdown needs title and text"
    at = body.get("at", {})
    if not isinstance(at, dict) or not set(at) <= {"atMobiles", "atUserIds", "isAtAll"}:
        return 40035, "invalid at"
    for name in ("atMobiles", "atUserIds"):
        if name in at and not (
            isinstance(at[name], list) and all(isinstance(v, str) for v in at[name])
        ):
            return 40035, f"invalid {name}"
    return None


def _template_param_problem(raw: str) -> tuple[str, str] | None:
    try:
        params = json.loads(raw)
    except ValueError:
        return "isv.INVALID_JSON_PARAM", "JSON参数不合法"
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        return "isv.INVALID_JSON_PARAM", "JSON参数不合法: 只接受字符串值"
    if any(len(v) > 35 for v in params.values()):
        return "isv.PARAM_LENGTH_LIMIT", "参数超出长度限制"
    return None


def _sms_problem(query: dict[str, str], accounts: Accounts) -> tuple[str, str] | None:
    if query.get("SignName") != accounts.sms_sign_name:
        return "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名"
    if query.get("TemplateCode") not in accounts.sms_templates:
        return "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板"
    return _template_param_problem(query.get("TemplateParam", "{}"))


def _tts_problem(query: dict[str, str], accounts: Accounts) -> tuple[str, str] | None:
    if query.get("TtsCode") not in accounts.tts_templates:
        return "isv.TTS_TEMPLATE_ILLEGAL", "模板不存在"
    if not query.get("PlayTimes", "1").isdigit() or not 1 <= int(query.get("PlayTimes", "1")) <= 3:
        return "isv.INVALID_PARAMETERS", "PlayTimes 取值 1-3"
    return _template_param_problem(query.get("TtsParam", "{}"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class Providers:
    """All the providers on one loopback port, in a thread; a context manager."""

    def __init__(self, accounts: Accounts | None = None, hang_s: float = 30.0) -> None:
        self.accounts = accounts or Accounts()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(self.accounts, hang_s)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="providers", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Providers:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.state.stopping.set()  # releases hanging requests
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Providers:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def force(self, provider: Provider, answer: Forced, times: int = 1) -> None:
        """The provider's next `times` requests get `answer`."""
        with self._server.state.lock:
            self._server.state.forced[provider].extend([answer] * times)

    def received(self, provider: Provider | None = None) -> list[Received]:
        """The requests accepted so far (all providers, or one)."""
        with self._server.state.lock:
            return [r for r in self._server.state.received if provider in (None, r.provider)]

    @property
    def requests(self) -> int:
        """Every request that arrived, accepted or not."""
        with self._server.state.lock:
            return self._server.state.requests

    def reset(self) -> None:
        """Forget accepted requests, forced answers and rate-limit windows."""
        state = self._server.state
        with state.lock:
            state.received.clear()
            state.forced.clear()
            state.sent_at.clear()
            state.requests = 0
