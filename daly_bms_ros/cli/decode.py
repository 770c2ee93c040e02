"""``daly-bms decode HEX ...``: decode captured frames to JSON, one object per frame found.

Without the request that asked for it, a frame's block is told by its address and data length:
from 0xD2, 124 bytes is the status block, 160 the 80-register status read, 82 the settings
block, 64 the device-information block, 18 the MOS temperature block; from 0x51 (the 0x81
variant), 128 bytes then 124 bytes are the two halves of one status, 148 bytes the
device-information block.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from daly_bms_ros.capture.format import (
    DISCONNECT,
    NOTIFICATION,
    REQUEST,
    CaptureError,
    CaptureEvent,
    read_events,
)
from daly_bms_ros.protocol import (
    D2,
    DEVICE_INFO_BLOCK,
    MOS_BLOCK,
    SETTINGS_BLOCK,
    STATUS_80_BLOCK,
    STATUS_BLOCK,
    X81,
    X81_DEVICE_INFO_BLOCK,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    DalyProtocolError,
    Frame,
    FrameAssembler,
    HexInputError,
    RejectReason,
    decode_device_info,
    decode_mos_temperature,
    decode_settings,
    decode_status,
    decode_x81_status,
)
from daly_bms_ros.protocol.frames import READ

DECODERS: dict[tuple[int, int], tuple[str, Callable[[Frame], Any]]] = {
    (D2.response_address, STATUS_BLOCK.byte_count): (STATUS_BLOCK.name, decode_status),
    (D2.response_address, STATUS_80_BLOCK.byte_count): (STATUS_80_BLOCK.name, decode_status),
    (D2.response_address, SETTINGS_BLOCK.byte_count): (SETTINGS_BLOCK.name, decode_settings),
    (D2.response_address, MOS_BLOCK.byte_count): (MOS_BLOCK.name, decode_mos_temperature),
    (D2.response_address, DEVICE_INFO_BLOCK.byte_count): (
        DEVICE_INFO_BLOCK.name,
        decode_device_info,
    ),
    (X81.response_address, X81_DEVICE_INFO_BLOCK.byte_count): (
        X81_DEVICE_INFO_BLOCK.name,
        lambda frame: decode_device_info(frame, X81),
    ),
}
X81_PACK = (X81.response_address, X81_PACK_BLOCK.byte_count)
X81_STATE = (X81.response_address, X81_STATE_BLOCK.byte_count)


HEX_DIGITS = frozenset(string.hexdigits)


def parse_hex(text: str) -> bytes:
    """Bytes of hex text; spaces, colons and a 0x prefix are allowed."""
    cleaned = "".join(text.split()).replace(":", "").removeprefix("0x")
    if len(cleaned) % 2 or not cleaned.isascii() or not set(cleaned) <= HEX_DIGITS:
        raise HexInputError(f"not hexadecimal bytes: {text[:80]!r}")
    return bytes.fromhex(cleaned)


def _kind(frame: Frame) -> tuple[int, int]:
    return frame.address, len(frame.payload)


def decode_frame(frame: Frame) -> dict[str, Any]:
    """JSON object for one valid frame, or an ``error`` object when its block is unknown."""
    if frame.function != READ:  # the echo of a write: register and value (or count)
        register, value = frame.registers
        return {"block": "write_answer", "register": register, "value": value}
    block = DECODERS.get(_kind(frame))
    if block is None:
        return {"error": "unknown_block", "data_bytes": len(frame.payload)}
    name, decoder = block
    try:
        return {"block": name, **decoder(frame).to_dict()}
    except DalyProtocolError as error:
        return {"error": "undecodable", "block": name, "detail": str(error)}


def decode_x81_pair(pack: Frame, state: Frame) -> dict[str, Any]:
    """JSON object for the two status blocks of the 0x81 variant, decoded together."""
    try:
        status = decode_x81_status(pack, state)
    except DalyProtocolError as error:
        return {"error": "undecodable", "block": "x81_status", "detail": str(error)}
    return {"block": "x81_status", **status.to_dict()}


def decode_frames(frames: list[Frame]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Decode each frame; a 0x81 status is two frames, decoded as one.

    The two halves pair when they follow each other in either order (the driver asks the pack
    block first, Daly's app the other one). Yields each object with the index of the frame that
    completed it.
    """
    halves = {X81_PACK: X81_PACK_BLOCK.name, X81_STATE: X81_STATE_BLOCK.name}
    pending: tuple[int, Frame] | None = None
    for index, frame in enumerate(frames):
        kind = _kind(frame)
        if pending is not None:
            first_index, first = pending
            pending = None
            if kind in halves and kind != _kind(first):
                pack, state = (first, frame) if kind == X81_STATE else (frame, first)
                yield index, decode_x81_pair(pack, state)
                continue
            yield first_index, {"error": "incomplete_x81_status", "block": halves[_kind(first)]}
        if kind in halves:
            pending = index, frame
        else:
            yield index, decode_frame(frame)
    if pending is not None:
        first_index, first = pending
        yield first_index, {"error": "incomplete_x81_status", "block": halves[_kind(first)]}


