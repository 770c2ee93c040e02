"""CRC-16/Modbus (poly 0xA001 reflected, init 0xFFFF), the checksum of every Daly D2 frame."""

from __future__ import annotations


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC-16/Modbus of ``data``; it travels little-endian after the data."""
    crc = 0xFFFF
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc
