"""Table rows and what every protocol family derives from them the same way.

A family declares where each value sits (a ``Register`` in ``registers`` for the D2 and 0x81
register blocks, a ``Field`` of an A5 answer's data bytes); the code here reads and writes
values by those rows, checks them against the rows' ranges, and derives what a pack's status
holds beyond its raw values (cell statistics and numbers, temperature extremes, the charge
state) once for every family and for the virtual BMS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableSequence, Sequence
from typing import NamedTuple

from daly_bms_ros.protocol.errors import FrameDecodeError
from daly_bms_ros.protocol.registers import CHARGE_STATES, Register


class RangeChecker:
    """Scale raw values; NaN for what is unknown, NaN and a noted name for the impossible.

    A register the read did not cover, or holding the value a pack answers for a sensor it
    lacks, is unknown; a value out of its physical range is impossible. Several readers may
    note impossible names in one shared ``invalid`` list (the answers of one A5 poll).
    """

    def __init__(self, registers: Sequence[int], invalid: list[str] | None = None) -> None:
        self.registers = registers
        self.invalid: list[str] = [] if invalid is None else invalid

    def value(self, register: Register, index: int | None = None, name: str = "") -> float:
        """Return the value of ``register`` (raw at ``index``); ``name`` notes it if impossible."""
        index = register.index if index is None else index
        if index >= len(self.registers) or self.registers[index] in register.absent:
            return math.nan
        value = register.decode(self.registers[index])
        if register.minimum <= value <= register.maximum:
            return value
        self.invalid.append(name or register.name)
        return math.nan

    def series(self, first: Register, count: int) -> tuple[float, ...]:
        """``count`` registers from ``first`` on; the hot path of decoding, hence inlined."""
        raws = self.registers[first.index : first.index + count]
        values = [first.decode(raw) for raw in raws]
        for i, value in enumerate(values):
            if raws[i] in first.absent:
                values[i] = math.nan
            elif not first.minimum <= value <= first.maximum:
                self.invalid.append(f"{first.name}_{i + 1}")
                values[i] = math.nan
        return tuple(values)


def raw_of(register: Register, value: float) -> int:
    """Return the raw value of ``value``; for an unknown one the "absent" value, else 0."""
    if math.isnan(value):
        return register.absent[0] if register.absent else 0
    return register.encode(value)


def check_count(name: str, count: int, limit: int) -> int:
    """Return ``count``; refuse more than the protocol carries (no decoder indexes past it)."""
    if count > limit:
        raise FrameDecodeError(f"{name} is {count}, at most {limit} is possible")
    return count


class Field(NamedTuple):
    """A value in a run of data bytes: ``size`` bytes big-endian from ``offset``.

    ``register`` gives its name, scale, offset, valid range and the raw values that mean
    "no such sensor"; its ``index`` is not used.
    """

    register: Register
    offset: int
    size: int

    @property
    def name(self) -> str:
        """The value's name (a BmsStatus field's where it is one)."""
        return self.register.name


def read_fields(
    fields: Sequence[Field], data: bytes, invalid: list[str] | None = None
) -> dict[str, float]:
    """Return each field's value by name: NaN where unknown, NaN and noted where impossible."""
    raws = [int.from_bytes(data[f.offset : f.offset + f.size], "big") for f in fields]
    checker = RangeChecker(raws, invalid)
    return {field.name: checker.value(field.register, i) for i, field in enumerate(fields)}


def write_fields(
    fields: Sequence[Field], values: Mapping[str, float], into: MutableSequence[int]
) -> None:
    """Write each field's value (by name) into ``into``; bytes outside the fields stay.

    ValueError for a value its field cannot hold.
    """
    for field in fields:
        raw = raw_of(field.register, values[field.name])
        if not 0 <= raw < 1 << (8 * field.size):
            raise ValueError(f"{field.name} = {values[field.name]} does not fit {field.size} bytes")
        into[field.offset : field.offset + field.size] = raw.to_bytes(field.size, "big")


#: The cell statistics a status holds, in the order their registers are checked.
CELL_STATISTICS = ("min_cell_voltage", "max_cell_voltage", "average_cell_voltage", "cell_delta")
CELL_INDICES = ("min_cell_index", "max_cell_index")
TEMPERATURE_EXTREMES = ("max_temperature", "min_temperature")


class Derived(NamedTuple):
    """What a status holds beyond its raw values: cell statistics and extremes."""

    min_cell_voltage: float
    max_cell_voltage: float
    average_cell_voltage: float
    cell_delta: float
    #: 1-based; 0 when unknown.
    min_cell_index: int
    max_cell_index: int
    max_temperature: float
    min_temperature: float


def derive(
    cells: Sequence[float], temperatures: Sequence[float], told: Mapping[str, float]
) -> Derived:
    """Return the statistics a status holds: the BMS's own (``told``), else from the values.

    Min, max, average and delta of the valid cells, the numbers of the lowest and highest cell
    (the first such), the highest and lowest valid temperature. A told value the checks refused
    stays NaN: an impossible register is not replaced by a computed guess. A delta told as 0
    between cells that differ is a register the pack leaves at 0: the cells' delta is given.
    A told cell number naming a cell the pack does not have is 0, unknown.
    """
    valid = [voltage for voltage in cells if not math.isnan(voltage)]
    statistics: dict[str, float]
    if valid:
        lowest, highest = min(valid), max(valid)
        statistics = {
            "min_cell_voltage": lowest,
            "max_cell_voltage": highest,
            "average_cell_voltage": sum(valid) / len(valid),
            "cell_delta": highest - lowest,
            # NaN equals nothing: index() finds the first valid cell of that voltage.
            "min_cell_index": cells.index(lowest) + 1,
            "max_cell_index": cells.index(highest) + 1,
        }
    else:
        statistics = dict.fromkeys((*CELL_STATISTICS, *CELL_INDICES), math.nan)
        statistics.update(min_cell_index=0, max_cell_index=0)
    measured = [value for value in temperatures if not math.isnan(value)]
    statistics["max_temperature"] = max(measured, default=math.nan)
    statistics["min_temperature"] = min(measured, default=math.nan)
    delta = statistics["cell_delta"]
    statistics.update(told)
    if statistics["cell_delta"] == 0 and delta >= 0.001:
        statistics["cell_delta"] = delta
    indices = {
        name: int(number) if 1 <= number <= len(cells) else 0
        for name in CELL_INDICES
        for number in (statistics[name],)
    }
    return Derived(
        statistics["min_cell_voltage"],
        statistics["max_cell_voltage"],
        statistics["average_cell_voltage"],
        statistics["cell_delta"],
        indices["min_cell_index"],
        indices["max_cell_index"],
        statistics["max_temperature"],
        statistics["min_temperature"],
    )


#: A current at least this large (A) is a pack charging or discharging, whatever a register
#: left at 0 says.
FLOWING_CURRENT_A = 1.0


def charge_state(raw: int, current: float, states: Sequence[str] = CHARGE_STATES) -> str:
    """Return the charge state the BMS tells, "unknown" where its raw value cannot be right.

    Out of range, or idle (0, what a pack that does not fill the register answers) while a
    current flows (aiobmsble's test frame: 3.0 A and 0).
    """
    if raw >= len(states) or (raw == 0 and abs(current) >= FLOWING_CURRENT_A):
        return "unknown"
    return states[raw]
