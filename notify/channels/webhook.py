"""A generic outgoing webhook for integrations: each message is POSTed as JSON, signed with
HMAC-SHA256 over "TIMESTAMP.BODY" (as Stripe-style receivers verify):

    X-Gridwatch-Timestamp: 1764595200
    X-Gridwatch-Signature: sha256=<hex of HMAC-SHA256(secret, "1764595200." + body)>
    X-Gridwatch-Delivery:  <the delivery id: the same on every retry, for deduplication>

2xx is sent; 408, 425, 429 (waiting Retry-After) and 5xx, timeouts and connection errors are
retried; any other answer is a permanent failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from notify.channels.base import Failed, Message, Outcome, Recipient, Retry, Sent

log = logging.getLogger(__name__)
TIMESTAMP_HEADER = "X-Gridwatch-Timestamp"
SIGNATURE_HEADER = "X-Gridwatch-Signature"
DELIVERY_HEADER = "X-Gridwatch-Delivery"
_RETRIED = frozenset({408, 425, 429})


class WebhookSettings(BaseSettings):
    """GRIDWATCH_NOTIFY_WEBHOOK_*: where to POST and the shared secret that signs."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_NOTIFY_WEBHOOK_", extra="ignore", frozen=True,
        hide_input_in_errors=True,
    )  # fmt: skip

    enabled: bool = Field(default=False, description="send every notification to the webhook")
    url: str = Field(default="", description="the receiver's URL (https in production)")
    secret: SecretStr | None = Field(
        default=None, description="the shared secret the signature is made with"
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="seconds before a try times out")
    per_minute: int | None = Field(
        default=None, ge=1, description="the receiver's limit of requests a minute, if any"
    )

    def check_production(self) -> None:
        """Refuse an enabled webhook without a URL or a secret."""
        if not self.enabled:
            return
        if not self.url:
            raise ValueError("GRIDWATCH_NOTIFY_WEBHOOK_URL is not set but the webhook is enabled")
        if self.secret is None or not self.secret.get_secret_value():
            raise ValueError(
                "GRIDWATCH_NOTIFY_WEBHOOK_SECRET is not set but the webhook is enabled: set the"
                " secret the receiver verifies with, or GRIDWATCH_NOTIFY_WEBHOOK_ENABLED=false"
            )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for this timestamp and body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300.0
) -> bool:
    """What a receiver checks: a genuine signature over a timestamp no older than tolerance."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (at - datetime.now(UTC)).total_seconds())


class WebhookChannel:
    name = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.per_minute = settings.per_minute
        self._secret = settings.secret.get_secret_value() if settings.secret else ""
        self._client = httpx.Client(timeout=settings.timeout_s)

    def address(self, recipient: Recipient) -> str | None:
        return self.settings.url or None  # the integration hears about everyone

    def send(self, message: Message, recipient: Recipient) -> Outcome:
        body = json.dumps(
            {
                "key": message.key, "kind": message.kind, "severity": message.severity,
                "title": message.title, "body": message.body, "link": message.link,
                "recipient": {"person_id": recipient.person_id, "name": recipient.name,
                              "language": recipient.language},
            },
            ensure_ascii=False, separators=(",", ":"),
        ).encode()  # fmt: skip
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            DELIVERY_HEADER: message.key,
        }
        try:
            answer = self._client.post(self.settings.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Retry(reason=f"the webhook did not answer within {self.settings.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Retry(reason=f"the webhook could not be reached: {type(exc).__name__}")
        code = answer.status_code
        if 200 <= code < 300:
            return Sent(provider_ref=answer.headers.get("X-Request-Id"))
        if code in _RETRIED or code >= 500:
            return Retry(
                reason=f"the webhook answered {code}",
                after_s=retry_after(answer.headers.get("Retry-After")),
            )
        return Failed(reason=f"the webhook refused the message ({code})")
