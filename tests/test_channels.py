"""The channel adapters against real local servers that speak each provider's API."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from gridwatch.local.services import free_port
from notify.channels import aliyun, configured
from notify.channels.base import Channel, Failed, Message, Recipient, Retry, Sent
from notify.channels.dingtalk import DingtalkChannel, DingtalkSettings
from notify.channels.sms import SmsChannel, SmsSettings
from notify.channels.sms_http import SmsHttpChannel, SmsHttpSettings
from notify.channels.smtp import EmailChannel, EmailSettings
from notify.channels.voice import VoiceChannel, VoiceSettings
from notify.channels.wecom import WecomChannel, WecomSettings
from simulators.providers import (
    DINGTALK_PATH,
    GATEWAY_PATH,
    SMS_PATH,
    VOICE_PATH,
    WECOM_PATH,
    Forced,
    Provider,
    Providers,
    aliyun_signature,
)

TIMEOUT_S = 1.0  # the adapters' timeout; a hanging provider answers only after 30 s

WORKER = Recipient(
    person_id="w-0101",
    name="王芳",
    language="zh-CN",
    phone="+86 138 0013 8000",
    email="wangfang@example.org",
    wecom_id="wangfang",
    dingtalk_id="ding-wangfang",
)
DISPATCHER = Recipient(
    person_id="d-01", name="Li Lei", language="en", phone="13900139000", email="li@example.org"
)
NOBODY = Recipient(person_id="x-1", name="No Contact", language="en")
RED = Message(
    key="1001",
    kind="task.dispatched",
    severity="red",
    title="消防通道被占用: 幸福里 3 号楼",
    body="门禁强行打开\n请 5 分钟内接单",
    link="https://gw.example.org/t/abc123",
)


@pytest.fixture(scope="module")
def providers() -> Iterator[Providers]:
    with Providers() as running:
        yield running


@pytest.fixture
def sim(providers: Providers) -> Providers:
    providers.reset()
    return providers


def _wecom(sim: Providers, **changes: Any) -> WecomChannel:
    fields: dict[str, Any] = {
        "enabled": True,
        "webhook_url": sim.url + WECOM_PATH,
        "key": SecretStr(sim.accounts.wecom_key),
        "timeout_s": TIMEOUT_S,
    }
    return WecomChannel(WecomSettings(**(fields | changes)))


def _dingtalk(sim: Providers, **changes: Any) -> DingtalkChannel:
    fields: dict[str, Any] = {
        "enabled": True,
        "webhook_url": sim.url + DINGTALK_PATH,
        "access_token": SecretStr(sim.accounts.dingtalk_token),
        "secret": SecretStr(sim.accounts.dingtalk_secret),
        "timeout_s": TIMEOUT_S,
    }
    return DingtalkChannel(DingtalkSettings(**(fields | changes)))


def _aliyun_fields(sim: Providers, path: str) -> dict[str, Any]:
    return {
        "enabled": True,
        "endpoint": sim.url + path,
        "access_key_id": sim.accounts.aliyun_key_id,
        "access_key_secret": SecretStr(sim.accounts.aliyun_key_secret),
        "timeout_s": TIMEOUT_S,
    }


def _sms(sim: Providers, **changes: Any) -> SmsChannel:
    fields = _aliyun_fields(sim, SMS_PATH) | {
        "sign_name": sim.accounts.sms_sign_name,
        "template_code": "SMS_100001",
        "template_code_en": "SMS_100002",
    }
    return SmsChannel(SmsSettings(**(fields | changes)))


def _voice(sim: Providers, **changes: Any) -> VoiceChannel:
    fields = _aliyun_fields(sim, VOICE_PATH) | {
        "tts_code": "TTS_200001",
        "tts_code_en": "TTS_200002",
    }
    return VoiceChannel(VoiceSettings(**(fields | changes)))


def _gateway(sim: Providers, **changes: Any) -> SmsHttpChannel:
    fields: dict[str, Any] = {
        "enabled": True,
        "url": sim.url + GATEWAY_PATH,
        "token": SecretStr(sim.accounts.gateway_token),
        "timeout_s": TIMEOUT_S,
    }
    return SmsHttpChannel(SmsHttpSettings(**(fields | changes)))


# -- WeCom


def test_wecom_sends_markdown_that_mentions_the_person(sim: Providers) -> None:
    channel: Channel = _wecom(sim)
    assert channel.per_minute == 20
    assert channel.send(RED, WORKER) == Sent()
    (got,) = sim.received(Provider.WECOM)
    content = got.body["markdown"]["content"]
    assert got.body["msgtype"] == "markdown"
    assert content.splitlines() == [
        "<@wangfang>",
        '**<font color="warning">红色</font> 消防通道被占用: 幸福里 3 号楼**',
        "门禁强行打开",
        "请 5 分钟内接单",
        "[打开任务](https://gw.example.org/t/abc123)",
    ]


def test_wecom_mentions_by_mobile_in_a_text_message_without_a_user_id(sim: Providers) -> None:
    assert _wecom(sim).send(RED, DISPATCHER) == Sent()
    (got,) = sim.received(Provider.WECOM)
    assert got.body["msgtype"] == "text"
    assert got.body["text"]["mentioned_mobile_list"] == ["13900139000"]
    assert got.body["text"]["content"].startswith("[RED] 消防通道被占用")  # his language: en
    assert "Open the task: https://gw.example.org/t/abc123" in got.body["text"]["content"]


def test_wecom_bad_key_is_final(sim: Providers) -> None:
    outcome = _wecom(sim, key=SecretStr("wrong")).send(RED, WORKER)
    assert isinstance(outcome, Failed) and "93000" in outcome.reason


def test_wecom_past_twenty_a_minute_is_the_robots_frequency_limit(sim: Providers) -> None:
    channel = _wecom(sim)
    outcomes = [channel.send(RED, WORKER) for _ in range(21)]
    assert outcomes[:20] == [Sent()] * 20
    last = outcomes[20]
    assert isinstance(last, Retry) and last.after_s == 60.0 and "45009" in last.reason
    assert len(sim.received(Provider.WECOM)) == 20


# -- DingTalk


def test_dingtalk_signs_and_ats_the_person(sim: Providers) -> None:
    channel: Channel = _dingtalk(sim, keyword="告警")
    assert channel.per_minute == 20
    assert channel.send(RED, WORKER) == Sent()
    (got,) = sim.received(Provider.DINGTALK)
    assert set(got.query) == {"access_token", "timestamp", "sign"}
    assert got.body["at"] == {
        "isAtAll": False,
        "atUserIds": ["ding-wangfang"],
        "atMobiles": ["13800138000"],
    }
    text = got.body["markdown"]["text"]
    assert got.body["markdown"]["title"] == RED.title
    assert text.startswith("### 红色 消防通道被占用")
    assert text.endswith("告警\n\n@ding-wangfang")


def test_dingtalk_wrong_secret_is_refused_as_sign_not_match(sim: Providers) -> None:
    outcome = _dingtalk(sim, secret=SecretStr("SECwrong")).send(RED, WORKER)
    assert isinstance(outcome, Failed) and "310000" in outcome.reason
    assert sim.received() == []


def test_dingtalk_too_fast_is_retried_after_a_minute(sim: Providers) -> None:
    sim.force(Provider.DINGTALK, Forced.RATE_LIMITED)
    outcome = _dingtalk(sim).send(RED, WORKER)
    assert isinstance(outcome, Retry) and outcome.after_s == 60.0 and "130101" in outcome.reason


def test_dingtalk_past_twenty_a_minute_is_refused_by_the_robot(sim: Providers) -> None:
    channel = _dingtalk(sim)
    outcomes = [channel.send(RED, WORKER) for _ in range(21)]
    assert outcomes[:20] == [Sent()] * 20
    assert isinstance(outcomes[20], Retry) and "130101" in outcomes[20].reason


# -- passing trouble, the same for every HTTP channel

HTTP_CHANNELS = {
    "wecom": (_wecom, Provider.WECOM),
    "dingtalk": (_dingtalk, Provider.DINGTALK),
    "sms": (_sms, Provider.SMS),
    "voice": (_voice, Provider.VOICE),
    "sms_http": (_gateway, Provider.GATEWAY),
}


@pytest.mark.parametrize("name", HTTP_CHANNELS)
def test_a_429_is_retried_after_its_retry_after(sim: Providers, name: str) -> None:
    build, provider = HTTP_CHANNELS[name]
    sim.force(provider, Forced.TOO_MANY)
    assert build(sim).send(RED, WORKER) == Retry(reason="429 too many requests", after_s=7.0)


@pytest.mark.parametrize("name", HTTP_CHANNELS)
def test_a_5xx_is_retried(sim: Providers, name: str) -> None:
    build, provider = HTTP_CHANNELS[name]
    sim.force(provider, Forced.UNAVAILABLE)
    outcome = build(sim).send(RED, WORKER)
    assert isinstance(outcome, Retry) and "503" in outcome.reason and outcome.after_s is None


@pytest.mark.parametrize("name", HTTP_CHANNELS)
def test_a_provider_that_never_answers_is_retried_after_the_timeout(
    sim: Providers, name: str
) -> None:
    build, provider = HTTP_CHANNELS[name]
    sim.force(provider, Forced.HANG)
    assert build(sim).send(RED, WORKER) == Retry(reason="provider timed out")
    # and the channel works again once the provider answers
    assert isinstance(build(sim).send(RED, DISPATCHER), Sent)


@pytest.mark.parametrize("name", HTTP_CHANNELS)
def test_an_unreachable_provider_is_retried(name: str) -> None:
    build, _ = HTTP_CHANNELS[name]
    gone = Providers()  # closed at once: its port refuses connections
    gone.stop()
    outcome = build(gone).send(RED, WORKER)
    assert isinstance(outcome, Retry) and "unreachable" in outcome.reason


@pytest.mark.parametrize("name", HTTP_CHANNELS)
def test_a_person_without_an_address_fails_without_a_request(sim: Providers, name: str) -> None:
    build, _ = HTTP_CHANNELS[name]
    channel: Channel = build(sim)
    assert channel.address(NOBODY) is None
    assert isinstance(channel.send(RED, NOBODY), Failed)
    assert sim.requests == 0


# -- Aliyun SMS

# The example in Aliyun's signature documentation (ECS DescribeRegions, key testid/testsecret).
ALIYUN_EXAMPLE = {
    "TimeStamp": "2016-02-23T12:46:24Z",
    "Format": "XML",
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "Version": "2014-05-26",
    "SignatureVersion": "1.0",
}


def test_aliyun_signature_matches_the_published_example() -> None:
    assert aliyun.signature("GET", ALIYUN_EXAMPLE, "testsecret") == "CT9X0VtwR86fNWSnsc6v8YGOjuE="
    assert aliyun_signature(ALIYUN_EXAMPLE, "testsecret") == "CT9X0VtwR86fNWSnsc6v8YGOjuE="
    assert aliyun.encode("a b*c~/é") == "a%20b%2Ac~%2F%C3%A9"


def test_sms_is_signed_and_templated_with_the_biz_id_back(sim: Providers) -> None:
    outcome = _sms(sim).send(RED, WORKER)
    assert (
        isinstance(outcome, Sent) and outcome.provider_ref and outcome.provider_ref.endswith("^0")
    )
    (got,) = sim.received(Provider.SMS)
    assert got.query["Action"] == "SendSms" and got.query["PhoneNumbers"] == "13800138000"
    assert got.query["OutId"] == "1001" and got.query["TemplateCode"] == "SMS_100001"
    assert json.loads(got.query["TemplateParam"]) == {
        "severity": "红色",
        "title": RED.title,
        "link": "https://gw.example.org/t/abc123",
    }


def test_sms_in_english_uses_the_english_template_and_clips_long_values(sim: Providers) -> None:
    long = RED.model_copy(update={"title": "Fire exit blocked at Happiness Lane building 3"})
    assert isinstance(_sms(sim).send(long, DISPATCHER), Sent)
    (got,) = sim.received(Provider.SMS)
    assert got.query["TemplateCode"] == "SMS_100002"
    params = json.loads(got.query["TemplateParam"])
    assert params["severity"] == "RED" and len(params["title"]) == 35


def test_sms_wrong_secret_is_refused_as_a_bad_signature(sim: Providers) -> None:
    outcome = _sms(sim, access_key_secret=SecretStr("wrong")).send(RED, WORKER)
    assert isinstance(outcome, Failed) and "SignatureDoesNotMatch" in outcome.reason


def test_sms_to_an_illegal_number_is_final(sim: Providers) -> None:
    bad = WORKER.model_copy(update={"phone": "12345"})
    outcome = _sms(sim).send(RED, bad)
    assert isinstance(outcome, Failed) and "isv.MOBILE_NUMBER_ILLEGAL" in outcome.reason


def test_sms_flow_control_on_one_number_is_retried_after_a_minute(sim: Providers) -> None:
    channel = _sms(sim)
    assert isinstance(channel.send(RED, WORKER), Sent)
    outcome = channel.send(RED, WORKER)
    assert isinstance(outcome, Retry) and outcome.after_s == 60.0
    assert "isv.BUSINESS_LIMIT_CONTROL" in outcome.reason


def test_sms_unknown_template_is_final(sim: Providers) -> None:
    outcome = _sms(sim, template_code="SMS_999").send(RED, WORKER)
    assert isinstance(outcome, Failed) and "isv.SMS_TEMPLATE_ILLEGAL" in outcome.reason


# -- the generic SMS gateway


def test_gateway_fills_its_template_with_escaped_values(sim: Providers) -> None:
    quoted = RED.model_copy(update={"body": 'He said "open the door"\\now'})
    outcome = _gateway(sim).send(quoted, WORKER)
    assert isinstance(outcome, Sent) and outcome.provider_ref
    (got,) = sim.received(Provider.GATEWAY)
    assert got.headers["authorization"] == f"Bearer {sim.accounts.gateway_token}"
    assert got.body["to"] == "13800138000" and got.body["id"] == "1001"
    assert 'He said "open the door"\\now' in got.body["text"]


def test_gateway_bad_token_is_final_and_its_rate_limit_honoured(sim: Providers) -> None:
    outcome = _gateway(sim, token=SecretStr("wrong")).send(RED, WORKER)
    assert outcome == Failed(reason="gateway answered 401")
    sim.force(Provider.GATEWAY, Forced.RATE_LIMITED)
    assert _gateway(sim).send(RED, WORKER) == Retry(reason="429 too many requests", after_s=30.0)


# -- Aliyun voice


def test_voice_places_a_tts_call_with_the_call_id_back(sim: Providers) -> None:
    outcome = _voice(sim, called_show_number="057100000000").send(RED, DISPATCHER)
    assert isinstance(outcome, Sent) and outcome.provider_ref
    (got,) = sim.received(Provider.VOICE)
    assert got.query["Action"] == "SingleCallByTts"
    assert got.query["CalledNumber"] == "13900139000" and got.query["TtsCode"] == "TTS_200002"
    assert got.query["CalledShowNumber"] == "057100000000" and got.query["PlayTimes"] == "2"
    assert json.loads(got.query["TtsParam"])["severity"] == "RED"


def test_voice_second_call_in_a_minute_is_flow_controlled(sim: Providers) -> None:
    channel = _voice(sim)
    assert isinstance(channel.send(RED, WORKER), Sent)
    outcome = channel.send(RED, WORKER)
    assert isinstance(outcome, Retry) and outcome.after_s == 60.0


# -- secrets


def test_secrets_never_reach_the_logs(sim: Providers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wecom, dingtalk, sms, gateway = _wecom(sim), _dingtalk(sim), _sms(sim), _gateway(sim)
    for channel in (wecom, dingtalk, sms, gateway):
        channel.send(RED, WORKER)
        channel.send(RED, NOBODY)
    sim.force(Provider.WECOM, Forced.UNAVAILABLE)
    wecom.send(RED, WORKER)
    settings = (wecom.settings, dingtalk.settings, sms.settings, gateway.settings)
    text = caplog.text + "".join(repr(s) + str(s.model_dump()) for s in settings)
    accounts = sim.accounts
    for secret in (
        accounts.wecom_key,
        accounts.dingtalk_token,
        accounts.dingtalk_secret,
        accounts.aliyun_key_secret,
        accounts.gateway_token,
    ):
        assert secret not in text
    assert "sent message 1001 to w-0101" in caplog.text


# -- configuration


def test_production_refuses_an_enabled_channel_without_its_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRIDWATCH_NOTIFY_DINGTALK_ENABLED", "true")
    monkeypatch.setenv("GRIDWATCH_NOTIFY_DINGTALK_ACCESS_TOKEN", "token")
    with pytest.raises(ValueError, match="GRIDWATCH_NOTIFY_DINGTALK_SECRET is not set"):
        configured(production=True)
    assert configured(production=False) == {}  # development: skipped with a warning
    monkeypatch.setenv("GRIDWATCH_ENVIRONMENT", "production")
    with pytest.raises(ValueError, match="GRIDWATCH_NOTIFY_DINGTALK_SECRET"):
        configured()


def test_production_refuses_a_provider_url_in_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWATCH_NOTIFY_WECOM_ENABLED", "true")
    monkeypatch.setenv("GRIDWATCH_NOTIFY_WECOM_KEY", "k")
    monkeypatch.setenv("GRIDWATCH_NOTIFY_WECOM_WEBHOOK_URL", "http://robot.example/send")
    with pytest.raises(ValueError, match="GRIDWATCH_NOTIFY_WECOM_WEBHOOK_URL must be an https"):
        configured(production=True)


def test_configured_builds_the_enabled_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    assert configured(production=True) == {}  # nothing is enabled by default
    env = {
        "GRIDWATCH_NOTIFY_WECOM_ENABLED": "true",
        "GRIDWATCH_NOTIFY_WECOM_KEY": "k",
        "GRIDWATCH_NOTIFY_SMS_HTTP_ENABLED": "1",
        "GRIDWATCH_NOTIFY_SMS_HTTP_URL": "https://sms.example/send",
        "GRIDWATCH_NOTIFY_SMS_HTTP_TOKEN": "t",
        "GRIDWATCH_NOTIFY_SMS_HTTP_PER_MINUTE": "100",
        "GRIDWATCH_NOTIFY_EMAIL_ENABLED": "true",
        "GRIDWATCH_NOTIFY_EMAIL_HOST": "smtp.example.org",
        "GRIDWATCH_NOTIFY_EMAIL_SENDER": "gridwatch@example.org",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    channels = configured(production=True)
    assert sorted(channels) == ["email", "sms", "wecom"]
    assert isinstance(channels["sms"], SmsHttpChannel) and channels["sms"].per_minute == 100
    monkeypatch.setenv("GRIDWATCH_NOTIFY_SMS_ENABLED", "true")
    with pytest.raises(ValueError, match="choose one SMS provider"):
        configured(production=True)


# -- e-mail over a real SMTP server (aiosmtpd) with STARTTLS


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridwatch test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what it accepts, refuses some domains like a real relay."""

    messages: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.endswith("@busy.example"):
            return "451 4.3.0 mailbox busy, try again later"
        if address.endswith("@nowhere.example"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.original_content)))
        return "250 OK queued"


