"""``daly-bms decode HEX ...``: decode captured frames to JSON, one object per frame found.

Hex input starting with A5's start byte is A5 frames: each answer is decoded alone, and the
answers of a whole poll together as one status (``decode_a5``). Else it is D2/0x81 frames;
without the request that asked for it, a frame's block is told by its address and data
length: from 0xD2, 124 bytes is the status block, 160 the 80-register status read, 82 the
settings block, 64 the device-information block, 18 the MOS temperature block; from 0x51 (the
0x81 variant), 128 bytes then 124 bytes are the two halves of one status, 148 bytes the
device-information block. A capture (``--capture``) has the requests: each answer is decoded
as the block its request asked for; a capture of a CAN bus holds each answer's CAN frames, each
decoded as the A5 frame it carries.
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
from typing import Any, Generic, TypeVar

from daly_bms_ros.capture.files import CHUNK_BYTES, InputFileError, read_chunks
from daly_bms_ros.capture.format import (
    DISCONNECT,
    NOTIFICATION,
    REQUEST,
    CaptureEvent,
    can_frames,
    read_events,
)
from daly_bms_ros.cli.decode_a5 import A5Poll, decode_a5_frames
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
    Block,
    DalyProtocolError,
    Frame,
    FrameAssembler,
    HexInputError,
    RejectReason,
    Variant,
    decode_device_info,
    decode_mos_temperature,
    decode_settings,
    decode_status,
    decode_x81_status,
)
from daly_bms_ros.protocol.a5 import START as A5_START
from daly_bms_ros.protocol.a5 import A5Assembler, A5Frame
from daly_bms_ros.protocol.can_id import a5_answer
from daly_bms_ros.protocol.frames import READ, parse_read_request

#: Every block a frame is decoded as: by the variant that answers, the registers asked.
BLOCKS: tuple[tuple[Variant, Block, Callable[[Frame], Any]], ...] = (
    (D2, STATUS_BLOCK, decode_status),
    (D2, STATUS_80_BLOCK, decode_status),
    (D2, SETTINGS_BLOCK, decode_settings),
    (D2, MOS_BLOCK, decode_mos_temperature),
    (D2, DEVICE_INFO_BLOCK, decode_device_info),
    (X81, X81_DEVICE_INFO_BLOCK, lambda frame: decode_device_info(frame, X81)),
)
#: Without the request: a block told by the address and the data length.
DECODERS: dict[tuple[int, int], tuple[str, Callable[[Frame], Any]]] = {
    (variant.response_address, block.byte_count): (block.name, decoder)
    for variant, block, decoder in BLOCKS
}
#: With the request: a block told by the address and the registers asked.
ASKED: dict[tuple[int, int, int], tuple[str, Callable[[Frame], Any]]] = {
    (variant.response_address, block.start, block.count): (block.name, decoder)
    for variant, block, decoder in BLOCKS
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


def decode_frame(frame: Frame, asked: Block | None = None) -> dict[str, Any]:
    """JSON object for one valid frame, or an ``error`` object when its block is unknown.

    ``asked``: the registers of the read it answers, where known (a capture's request): a
    block is then told by them, not by its length alone; registers of no known block are
    given as they are.
    """
    if frame.function != READ:  # the echo of a write: register and value (or count)
        register, value = frame.registers
        return {"block": "write_answer", "register": register, "value": value}
    if asked is not None and asked.byte_count == len(frame.payload):
        block = ASKED.get((frame.address, asked.start, asked.count))
        if block is None:
            registers = list(frame.registers)
            return {"block": "registers", "start": asked.start, "registers": registers}
    else:
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

    def push(
        self, tag: Tag, frame: Frame, asked: Block | None = None
    ) -> list[tuple[Tag, dict[str, Any]]]:
        """Take the next frame (``asked``: see ``decode_frame``); return what it completed."""
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
            decoded.append((tag, decode_frame(frame, asked)))
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


def _rejections(
    rejected: Counter[RejectReason], before: Counter[RejectReason]
) -> list[dict[str, Any]]:
    """Return an error object per piece rejected (``rejected``) since ``before``."""
    return [
        {"error": "truncated" if reason is RejectReason.TIMEOUT else reason.value}
        for reason in RejectReason
        for _ in range(rejected[reason] - before[reason])
    ]


def _asked(request: bytes) -> Block | None:
    """Return the registers a D2 or 0x81 read request asks for, None for any other request."""
    return parse_read_request(request, D2) or parse_read_request(request, X81)


def decode_capture(path: Path) -> Iterator[dict[str, Any]]:
    """Yield an object per frame and per rejected piece of a capture, with its time, as read.

    Notifications are assembled as the driver assembles them, in the protocol of the request
    before them (A5, else D2/0x81), and a D2/0x81 answer is decoded as the block its request
    asked for; an answer still unfinished when the next request is sent, or when the link goes
    down, is cut short (``truncated``). The objects come in the order of time, at one time the
    rejected pieces first; a capture is read as it goes, one event at a time: held back are
    only the objects after half a 0x81 status, until the next frame tells whether it pairs.
    """
    modbus, a5 = FrameAssembler(), A5Assembler()
    pairing: X81Pairing[CaptureEvent] = X81Pairing()
    poll = A5Poll()
    a5_listening = False
    asked: Block | None = None
    held: list[tuple[tuple[float, int, int], CaptureEvent, dict[str, Any]]] = []
    count = itertools.count()
    last: CaptureEvent | None = None
    for event in read_events(path):
        last = event
        before = modbus.rejected + a5.rejected
        objects: list[dict[str, Any]] = []
        frames: list[Frame] = []
        carried = can_frames(event)
        if event.kind == NOTIFICATION and carried is not None:
            objects = [o for frame in carried for o in _can_answer(*frame, poll)]
        elif event.kind == NOTIFICATION and a5_listening:
            objects = [o for frame in a5.feed(event.data) for o in poll.push(frame)]
        elif event.kind == NOTIFICATION:
            frames = modbus.feed(event.data)
        elif event.kind in (REQUEST, DISCONNECT):
            frames = modbus.expire() if modbus.pending else []
            objects = [o for frame in a5.expire() for o in poll.push(frame)] if a5.pending else []
            if event.kind == REQUEST:
                a5_listening = event.data[:1] == bytes((A5_START,))
                asked = _asked(event.data)
        rejected = _rejections(modbus.rejected + a5.rejected, before)
        held += [((event.t, 0, next(count)), event, e) for e in rejected]
        held += [((event.t, 1, next(count)), event, o) for o in objects]
        for frame in frames:
            held += [((e.t, 1, next(count)), e, o) for e, o in pairing.push(event, frame, asked)]
        if not pairing.pending:
            yield from _timed(held)
            held = []
    held += [((e.t, 1, next(count)), e, o) for e, o in pairing.finish()]
    if last is not None:
        held += [((last.t, 1, next(count)), last, o) for o in poll.finish()]
    yield from _timed(held)


def _can_answer(identifier: int, data: bytes, poll: A5Poll) -> list[dict[str, Any]]:
    """Decode one CAN frame of a Daly answer as the A5 frame it carries (``can_id`` added)."""
    raw = a5_answer(identifier, data)
    if raw is None:
        return [{"error": "not_daly", "can_id": f"{identifier:08x}", "data": data.hex()}]
    objects = poll.push(A5Frame(raw[1], raw[2], raw[4:12]))
    objects[-1]["can_id"] = f"{identifier:08x}"  # the frame's own object comes last
    return objects


def _timed(
    held: list[tuple[tuple[float, int, int], CaptureEvent, dict[str, Any]]],
) -> Iterator[dict[str, Any]]:
    for _, event, decoded in sorted(held, key=lambda item: item[0]):
        yield {"t": event.t, "wall": event.wall, **decoded}


def decode_chunks(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Yield an object per valid frame, in order, then one ``error`` object per rejected piece.

    The bytes come in chunks, each assembled as it comes; they are A5 frames where the first
    byte is A5's start, else D2/0x81 frames. A frame cut short at the end of the input is
    ``truncated``; frames after a cut-short one are still found.
    """
    pieces = iter(chunks)
    first = next((chunk for chunk in pieces if chunk), b"")
    every = itertools.chain((first,), pieces)
    if first[:1] == bytes((A5_START,)):
        return _decode_a5_chunks(every)
    return _decode_modbus_chunks(every)


def _decode_modbus_chunks(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    assembler = FrameAssembler()
    frames = _assembled(assembler.feed, assembler.expire, chunks)
    yield from (decoded for _, decoded in decode_frames(frames))
    yield from _rejections(assembler.rejected, Counter())


def _decode_a5_chunks(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    assembler = A5Assembler()
    yield from decode_a5_frames(_assembled(assembler.feed, assembler.expire, chunks))
    yield from _rejections(assembler.rejected, Counter())


AnyFrame = TypeVar("AnyFrame")


def _assembled(
    feed: Callable[[bytes], list[AnyFrame]],
    expire: Callable[[], list[AnyFrame]],
    chunks: Iterable[bytes],
) -> Iterator[AnyFrame]:
    """Yield the frames an assembler finds in ``chunks``, and after them what it gives up on."""
    for chunk in chunks:
        yield from feed(chunk)
    yield from expire()


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
    try:
        if arguments.capture:
            return _print_all(decode_capture(arguments.capture))
        texts = _hex_texts(arguments)
        return _print_all(decode_chunks(data for text in texts for data in parse_hex(text)))
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
