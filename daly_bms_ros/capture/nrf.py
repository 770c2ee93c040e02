"""Turn an nRF Connect log (Nordic's app, as users paste it in issue threads) into a capture.

The log's grammar (nRF Connect for Android; e.g. patman15/BMS_BLE-HA#806): a first line
``nRF Connect, 2026-08-26``, a second with the device ``DL-D11A04015994 (D1:1A:04:01:59:94)``,
then lines of a level letter, a TAB, ``HH:MM:SS.mmm``, a TAB and a message. Bytes are written
``(0x) 51-03-7C-...``; a notification is logged twice, as ``Notification received from
<uuid>, value: (0x) ...`` (level I) and as ``"(0x) ..." received`` (level A, sometimes a
millisecond later, sometimes alone); a write as ``"(0x) ..." sent`` and ``Data written to
<uuid>, value: (0x) ...``. Each notification and write becomes one event; ``Connected to``,
``Disconnected`` and ``MTU changed to`` become the connection's events and details. The log's
times carry no time zone: they are taken as UTC.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from daly_bms_ros.capture.format import (
    CONNECTION,
    DISCONNECT,
    MTU_RANGE,
    NOTIFICATION,
    REQUEST,
    CaptureError,
    event_line,
    header_line,
)

T = TypeVar("T")

_TITLE = re.compile(r"nRF Connect, (\d{4}-\d{2}-\d{2})")
#: The device's address, after its name: searched for, as a pattern that starts with the name
#: (any text, then spaces) would try every split of a line of spaces: quadratic time.
_DEVICE = re.compile(r"\((?P<address>(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})\)")
_LINE = re.compile(r"(?P<level>[VDIAWE])\t(?P<time>\d{2}:\d{2}:\d{2}\.\d{3})\t(?P<message>.*)")
_HEX = r"\(0x\)\s*(?P<hex>[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2})*)"
_MESSAGES = (
    (NOTIFICATION, re.compile(r"Notification received from (?P<uuid>[0-9a-f-]+), value: " + _HEX)),
    (NOTIFICATION, re.compile(r'"' + _HEX + r'" received')),
    (REQUEST, re.compile(r"Data written to (?P<uuid>[0-9a-f-]+), value: " + _HEX)),
    (REQUEST, re.compile(r'"' + _HEX + r'" sent')),
)
_CONNECTED = re.compile(r"Connected to ")
_DISCONNECTED = re.compile(r"Disconnected")
_MTU = re.compile(r"MTU changed to: (?P<mtu>[0-9]+)")
#: The most digits an MTU has (65535).
_MTU_DIGITS = len(str(MTU_RANGE.stop - 1))
#: The same bytes logged twice (I and A lines) at most this far apart are one event.
_TWIN_WINDOW_S = 0.05
#: The notify characteristic tells the GATT layout.
_LAYOUT_BY_NOTIFY = {"0000fff1": "fff0", "0000ff01": "ff00"}


def convert_nrf_log(lines: Iterable[str], source: str = "log") -> Iterator[str]:
    """Yield the lines of a capture holding what the log shows (CaptureError if it is none).

    ``source`` names the log in errors, which tell the line: a date or time that does not exist,
    an MTU that is none.
    """
    numbered = enumerate(lines, start=1)
    _, first = next(numbered, (1, ""))
    title = _TITLE.match(first.strip())
    if title is None:
        raise CaptureError(
            f"{source}: not an nRF Connect log: its first line is not 'nRF Connect, <date>'"
        )
    day = _parsed(datetime.date.fromisoformat, title.group(1), "date", f"{source}:1")
    _, second = next(numbered, (2, ""))
    device_line = _DEVICE.search(second)
    device: dict[str, Any] = {
        "name": second[: device_line.start()].strip() if device_line else "",
        "address": device_line.group("address").upper() if device_line else "",
        "gatt": None,
        "mtu": None,
    }
    yield header_line(source="nRF Connect log")
    events: list[tuple[str, float, bytes]] = []
    connected_at: float | None = None
    for number, raw in numbered:
        line = _LINE.match(raw.rstrip("\r\n"))
        if line is None:
            continue  # the service list and other lines without level and time
        where = f"{source}:{number}"
        clock = _parsed(datetime.time.fromisoformat, line.group("time"), "time", where)
        wall = datetime.datetime.combine(day, clock, datetime.timezone.utc).timestamp()
        message = line.group("message")
        if mtu := _MTU.match(message):
            device["mtu"] = _mtu(mtu.group("mtu"), where)
        elif _CONNECTED.match(message):
            connected_at = wall
        elif _DISCONNECTED.match(message):
            events.append((DISCONNECT, wall, b""))
        for kind, pattern in _MESSAGES:
            if found := pattern.search(message):
                uuid = found.groupdict().get("uuid") or ""
                device["gatt"] = device["gatt"] or _LAYOUT_BY_NOTIFY.get(uuid[:8])
                data = bytes.fromhex(found.group("hex").replace("-", ""))
                if not _twin(events, kind, wall, data):
                    events.append((kind, wall, data))
                break
    if not any(kind in (NOTIFICATION, REQUEST) for kind, _, _ in events):
        raise CaptureError(f"{source}: the log holds no notification and no write")
    start = connected_at if connected_at is not None else events[0][1]
    yield event_line(CONNECTION, at=(0.0, start), device=device)
    for kind, wall, data in events:
        details = {"reason": "nRF Connect: Disconnected"} if kind == DISCONNECT else {}
        yield event_line(kind, data, at=(wall - start, wall), **details)


def _parsed(parse: Callable[[str], T], text: str, what: str, where: str) -> T:
    """Parse a date or a time of the log; CaptureError for one that does not exist."""
    try:
        return parse(text)
    except ValueError:
        raise CaptureError(f"{where}: no such {what} {text!r}") from None


def _mtu(digits: str, where: str) -> int:
    """Return the MTU of an "MTU changed to" line; CaptureError for one no link has."""
    if len(digits) > _MTU_DIGITS or int(digits) not in MTU_RANGE:
        shown = digits if len(digits) <= _MTU_DIGITS else f"of {len(digits)} digits"
        raise CaptureError(f"{where}: MTU {shown} is not {MTU_RANGE.start}..{MTU_RANGE.stop - 1}")
    return int(digits)


def _twin(events: list[tuple[str, float, bytes]], kind: str, wall: float, data: bytes) -> bool:
    """Whether the last event is this one, logged a second time."""
    if not events:
        return False
    last_kind, last_wall, last_data = events[-1]
    return last_kind == kind and last_data == data and wall - last_wall <= _TWIN_WINDOW_S
