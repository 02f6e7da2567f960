"""Aliyun's RPC-style API (Dysmsapi, Dyvmsapi): signature version 1.0 with HMAC-SHA1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from abc import abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from notify.channels._adapter import (
    Adapter,
    ChannelSettings,
    http_client,
    json_object,
    passing_trouble,
    secret_missing,
)
from notify.channels._format import phone_digits
from notify.channels.base import Failed, Message, Outcome, Recipient, Retry, Sent

API_VERSION = "2017-05-25"  # both Dysmsapi and Dyvmsapi
OK = "OK"
# Codes that pass: the per-number flow control (1 a minute, 5 an hour, 10 a day for SMS; 1 a
# minute for calls), throttling, and the provider's own trouble. Everything else is permanent.
FLOW_CONTROL = {"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL"}
PASSING_PREFIXES = ("Throttling", "isp.", "ServiceUnavailable", "InternalError")


def encode(value: str) -> str:
    """Aliyun's percent-encoding: RFC 3986, UTF-8, only A-Z a-z 0-9 - _ . ~ left as they are."""
    return quote(value, safe="~")


def canonical_query(params: dict[str, str]) -> str:
    """The parameters sorted by name, each name and value percent-encoded, joined with &."""
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(params.items()))


def signature(method: str, params: dict[str, str], access_key_secret: str) -> str:
    """Base64(HMAC-SHA1(secret + "&", METHOD & encode("/") & encode(canonical query)))."""
    string_to_sign = f"{method}&{encode('/')}&{encode(canonical_query(params))}"
    digest = hmac.new(
        f"{access_key_secret}&".encode(), string_to_sign.encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def signed_query(
    action: str, params: dict[str, str], access_key_id: str, access_key_secret: str, region: str
) -> str:
    """The whole query string of a signed GET request for one action."""
    full = {
        "AccessKeyId": access_key_id,
        "Action": action,
        "Format": "JSON",
        "RegionId": region,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": uuid.uuid4().hex,
        "SignatureVersion": "1.0",
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": API_VERSION,
        **params,
    }
    sig = signature("GET", full, access_key_secret)
    return f"{canonical_query(full)}&Signature={encode(sig)}"


class AliyunSettings(ChannelSettings):
    """The account fields the SMS and voice channels share."""

    access_key_id: str | None = Field(
        default=None, description="the RAM user's AccessKey ID (required when enabled)"
    )
    access_key_secret: SecretStr | None = Field(
        default=None, description="the RAM user's AccessKey secret (required when enabled)"
    )
    region: str = Field(default="cn-hangzhou", description="the API's RegionId")
    ca_file: Path | None = Field(
        default=None, description="a CA file to trust instead of the system's; unset: system CAs"
    )

    def missing_secrets(self) -> list[str]:
        missing = [] if self.access_key_id else ["access_key_id"]
        return missing + (["access_key_secret"] if secret_missing(self.access_key_secret) else [])

    def https_fields(self) -> list[str]:
        return ["endpoint"]


def call(
    client: httpx.Client, endpoint: str, action: str, params: dict[str, str], s: AliyunSettings
) -> httpx.Response:
    """One signed GET of an action; the response as it came."""
    assert s.access_key_id is not None and s.access_key_secret is not None
    query = signed_query(
        action, params, s.access_key_id, s.access_key_secret.get_secret_value(), s.region
    )
    return client.get(f"{endpoint.rstrip('/')}/?{query}")


def outcome(response: httpx.Response, ref_field: str) -> Outcome:
    """Sent with the provider's id for Code OK; Retry for flow control and trouble; else Failed."""
    data = json_object(response)
    code = str(data.get("Code", "")) if data else ""
    text = str(data.get("Message", ""))[:200] if data else ""
    if code == OK:
        ref = data.get(ref_field) if data else None
        return Sent(provider_ref=str(ref) if ref else None)
    if code in FLOW_CONTROL:
        return Retry(reason=f"provider flow control ({code} {text})", after_s=60.0)
    if code.startswith(PASSING_PREFIXES):
        return Retry(reason=f"provider busy ({code} {text})")
    trouble = passing_trouble(response)
    if trouble:
        return trouble
    if not code:
        return Failed(reason=f"provider answered {response.status_code} without a Code")
    return Failed(reason=f"provider refused ({code} {text})")


class AliyunChannel(Adapter):
    """A channel of Aliyun's RPC API: one signed call per message to one mobile number; the
    message key goes as OutId, and the provider's id for it (`ref_field`) comes back."""

    action: str
    ref_field: str
    per_minute = None  # the provider limits per number (1 a minute), answered as flow control

    def __init__(self, settings: AliyunSettings, endpoint: str) -> None:
        settings.require_secrets()
        self._account = settings
        self._endpoint = endpoint
        self._client = http_client(settings.timeout_s, settings.ca_file)

    def address(self, recipient: Recipient) -> str | None:
        return phone_digits(recipient.phone)

    @abstractmethod
    def params(self, message: Message, recipient: Recipient, address: str) -> dict[str, str]:
        """The action's own parameters."""

    def _send(self, message: Message, recipient: Recipient, address: str) -> Outcome:
        response = call(self._client, self._endpoint, self.action,
                        self.params(message, recipient, address), self._account)  # fmt: skip
        return outcome(response, self.ref_field)

    def close(self) -> None:
        self._client.close()
