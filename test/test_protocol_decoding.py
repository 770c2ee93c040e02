"""Decoding of the real captures to their stated values; encoding round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from real_frames import SETTINGS, STATUS, frame_bytes, real_frames

from daly_bms_ros.protocol import (
    DEVICE_INFO_BLOCK,
    X81,
    X81_DEVICE_INFO_BLOCK,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    BmsStatus,
    DalyProtocolError,
    DeviceInfo,
    Frame,
    FrameAssembler,
    FrameDecodeError,
    build_response,
    decode_alarms,
    decode_device_info,
    decode_mos_temperature,
    decode_settings,
    decode_status,
    decode_status_with_mos,
    decode_x81_status,
    encode_device_info,
    encode_settings,
    encode_status,
    encode_x81_status,
)
from daly_bms_ros.protocol.fields import FLOWING_CURRENT_A
from daly_bms_ros.protocol.registers import CHARGE_STATES
from daly_bms_ros.sim.battery import BatteryModel


def only_frame(data: bytes) -> Frame:
    frames = FrameAssembler().feed(data)
    assert len(frames) == 1
    return frames[0]


def test_status_frame_decodes_to_stated_values() -> None:
    expected = real_frames()[STATUS]["expected_from_raw_registers"]
    status = decode_status(only_frame(frame_bytes(STATUS)))
    assert len(status.cell_voltages) == expected["cell_count"]
    assert [round(v * 1000) for v in status.cell_voltages] == expected["cell_mV"]
    assert len(status.temperatures) == expected["temperature_sensors"]
    assert list(status.temperatures) == expected["temperatures_C"]
    assert status.pack_voltage == pytest.approx(expected["pack_voltage_V"])
    assert status.current == pytest.approx(expected["current_A"])
    assert status.soc == pytest.approx(expected["soc_percent"])
    assert status.remaining_capacity == pytest.approx(expected["remaining_Ah"])
    assert status.cycles == expected["cycles"]
    assert status.charge_mos is expected["charge_mos"]
    assert status.discharge_mos is expected["discharge_mos"]
    assert round(status.max_cell_voltage * 1000) == expected["max_cell_mV"]
    assert round(status.min_cell_voltage * 1000) == expected["min_cell_mV"]
    assert status.average_cell_voltage == pytest.approx(3.198)
    assert status.cell_delta == pytest.approx(0.012)
    assert status.min_cell_index == 1
    assert status.max_cell_index == 6
    assert status.power == pytest.approx(0.0)
    assert status.charge_state == "idle"
    assert (status.max_temperature, status.min_temperature) == (23.0, 23.0)
    # The 62-register read carries no per-cell balancing bits: unknown, not "none".
    assert status.balancing_cells is None
    assert math.isnan(status.mos_temperature)
    assert status.alarm_words == (0, 0x80, 0, 0)
    assert status.alarms == ("soc_low_2",)
    assert status.invalid == ()


def test_settings_frame_gives_rated_capacity() -> None:
    settings_block = decode_settings(only_frame(frame_bytes(SETTINGS)))
    assert settings_block.rated_capacity == pytest.approx(310.0)
    assert settings_block.nominal_cell_voltage == pytest.approx(3.2)
    # The capture's own status block: 16 cells, 2 sensors, SOC 8.7 %, as the settings say.
    assert settings_block.values["board_1_cells"] == 16
    assert settings_block.values["board_1_temperature_sensors"] == 2
    assert settings_block.values["soc_setting"] == pytest.approx(8.7)
    assert settings_block.invalid == ()


def test_virtual_bms_settings_round_trip_as_a_real_block() -> None:
    model = BatteryModel(cells=8, sensors=3, capacity_ah=105.0)
    decoded = decode_settings(only_frame(build_response(encode_settings(model.settings()))))
    assert decoded == model.settings()
    assert decoded.values["pack_voltage_high_alarm"] == pytest.approx(28.8)


def test_block_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(FrameDecodeError, match="status answer has 124 or 160 data bytes"):
        decode_status(only_frame(frame_bytes(SETTINGS)))


def test_out_of_range_values_become_nan_and_are_named() -> None:
    registers = list(only_frame(frame_bytes(STATUS)).registers)
    registers[2] = 9000  # cell 3 at 9 V
    registers[42] = 1500  # SOC 150 %
    status = decode_status(only_frame(build_response(registers)))
    assert math.isnan(status.cell_voltages[2])
    assert math.isnan(status.soc)
    assert set(status.invalid) == {"cell_voltage_3", "soc"}


def test_impossible_cell_count_is_an_error() -> None:
    registers = list(only_frame(frame_bytes(STATUS)).registers)
    registers[49] = 40
    with pytest.raises(FrameDecodeError, match="cell_count is 40"):
        decode_status(only_frame(build_response(registers)))


def test_unknown_fault_bits_are_kept_with_a_generic_name() -> None:
    assert decode_alarms([1, 0, 0, 0x8000]) == ("cell_overvoltage_1", "fault_bit_3_15")


def test_the_mos_block_is_registers_62_to_70_of_the_status() -> None:
    # aiobmsble's answer to D2 03 00 3E 00 09 in its Daly tests (tests/bms/test_daly_bms.py):
    # bitmaps 0, balance current 0x7530 (0 A), MOS temperature 0x4E (38 degC), board 0xFFFF.
    mos = only_frame(build_response([0, 0, 0x7530, 0, 0x4E, 0xFFFF, 0, 0, 0]))
    assert decode_mos_temperature(mos).temperature == 38.0
    status = only_frame(frame_bytes(STATUS))
    joined = decode_status_with_mos(status, mos)
    assert joined.mos_temperature == 38.0
    assert joined.balance_current == 0.0
    assert math.isnan(joined.board_temperature)  # 0xFFFF: no such sensor
    # Per-cell balancing is known from the block's bitmaps: cells 2 and 16 here.
    bits = only_frame(build_response([0x8002, 0, 0x7530, 0, 0x4E, 0xFFFF, 0, 0, 0]))
    cells = decode_status_with_mos(status, bits).balancing_cells
    assert cells is not None
    assert [number for number, on in enumerate(cells, start=1) if on] == [2, 16]


def test_device_info_block_text_fields() -> None:
    # Layout of the 0xA9 block: 16 bytes software version, 16 hardware version, 16 date, rest 0.
    payload = (
        b"K00T-2.1.7\x00\x00\x00\x00\x00\x00"
        + b"DL-16S-200A\x00\x00\x00\x00\x00"
        + b"2024.03.18 \x00\x00\x00\x00\x00"
        + bytes(16)
    )
    frame = Frame(payload)
    assert len(frame.payload) == DEVICE_INFO_BLOCK.byte_count
    assert decode_device_info(frame) == DeviceInfo("K00T-2.1.7", "DL-16S-200A", "2024.03.18")
    garbled = Frame(b"V1\x07\xff" + bytes(60))
    assert decode_device_info(garbled).software_version == "V1??"
    assert decode_device_info(garbled).hardware_version == ""


@pytest.mark.parametrize("fields_of_32", [False, True])
def test_device_info_round_trip(fields_of_32: bool) -> None:
    info = DeviceInfo("11_261125_SIM1", "H1.0_SIM_16S", "" if fields_of_32 else "20261125")
    frame = only_frame(build_response(encode_device_info(info, fields_of_32=fields_of_32)))
    assert len(frame.registers) == DEVICE_INFO_BLOCK.count
    assert decode_device_info(frame) == info


def test_settings_round_trip() -> None:
    original = decode_settings(only_frame(frame_bytes(SETTINGS)))
    again = decode_settings(only_frame(build_response(encode_settings(original))))
    assert again == original


millivolts = st.integers(min_value=2500, max_value=3650)
#: Fault bits as Daly's "UART/485 Communications Protocol" V1.2, command 0x98, names them, by
#: (fault register, bit): its bytes two a register, the first byte in the low half ([C] in
#: ``registers``). Written out here, not taken from the decoder's table.
STATED_FAULT_BITS = {
    (0, 0): "cell_overvoltage_1",  # byte 0 bit 0: cell voltage high, level 1
    (0, 3): "cell_undervoltage_2",  # byte 0 bit 3: cell voltage low, level 2
    (0, 8): "charge_over_temperature_1",  # byte 1 bit 0: charge temperature high, level 1
    (0, 15): "discharge_under_temperature_2",  # byte 1 bit 7: discharge temperature low, level 2
    (1, 2): "discharge_overcurrent_1",  # byte 2 bit 2: discharge overcurrent, level 1
    (1, 7): "soc_low_2",  # byte 2 bit 7: SOC low, level 2
    (1, 9): "cell_voltage_difference_2",  # byte 3 bit 1: cell voltage difference, level 2
    (1, 10): "temperature_difference_1",  # byte 3 bit 2: temperature difference, level 1
}


@st.composite
def statuses(draw: st.DrawFn) -> BmsStatus:
    cells = tuple(v / 1000 for v in draw(st.lists(millivolts, min_size=1, max_size=32)))
    temperatures = tuple(
        float(t) for t in draw(st.lists(st.integers(-20, 80), min_size=0, max_size=8))
    )
    bits = draw(st.lists(st.sampled_from(sorted(STATED_FAULT_BITS)), unique=True))
    words = tuple(sum(1 << bit for word, bit in bits if word == n) for n in range(4))
    pack_voltage = draw(st.integers(1, 1500)) / 10
    current = draw(st.integers(-3000, 3000)) / 10
    power = float(math.floor(abs(pack_voltage * current)))
    # As a pack fills them: not "idle" while a current flows, a cell flagged while balancing.
    states = CHARGE_STATES[1:] if abs(current) >= FLOWING_CURRENT_A else CHARGE_STATES
    balancing = draw(st.booleans())
    balancing_cells = [draw(st.booleans()) for _ in cells]
    if balancing and not any(balancing_cells):
        balancing_cells[draw(st.integers(0, len(cells) - 1))] = True
    return BmsStatus(
        cell_voltages=cells,
        temperatures=temperatures,
        pack_voltage=pack_voltage,
        current=current,
        soc=draw(st.integers(0, 1000)) / 10,
        remaining_capacity=draw(st.integers(0, 6000)) / 10,
        cycles=draw(st.integers(0, 65535)),
        charge_mos=draw(st.booleans()),
        discharge_mos=draw(st.booleans()),
        balancing=balancing,
        balancing_cells=tuple(balancing_cells),
        min_cell_voltage=min(cells),
        max_cell_voltage=max(cells),
        average_cell_voltage=round(sum(cells) / len(cells), 3),
        cell_delta=round(max(cells) - min(cells), 3),
        min_cell_index=cells.index(min(cells)) + 1,
        max_cell_index=cells.index(max(cells)) + 1,
        alarm_words=words,
        alarms=tuple(STATED_FAULT_BITS[bit] for bit in sorted(bits)),
        power=-power if current < 0 else power,
        charge_state=draw(st.sampled_from(states)),
        max_temperature=max(temperatures, default=math.nan),
        min_temperature=min(temperatures, default=math.nan),
        balance_current=draw(st.integers(0, 200)) / 1000,
        mos_temperature=float(draw(st.integers(-39, 150))),  # -40: raw 0, "no sensor"
        board_temperature=float(draw(st.integers(-39, 150))),
    )


@settings(max_examples=200, deadline=None)
@given(statuses())
def test_status_round_trip_through_the_wire(status: BmsStatus) -> None:
    """The virtual BMS's encoding and the decoding agree (both read the one register table).

    What each register means is checked against the sources by the tests with real frames and
    by ``test_the_d2_status_registers_sit_where_the_sources_say``.
    """
    raw = build_response(encode_status(status))
    assert decode_status(only_frame(raw)) == status


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=124, max_size=124))
def test_random_status_payload_decodes_or_raises_only_protocol_errors(payload: bytes) -> None:
    frame = Frame(payload)
    try:
        status = decode_status(frame)
    except DalyProtocolError:
        return
    assert len(status.cell_voltages) <= 32
    assert all(math.isnan(v) or 0.5 <= v <= 5.0 for v in status.cell_voltages)


def test_x81_status_round_trip_through_both_blocks() -> None:
    model = BatteryModel(cells=40, sensors=3, max_cells=48)
    status = model.status(321.0)
    pack, state = encode_x81_status(status)
    assert (len(pack), len(state)) == (X81_PACK_BLOCK.count, X81_STATE_BLOCK.count)
    frames = FrameAssembler().feed(build_response(pack, X81) + build_response(state, X81))
    assert [frame.address for frame in frames] == [0x51, 0x51]
    decoded = decode_x81_status(*frames)
    assert decoded.cell_voltages == status.cell_voltages
    assert decoded.temperatures == status.temperatures
    for name in ("pack_voltage", "current", "soc", "remaining_capacity", "cell_delta"):
        assert getattr(decoded, name) == pytest.approx(getattr(status, name), abs=1e-9), name
    # No lowest-cell or average register is read in this variant: computed from the cells.
    assert decoded.min_cell_voltage == min(status.cell_voltages)
    assert decoded.average_cell_voltage == pytest.approx(sum(status.cell_voltages) / 40)
    assert decoded.max_cell_voltage == max(status.cell_voltages)
    assert (decoded.cycles, decoded.charge_mos, decoded.discharge_mos) == (
        status.cycles, status.charge_mos, status.discharge_mos,
    )  # fmt: skip
    assert len(decoded.balancing_cells) == 40
    assert decoded.mos_temperature == status.mos_temperature
    assert decoded.balancing_cells == status.balancing_cells
    assert decoded.invalid == ()


def test_the_d2_status_registers_sit_where_the_sources_say() -> None:
    """Each register at the index its source gives, written out here, with a telling value."""
    stated = {
        0: 3301, 1: 3302, 2: 3303,  # [A][B] cells from 0, mV
        32: 61, 33: 62,  # [A][B] temperatures from 32, degC + 40
        40: 99,  # [A] pack voltage, 0.1 V
        41: 30123,  # [A] current, 30000 + 0.1 A
        42: 555,  # [A] SOC, 0.1 %
        43: 3303, 44: 3301,  # [B][F] highest and lowest cell, mV
        45: 62, 46: 61,  # [B][F] highest and lowest temperature
        47: 1,  # [B][F] charge state: charging
        48: 1234,  # [A] remaining capacity, 0.1 Ah
        49: 3, 50: 2,  # [A] cell count, sensor count
        51: 77,  # [A] cycles
        53: 1, 54: 0,  # [B] charge MOS on, discharge MOS off
        55: 3302,  # [B][F] average cell voltage, mV
        56: 2,  # [A][F] cell delta, mV
        57: 121,  # [F] power, W
        58: 0x0001,  # [C] fault word 0 bit 0
        62: 0b101,  # [F] balancing bitmap, cells 1..16
        64: 30050,  # [F] balance current, 30000 + mA
        66: 75, 67: 70,  # [F] MOS and board temperature, degC + 40
    }  # fmt: skip
    status = decode_status(only_frame(build_response(_registers(80, stated))))
    assert status.cell_voltages == (3.301, 3.302, 3.303)
    assert status.temperatures == (21.0, 22.0)
    assert (status.pack_voltage, status.current, status.soc) == (9.9, 12.3, 55.5)
    assert (status.max_cell_voltage, status.min_cell_voltage) == (3.303, 3.301)
    assert (status.max_temperature, status.min_temperature) == (22.0, 21.0)
    assert status.charge_state == "charging"
    assert (status.remaining_capacity, status.cycles) == (123.4, 77)
    assert (status.charge_mos, status.discharge_mos) == (True, False)
    assert (status.average_cell_voltage, status.cell_delta) == (3.302, 0.002)
    assert status.power == 121.0
    assert status.alarms == ("cell_overvoltage_1",)
    assert status.balancing_cells == (True, False, True)
    assert status.balance_current == pytest.approx(0.05)
    assert (status.mos_temperature, status.board_temperature) == (35.0, 30.0)
    assert status.invalid == ()


def test_the_x81_status_registers_sit_where_the_sources_say() -> None:
    """patagonaa/esphome-daly-hkms-bms ``daly_hkms_bms_registers.h`` ([E]), written out here."""
    pack = {
        0x00: 3301, 0x01: 3305,  # cells, mV
        0x30: 60, 0x31: 255,  # temperatures, degC + 40; 255 not fitted
        0x38: 66, 0x39: 29900, 0x3A: 421,  # voltage 0.1 V, current 30000 + 0.1 A, SOC 0.1 %
        0x3C: 2, 0x3D: 2,  # cell count, sensor count
        0x3E: 3305, 0x3F: 2,  # highest cell and its number
    }  # fmt: skip
    state = {  # from 0x41
        0x41 - 0x41: 1,  # number of the lowest cell
        0x42 - 0x41: 4,  # delta, mV
        0x48 - 0x41: 2,  # discharging
        0x4B - 0x41: 500,  # remaining capacity, 0.1 Ah
        0x4C - 0x41: 9,  # cycles
        0x52 - 0x41: 1, 0x53 - 0x41: 1,  # MOS switches
        0x5A - 0x41: 70,  # MOS temperature
    }  # fmt: skip
    frames = FrameAssembler().feed(
        build_response(_registers(64, pack), X81) + build_response(_registers(62, state), X81)
    )
    status = decode_x81_status(*frames)
    assert status.cell_voltages == (3.301, 3.305)
    assert status.temperatures[0] == 20.0 and math.isnan(status.temperatures[1])
    assert (status.pack_voltage, status.current, status.soc) == (6.6, -10.0, 42.1)
    assert (status.max_cell_voltage, status.max_cell_index, status.min_cell_index) == (3.305, 2, 1)
    assert status.cell_delta == 0.004
    assert status.charge_state == "discharging"
    assert (status.remaining_capacity, status.cycles) == (50.0, 9)
    assert status.charge_mos and status.discharge_mos
    assert status.mos_temperature == 30.0
    assert status.invalid == ()


def _registers(count: int, stated: dict[int, int]) -> list[int]:
    """Registers holding ``stated`` (index: raw value), 0 elsewhere."""
    registers = [0] * count
    for index, raw in stated.items():
        registers[index] = raw
    return registers


def test_x81_absent_sensor_reads_255_as_unknown_not_invalid() -> None:
    model = BatteryModel(cells=4, sensors=2, max_cells=48)
    pack, state = encode_x81_status(model.status(0.0))
    pack[0x31] = 255  # second sensor absent
    frames = FrameAssembler().feed(build_response(pack, X81) + build_response(state, X81))
    decoded = decode_x81_status(*frames)
    assert math.isnan(decoded.temperatures[1])
    assert decoded.invalid == ()


def test_x81_device_info_round_trip() -> None:
    info = DeviceInfo(
        "12_260120_K00T",
        "H2.1_103E_30XF",
        "20260530",
        serial_number="221LD091400444",
        model="DL_HKMS_3.2.E",
    )
    frame = only_frame(build_response(encode_device_info(info, X81), X81))
    assert len(frame.registers) == X81_DEVICE_INFO_BLOCK.count
    assert decode_device_info(frame, X81) == info


@pytest.mark.parametrize("count", [62, 80])
def test_an_all_zero_status_is_refused_not_published(count: int) -> None:
    """An empty answer decodes to no pack: 0 cells, 0 V, -3000 A; it is reported invalid."""
    with pytest.raises(FrameDecodeError, match="0 cells"):
        decode_status(only_frame(build_response([0] * count)))


def test_zero_volts_with_live_cells_and_an_empty_current_register_are_refused() -> None:
    registers = list(only_frame(frame_bytes(STATUS)).registers)
    registers[40] = 0  # pack voltage 0 V while 16 cells hold 3.2 V each
    with pytest.raises(FrameDecodeError, match="0 V"):
        decode_status(only_frame(build_response(registers)))
    registers = list(only_frame(frame_bytes(STATUS)).registers)
    registers[41] = 0  # raw 0: -3000 A, the edge only an empty register gives
    status = decode_status(only_frame(build_response(registers)))
    assert math.isnan(status.current) and "current" in status.invalid
