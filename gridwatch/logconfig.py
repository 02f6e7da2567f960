"""Logging for every gridwatch process: one line per event, key=value or JSON."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": record.processName,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger; called once, by the entry point."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Libraries that log every request at INFO (the device drivers poll and stream over HTTP and
    # SOAP): their successes are not news, and their URLs are not for the log.
    for noisy in ("psycopg", "httpx", "httpcore", "zeep", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymodbus logs every failed connect as an ERROR; the modbus driver reports each problem
    # once, with the door (edge.health).
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
