"""Incident and task titles as codes with parameters, rendered in the reader's language.

An incident's title code is its rule's name (`door_forced`), or the platform's own code
(`platform_broker`); a task's is `task.<rule>`, the same sentence with the venue it happened at.
Parameters carry what a sentence names: `venue` (the venue's name), `venue_id`, `device` (the
device's name), `device_id`, and what a code needs besides (`group`, `text`). The stored
`title` column keeps the English rendering, for scripts, logs and the command line.

The console shows titles from its own catalogues (`title.<code>` in api/console/i18n/*.json);
tests/test_titles.py keeps those equal to the texts here.
"""

# ruff: noqa: RUF001  (Chinese text takes its own full-width punctuation)

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
TEXT = "text"  # a title stored before codes that no code matched: shown as it was written
TASK_PREFIX = "task."

# What happened, per rule: code -> language -> sentence.
_INCIDENTS: dict[str, dict[str, str]] = {
    "door_forced": {"zh-CN": "门被强行打开", "en": "Door forced open"},
    "door_held_open": {"zh-CN": "门长时间未关", "en": "Door held open"},
    "denied_burst": {"zh-CN": "多次刷卡被拒", "en": "Repeated denied access"},
    "over_capacity": {"zh-CN": "人数超过核定容量", "en": "Over capacity"},
    "far_over_capacity": {"zh-CN": "人数严重超员", "en": "Far over capacity"},
    "inside_when_closed": {"zh-CN": "闭馆后场所内仍有人员", "en": "People inside after closing"},
    "camera_intrusion": {"zh-CN": "区域入侵", "en": "Intrusion"},
    "camera_loitering": {"zh-CN": "人员徘徊", "en": "Loitering"},
    "camera_crowd": {"zh-CN": "人员聚集", "en": "Crowding"},
    "camera_tamper": {"zh-CN": "摄像机被遮挡或移动", "en": "Camera tampered with"},
    "camera_object_left": {"zh-CN": "发现遗留物品", "en": "Object left behind"},
    "speaker_fault": {"zh-CN": "广播音柱故障", "en": "Speaker fault"},
    "device_offline": {"zh-CN": "设备离线", "en": "Device offline"},
    "node_offline": {"zh-CN": "场所离线", "en": "Venue offline"},
    "command_undelivered": {
        "zh-CN": "门控指令未送达，请到现场关好门",
        "en": "Door command not delivered: go and secure the door",
    },
    "emergency_proposed": {
        "zh-CN": "规则提议{area}启动应急状态，请确认或驳回",
        "en": "Emergency proposed by a rule for {area}: confirm or dismiss",
    },
}

# Titles that are not a rule's: the platform's own incidents, and old text kept as it was.
_OTHERS: dict[str, dict[str, str]] = {
    "platform_broker": {
        "zh-CN": "平台无法连接 MQTT 消息服务器",
        "en": "The platform cannot reach its MQTT broker",
    },
    "platform_broker_group": {
        "zh-CN": "平台无法连接 MQTT 消息服务器（接入组 {group}）",
        "en": "The platform cannot reach its MQTT broker (ingest group {group})",
    },
    TEXT: {"zh-CN": "{text}", "en": "{text}"},
}

# A task is its incident's sentence at its venue.
_TASK = {"zh-CN": "{venue}：{what}", "en": "{what} at {venue}"}

# The rules' short names (the console's `rule.<rule>`), for filters and tables.
RULE_NAMES: dict[str, dict[str, str]] = {
    "door_forced": {"zh-CN": "强行开门", "en": "Door forced"},
    "door_held_open": {"zh-CN": "门未关", "en": "Door held open"},
    "denied_burst": {"zh-CN": "连续刷卡被拒", "en": "Denied access"},
    "over_capacity": {"zh-CN": "超员", "en": "Over capacity"},
    "far_over_capacity": {"zh-CN": "严重超员", "en": "Far over capacity"},
    "inside_when_closed": {"zh-CN": "闭馆滞留", "en": "Inside after closing"},
    "camera_intrusion": {"zh-CN": "入侵", "en": "Intrusion"},
    "camera_loitering": {"zh-CN": "徘徊", "en": "Loitering"},
    "camera_crowd": {"zh-CN": "聚集", "en": "Crowding"},
    "camera_tamper": {"zh-CN": "摄像机破坏", "en": "Camera tamper"},
    "camera_object_left": {"zh-CN": "遗留物品", "en": "Object left"},
    "speaker_fault": {"zh-CN": "音柱故障", "en": "Speaker fault"},
    "device_offline": {"zh-CN": "设备离线", "en": "Device offline"},
    "node_offline": {"zh-CN": "场所离线", "en": "Venue offline"},
    "command_undelivered": {"zh-CN": "指令未送达", "en": "Command undelivered"},
    "emergency_proposed": {"zh-CN": "应急提议", "en": "Emergency proposed"},
    "platform_broker": {"zh-CN": "平台断连", "en": "Platform broker"},
}

TITLES: dict[str, dict[str, str]] = {
    **_INCIDENTS,
    **_OTHERS,
    **{
        TASK_PREFIX + code: {lang: _TASK[lang].replace("{what}", text[lang]) for lang in LANGUAGES}
        for code, text in _INCIDENTS.items()
    },
}


# Why a rule asks for an emergency, kept as the emergency's reason: free text, as a person's
# reason is, so written once, in the platform's language.
_RULE_REASON = {"zh-CN": "{title}（事件 {incident_id}）", "en": "{title} (incident {incident_id})"}


def language(tag: str | None) -> str:
    """One of LANGUAGES for a language tag ('en-GB' is en, 'zh' is zh-CN); zh-CN otherwise."""
    if tag:
        base = tag.strip().lower().split("-")[0].split("_")[0]
        for ours in LANGUAGES:
            if ours.lower().split("-")[0] == base:
                return ours
    return DEFAULT_LANGUAGE


def placeholders(text: str) -> set[str]:
    """The `{name}` parameters of a message."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render(code: str, params: Mapping[str, Any] | None, lang: str | None = None) -> str:
    """A title in `lang` (zh-CN when unknown); a code with no text shows as itself."""
    texts = TITLES.get(code)
    if texts is None:
        return str((params or {}).get("text") or code)
    values = _Blank({k: "" if v is None else str(v) for k, v in (params or {}).items()})
    return texts[language(lang)].format_map(values)


def rule_name(rule: str, lang: str | None = None) -> str:
    """A rule's short name in `lang`; the rule's code when it has none."""
    names = RULE_NAMES.get(rule)
    return names[language(lang)] if names else rule


@dataclass(frozen=True, slots=True)
class Title:
    """A title code and its parameters, as stored in `title_code` and `title_params`."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, lang: str | None = None) -> str:
        return render(self.code, self.params, lang)

    def reason(self, incident_id: int, lang: str = DEFAULT_LANGUAGE) -> str:
        """The reason of an emergency this incident's rule asks for (zh-CN unless told)."""
        lang = language(lang)
        return _RULE_REASON[lang].format(title=self.for_task().render(lang),
                                         incident_id=incident_id)  # fmt: skip

    def for_task(self) -> Title:
        """The title of the task an incident with this title opens."""
        code = TASK_PREFIX + self.code if self.code in _INCIDENTS else self.code
        return Title(code, self.params)
