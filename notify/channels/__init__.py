"""The channel adapters, and `configured()` building every enabled one from the environment."""

from __future__ import annotations

import logging

from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.settings import Environment
from notify.channels._adapter import ChannelSettings
from notify.channels.base import Channel
from notify.channels.dingtalk import DingtalkChannel, DingtalkSettings
from notify.channels.sms import SmsChannel, SmsSettings
from notify.channels.sms_http import SmsHttpChannel, SmsHttpSettings
from notify.channels.smtp import EmailChannel, EmailSettings
from notify.channels.voice import VoiceChannel, VoiceSettings
from notify.channels.wecom import WecomChannel, WecomSettings

log = logging.getLogger(__name__)

# Every adapter's settings, for the README's configuration table (gridwatch/configdoc.py).
SETTINGS: list[type[ChannelSettings]] = [
    WecomSettings,
    DingtalkSettings,
    SmsSettings,
    SmsHttpSettings,
    VoiceSettings,
    EmailSettings,
]


class _EnvironmentOnly(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDWATCH_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT


def _enabled(settings: ChannelSettings, production: bool) -> bool:
    if production:
        settings.check_production()  # raises ValueError with a sentence naming the variable
    return settings.enabled


def configured(production: bool | None = None) -> dict[str, Channel]:
    """Every enabled channel by name, from GRIDWATCH_NOTIFY_* settings.

    Production (GRIDWATCH_ENVIRONMENT=production unless told) refuses an enabled channel whose
    secret is missing or whose URL is not https, with ValueError; development skips it with a
    warning. SMS goes through Aliyun when enabled, else through the generic HTTP gateway.
    """
    if production is None:
        production = _EnvironmentOnly().environment is Environment.PRODUCTION
    sms, sms_http = SmsSettings(), SmsHttpSettings()
    if sms.enabled and sms_http.enabled:
        raise ValueError(
            "GRIDWATCH_NOTIFY_SMS_ENABLED and GRIDWATCH_NOTIFY_SMS_HTTP_ENABLED are both set:"
            " choose one SMS provider"
        )
    builders: list[tuple[ChannelSettings, type]] = [
        (WecomSettings(), WecomChannel),
        (DingtalkSettings(), DingtalkChannel),
        (sms, SmsChannel),
        (sms_http, SmsHttpChannel),
        (VoiceSettings(), VoiceChannel),
        (EmailSettings(), EmailChannel),
    ]
    channels: dict[str, Channel] = {}
    for settings, build in builders:
        if not _enabled(settings, production):
            continue
        try:
            channel: Channel = build(settings)
        except ValueError as error:
            log.warning("notify: channel not started: %s", error)
            continue
        channels[channel.name] = channel
    return channels


__all__ = ["SETTINGS", "configured"]
