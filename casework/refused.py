"""Refusals with a message code: the API says them in its reader's language (api/messages.py)."""

from __future__ import annotations


class Refused(ValueError):
    """Something not allowed. `str()` is the English sentence (for scripts and logs); `code`
    and `params` are what the API's message catalogue translates it from."""

    def __init__(self, detail: str, code: str = "", **params: object) -> None:
        super().__init__(detail)
        self.code = code
        self.params = params
