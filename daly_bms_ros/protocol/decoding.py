"""Frames to typed values and back, driven by the register table in ``registers``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from daly_bms_ros.protocol.errors import FrameDecodeError
from daly_bms_ros.protocol.fields import (
    CELL_INDICES,
    CELL_STATISTICS,
    TEMPERATURE_EXTREMES,
    RangeChecker,
    charge_state,
    check_count,
    derive,
    raw_of,
)
from daly_bms_ros.protocol.frames import D2, X81, Frame, Variant
from daly_bms_ros.protocol.model import BmsSettings, BmsStatus, DeviceInfo, MosTemperature
from daly_bms_ros.protocol.registers import (
    CHARGE_STATES,
    D2_STATUS,
    DEVICE_INFO_BLOCK,
    DEVICE_INFO_FIELDS_16,
    DEVICE_INFO_FIELDS_32,
    FAULT_BITS,
    HARDWARE_VERSION_FORM,
    MAX_TEMPERATURE_SENSORS,
    MOS_BLOCK,
    MOS_TEMPERATURE,
    PRODUCTION_DATE_FORM,
    SETTINGS_BLOCK,
    SETTINGS_REGISTERS,
    SOFTWARE_VERSION_FORM,
    STATUS_80_BLOCK,
    STATUS_BLOCK,
    X81_ALARM_FIELDS,
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


def decode_alarms(words: Sequence[int]) -> tuple[str, ...]:
    """Name every set fault bit; a bit without a known meaning is kept as fault_bit_<w>_<b>."""
    names = []
    for word_index, word in enumerate(words):
        for bit in range(16):
            if word >> bit & 1:
                key = (word_index, bit)
                names.append(FAULT_BITS.get(key, f"fault_bit_{word_index}_{bit}"))
    return tuple(names)


def _x81_codes(words: Sequence[int]) -> list[int]:
    """Return the alarm code bytes of the 0x81 registers: code 0 is the low byte of 0x6D.

    patagonaa's component copies each register's value (ESPHome's convert_little_endian is
    no change on its little-endian chips) into its bitfield struct: the low byte comes first.
    """
    return [byte for word in words for byte in (word & 0xFF, word >> 8)]


def decode_x81_alarms(words: Sequence[int]) -> tuple[str, ...]:
    """Name the alarms of the 0x81 alarm registers: ``<name>_<level>`` and fault names."""
    codes = _x81_codes(words)
    names = []
    for code, shift, width, name in X81_ALARM_FIELDS:
        if code >= len(codes):
            continue
        level = codes[code] >> shift & ((1 << width) - 1)
        if level:
            names.append(f"{name}_{level}" if width > 1 else name)
    return tuple(names)


def encode_x81_alarms(names: Sequence[str], word_count: int) -> list[int]:
    """Return the 0x81 alarm registers that decode to ``names`` (levels as ``<name>_<n>``)."""
    codes = [0] * (2 * word_count)
    for code, shift, width, name in X81_ALARM_FIELDS:
        for alarm in names:
            level = 1 if alarm == name else 0
            if width > 1 and alarm.startswith(name + "_") and alarm[len(name) + 1 :].isdigit():
                level = int(alarm[len(name) + 1 :])
            if level and code < len(codes):
                codes[code] |= (level & ((1 << width) - 1)) << shift
    return [codes[i + 1] << 8 | codes[i] for i in range(0, len(codes), 2)]


def _balancing_cells(
    registers: Sequence[int], layout: StatusLayout, cell_count: int
) -> tuple[bool, ...] | None:
    """Per-cell balancing flags, or None when the read did not cover the bitmaps of every cell."""
    needed = layout.balancing_bitmaps[: (cell_count + 15) // 16]
    if any(index >= len(registers) for index in needed):
        return None
    bits = sum(registers[index] << (16 * n) for n, index in enumerate(needed))
    return tuple(bool(bits >> i & 1) for i in range(cell_count))


def _power(checker: RangeChecker, layout: StatusLayout, voltage: float, current: float) -> float:
    """Return the power register (|V*I| in W) signed like the current, NaN where unknown.

    A register at 0 while at least a watt flows is one the pack does not fill.
    """
    power = checker.value(layout.registers["power"])
    if power == 0 and abs(voltage * current) >= 1.0:
        return math.nan
    return -power if current < 0 else power


def _balancing_told(
    registers: Sequence[int], layout: StatusLayout, cell_count: int
) -> tuple[bool, ...] | None:
    """Return the per-cell flags, None (unknown) where the pack leaves them empty.

    No bit set while the pack says it balances is bitmaps the pack does not fill: the 0x81
    pack of syssi/esphome-daly-bms ``docs/pdus/ess-dl-bms-41_260321_0323.txt`` reads
    balancing 7 with all bitmaps 0.
    """
    cells = _balancing_cells(registers, layout, cell_count)
    if cells is not None and not any(cells) and registers[layout.registers["balancing"].index]:
        return None
    return cells


def check_plausible(cell_count: int, pack_voltage: float, cells: Sequence[float]) -> None:
    """Refuse a status no pack can be in (any protocol): what an empty or zeroed answer gives."""
    if cell_count == 0:
        raise FrameDecodeError("the status reports 0 cells: no pack is in this state")
    if pack_voltage == 0.0 and any(not math.isnan(voltage) for voltage in cells):
        raise FrameDecodeError("the status reports 0 V for a pack whose cells hold voltage")


def _optional(checker: RangeChecker, layout: StatusLayout, name: str) -> float:
    """Return the value of a register some layouts lack: NaN where this one does."""
    register = layout.registers.get(name)
    return math.nan if register is None else checker.value(register)


def _told(checker: RangeChecker, registers: Sequence[int], register: Register) -> float:
    """Return what the BMS tells in ``register``: a statistic checked, a cell number as is."""
    if register.name in CELL_INDICES:
        return registers[register.index]
    return checker.value(register)


def _decode_layout(registers: Sequence[int], layout: StatusLayout) -> BmsStatus:
    """Decode the status of any variant from its registers and its layout."""
    by_name = layout.registers
    cell_count = check_count("cell_count", registers[by_name["cell_count"].index], layout.max_cells)
    sensor_count = check_count(
        "temperature_sensor_count",
        registers[by_name["temperature_sensor_count"].index],
        MAX_TEMPERATURE_SENSORS,
    )
    checker = RangeChecker(registers)
    cells = checker.series(layout.cell_voltages, cell_count)
    pack_voltage = checker.value(by_name["pack_voltage"])
    check_plausible(cell_count, pack_voltage, cells)
    current = checker.value(by_name["current"])
    names = (*CELL_STATISTICS, *CELL_INDICES, *TEMPERATURE_EXTREMES)
    told = {name: _told(checker, registers, by_name[name]) for name in names if name in by_name}
    temperatures = checker.series(layout.temperatures, sensor_count)
    derived = derive(cells, temperatures, told)
    first_word, word_count = layout.fault_words
    words = registers[first_word : first_word + word_count]
    return BmsStatus(
        cell_voltages=cells,
        temperatures=temperatures,
        pack_voltage=pack_voltage,
        current=current,
        soc=checker.value(by_name["soc"]),
        remaining_capacity=checker.value(by_name["remaining_capacity"]),
        cycles=registers[by_name["cycles"].index],
        charge_mos=bool(registers[by_name["charge_mos"].index]),
        discharge_mos=bool(registers[by_name["discharge_mos"].index]),
        balancing=bool(registers[by_name["balancing"].index]),
        balancing_cells=_balancing_told(registers, layout, cell_count),
        alarm_words=tuple(words),
        alarms=decode_x81_alarms(words) if layout is X81_STATUS else decode_alarms(words),
        power=_power(checker, layout, pack_voltage, current),
        charge_state=charge_state(registers[by_name["charge_state"].index], current),
        balance_current=_optional(checker, layout, "balance_current"),
        mos_temperature=_optional(checker, layout, "mos_temperature"),
        board_temperature=_optional(checker, layout, "board_temperature"),
        invalid=tuple(checker.invalid),
        **derived._asdict(),
    )


def decode_status(frame: Frame) -> BmsStatus:
    """Decode a D2 status answer: the 62-register block, or the 80-register read."""
    if len(frame.payload) not in (STATUS_BLOCK.byte_count, STATUS_80_BLOCK.byte_count):
        raise FrameDecodeError(
            f"a D2 status answer has {STATUS_BLOCK.byte_count} or {STATUS_80_BLOCK.byte_count} "
            f"data bytes, this frame {len(frame.payload)}"
        )
    return _decode_layout(frame.registers, D2_STATUS)


def decode_status_with_mos(status: Frame, mos: Frame) -> BmsStatus:
    """Decode a 62-register D2 status with the MOS block read after it.

    The MOS block (0x3E x 9) is registers 62..70 of the 80-register layout [A][F]: the
    balancing bitmaps, balance current, MOS and board temperature (aiobmsble's answer of this
    block in its tests, and syssi/esphome-daly-bms issue #9's capture, hold that layout).
    """
    registers = (*_registers(status, STATUS_BLOCK), *_registers(mos, MOS_BLOCK))
    return _decode_layout(registers, D2_STATUS)


def _x81_registers(pack: Frame, state: Frame) -> list[int]:
    """Join the two 0x81 blocks into one register space from 0x00 (0x40, not read, as 0)."""
    registers = [0] * (X81_STATE_BLOCK.start + X81_STATE_BLOCK.count)
    registers[: X81_PACK_BLOCK.count] = _registers(pack, X81_PACK_BLOCK)
    registers[X81_STATE_BLOCK.start :] = _registers(state, X81_STATE_BLOCK)
    return registers


def decode_x81_status(pack: Frame, state: Frame) -> BmsStatus:
    """Decode the status of the 0x81 variant from its two blocks."""
    return _decode_layout(_x81_registers(pack, state), X81_STATUS)


def decode_settings(frame: Frame) -> BmsSettings:
    """Decode the 41-register settings block: every setting the register table names."""
    checker = RangeChecker(_registers(frame, SETTINGS_BLOCK))
    values = {name: checker.value(register) for name, register in SETTINGS_REGISTERS.items()}
    return BmsSettings(
        rated_capacity=values.pop("rated_capacity"),
        nominal_cell_voltage=values.pop("nominal_cell_voltage"),
        invalid=tuple(checker.invalid),
        values=values,
    )


def decode_mos_temperature(frame: Frame) -> MosTemperature:
    """Decode the 9-register block that holds the MOS temperature."""
    checker = RangeChecker(_registers(frame, MOS_BLOCK))
    return MosTemperature(checker.value(MOS_TEMPERATURE))


def _text(data: bytes) -> str:
    """ASCII text of a NUL-padded field (padded either side); anything unprintable becomes '?'."""
    text = data.strip(b"\x00").split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    return "".join(char if char.isprintable() and char != "\ufffd" else "?" for char in text)


def stored_reversed(texts: Sequence[tuple[str, re.Pattern[str]]]) -> bool:
    """Whether the version texts of one answer are stored reversed.

    Some D2 firmware stores its versions reversed ("T00K_321042_11" for "11_240123_K00T")
    [G][J]: the texts of one answer are stored one way, told by the first of them whose form
    (the app's) reads in one direction only.
    """
    for text, form in texts:
        if form.match(text):
            return False
        if form.match(text[::-1]):
            return True
    return False


def as_shown(stored: str, form: re.Pattern[str], reversed_answer: bool) -> str:
    """Return a version text as Daly's app shows it.

    A text of a known form is turned round where only its reverse has that form; one of an
    unknown form follows the answer's other texts (``reversed_answer``).
    """
    if form.match(stored):
        return stored
    if form.match(stored[::-1]) or reversed_answer:
        return stored[::-1]
    return stored


def _d2_device_info_layout(payload: bytes) -> Mapping[str, tuple[int, int]]:
    """Which D2 device-information layout a payload uses: 16-byte fields, or 32-byte ones.

    Bytes 16..31 hold the hardware version in the first; in the second, the end of a software
    version that has never been seen longer than 14 characters, so they are empty.
    """
    first, size = DEVICE_INFO_FIELDS_16["hardware_version"]
    if _text(payload[first : first + size]):
        return DEVICE_INFO_FIELDS_16
    return DEVICE_INFO_FIELDS_32


def decode_device_info(frame: Frame, variant: Variant = D2) -> DeviceInfo:
    """Decode a device-information block (versions; production date, model, serial number).

    The third field of the D2 layout of 16-byte fields is a production date where it has the
    form of one, else Daly's machine code, reported as the model.
    """
    layout: Mapping[str, tuple[int, int]]
    if variant is X81:
        _registers(frame, X81_DEVICE_INFO_BLOCK)
        layout = X81_DEVICE_INFO_TEXT
    else:
        _registers(frame, DEVICE_INFO_BLOCK)
        layout = _d2_device_info_layout(frame.payload)
    fields = {
        name: _text(frame.payload[first : first + size]) for name, (first, size) in layout.items()
    }
    forms = {"software_version": SOFTWARE_VERSION_FORM, "hardware_version": HARDWARE_VERSION_FORM}
    reversed_answer = variant is D2 and stored_reversed(
        [(fields[name], form) for name, form in forms.items()]
    )
    for name, form in forms.items():
        fields[name] = as_shown(fields[name], form, reversed_answer)
    machine_code = fields.pop("machine_code", "")
    if PRODUCTION_DATE_FORM.fullmatch(machine_code):
        fields["production_date"] = machine_code
    elif machine_code:
        fields["model"] = machine_code
    return DeviceInfo(**fields)


def encode_device_info(
    info: DeviceInfo, variant: Variant = D2, fields_of_32: bool = False
) -> list[int]:
    """Return the device-information registers that decode to ``info`` (virtual BMS).

    A D2 BMS stores its versions reversed in the layout of 16-byte fields, its production date
    (or else model) in the third field [A][J], and its versions in reading order in the layout
    of 32-byte fields [F]; ``fields_of_32`` picks the layout.
    """
    if variant is X81:
        block, layout = X81_DEVICE_INFO_BLOCK, X81_DEVICE_INFO_TEXT
        texts = info.to_dict()
    else:
        block = DEVICE_INFO_BLOCK
        layout = DEVICE_INFO_FIELDS_32 if fields_of_32 else DEVICE_INFO_FIELDS_16
        reverse = not fields_of_32
        texts = {
            "software_version": info.software_version[:: -1 if reverse else 1],
            "hardware_version": info.hardware_version[:: -1 if reverse else 1],
            "machine_code": info.production_date or info.model,
        }
    payload = bytearray(block.byte_count)
    for name, (first, size) in layout.items():
        text = texts[name].encode("ascii")[:size]
        payload[first : first + len(text)] = text
    return list(Frame(bytes(payload)).registers)


def _encode_layout(status: BmsStatus, layout: StatusLayout, size: int) -> list[int]:
    """Return registers 0..size-1 of ``layout`` that decode to ``status`` (virtual BMS).

    Filled as a real pack fills them: 255 in the temperature slots beyond the sensor count,
    the power as floor(|V*I|), the charge state, the numbers of the extreme cells.
    """
    registers = [0] * size
    for first, values, slots in (
        (layout.cell_voltages, status.cell_voltages, 0),
        (layout.temperatures, status.temperatures, MAX_TEMPERATURE_SENSORS),
    ):
        for i in range(max(len(values), slots)):
            registers[first.index + i] = raw_of(first, values[i] if i < len(values) else math.nan)
    flags = {
        "cell_count": len(status.cell_voltages),
        "temperature_sensor_count": len(status.temperatures),
        "cycles": status.cycles,
        "charge_mos": int(status.charge_mos),
        "discharge_mos": int(status.discharge_mos),
        "balancing": int(status.balancing),
        "charge_state": CHARGE_STATES.index(status.charge_state)
        if status.charge_state in CHARGE_STATES
        else len(CHARGE_STATES),
        "power": 0 if math.isnan(status.power) else math.floor(abs(status.power)),
        "min_cell_index": status.min_cell_index,
        "max_cell_index": status.max_cell_index,
    }
    for name, register in layout.registers.items():
        if register.index >= size:
            continue
        if name in flags:
            registers[register.index] = flags[name]
        else:
            registers[register.index] = raw_of(register, getattr(status, name))
    bits = sum(1 << i for i, on in enumerate(status.balancing_cells or ()) if on)
    for n, index in enumerate(layout.balancing_bitmaps):
        if index < size:
            registers[index] = bits >> (16 * n) & 0xFFFF
    first_word, word_count = layout.fault_words
    registers[first_word : first_word + word_count] = (
        encode_x81_alarms(status.alarms, word_count)
        if layout is X81_STATUS
        else status.alarm_words[:word_count]
    )
    return registers


def encode_status(status: BmsStatus) -> list[int]:
    """Return the 80 D2 status registers that decode to ``status`` (the 62-register block first)."""
    return _encode_layout(status, D2_STATUS, STATUS_80_BLOCK.count)


def encode_x81_status(status: BmsStatus) -> tuple[list[int], list[int]]:
    """Return the two 0x81 blocks (pack, state) that decode to ``status``."""
    registers = _encode_layout(status, X81_STATUS, X81_STATE_BLOCK.start + X81_STATE_BLOCK.count)
    return registers[: X81_PACK_BLOCK.count], registers[X81_STATE_BLOCK.start :]


def encode_settings(settings: BmsSettings) -> list[int]:
    """Return the settings-block registers that decode to ``settings`` (0 where it has none)."""
    values = {
        **settings.values,
        "rated_capacity": settings.rated_capacity,
        "nominal_cell_voltage": settings.nominal_cell_voltage,
    }
    registers = [0] * SETTINGS_BLOCK.count
    for name, register in SETTINGS_REGISTERS.items():
        registers[register.index] = raw_of(register, values.get(name, math.nan))
    return registers
