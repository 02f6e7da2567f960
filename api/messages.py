"""The API's error messages in its readers' languages: a catalogue keyed by message code.

Every error the API gives has a stable `error` (its kind), an English `detail` (for scripts and
logs) and a `message` in the request's `Accept-Language` (zh-CN when absent or unknown), rendered
here from a message code and its parameters. Parameters named `role`, `action`, `state`,
`allowed` (a list of states), `level` and `kind` are codes, shown as words of the language.
`status.<code>` messages are the last resort for an error raised with no code of its own (the
framework's 404 and 405, an unexpected HTTPException); tests/test_api_language.py counts the
raise sites that fall back to them.
"""

# ruff: noqa: RUF001  (Chinese text takes its own full-width punctuation)

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from casework.titles import DEFAULT_LANGUAGE, LANGUAGES, language
from casework.words import word

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "ApiError",
    "Language",
    "current",
    "from_header",
    "render",
]

MESSAGES: dict[str, dict[str, str]] = {
    # Signing in, sessions, throttles.
    "auth.not_signed_in": {"zh-CN": "未登录，或登录已过期", "en": "not signed in, or the session expired"},
    "auth.ticket_used": {"zh-CN": "该实时通道凭证已被使用，请重新获取", "en": "this live ticket was used already; ask for a new one"},
    "auth.wrong": {"zh-CN": "账号或密码错误", "en": "wrong person id or password"},
    "auth.disabled": {"zh-CN": "该账号已停用，请联系管理员启用", "en": "this person is disabled; ask an administrator to enable them"},
    "auth.wrong_current": {"zh-CN": "当前密码不正确", "en": "the current password is wrong"},
    "auth.throttled": {"zh-CN": "该账号或该地址登录失败次数过多，请 {seconds} 秒后再试", "en": "too many failed sign-ins for this person id or from this address; try again in {seconds} s"},
    "auth.busy": {"zh-CN": "同时登录的人过多，请稍后几秒再试", "en": "too many sign-ins at once; try again in a few seconds"},
    "live.closing": {"zh-CN": "服务器正在关闭", "en": "the server is shutting down"},
    "live.too_many": {"zh-CN": "{person} 已打开 {count} 个实时通道，请先关闭一个", "en": "{person} has {count} live streams open already; close one first"},
    "body.too_large": {"zh-CN": "{what}过大：最多 {limit} 字节", "en": "{what} is larger than {limit} bytes; send less (at most {limit})"},
    # Roles.
    "role.admin_only": {"zh-CN": "{role}不能管理注册信息，需由管理员操作", "en": "a {role} cannot manage the registry; admins do"},
    "role.cannot": {"zh-CN": "{role}无权{what}", "en": "a {role} cannot {what}"},
    "role.incidents": {"zh-CN": "{role}不能处理事件", "en": "a {role} cannot change incidents"},
    "role.enrol": {"zh-CN": "{role}不能注册边缘节点", "en": "a {role} cannot enrol edge nodes"},
    "role.people": {"zh-CN": "{role}不能停用或启用人员", "en": "a {role} cannot disable or enable people"},
    "door.unlock_forever": {"zh-CN": "{role}不能无限期开门，请指定开门时长 duration_s（秒）", "en": "a {role} cannot unlock a door until it is locked again; give duration_s (seconds)"},
    "door.unlock_longest": {"zh-CN": "{role}最多可开门 {seconds} 秒，更长时间请联系值班员", "en": "a {role} may unlock a door for at most {seconds} s; ask an operator for longer"},
    # Not found (outside the person's area looks the same).
    "incident.missing": {"zh-CN": "没有编号为 {id} 的事件", "en": "no incident {id}"},
    "incident.no_snapshot": {"zh-CN": "事件 {id} 没有抓拍图片", "en": "incident {id} has no snapshot"},
    "incident.no_clip": {"zh-CN": "事件 {id} 没有录像片段", "en": "incident {id} has no video clip"},
    "incident.state": {"zh-CN": "事件 {id} 当前为{status}，不能这样处理", "en": "incident {id} is {status}"},
    "task.missing": {"zh-CN": "没有编号为 {id} 的任务", "en": "no task {id}"},
    "area.missing": {"zh-CN": "您的辖区内没有区域“{area}”", "en": "no area '{area}' in your area"},
    "venue.missing": {"zh-CN": "没有场所“{venue}”", "en": "no venue '{venue}'"},
    "door.missing": {"zh-CN": "您的辖区内没有门禁“{device}”", "en": "no door '{device}' in your area"},
    "speakers.none": {"zh-CN": "该范围内没有您可使用的广播音柱", "en": "no speakers there in your area"},
    "node.missing": {"zh-CN": "您的辖区内没有边缘节点“{node}”", "en": "no edge node '{node}' in your area"},
    "person.missing": {"zh-CN": "您的辖区内没有人员“{person}”", "en": "no person '{person}' in your area"},
    "record.missing": {"zh-CN": "您的辖区内没有{kind}“{id}”", "en": "no {kind} '{id}' in your area"},
    "delivery.missing": {"zh-CN": "没有{kind} {id}", "en": "no {kind} {id}"},
    "link.invalid": {"zh-CN": "该链接无效或已过期，请打开控制台查找该任务", "en": "this link is not valid or has expired; open the console and find the task there"},
    "proposal.missing": {"zh-CN": "没有编号为 {id} 的应急提议", "en": "no emergency proposal {id}"},
    "proposal.decided": {"zh-CN": "应急提议 {id} 已处理过", "en": "emergency proposal {id} was already decided"},
    # Photos of a task (api/routes/photos.py).
    "photo.whose": {"zh-CN": "任务 {id} 的照片仅供处置人和本辖区的管理人员查看", "en": "task {id}'s photos are for its assignee and the area's supervisors"},
    "photo.assignee_only": {"zh-CN": "只有任务 {id} 的处置人才能添加照片，{person} 不是", "en": "only task {id}'s assignee adds photos to it, not {person}"},
    "photo.not_handling": {"zh-CN": "处置中才能添加照片；任务 {id} 当前为{state}", "en": "photos are added while handling a task; task {id} is {state}"},
    "photo.type": {"zh-CN": "照片须为 image/jpeg 或 image/png 格式，而不是 {sent}", "en": "a photo is sent as image/jpeg or image/png, not {sent}"},
    "photo.no_type": {"zh-CN": "照片须声明为 image/jpeg 或 image/png 格式，但请求未给出 Content-Type", "en": "a photo is sent as image/jpeg or image/png; no content type was given"},
    "photo.too_large": {"zh-CN": "照片最大 {mb} MB，这张有 {size} 字节：请降低分辨率重拍", "en": "a photo may be at most {mb} MB; this one is {size} bytes: take it again at a lower resolution"},
    "photo.not_image": {"zh-CN": "上传内容不是 JPEG 或 PNG 图片（文件开头不符合任一格式）", "en": "the body is not a JPEG or PNG picture (its first bytes say neither)"},
    "photo.mismatch": {"zh-CN": "上传的是 {picture} 图片，却声明为 {sent}：请按实际格式发送", "en": "the body is a {picture} picture but was sent as {sent}"},
    "photo.undecodable": {"zh-CN": "该 {picture} 图片已损坏或不完整，无法解码：请重新拍摄", "en": "the {picture} picture cannot be decoded (damaged or truncated)"},
    "photo.no_thumbnail": {"zh-CN": "无法为该图片生成缩略图", "en": "no thumbnail could be made of the picture"},
    "photo.too_many_pixels": {"zh-CN": "图片为 {width}×{height} 像素，超过 {megapixels} 百万像素上限：请降低分辨率重拍", "en": "the picture is {width} x {height} pixels, more than {megapixels} megapixels; take it at a lower resolution"},
    "photo.attached": {"zh-CN": "照片 {photo} 已附在任务 {id} 的反馈中，不能删除", "en": "photo {photo} is attached to task {id}'s feedback and stays"},
    "photo.not_uploader": {"zh-CN": "只有上传者才能删除照片 {photo}，{person} 不是上传者", "en": "only whoever uploaded photo {photo} removes it, not {person}"},
    "photo.too_many": {"zh-CN": "任务 {id} 已有 {count} 张照片，已达上限", "en": "task {id} has {count} photos already, the most it takes"},
    "photo.not_feedback": {"zh-CN": "照片只能附在反馈中，不能附在{action}中", "en": "photos are attached to a feedback, not to {action}"},
    "photo.not_this_tasks": {"zh-CN": "照片 {photos} 不属于任务 {id}：请先上传", "en": "photo {photos} is not one of task {id}'s photos; upload it first"},
    "photo.missing": {"zh-CN": "任务 {id} 没有编号为 {photo} 的照片", "en": "task {id} has no photo {photo}"},
    # The wall (大屏).
    "wall.token_invalid": {"zh-CN": "该大屏令牌无效、已吊销或已过期：请向管理员申请新令牌（gridwatch wall token）", "en": "this wall token is unknown, revoked or expired: ask an admin for a new one (gridwatch wall token)"},
    "wall.no_token": {"zh-CN": "您的辖区内没有编号为 {id} 的大屏令牌", "en": "no wall token {id} in your area"},
    "wall.revoked": {"zh-CN": "大屏令牌 {id} 已被吊销", "en": "wall token {id} is revoked already"},
    "wall.no_area": {"zh-CN": "此大屏没有区域“{area}”", "en": "no area '{area}' on this wall"},
    # Tasks (casework/tasks.py).
    "task.no_person": {"zh-CN": "没有在岗人员“{person}”", "en": "no active person '{person}'"},
    "task.role": {"zh-CN": "{role}不能{action}任务", "en": "a {role} cannot {action} a task"},
    "task.outside": {"zh-CN": "任务 {id} 不在 {person} 的辖区内", "en": "task {id} is outside {person}'s area"},
    "task.not_yours": {"zh-CN": "任务 {id} 已派给 {assignee}，不是 {person}", "en": "task {id} is assigned to {assignee}, not {person}"},
    "task.unassigned": {"zh-CN": "任务 {id} 尚未派给任何人，不是 {person}", "en": "task {id} is assigned to nobody, not {person}"},
    "task.state": {"zh-CN": "任务当前为{state}，不能{action}（仅限{allowed}时）", "en": "cannot {action} a task that is {state} (only when {allowed})"},
    "task.feedback_note": {"zh-CN": "反馈需要填写处置情况说明", "en": "feedback needs a note saying what was done"},
    "task.reason": {"zh-CN": "{action}需要填写原因", "en": "{action} needs a reason"},
    "task.dispatch_assignee": {"zh-CN": "{action}需要指定处置人", "en": "{action} needs an assignee"},
    "task.assigned_already": {"zh-CN": "任务 {id} 已派给 {assignee}", "en": "task {id} is assigned to {assignee} already"},
    "task.not_candidate": {"zh-CN": "任务 {id} 不能派给 {person}：只能派给本网格及本社区其他网格的网格员，以及本网格可调用的职能部门", "en": "{person} is not a worker task {id} can be sent to: only the workers of its grid and of its community's other grids, and the departments its grid can call in"},
    "task.no_picture": {"zh-CN": "任务 {id} 没有图片", "en": "task {id} has no picture"},
    "role.dispatch": {"zh-CN": "{role}不能派单，需由调度员操作", "en": "a {role} cannot dispatch tasks; dispatchers do"},
    "task.extend_seconds": {"zh-CN": "延期需要填写大于零的秒数", "en": "extend needs a positive number of seconds"},
    # Emergencies (casework/emergency.py).
    "emergency.no_area": {"zh-CN": "没有区域“{area}”", "en": "no territory '{area}'"},
    "emergency.already": {"zh-CN": "{area} 已处于应急状态（由 {of} 启动）", "en": "{area} is already in an emergency (of {of})"},
    "emergency.none": {"zh-CN": "{area} 未处于应急状态", "en": "{area} is not in an emergency"},
    # Oneself.
    "self.change": {"zh-CN": "不能修改自己的角色或辖区，也不能停用自己，请联系其他管理员", "en": "you cannot change your own role or scope, nor disable yourself; ask another admin"},
    "self.disable": {"zh-CN": "不能停用自己，请联系其他管理员", "en": "you cannot disable yourself; ask another admin"},
    "self.area": {"zh-CN": "不能停用自己所在的辖区", "en": "you cannot disable your own area"},
    "self.file_change": {"zh-CN": "该文件会修改您自己的角色或辖区，或停用您，请联系其他管理员", "en": "this file changes your own role or scope, or disables you; ask another admin"},
    "self.file_area": {"zh-CN": "该文件会停用您自己所在的辖区", "en": "this file disables your own area"},
    # Registry records (api/records.py, api/routes/admin.py): "{field}: ..." in English.
    "record.no_area": {"zh-CN": "您的辖区内没有区域“{area}”", "en": "no area '{area}' in your area"},
    "record.not_grid": {"zh-CN": "“{area}”是{level}，不是网格", "en": "'{area}' is a {level}, not a grid"},
    "record.new_city": {"zh-CN": "新增城市需由平台负责人通过注册表文件添加", "en": "a new city is added with a registry file by the platform's owner"},
    "record.parent_level": {"zh-CN": "{level}应隶属于{wanted}，而“{parent}”是{found}", "en": "a {level} sits under a {wanted}, and '{parent}' is a {found}"},
    "record.no_venue": {"zh-CN": "您的辖区内没有场所“{venue}”", "en": "no venue '{venue}' in your area"},
    "record.no_node": {"zh-CN": "您的辖区内没有边缘节点“{node}”", "en": "no edge node '{node}' in your area"},
    "record.scope": {"zh-CN": "您的辖区内没有区域“{area}”：只能授予您的辖区或其下级区域", "en": "no area '{area}' in your area: a person can be given only your area or one under it"},
    "record.no_person": {"zh-CN": "您的辖区内没有人员“{person}”", "en": "no person '{person}' in your area"},
    "record.shift_role": {"zh-CN": "“{person}”是{role}：值班排班只适用于接收派单的网格员和职能部门", "en": "'{person}' is a {role}: duty shifts are for grid workers and departments, who are dispatched tasks"},
    "record.shift_grid": {"zh-CN": "“{person}”工作于“{area}”，不包括网格“{grid}”", "en": "'{person}' works in '{area}', which does not include grid '{grid}'"},
    "record.taken_elsewhere": {"zh-CN": "{kind}“{id}”已存在于您的辖区之外：编号全平台唯一，请换一个", "en": "a {kind} '{id}' exists already, outside your area: ids are unique platform-wide, choose another"},
    "record.device_taken": {"zh-CN": "设备“{id}”已属于节点“{node}”：请编辑该记录以移动它，或换一个编号", "en": "device '{id}' is already under node '{node}': edit that record to move it, or choose another id"},
    "record.taken": {"zh-CN": "{kind}“{id}”已存在：请编辑它，或换一个编号", "en": "a {kind} '{id}' exists already: edit it, or choose another id"},
    "record.area_move": {"zh-CN": "区域不能移动或改变层级：请新增区域并停用此区域", "en": "an area does not move or change level: add the new one and disable this one"},
    "record.id_changed": {"zh-CN": "请求内容中的编号为“{sent}”，路径中为“{id}”：编号不可更改（请新增记录并停用此记录）", "en": "the body is '{sent}' and the path '{id}': an id never changes (add a new record and disable this one)"},
    "record.stale": {"zh-CN": "该{kind}在您读取后已被修改（您编辑的是第 {sent} 版，现为第 {version} 版）：这是它现在的内容，请在此基础上修改后重新提交", "en": "this {kind} changed since you read it (you edited version {sent}, it is at version {version} now): here it is as it is now; apply your change to it and send it again"},
    "registry.stale": {"zh-CN": "自显示此计划以来注册信息已变更：这是当前的计划，请核对后重新应用", "en": "the registry changed since this plan was shown: here is the plan as it is now; check it and apply again"},
    "registry.file": {"zh-CN": "注册表文件有误：{detail}", "en": "{detail}"},
    # The node enrolment and secrets.
    "enrol.throttled": {"zh-CN": "该地址输入错误注册码次数过多，请 {seconds} 秒后再试", "en": "too many wrong enrolment codes from this address; try again in {seconds} s"},
    "enrol.invalid": {"zh-CN": "注册码无效或已过期，请向平台管理员索取新的注册码", "en": "invalid or expired enrolment code; ask the platform's administrator for a new one"},
    "enrol.unavailable": {"zh-CN": "平台暂不能完成节点注册或签发密钥：{detail}", "en": "{detail}"},
    "enrol.refused": {"zh-CN": "无法为该节点办理注册：{detail}", "en": "{detail}"},
    # The database and the server.
    "db.unreachable": {"zh-CN": "暂时无法连接数据库，请稍后再试", "en": "the database cannot be reached; try again in a moment"},
    "db.lost": {"zh-CN": "与数据库的连接中断，请稍后再试", "en": "the database connection was lost; try again in a moment"},
    "db.read_only": {"zh-CN": "数据库当前为只读，暂不能保存，请稍后再试", "en": "the database is read-only; try again in a moment"},
    "db.value": {"zh-CN": "数据库无法保存其中的某个值：{reason}", "en": "a value the database cannot take: {reason}"},
    # Request validation (422), one per problem, by pydantic's error type.
    "invalid.missing": {"zh-CN": "缺少 {field}", "en": "{loc}: Field required"},
    "invalid.extra": {"zh-CN": "不允许的字段 {field}", "en": "{loc}: Extra inputs are not permitted"},
    "invalid.too_short": {"zh-CN": "{field} 太短（至少 {min_length}）", "en": "{loc}: {msg}"},
    "invalid.too_long": {"zh-CN": "{field} 太长（最多 {max_length}）", "en": "{loc}: {msg}"},
    "invalid.pattern": {"zh-CN": "{field} 的格式不正确", "en": "{loc}: {msg}"},
    "invalid.number": {"zh-CN": "{field} 应为数字", "en": "{loc}: {msg}"},
    "invalid.range": {"zh-CN": "{field} 超出允许范围", "en": "{loc}: {msg}"},
    "invalid.choice": {"zh-CN": "{field} 应为以下之一：{expected}", "en": "{loc}: {msg}"},
    "invalid.type": {"zh-CN": "{field} 的类型不正确", "en": "{loc}: {msg}"},
    "invalid.json": {"zh-CN": "请求内容不是有效的 JSON", "en": "{loc}: {msg}"},
    "invalid.field": {"zh-CN": "{field} 的值无效", "en": "{loc}: {msg}"},
    # Last resort, by HTTP status: an error raised with no code (counted by a test).
    "status.400": {"zh-CN": "请求有误", "en": "bad request"},
    "status.401": {"zh-CN": "未登录", "en": "not signed in"},
    "status.403": {"zh-CN": "无权执行此操作", "en": "not allowed"},
    "status.404": {"zh-CN": "未找到", "en": "not found"},
    "status.405": {"zh-CN": "不支持该请求方法", "en": "method not allowed"},
    "status.409": {"zh-CN": "与当前状态冲突", "en": "conflict with the current state"},
    "status.413": {"zh-CN": "请求内容过大", "en": "request too large"},
    "status.422": {"zh-CN": "请求内容无效", "en": "invalid request"},
    "status.429": {"zh-CN": "请求过于频繁，请稍后再试", "en": "too many requests; try again later"},
    "status.503": {"zh-CN": "服务暂不可用，请稍后再试", "en": "unavailable; try again in a moment"},
    "status.500": {"zh-CN": "服务器出错", "en": "server error"},
}  # fmt: skip

