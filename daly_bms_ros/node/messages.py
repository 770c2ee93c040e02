"""Turn a decoded BMS sample into ROS messages with sensor_msgs/BatteryState semantics.

BatteryState wants SI units, a 0..1 percentage, NaN for what is unknown and Ah for charges;
the protocol core gives volts, amperes, percent and Ah, so only the percentage is rescaled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from builtin_interfaces.msg import Time
from sensor_msgs.msg import BatteryState

from daly_bms_ros.msg import DalyCells, DalySettings
from daly_bms_ros.protocol import BmsSample, BmsSettings, BmsStatus
from daly_bms_ros.protocol.registers import SETTINGS_REGISTERS
from daly_bms_ros.report import IDLE_CURRENT_A, NOT_IN_BATTERY_STATE

#: Alarm name fragments and the BatteryState health they mean, most severe first.
HEALTH_BY_ALARM: tuple[tuple[str, int], ...] = (
    ("over_temperature", BatteryState.POWER_SUPPLY_HEALTH_OVERHEAT),
    ("under_temperature", BatteryState.POWER_SUPPLY_HEALTH_COLD),
    ("overvoltage", BatteryState.POWER_SUPPLY_HEALTH_OVERVOLTAGE),
)
#: The BMS's charge state as BatteryState tells it (the rest: "idle").
CHARGE_STATE_BY_SUPPLY_STATUS = {
    BatteryState.POWER_SUPPLY_STATUS_CHARGING: "charging",
    BatteryState.POWER_SUPPLY_STATUS_DISCHARGING: "discharging",
}
#: Alarms about the state of charge say nothing about the battery's health.
CHARGE_LEVEL_ALARM_PREFIX = "soc_"


@dataclass(frozen=True)
class BatteryIdentity:
    """What the user tells about the pack, copied into every BatteryState."""

    frame_id: str
    location: str
    serial_number: str
    technology: int
    design_capacity: float


def supply_status(sample: BmsSample) -> int:
    """Charging/discharging from the current's sign; full or idle when no current flows."""
    status = sample.status
    if math.isnan(status.current):
        return BatteryState.POWER_SUPPLY_STATUS_UNKNOWN
    if status.current > IDLE_CURRENT_A and status.charge_mos:
        return BatteryState.POWER_SUPPLY_STATUS_CHARGING
    if status.current < -IDLE_CURRENT_A:
        return BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
    if status.soc >= 100.0:
        return BatteryState.POWER_SUPPLY_STATUS_FULL
    return BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING


def supply_health(alarms: Iterable[str]) -> int:
    """Map the BMS's named alarms to the closest BatteryState health value."""
    names = [alarm for alarm in alarms if not alarm.startswith(CHARGE_LEVEL_ALARM_PREFIX)]
    if not names:
        return BatteryState.POWER_SUPPLY_HEALTH_GOOD
    for fragment, health in HEALTH_BY_ALARM:
        if any(fragment in name for name in names):
            return health
    return BatteryState.POWER_SUPPLY_HEALTH_UNSPEC_FAILURE


def battery_state(sample: BmsSample, identity: BatteryIdentity, stamp: Time) -> BatteryState:
    """Build the BatteryState of one sample."""
    status = sample.status
    rated = sample.settings.rated_capacity if sample.settings is not None else math.nan
    message = BatteryState()
    message.header.stamp = stamp
    message.header.frame_id = identity.frame_id
    message.voltage = status.pack_voltage
    # The hottest sensor is what limits the pack, so it stands for the pack's temperature.
    message.temperature = max(status.temperatures, default=math.nan)
    message.current = status.current
    message.charge = status.remaining_capacity
    message.capacity = rated
    message.design_capacity = identity.design_capacity or rated
    message.percentage = status.soc / 100.0
    message.power_supply_status = supply_status(sample)
    message.power_supply_health = supply_health(status.alarms)
    message.power_supply_technology = identity.technology
    message.present = True
    message.cell_voltage = list(status.cell_voltages)
    # Daly sensors measure the pack, not single cells.
    message.cell_temperature = [math.nan] * len(status.cell_voltages)
    message.location = identity.location
    message.serial_number = identity.serial_number
    return message


def daly_cells(sample: BmsSample, frame_id: str, stamp: Time) -> DalyCells:
    """Build the per-cell DalyCells message of one sample."""
    status = sample.status
    message = DalyCells()
    message.header.stamp = stamp
    message.header.frame_id = frame_id
    message.device = sample.device
    message.cell_voltages = list(status.cell_voltages)
    # Empty when the BMS did not tell which cells balance (see DalyCells.msg).
    message.balancing = list(status.balancing_cells or ())
    message.min_cell_voltage = status.min_cell_voltage
    message.max_cell_voltage = status.max_cell_voltage
    message.average_cell_voltage = status.average_cell_voltage
    message.cell_voltage_delta = status.cell_delta
    message.min_cell_index = status.min_cell_index
    message.max_cell_index = status.max_cell_index
    message.temperatures = list(status.temperatures)
    message.mos_temperature = sample.mos_temperature
    message.power = status.power
    message.board_temperature = status.board_temperature
    message.balance_current = status.balance_current
    message.cycles = status.cycles
    message.charge_mos = status.charge_mos
    message.discharge_mos = status.discharge_mos
    message.balancing_active = status.balancing
    message.alarms = list(status.alarms)
    message.alarm_words = list(status.alarm_words)
    return message


