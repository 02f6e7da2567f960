"""Message text as each channel shows it, in the recipient's language."""

from __future__ import annotations

from notify.channels.base import Message

_LABELS = {
    "zh-CN": {"open": "打开任务", "red": "红色", "yellow": "黄色", "green": "绿色"},
    "en": {"open": "Open the task", "red": "RED", "yellow": "YELLOW", "green": "GREEN"},
}


def labels(language: str) -> dict[str, str]:
    """The words channels add around a message, in the language (Chinese when unknown)."""
    return _LABELS.get(language, _LABELS["zh-CN"])


def severity_label(message: Message, language: str) -> str | None:
    """'RED' / '红色' and so on, or None for a message without a severity."""
    return labels(language).get(message.severity) if message.severity else None


def plain(message: Message, language: str) -> str:
    """Title, body and link as plain text lines."""
    words = labels(language)
    severity = severity_label(message, language)
    lines = [f"[{severity}] {message.title}" if severity else message.title, message.body]
    if message.link:
        lines.append(f"{words['open']}: {message.link}")
    return "\n".join(line for line in lines if line)


def truncate_utf8(text: str, limit: int) -> str:
    """Text cut to at most `limit` UTF-8 bytes, never inside a character."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: max(0, limit - 3)].decode(errors="ignore") + "..."


def phone_digits(phone: str | None) -> str | None:
    """A mainland number as providers take it (+86 and separators dropped); None if not one."""
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit() or ch == "+")
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("+"):
        digits = "00" + digits[1:]  # international numbers: 00 + country code
    return digits if digits.isdigit() and 5 <= len(digits) <= 20 else None
