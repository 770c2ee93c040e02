"""Packs combined into one battery for the robot: series strings, parallel banks, nested.

A group is written as an expression of the packs' namespaces: ``series(/front, /rear)``,
``parallel(/left, /right)``, ``parallel(series(/a, /b), series(/c, /d))``. Combining follows
the electrics: in series the voltages add and the current is the same (the mean of what each
pack measures), the string holds the charge of its emptiest pack; in parallel the currents,
charges and capacities add, the voltage is shared (the mean) and the state of charge is
weighted by capacity. The health is the worst of the members'.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sensor_msgs.msg import BatteryState

from daly_bms_ros.report import IDLE_CURRENT_A

SERIES = "series"
PARALLEL = "parallel"
#: How deep groups may nest: a robot's wiring is a bank of strings (2); deeper expressions
#: are mistakes, and thousands deep would exhaust the parser's recursion.
MAX_DEPTH = 8
_TOKEN = re.compile(r"\s*(?:(?P<word>[A-Za-z0-9_/~.-]+)|(?P<mark>[(),]))")
#: BatteryState health values from the worst to the best.
HEALTH_SEVERITY = (
    BatteryState.POWER_SUPPLY_HEALTH_DEAD,
    BatteryState.POWER_SUPPLY_HEALTH_OVERVOLTAGE,
    BatteryState.POWER_SUPPLY_HEALTH_OVERHEAT,
    BatteryState.POWER_SUPPLY_HEALTH_COLD,
    BatteryState.POWER_SUPPLY_HEALTH_UNSPEC_FAILURE,
    BatteryState.POWER_SUPPLY_HEALTH_WATCHDOG_TIMER_EXPIRE,
    BatteryState.POWER_SUPPLY_HEALTH_SAFETY_TIMER_EXPIRE,
    BatteryState.POWER_SUPPLY_HEALTH_UNKNOWN,
    BatteryState.POWER_SUPPLY_HEALTH_GOOD,
)


@dataclass(frozen=True)
class Group:
    """A pack (``kind`` "pack", ``name`` its namespace) or a series/parallel of members."""

    kind: str
    members: tuple[Group, ...] = ()
    name: str = ""

    def packs(self) -> list[str]:
        """Every pack's namespace, in the order written."""
        if self.kind == "pack":
            return [self.name]
        return [pack for member in self.members for pack in member.packs()]


def parse_group(text: str) -> Group:
    """Parse a group expression; ValueError saying what was expected."""
    tokens = [m.group("word") or m.group("mark") for m in _tokens(text)]
    group, position = _parse(tokens, 0, text, 1)
    if position != len(tokens):
        raise ValueError(f"{shown(text)}: unexpected {shown(tokens[position], 20)} after the group")
    if group.kind == "pack":
        raise ValueError(f"{shown(text)}: a group combines packs: series(...) or parallel(...)")
    packs = group.packs()
    if len(set(packs)) != len(packs):
        raise ValueError(f"{shown(text)}: a pack is named twice")
    return group


def shown(text: str, width: int = 60) -> str:
    """Quote ``text`` for a message, shortened: an expression may be thousands long."""
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _tokens(text: str) -> list[re.Match[str]]:
    matches, position = [], 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"{shown(text)}: cannot read {text[position:].strip()[:10]!r}")
        matches.append(match)
        position = match.end()
    return matches


def _parse(tokens: Sequence[str], at: int, text: str, depth: int) -> tuple[Group, int]:
    if at >= len(tokens) or tokens[at] in "(),":
        raise ValueError(f"{shown(text)}: a pack or series(...)/parallel(...) expected")
    word = tokens[at]
    if at + 1 < len(tokens) and tokens[at + 1] == "(":
        if word not in (SERIES, PARALLEL):
            raise ValueError(f"{shown(text)}: {shown(word, 20)} is neither series nor parallel")
        if depth > MAX_DEPTH:
            raise ValueError(f"{shown(text)}: groups nest at most {MAX_DEPTH} deep")
        members, position = [], at + 2
        while True:
            member, position = _parse(tokens, position, text, depth + 1)
            members.append(member)
            if position < len(tokens) and tokens[position] == ",":
                position += 1
                continue
            if position < len(tokens) and tokens[position] == ")":
                return Group(word, tuple(members)), position + 1
            raise ValueError(f"{shown(text)}: ',' or ')' expected in {word}(...)")
    if not word.startswith("/"):
        raise ValueError(
            f"{shown(text)}: a pack is its namespace, starting with '/': not {shown(word, 20)}"
        )
    return Group("pack", name=word.rstrip("/")), at + 1


