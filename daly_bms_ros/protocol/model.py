"""Typed, immutable results shared by the node, the CLI and the virtual BMS."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
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

    ``current`` is negative while discharging. A value out of its physical range is NaN and its
    name is listed in ``invalid``.
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
    balancing_cells: tuple[bool, ...]
    min_cell_voltage: float
    max_cell_voltage: float
    average_cell_voltage: float
    cell_delta: float
    min_cell_index: int
    max_cell_index: int
    alarm_words: tuple[int, ...]
    alarms: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()

    @property
    def power(self) -> float:
        """Power in W, negative while discharging."""
        return self.pack_voltage * self.current

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN as None), power included."""
        return json_object({**asdict(self), "power": self.power})


@dataclass(frozen=True)
class BmsSettings:
    """The settings block: rated capacity (Ah) and nominal cell voltage (V)."""

    rated_capacity: float
    nominal_cell_voltage: float
    invalid: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN as None)."""
        return json_object(asdict(self))


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return asdict(self)


@dataclass(frozen=True)
class BmsSample:
    """One complete reading: status, plus what the other blocks said, and when it arrived.

    ``received_at`` is wall-clock time (s since the epoch); ``status_frame`` is the status
    response as received, for tools that log the wire data next to the values.
    """

    status: BmsStatus
    settings: BmsSettings | None = None
    mos_temperature: float = math.nan
    received_at: float = 0.0
    status_frame: bytes = b""
