"""Voice calls through Aliyun's Dyvmsapi SingleCallByTts: a text-to-speech template read out."""

from __future__ import annotations

import json

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from notify.channels import aliyun
from notify.channels._format import severity_label
from notify.channels.base import Message, Recipient
from notify.channels.sms import clip


class VoiceSettings(aliyun.AliyunSettings):
    """Aliyun voice notification: the account, the calling number and the TTS template."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_NOTIFY_VOICE_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    endpoint: str = Field(default="https://dyvmsapi.aliyuncs.com", description="the API endpoint")
    called_show_number: str | None = Field(
        default=None, description="the number shown to the called person; unset: the public pool"
    )
    tts_code: str | None = Field(
        default=None, description="the approved TTS template, with variables ${severity} ${title}"
    )
    tts_code_en: str | None = Field(
        default=None, description="a TTS template for people whose language is en; unset: the one"
    )
    play_times: int = Field(default=2, ge=1, le=3, description="times the message is read out")

    def missing_secrets(self) -> list[str]:
        return super().missing_secrets() + ([] if self.tts_code else ["tts_code"])


class VoiceChannel(aliyun.AliyunChannel):
    """Places one call per message; the message key goes as OutId, the CallId comes back."""

    name = "voice"
    action = "SingleCallByTts"
    ref_field = "CallId"

    def __init__(self, settings: VoiceSettings) -> None:
        super().__init__(settings, settings.endpoint)
        self.settings = settings

    def params(self, message: Message, recipient: Recipient, address: str) -> dict[str, str]:
        """SingleCallByTts's own parameters."""
        template = self.settings.tts_code or ""
        if recipient.language == "en" and self.settings.tts_code_en:
            template = self.settings.tts_code_en
        variables = {
            "severity": severity_label(message, recipient.language) or "",
            "title": clip(message.title),
        }
        params = {
            "CalledNumber": address,
            "TtsCode": template,
            "TtsParam": json.dumps(variables, ensure_ascii=False, separators=(",", ":")),
            "PlayTimes": str(self.settings.play_times),
            "OutId": message.key,
        }
        if self.settings.called_show_number:
            params["CalledShowNumber"] = self.settings.called_show_number
        return params
