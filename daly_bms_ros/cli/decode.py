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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def decode_frames(frames: list[Frame]) -> Iterator[dict[str, Any]]:
    """Decode each frame; a 0x81 status is two frames, pack then state, decoded as one."""
    pending: Frame | None = None
    for frame in frames:
        if pending is not None:
            if _kind(frame) == X81_STATE:
                yield decode_x81_pair(pending, frame)
                pending = None
                continue
            yield {"error": "incomplete_x81_status", "block": X81_PACK_BLOCK.name}
            pending = None
        if _kind(frame) == X81_PACK:
            pending = frame
        elif _kind(frame) == X81_STATE:
            yield {"error": "incomplete_x81_status", "block": X81_STATE_BLOCK.name}
        else:
            yield decode_frame(frame)
    if pending is not None:
        yield {"error": "incomplete_x81_status", "block": X81_PACK_BLOCK.name}


def decode_stream(data: bytes) -> Iterator[dict[str, Any]]:
    """Yield an object per valid frame, in order, then one ``error`` object per rejected piece.

    A frame cut short at the end of the input is ``truncated``; frames after a cut-short one
    are still found.
    """
    assembler = FrameAssembler()
    yield from decode_frames(assembler.feed(data) + assembler.expire())
    for reason in RejectReason:
        name = "truncated" if reason is RejectReason.TIMEOUT else reason.value
        for _ in range(assembler.rejected[reason]):
            yield {"error": name}


def add_parser(subparsers: Any) -> None:
    """Register the ``decode`` subcommand."""
    parser = subparsers.add_parser("decode", help="decode captured frames (hex) to JSON lines")
    parser.add_argument(
        "hex", nargs="*", help="frames as hex, with or without spaces; - reads standard input"
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
    if not arguments.hex and not arguments.file:
        print("daly-bms decode: give frames as hex, - (standard input) or --file", file=sys.stderr)
        return 2
    try:
        data = b"".join(parse_hex(text) for text in _hex_texts(arguments))
    except (OSError, UnicodeDecodeError) as error:
        print(f"daly-bms decode: cannot read: {error}", file=sys.stderr)
        return 2
    except HexInputError as error:
        print(json.dumps({"error": "bad_hex", "detail": str(error)}))
        return 1
    results = list(decode_stream(data))
    for result in results:
        print(json.dumps(result))
    return 0 if results and all("error" not in result for result in results) else 1
