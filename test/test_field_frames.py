"""Answers of real devices, published by other projects, decode to what their sources state.

The frames and their provenance are in field_frames.json; every expected value below comes from
the source's own statement (its tests or comments) or from a hand decode with a published
register table, as each entry says, never from this decoder.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from real_frames import field_bytes, field_frames

from daly_bms_ros.cli.decode import decode_stream
from daly_bms_ros.protocol import (
    X81,
    BmsStatus,
    FrameAssembler,
    crc16_modbus,
    decode_device_info,
    decode_settings,
    decode_status,
    decode_x81_status,
)

BLUE_SERIES = [f"blue16s-status80-{n}" for n in range(1, 10)]
X81_PAIRS = {"ess-x81-state": "ess-x81-pack", "d11a-x81-state": "d11a-x81-pack"}


def frame(frame_id: str) -> Any:
    frames = FrameAssembler().feed(field_bytes(frame_id))
    assert len(frames) == 1, frame_id
    return frames[0]


def status_of(frame_id: str) -> BmsStatus:
    if frame_id in X81_PAIRS:
        return decode_x81_status(frame(X81_PAIRS[frame_id]), frame(frame_id))
    return decode_status(frame(frame_id))


def expected(frame_id: str) -> dict[str, Any]:
    entry = field_frames()[frame_id]
    return entry.get("stated") or entry["decoded_by_hand"]


def assert_status_matches(status: BmsStatus, values: dict[str, Any]) -> None:
    """Compare each value a source states with the decoded status."""
    scalars = {
        "pack_voltage_V": "pack_voltage",
        "current_A": "current",
        "soc_percent": "soc",
        "remaining_Ah": "remaining_capacity",
        "cycles": "cycles",
        "balancing": "balancing",
        "charge_mos": "charge_mos",
        "discharge_mos": "discharge_mos",
        "cell_delta_V": "cell_delta",
        "charge_state": "charge_state",
        "balance_current_A": "balance_current",
        "mos_temperature_C": "mos_temperature",
        "board_temperature_C": "board_temperature",
    }
    for key, field in scalars.items():
        if key in values:
            assert getattr(status, field) == pytest.approx(values[key], abs=1e-6), key
    if "cell_V" in values:
        assert list(status.cell_voltages) == pytest.approx(values["cell_V"])
    for number, voltage in values.get("cell_V_by_number", {}).items():
        assert status.cell_voltages[int(number) - 1] == pytest.approx(voltage), number
    if "cell_count" in values:
        assert len(status.cell_voltages) == values["cell_count"]
    if "temperatures_C" in values:
        assert list(status.temperatures) == pytest.approx(values["temperatures_C"])
    if "temperature_sensors" in values:
        assert len(status.temperatures) == values["temperature_sensors"]
    if "max_cell" in values:
        assert status.max_cell_voltage == pytest.approx(values["max_cell"][0])
        assert status.max_cell_index == values["max_cell"][1]
    if "min_cell" in values:
        assert status.min_cell_voltage == pytest.approx(values["min_cell"][0])
    if "alarms" in values:
        assert list(status.alarms) == values["alarms"]
    assert status.invalid == ()


@pytest.mark.parametrize("frame_id", sorted(field_frames()))
def test_every_capture_has_its_source_and_a_valid_crc(frame_id: str) -> None:
    entry = field_frames()[frame_id]
    assert entry["source"] and entry["kind"]
    data = field_bytes(frame_id)
    assert crc16_modbus(data[:-2]) == int.from_bytes(data[-2:], "little")


@pytest.mark.parametrize(
    "frame_id",
    [
        frame_id
        for frame_id, entry in sorted(field_frames().items())
        if ("stated" in entry or "decoded_by_hand" in entry)
        and ("status" in frame_id or frame_id in X81_PAIRS)
    ],
)
def test_status_captures_decode_to_the_values_their_sources_state(frame_id: str) -> None:
    assert_status_matches(status_of(frame_id), expected(frame_id))


@pytest.mark.parametrize("frame_id", BLUE_SERIES)
def test_register_57_is_the_pack_power_not_a_balancing_bitmap(frame_id: str) -> None:
    """In every 80-register capture register 57 is floor(|V*I|) while nothing balances."""
    registers = frame(frame_id).registers
    volts, amperes = registers[40] / 10, (registers[41] - 30000) / 10
    assert registers[57] == math.floor(abs(volts * amperes))
    assert registers[52] == 0 and registers[57] != 0
    status = decode_status(frame(frame_id))
    assert status.power == -math.floor(abs(volts * amperes))  # discharging
    # The per-cell bits are registers 62/63: read, and none set.
    assert status.balancing_cells == (False,) * 16
    # No board sensor: 0x0000 reads as unknown, not as -40 degC.
    assert math.isnan(status.board_temperature)


@pytest.mark.parametrize(
    "frame_id", ["daly24s-status62-1", "daly24s-status62-2", "daly8s-status62"]
)
def test_62_register_captures_leave_per_cell_balancing_unknown(frame_id: str) -> None:
    status = decode_status(frame(frame_id))
    assert status.balancing_cells is None
    assert math.isnan(status.mos_temperature)


def test_settings_capture_decodes_to_every_stated_setting() -> None:
    settings = decode_settings(frame("daly4s-settings"))
    values = dict(expected("daly4s-settings"))
    del values["source_of_values"]
    assert settings.rated_capacity == pytest.approx(values.pop("rated_capacity_Ah"))
    assert settings.nominal_cell_voltage == pytest.approx(values.pop("nominal_cell_voltage_V"))
    assert {name: settings.values[name] for name in values} == pytest.approx(values)
    assert settings.invalid == ()


@pytest.mark.parametrize(
    "frame_id",
    ["version32-1", "version32-2", "balancer-version16", "aiobmsble-version16", "ess-x81-version"],
)
def test_device_information_reads_as_the_app_shows_it(frame_id: str) -> None:
    variant = X81 if frame_id.startswith("ess-x81") else None
    info = decode_device_info(frame(frame_id), *(() if variant is None else (variant,)))
    values = {key: value for key, value in expected(frame_id).items() if key != "source_of_values"}
    decoded = info.to_dict()
    assert {key: decoded[key] for key in values} == values
    # Nothing that is not a date is ever a production date (a chip name such as SH39F003).
    assert decoded["production_date"] in ("", values.get("production_date"))


def test_a_cut_short_answer_is_one_error() -> None:
    assert list(decode_stream(field_bytes("aiobmsble-too-short"))) == [{"error": "bad_length"}]


def test_absent_x81_sensors_read_unknown_not_invalid() -> None:
    status = status_of("d11a-x81-state")
    assert len(status.temperatures) == 2
    assert all(math.isnan(value) for value in status.temperatures)
    assert math.isnan(status.max_temperature) and math.isnan(status.board_temperature)
    assert status.invalid == ()


def test_x81_balance_current_register_of_zero_is_no_reading() -> None:
    assert math.isnan(status_of("ess-x81-state").balance_current)


def test_0x81_alarms_are_levels_as_patagonaa_lays_them_out() -> None:
    """Registers 0x6D..0x73 of the 0x81 variant hold alarm levels and fault bits
    (patagonaa/esphome-daly-hkms-bms DalyHkmsStatus), not the D2 fault bits: the pack of
    patman15/BMS_BLE-HA#806 at 11.2 % SOC with no temperature sensor fitted reads an SOC-low
    level 2 (code 6) and a temperature-detection fault (code 11, bit 7)."""
    status = status_of("d11a-x81-state")
    assert status.soc == 11.2
    assert status.alarms == ("soc_low_2", "cell_temperature_sensor_fault")


def test_a_version_of_unknown_form_is_turned_round_with_its_sibling() -> None:
    """DL-1771060408B5's answer: the hardware text is stored reversed (E303-030TS-SMB, shown
    as BMS-ST030-303E); the software text beside it, of no known form, was stored the same
    way."""
    stored = field_frames()["dl4s-version16"]["stated"]["stored_texts"]
    info = decode_device_info(frame("dl4s-version16"))
    assert info.hardware_version == stored[1][::-1] == "BMS-ST030-303E"
    assert info.software_version == stored[0][::-1] == "20210729-1002A"
    assert info.production_date == stored[2]
