"""DingTalk (钉钉) custom robot: signed markdown messages that @ the person in the group."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from notify.channels._adapter import (
    Adapter,
    ChannelSettings,
    http_client,
    robot_outcome,
    secret_missing,
)
from notify.channels._format import labels, phone_digits, severity_label, truncate_utf8
from notify.channels.base import Message, Outcome, Recipient

PER_MINUTE = 20  # a custom robot takes 20 messages a minute (the sender keeps below it)
MARKDOWN_MAX_BYTES = 5000
TOO_FAST = 130101  # send too fast, exceed 20 times per minute
SECURITY = 310000  # keyword missing, sign not match, or address not allowed


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


class DingtalkSettings(ChannelSettings):
    """A DingTalk custom robot with the signing ("加签") security setting."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_NOTIFY_DINGTALK_",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    webhook_url: str = Field(
        default="https://oapi.dingtalk.com/robot/send", description="the robot's send endpoint"
    )
    access_token: SecretStr | None = Field(
        default=None, description="the robot's access_token (secret; required when enabled)"
    )
    secret: SecretStr | None = Field(
        default=None, description="the robot's signing secret, SEC... (required when enabled)"
    )
    keyword: str | None = Field(
        default=None,
        description="a keyword added to every message when the robot requires one; unset: none",
    )

    def missing_secrets(self) -> list[str]:
        return [name for name in ("access_token", "secret") if secret_missing(getattr(self, name))]

    def https_fields(self) -> list[str]:
        return ["webhook_url"]


class DingtalkChannel(Adapter):
    """Posts to one DingTalk robot, @-ing the person by user id and phone."""

    name = "dingtalk"
    per_minute: int | None = PER_MINUTE

    def __init__(self, settings: DingtalkSettings) -> None:
        settings.require_secrets()
        assert settings.access_token is not None and settings.secret is not None
        self.settings = settings
        self._token = settings.access_token.get_secret_value()
        self._secret = settings.secret.get_secret_value()
        self._client = http_client(settings.timeout_s)

    def address(self, recipient: Recipient) -> str | None:
        if recipient.dingtalk_id:
            return recipient.dingtalk_id
        return phone_digits(recipient.phone)

    def body(self, message: Message, recipient: Recipient) -> dict[str, object]:
        """The robot's JSON: markdown whose text names the @-ed person, and the `at` block."""
        words = labels(recipient.language)
        phone = phone_digits(recipient.phone)
        # An @ shows only when the text carries "@<userid>" or "@<mobile>" as well.
        mention = f"@{recipient.dingtalk_id}" if recipient.dingtalk_id else f"@{phone}"
        severity = severity_label(message, recipient.language)
        heading = f"{severity} {message.title}" if severity else message.title
        lines = [f"### {heading}", message.body]
        if message.link:
            lines.append(f"[{words['open']}]({message.link})")
        if self.settings.keyword:
            lines.append(self.settings.keyword)
        lines.append(mention)
        at: dict[str, object] = {"isAtAll": False}
        if recipient.dingtalk_id:
            at["atUserIds"] = [recipient.dingtalk_id]
        if phone:
            at["atMobiles"] = [phone]
        return {
            "msgtype": "markdown",
            "markdown": {
                "title": message.title[:64],
                "text": truncate_utf8(
                    "\n\n".join(line for line in lines if line), MARKDOWN_MAX_BYTES
                ),
            },
            "at": at,
        }

    def _send(self, message: Message, recipient: Recipient, address: str) -> Outcome:
        timestamp = int(time.time() * 1000)
        response = self._client.post(
            self.settings.webhook_url,
            params={
                "access_token": self._token,
                "timestamp": str(timestamp),
                "sign": sign(self._secret, timestamp),
            },
            json=self.body(message, recipient),
        )
        return robot_outcome(response, rate_limited=TOO_FAST)

    def close(self) -> None:
        self._client.close()
