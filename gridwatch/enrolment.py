"""`gridwatch edge --enrol CODE --platform URL`: an installer's first start of a node.

The one-time code is exchanged at the platform (`POST /api/v1/enrol`, the code in the body,
never in the URL; TLS checked against the system's CAs or `--ca`) for the node's complete site
file, secret included. It is written 0600 (its outbox beside it) and the agent runs from it; a
later start finds the file and uses it without asking again, so a used code is never needed
twice. Only the standard library: the edge box has no web stack.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

log = logging.getLogger(__name__)

ENROL_PATH = "/api/v1/enrol"
DEFAULT_SITE_FILE = "site.yaml"
_TIMEOUT_S = 30.0


def enrol_once(args: argparse.Namespace, config: Path | None) -> Path:
    """The site file to run: the one written by an earlier enrolment, or a new one."""
    path = Path(args.site_file or config or DEFAULT_SITE_FILE)
    if path.exists():
        log.info("site file %s is there: enrolled before, running it (the code is not used)", path)
        return path
    if not args.platform:
        raise ValueError("--enrol needs --platform URL, the platform's address (https://...)")
    site = exchange(args.platform, args.enrol, Path(args.ca) if args.ca else None)
    site.setdefault("outbox", {})["path"] = str(path.resolve().parent / "outbox.db")
    write_site_file(path, site)
    log.info("enrolled node=%s site=%s: site file written to %s (0600)",
             site.get("node"), site.get("site"), path)  # fmt: skip
    return path


def exchange(platform: str, code: str, ca: Path | None) -> dict[str, Any]:
    """The site file the platform gives for `code`; ValueError with what to do when it will not."""
    url = platform.rstrip("/") + ENROL_PATH
    scheme = urlsplit(url).scheme
    if scheme not in ("https", "http"):
        raise ValueError(f"--platform {platform!r} is not an http(s) URL")
    if scheme == "http":
        log.warning("enrolling over plain HTTP (%s): the node's secret crosses the network in the"
                    " clear; use https:// outside a test site", platform)  # fmt: skip
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    body = json.dumps({"code": code.strip()}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S, context=context) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ValueError(f"the platform refused the enrolment code ({exc.code}):"
                         f" {_detail(exc)}") from None  # fmt: skip
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise ValueError(
                f"the platform's certificate at {platform} is not trusted ({reason.verify_message});"
                " give the CA that signed it with --ca FILE"
            ) from None
        raise ValueError(f"cannot reach the platform at {platform}: {reason}") from None
    except (TimeoutError, ValueError) as exc:
        raise ValueError(f"no usable answer from the platform at {platform}: {exc}") from None
    site = answer.get("site_file") if isinstance(answer, dict) else None
    if not isinstance(site, dict):
        raise ValueError(f"the platform at {platform} answered without a site file")
    return site


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail or exc.reason)


def write_site_file(path: Path, site: dict[str, Any]) -> None:
    """Write a site file 0600 (it holds the node's secret), replacing none by accident."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# gridwatch edge site file, from the platform: it holds this node's secret.\n"
    text += yaml.safe_dump(site, sort_keys=False, allow_unicode=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
