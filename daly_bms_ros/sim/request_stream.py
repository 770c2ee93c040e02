"""Requests out of a serial byte stream, as a wired BMS's receiver finds them before it answers.

A serial port delivers bytes, not frames: a request comes in pieces, after line noise or a
request cut short, or with bytes after it (jblance/mpp-solar writes a newline after each
A5 request, and the BMS still answers: mpp-solar#83). The stream keeps the bytes that may still
become a request and skips, one byte at a time, those that cannot: an A5 request is 13 bytes
from 0xA5 with a valid checksum; a Modbus one (D2, 0x81) starts with its variant's address and
ends with a valid CRC, 8 bytes for a read or a write of one register, 8 + 2 per register for a
write of several.
"""

from __future__ import annotations

from collections.abc import Callable

from daly_bms_ros.protocol import Variant, crc16_modbus
from daly_bms_ros.protocol.a5 import FRAME_SIZE, START, parse_a5_request
from daly_bms_ros.protocol.frames import MAX_DATA_BYTES, READ, WRITE_MULTIPLE, WRITE_SINGLE

#: How long the request at the start of the given bytes is: None when more bytes are needed to
#: tell, 0 when no request starts there.
Measure = Callable[[bytes], int | None]
#: A read, or a write of one register: address, function, 4 bytes, CRC.
_FIXED_REQUEST_SIZE = 8
#: The longest request of either protocol (a Modbus write of every register it may carry): what
#: a measure is shown of the bytes from one position, so that garbage costs linear time.
_LONGEST_REQUEST = max(FRAME_SIZE, _FIXED_REQUEST_SIZE + MAX_DATA_BYTES)


def a5_request_length(candidate: bytes) -> int | None:
    """Measure an A5 request: 13 bytes from 0xA5, from a host address, with a valid checksum."""
    if candidate[0] != START:
        return 0
    if len(candidate) < FRAME_SIZE:
        return None
    return FRAME_SIZE if parse_a5_request(candidate[:FRAME_SIZE]) else 0


def modbus_request_length(variant: Variant) -> Measure:
    """Return the measure of the read and write requests of ``variant``."""

    def measure(candidate: bytes) -> int | None:
        if candidate[0] != variant.request_address:
            return 0
        if len(candidate) < 2:
            return None
        if candidate[1] in (READ, WRITE_SINGLE):
            length = _FIXED_REQUEST_SIZE
        elif candidate[1] == WRITE_MULTIPLE:
            if len(candidate) < 6:
                return None
            count = int.from_bytes(candidate[4:6], "big")
            if not 1 <= count <= MAX_DATA_BYTES // 2:
                return 0
            length = _FIXED_REQUEST_SIZE + 2 * count
        else:
            return 0
        if len(candidate) < length:
            return None
        crc = int.from_bytes(candidate[length - 2 : length], "little")
        return length if crc16_modbus(candidate[: length - 2]) == crc else 0

    return measure


class RequestStream:
    """Collect received bytes and return the complete, valid requests they hold, in order."""

    def __init__(self, measure: Measure) -> None:
        self._measure = measure
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add received bytes; return the requests they completed."""
        buffer = self._buffer
        buffer += chunk
        requests: list[bytes] = []
        position = 0
        while position < len(buffer):
            length = self._measure(bytes(buffer[position : position + _LONGEST_REQUEST]))
            if length is None:
                break
            if length:
                requests.append(bytes(buffer[position : position + length]))
                position += length
            else:
                position += 1
        del buffer[:position]
        return requests
