"""Frames to typed values and back, driven by the register table in ``registers``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from daly_bms_ros.protocol.errors import FrameDecodeError
from daly_bms_ros.protocol.frames import D2, X81, Frame, Variant
from daly_bms_ros.protocol.model import BmsSettings, BmsStatus, DeviceInfo, MosTemperature
from daly_bms_ros.protocol.registers import (
    D2_STATUS,
    DEVICE_INFO_BLOCK,
    DEVICE_INFO_TEXT,
    FAULT_BITS,
    MAX_TEMPERATURE_SENSORS,
    MOS_BLOCK,
    MOS_TEMPERATURE,
    SETTINGS_BLOCK,
    SETTINGS_REGISTERS,
    STATUS_BLOCK,
    X81_DEVICE_INFO_BLOCK,
    X81_DEVICE_INFO_TEXT,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    X81_STATUS,
    Block,
    Register,
    StatusLayout,
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
        """``count`` registers from ``first`` on; the hot path of decoding, hence inlined."""
        values = [first.decode(raw) for raw in self.registers[first.index : first.index + count]]
        for i, value in enumerate(values):
            if not first.minimum <= value <= first.maximum:
                self.invalid.append(f"{first.name}_{i + 1}")
                values[i] = math.nan
        return tuple(values)


def decode_alarms(words: Sequence[int]) -> tuple[str, ...]:
    """Name every set fault bit; a bit without a known meaning is kept as fault_bit_<w>_<b>."""
    names = []
    for word_index, word in enumerate(words):
        for bit in range(16):
            if word >> bit & 1:
                key = (word_index, bit)
                names.append(FAULT_BITS.get(key, f"fault_bit_{word_index}_{bit}"))
    return tuple(names)


def _count(registers: Sequence[int], layout: StatusLayout, name: str, limit: int) -> int:
    count = registers[layout.registers[name].index]
    if count > limit:
        raise FrameDecodeError(f"{name} is {count}, at most {limit} is possible")
    return count


def _cell_statistics(
    checker: _RangeChecker, layout: StatusLayout, cells: Sequence[float]
) -> dict[str, float]:
    """Min, max, average and delta: from the BMS's registers, else from the valid cells."""
    valid = [voltage for voltage in cells if not math.isnan(voltage)]
    computed = {
        "min_cell_voltage": min(valid, default=math.nan),
        "max_cell_voltage": max(valid, default=math.nan),
        "average_cell_voltage": sum(valid) / len(valid) if valid else math.nan,
        "cell_delta": max(valid) - min(valid) if valid else math.nan,
    }
    return {
        name: checker.value(layout.registers[name]) if name in layout.registers else value
        for name, value in computed.items()
    }


def _decode_layout(registers: Sequence[int], layout: StatusLayout) -> BmsStatus:
    """Decode the status of any variant from its registers and its layout."""
    cell_count = _count(registers, layout, "cell_count", layout.max_cells)
    sensor_count = _count(registers, layout, "temperature_sensor_count", MAX_TEMPERATURE_SENSORS)
    checker = _RangeChecker(registers)
    by_name = layout.registers
    cells = checker.series(layout.cell_voltages, cell_count)
    valid_cells = [(voltage, i + 1) for i, voltage in enumerate(cells) if not math.isnan(voltage)]
    balancing_bits = sum(
        registers[index] << (16 * n) for n, index in enumerate(layout.balancing_bitmaps)
    )
    first_word, word_count = layout.fault_words
    words = registers[first_word : first_word + word_count]
    return BmsStatus(
        cell_voltages=cells,
        temperatures=checker.series(layout.temperatures, sensor_count),
        pack_voltage=checker.value(by_name["pack_voltage"]),
        current=checker.value(by_name["current"]),
        soc=checker.value(by_name["soc"]),
        remaining_capacity=checker.value(by_name["remaining_capacity"]),
        cycles=registers[by_name["cycles"].index],
        charge_mos=bool(registers[by_name["charge_mos"].index]),
        discharge_mos=bool(registers[by_name["discharge_mos"].index]),
        balancing=bool(registers[by_name["balancing"].index]),
        balancing_cells=tuple(bool(balancing_bits >> i & 1) for i in range(cell_count)),
        **_cell_statistics(checker, layout, cells),
        # The first lowest/highest cell, as the BMS's own min/max registers do not say which.
        min_cell_index=min(valid_cells)[1] if valid_cells else 0,
        max_cell_index=max(valid_cells, key=lambda cell: (cell[0], -cell[1]))[1]
        if valid_cells
        else 0,
        alarm_words=tuple(words),
        alarms=decode_alarms(words),
        invalid=tuple(checker.invalid),
    )


