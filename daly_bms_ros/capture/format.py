"""The capture format: a JSON Lines file of the raw conversation with one BMS.

Version 1. The first line of a file is its header::

    {"type": "header", "format": "daly-bms-capture", "version": 1,
     "driver": "daly_bms_ros 0.1.0", "wall": 1796131941.2, "t": 812.5}

then one line per event, in order, each with ``t`` (monotonic seconds, to time the events
against each other) and ``wall`` (seconds since the epoch, for people):

- ``{"type": "connection", "device": {"name", "address", "gatt", "mtu"}, ...}``: a link
  came up, to this device, over this GATT layout ("fff0" or "ff00") and MTU (null: unknown);
  over a serial port the device is ``{"transport": "serial", "port", "baudrate"}``, on a CAN
  bus ``{"transport": "can", "interface", "channel", "bitrate", "bms_address"}``;
- ``{"type": "request", "hex": "d2030000003ed7b9", ...}``: bytes written to the BMS;
- ``{"type": "notification", "hex": "d2037c0c74...", ...}``: one notification as it came,
  garbage and all;
- on a CAN bus, a request and a notification also hold the CAN frames they were, identifier
  and data: ``"can": [["18904001", "0214000075390320"]]`` (``hex`` is the A5 frame each
  carries, as a UART sends it);
- ``{"type": "protocol", "variant": "d2", "status_registers": 80, ...}``: the protocol the BMS
  answered, once the driver found it ("d2" or "x81"; the D2 status read of 80 or 62
  registers);
- ``{"type": "disconnect", "reason": "...", ...}``: the link went down.

A rotated file (``FILE.1`` …) starts with the header again. Unknown keys are ignored by
readers of the same version; a later version is refused, and so is a file whose known keys hold
values of the wrong type (``read_events`` says where).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from daly_bms_ros.capture.files import InputFileError, read_lines
from daly_bms_ros.protocol.gatt import GATT_LAYOUTS

FORMAT = "daly-bms-capture"
VERSION = 1
REQUEST = "request"
NOTIFICATION = "notification"
CONNECTION = "connection"
DISCONNECT = "disconnect"
PROTOCOL = "protocol"
#: The key of the CAN frames of a request or notification on a CAN bus.
CAN = "can"
#: The largest 29-bit identifier, and a CAN frame's most data bytes.
_MAX_CAN_ID, _MAX_CAN_DATA = (1 << 29) - 1, 8
EVENT_TYPES = (REQUEST, NOTIFICATION, CONNECTION, DISCONNECT, PROTOCOL)
GATT_LAYOUT_NAMES = tuple(layout.name for layout in GATT_LAYOUTS)
#: The ATT MTU of a link: 23 at least, a 16-bit number.
MTU_RANGE = range(23, 65536)


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


class CaptureError(InputFileError):
    """A file that is not a capture this version can read; the message says where and why."""


@dataclass(frozen=True)
class CaptureEvent:
    """One event of a capture."""

    kind: str
    t: float
    wall: float
    data: bytes = b""
    details: Mapping[str, Any] = field(default_factory=dict)


def read_events(path: Path, max_bytes: int | None = None) -> Iterator[CaptureEvent]:
    """Yield the events of a capture file, as they are read (CaptureError when wrong).

    The first line that is not blank must be the header. Whatever the file holds, an event
    the readers use has the fields they use, of the types they use: its times finite numbers,
    its bytes hex, a connection's device an object. ``max_bytes``: refuse a larger file.
    """
    header_seen = False
    for number, line in read_lines(path, max_bytes=max_bytes):
        if not line.strip():
            continue
        try:
            record = _json_object(line)
            if record.get("type") == "header":
                _check_header(record)
                header_seen = True
                continue
            if not header_seen:
                raise CaptureError("no header: not a capture file")
            event = _event(record)
        except CaptureError as error:
            raise CaptureError(f"{path}:{number}: {error}") from None
        yield event
    if not header_seen:
        raise CaptureError(f"{path}: no header: not a capture file")


def _shown(value: object) -> str:
    """Show a value in an error message: its repr, cut short (a line may hold 64 KiB)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _refuse_constant(name: str) -> Any:
    raise CaptureError(f"{name} is not a JSON number")


