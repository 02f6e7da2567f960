"""A static scan of the console's sources for words a person reads that come from no catalogue.

JavaScript: a small tokenizer (strings, template literals, comments, regular expressions) keeps a
stack of the brackets it is in and, for a call's parentheses, the name called and which argument
it is at. A string literal with letters in it is flagged when it is
- a child of an element: an argument of `h(tag, attrs, ...)` or `s(...)` from the third on, of
  `fill(el, ...)` from the second on, of `chip(text, ...)` first;
- a message: the first argument of `toast`, `ask`, `confirm`, `alert`, `new Error`;
- a user-visible attribute: after `title:`, `"aria-label":`, `placeholder:`, `alt:`, `label:`
  in an object, or assigned to `.textContent`, `.title`, `.placeholder`, `.ariaLabel`, or the
  value of `setAttribute("aria-label" | "title" | "placeholder" | "alt", ...)`.
Template literals count by their text outside `${...}`. Literals without letters (symbols,
separators, numbers) are never flagged: a dash, " · ", an arrow; nor are the few words that are
the same in every language (SAME_IN_EVERY_LANGUAGE: the product's name, "HTTP"). A line may say `i18n-exempt` with why
(the catalogue's own loading error, which no catalogue can word).

HTML: text outside <script>, <style> and <noscript> must be in an element carrying `data-i18n`
(main.js fills it), and `title`, `aria-label`, `placeholder`, `alt` attributes must not hold
words (use data-i18n-title / data-i18n-label).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

LETTERS = re.compile(r"[A-Za-z\u4e00-\u9fff]")
# The arguments that are text: from the first index to the last (None: to the end).
CHILD_CALLS: dict[str, tuple[int, int | None]] = {
    "h": (2, None),
    "s": (2, None),
    "fill": (1, None),
    "chip": (0, 0),
}
EXEMPT = "i18n-exempt"  # a line saying so (with why) is not scanned
MESSAGE_CALLS = {"toast", "ask", "confirm", "alert", "Error"}
VISIBLE_KEYS = {"title", "aria-label", "placeholder", "alt", "label"}
VISIBLE_PROPS = {"textContent", "innerText", "title", "placeholder", "ariaLabel"}
VISIBLE_ATTRS = {"aria-label", "title", "placeholder", "alt"}
# After these a `/` starts a regular expression, not a division.
# What may stand before a literal that is the value itself (not, say, an argument of a call in it).
BEFORE_VALUE = {"(", ",", "?", ":", "||", "??", "&&", "+"}
REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^") | {"return", "typeof", "case", "in", "of", ""}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text!r} ({self.why})"


@dataclass
class _Frame:
    bracket: str  # ( [ { or ${
    call: str | None = None  # for ( : the name called
    arg: int = 0
    key: str | None = None  # for { : the property name before the current value


# Words the same in every language: the product's name, protocol names. A literal made of these
# (and symbols) is not a word to translate.
SAME_IN_EVERY_LANGUAGE = {"gridwatch", "HTTP", "JSON", "YAML", "GeoJSON"}


def _words(text: str) -> bool:
    rest = re.sub(
        r"[A-Za-z]+", lambda m: "" if m.group(0) in SAME_IN_EVERY_LANGUAGE else m.group(0), text
    )
    return bool(LETTERS.search(rest))


def scan_js(path: Path, name: str | None = None) -> list[Finding]:
    src = path.read_text(encoding="utf-8")
    label = name or str(path)
    findings: list[Finding] = []
    stack: list[_Frame] = [_Frame("{")]
    tokens: list[str] = []  # the significant tokens so far (identifiers, punctuation)
    i = 0
    n = len(src)

    lines = src.splitlines()

    def line_of(pos: int) -> int:
        return src.count("\n", 0, pos) + 1

    def judge(text: str, pos: int) -> None:
        if not _words(text):
            return
        top = stack[-1]
        prev = tokens[-1] if tokens else ""
        why = None
        if top.bracket == "(" and top.call is not None:
            first, last = CHILD_CALLS.get(top.call, (None, None))
            if (
                first is not None
                and first <= top.arg <= (top.arg if last is None else last)
                and prev in BEFORE_VALUE
            ):
                why = f"text of {top.call}()"
            elif top.call in MESSAGE_CALLS and top.arg == 0 and prev in BEFORE_VALUE:
                why = f"message of {top.call}()"
            elif top.call == "setAttribute" and top.arg == 1 and attr_name(top) in VISIBLE_ATTRS:
                why = f"setAttribute({attr_name(top)!r})"
        if top.bracket == "{" and top.key in VISIBLE_KEYS and prev in BEFORE_VALUE - {","}:
            why = f"{top.key}: attribute"
        if prev == "=" and len(tokens) >= 3 and tokens[-3] == "." and tokens[-2] in VISIBLE_PROPS:
            why = f".{tokens[-2]} ="
        if why and EXEMPT not in lines[line_of(pos) - 1]:
            findings.append(Finding(label, line_of(pos), text, why))

    set_attr_names: dict[int, str] = {}

    def attr_name(frame: _Frame) -> str:
        return set_attr_names.get(id(frame), "")

    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
            continue
        if src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
            continue
        if src.startswith("/*", i):
            i = src.find("*/", i + 2) + 2
            continue
        if c in "\"'":
            j = i + 1
            while src[j] != c:
                j += 2 if src[j] == "\\" else 1
            text = src[i + 1 : j]
            top = stack[-1]
            if top.bracket == "(" and top.call == "setAttribute" and top.arg == 0:
                set_attr_names[id(top)] = text
            if top.bracket == "{" and tokens and tokens[-1] in {"{", ","}:
                top.key = text  # a quoted property name, e.g. "aria-label":
            else:
                judge(text, i)
            tokens.append('"')
            i = j + 1
            continue
        if c == "`":
            # A template literal: its text outside ${...}, judged as one; what is inside ${...}
            # is scanned as code.
            j = i + 1
            parts: list[str] = []
            while src[j] != "`":
                if src[j] == "\\":
                    parts.append(src[j : j + 2])
                    j += 2
                elif src.startswith("${", j):
                    depth = 1
                    k = j + 2
                    while depth:
                        if src[k] == "{":
                            depth += 1
                        elif src[k] == "}":
                            depth -= 1
                        elif src[k] in "\"'`":
                            q = src[k]
                            k += 1
                            while src[k] != q:
                                k += 2 if src[k] == "\\" else 1
                        k += 1
                    parts.append(" ")
                    j = k
                else:
                    parts.append(src[j])
                    j += 1
            judge("".join(parts), i)
            tokens.append('"')
            i = j + 1
            continue
        if c == "/" and (tokens[-1] if tokens else "") in REGEX_AFTER:
            j = i + 1
            in_class = False
            while src[j] != "/" or in_class:
                if src[j] == "\\":
                    j += 1
                elif src[j] == "[":
                    in_class = True
                elif src[j] == "]":
                    in_class = False
                j += 1
            j += 1
            while j < n and src[j].isalpha():
                j += 1
            tokens.append("regex")
            i = j
            continue
        m = re.match(r"[A-Za-z_$][\w$]*", src[i:])
        if m:
            word = m.group(0)
            top = stack[-1]
            if top.bracket == "{" and tokens and tokens[-1] in {"{", ","}:
                top.key = word
            tokens.append(word)
            i += len(word)
            continue
        m = re.match(r"\d[\w.]*", src[i:])
        if m:
            tokens.append("0")
            i += len(m.group(0))
            continue
        if c in "([{":
            call = None
            if c == "(" and tokens and re.fullmatch(r"[A-Za-z_$][\w$]*", tokens[-1]):
                call = tokens[-1]
            stack.append(_Frame(c, call=call))
            tokens.append(c)
        elif c in ")]}":
            if len(stack) > 1:
                stack.pop()
            tokens.append(c)
        elif c == ",":
            top = stack[-1]
            top.arg += 1
            top.key = None
            tokens.append(c)
        elif src.startswith("=>", i):
            tokens.append("=>")
            i += 2
            continue
        elif src.startswith("...", i):
            tokens.append("...")
            i += 3
            continue
        else:
            # == and === are not assignments; keep "=" only for a lone one
            m = re.match(r"[=!<>]=+|&&|\|\||\?\?|\?\.|[-+*/%&|^~!<>=?:;.]", src[i:])
            op = m.group(0) if m else c
            tokens.append(op)
            i += len(op)
            continue
        i += 1
    return findings


class _Html(HTMLParser):
    SKIP: ClassVar[set[str]] = {"script", "style", "noscript"}
    VOID: ClassVar[set[str]] = {"meta", "link", "input", "br", "img", "hr", "source", "path"}

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.stack: list[tuple[str, bool]] = []  # tag, whether text in it is filled by main.js
        self.findings: list[Finding] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        for a in VISIBLE_ATTRS:
            if a in names and _words(names[a] or ""):
                self.findings.append(Finding(self.label, self.getpos()[0], names[a] or "", a))
        filled = "data-i18n" in names or (bool(self.stack) and self.stack[-1][1])
        skip = tag in self.SKIP or (bool(self.stack) and self.stack[-1][0] in self.SKIP)
        if tag not in self.VOID:
            self.stack.append((tag if not skip else "script", filled))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not data.strip() or not _words(data):
            return
        if self.stack and (self.stack[-1][0] in self.SKIP or self.stack[-1][1]):
            return
        self.findings.append(Finding(self.label, self.getpos()[0], data.strip(), "text"))


def scan_html(path: Path, name: str | None = None) -> list[Finding]:
    parser = _Html(name or str(path))
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.findings
