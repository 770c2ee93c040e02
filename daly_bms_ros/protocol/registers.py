"""The Daly register maps: the one place that says what each register and command means.

Sources of the D2 and 0x81 meanings (cited per entry as [A] to [L]; the A5 commands at the
end cite [M] to [O]):
- [A] aiobmsble, Daly plugin ``aiobmsble/bms/daly_bms.py`` (patman15): status block 0x00 x 62 with
  pack voltage at register 40, current 41 (30000 offset, 0.1 A), SOC 42, remaining capacity 48,
  cell count 49, sensor count 50, cycles 51, cell delta 56, problem code 58..61; MOS temperature
  block 0x3E x 9 with the temperature in its fifth register; device-information block 0xA9 x 32
  holding the software version (bytes 0..15) and hardware version (16..31) as ASCII, and a
  production date in bytes 32..47 that the plugin reads but leaves out. For the 0x81 variant:
  status in blocks 0x00 x 64 and 0x41 x 62, problem code at 0x6D..0x6E, device information
  0x178 x 74 (software version bytes 0..27, hardware 28..41, serial number 42..55).
- [B] Daly "BMS-Modbus" register list (as used by public RS485/Modbus readers, e.g.
  Sundaya-Development-Team/python-daly-16S ``address.py``): cells 0x00.., temperatures 0x20.. with
  offset 40, max/min cell voltage, max/min temperature, charge/discharge state, MOS states,
  balance state, average cell voltage.
- [C] Daly UART/RS485 protocol V1.2, command 0x98 (fault bytes 0..7), which the Modbus fault
  registers 0x3A..0x3D carry as 16-bit words, first byte in the low half (public readers label
  register 0x3A bits 0..15 as "level 1 cell V high", "level 2 cell V high", ... "level 2 discharge
  temperature low").
- [E] patagonaa/esphome-daly-hkms-bms ``daly_hkms_bms_registers.h`` (MIT): the register map of
  the 0x81 variant ("HKMS", answers from address 0x51): cells 0x00..0x2F, temperatures
  0x30..0x37, voltage 0x38, current 0x39, SOC 0x3A, counts 0x3C/0x3D, max cell 0x3E, delta 0x42,
  remaining capacity 0x4B, cycles 0x4C, balancing 0x4D and bitmaps 0x4F..0x51, MOS states
  0x52/0x53, MOS temperature 0x5A; the same scales and offsets as D2. Also the numbers of the
  highest and lowest cell 0x3F/0x41, max/min temperature 0x43/0x45, charge/discharge state
  0x48, balance current 0x4E (30000 offset, mA), power 0x58 (W, unsigned: the sign is the
  charge/discharge state's), board temperature 0x5B; a temperature of raw 255 is a sensor
  that is not fitted.
- [D] The real captures in shared/frames/ (16S pack): a 41-register settings block starting with
  the rated capacity (3100 = 310.0 Ah) and the nominal cell voltage (3200 mV).
- [F] syssi/esphome-daly-bms ``components/daly_bms_ble/daly_bms_ble.cpp`` (Apache-2.0), after
  Daly's own ``docs/dalyModbusProtocol.xlsx`` in that repository: the status read of 80
  registers (``D2 03 00 00 00 50``, answer ``D2 03 A0``) whose registers 0..61 are the 62-register
  block, with max/min temperature at 45/46, charge/discharge state at 47 (0 idle, 1 charging,
  2 discharging), average cell voltage 55, pack power in W at 57 (unsigned), and beyond 61: the
  per-cell balancing bitmaps at 62 (cells 1..16) and 63 (17..32), the balance current at 64
  (30000 offset, mA), the MOS temperature at 66 and the board temperature at 67 (degC + 40);
  device-information answers of 64 bytes with the software version in bytes 0..31 and the
  hardware version in 32..63 (its test frames: "204012" / "SH39F003", "401012" / "BMS").
  Its real captures in ``docs/pdus`` show register 57 equal to floor(|V*I|) while the balancing
  register 52 is 0: 57 is the power, not a balancing bitmap.
- [G] roccotsi2/esp32-smart-bms-simulation ``README.md``: the D2 device-information answer is
  "App Version: 16 bytes as String (reversed), MCU Version 16 bytes, Machine Version 32 bytes";
  aiobmsble's test answer ``tests/bms/test_daly_bms.py`` (RESP[VER_INFO]) holds "T00K_321042_11",
  "H2.0_103R_309F9F", "20240229" in 16-byte fields: the app shows such a version as
  "11_240123_K00T".
- [H] A real 0x81 pack (DL-D11A04015994), nRF Connect log in patman15/BMS_BLE-HA issue #806:
  temperature slots beyond the fitted sensors read 0x00FF; the device-information answer holds
  14-byte fields in reading order (software "12_260120_K00T", hardware "H2.1_103E_30XF", model
  "DL_HKMS_3.2.E", battery code "221LD091400444", production date "20260530" at byte 70).
- [I] patagonaa/esphome-daly-hkms-bms issue #1: a 0x81 pack's app shows "60_241128_01T2" and
  hardware "JHB-R24TS-V1.2".
- [J] A real D2 device-information answer in the btsnoop log of the Daly app,
  syssi/esphome-daly-bms ``docs/pdus/btsnoop_daly_balancer.log`` (record 75): 16-byte fields
  "B002_111132_03", "E303-032DG-SMB": stored reversed, as the app shows "BMS-GD230-303E" for
  such a pack (KG-Development/SmartBMSUtility issue #43). Daly's register list bundled there
  (``docs/dalyModbusProtocol.xlsx``) names 0xA9..0xB0 software, 0xB1..0xB8 hardware and
  0xB9..0xC8 the machine code.
- [K] A real 0x81 pack's capture, syssi/esphome-daly-bms
  ``docs/pdus/ess-dl-bms-41_260321_0323.txt``: device information "41_260321_0323",
  "ESS-DL-BMS", "ESS41_0323", "210LC210900005", date "20260326" in the same 14-byte fields as
  [H].
- [L] syssi/esphome-daly-bms ``components/daly_bms_ble/switch/__init__.py``,
  ``number/__init__.py``, ``button/__init__.py`` and ``daly_bms_ble.cpp`` (the writes Daly's app
  makes, with Daly's Modbus sheet ``docs/dalyModbusProtocol.xlsx``): function 0x06 writes of
  the charge switch 0x00A5 and discharge switch 0x00A6 (1 on, 0 off), the SOC 0x00A7 (0.1 %),
  the rated capacity 0x0080 (0.1 Ah) and the other settings 0x81..0xA8 in the settings block's
  encoding, the balancer switch 0x00CF (1 on; read back with ``D2 03 00 CF 00 01``), and 0x0001
  into 0x00F0 to restart the BMS. fl4p/batmon-ha ``bmslib/models/daly2.py`` and its issue #356
  confirm 0x00A5/0x00A6 on a DL- pack (each write echoed; ``D2 06 00 0C …`` echoed too but
  without effect, so only a read-back proves a write). The sheet names 0x00C9..0x00CB the
  settings password ("123456" in the app's capture); the app reads it and checks the user's
  entry itself, it never writes it before a control write (that capture; batmon-ha's
  ``daly2.py``).
Register numbers are relative to the block start.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_CELLS = 32
MAX_TEMPERATURE_SENSORS = 8
TEMPERATURE_OFFSET = 40
CURRENT_OFFSET = 30000


@dataclass(frozen=True)
class Block:
    """A run of registers read with one request."""

    name: str
    start: int
    count: int

    @property
    def byte_count(self) -> int:
        """Data bytes of the response (two per register)."""
        return 2 * self.count


STATUS_BLOCK = Block("status", 0x0000, 62)  # [A]
#: The longer status read: the 62 registers and what real packs keep after them [F].
STATUS_80_BLOCK = Block("status_80", 0x0000, 80)  # [F]
MOS_BLOCK = Block("mos", 0x003E, 9)  # [A]
SETTINGS_BLOCK = Block("settings", 0x0080, 41)  # [D]
DEVICE_INFO_BLOCK = Block("device_info", 0x00A9, 32)  # [A], right after the settings block


@dataclass(frozen=True)
class Register:
    """One scalar register: value = (raw - offset) / divisor, in ``unit``.

    A divisor rather than a scale factor keeps decimal readings exact (3199 mV -> 3.199 V).
    """

    name: str
    index: int
    divisor: int = 1
    offset: int = 0
    unit: str = ""
    minimum: float = float("-inf")
    maximum: float = float("inf")
    #: Raw values a pack answers where it has no such sensor: unknown, not a reading. The first
    #: is what the virtual BMS answers.
    absent: tuple[int, ...] = ()

    def decode(self, raw: int) -> float:
        """Scale a raw register value into the unit."""
        return (raw - self.offset) / self.divisor

    def encode(self, value: float) -> int:
        """Turn a value in the unit back into the raw register value."""
        return round(value * self.divisor) + self.offset


@dataclass(frozen=True)
class StatusLayout:
    """Where one protocol variant keeps the values of the pack's status.

    Register indices count from the first register read; ``registers`` holds the scalar values
    by the name of the BmsStatus field (plus the counts and flags); a statistic a variant lacks
    (min, max, average cell voltage, delta, cell numbers) is computed from the cells. A register
    beyond what a read returned (the 62-register D2 read) is unknown.
    """

    max_cells: int
    cell_voltages: Register
    temperatures: Register
    registers: dict[str, Register]
    #: Registers holding the per-cell balancing bits, 16 cells each, bit 0 = first cell.
    balancing_bitmaps: tuple[int, ...]
    #: First fault word and how many there are.
    fault_words: tuple[int, int]


def _by_name(*registers: Register) -> dict[str, Register]:
    return {register.name: register for register in registers}


def _cells(index: int) -> Register:
    return Register("cell_voltage", index, 1000, unit="V", minimum=0.5, maximum=5.0)


#: What a temperature register of a sensor that is not fitted holds: 0x00FF in unused slots
#: [E][H] and the shared/frames capture, 0x0000 in unused slots and the board temperature of
#: the 80-register captures [F], 0xFFFF in the MOS temperature of an active balancer [F].
#: Raw 0 would read -40 degC: the open-circuit end of the sensor's range, not a reading.
NO_TEMPERATURE_SENSOR = (0x00FF, 0x0000, 0xFFFF)


def _temperature(name: str, index: int, maximum: float = 120.0) -> Register:
    """Describe a temperature in degC + 40 (unknown where no sensor is fitted)."""
    return Register(
        name,
        index,
        1,
        TEMPERATURE_OFFSET,
        "degC",
        minimum=-40.0,
        maximum=maximum,
        absent=NO_TEMPERATURE_SENSOR,
    )


def _pack(voltage: int, current: int, soc: int, capacity: int) -> tuple[Register, ...]:
    """Pack voltage, current (positive = charging), SOC and remaining capacity: both variants."""
    return (
        Register("pack_voltage", voltage, 10, unit="V", minimum=0.0, maximum=200.0),
        # Raw 0 (-3000 A) is what an empty register gives, never a measurement.
        Register("current", current, 10, CURRENT_OFFSET, "A", minimum=-2999.9, maximum=3000.0),
        Register("soc", soc, 10, unit="%", minimum=0.0, maximum=100.0),
        Register("remaining_capacity", capacity, 10, unit="Ah", minimum=0.0, maximum=6500.0),
    )


def _balance_current(index: int) -> Register:
    """Describe the balance current in A: mA with a 30000 offset [E][F].

    Packs without a balance-current reading answer 0x0000 (which would read -30 A) [K].
    """
    return Register(
        "balance_current",
        index,
        1000,
        CURRENT_OFFSET,
        "A",
        minimum=-10.0,
        maximum=10.0,
        absent=(0x0000, 0xFFFF),
    )


def _volts(name: str, index: int, divisor: int) -> Register:
    return Register(name, index, divisor, unit="V")


def _cell_statistic(name: str, index: int) -> Register:
    return Register(
        name, index, 1000, unit="V", minimum=0.0 if name == "cell_delta" else 0.5, maximum=5.0
    )


#: The D2 status: cells at 0 (32, mV) [A][B], temperatures at 32 (8, degC + 40) [A][B], pack
#: values at 40..57 [A][B][F], fault words 0x3A..0x3D [A][C]; registers 62.. only in the
#: 80-register read [F].
D2_STATUS = StatusLayout(
    max_cells=MAX_CELLS,
    cell_voltages=_cells(0),
    temperatures=_temperature("temperature", 32),
    registers=_by_name(
        *_pack(voltage=40, current=41, soc=42, capacity=48),  # [A]
        _cell_statistic("max_cell_voltage", 43),  # [B][F]
        _cell_statistic("min_cell_voltage", 44),  # [B][F]
        _temperature("max_temperature", 45),  # [B][F]
        _temperature("min_temperature", 46),  # [B][F]
        Register("charge_state", 47),  # [B][F] 0 idle, 1 charging, 2 discharging
        Register("cell_count", 49),  # [A]
        Register("temperature_sensor_count", 50),  # [A]
        Register("cycles", 51),  # [A]
        Register("balancing", 52),  # [B][F] balance state, non-zero while balancing
        Register("charge_mos", 53),  # [B] 1 = on
        Register("discharge_mos", 54),  # [B] 1 = on
        _cell_statistic("average_cell_voltage", 55),  # [B][F]
        _cell_statistic("cell_delta", 56),  # [A][F]
        Register("power", 57, unit="W", minimum=0.0, maximum=65535.0),  # [F] |V*I|, unsigned
        _balance_current(64),  # [F]
        _temperature("mos_temperature", 66, maximum=150.0),  # [F]
        _temperature("board_temperature", 67, maximum=150.0),  # [F]
    ),
    balancing_bitmaps=(62, 63),  # [F] cells 1..16, 17..32; only in the 80-register read
    fault_words=(58, 4),
)

#: The 0x81 variant reads two blocks [A]: 0x00 x 64 and 0x41 x 62 (0x40, the lowest cell
#: voltage [E], lies between them and is not read). Indices below count from register 0x00.
X81_PACK_BLOCK = Block("x81_pack", 0x0000, 64)  # [A]
X81_STATE_BLOCK = Block("x81_state", 0x0041, 62)  # [A]
X81_DEVICE_INFO_BLOCK = Block("x81_device_info", 0x0178, 74)  # [A]
X81_MAX_CELLS = 48
X81_STATUS = StatusLayout(
    max_cells=X81_MAX_CELLS,
    cell_voltages=_cells(0x00),  # [E] 0x00..0x2F, mV
    temperatures=_temperature("temperature", 0x30),  # [E] 0x30..0x37, degC + 40, 255 absent
    registers=_by_name(
        *_pack(voltage=0x38, current=0x39, soc=0x3A, capacity=0x4B),  # [E][A]
        Register("cell_count", 0x3C),  # [E][A]
        Register("temperature_sensor_count", 0x3D),  # [E][A]
        _cell_statistic("max_cell_voltage", 0x3E),  # [E]
        Register("max_cell_index", 0x3F),  # [E]
        Register("min_cell_index", 0x41),  # [E]
        _cell_statistic("cell_delta", 0x42),  # [E]
        _temperature("max_temperature", 0x43),  # [E]
        _temperature("min_temperature", 0x45),  # [E]
        Register("charge_state", 0x48),  # [E] 0 idle, 1 charging, 2 discharging
        Register("cycles", 0x4C),  # [E][A]
        Register("balancing", 0x4D),  # [E][A] non-zero while balancing
        _balance_current(0x4E),  # [E]
        Register("charge_mos", 0x52),  # [E][A]
        Register("discharge_mos", 0x53),  # [E][A]
        Register("power", 0x58, unit="W", minimum=0.0, maximum=65535.0),  # [E] unsigned
        _temperature("mos_temperature", 0x5A, maximum=150.0),  # [E]
        _temperature("board_temperature", 0x5B, maximum=150.0),  # [E]
    ),
    balancing_bitmaps=(0x4F, 0x50, 0x51),  # [E] cells 1..16, 17..32, 33..48
    fault_words=(0x6D, 7),  # [E] alarm codes 0..13, two a register (X81_ALARM_FIELDS)
)

#: The 0x81 variant's alarm codes in registers 0x6D..0x73 [E] (``DalyHkmsStatus`` in
#: ``daly_hkms_bms.h``): 14 bytes, code 0 the low byte of 0x6D, code 1 its high byte, bit 0
#: the least significant bit (the real pack of [H], at 11.2 % SOC, reads SOC-low level 2).
#: Each field as (code, first bit, bits, name): a 3-bit field is an alarm level (1, 2, ...
#: named ``<name>_<level>``), a 1-bit field a fault. Bits that tell a state rather than a fault
#: (smart charger connected, parallel communication, fan, heating, MOS off by switch or bus,
#: current limiting, upgrade) are left out.
X81_ALARM_FIELDS: tuple[tuple[int, int, int, str], ...] = (
    (0, 0, 3, "cell_overvoltage"),
    (0, 3, 3, "cell_undervoltage"),
    (0, 7, 1, "smart_charger_connection_failure"),
    (1, 0, 3, "cell_voltage_difference"),
    (1, 3, 3, "charge_over_temperature"),
    (1, 7, 1, "smart_discharger_connection_failure"),
    (2, 0, 3, "charge_under_temperature"),
    (2, 3, 3, "discharge_over_temperature"),
    (2, 6, 1, "charge_mos_over_temperature"),
    (2, 7, 1, "charge_mos_temperature_sensor_fault"),
    (3, 0, 3, "discharge_under_temperature"),
    (3, 3, 3, "temperature_difference"),
    (3, 6, 1, "discharge_mos_over_temperature"),
    (3, 7, 1, "discharge_mos_temperature_sensor_fault"),
    (4, 0, 3, "pack_overvoltage"),
    (4, 3, 3, "pack_undervoltage"),
    (4, 6, 1, "short_circuit_protection"),
    (5, 0, 3, "charge_overcurrent"),
    (5, 3, 3, "discharge_overcurrent"),
    (5, 6, 1, "charge_undervoltage_fault"),
    (5, 7, 1, "discharge_overvoltage_fault"),
    (6, 0, 3, "soc_low"),
    (6, 3, 3, "soh_low"),
    (6, 7, 1, "parallel_communication_failure"),
    (7, 0, 3, "mos_over_temperature"),
    (7, 3, 3, "thermal_runaway"),
    (11, 0, 1, "afe_chip_fault"),
    (11, 1, 1, "afe_communication_fault"),
    (11, 2, 1, "afe_sampling_fault"),
    (11, 3, 1, "cell_voltage_collection_fault"),
    (11, 4, 1, "cell_voltage_wire_disconnected"),
    (11, 5, 1, "pack_voltage_detection_fault"),
    (11, 6, 1, "current_module_fault"),
    (11, 7, 1, "cell_temperature_sensor_fault"),
    (12, 0, 1, "temperature_sensor_disconnected"),
    (12, 1, 1, "eeprom_fault"),
    (12, 2, 1, "flash_fault"),
    (12, 3, 1, "rtc_fault"),
    (12, 4, 1, "charge_mos_fault"),
    (12, 5, 1, "discharge_mos_fault"),
    (12, 6, 1, "precharge_mos_fault"),
    (12, 7, 1, "precharge_failure"),
    (13, 7, 1, "heating_fault"),
)

#: What the charge/discharge state register holds [E][F]: its raw value is the index.
CHARGE_STATES = ("idle", "charging", "discharging")

#: MOS block: temperature of the MOS switches, degC + 40 [A].
MOS_TEMPERATURE = _temperature("mos_temperature", 4, maximum=150.0)

#: The settings block 0x80 x 41, every register by its meaning in syssi's settings decoder [F]
#: (its test answer of a 4S 105 Ah pack states the values) and [D]: temperatures degC + 40,
#: currents 0.1 A with the 30000 offset, pack voltages 0.1 V, cell voltages mV.
SETTINGS_REGISTERS: dict[str, Register] = _by_name(
    Register("rated_capacity", 0, 10, unit="Ah", minimum=0.1, maximum=6500.0),  # [D][F]
    Register("nominal_cell_voltage", 1, 1000, unit="V", minimum=1.0, maximum=5.0),  # [D][F]
    Register("acquisition_boards", 2),
    Register("board_1_cells", 3),
    Register("board_2_cells", 4),
    Register("board_3_cells", 5),
    Register("board_1_temperature_sensors", 6),
    Register("board_2_temperature_sensors", 7),
    Register("board_3_temperature_sensors", 8),
    Register("battery_type", 9),  # 0 LiFePO4, 1 Li-ion, 2 LTO
    Register("sleep_time", 10, unit="s"),
    _volts("cell_voltage_high_warning", 11, 1000),
    _volts("cell_voltage_high_alarm", 12, 1000),
    _volts("cell_voltage_low_warning", 13, 1000),
    _volts("cell_voltage_low_alarm", 14, 1000),
    _volts("pack_voltage_high_warning", 15, 10),
    _volts("pack_voltage_high_alarm", 16, 10),
    _volts("pack_voltage_low_warning", 17, 10),
    _volts("pack_voltage_low_alarm", 18, 10),
    Register("charge_current_warning", 19, 10, CURRENT_OFFSET, "A"),
    Register("charge_current_alarm", 20, 10, CURRENT_OFFSET, "A"),
    Register("discharge_current_warning", 21, 10, CURRENT_OFFSET, "A"),
    Register("discharge_current_alarm", 22, 10, CURRENT_OFFSET, "A"),
    Register("charge_high_temperature_warning", 23, 1, TEMPERATURE_OFFSET, "degC"),
    Register("charge_high_temperature_alarm", 24, 1, TEMPERATURE_OFFSET, "degC"),
    Register("charge_low_temperature_warning", 25, 1, TEMPERATURE_OFFSET, "degC"),
    Register("charge_low_temperature_alarm", 26, 1, TEMPERATURE_OFFSET, "degC"),
    Register("discharge_high_temperature_warning", 27, 1, TEMPERATURE_OFFSET, "degC"),
    Register("discharge_high_temperature_alarm", 28, 1, TEMPERATURE_OFFSET, "degC"),
    Register("discharge_low_temperature_warning", 29, 1, TEMPERATURE_OFFSET, "degC"),
    Register("discharge_low_temperature_alarm", 30, 1, TEMPERATURE_OFFSET, "degC"),
    _volts("cell_voltage_difference_warning", 31, 1000),
    _volts("cell_voltage_difference_alarm", 32, 1000),
    Register("temperature_difference_warning", 33, unit="degC"),
    Register("temperature_difference_alarm", 34, unit="degC"),
    _volts("balance_start_voltage", 35, 1000),
    _volts("balance_start_difference", 36, 1000),
    Register("charge_switch", 37, minimum=0, maximum=1),  # [L] 0x00A5, 1 = on
    Register("discharge_switch", 38, minimum=0, maximum=1),  # [L] 0x00A6, 1 = on
    Register("soc_setting", 39, 10, unit="%", minimum=0.0, maximum=100.0),  # [L] 0x00A7
    Register("mos_over_temperature_alarm", 40, 1, TEMPERATURE_OFFSET, "degC"),
)


@dataclass(frozen=True)
class Writable:
    """A register a client may write: its address and how its value is encoded."""

    address: int
    register: Register
    #: Whether a read of the register gives back what was written (a command such as a
    #: restart cannot be read back: its echo is all the proof there is).
    readable: bool = True


def _setting(name: str) -> Writable:
    register = SETTINGS_REGISTERS[name]
    return Writable(SETTINGS_BLOCK.start + register.index, register)


#: Every register the driver writes, by name [L]: the settings block's registers, the balancer
#: switch, and the restart command. An A5 BMS takes the two MOSFET switches by commands of its
#: own (A5_WRITES); no public source shows a 0x81 pack's BLE writes.
WRITABLE: dict[str, Writable] = {
    **{name: _setting(name) for name in SETTINGS_REGISTERS},
    "balancer_switch": Writable(0x00CF, Register("balancer_switch", 0, minimum=0, maximum=1)),
    "restart": Writable(0x00F0, Register("restart", 0, minimum=1, maximum=1), readable=False),
}


def encode_writable(name: str, value: float) -> int:
    """Return the raw value that writing ``value`` into setting ``name`` stores.

    ValueError, naming what is allowed, for an unknown name, a value outside the setting's
    range, or one finer than its resolution (0.3 for a switch must not become 0).
    """
    writable = WRITABLE.get(name)
    if writable is None:
        raise ValueError(f"no setting {name!r}; settings are {', '.join(sorted(WRITABLE))}")
    register = writable.register
    # What the setting allows and one 16-bit register can hold; NaN and infinity never pass.
    lowest = max(register.minimum, min(register.decode(0), register.decode(0xFFFF)))
    highest = min(register.maximum, max(register.decode(0), register.decode(0xFFFF)))
    if not (math.isfinite(value) and lowest <= value <= highest):
        unit = f" {register.unit}" if register.unit else ""
        raise ValueError(f"{name} must be {lowest:g}..{highest:g}{unit}, not {value:g}")
    raw = register.encode(value)
    if abs(register.decode(raw) - value) > 1e-9:
        raise ValueError(f"{name} takes steps of {1 / register.divisor:g}, not {value:g}")
    return raw


#: The settings password: three registers of ASCII text [L], read by Daly's app, never written.
PASSWORD_BLOCK = Block("password", 0x00C9, 3)


#: Device-information block, D2: ASCII text fields as (first byte, byte count), NUL-padded.
#: Two layouts are in the field. 16-byte fields, text stored reversed, then a 32-byte field
#: (Daly's "machine code", a production date in some firmware) [A][G][J] ...
DEVICE_INFO_FIELDS_16: dict[str, tuple[int, int]] = {
    "software_version": (0, 16),
    "hardware_version": (16, 16),
    "machine_code": (32, 32),
}
#: ... and 32-byte fields in reading order [F].
DEVICE_INFO_FIELDS_32: dict[str, tuple[int, int]] = {
    "software_version": (0, 32),
    "hardware_version": (32, 32),
}
#: The 0x81 variant's device-information block: 14-byte fields in reading order [H][K]
#: (software, hardware, model, battery code, an empty field, production date).
X81_DEVICE_INFO_TEXT: dict[str, tuple[int, int]] = {
    "software_version": (0, 14),
    "hardware_version": (14, 14),
    "model": (28, 14),
    "serial_number": (42, 14),
    "production_date": (70, 14),
}
#: The form of a production date: 20240229, 2024-02-29, 240229 [A][H][K].
PRODUCTION_DATE_FORM = re.compile(r"(?:\d{4}[-/.]?\d{2}[-/.]?\d{2}|\d{6})")
#: How Daly's app shows a software version, "11_240123_K00T" [G][H][I][J][K], and a hardware
#: version, "BMS-GD230-303E", "H2.0_103R_309F9F", "JHB-R24TS-V1.2" [G][H][I][J]: what tells a
#: text stored reversed from one stored in reading order.
SOFTWARE_VERSION_FORM = re.compile(r"\d{2}_\d{6}_")
HARDWARE_VERSION_FORM = re.compile(r"(?:BMS|JHB|DL)[-_]|H\d+\.\d+_")

#: Fault bits by (word, bit) [C]: word 0 = register 0x3A, bit 0 its least significant bit.
FAULT_BITS: dict[tuple[int, int], str] = {
    (0, 0): "cell_overvoltage_1",
    (0, 1): "cell_overvoltage_2",
    (0, 2): "cell_undervoltage_1",
    (0, 3): "cell_undervoltage_2",
    (0, 4): "pack_overvoltage_1",
    (0, 5): "pack_overvoltage_2",
    (0, 6): "pack_undervoltage_1",
    (0, 7): "pack_undervoltage_2",
    (0, 8): "charge_over_temperature_1",
    (0, 9): "charge_over_temperature_2",
    (0, 10): "charge_under_temperature_1",
    (0, 11): "charge_under_temperature_2",
    (0, 12): "discharge_over_temperature_1",
    (0, 13): "discharge_over_temperature_2",
    (0, 14): "discharge_under_temperature_1",
    (0, 15): "discharge_under_temperature_2",
    (1, 0): "charge_overcurrent_1",
    (1, 1): "charge_overcurrent_2",
    (1, 2): "discharge_overcurrent_1",
    (1, 3): "discharge_overcurrent_2",
    (1, 4): "soc_high_1",
    (1, 5): "soc_high_2",
    (1, 6): "soc_low_1",
    (1, 7): "soc_low_2",
    (1, 8): "cell_voltage_difference_1",
    (1, 9): "cell_voltage_difference_2",
    (1, 10): "temperature_difference_1",
    (1, 11): "temperature_difference_2",
    (2, 0): "charge_mos_over_temperature",
    (2, 1): "discharge_mos_over_temperature",
    (2, 2): "charge_mos_temperature_sensor_fault",
    (2, 3): "discharge_mos_temperature_sensor_fault",
    (2, 4): "charge_mos_adhesion_fault",
    (2, 5): "discharge_mos_adhesion_fault",
    (2, 6): "charge_mos_open_circuit_fault",
    (2, 7): "discharge_mos_open_circuit_fault",
    (2, 8): "afe_chip_fault",
    (2, 9): "cell_voltage_collection_fault",
    (2, 10): "cell_temperature_sensor_fault",
    (2, 11): "eeprom_fault",
    (2, 12): "rtc_fault",
    (2, 13): "precharge_failure",
    (2, 14): "communication_failure",
    (2, 15): "internal_communication_failure",
    (3, 0): "current_module_fault",
    (3, 1): "pack_voltage_detection_fault",
    (3, 2): "short_circuit_protection",
    (3, 3): "low_voltage_charge_forbidden",
}


# The A5 protocol (UART/RS485 ports, older Bluetooth modules): one command per value group, each
# answered by 8 data bytes (``protocol.a5``). Sources:
# - [M] Daly "UART/485 Communications Protocol" V1.2 (2020-12-22), section 3, and its V1.0
#   (2019-06-11), as kept in maland16/daly-bms-uart ``docs/``;
# - [N] the peers that read them: dreadnought/python-daly-bms ``dalybms/daly_bms.py``, the
#   ESPHome ``daly_bms`` component, mr-manuel/venus-os_dbus-serialbattery ``bms/daly.py``,
#   fl4p/batmon-ha ``bmslib/models/daly.py``, whose layouts agree for these commands.
# - [O] the MOSFET switches, which Daly's document leaves out: the frames Daly's PC software sends,
#   captured in dreadnought/python-daly-bms#3 and jallum/dalymon#2 (``A5 40 D9 08 01 00 … C7``
#   switches the discharge MOSFET on and is answered ``A5 01 D9 08 01 0D 13 0D 21 0D 17 C0 BA``:
#   the same command from the board, data byte 0 the state asked, the bytes after it what an
#   earlier answer left in the BMS's transmit buffer, here three cell voltages); the same
#   commands in maland16/daly-bms-uart ``daly-bms-uart.cpp`` (setDischargeMOS, setChargeMOS:
#   "0xD9 … First Byte 0x01=ON 0x00=OFF"), dreadnought/python-daly-bms ``dalybms/daly_bms.py``
#   (set_discharge_mosfet, set_charge_mosfet), mr-manuel/venus-os_dbus-serialbattery
#   ``etc/dbus-serialbattery/bms/daly.py`` (write_charge_discharge_mos, which takes an answer
#   of the same command whose data byte 0 is not the value sent for a failed write),
#   nsalois/dailybms_gateway ``daly_bms_uart.py`` (from host address 0x80), and
#   ai-republic/bms-to-inverter ``bms-daly-common/.../bms/daly/common/DalyCommand.java``
#   (WRITE_DISCHRG_FET 0xD9, WRITE_CHRG_FET 0xDA, for its RS485 and CAN links alike). Only the
#   switch read back from 0x93 proves one: none of them takes the answer for more.
#: 0x90 [M][N]: pack voltage (0.1 V), acquisition voltage (always 0), current (30000 + 0.1 A,
#: discharging above 30000), SOC (0.1 %).
A5_SOC = 0x90
#: 0x91 [M][N]: highest cell mV and its number, lowest cell mV and its number.
A5_CELL_RANGE = 0x91
#: 0x92 [M][N]: highest temperature (degC + 40) and its sensor, lowest and its sensor.
A5_TEMPERATURE_RANGE = 0x92
#: 0x93 [M][N]: state (A5_CHARGE_STATES), charge MOS, discharge MOS, "BMS life" (a counter),
#: remaining capacity in mAh (4 bytes).
A5_MOS = 0x93
#: 0x94 [M][N]: cells, temperature sensors, charger, load, DIO bits, cycles (2 bytes; [M] V1.0).
A5_STATUS = 0x94
#: 0x95 [M][N]: cell voltages, mV, three a frame after the frame number.
A5_CELL_VOLTAGES = 0x95
A5_CELLS_PER_FRAME = 3
#: 0x96 [M][N]: temperatures, degC + 40, seven a frame after the frame number.
A5_TEMPERATURES = 0x96
A5_TEMPERATURES_PER_FRAME = 7
#: 0x97 [M]: balancing, one bit a cell (bit 0 cell 1), as maland16/daly-bms-uart,
#: softwarecrash/Daly2MQTT and acpiccolo/Daly-BMS read it; no capture confirms the order.
A5_BALANCING = 0x97
#: 0x98 [M]: failure bits, bytes 0..6 as FAULT_BITS, byte 7 a fault code.
A5_FAILURES = 0x98
#: 0x50, which Daly's document leaves out: rated capacity (mAh, 4 bytes), nominal cell voltage
#: (mV, 4 bytes) (mr-manuel/venus-os_dbus-serialbattery ``read_capacity``, matthewgream/
#: DalyBMSInterface ``RequestResponse_BATTERY_RATINGS``); a real pack's data bytes, sent over
#: CAN with the same id: ``00 00 75 30 00 00 0e 10``, 30000 mAh and 3600 mV (heezes,
#: https://diysolarforum.com/threads/daly-bms-communication-protocol.65439/).
A5_RATED_VALUES = 0x50
#: 0xD9 [O]: switch the discharge MOSFET: data byte 0 = 1 on, 0 off, the other bytes 0.
A5_DISCHARGE_MOS_SWITCH = 0xD9
#: 0xDA [O]: switch the charge MOSFET, as 0xD9.
A5_CHARGE_MOS_SWITCH = 0xDA
#: The settings of WRITABLE an A5 BMS takes, and the command that writes each [O]; 0x93
#: reads them back. No public source shows another A5 write as clearly.
A5_WRITES = {"discharge_switch": A5_DISCHARGE_MOS_SWITCH, "charge_switch": A5_CHARGE_MOS_SWITCH}
#: The commands of one complete sample, in the order they are asked (0x94 first: its counts
#: say how many frames 0x95 and 0x96 send).
A5_SAMPLE_COMMANDS = (
    A5_STATUS,
    A5_SOC,
    A5_CELL_RANGE,
    A5_TEMPERATURE_RANGE,
    A5_MOS,
    A5_CELL_VOLTAGES,
    A5_TEMPERATURES,
    A5_BALANCING,
    A5_FAILURES,
)
A5_CURRENT_OFFSET = 30000
A5_TEMPERATURE_OFFSET = 40
#: 0x93 byte 0 [M]: 0 stationary, 1 charging, 2 discharging.
A5_CHARGE_STATES = ("idle", "charging", "discharging")
