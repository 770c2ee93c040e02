"""BatteryState semantics derived from a decoded sample of the real status capture."""

from __future__ import annotations

import dataclasses

import pytest
from real_frames import STATUS, frame_bytes
from sensor_msgs.msg import BatteryState

from daly_bms_ros.node.messages import supply_health, supply_status
from daly_bms_ros.protocol import BmsSample, FrameAssembler, decode_status


def sample_with(**changes: object) -> BmsSample:
    [frame] = FrameAssembler().feed(frame_bytes(STATUS))
    return BmsSample(dataclasses.replace(decode_status(frame), **changes))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"current": 0.0}, BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING),
        ({"current": 12.5}, BatteryState.POWER_SUPPLY_STATUS_CHARGING),
        ({"current": 12.5, "charge_mos": False}, BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING),
        ({"current": -3.0}, BatteryState.POWER_SUPPLY_STATUS_DISCHARGING),
        ({"current": 0.1, "soc": 100.0}, BatteryState.POWER_SUPPLY_STATUS_FULL),
        ({"current": float("nan")}, BatteryState.POWER_SUPPLY_STATUS_UNKNOWN),
    ],
)
def test_supply_status(changes: dict[str, object], expected: int) -> None:
    assert supply_status(sample_with(**changes)) == expected


@pytest.mark.parametrize(
    ("alarms", "expected"),
    [
        ((), BatteryState.POWER_SUPPLY_HEALTH_GOOD),
        (("soc_low_2",), BatteryState.POWER_SUPPLY_HEALTH_GOOD),
        (("cell_overvoltage_1", "soc_high_1"), BatteryState.POWER_SUPPLY_HEALTH_OVERVOLTAGE),
        (("charge_under_temperature_2",), BatteryState.POWER_SUPPLY_HEALTH_COLD),
        (
            ("cell_overvoltage_2", "discharge_over_temperature_1"),
            BatteryState.POWER_SUPPLY_HEALTH_OVERHEAT,
        ),
        (("short_circuit_protection",), BatteryState.POWER_SUPPLY_HEALTH_UNSPEC_FAILURE),
    ],
)
def test_supply_health(alarms: tuple[str, ...], expected: int) -> None:
    assert supply_health(alarms) == expected
