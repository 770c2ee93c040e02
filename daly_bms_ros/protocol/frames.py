"""Requests, responses and the frame assembler that turns notification chunks into frames.

A Daly D2 read request is ``D2 03 <start:2> <count:2> <crc:2>``; the answer is
``D2 03 <n> <n data bytes> <crc:2>``; an error answer is ``D2 83 <code> <crc:2>``. A write of one
register is ``D2 06 <register:2> <value:2> <crc:2>``, answered by the same eight bytes; a write of
several is ``D2 10 <start:2> <count:2> <2*count data bytes> <crc:2>`` (no byte-count byte, unlike
Modbus), answered by ``D2 10 <start:2> <count:2> <crc:2>`` (Daly's Modbus protocol sheet,
syssi/esphome-daly-bms ``docs/dalyModbusProtocol.xlsx``; the echo of 0x06 writes is in that
repository's capture of Daly's app, ``docs/pdus/btsnoop_daly_balancer.log``, and in
fl4p/batmon-ha#356). Multi-byte fields are big-endian except the CRC, which is little-endian.
The newer protocol variant is the same Modbus-style exchange with request address 0x81 and
response address 0x51 (see ``registers`` for its layout).
"""

from __future__ import annotations

import enum
import re
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from daly_bms_ros.protocol.crc import crc16_modbus
from daly_bms_ros.protocol.registers import Block

READ = 0x03
WRITE_SINGLE = 0x06
WRITE_MULTIPLE = 0x10
#: The functions whose answer has a fixed size of 8 bytes: address, function, 4 bytes, CRC.
_WRITE_FUNCTIONS = frozenset((WRITE_SINGLE, WRITE_MULTIPLE))
_ANSWERED_FUNCTIONS = frozenset((READ, *_WRITE_FUNCTIONS))
WRITE_ANSWER_SIZE = 8
ERROR_FLAG = 0x80
#: Modbus allows at most 125 registers in one read.
MAX_DATA_BYTES = 250


@dataclass(frozen=True)
class Variant:
    """One of the two Daly BLE protocols: the address byte of its requests and of its answers."""

    name: str
    request_address: int
    response_address: int


D2 = Variant("d2", 0xD2, 0xD2)
X81 = Variant("x81", 0x81, 0x51)
VARIANTS = (D2, X81)
_RESPONSE_ADDRESSES = frozenset(variant.response_address for variant in VARIANTS)
_ADDRESS = re.compile(
    b"[" + b"".join(re.escape(bytes((a,))) for a in sorted(_RESPONSE_ADDRESSES)) + b"]"
)
#: The start of an answer: a response address, then a function.
_HEADER = re.compile(
    b"(?:"
    + b"|".join(
        re.escape(bytes((a, f)))
        for a in sorted(_RESPONSE_ADDRESSES)
        for f in sorted(_ANSWERED_FUNCTIONS)
    )
    + b")"
)


class RejectReason(enum.Enum):
    """Why bytes received did not become a frame."""

    BAD_CRC = "bad_crc"
    BAD_LENGTH = "bad_length"
    BAD_HEADER = "bad_header"
    TIMEOUT = "timeout"
    ERROR_RESPONSE = "error_response"


@dataclass(frozen=True)
class Frame:
    """A response whose address, function, length and CRC were all valid.

    For a read answer the payload is its data bytes; for a write answer its four bytes after
    the function (register and value, or first register and count).
    """

    payload: bytes
    address: int = D2.response_address
    function: int = READ

    @property
    def registers(self) -> tuple[int, ...]:
        """The payload as big-endian 16-bit registers."""
        return struct.unpack(f">{len(self.payload) // 2}H", self.payload)

    def to_bytes(self) -> bytes:
        """Return the frame as it was on the wire: header, length, payload, CRC."""
        if self.function in _WRITE_FUNCTIONS:
            return _with_crc(bytes((self.address, self.function)) + self.payload)
        return _with_crc(bytes((self.address, READ, len(self.payload))) + self.payload)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16_modbus(body))


def build_read_request(block: Block, variant: Variant = D2) -> bytes:
    """Request that reads ``block`` (e.g. the status block: d2 03 00 00 00 3e d7 b9)."""
    return _with_crc(struct.pack(">BBHH", variant.request_address, READ, block.start, block.count))


def parse_read_request(data: bytes, variant: Variant = D2) -> Block | None:
    """Return the registers a valid read request of ``variant`` asks for, or None."""
    if len(data) != 8 or data[:2] != bytes((variant.request_address, READ)):
        return None
    if crc16_modbus(data[:6]) != struct.unpack_from("<H", data, 6)[0]:
        return None
    start, count = struct.unpack_from(">HH", data, 2)
    return Block("request", start, count)


def build_write_request(register: int, value: int, variant: Variant = D2) -> bytes:
    """Request that writes ``value`` (0..65535) into one register (function 0x06)."""
    return _with_crc(struct.pack(">BBHH", variant.request_address, WRITE_SINGLE, register, value))


def build_write_multiple_request(start: int, values: Sequence[int], variant: Variant = D2) -> bytes:
    """Request that writes ``values`` into registers from ``start`` on (function 0x10).

    Daly's frame carries no byte count after the register count, unlike Modbus.
    """
    header = struct.pack(">BBHH", variant.request_address, WRITE_MULTIPLE, start, len(values))
    return _with_crc(header + struct.pack(f">{len(values)}H", *values))