def decode_status(frame: Frame) -> BmsStatus:
    """Decode the 62-register D2 status block."""
    return _decode_layout(_registers(frame, STATUS_BLOCK), D2_STATUS)


def _x81_registers(pack: Frame, state: Frame) -> list[int]:
    """Join the two 0x81 blocks into one register space from 0x00 (0x40, not read, as 0)."""
    registers = [0] * (X81_STATE_BLOCK.start + X81_STATE_BLOCK.count)
    registers[: X81_PACK_BLOCK.count] = _registers(pack, X81_PACK_BLOCK)
    registers[X81_STATE_BLOCK.start :] = _registers(state, X81_STATE_BLOCK)
    return registers


def decode_x81_status(pack: Frame, state: Frame) -> tuple[BmsStatus, MosTemperature]:
    """Decode the status of the 0x81 variant from its two blocks; the MOS temperature with it."""
    registers = _x81_registers(pack, state)
    status = _decode_layout(registers, X81_STATUS)
    checker = _RangeChecker(registers)
    return status, MosTemperature(checker.value(X81_STATUS.registers["mos_temperature"]))


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


def _device_info_layout(variant: Variant) -> tuple[Block, dict[str, tuple[int, int]]]:
    if variant is X81:
        return X81_DEVICE_INFO_BLOCK, X81_DEVICE_INFO_TEXT
    return DEVICE_INFO_BLOCK, DEVICE_INFO_TEXT


def decode_device_info(frame: Frame, variant: Variant = D2) -> DeviceInfo:
    """Decode a device-information block (versions; production date or serial number)."""
    block, layout = _device_info_layout(variant)
    _registers(frame, block)
    fields = {
        name: _text(frame.payload[first : first + size]) for name, (first, size) in layout.items()
    }
    return DeviceInfo(**fields)


def encode_device_info(info: DeviceInfo, variant: Variant = D2) -> list[int]:
    """Return the device-information registers that decode to ``info``."""
    block, layout = _device_info_layout(variant)
    payload = bytearray(block.byte_count)
    for name, (first, size) in layout.items():
        text = getattr(info, name).encode("ascii")[:size]
        payload[first : first + len(text)] = text
    return list(Frame(bytes(payload)).registers)


def _nan_to_zero(raw: float) -> float:
    return 0.0 if math.isnan(raw) else raw


def _encode_layout(status: BmsStatus, layout: StatusLayout, size: int) -> list[int]:
    """Return registers 0..size-1 of ``layout`` that decode to ``status`` (virtual BMS)."""
    registers = [0] * size
    for first, values in (
        (layout.cell_voltages, status.cell_voltages),
        (layout.temperatures, status.temperatures),
    ):
        for i, value in enumerate(values):
            registers[first.index + i] = first.encode(_nan_to_zero(value))
    flags = {
        "cell_count": len(status.cell_voltages),
        "temperature_sensor_count": len(status.temperatures),
        "cycles": status.cycles,
        "charge_mos": int(status.charge_mos),
        "discharge_mos": int(status.discharge_mos),
        "balancing": int(status.balancing),
    }
    for name, register in layout.registers.items():
        if name in flags:
            registers[register.index] = flags[name]
        elif hasattr(status, name):
            registers[register.index] = register.encode(_nan_to_zero(getattr(status, name)))
    bits = sum(1 << i for i, on in enumerate(status.balancing_cells) if on)
    for n, index in enumerate(layout.balancing_bitmaps):
        registers[index] = bits >> (16 * n) & 0xFFFF
    first_word, word_count = layout.fault_words
    registers[first_word : first_word + word_count] = status.alarm_words[:word_count]
    return registers


def encode_status(status: BmsStatus) -> list[int]:
    """Return the D2 status-block registers that decode to ``status``."""
    return _encode_layout(status, D2_STATUS, STATUS_BLOCK.count)


def encode_x81_status(status: BmsStatus, mos: MosTemperature) -> tuple[list[int], list[int]]:
    """Return the two 0x81 blocks (pack, state) that decode to ``status`` and ``mos``."""
    registers = _encode_layout(status, X81_STATUS, X81_STATE_BLOCK.start + X81_STATE_BLOCK.count)
    mos_register = X81_STATUS.registers["mos_temperature"]
    registers[mos_register.index] = mos_register.encode(_nan_to_zero(mos.temperature))
    return registers[: X81_PACK_BLOCK.count], registers[X81_STATE_BLOCK.start :]


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