# Parameters shown as words of a kind (`allowed` is a list of states; `wanted`/`found` levels).
_WORD_OF = {"role": "role", "action": "action", "state": "state", "allowed": "state",
            "status": "status", "level": "level", "wanted": "level", "found": "level",
            "kind": "kind", "what": "what"}  # fmt: skip
_LIST_SEP = {"zh-CN": "、", "en": ", "}
PROBLEM_SEP = {"zh-CN": "；", "en": "; "}  # between the problems of one invalid request


def _value(name: str, value: object, lang: str) -> str:
    kind = _WORD_OF.get(name)
    if isinstance(value, list | tuple | set | frozenset):
        items: Iterable[object] = value
        return _LIST_SEP[lang].join(word(kind, v, lang) if kind else str(v) for v in items)
    if value is None:
        return ""
    return word(kind, value, lang) if kind else str(value)


def _raw(value: object) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render(
    code: str, params: Mapping[str, Any] | None, lang: str | None = None, *, words: bool = True
) -> str:
    """The message of a code in `lang` (zh-CN when unknown); an unknown code shows as itself.
    `words=False` leaves codes as they are (the English `detail`, which scripts may match)."""
    texts = MESSAGES.get(code)
    if texts is None:
        return code
    chosen = language(lang)
    values = _Blank({k: _value(k, v, chosen) if words else _raw(v)
                     for k, v in (params or {}).items()})  # fmt: skip
    return texts[chosen].format_map(values)


