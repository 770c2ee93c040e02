"""What a sample looks like to scripts and people: JSON records and a text table.

One place for these views, so that ``daly-bms read``/``monitor``, the interactive shell and the
HTTP bridge all print the same keys with the same units (V, A, W, %, Ah, degC; NaN as null).
"""

from __future__ import annotations

import math
from typing import Any

from daly_bms_ros.protocol import BmsSample, BmsStatus
from daly_bms_ros.protocol.model import json_object, json_ready

#: Below this magnitude (A) the pack is considered idle: Daly reports current in 0.1 A steps.
IDLE_CURRENT_A = 0.15
#: What a battery known only by its BatteryState (a pack group) does not tell: listed in its
#: status's ``invalid``, shown as unknown (null) rather than as a count of 0 or a switch off.
NOT_IN_BATTERY_STATE = ("cycles", "charge_mos", "discharge_mos", "balancing")


def _without_invalid(status: BmsStatus, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with each value its status lists as invalid shown as unknown (None)."""
    return {key: None if key in status.invalid else value for key, value in record.items()}


def charge_state(sample: BmsSample) -> str:
    """``charging``, ``discharging`` or ``idle`` from the current's sign; ``unknown`` if NaN."""
    current = sample.status.current
    if math.isnan(current):
        return "unknown"
    if current > IDLE_CURRENT_A:
        return "charging"
    if current < -IDLE_CURRENT_A:
        return "discharging"
    return "idle"


def rated_capacity(sample: BmsSample) -> float:
    """Rated capacity (Ah) from the settings block, NaN when it was not read."""
    return sample.settings.rated_capacity if sample.settings is not None else math.nan


def sample_record(sample: BmsSample) -> dict[str, Any]:
    """Every value of a sample, flat: the status block plus capacity and MOS temperature."""
    return _without_invalid(
        sample.status,
        {
            "device": sample.device,
            "timestamp": sample.received_at,
            **sample.status.to_dict(),
            "rated_capacity": json_ready(rated_capacity(sample)),
            "mos_temperature": json_ready(sample.mos_temperature),
            "state": charge_state(sample),
        },
    )


def summary_record(sample: BmsSample) -> dict[str, Any]:
    """Summarise the pack at a glance: what a dashboard shows."""
    status = sample.status
    record = json_object(
        {
            "timestamp": sample.received_at,
            "pack_voltage": status.pack_voltage,
            "current": status.current,
            "power": status.power,
            "soc": status.soc,
            "remaining_capacity": status.remaining_capacity,
            "rated_capacity": rated_capacity(sample),
            "cycles": status.cycles,
            "state": charge_state(sample),
            "cell_count": len(status.cell_voltages),
            "cell_delta": status.cell_delta,
            "max_temperature": max(status.temperatures, default=status.max_temperature),
            "charge_mos": status.charge_mos,
            "discharge_mos": status.discharge_mos,
            "alarms": status.alarms,
        }
    )
    return _without_invalid(status, record)


def cell_balancing(status: BmsStatus) -> tuple[bool | None, ...]:
    """Each cell's balancing flag; None for every cell when the BMS did not tell them."""
    if status.balancing_cells is None:
        return (None,) * len(status.cell_voltages)
    return status.balancing_cells


def cells_record(sample: BmsSample) -> dict[str, Any]:
    """Per-cell voltages and balancing (null: unknown), with the min/max/average/delta."""
    status = sample.status
    balancing = cell_balancing(status)
    return json_object(
        {
            "timestamp": sample.received_at,
            "cells": [
                {"cell": number, "voltage": voltage, "balancing": balancing[number - 1]}
                for number, voltage in enumerate(status.cell_voltages, start=1)
            ],
            "min_cell_voltage": status.min_cell_voltage,
            "min_cell_index": status.min_cell_index,
            "max_cell_voltage": status.max_cell_voltage,
            "max_cell_index": status.max_cell_index,
            "average_cell_voltage": status.average_cell_voltage,
            "cell_delta": status.cell_delta,
        }
    )


def temperatures_record(sample: BmsSample) -> dict[str, Any]:
    """Each temperature sensor and the MOS switches, degC."""
    return json_object(
        {
            "timestamp": sample.received_at,
            "temperatures": [
                {"sensor": number, "temperature": value}
                for number, value in enumerate(sample.status.temperatures, start=1)
            ],
            "mos_temperature": sample.mos_temperature,
        }
    )


def _number(value: float, unit: str, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f} {unit}"


def _shown(status: BmsStatus, key: str, text: str) -> str:
    return "n/a" if key in status.invalid else text


def text_report(sample: BmsSample) -> str:
    """Render one sample as a human-readable table."""
    status = sample.status
    rows = [
        ("device", sample.device or "?"),
        ("pack voltage", _number(status.pack_voltage, "V", 2)),
        ("current", _number(status.current, "A", 1) + f" ({charge_state(sample)})"),
        ("power", _number(status.power, "W", 0)),
        ("state of charge", _number(status.soc, "%", 1)),
        ("remaining", _number(status.remaining_capacity, "Ah", 1)),
        ("rated capacity", _number(rated_capacity(sample), "Ah", 1)),
        ("cycles", _shown(status, "cycles", str(status.cycles))),
        ("charge MOS", _shown(status, "charge_mos", "on" if status.charge_mos else "off")),
        (
            "discharge MOS",
            _shown(status, "discharge_mos", "on" if status.discharge_mos else "off"),
        ),
        ("balancing", _shown(status, "balancing", "yes" if status.balancing else "no")),
        ("cell delta", _number(status.cell_delta * 1000, "mV", 0)),
        (
            "temperatures",
            ", ".join(_number(value, "degC", 0) for value in status.temperatures) or "n/a",
        ),
        ("MOS temperature", _number(sample.mos_temperature, "degC", 0)),
        ("alarms", ", ".join(status.alarms) or "none"),
    ]
    balancing = cell_balancing(status)
    rows += [
        (
            f"cell {number}",
            _number(voltage, "V", 3) + (" (balancing)" if balancing[number - 1] else ""),
        )
        for number, voltage in enumerate(status.cell_voltages, start=1)
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
