"""The battery behind the virtual BMS: cells, charge and temperatures that move like a real pack.

A LiFePO4 pack follows a load profile: it discharges and charges in turns, the state of charge
integrates the current, each cell's voltage follows the open-circuit curve plus a small offset of
its own and the drop across its internal resistance, and the temperature rises with the current.
The model is a pure function of the elapsed time, so tests can compare what the driver
publishes with the model's state at the time of the answer.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from dataclasses import dataclass, field

from daly_bms_ros.protocol import BmsSettings, BmsStatus, MosTemperature, decode_alarms
from daly_bms_ros.protocol.registers import MAX_CELLS

#: LiFePO4 open-circuit voltage (V) by state of charge (0..1), typical datasheet values.
OCV_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 2.80),
    (0.05, 3.10),
    (0.10, 3.20),
    (0.30, 3.26),
    (0.60, 3.30),
    (0.90, 3.34),
    (0.97, 3.40),
    (1.0, 3.55),
)
CELL_RESISTANCE_OHM = 0.0008
#: The settings of the real 16S pack in shared/frames (its answer to the 0x80 x 41 read) that
#: do not depend on the pack's size.
CAPTURED_SETTINGS: dict[str, float] = {
    "acquisition_boards": 1.0,
    "board_2_cells": 0.0,
    "board_3_cells": 0.0,
    "board_2_temperature_sensors": 0.0,
    "board_3_temperature_sensors": 0.0,
    "battery_type": 0.0,  # LiFePO4
    "sleep_time": 3600.0,
    "cell_voltage_high_warning": 3.5,
    "cell_voltage_high_alarm": 3.6,
    "cell_voltage_low_warning": 2.6,
    "cell_voltage_low_alarm": 2.5,
    "charge_current_warning": -160.0,
    "charge_current_alarm": -200.0,
    "discharge_current_warning": 160.0,
    "discharge_current_alarm": 200.0,
    "charge_high_temperature_warning": 60.0,
    "charge_high_temperature_alarm": 65.0,
    "charge_low_temperature_warning": -30.0,
    "charge_low_temperature_alarm": -35.0,
    "discharge_high_temperature_warning": 65.0,
    "discharge_high_temperature_alarm": 70.0,
    "discharge_low_temperature_warning": -30.0,
    "discharge_low_temperature_alarm": -35.0,
    "cell_voltage_difference_warning": 0.5,
    "cell_voltage_difference_alarm": 0.8,
    "temperature_difference_warning": 10.0,
    "temperature_difference_alarm": 15.0,
    "balance_start_voltage": 3.4,
    "balance_start_difference": 0.02,
    "charge_switch": 1.0,
    "discharge_switch": 1.0,
    "mos_over_temperature_alarm": 47.0,
}
AMBIENT_C = 23.0
#: A cell this far above the lowest one is balanced while charging (V).
BALANCE_THRESHOLD_V = 0.008
#: Current through a balancing resistor (A).
BALANCE_CURRENT_A = 0.06


def open_circuit_voltage(soc: float) -> float:
    """Interpolate the OCV curve at ``soc`` (0..1)."""
    points = [point[0] for point in OCV_CURVE]
    index = min(max(bisect_left(points, soc), 1), len(OCV_CURVE) - 1)
    (soc0, volt0), (soc1, volt1) = OCV_CURVE[index - 1], OCV_CURVE[index]
    return volt0 + (volt1 - volt0) * (min(max(soc, soc0), soc1) - soc0) / (soc1 - soc0)


@dataclass
class BatteryModel:
    """A pack of ``cells`` LiFePO4 cells with ``sensors`` temperature sensors."""

    cells: int = 16
    sensors: int = 2
    capacity_ah: float = 100.0
    initial_soc: float = 0.8
    load_amps: float = 20.0
    period_s: float = 600.0
    cycles: int = 12
    seed: int = 1
    #: The most cells the protocol variant carries (D2: 32, 0x81: 48).
    max_cells: int = MAX_CELLS
    _offsets: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.cells <= self.max_cells:
            raise ValueError(f"cells must be 1..{self.max_cells}, not {self.cells}")
        if not self.capacity_ah > 0 or not self.period_s > 0:
            raise ValueError("capacity and load period must be above 0")
        if not 1 <= self.sensors <= 8:
            raise ValueError(f"sensors must be 1..8, not {self.sensors}")
        spread = random.Random(self.seed)
        self._offsets = tuple(spread.uniform(-0.006, 0.006) for _ in range(self.cells))

    def current(self, elapsed: float) -> float:
        """Load profile in A (negative = discharge): a slow sine between discharge and charge."""
        return round(-self.load_amps * math.sin(2 * math.pi * elapsed / self.period_s), 1)

    def soc(self, elapsed: float) -> float:
        """State of charge (0..1): the initial charge plus the integral of the sine current."""
        omega = 2 * math.pi / self.period_s
        charge_ah = self.load_amps * (math.cos(omega * elapsed) - 1) / omega / 3600
        return min(max(self.initial_soc + charge_ah / self.capacity_ah, 0.0), 1.0)

    def status(self, elapsed: float) -> BmsStatus:
        """Return the status the BMS reports ``elapsed`` seconds after it started.

        Filled as a real pack fills it: power as floor(|V*I|) with the current's sign, the
        charge/discharge state, max/min temperature, and per-cell balancing while charging of
        every cell that has drifted above the lowest one.
        """
        current = self.current(elapsed)
        soc = self.soc(elapsed)
        base = open_circuit_voltage(soc) + current * CELL_RESISTANCE_OHM
        cells = tuple(round(base + offset, 3) for offset in self._offsets)
        heat = abs(current) * 0.1
        temperatures = tuple(float(round(AMBIENT_C + heat + i)) for i in range(self.sensors))
        charging = current > 0
        balancing_cells = tuple(
            charging and voltage - min(cells) > BALANCE_THRESHOLD_V for voltage in cells
        )
        alarm_words = (0, 0x40 if soc < 0.1 else 0, 0, 0)  # level-1 SOC low
        pack_voltage = round(sum(cells), 1)
        power = math.floor(abs(pack_voltage * current))
        return BmsStatus(
            cell_voltages=cells,
            temperatures=temperatures,
            pack_voltage=pack_voltage,
            current=current,
            soc=round(soc * 100, 1),
            remaining_capacity=round(soc * self.capacity_ah, 1),
            cycles=self.cycles,
            charge_mos=True,
            discharge_mos=True,
            balancing=any(balancing_cells),
            balancing_cells=balancing_cells,
            min_cell_voltage=min(cells),
            max_cell_voltage=max(cells),
            average_cell_voltage=round(sum(cells) / len(cells), 3),
            cell_delta=round(max(cells) - min(cells), 3),
            min_cell_index=cells.index(min(cells)) + 1,
            max_cell_index=cells.index(max(cells)) + 1,
            alarm_words=alarm_words,
            alarms=decode_alarms(alarm_words),
            power=float(-power if current < 0 else power),
            charge_state="charging" if charging else "discharging" if current < 0 else "idle",
            max_temperature=max(temperatures),
            min_temperature=min(temperatures),
            balance_current=BALANCE_CURRENT_A if any(balancing_cells) else 0.0,
            mos_temperature=self.mos_temperature(elapsed).temperature,
        )

    def settings(self) -> BmsSettings:
        """Return the settings block of a real 16S LiFePO4 pack (shared/frames), for this pack.

        Pack thresholds scale with the cell count; the SOC setting is the charge the pack
        started with, as the captured block holds the SOC of its status.
        """
        per_cell = {"high_warning": 3.494, "high_alarm": 3.594, "low_warning": 2.6625,
                    "low_alarm": 2.5625}  # fmt: skip
        values = {
            **CAPTURED_SETTINGS,
            "board_1_cells": float(self.cells),
            "board_1_temperature_sensors": float(self.sensors),
            **{
                f"pack_voltage_{name}": round(volts * self.cells, 1)
                for name, volts in per_cell.items()
            },
            "soc_setting": round(self.initial_soc * 100, 1),
        }
        return BmsSettings(rated_capacity=self.capacity_ah, nominal_cell_voltage=3.2, values=values)

    def mos_temperature(self, elapsed: float) -> MosTemperature:
        """MOS switches warm with the current."""
        return MosTemperature(float(round(AMBIENT_C + 2 + abs(self.current(elapsed)) * 0.2)))