def _rejections(assembler: FrameAssembler, before: Counter[RejectReason]) -> list[dict[str, Any]]:
    """Return an error object per piece the assembler rejected since ``before``."""
    return [
        {"error": "truncated" if reason is RejectReason.TIMEOUT else reason.value}
        for reason in RejectReason
        for _ in range(assembler.rejected[reason] - before[reason])
    ]


def decode_capture(path: Path) -> Iterator[dict[str, Any]]:
    """Yield an object per frame and per rejected piece of a capture, with its time, in order.

    Notifications are assembled as the driver assembles them; an answer still unfinished when
    the next request is sent, or when the link goes down, is cut short (``truncated``).
    """
    assembler = FrameAssembler()
    framed: list[tuple[CaptureEvent, Frame]] = []
    timed: list[tuple[float, int, CaptureEvent, dict[str, Any]]] = []
    for event in read_events(path):
        before = Counter(assembler.rejected)
        if event.kind == NOTIFICATION:
            frames = assembler.feed(event.data)
        elif event.kind in (REQUEST, DISCONNECT) and assembler.pending:
            frames = assembler.expire()
        else:
            frames = []
        framed += [(event, frame) for frame in frames]
        timed += [(event.t, len(timed), event, error) for error in _rejections(assembler, before)]
    for index, decoded in decode_frames([frame for _, frame in framed]):
        event = framed[index][0]
        timed.append((event.t, len(timed), event, decoded))
    for _, _, event, decoded in sorted(timed, key=lambda item: item[:2]):
        yield {"t": event.t, "wall": event.wall, **decoded}


def decode_stream(data: bytes) -> Iterator[dict[str, Any]]:
    """Yield an object per valid frame, in order, then one ``error`` object per rejected piece.

    A frame cut short at the end of the input is ``truncated``; frames after a cut-short one
    are still found.
    """
    assembler = FrameAssembler()
    for _, decoded in decode_frames(assembler.feed(data) + assembler.expire()):
        yield decoded
    yield from _rejections(assembler, Counter())


def add_parser(subparsers: Any) -> None:
    """Register the ``decode`` subcommand."""
    parser = subparsers.add_parser("decode", help="decode captured frames (hex) to JSON lines")
    parser.add_argument(
        "hex", nargs="*", help="frames as hex, with or without spaces; - reads standard input"
    )
    parser.add_argument(
        "--capture",
        type=Path,
        metavar="FILE",
        help="decode a capture of daly-bms record (or a converted nRF Connect log): one JSON "
        "object per frame, with its time",
    )
    parser.add_argument(
        "--file",
        "-f",
        action="append",
        default=[],
        metavar="FILE",
        help="read hex from FILE (repeatable; - is standard input): for input too long for "
        "arguments",
    )
    parser.set_defaults(handler=run)


def _hex_texts(arguments: argparse.Namespace) -> Iterator[str]:
    """Yield the hex texts to decode: arguments, then files ("-": standard input)."""
    for text in arguments.hex:
        yield sys.stdin.read() if text == "-" else text
    for path in arguments.file:
        yield sys.stdin.read() if path == "-" else Path(path).read_text(encoding="ascii")


def run(arguments: argparse.Namespace) -> int:
    """Print the JSON objects; exit status 0 only when every frame decoded."""
    if not arguments.hex and not arguments.file and not arguments.capture:
        print(
            "daly-bms decode: give frames as hex, - (standard input), --file or --capture",
            file=sys.stderr,
        )
        return 2
    try:
        if arguments.capture:
            return _print_all(decode_capture(arguments.capture))
        data = b"".join(parse_hex(text) for text in _hex_texts(arguments))
    except (OSError, UnicodeDecodeError, CaptureError) as error:
        print(f"daly-bms decode: cannot read: {error}", file=sys.stderr)
        return 2
    except HexInputError as error:
        print(json.dumps({"error": "bad_hex", "detail": str(error)}))
        return 1
    return _print_all(decode_stream(data))


def _print_all(results: Iterable[dict[str, Any]]) -> int:
    """Print the objects as JSON lines; 0 only when there were some and none was an error."""
    printed = failed = 0
    for result in results:
        print(json.dumps(result))
        printed += 1
        failed += "error" in result
    return 0 if printed and not failed else 1
