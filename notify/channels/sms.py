"""SMS through Aliyun's Dysmsapi SendSms, with an approved template and its parameters."""

from __future__ import annotations

import json

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from notify.channels import aliyun
from notify.channels._format import severity_label
from notify.channels.base import Message, Recipient

# A template variable takes at most 35 characters (longer values are refused).
PARAM_MAX_CHARS = 35


class SmsSettings(aliyun.AliyunSettings):
    """Aliyun SMS: the account, the sign name and the notification template."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_NOTIFY_SMS_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    endpoint: str = Field(default="https://dysmsapi.aliyuncs.com", description="the API endpoint")
    sign_name: str | None = Field(default=None, description="the approved SMS signature (签名)")
    template_code: str | None = Field(
        default=None,
        description="the approved template, with variables ${severity} ${title} ${link}",
    )
    template_code_en: str | None = Field(
        default=None, description="a template for people whose language is en; unset: the one"
    )

    def missing_secrets(self) -> list[str]:
        missing = super().missing_secrets()
        return missing + [n for n in ("sign_name", "template_code") if not getattr(self, n)]


def clip(value: str) -> str:
    """A template variable's value within the provider's length limit."""
    return value if len(value) <= PARAM_MAX_CHARS else value[: PARAM_MAX_CHARS - 1] + "…"


class SmsChannel(aliyun.AliyunChannel):
    """Sends one templated SMS per message; the message key goes as OutId."""

    name = "sms"
    action = "SendSms"
    ref_field = "BizId"

    def __init__(self, settings: SmsSettings) -> None:
        super().__init__(settings, settings.endpoint)
        self.settings = settings

    def params(self, message: Message, recipient: Recipient, address: str) -> dict[str, str]:
        """SendSms's own parameters."""
        template = self.settings.template_code or ""
        if recipient.language == "en" and self.settings.template_code_en:
            template = self.settings.template_code_en
        variables = {
            "severity": severity_label(message, recipient.language) or "",
            "title": clip(message.title),
            "link": clip(message.link or ""),
        }
        return {
            "PhoneNumbers": address,
            "SignName": self.settings.sign_name or "",
            "TemplateCode": template,
            "TemplateParam": json.dumps(variables, ensure_ascii=False, separators=(",", ":")),
            "OutId": message.key,
        }
