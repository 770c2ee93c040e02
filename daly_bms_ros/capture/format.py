"""The capture format: a JSON Lines file of the raw conversation with one BMS.

Version 1. The first line of a file is its header::

    {"type": "header", "format": "daly-bms-capture", "version": 1,
     "driver": "daly_bms_ros 0.1.0", "wall": 1796131941.2, "t": 812.5}

then one line per event, in order, each with ``t`` (monotonic seconds, to time the events
against each other) and ``wall`` (seconds since the epoch, for people):

- ``{"type": "connection", "device": {"name", "address", "gatt", "mtu"}, ...}``: a link
  came up, to this device, over this GATT layout ("fff0" or "ff00") and MTU (null: unknown);
- ``{"type": "request", "hex": "d2030000003ed7b9", ...}``: bytes written to the BMS;
- ``{"type": "notification", "hex": "d2037c0c74...", ...}``: one notification as it came,
  garbage and all;
- ``{"type": "protocol", "variant": "d2", "status_registers": 80, ...}``: the protocol the BMS
  answered, once the driver found it ("d2" or "x81"; the D2 status read of 80 or 62
  registers);
- ``{"type": "disconnect", "reason": "...", ...}``: the link went down.

A rotated file (``FILE.1`` …) starts with the header again. Unknown keys are ignored by
readers of the same version; a later version is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT = "daly-bms-capture"
VERSION = 1
REQUEST = "request"
NOTIFICATION = "notification"
CONNECTION = "connection"
DISCONNECT = "disconnect"
PROTOCOL = "protocol"
EVENT_TYPES = (REQUEST, NOTIFICATION, CONNECTION, DISCONNECT, PROTOCOL)


def driver_version() -> str:
    """Return the name and version of the driver that writes a capture."""
    try:
        return f"daly_bms_ros {metadata.version('daly-bms-ros')}"
    except metadata.PackageNotFoundError:  # installed by colcon, not pip
        return "daly_bms_ros"


def header_line(source: str = "") -> str:
    """Return the first line of a capture file (``source``: what it was converted from)."""
    header = {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "driver": driver_version(),
        "wall": time.time(),
        "t": time.monotonic(),
    }
    return json.dumps(header | ({"source": source} if source else {}))


def event_line(
    kind: str, data: bytes = b"", at: tuple[float, float] | None = None, **details: Any
) -> str:
    """Return one event as a line, stamped ``at`` (monotonic, wall) or now."""
    t, wall = at if at is not None else (time.monotonic(), time.time())
    record: dict[str, Any] = {"type": kind, "t": round(t, 6), "wall": round(wall, 6)}
    if kind in (REQUEST, NOTIFICATION):
        record["hex"] = data.hex()
    return json.dumps(record | details)


class CaptureError(ValueError):
    """A file that is not a capture this version can read; the message says where and why."""


@dataclass(frozen=True)
class CaptureEvent:
    """One event of a capture."""

    kind: str
    t: float
    wall: float
    data: bytes = b""
    details: Mapping[str, Any] = field(default_factory=dict)


def read_events(path: Path) -> Iterator[CaptureEvent]:
    """Yield the events of a capture file, checking its header (CaptureError when wrong)."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                kind = record["type"]
                if kind == "header":
                    _check_header(record)
                    continue
                if number == 1:
                    raise CaptureError("no header: not a capture file")
                if kind not in EVENT_TYPES:
                    raise CaptureError(f"unknown event type {kind!r}")
                data = bytes.fromhex(record.get("hex", ""))
                yield CaptureEvent(
                    kind,
                    float(record["t"]),
                    float(record["wall"]),
                    data,
                    {k: v for k, v in record.items() if k not in ("type", "t", "wall", "hex")},
                )
            except (ValueError, KeyError, TypeError) as error:
                raise CaptureError(f"{path}:{number}: {error}") from error


def _check_header(record: Mapping[str, Any]) -> None:
    if record.get("format") != FORMAT:
        raise CaptureError(f"format {record.get('format')!r} is not {FORMAT!r}")
    if not isinstance(record.get("version"), int) or record["version"] > VERSION:
        raise CaptureError(f"capture version {record.get('version')!r}; this reads {VERSION}")
