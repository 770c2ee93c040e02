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
from array import array
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
#: Functions whose error answer (function | 0x80, an exception code, CRC) is 5 bytes.
_ERROR_FUNCTIONS = frozenset(function | ERROR_FLAG for function in _ANSWERED_FUNCTIONS)
ERROR_ANSWER_SIZE = 5
#: The size of an answer by its function and length byte (the third byte: a read's data
#: length), 0 where none is possible: a read of 0, an odd number or over MAX_DATA_BYTES, or a
#: function that is answered by no BMS.
_NO_SIZE = (0,) * 256
_SIZES = {
    READ: tuple(
        3 + length + 2 if 0 < length <= MAX_DATA_BYTES and not length % 2 else 0
        for length in range(256)
    ),
    **dict.fromkeys(_WRITE_FUNCTIONS, (WRITE_ANSWER_SIZE,) * 256),
    **dict.fromkeys(_ERROR_FUNCTIONS, (ERROR_ANSWER_SIZE,) * 256),
}
#: The start of an answer: a response address, then a function answered or its error.
_HEADER = re.compile(
    b"(?:"
    + b"|".join(
        re.escape(bytes((a, f)))
        for a in sorted(_RESPONSE_ADDRESSES)
        for f in sorted(_ANSWERED_FUNCTIONS | _ERROR_FUNCTIONS)
    )
    + b")"
)
#: The table ``crc16_modbus`` steps its register with, read back from it: one byte ``b`` from
#: 0xFFFF leaves ``0xFF ^ table[b ^ 0xFF]``.
_CRC_TABLE = tuple(crc16_modbus(bytes((index ^ 0xFF,))) ^ 0xFF for index in range(256))


def _carry(count: int) -> tuple[array[int], array[int]]:
    """Return how ``count`` bytes carry a CRC register's start value into the register after.

    The CRC is linear: the register after some bytes is that of the same bytes from 0, XOR the
    start value carried through ``count`` zero bytes. That carry is a linear map, given as two
    tables, for the start value's low byte and for its high byte. Made once per size.
    """
    tables = _CARRIES[count]
    if tables is None:
        carried = []
        for bit in range(16):
            register = 1 << bit
            for _ in range(count):
                register = (register >> 8) ^ _CRC_TABLE[register & 0xFF]
            carried.append(register)
        low, high = array("H", bytes(512)), array("H", bytes(512))
        for value in range(1, 256):
            rest, bit = value & (value - 1), (value & -value).bit_length() - 1
            low[value] = low[rest] ^ carried[bit]
            high[value] = high[rest] ^ carried[bit + 8]
        tables = _CARRIES[count] = (low, high)
    return tables


