"""WeCom (企业微信) group robot: markdown messages that mention the person in the group."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from notify.channels._adapter import (
    Adapter,
    ChannelSettings,
    http_client,
    robot_outcome,
    secret_missing,
)
from notify.channels._format import labels, phone_digits, plain, severity_label, truncate_utf8
from notify.channels.base import Message, Outcome, Recipient

# The robot's documented limits: 20 messages a minute, markdown content up to 4096 bytes.
PER_MINUTE = 20
MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048
FREQUENCY_LIMIT = 45009  # api freq out of limit: the minute's 20 are used up
_COLOURS = {"red": "warning", "yellow": "comment", "green": "info"}


class WecomSettings(ChannelSettings):
    """A WeCom group robot's webhook."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_NOTIFY_WECOM_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    webhook_url: str = Field(
        default="https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
        description="the robot's send endpoint (its key goes in GRIDWATCH_NOTIFY_WECOM_KEY)",
    )
    key: SecretStr | None = Field(
        default=None, description="the robot's webhook key (secret; required when enabled)"
    )

    def missing_secrets(self) -> list[str]:
        return ["key"] if secret_missing(self.key) else []

    def https_fields(self) -> list[str]:
        return ["webhook_url"]


class WecomChannel(Adapter):
    """Posts to one WeCom group robot, mentioning the person by user id (or phone)."""

    name = "wecom"
    per_minute: int | None = PER_MINUTE

    def __init__(self, settings: WecomSettings) -> None:
        settings.require_secrets()
        assert settings.key is not None
        self.settings = settings
        self._key = settings.key.get_secret_value()
        self._client = http_client(settings.timeout_s)

    def address(self, recipient: Recipient) -> str | None:
        if recipient.wecom_id:
            return recipient.wecom_id
        return phone_digits(recipient.phone)

    def body(self, message: Message, recipient: Recipient) -> dict[str, object]:
        """The robot's JSON: markdown with `<@userid>`, or text with a mobile mention."""
        if not recipient.wecom_id:
            # Markdown can mention only a user id; a phone number needs a text message.
            text = truncate_utf8(plain(message, recipient.language), TEXT_MAX_BYTES)
            phone = phone_digits(recipient.phone)
            return {
                "msgtype": "text",
                "text": {"content": text, "mentioned_mobile_list": [phone] if phone else []},
            }
        return {
            "msgtype": "markdown",
            "markdown": {"content": self.markdown(message, recipient)},
        }

    def markdown(self, message: Message, recipient: Recipient) -> str:
        """The message in WeCom's markdown, the mention first so the person's phone rings."""
        words = labels(recipient.language)
        severity = severity_label(message, recipient.language)
        title = message.title
        if severity and message.severity:
            title = f'<font color="{_COLOURS[message.severity]}">{severity}</font> {title}'
        lines = [f"<@{recipient.wecom_id}>", f"**{title}**", message.body]
        if message.link:
            lines.append(f"[{words['open']}]({message.link})")
        return truncate_utf8("\n".join(line for line in lines if line), MARKDOWN_MAX_BYTES)

    def _send(self, message: Message, recipient: Recipient, address: str) -> Outcome:
        response = self._client.post(
            self.settings.webhook_url,
            params={"key": self._key},
            json=self.body(message, recipient),
        )
        return robot_outcome(response, rate_limited=FREQUENCY_LIMIT)

    def close(self) -> None:
        self._client.close()
