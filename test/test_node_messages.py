"""BatteryState semantics derived from a decoded sample of the real status capture."""

from __future__ import annotations

import dataclasses

import pytest
from builtin_interfaces.msg import Time
from real_frames import SETTINGS, STATUS, frame_bytes
from sensor_msgs.msg import BatteryState

from daly_bms_ros.node.messages import (
    BatteryIdentity,
    battery_state,
    daly_cells,
    sample_from_messages,
    supply_health,
    supply_status,
)
from daly_bms_ros.protocol import BmsSample, FrameAssembler, decode_settings, decode_status


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


def test_messages_carry_the_whole_sample_back() -> None:
    """The HTTP bridge rebuilds from BatteryState + DalyCells what the node published."""
    [status_frame] = FrameAssembler().feed(frame_bytes(STATUS))
    [settings_frame] = FrameAssembler().feed(frame_bytes(SETTINGS))
    status = dataclasses.replace(decode_status(status_frame), mos_temperature=41.0)
    sample = BmsSample(status, decode_settings(settings_frame), 1795600000.25)
    stamp = Time(sec=1795600000, nanosec=250_000_000)
    identity = BatteryIdentity(
        "battery", "rear", "SN1", BatteryState.POWER_SUPPLY_TECHNOLOGY_LIFE, 0.0
    )
    rebuilt = sample_from_messages(
        battery_state(sample, identity, stamp), daly_cells(sample, "battery", stamp)
    )
    # float32 fields in the messages: compare at their precision.
    original, back = sample.status.to_dict(), rebuilt.status.to_dict()
    assert back.keys() == original.keys()
    for key, value in original.items():
        assert back[key] == pytest.approx(value, rel=1e-6), key
    assert rebuilt.settings is not None and sample.settings is not None
    assert rebuilt.settings.rated_capacity == pytest.approx(sample.settings.rated_capacity)
    assert rebuilt.mos_temperature == pytest.approx(41.0)
    assert rebuilt.received_at == pytest.approx(1795600000.25)