def _at_resolution(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` decimals: float32 noise off, NaN kept."""
    return value if math.isnan(value) else round(value, digits)


def _numbers(values: Iterable[float], digits: int) -> tuple[float, ...]:
    return tuple(_at_resolution(float(value), digits) for value in values)


def sample_from_messages(battery: BatteryState, cells: DalyCells) -> BmsSample:
    """Rebuild the sample a BatteryState and the DalyCells of the same stamp came from.

    What a subscriber (the HTTP bridge) needs to show the same values as the CLI; the settings
    block is reduced to the rated capacity, the one setting the messages carry. The messages'
    float32 values are rounded back to the resolution the BMS reports (0.1 V for the pack, mV
    for cells, 0.1 A, 0.1 %, 0.1 Ah, 1 degC, 1 W, mA for the balance current).
    """
    temperatures = _numbers(cells.temperatures, 0)
    status = BmsStatus(
        cell_voltages=_numbers(cells.cell_voltages, 3),
        temperatures=temperatures,
        pack_voltage=_at_resolution(battery.voltage, 1),
        current=_at_resolution(battery.current, 1),
        soc=_at_resolution(battery.percentage * 100.0, 1),
        remaining_capacity=_at_resolution(battery.charge, 1),
        cycles=cells.cycles,
        charge_mos=cells.charge_mos,
        discharge_mos=cells.discharge_mos,
        balancing=cells.balancing_active,
        balancing_cells=tuple(bool(flag) for flag in cells.balancing) if cells.balancing else None,
        min_cell_voltage=_at_resolution(cells.min_cell_voltage, 3),
        max_cell_voltage=_at_resolution(cells.max_cell_voltage, 3),
        average_cell_voltage=_at_resolution(cells.average_cell_voltage, 3),
        cell_delta=_at_resolution(cells.cell_voltage_delta, 3),
        min_cell_index=cells.min_cell_index,
        max_cell_index=cells.max_cell_index,
        alarm_words=tuple(int(word) for word in cells.alarm_words),
        alarms=tuple(cells.alarms),
        mos_temperature=_at_resolution(cells.mos_temperature, 0),
        power=_at_resolution(cells.power, 0),
        charge_state=CHARGE_STATE_BY_SUPPLY_STATUS.get(battery.power_supply_status, "idle"),
        max_temperature=max(temperatures, default=math.nan),
        min_temperature=min(temperatures, default=math.nan),
        balance_current=_at_resolution(cells.balance_current, 3),
        board_temperature=_at_resolution(cells.board_temperature, 0),
    )
    return _sample_of(status, battery, cells.device)


def sample_from_battery_state(battery: BatteryState, device: str) -> BmsSample:
    """Rebuild the sample of a battery that publishes a BatteryState alone: a pack group.

    What BatteryState carries, at the resolution of a pack's values; cycles, MOS states and
    balancing, which it does not carry, are listed in ``invalid`` (unknown to every output),
    the per-cell values NaN (cells are per pack).
    """
    cells = _numbers(battery.cell_voltage, 3)
    known_cells = [voltage for voltage in cells if not math.isnan(voltage)]
    status = BmsStatus(
        cell_voltages=cells,
        temperatures=(),
        pack_voltage=_at_resolution(battery.voltage, 1),
        current=_at_resolution(battery.current, 1),
        soc=_at_resolution(battery.percentage * 100.0, 1),
        remaining_capacity=_at_resolution(battery.charge, 1),
        cycles=0,
        charge_mos=False,
        discharge_mos=False,
        balancing=False,
        balancing_cells=None,
        min_cell_voltage=min(known_cells, default=math.nan),
        max_cell_voltage=max(known_cells, default=math.nan),
        average_cell_voltage=(
            round(sum(known_cells) / len(known_cells), 3) if known_cells else math.nan
        ),
        cell_delta=round(max(known_cells) - min(known_cells), 3) if known_cells else math.nan,
        min_cell_index=0,
        max_cell_index=0,
        alarm_words=(),
        invalid=NOT_IN_BATTERY_STATE,
        charge_state=CHARGE_STATE_BY_SUPPLY_STATUS.get(battery.power_supply_status, "idle"),
        max_temperature=_at_resolution(battery.temperature, 0),
        min_temperature=_at_resolution(battery.temperature, 0),
    )
    return _sample_of(status, battery, device)


def _sample_of(status: BmsStatus, battery: BatteryState, device: str) -> BmsSample:
    """Return the sample of ``status`` as ``battery`` carried it: its capacity, its stamp."""
    stamp = battery.header.stamp
    return BmsSample(
        status,
        BmsSettings(
            rated_capacity=_at_resolution(battery.capacity, 1), nominal_cell_voltage=math.nan
        ),
        received_at=stamp.sec + stamp.nanosec * 1e-9,
        device=device,
    )


def daly_settings(settings: BmsSettings, device: str, frame_id: str, stamp: Time) -> DalySettings:
    """Build a DalySettings message: every setting by name, value and unit."""
    values = settings.by_name()
    message = DalySettings(device=device)
    message.header.stamp = stamp
    message.header.frame_id = frame_id
    message.names = list(values)
    message.values = [float(value) for value in values.values()]
    message.units = [SETTINGS_REGISTERS[name].unit for name in values]
    return message
