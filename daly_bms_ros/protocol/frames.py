"""Requests, responses and the frame assembler that turns notification chunks into frames.

A Daly D2 read request is ``D2 03 <start:2> <count:2> <crc:2>``; the answer is
``D2 03 <n> <n data bytes> <crc:2>``; an error answer is ``D2 83 <code> <crc:2>``. Multi-byte
fields are big-endian except the CRC, which is little-endian. The newer protocol variant is the
same Modbus-style exchange with request address 0x81 and response address 0x51 (see
``registers`` for its layout).
"""

from __future__ import annotations

import enum
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from daly_bms_ros.protocol.crc import crc16_modbus
from daly_bms_ros.protocol.registers import Block

READ = 0x03
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


class RejectReason(enum.Enum):
    """Why bytes received did not become a frame."""

    BAD_CRC = "bad_crc"
    BAD_LENGTH = "bad_length"
    BAD_HEADER = "bad_header"
    TIMEOUT = "timeout"
    ERROR_RESPONSE = "error_response"


@dataclass(frozen=True)
class Frame:
    """A response whose address, function, length and CRC were all valid."""

    payload: bytes
    address: int = D2.response_address

    @property
    def registers(self) -> tuple[int, ...]:
        """The payload as big-endian 16-bit registers."""
        return struct.unpack(f">{len(self.payload) // 2}H", self.payload)

    def to_bytes(self) -> bytes:
        """Return the frame as it was on the wire: header, length, payload, CRC."""
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


def build_response(registers: Sequence[int], variant: Variant = D2) -> bytes:
    """Response frame carrying ``registers`` (what a BMS sends back to a read)."""
    payload = struct.pack(f">{len(registers)}H", *registers)
    return Frame(payload, variant.response_address).to_bytes()


class FrameAssembler:
    """Collect notification chunks and yield only complete, valid frames.

    Sans-I/O: it never waits. The caller feeds bytes as they arrive and calls ``expire`` when an
    answer did not complete in time; every rejected piece is counted in ``rejected`` by reason.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.rejected: Counter[RejectReason] = Counter()

    def reset(self) -> None:
        """Forget buffered bytes (a new connection starts clean); counts are kept."""
        self._buffer.clear()

    def expire(self) -> None:
        """Drop and count a partial frame: the answer it belonged to timed out."""
        if self._buffer:
            self.rejected[RejectReason.TIMEOUT] += 1
            self._buffer.clear()

    @property
    def pending(self) -> int:
        """Bytes waiting for the rest of their frame."""
        return len(self._buffer)

    def feed(self, chunk: bytes | bytearray) -> list[Frame]:
        """Add received bytes; return the frames they completed, in order."""
        buffer = self._buffer
        buffer += chunk
        frames: list[Frame] = []
        while buffer:
            if buffer[0] not in _RESPONSE_ADDRESSES:
                self._skip_to_header()
                continue
            if len(buffer) < 3:
                break
            function = buffer[1]
            if function == READ | ERROR_FLAG:
                if len(buffer) < 5:
                    break
                self._consume_checked(5, RejectReason.ERROR_RESPONSE)
                continue
            length = buffer[2]
            if function != READ:
                self._reject(1, RejectReason.BAD_HEADER)
                continue
            if length == 0 or length % 2 or length > MAX_DATA_BYTES:
                self._reject(1, RejectReason.BAD_LENGTH)
                continue
            total = 3 + length + 2
            if len(buffer) < total:
                break
            if self._crc_ok(total):
                frames.append(Frame(bytes(buffer[3 : 3 + length]), buffer[0]))
                del buffer[:total]
            else:
                self.rejected[RejectReason.BAD_CRC] += 1
                # A truncated frame may hide the start of the next one: resume there.
                next_header = self._next_header(1, total)
                del buffer[: next_header if next_header > 0 else total]
        return frames

    def _crc_ok(self, total: int) -> bool:
        expected = self._buffer[total - 2] | self._buffer[total - 1] << 8
        return crc16_modbus(memoryview(self._buffer)[: total - 2]) == expected

    def _consume_checked(self, total: int, reason: RejectReason) -> None:
        """Drop a short frame that is well-formed but carries no data (an error answer)."""
        self.rejected[reason if self._crc_ok(total) else RejectReason.BAD_CRC] += 1
        del self._buffer[:total]

    def _reject(self, count: int, reason: RejectReason) -> None:
        self.rejected[reason] += 1
        del self._buffer[:count]

    def _next_header(self, start: int, end: int | None = None) -> int:
        """Index of the first response header (address + read function) in the range, or -1."""
        found = [
            index
            for address in _RESPONSE_ADDRESSES
            if (index := self._buffer.find(bytes((address, READ)), start, end)) >= 0
        ]
        return min(found, default=-1)

    def _skip_to_header(self) -> None:
        """Drop the bytes before the next response address."""
        buffer = self._buffer
        found = [index for address in _RESPONSE_ADDRESSES if (index := buffer.find(address)) > 0]
        self._reject(min(found, default=len(buffer)), RejectReason.BAD_HEADER)
