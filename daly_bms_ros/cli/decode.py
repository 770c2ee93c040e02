"""``daly-bms decode HEX ...``: decode captured frames to JSON, one object per frame found.

Without the request that asked for it, a frame's block is told by its data length: 124 bytes is
the status block, 82 the settings block, 64 the device-information block, 18 the MOS
temperature block.
"""

from __future__ import annotations

import argparse
import json
import string
from collections.abc import Callable, Iterator
from typing import Any

from daly_bms_ros.protocol import (
    DEVICE_INFO_BLOCK,
    MOS_BLOCK,
    SETTINGS_BLOCK,
    STATUS_BLOCK,
    DalyProtocolError,
    Frame,
    FrameAssembler,
    HexInputError,
    RejectReason,
    decode_device_info,
    decode_mos_temperature,
    decode_settings,
    decode_status,
)

DECODERS: dict[int, tuple[str, Callable[[Frame], Any]]] = {
    STATUS_BLOCK.byte_count: (STATUS_BLOCK.name, decode_status),
    SETTINGS_BLOCK.byte_count: (SETTINGS_BLOCK.name, decode_settings),
    MOS_BLOCK.byte_count: (MOS_BLOCK.name, decode_mos_temperature),
    DEVICE_INFO_BLOCK.byte_count: (DEVICE_INFO_BLOCK.name, decode_device_info),
}


def parse_hex(text: str) -> bytes:
    """Bytes of hex text; spaces, colons and a 0x prefix are allowed."""
    cleaned = "".join(text.split()).replace(":", "").removeprefix("0x")
    if len(cleaned) % 2 or any(char not in string.hexdigits for char in cleaned):
        raise HexInputError(f"not hexadecimal bytes: {text!r}")
    return bytes.fromhex(cleaned)


def decode_frame(frame: Frame) -> dict[str, Any]:
    """JSON object for one valid frame, or an ``error`` object when its block is unknown."""
    block = DECODERS.get(len(frame.payload))
    if block is None:
        return {"error": "unknown_block", "data_bytes": len(frame.payload)}
    name, decoder = block
    try:
        return {"block": name, **decoder(frame).to_dict()}
    except DalyProtocolError as error:
        return {"error": "undecodable", "block": name, "detail": str(error)}


def decode_stream(data: bytes) -> Iterator[dict[str, Any]]:
    """Yield an object per valid frame, in order, then an ``error`` object per rejected piece."""
    assembler = FrameAssembler()
    yield from (decode_frame(frame) for frame in assembler.feed(data))
    if assembler.pending:
        assembler.expire()
        yield {"error": "truncated"}
    for reason in RejectReason:
        if reason is not RejectReason.TIMEOUT:
            for _ in range(assembler.rejected[reason]):
                yield {"error": reason.value}


def add_parser(subparsers: Any) -> None:
    """Register the ``decode`` subcommand."""
    parser = subparsers.add_parser("decode", help="decode captured frames (hex) to JSON lines")
    parser.add_argument("hex", nargs="+", help="frames as hex, with or without spaces")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Print the JSON objects; exit status 0 only when every frame decoded."""
    try:
        data = b"".join(parse_hex(text) for text in arguments.hex)
    except HexInputError as error:
        print(json.dumps({"error": "bad_hex", "detail": str(error)}))
        return 1
    results = list(decode_stream(data))
    for result in results:
        print(json.dumps(result))
    return 0 if results and all("error" not in result for result in results) else 1