def combine(group: Group, states: Mapping[str, BatteryState]) -> BatteryState:
    """Return the BatteryState of ``group`` from its packs' latest states (values only)."""
    if group.kind == "pack":
        return states[group.name]
    parts = [combine(member, states) for member in group.members]
    combined = BatteryState()
    if group.kind == SERIES:
        combined.voltage = float(sum(part.voltage for part in parts))
        combined.current = float(sum(part.current for part in parts) / len(parts))
        # The string holds what its emptiest pack holds (unknown if any pack's SOC is).
        emptiest = _least(parts, lambda part: part.percentage)
        combined.charge = math.nan if emptiest is None else emptiest.charge
        combined.capacity = math.nan if emptiest is None else emptiest.capacity
        combined.percentage = math.nan if emptiest is None else emptiest.percentage
        combined.design_capacity = _known_min(part.design_capacity for part in parts)
    else:
        combined.voltage = float(sum(part.voltage for part in parts) / len(parts))
        combined.current = float(sum(part.current for part in parts))
        combined.charge = float(sum(part.charge for part in parts))
        combined.capacity = float(sum(part.capacity for part in parts))
        combined.design_capacity = float(sum(part.design_capacity for part in parts))
        combined.percentage = _weighted_percentage(parts)
    known = [part.temperature for part in parts if not math.isnan(part.temperature)]
    combined.temperature = max(known, default=math.nan)  # a pack without sensors tells nothing
    combined.present = all(part.present for part in parts)
    combined.power_supply_health = min(
        (part.power_supply_health for part in parts), key=HEALTH_SEVERITY.index
    )
    technologies = {part.power_supply_technology for part in parts}
    combined.power_supply_technology = (
        technologies.pop()
        if len(technologies) == 1
        else BatteryState.POWER_SUPPLY_TECHNOLOGY_UNKNOWN
    )
    combined.power_supply_status = _supply_status(combined.current, parts)
    return combined


def _least(
    parts: Sequence[BatteryState], key: Callable[[BatteryState], float]
) -> BatteryState | None:
    """Return the part with the least ``key``; None when any part's is unknown (NaN)."""
    if any(math.isnan(key(part)) for part in parts):
        return None
    return min(parts, key=key)


def _known_min(values: Iterable[float]) -> float:
    """Return the least of ``values``; NaN when any is unknown (min() with NaN is unsound)."""
    items = list(values)
    return math.nan if any(math.isnan(value) for value in items) else min(items)


def _weighted_percentage(parts: Sequence[BatteryState]) -> float:
    """State of charge of a parallel bank: each pack's weighted by its capacity."""
    weights = [
        part.capacity if not math.isnan(part.capacity) else part.design_capacity for part in parts
    ]
    if any(math.isnan(weight) or weight <= 0 for weight in weights):
        return float(sum(part.percentage for part in parts) / len(parts))
    return float(sum(p.percentage * w for p, w in zip(parts, weights, strict=True)) / sum(weights))


def _supply_status(current: float, parts: Sequence[BatteryState]) -> int:
    """Charging or discharging by the combined current; full when every member is."""
    if all(part.power_supply_status == BatteryState.POWER_SUPPLY_STATUS_FULL for part in parts):
        return int(BatteryState.POWER_SUPPLY_STATUS_FULL)
    if current > IDLE_CURRENT_A:
        return int(BatteryState.POWER_SUPPLY_STATUS_CHARGING)
    if current < -IDLE_CURRENT_A:
        return int(BatteryState.POWER_SUPPLY_STATUS_DISCHARGING)
    return int(BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING)