def from_header(accept_language: str | None) -> str:
    """The language of an Accept-Language header: the first of ours by preference (q), else
    zh-CN. `*` and unknown languages do not count."""
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, rest = part.strip().partition(";")
        q = 1.0
        if rest.strip().startswith("q="):
            try:
                q = float(rest.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        if q > 0 and base in ("zh", "en"):
            choices.append((-q, i, language(tag)))
    return min(choices)[2] if choices else DEFAULT_LANGUAGE


class ApiError(HTTPException):
    """An HTTP error with a message code: `detail` is its English sentence, and the answer's
    `message` its text in the request's language."""

    def __init__(
        self,
        status_code: int,
        code: str,
        headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> None:
        if code not in MESSAGES:
            raise ValueError(f"no message {code!r} in api/messages.py")
        super().__init__(status_code, render(code, params, "en", words=False), dict(headers or {}))
        self.code = code
        self.params = params


_LANGUAGE: ContextVar[str] = ContextVar("gridwatch_language", default=DEFAULT_LANGUAGE)


def current() -> str:
    """The language of the request being answered (zh-CN outside a request)."""
    return _LANGUAGE.get()


class Language:
    """Sets the request's language (its Accept-Language) for all that answers it: the titles
    of incidents and tasks (api/models.py) and the messages of errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        said = dict(scope["headers"]).get(b"accept-language", b"").decode("latin-1")
        token = _LANGUAGE.set(from_header(said))
        try:
            await self.app(scope, receive, send)
        finally:
            _LANGUAGE.reset(token)
