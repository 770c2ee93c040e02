"""``daly-bms decode HEX ...``: decode captured frames to JSON, one object per frame found.

Without the request that asked for it, a frame's block is told by its address and data length:
from 0xD2, 124 bytes is the status block, 160 the 80-register status read, 82 the settings
block, 64 the device-information block, 18 the MOS temperature block; from 0x51 (the 0x81
variant), 128 bytes then 124 bytes are the two halves of one status, 148 bytes the
device-information block.

A capture of a CAN bus holds each answer's CAN frames: each is decoded as the A5 frame it
carries (its command, the BMS address it came from, the fields of that one frame).
"""

from __future__ import annotations

import argparse
import itertools
import json
import string
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from daly_bms_ros.capture.files import CHUNK_BYTES, InputFileError, read_chunks
from daly_bms_ros.capture.format import (
    DISCONNECT,
    NOTIFICATION,
    REQUEST,
    CaptureEvent,
    can_frames,
    read_events,
)
from daly_bms_ros.cli.exit_codes import ExitCode
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
from daly_bms_ros.protocol.a5 import (
    A5Frame,
    decode_a5_cell_range,
    decode_a5_counts,
    decode_a5_mos,
    decode_a5_pack,
    decode_a5_temperature_range,
)
from daly_bms_ros.protocol.can_id import a5_answer
from daly_bms_ros.protocol.frames import READ
from daly_bms_ros.protocol.registers import (
    A5_CELL_RANGE,
    A5_CELL_VOLTAGES,
    A5_MOS,
    A5_SOC,
    A5_STATUS,
    A5_TEMPERATURE_RANGE,
    A5_TEMPERATURES,
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
#: What a frame is tagged with as it goes through the 0x81 pairing.
Tag = TypeVar("Tag")


HEX_DIGITS = frozenset(string.hexdigits)
#: The characters of hex text taken in one piece: a long argument is cut into pieces of this many,
#: so that what it takes to clean it up stays bounded.
HEX_PIECE = CHUNK_BYTES


def parse_hex(pieces: Iterable[str]) -> Iterator[bytes]:
    """Yield the bytes of one hex text given in pieces (HexInputError where it is not hex).

    Spaces and colons are allowed anywhere, a 0x prefix at its start; its digits are even in
    number. Each piece is converted as it comes: the text may be longer than memory.
    """
    carry = ""
    at_start = True
    for piece in pieces:
        digits = carry + "".join(piece.split()).replace(":", "")
        if at_start:
            if len(digits) < 2:
                carry = digits
                continue
            digits = digits.removeprefix("0x")
            at_start = False
        if not digits.isascii() or not set(digits) <= HEX_DIGITS:
            bad = next(index for index, digit in enumerate(digits) if digit not in HEX_DIGITS)
            raise HexInputError(f"not hexadecimal bytes: {digits[bad : bad + 40]!r}")
        whole = len(digits) - len(digits) % 2
        carry = digits[whole:]
        if whole:
            yield bytes.fromhex(digits[:whole])
    if carry:
        raise HexInputError(f"an odd number of hexadecimal digits, the last {carry!r}")


def pieces_of(text: str) -> Iterator[str]:
    """Cut ``text`` into pieces of HEX_PIECE characters."""
    return (text[start : start + HEX_PIECE] for start in range(0, len(text), HEX_PIECE))


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


class X81Pairing(Generic[Tag]):
    """Decode frames as they come; the two halves of a 0x81 status are decoded as one.

    The two halves pair when they follow each other in either order (the driver asks the pack
    block first, Daly's app the other one). Each frame comes with a tag (its index, the event
    that carried it); each object goes out with the tag of the frame that completed it.
    """

    def __init__(self) -> None:
        self._pending: tuple[Tag, Frame] | None = None

    @property
    def pending(self) -> bool:
        """Whether half a 0x81 status waits for the next frame."""
        return self._pending is not None

    def push(self, tag: Tag, frame: Frame) -> list[tuple[Tag, dict[str, Any]]]:
        """Take the next frame; return the objects it completed."""
        decoded: list[tuple[Tag, dict[str, Any]]] = []
        kind = _kind(frame)
        if self._pending is not None:
            first_tag, first = self._pending
            self._pending = None
            if kind in _X81_HALVES and kind != _kind(first):
                pack, state = (first, frame) if kind == X81_STATE else (frame, first)
                return [(tag, decode_x81_pair(pack, state))]
            decoded.append((first_tag, _incomplete(first)))
        if kind in _X81_HALVES:
            self._pending = tag, frame
        else:
            decoded.append((tag, decode_frame(frame)))
        return decoded

    def finish(self) -> list[tuple[Tag, dict[str, Any]]]:
        """Report the half status left waiting at the end, if any."""
        if self._pending is None:
            return []
        tag, first = self._pending
        self._pending = None
        return [(tag, _incomplete(first))]


_X81_HALVES = {X81_PACK: X81_PACK_BLOCK.name, X81_STATE: X81_STATE_BLOCK.name}


def _incomplete(half: Frame) -> dict[str, Any]:
    return {"error": "incomplete_x81_status", "block": _X81_HALVES[_kind(half)]}


def decode_frames(frames: Iterable[Frame]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Decode each frame as it comes (see X81Pairing).

    Yields each object with the index of the frame that completed it.
    """
    pairing: X81Pairing[int] = X81Pairing()
    for index, frame in enumerate(frames):
        yield from pairing.push(index, frame)
    yield from pairing.finish()


def _rejections(assembler: FrameAssembler, before: Counter[RejectReason]) -> list[dict[str, Any]]:
    """Return an error object per piece the assembler rejected since ``before``."""
    return [
        {"error": "truncated" if reason is RejectReason.TIMEOUT else reason.value}
        for reason in RejectReason
        for _ in range(assembler.rejected[reason] - before[reason])
    ]


def decode_capture(path: Path) -> Iterator[dict[str, Any]]:
    """Yield an object per frame and per rejected piece of a capture, with its time, as read.

    Notifications are assembled as the driver assembles them; an answer still unfinished when
    the next request is sent, or when the link goes down, is cut short (``truncated``). The
    objects come in the order of time, at one time the rejected pieces first; a capture is read
    as it goes, one event at a time: held back are only the objects after half a 0x81 status,
    until the next frame tells whether it pairs.
    """
    assembler = FrameAssembler()
    pairing: X81Pairing[CaptureEvent] = X81Pairing()
    held: list[tuple[tuple[float, int, int], CaptureEvent, dict[str, Any]]] = []
    count = itertools.count()
    for event in read_events(path):
        before = Counter(assembler.rejected)
        carried = can_frames(event)
        if event.kind == NOTIFICATION and carried is not None:
            held += [((event.t, 1, next(count)), event, decode_can_frame(*f)) for f in carried]
            frames = []
        elif event.kind == NOTIFICATION:
            frames = assembler.feed(event.data)
        elif event.kind in (REQUEST, DISCONNECT) and assembler.pending:
            frames = assembler.expire()
        else:
            frames = []
        held += [((event.t, 0, next(count)), event, e) for e in _rejections(assembler, before)]
        for frame in frames:
            held += [((e.t, 1, next(count)), e, o) for e, o in pairing.push(event, frame)]
        if not pairing.pending:
            yield from _timed(held)
            held = []
    held += [((e.t, 1, next(count)), e, o) for e, o in pairing.finish()]
    yield from _timed(held)


class _Fields(Protocol):
    """A decoded A5 answer: a named tuple."""

    def _asdict(self) -> dict[str, Any]: ...


#: The A5 answers one frame tells by itself, and how to decode it.
A5_FRAME_DECODERS: dict[int, Callable[[A5Frame], _Fields]] = {
    A5_SOC: decode_a5_pack,
    A5_CELL_RANGE: decode_a5_cell_range,
    A5_TEMPERATURE_RANGE: decode_a5_temperature_range,
    A5_MOS: decode_a5_mos,
    A5_STATUS: decode_a5_counts,
}


def decode_can_frame(identifier: int, data: bytes) -> dict[str, Any]:
    """Decode one CAN frame of a Daly answer as the A5 frame it carries."""
    raw = a5_answer(identifier, data)
    if raw is None:
        return {"error": "not_daly", "can_id": f"{identifier:08x}", "data": data.hex()}
    frame = A5Frame(raw[1], raw[2], raw[4:12])
    decoded: dict[str, Any] = {
        "can_id": f"{identifier:08x}",
        "bms_address": frame.address,
        "command": f"{frame.command:#04x}",
        "data": data.hex(),
    }
    decode = A5_FRAME_DECODERS.get(frame.command)
    if decode is not None:
        try:
            decoded |= decode(frame)._asdict()
        except DalyProtocolError as error:
            decoded["error"] = str(error)
    elif frame.command in (A5_CELL_VOLTAGES, A5_TEMPERATURES):
        decoded["frame"] = frame.number
    return decoded


def _timed(
    held: list[tuple[tuple[float, int, int], CaptureEvent, dict[str, Any]]],
) -> Iterator[dict[str, Any]]:
    for _, event, decoded in sorted(held, key=lambda item: item[0]):
        yield {"t": event.t, "wall": event.wall, **decoded}


def decode_chunks(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Yield an object per valid frame, in order, then one ``error`` object per rejected piece.

    The bytes come in chunks, each assembled as it comes. A frame cut short at the end of the
    input is ``truncated``; frames after a cut-short one are still found.
    """
    assembler = FrameAssembler()

    def frames() -> Iterator[Frame]:
        for chunk in chunks:
            yield from assembler.feed(chunk)
        yield from assembler.expire()

    for _, decoded in decode_frames(frames()):
        yield decoded
    yield from _rejections(assembler, Counter())


def decode_stream(data: bytes) -> Iterator[dict[str, Any]]:
    """Decode bytes given at once (see ``decode_chunks``)."""
    return decode_chunks([data])


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


def _hex_texts(arguments: argparse.Namespace) -> Iterator[Iterator[str]]:
    """Yield the hex texts to decode, each in pieces: arguments, then files ("-": standard input).

    Files are read in chunks (see ``read_chunks``); a byte that is not ASCII is kept as a
    character that is not hex, for the hex check to report.
    """
    for text in arguments.hex:
        yield _file_text("-") if text == "-" else pieces_of(text)
    for path in arguments.file:
        yield _file_text(path)


def _file_text(path: str) -> Iterator[str]:
    return (chunk.decode("latin-1") for chunk in read_chunks(path))


def run(arguments: argparse.Namespace) -> int:
    """Print the JSON objects; exit status 0 only when every frame decoded.

    A file that cannot be read, or a capture that is not one, ends it with one line on stderr
    and status 2 (what was decoded before stays printed); text that is not hex with a
    ``bad_hex`` object and status 1.
    """
    if not arguments.hex and not arguments.file and not arguments.capture:
        print(
            "daly-bms decode: give frames as hex, - (standard input), --file or --capture",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    if arguments.capture:
        results = decode_capture(arguments.capture)
    else:
        texts = _hex_texts(arguments)
        results = decode_chunks(data for text in texts for data in parse_hex(text))
    try:
        return _print_all(results)
    except InputFileError as error:
        print(f"daly-bms decode: cannot read: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except HexInputError as error:
        print(json.dumps({"error": "bad_hex", "detail": str(error)}))
        return ExitCode.FAILED


def _print_all(results: Iterable[dict[str, Any]]) -> int:
    """Print the objects as JSON lines; 0 only when there were some and none was an error."""
    printed = failed = 0
    for result in results:
        print(json.dumps(result))
        printed += 1
        failed += "error" in result
    return ExitCode.OK if printed and not failed else ExitCode.FAILED
