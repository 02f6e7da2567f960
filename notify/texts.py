"""Titles and bodies in the recipient's language, from an event's kind and parameters."""

# ruff: noqa: RUF001  (Chinese text takes its own full-width punctuation)

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from casework import titles
from casework.words import WORDS

LANGUAGES = ("zh-CN", "en")

# kind -> language -> (title, body); {name} is a parameter of the event.
_TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "task.dispatched": {
        "zh-CN": ("新任务：{title}", "任务 {task_id} 已派给您，请尽快接收。"),
        "en": ("New task: {title}", "Task {task_id} is yours; please accept it."),
    },
    "task.deadline": {
        "zh-CN": ("任务即将超时：{title}", "任务 {task_id} 已用去八成时限（{state}）。"),
        "en": ("Task close to its deadline: {title}", "Task {task_id} used 80% of its time ({state})."),
    },
    "task.escalated": {
        "zh-CN": ("任务升级至{level}：{title}", "任务 {task_id} 超时未办，已从{from_level}升级。"),
        "en": ("Task escalated to {level}: {title}", "Task {task_id} passed its deadline at {from_level}."),
    },
    "task.accepted": {
        "zh-CN": ("任务已接收：{title}", "任务 {task_id} 已由{assignee_name}接收。"),
        "en": ("Task accepted: {title}", "Task {task_id} was accepted by {assignee_name}."),
    },
    "incident.red": {
        "zh-CN": ("红色事件：{title}", "{venue}发生红色事件（事件 {incident_id}）。"),
        "en": ("Red incident: {title}", "Red incident {incident_id} at {venue}."),
    },
    "node.offline": {
        "zh-CN": ("场所离线：{venue}", "{venue}的边缘节点{node}已离线。"),
        "en": ("Venue offline: {venue}", "Edge node {node} at {venue} is offline."),
    },
    "emergency.started": {
        "zh-CN": ("应急状态启动：{area}", "{reason}\n{message}"),
        "en": ("Emergency started: {area}", "{reason}\n{message}"),
    },
    "emergency.ended": {
        "zh-CN": ("应急状态结束：{area}", "由{by_name}结束。"),
        "en": ("Emergency ended: {area}", "Ended by {by_name}."),
    },
    "command.failed": {
        "zh-CN": ("指令未执行：{venue}{device}", "{action}指令{state}（指令 {command_id}）：{detail}"),
        "en": ("Command not carried out: {action} {device}", "Command {command_id} {state}: {detail}"),
    },
    "node.enrolled": {
        "zh-CN": ("节点已注册：{venue}", "{venue}的边缘节点{node}已从 {client} 完成注册。"),
        "en": ("Node enrolled: {venue}", "Node {node} at {venue} enrolled from {client}."),
    },
    "node.refused": {
        "zh-CN": ("已停用节点尝试连接：{venue}", "{venue}的边缘节点{node}（账号 {client}）被拒绝 {count} 次。"),
        "en": ("Disabled node trying to connect: {venue}", "Node {node} at {venue} (account {client}) refused {count} times."),
    },
    "digest": {
        "zh-CN": ("{n} 条新通知", "{lines}"),
        "en": ("{n} new notifications", "{lines}"),
    },
}  # fmt: skip


# A name a text shows, and the id it falls back to when the event has no name.
_NAMES_OR_IDS = {"level": "level_id", "from_level": "from", "assignee_name": "assignee",
                 "node": "node_id", "venue": "venue_id", "device": "device_id",
                 "by_name": "by"}  # fmt: skip
# Codes an event carries, shown as words in Chinese (English shows the code): the kinds of
# casework/words.py each parameter may be, first match wins.
_WORD_KINDS = {"action": ("command", "action"), "state": ("command_state", "state")}


def render(kind: str, params: Mapping[str, object], language: str) -> tuple[str, str]:
    """(title, body) for an event in `language` (zh-CN when the language is not known)."""
    texts = _TEXTS.get(kind)
    if texts is None:
        return kind, ""
    language = titles.language(language)  # zh-CN when not known
    title, body = texts[language]
    values: defaultdict[str, str] = defaultdict(str)
    values.update({k: "" if v is None else str(v) for k, v in params.items()})
    for name, id_ in _NAMES_OR_IDS.items():  # events raised before their names were added
        values[name] = values[name] or values[id_]
    if language == "zh-CN":
        for name, kinds_of in _WORD_KINDS.items():
            said = values[name]
            values[name] = next(
                (WORDS[k][said][language] for k in kinds_of if said in WORDS[k]), said
            )
    code = params.get("title_code")
    if isinstance(code, str):  # the incident's or task's title in the recipient's language
        title_params = params.get("title_params")
        values["title"] = titles.render(
            code, title_params if isinstance(title_params, dict) else {}, language
        )
    return title.format_map(values), body.format_map(values).strip()


def kinds() -> list[str]:
    """Every event kind that has texts (the digest included)."""
    return sorted(_TEXTS)