def _json_object(line: str) -> dict[str, Any]:
    """Parse one line as a JSON object: strict JSON (no NaN), as deep as Python decodes."""
    try:
        record = json.loads(line, parse_constant=_refuse_constant)
    except RecursionError:
        raise CaptureError("JSON nested too deeply") from None
    except ValueError as error:
        raise CaptureError(f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise CaptureError(f"a JSON {type(record).__name__}, not an object")
    return record


def _event(record: Mapping[str, Any]) -> CaptureEvent:
    kind = record.get("type")
    if kind not in EVENT_TYPES:
        raise CaptureError(f"unknown event type {_shown(kind)}")
    hex_text = record.get("hex", "")
    if not isinstance(hex_text, str):
        raise CaptureError(f"hex {_shown(hex_text)} is not text")
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        raise CaptureError(f"hex {_shown(hex_text)} is not hexadecimal bytes") from None
    if kind == CONNECTION:
        _check_device(record.get("device"))
    if CAN in record:
        _check_can_frames(record[CAN])
    return CaptureEvent(
        kind,
        _seconds(record, "t"),
        _seconds(record, "wall"),
        data,
        {k: v for k, v in record.items() if k not in ("type", "t", "wall", "hex")},
    )


def can_record(frames: Iterable[tuple[int, bytes]]) -> list[list[str]]:
    """Return CAN frames as a capture holds them: identifier and data, each as hex."""
    return [[f"{identifier:08x}", data.hex()] for identifier, data in frames]


def can_frames(event: CaptureEvent) -> list[tuple[int, bytes]] | None:
    """Return the CAN frames an event holds (checked by ``read_events``), None when none."""
    frames = event.details.get(CAN)
    if frames is None:
        return None
    return [(int(identifier, 16), bytes.fromhex(data)) for identifier, data in frames]


def _check_can_frames(frames: object) -> None:
    """Check a ``can`` list: pairs of a 29-bit identifier and up to 8 data bytes, as hex."""
    if not isinstance(frames, list):
        raise CaptureError(f"can {_shown(frames)} is not a list of frames")
    for frame in frames:
        if not (
            isinstance(frame, list)
            and len(frame) == 2
            and all(isinstance(part, str) for part in frame)
        ):
            raise CaptureError(f"CAN frame {_shown(frame)} is not [identifier, data] as hex")
        try:
            identifier, data = int(frame[0], 16), bytes.fromhex(frame[1])
        except ValueError:
            raise CaptureError(f"CAN frame {_shown(frame)} is not hexadecimal") from None
        if not 0 <= identifier <= _MAX_CAN_ID or len(data) > _MAX_CAN_DATA:
            raise CaptureError(f"CAN frame {_shown(frame)}: no such identifier or data length")


def _seconds(record: Mapping[str, Any], key: str) -> float:
    value = record.get(key)
    seconds = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an integer of hundreds of digits
            seconds = float(value)
    if not math.isfinite(seconds):
        raise CaptureError(f"{key} {_shown(value)} is not a finite number of seconds")
    return seconds


def _check_mtu(value: object) -> int | None:
    """Return ``value`` if it is an ATT MTU (or None: unknown); CaptureError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in MTU_RANGE:
        raise CaptureError(
            f"MTU {_shown(value)} is not {MTU_RANGE.start}..{MTU_RANGE.stop - 1} (or null)"
        )
    return value


def _check_device(device: object) -> None:
    """Check a connection's device: an object; its name, address, GATT layout and MTU."""
    if not isinstance(device, dict):
        raise CaptureError(f"a connection's device is {_shown(device)}, not an object")
    for key in ("name", "address"):
        if key in device and not isinstance(device[key], str):
            raise CaptureError(f"device {key} {_shown(device[key])} is not text")
    gatt = device.get("gatt")
    if gatt is not None and gatt not in GATT_LAYOUT_NAMES:
        raise CaptureError(
            f"device gatt {_shown(gatt)} is not one of {', '.join(GATT_LAYOUT_NAMES)} (or null)"
        )
    _check_mtu(device.get("mtu"))


def _check_header(record: Mapping[str, Any]) -> None:
    if record.get("format") != FORMAT:
        raise CaptureError(f"format {_shown(record.get('format'))} is not {FORMAT!r}")
    version = record.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        raise CaptureError(f"capture version {_shown(version)}; this reads {VERSION}")