def parse_write_request(data: bytes, variant: Variant = D2) -> tuple[int, tuple[int, ...]] | None:
    """Return the first register and the values a valid write request of ``variant`` carries."""
    if len(data) < 8 or data[0] != variant.request_address or data[1] not in _WRITE_FUNCTIONS:
        return None
    if crc16_modbus(data[:-2]) != struct.unpack_from("<H", data, len(data) - 2)[0]:
        return None
    register, word = struct.unpack_from(">HH", data, 2)
    if data[1] == WRITE_SINGLE:
        return (register, (word,)) if len(data) == 8 else None
    if len(data) != 8 + 2 * word:
        return None
    return register, struct.unpack_from(f">{word}H", data, 6)


def build_write_answer(request: bytes) -> bytes:
    """Return what a BMS answers to a valid write request.

    One register: the request itself; several: address, function, first register and count.
    """
    if request[1] == WRITE_SINGLE:
        return request
    return _with_crc(request[:6])


def build_response(registers: Sequence[int], variant: Variant = D2) -> bytes:
    """Response frame carrying ``registers`` (what a BMS sends back to a read)."""
    payload = struct.pack(f">{len(registers)}H", *registers)
    return Frame(payload, variant.response_address).to_bytes()


class FrameAssembler:
    """Collect notification chunks and yield only complete, valid frames.

    Sans-I/O: it never waits. The caller feeds bytes as they arrive and calls ``expire`` when an
    answer did not complete in time; every rejected piece is counted in ``rejected`` by reason.
    One bad piece of input is one rejection: a run of bytes that holds no frame (garbage, a frame
    with a broken header or length, and what follows it up to the next header) counts once, under
    the reason that started it. Every byte is looked at a bounded number of times, so any input
    is assembled in linear time.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.rejected: Counter[RejectReason] = Counter()
        #: Inside a run of rejected bytes that has been counted already.
        self._in_garbage = False
        #: Buffer index up to which the bytes belong to a frame rejected for its CRC.
        self._rejected_until = 0

    def reset(self) -> None:
        """Forget buffered bytes (a new connection starts clean); counts are kept."""
        self._buffer.clear()
        self._in_garbage = False
        self._rejected_until = 0

    def expire(self) -> list[Frame]:
        """Give up on the partial frame at the head: count it as a timeout, return what follows.

        The partial frame may hide the start of frames after it (a cut-short answer followed by
        the next one): the bytes after its header are assembled again, and the frames they hold
        are returned.
        """
        frames: list[Frame] = []
        while self._buffer:
            self._count(RejectReason.TIMEOUT)
            cut = self._next_address(1)
            del self._buffer[:cut]
            self._rejected_until = max(0, self._rejected_until - cut)
            frames += self.feed(b"")
        return frames

    @property
    def pending(self) -> int:
        """Bytes waiting for the rest of their frame."""
        return len(self._buffer)

    def feed(self, chunk: bytes | bytearray) -> list[Frame]:
        """Add received bytes; return the frames they completed, in order."""
        buffer = self._buffer
        buffer += chunk
        frames: list[Frame] = []
        position = 0
        end = len(buffer)
        while position < end:
            if buffer[position] not in _RESPONSE_ADDRESSES:
                self._count(RejectReason.BAD_HEADER)
                position = self._next_address(position + 1)
                continue
            if end - position < 3:
                break
            function, length = buffer[position + 1], buffer[position + 2]
            if function in _WRITE_FUNCTIONS:
                if end - position < WRITE_ANSWER_SIZE:
                    break
                if self._crc_ok(position, WRITE_ANSWER_SIZE):
                    self._in_garbage = False
                    payload = bytes(buffer[position + 2 : position + 6])
                    frames.append(Frame(payload, buffer[position], function))
                    position += WRITE_ANSWER_SIZE
                else:
                    # A spoilt echo, or bytes inside a rejected frame that only look like a
                    # write answer (counted with that frame); a frame may start next.
                    if position >= self._rejected_until:
                        self._count(RejectReason.BAD_CRC)
                    position = self._next_address(position + 1)
                continue
            if function & ERROR_FLAG and function & ~ERROR_FLAG in _ANSWERED_FUNCTIONS:
                if end - position < 5:
                    break
                self._in_garbage = False
                ok = self._crc_ok(position, 5)
                self.rejected[RejectReason.ERROR_RESPONSE if ok else RejectReason.BAD_CRC] += 1
                position += 5
                continue
            if function != READ:
                self._count(RejectReason.BAD_HEADER)
                position = self._next_address(position + 1)
                continue
            if length == 0 or length % 2 or length > MAX_DATA_BYTES:
                self._count(RejectReason.BAD_LENGTH)
                position = self._next_address(position + 1)
                continue
            total = 3 + length + 2
            self._in_garbage = False  # a plausible header: what follows is a new piece
            if end - position < total:
                break
            if self._crc_ok(position, total):
                frames.append(
                    Frame(bytes(buffer[position + 3 : position + 3 + length]), buffer[position])
                )
                position += total
            else:
                self.rejected[RejectReason.BAD_CRC] += 1
                self._rejected_until = position + total  # the rest is part of this piece
                # A truncated frame may hide the start of the next one: resume there.
                found = _HEADER.search(buffer, position + 1, position + total)
                position = found.start() if found else position + total
        del buffer[:position]
        self._rejected_until = max(0, self._rejected_until - position)
        return frames

    def _count(self, reason: RejectReason) -> None:
        """Count a rejection, once per run of rejected bytes."""
        if not self._in_garbage:
            self.rejected[reason] += 1
            self._in_garbage = True

    def _crc_ok(self, start: int, total: int) -> bool:
        buffer = self._buffer
        expected = buffer[start + total - 2] | buffer[start + total - 1] << 8
        return crc16_modbus(memoryview(buffer)[start : start + total - 2]) == expected

    def _next_address(self, start: int) -> int:
        """Index of the first response address at or after ``start``, else the buffer's end."""
        found = _ADDRESS.search(self._buffer, start)
        return found.start() if found else len(self._buffer)
