"""Many rows as one parameter: a JSON array unpacked by the server with `jsonb_to_recordset`.

A set-based statement over arrays (`unnest(%s::text[], ...)`) has the driver adapt every element
of every array in Python; one JSON text is made by the C encoder and parsed by the server, so a
batch of a thousand rows costs about what a handful cost. Use it as

    INSERT ... SELECT ... FROM jsonb_to_recordset(%s::jsonb) AS u(k text, ts timestamptz, ...)

with `records(rows)` as the parameter; each row a mapping with the recordset's column names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot send {type(value).__name__} in a JSON recordset")


def records(rows: Iterable[Mapping[str, object]]) -> str:
    """The rows as one compact JSON array (datetimes as ISO 8601, UUIDs as text)."""
    return json.dumps(list(rows), default=_default, separators=(",", ":"), ensure_ascii=False)
