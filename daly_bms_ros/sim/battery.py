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
    #: The switches a client may write: a MOS switched off stops the current through it.
    charge_mos_on: bool = True
    discharge_mos_on: bool = True
    balancer_on: bool = True
    _offsets: tuple[float, ...] = field(init=False)
    #: Settings written by a client, by name, in their units.
    _written: dict[str, float] = field(init=False, default_factory=dict)
    #: Charge (Ah) the load could not move while a MOS was off, up to _integrated_until (s).
    _held_back_ah: float = field(init=False, default=0.0)
    _integrated_until: float = field(init=False, default=0.0)
    #: What setting the SOC moved the counter by (0..1).
    _soc_shift: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if not 1 <= self.cells <= self.max_cells:
            raise ValueError(f"cells must be 1..{self.max_cells}, not {self.cells}")
        if not self.capacity_ah > 0 or not self.period_s > 0:
            raise ValueError("capacity and load period must be above 0")
        if not 1 <= self.sensors <= 8:
            raise ValueError(f"sensors must be 1..8, not {self.sensors}")
        spread = random.Random(self.seed)
        self._offsets = tuple(spread.uniform(-0.006, 0.006) for _ in range(self.cells))

    def load(self, elapsed: float) -> float:
        """Load profile in A (negative = discharge): a slow sine between discharge and charge."""
        return round(-self.load_amps * math.sin(2 * math.pi * elapsed / self.period_s), 1)

    def current(self, elapsed: float) -> float:
        """Return the load's current where the MOS it needs is on, else 0."""
        load = self.load(elapsed)
        if (load > 0 and not self.charge_mos_on) or (load < 0 and not self.discharge_mos_on):
            return 0.0
        return load

    def soc(self, elapsed: float) -> float:
        """State of charge (0..1): the initial charge plus the integral of the current.

        The sine's integral in closed form, less what a switched-off MOS held back, plus what
        setting the SOC moved the counter by.
        """
        self._integrate(elapsed)
        omega = 2 * math.pi / self.period_s
        charge_ah = self.load_amps * (math.cos(omega * elapsed) - 1) / omega / 3600
        charge_ah -= self._held_back_ah
        soc = self.initial_soc + charge_ah / self.capacity_ah + self._soc_shift
        return min(max(soc, 0.0), 1.0)

    def _integrate(self, elapsed: float, step: float = 0.5) -> None:
        """Add up the charge held back by a switched-off MOS until ``elapsed``."""
        if self.charge_mos_on and self.discharge_mos_on:
            self._integrated_until = max(self._integrated_until, elapsed)
            return
        while self._integrated_until < elapsed:
            dt = min(step, elapsed - self._integrated_until)
            middle = self._integrated_until + dt / 2
            self._held_back_ah += (self.load(middle) - self.current(middle)) * dt / 3600
            self._integrated_until += dt

    def write(self, elapsed: float, name: str, value: float) -> None:
        """Take a setting a client wrote ``elapsed`` s after start: switches act on the pack."""
        self._integrate(elapsed)
        if name == "charge_switch":
            self.charge_mos_on = bool(value)
        elif name == "discharge_switch":
            self.discharge_mos_on = bool(value)
        elif name == "balancer_switch":
            self.balancer_on = bool(value)
        elif name == "soc_setting":
            self._soc_shift += value / 100 - self.soc(elapsed)
        self._written[name] = value

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
            self.balancer_on and charging and voltage - min(cells) > BALANCE_THRESHOLD_V
            for voltage in cells
        )
        alarm_words = (0, 0x40 if soc < 0.1 else 0, 0, 0)  # level-1 SOC low
        pack_voltage = round(sum(cells), 1)
        power = math.floor(abs(pack_voltage * current))
        # As the BMS computes them itself, not by the decoder's code: what the driver derives
        # is checked against them.
        return BmsStatus(
            cell_voltages=cells,
            temperatures=temperatures,
            pack_voltage=pack_voltage,
            current=current,
            soc=round(soc * 100, 1),
            remaining_capacity=round(soc * self.capacity_ah, 1),
            cycles=self.cycles,
            charge_mos=self.charge_mos_on,
            discharge_mos=self.discharge_mos_on,
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
            "charge_switch": float(self.charge_mos_on),
            "discharge_switch": float(self.discharge_mos_on),
            **self._written,
        }
        values.pop("balancer_switch", None)  # a register of its own, outside the block
        return BmsSettings(
            rated_capacity=values.pop("rated_capacity", self.capacity_ah),
            nominal_cell_voltage=values.pop("nominal_cell_voltage", 3.2),
            values=values,
        )

    def mos_temperature(self, elapsed: float) -> MosTemperature:
        """MOS switches warm with the current."""
        return MosTemperature(float(round(AMBIENT_C + 2 + abs(self.current(elapsed)) * 0.2)))