_CARRIES: list[tuple[array[int], array[int]] | None] = [None] * 256
#: The longest answer: a read of MAX_DATA_BYTES.
_LONGEST_ANSWER = 3 + MAX_DATA_BYTES + 2
#: Running CRC registers kept behind the header tried last, at most, before the older go.
_KEEP_REGISTERS = 1024


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
    One bad piece of input is one rejection. A piece is a run of bytes without a header (counted
    under the reason that started it, up to the next header), or a frame refused for its CRC or
    given up for a timeout with all the bytes its length covers: the headers found there are
    tried (a cut-short frame hides the next one), and those that fail too belong to the same
    piece, which the first valid frame ends.

    Any input is assembled in linear time. Headers inside a refused frame are checked against
    running CRC registers, one step a byte in all (``_scan``): ``d2 03`` over and over, where
    each header's frame holds a hundred more, would otherwise cost a whole CRC a header.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.rejected: Counter[RejectReason] = Counter()
        #: Inside a run of garbage that has been counted already.
        self._in_garbage = False
        #: Buffer index up to which the bytes belong to a counted piece with a length (a frame
        #: refused for its CRC or given up); 0 when there is none.
        self._piece_end = 0
        #: CRC registers run from 0 over the buffer from index ``_registers_from`` on: the
        #: register before byte i is ``_registers[i - _registers_from]``. Started afresh with
        #: each piece, they are kept (and follow the buffer) only while a piece lasts.
        self._registers = array("H", (0,))
        self._registers_from = 0

    def reset(self) -> None:
        """Forget buffered bytes (a new connection starts clean); counts are kept."""
        self._buffer.clear()
        self._in_garbage = False
        self._piece_end = 0

    def expire(self) -> list[Frame]:
        """Give up on the partial frame at the head: count it as a timeout, return what follows.

        The partial frame may hide the start of frames after it (a cut-short answer followed by
        the next one): the bytes after its header are assembled again, and the frames they hold
        are returned; what they hold besides belongs to the piece given up.
        """
        frames: list[Frame] = []
        buffer = self._buffer
        while buffer:
            fresh = self._piece_end == 0
            if fresh and not self._in_garbage:
                self.rejected[RejectReason.TIMEOUT] += 1
            found = _HEADER.search(buffer, 1)
            cut = found.start() if found else len(buffer)
            self._piece_end = len(buffer)
            del buffer[:cut]
            self._shift(cut)
            if fresh:
                self._registers, self._registers_from = array("H", (0,)), 0
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
            if position < self._piece_end:
                position = self._scan(position, frames)
                if position < self._piece_end:
                    break  # a header inside the piece waits for the rest of its frame
                continue
            if buffer[position] not in _RESPONSE_ADDRESSES:
                position = self._garbage(RejectReason.BAD_HEADER, position)
                continue
            if end - position < 3:
                break
            function = buffer[position + 1]
            size = _SIZES.get(function, _NO_SIZE)[buffer[position + 2]]
            if not size:
                reason = RejectReason.BAD_LENGTH if function == READ else RejectReason.BAD_HEADER
                position = self._garbage(reason, position)
                continue
            self._in_garbage = False  # a plausible header: what follows is a new piece
            if end - position < size:
                break
            expected = buffer[position + size - 2] | buffer[position + size - 1] << 8
            if crc16_modbus(memoryview(buffer)[position : position + size - 2]) == expected:
                position = self._take(position, size, frames)
            else:
                self.rejected[RejectReason.BAD_CRC] += 1
                self._piece_end = position + size
                position += 1
                self._registers, self._registers_from = array("H", (0,)), position
        del buffer[:position]
        if self._piece_end:
            self._shift(position)
        return frames

    def _garbage(self, reason: RejectReason, position: int) -> int:
        """Count a run of garbage once; return where the next response address is."""
        if not self._in_garbage:
            self.rejected[reason] += 1
            self._in_garbage = True
        found = _ADDRESS.search(self._buffer, position + 1)
        return found.start() if found else len(self._buffer)

    def _take(self, position: int, size: int, frames: list[Frame]) -> int:
        """Take the valid answer at ``position``; return where the next one may start."""
        buffer = self._buffer
        address, function = buffer[position], buffer[position + 1]
        if function == READ:
            frames.append(Frame(bytes(buffer[position + 3 : position + size - 2]), address))
        elif function in _WRITE_FUNCTIONS:
            frames.append(Frame(bytes(buffer[position + 2 : position + 6]), address, function))
        else:
            self.rejected[RejectReason.ERROR_RESPONSE] += 1
        self._piece_end = 0  # a frame ends the piece it was found in
        return position + size

    def _scan(self, position: int, frames: list[Frame]) -> int:
        """Try the headers inside the counted piece from ``position`` on; return where to go on.

        A header whose frame is valid is taken, and ends the piece; one whose CRC fails widens
        the piece to its length; one whose frame is not complete yet is waited for (its index
        is returned, inside the piece). Past the last header: the end of the piece, or a
        response address at the very end of the buffer (the first byte of a header, perhaps).
        The CRC registers are run once over the piece (as far as its headers need them), so
        that each header costs a lookup.
        """
        buffer = self._buffer
        end = len(buffer)
        piece_end = self._piece_end
        registers, first = self._registers, self._registers_from
        if not 0 <= position - first < len(registers):
            registers, first = array("H", (0,)), position
        sizes, carries, table = _SIZES, _CARRIES, _CRC_TABLE
        while True:
            if position - first > _KEEP_REGISTERS:
                del registers[: position - first]
                first = position
            reach = piece_end
            for found in _HEADER.finditer(buffer, position, reach + 1):
                header = found.start()
                size = sizes[buffer[header + 1]][buffer[header + 2]] if end - header > 2 else -1
                if end - header < size or size < 0:  # its frame is not complete yet: wait
                    self._registers, self._registers_from = registers, first
                    self._piece_end = piece_end
                    return header
                if not size:
                    continue
                offset = header - first
                if offset + size >= len(registers):
                    # Registers as far as this frame and what may follow it in the piece.
                    known = first + len(registers) - 1
                    register, append = registers[-1], registers.append
                    for byte in buffer[known : min(end, header + size + _LONGEST_ANSWER)]:
                        register = (register >> 8) ^ table[(register ^ byte) & 0xFF]
                        append(register)
                # A frame with its CRC runs the register from 0xFFFF to 0 (``_carry``).
                low, high = carries[size] or _carry(size)
                start = registers[offset] ^ 0xFFFF
                if registers[offset + size] == low[start & 0xFF] ^ high[start >> 8]:
                    self._registers, self._registers_from = registers, first
                    return self._take(header, size, frames)
                piece_end = max(piece_end, header + size)
            if piece_end == reach:
                break
            position = reach
        self._registers, self._registers_from, self._piece_end = registers, first, piece_end
        if piece_end == end and buffer[end - 1] in _RESPONSE_ADDRESSES:
            return end - 1
        return piece_end

    def _shift(self, count: int) -> None:
        """Follow the buffer, ``count`` bytes cut from its head."""
        self._piece_end = max(0, self._piece_end - count)
        self._registers_from -= count