USER, PASSWORD = "gridwatch", "relay-password-1"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(
        USER.encode(), PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


@dataclass
class Relay:
    port: int
    mailbox: Mailbox


@pytest.fixture(scope="module")
def relay(certificates: Certificates) -> Iterator[Relay]:
    """A real SMTP server that requires STARTTLS and a login."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)
    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_authenticate,
    )
    controller.start()
    yield Relay(port, mailbox)
    controller.stop()


def _email(port: int, ca: Path | None, **changes: Any) -> EmailChannel:
    fields: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "username": USER,
        "password": SecretStr(PASSWORD),
        "sender": "gridwatch@example.org",
        "ca_file": ca,
        "timeout_s": TIMEOUT_S,
    }
    return EmailChannel(EmailSettings(**(fields | changes)))


def test_email_goes_over_starttls_as_a_multipart_message_in_the_persons_language(
    relay: Relay, certificates: Certificates
) -> None:
    relay.mailbox.messages.clear()
    outcome = _email(relay.port, certificates.ca).send(RED, WORKER)
    assert outcome == Sent(provider_ref="<1001.task.dispatched@example.org>")
    ((to, raw),) = relay.mailbox.messages
    assert to == ["wangfang@example.org"]
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Subject"] == "[红色] 消防通道被占用: 幸福里 3 号楼"
    assert mail["Content-Language"] == "zh-CN"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert "打开任务: https://gw.example.org/t/abc123" in text.get_content()
    assert 'href="https://gw.example.org/t/abc123"' in html.get_content()


@pytest.mark.parametrize(
    ("address", "expected"), [("a@busy.example", Retry), ("a@nowhere.example", Failed)]
)
def test_email_4xx_is_retried_and_5xx_is_final(
    relay: Relay, certificates: Certificates, address: str, expected: type
) -> None:
    outcome = _email(relay.port, certificates.ca).send(
        RED, DISPATCHER.model_copy(update={"email": address})
    )
    assert isinstance(outcome, expected)


def test_email_wrong_password_is_final(relay: Relay, certificates: Certificates) -> None:
    outcome = _email(relay.port, certificates.ca, password=SecretStr("wrong")).send(RED, WORKER)
    assert isinstance(outcome, Failed) and "535" in outcome.reason


def test_email_refuses_a_relay_whose_certificate_it_does_not_trust(relay: Relay) -> None:
    outcome = _email(relay.port, None).send(RED, WORKER)
    assert isinstance(outcome, Failed) and "not trusted" in outcome.reason


def test_email_is_never_sent_in_clear(certificates: Certificates) -> None:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)  # no STARTTLS offered
    controller.start()
    try:
        outcome = _email(port, certificates.ca, username=None, password=None).send(RED, WORKER)
    finally:
        controller.stop()
    assert isinstance(outcome, Failed) and "STARTTLS" in outcome.reason
    assert mailbox.messages == []


def test_email_to_a_relay_that_never_greets_is_retried(certificates: Certificates) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted: list[socket.socket] = []
        done = threading.Event()

        def accept() -> None:
            conn, _ = listener.accept()
            accepted.append(conn)
            done.wait(30)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        outcome = _email(listener.getsockname()[1], certificates.ca).send(RED, WORKER)
        done.set()
        thread.join(10)
        for conn in accepted:
            conn.close()
    assert isinstance(outcome, Retry)
