"""The JSON records edgevid writes and publishes: one envelope, three types, one version.

Every line of ``--json`` / ``--events`` and every MQTT payload of ``edgevid run`` is one
JSON object that starts with the same four fields, then those of its type:

    {"type": "result", "schema": 1, "time": "2026-12-04T16:21:25.123Z", "unix": 1796401285.123,
     "stream": 0, "source": "rtsp://cam1/stream", "label": "Walking", ...}

``type`` is ``result`` (one window classified), ``segment`` (an action segment opened or
closed) or ``status`` (the run's health, every ``--status-s`` seconds); ``schema`` is the
version of the layout (:data:`SCHEMA_VERSION`); ``time`` the wall-clock instant in ISO-8601
UTC and ``unix`` the same instant in Unix seconds. The JSON Schema of each type ships in the
package (``edgevid/schemas/<type>.json``, :func:`schema`). Compatibility (docs/outputs.md):
a field added keeps the version, so readers ignore fields they do not know; a field removed,
renamed or given another meaning or type bumps it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib import resources

SCHEMA_VERSION = 1  # bumped by a breaking change to any record type (docs/outputs.md)
TYPES = ("result", "segment", "status")  # one schema file each: edgevid/schemas/<type>.json


def iso_time(unix: float) -> str:
    """Unix seconds -> ISO-8601 UTC with milliseconds: ``2026-12-04T16:21:25.123Z``."""
    t = datetime.fromtimestamp(unix, timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(kind: str, unix: float, body: dict) -> dict:
    """The envelope (type, schema, time, unix) followed by ``body``; ``time`` and ``unix``
    are the same millisecond."""
    unix = round(unix, 3)
    return {"type": kind, "schema": SCHEMA_VERSION, "time": iso_time(unix), "unix": unix,
            **body}  # fmt: skip


def schema(kind: str) -> dict:
    """The JSON Schema (draft 2020-12) of record type ``kind``, as shipped in the package."""
    if kind not in TYPES:
        raise ValueError(f"unknown record type {kind!r}; one of {', '.join(TYPES)}")
    text = resources.files("edgevid").joinpath("schemas", f"{kind}.json").read_text("utf-8")
    return json.loads(text)
