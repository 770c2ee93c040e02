"""Typed, immutable results shared by the node, the CLI and the virtual BMS."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


def json_object(mapping: dict[str, Any]) -> dict[str, Any]:
    """Make ``mapping`` valid JSON with ``json_ready``."""
    return {key: json_ready(value) for key, value in mapping.items()}


def json_ready(value: Any) -> Any:
    """Replace NaN by None and tuples by lists, throughout, so the result is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class BmsStatus:
    """The status block: what the pack is doing now. Units: V, A, W, %, Ah, degC.

    ``current`` and ``power`` are negative while discharging. A value out of its physical range
    is NaN and its name is listed in ``invalid``; a value the BMS did not report (a sensor it
    lacks, a register the read did not cover) is NaN too, without being listed.
    ``balancing_cells`` is None when the read carried no per-cell balancing bits (the 62-register
    D2 read): which cells balance is then unknown, not "none".
    """

    cell_voltages: tuple[float, ...]
    temperatures: tuple[float, ...]
    pack_voltage: float
    current: float
    soc: float
    remaining_capacity: float
    cycles: int
    charge_mos: bool
    discharge_mos: bool
    balancing: bool
    balancing_cells: tuple[bool, ...] | None
    min_cell_voltage: float
    max_cell_voltage: float
    average_cell_voltage: float
    cell_delta: float
    min_cell_index: int
    max_cell_index: int
    alarm_words: tuple[int, ...]
    alarms: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    #: What the BMS reports as the pack power (W), signed like the current.
    power: float = math.nan
    #: "idle", "charging", "discharging" as the BMS reports it, or "unknown".
    charge_state: str = "unknown"
    max_temperature: float = math.nan
    min_temperature: float = math.nan
    #: Current through the balancing resistors (A).
    balance_current: float = math.nan
    mos_temperature: float = math.nan
    board_temperature: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN as None)."""
        return json_object(asdict(self))

    def with_current_inverted(self) -> BmsStatus:
        """Return the same status with current and power of the opposite sign.

        For firmware that reports the current's sign reversed (charging as negative).
        """
        swapped = {"charging": "discharging", "discharging": "charging"}
        return replace(
            self,
            current=-self.current,
            power=-self.power,
            charge_state=swapped.get(self.charge_state, self.charge_state),
        )


@dataclass(frozen=True)
class BmsSettings:
    """The settings block: rated capacity (Ah), nominal cell voltage (V), and the rest.

    ``values`` holds every other setting by its name in the register table (protection
    thresholds, sleep time, balancing, cells per board...), in the register's unit.
    """

    rated_capacity: float
    nominal_cell_voltage: float
    invalid: tuple[str, ...] = ()
    values: Mapping[str, float] = field(default_factory=dict)

    def by_name(self) -> dict[str, float]:
        """Return every setting by its name in the register table, in its unit."""
        return {
            "rated_capacity": self.rated_capacity,
            "nominal_cell_voltage": self.nominal_cell_voltage,
            **self.values,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready flat mapping (NaN as None)."""
        return json_object({**self.by_name(), "invalid": self.invalid})


@dataclass(frozen=True)
class MosTemperature:
    """Temperature of the MOS switches in degC, NaN when out of range."""

    temperature: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN as None)."""
        return json_object(asdict(self))


@dataclass(frozen=True)
class DeviceInfo:
    """What the BMS says about itself; "" where a field is empty or the variant lacks it."""

    software_version: str
    hardware_version: str
    production_date: str = ""
    serial_number: str = ""
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return asdict(self)


@dataclass(frozen=True)
class BmsSample:
    """One complete reading: status, plus what the other blocks said, and when it arrived.

    ``received_at`` is wall-clock time (s since the epoch); ``status_frame`` is the status
    response as received, for tools that log the wire data next to the values; ``device``
    names the BMS that answered.
    """

    status: BmsStatus
    settings: BmsSettings | None = None
    received_at: float = 0.0
    status_frame: bytes = b""
    #: Name and address of the BMS that answered, "" where unknown.
    device: str = ""

    @property
    def mos_temperature(self) -> float:
        """Temperature of the MOS switches (degC), NaN where the BMS does not report it."""
        return self.status.mos_temperature
