"""Codes shown to people as words, in each language: a role, a task action or state, an
incident status, a territory level, a kind of thing, a door command and how it ended. One table
for the API's messages (api/messages.py) and the notification texts (notify/texts.py)."""

from __future__ import annotations

WORDS: dict[str, dict[str, dict[str, str]]] = {
    "role": {
        "admin": {"zh-CN": "管理员", "en": "admin"},
        "operator": {"zh-CN": "值班员", "en": "operator"},
        "dispatcher": {"zh-CN": "调度员", "en": "dispatcher"},
        "grid_worker": {"zh-CN": "网格员", "en": "grid worker"},
        "department": {"zh-CN": "职能部门", "en": "department"},
        "viewer": {"zh-CN": "只读用户", "en": "viewer"},
    },
    "action": {
        "dispatch": {"zh-CN": "派单", "en": "dispatch"},
        "accept": {"zh-CN": "签收", "en": "accept"},
        "start": {"zh-CN": "开始处置", "en": "start"},
        "feedback": {"zh-CN": "反馈", "en": "feedback"},
        "check": {"zh-CN": "核查", "en": "check"},
        "approve": {"zh-CN": "办结", "en": "approve"},
        "reject": {"zh-CN": "驳回", "en": "reject"},
        "hand_back": {"zh-CN": "退回", "en": "hand_back"},
        "suspend": {"zh-CN": "挂起", "en": "suspend"},
        "resume": {"zh-CN": "恢复", "en": "resume"},
        "extend": {"zh-CN": "延期", "en": "extend"},
        "reassign": {"zh-CN": "改派", "en": "reassign"},
    },
    "state": {
        "reported": {"zh-CN": "待派单", "en": "reported"},
        "dispatched": {"zh-CN": "待签收", "en": "dispatched"},
        "accepted": {"zh-CN": "已签收", "en": "accepted"},
        "handling": {"zh-CN": "处置中", "en": "handling"},
        "feedback": {"zh-CN": "已反馈", "en": "feedback"},
        "checking": {"zh-CN": "核查中", "en": "checking"},
        "closed": {"zh-CN": "已办结", "en": "closed"},
        "returned": {"zh-CN": "已退回", "en": "returned"},
        "rework": {"zh-CN": "返工", "en": "rework"},
        "suspended": {"zh-CN": "已挂起", "en": "suspended"},
    },
    "status": {
        "open": {"zh-CN": "未处理", "en": "open"},
        "acknowledged": {"zh-CN": "已确认", "en": "acknowledged"},
        "resolved": {"zh-CN": "已解除", "en": "resolved"},
    },
    "level": {
        "city": {"zh-CN": "市", "en": "city"},
        "district": {"zh-CN": "区", "en": "district"},
        "subdistrict": {"zh-CN": "街道", "en": "subdistrict"},
        "community": {"zh-CN": "社区", "en": "community"},
        "grid": {"zh-CN": "网格", "en": "grid"},
    },
    "what": {
        "the request body": {"zh-CN": "请求内容", "en": "the request body"},
        "a photo": {"zh-CN": "照片", "en": "a photo"},
        "command doors": {"zh-CN": "控制门禁", "en": "command doors"},
        "broadcast": {"zh-CN": "发起广播", "en": "broadcast"},
        "switch emergency mode": {"zh-CN": "启动或结束应急状态", "en": "switch emergency mode"},
        "see rejected messages": {"zh-CN": "查看被拒收的消息", "en": "see rejected messages"},
    },
    "kind": {
        "area": {"zh-CN": "区域", "en": "area"},
        "venue": {"zh-CN": "场所", "en": "venue"},
        "node": {"zh-CN": "边缘节点", "en": "node"},
        "device": {"zh-CN": "设备", "en": "device"},
        "person": {"zh-CN": "人员", "en": "person"},
        "shift": {"zh-CN": "值班排班", "en": "shift"},
        "incident": {"zh-CN": "事件", "en": "incident"},
        "task": {"zh-CN": "任务", "en": "task"},
    },
    # A door or speaker command, and how an attempt ended (the notification centre's texts).
    "command": {
        "unlock": {"zh-CN": "开门", "en": "unlock"},
        "lock": {"zh-CN": "关门", "en": "lock"},
        "lockdown": {"zh-CN": "封闭", "en": "lockdown"},
        "release": {"zh-CN": "解除封闭", "en": "release"},
        "play": {"zh-CN": "广播", "en": "play"},
    },
    "command_state": {
        "failed": {"zh-CN": "执行失败", "en": "failed"},
        "rejected": {"zh-CN": "被拒绝", "en": "rejected"},
        "expired": {"zh-CN": "超时未应答", "en": "expired"},
    },
}


def word(kind: str, value: object, lang: str) -> str:
    """`value` (a code of `kind`) as a word in `lang`; the code itself when it has none."""
    words = WORDS[kind].get(str(value))
    return words.get(lang, str(value)) if words else str(value)
