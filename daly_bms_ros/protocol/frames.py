"""Requests, responses and the frame assembler that turns notification chunks into frames.

A Daly D2 read request is ``D2 03 <start:2> <count:2> <crc:2>``; the answer is
``D2 03 <n> <n data bytes> <crc:2>``; an error answer is ``D2 83 <code> <crc:2>``. Multi-byte
fields are big-endian except the CRC, which is little-endian.
"""

from __future__ import annotations

import enum
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from daly_bms_ros.protocol.crc import crc16_modbus
from daly_bms_ros.protocol.registers import Block

ADDRESS = 0xD2
READ = 0x03
ERROR_FLAG = 0x80
#: Address byte of the newer Daly protocol variant, whose layout is not supported.
VARIANT_ADDRESS = 0x81
#: Modbus allows at most 125 registers in one read.
MAX_DATA_BYTES = 250
_HEADER = bytes((ADDRESS, READ))


class RejectReason(enum.Enum):
    """Why bytes received did not become a frame."""

    BAD_CRC = "bad_crc"
    BAD_LENGTH = "bad_length"
    BAD_HEADER = "bad_header"
    TIMEOUT = "timeout"
    ERROR_RESPONSE = "error_response"
    UNSUPPORTED_VARIANT = "unsupported_variant"


@dataclass(frozen=True)
class Frame:
    """A response whose address, function, length and CRC were all valid."""

    payload: bytes

    @property
    def registers(self) -> tuple[int, ...]:
        """The payload as big-endian 16-bit registers."""
        return struct.unpack(f">{len(self.payload) // 2}H", self.payload)

    def to_bytes(self) -> bytes:
        """Return the frame as it was on the wire: header, length, payload, CRC."""
        return _with_crc(bytes((ADDRESS, READ, len(self.payload))) + self.payload)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16_modbus(body))


def build_read_request(block: Block) -> bytes:
    """Request that reads ``block`` (e.g. the status block: d2 03 00 00 00 3e d7 b9)."""
    return _with_crc(struct.pack(">BBHH", ADDRESS, READ, block.start, block.count))


def parse_read_request(data: bytes) -> Block | None:
    """Return the registers a valid read request asks for, or None for anything else."""
    if len(data) != 8 or data[:2] != _HEADER:
        return None
    if crc16_modbus(data[:6]) != struct.unpack_from("<H", data, 6)[0]:
        return None
    start, count = struct.unpack_from(">HH", data, 2)
    return Block("request", start, count)


def build_response(registers: Sequence[int]) -> bytes:
    """Response frame carrying ``registers`` (what a BMS sends back to a read)."""
    return Frame(struct.pack(f">{len(registers)}H", *registers)).to_bytes()


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
            if buffer[0] != ADDRESS:
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
                frames.append(Frame(bytes(buffer[3 : 3 + length])))
                del buffer[:total]
            else:
                self.rejected[RejectReason.BAD_CRC] += 1
                # A truncated frame may hide the start of the next one: resume there.
                next_header = buffer.find(_HEADER, 1, total)
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

    def _skip_to_header(self) -> None:
        """Drop bytes before the next D2 address; a 0x81 start means the other protocol."""
        buffer = self._buffer
        reason = (
            RejectReason.UNSUPPORTED_VARIANT
            if buffer[0] == VARIANT_ADDRESS
            else RejectReason.BAD_HEADER
        )
        next_address = buffer.find(ADDRESS)
        self._reject(next_address if next_address > 0 else len(buffer), reason)
