"""Frames to typed values and back, driven by the register table in ``registers``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from daly_bms_ros.protocol.errors import FrameDecodeError
from daly_bms_ros.protocol.frames import Frame
from daly_bms_ros.protocol.model import BmsSettings, BmsStatus, DeviceInfo, MosTemperature
from daly_bms_ros.protocol.registers import (
    CELL_VOLTAGES,
    DEVICE_INFO_BLOCK,
    DEVICE_INFO_TEXT,
    FAULT_BITS,
    FAULT_WORD_COUNT,
    FAULT_WORDS_INDEX,
    MAX_CELLS,
    MAX_TEMPERATURE_SENSORS,
    MOS_BLOCK,
    MOS_TEMPERATURE,
    SETTINGS_BLOCK,
    SETTINGS_REGISTERS,
    STATUS_BLOCK,
    STATUS_REGISTERS,
    TEMPERATURES,
    Block,
    Register,
)


def _registers(frame: Frame, block: Block) -> tuple[int, ...]:
    if len(frame.payload) != block.byte_count:
        raise FrameDecodeError(
            f"a {block.name} block has {block.byte_count} data bytes, this frame "
            f"{len(frame.payload)}"
        )
    return frame.registers


class _RangeChecker:
    """Scale raw values and replace the physically impossible ones by NaN, noting their names."""

    def __init__(self, registers: Sequence[int]) -> None:
        self.registers = registers
        self.invalid: list[str] = []

    def value(self, register: Register, index: int | None = None, name: str = "") -> float:
        value = register.decode(self.registers[register.index if index is None else index])
        if register.minimum <= value <= register.maximum:
            return value
        self.invalid.append(name or register.name)
        return math.nan

    def series(self, first: Register, count: int) -> tuple[float, ...]:
        return tuple(
            self.value(first, first.index + i, f"{first.name}_{i + 1}") for i in range(count)
        )


def decode_alarms(words: Sequence[int]) -> tuple[str, ...]:
    """Name every set fault bit; a bit without a known meaning is kept as fault_bit_<w>_<b>."""
    names = []
    for word_index, word in enumerate(words):
        for bit in range(16):
            if word >> bit & 1:
                key = (word_index, bit)
                names.append(FAULT_BITS.get(key, f"fault_bit_{word_index}_{bit}"))
    return tuple(names)


def _count(registers: Sequence[int], name: str, limit: int) -> int:
    count = registers[STATUS_REGISTERS[name].index]
    if count > limit:
        raise FrameDecodeError(f"{name} is {count}, at most {limit} is possible")
    return count


def decode_status(frame: Frame) -> BmsStatus:
    """Decode the 62-register status block."""
    registers = _registers(frame, STATUS_BLOCK)
    cell_count = _count(registers, "cell_count", MAX_CELLS)
    sensor_count = _count(registers, "temperature_sensor_count", MAX_TEMPERATURE_SENSORS)
    checker = _RangeChecker(registers)
    by_name = STATUS_REGISTERS
    cells = checker.series(CELL_VOLTAGES, cell_count)
    valid_cells = [(voltage, i + 1) for i, voltage in enumerate(cells) if not math.isnan(voltage)]
    balancing_bits = registers[by_name["balancing_cells"].index]
    words = registers[FAULT_WORDS_INDEX : FAULT_WORDS_INDEX + FAULT_WORD_COUNT]
    return BmsStatus(
        cell_voltages=cells,
        temperatures=checker.series(TEMPERATURES, sensor_count),
        pack_voltage=checker.value(by_name["pack_voltage"]),
        current=checker.value(by_name["current"]),
        soc=checker.value(by_name["soc"]),
        remaining_capacity=checker.value(by_name["remaining_capacity"]),
        cycles=registers[by_name["cycles"].index],
        charge_mos=bool(registers[by_name["charge_mos"].index]),
        discharge_mos=bool(registers[by_name["discharge_mos"].index]),
        balancing=bool(registers[by_name["balancing"].index]),
        balancing_cells=tuple(bool(balancing_bits >> i & 1) for i in range(cell_count)),
        min_cell_voltage=checker.value(by_name["min_cell_voltage"]),
        max_cell_voltage=checker.value(by_name["max_cell_voltage"]),
        average_cell_voltage=checker.value(by_name["average_cell_voltage"]),
        cell_delta=checker.value(by_name["cell_delta"]),
        # The first lowest/highest cell, as the BMS's own min/max registers do not say which.
        min_cell_index=min(valid_cells)[1] if valid_cells else 0,
        max_cell_index=max(valid_cells, key=lambda cell: (cell[0], -cell[1]))[1]
        if valid_cells
        else 0,
        alarm_words=tuple(words),
        alarms=decode_alarms(words),
        invalid=tuple(checker.invalid),
    )


def decode_settings(frame: Frame) -> BmsSettings:
    """Decode the 41-register settings block."""
    checker = _RangeChecker(_registers(frame, SETTINGS_BLOCK))
    return BmsSettings(
        rated_capacity=checker.value(SETTINGS_REGISTERS["rated_capacity"]),
        nominal_cell_voltage=checker.value(SETTINGS_REGISTERS["nominal_cell_voltage"]),
        invalid=tuple(checker.invalid),
    )


def decode_mos_temperature(frame: Frame) -> MosTemperature:
    """Decode the 9-register block that holds the MOS temperature."""
    checker = _RangeChecker(_registers(frame, MOS_BLOCK))
    return MosTemperature(checker.value(MOS_TEMPERATURE))


def _text(data: bytes) -> str:
    """ASCII text of a NUL-padded field; anything unprintable becomes '?'."""
    text = data.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    return "".join(char if char.isprintable() and char != "\ufffd" else "?" for char in text)


def decode_device_info(frame: Frame) -> DeviceInfo:
    """Decode the 32-register device-information block (versions and production date)."""
    _registers(frame, DEVICE_INFO_BLOCK)
    fields = {
        name: _text(frame.payload[first : first + size])
        for name, (first, size) in DEVICE_INFO_TEXT.items()
    }
    return DeviceInfo(**fields)


def encode_device_info(info: DeviceInfo) -> list[int]:
    """Return the device-information registers that decode to ``info``."""
    payload = bytearray(DEVICE_INFO_BLOCK.byte_count)
    for name, (first, size) in DEVICE_INFO_TEXT.items():
        text = getattr(info, name).encode("ascii")[:size]
        payload[first : first + len(text)] = text
    return list(Frame(bytes(payload)).registers)


def _nan_to_zero(raw: float) -> float:
    return 0.0 if math.isnan(raw) else raw


def encode_status(status: BmsStatus) -> list[int]:
    """Return the status-block registers that decode to ``status`` (for the virtual BMS)."""
    registers = [0] * STATUS_BLOCK.count
    by_name = STATUS_REGISTERS
    for i, voltage in enumerate(status.cell_voltages):
        registers[CELL_VOLTAGES.index + i] = CELL_VOLTAGES.encode(_nan_to_zero(voltage))
    for i, temperature in enumerate(status.temperatures):
        registers[TEMPERATURES.index + i] = TEMPERATURES.encode(_nan_to_zero(temperature))
    for name in (
        "pack_voltage",
        "current",
        "soc",
        "remaining_capacity",
        "min_cell_voltage",
        "max_cell_voltage",
        "average_cell_voltage",
        "cell_delta",
    ):
        register = by_name[name]
        registers[register.index] = register.encode(_nan_to_zero(getattr(status, name)))
    flags = {
        "cell_count": len(status.cell_voltages),
        "temperature_sensor_count": len(status.temperatures),
        "cycles": status.cycles,
        "charge_mos": int(status.charge_mos),
        "discharge_mos": int(status.discharge_mos),
        "balancing": int(status.balancing),
        "balancing_cells": sum(1 << i for i, on in enumerate(status.balancing_cells) if on),
    }
    for name, raw in flags.items():
        registers[by_name[name].index] = raw
    registers[FAULT_WORDS_INDEX : FAULT_WORDS_INDEX + FAULT_WORD_COUNT] = status.alarm_words
    return registers


def encode_settings(settings: BmsSettings) -> list[int]:
    """Return the settings-block registers that decode to ``settings``."""
    registers = [0] * SETTINGS_BLOCK.count
    for name, register in SETTINGS_REGISTERS.items():
        registers[register.index] = register.encode(getattr(settings, name))
    return registers


def encode_mos_temperature(mos: MosTemperature) -> list[int]:
    """Return the MOS-block registers that decode to ``mos``."""
    registers = [0] * MOS_BLOCK.count
    registers[MOS_TEMPERATURE.index] = MOS_TEMPERATURE.encode(mos.temperature)
    return registers
