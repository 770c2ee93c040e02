"""Typed, immutable results shared by the node, the CLI and the virtual BMS."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


def _json_ready(mapping: dict[str, Any]) -> dict[str, Any]:
    """Return ``mapping`` with NaN as None and tuples as lists, so it is valid JSON."""
    return {key: _json_safe(value) for key, value in mapping.items()}


def _json_safe(value: Any) -> Any:
    """Replace NaN by None and tuples by lists, so the result is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
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
        return _json_ready({**asdict(self), "power": self.power})


@dataclass(frozen=True)
class BmsSettings:
    """The settings block: rated capacity (Ah) and nominal cell voltage (V)."""

    rated_capacity: float
    nominal_cell_voltage: float
    invalid: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN as None)."""
        return _json_ready(asdict(self))


@dataclass(frozen=True)
class MosTemperature:
    """Temperature of the MOS switches in degC, NaN when out of range."""

    temperature: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN as None)."""
        return _json_ready(asdict(self))


@dataclass(frozen=True)
class BmsSample:
    """One complete reading: status, plus what the other blocks said, and when it arrived."""

    status: BmsStatus
    settings: BmsSettings | None = None
    mos_temperature: float = math.nan
    received_at: float = 0.0
