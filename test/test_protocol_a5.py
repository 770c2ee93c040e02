"""The A5 protocol core against frames real devices sent, as published with their sources.

Each frame is quoted from where it was published; what a test asserts is what that source says
the frame means (its own decode, or the values its thread states), not what this decoder
happens to return. Frames from test fixtures whose authors do not say where they come from are
marked as such.
"""

from __future__ import annotations

import pytest

from daly_bms_ros.protocol import FrameDecodeError, RejectReason
from daly_bms_ros.protocol.a5 import (
    A5Assembler,
    A5Frame,
    build_a5_request,
    build_a5_switch,
    decode_a5_balancing,
    decode_a5_cell_range,
    decode_a5_cell_voltages,
    decode_a5_counts,
    decode_a5_failures,
    decode_a5_mos,
    decode_a5_pack,
    decode_a5_rated,
    decode_a5_status,
    decode_a5_temperature_range,
    frames_expected,
    host_addresses,
    parse_a5_switch,
)


def assembled(data: str) -> tuple[list[A5Frame], A5Assembler]:
    assembler = A5Assembler()
    return assembler.feed(bytes.fromhex(data.replace(" ", ""))), assembler


def by_command(frames: list[A5Frame]) -> dict[int, list[A5Frame]]:
    answers: dict[int, list[A5Frame]] = {}
    for frame in frames:
        answers.setdefault(frame.command, []).append(frame)
    return answers


#: jblance/mpp-solar#83 (firemen027, 2021-04-24): a 16S pack with one sensor, read over its UART
#: port with host address 0x80; one whole session. The same bytes are mpp-solar's
#: ``test_responses`` (``mppsolar/protocols/daly.py``), which its
#: ``tests/integration/test_protocol_daly.py`` decodes.
FIREMEN027_SESSION = [
    "a5019008021400007545037889",
    "a50191080d000f0cfe010378e1",
    "a501920837013701fe0103782a",
    "a5019308020101780003cb40cb",
    "a5019408100100000000034096",
    # 0x95: all 16 frames, zero after cell 16; the first read ended after "a5 01 95 08 0a".
    "a5019508010cfd0cfe0cfe40a1a5019508020cfe0cfe0cfe40a3a5019508030cfe0cfe0cfe40a4"
    "a5019508040cfe0cfc0cfe40a3a5019508050cfe0cff0cfe40a7a5019508060cfc000000004091"
    "a501950807000000000000408aa501950808000000000000408ba501950809000000000000408c"
    "a50195080a",
    "000000000000408da50195080b000000000000408ea50195080c000000000000408f"
    "a50195080d0000000000004090a50195080e0000000000004091a50195080f0000000000004092"
    "a5019508100000000000004093",
    "a501960801370000000000007ca5019608020000000000000046",
]


def test_a_whole_session_of_a_16s_pack_decodes_as_its_source_says() -> None:
    assembler = A5Assembler()
    frames = [
        frame for chunk in FIREMEN027_SESSION for frame in assembler.feed(bytes.fromhex(chunk))
    ]
    assert not assembler.rejected and not assembler.pending
    status = decode_a5_status(by_command(frames))
    # mpp-solar's decode: "Battery Bank Voltage 53.2 V ... Current 2.1 A, SOC 88.8 %" with the
    # discharging state: 2.1 A out of the pack, negative here (BatteryState's sign).
    assert (status.pack_voltage, status.current, status.soc) == (53.2, -2.1, 88.8)
    assert status.charge_state == "discharging"
    # "Maximum Cell Voltage 3.328 V #15, Minimum Cell Voltage 3.326 V #1" (the 0x91 answer).
    assert (status.max_cell_voltage, status.max_cell_index) == (3.328, 15)
    assert (status.min_cell_voltage, status.min_cell_index) == (3.326, 1)
    # "Number of Cells 16, Number of Temperature Sensors 1, ... Charge/Discharge Cycles 3".
    assert len(status.cell_voltages) == 16
    assert status.cycles == 3
    # Cells 1..16 "3.325 ... 3.324"; the padding frames 7..16 give no cells.
    assert status.cell_voltages[0] == 3.325
    assert status.cell_voltages[-1] == 3.324
    assert status.temperatures == (15.0,)  # 0x37 - 40, also the 0x92 answer's max and min
    assert decode_a5_temperature_range(by_command(frames)[0x92][0])[::2] == (15.0, 15.0)
    assert status.remaining_capacity == 248.64  # 0x0003CB40 mAh
    assert status.charge_mos and status.discharge_mos
    assert status.balancing_cells is None  # not asked: unknown, not "none"
    assert frames_expected(0x95, 16, 1) == 6  # this BMS sent 16: the extra ones are ignored


def test_a_cold_pack_reports_its_charge_mos_off() -> None:
    # mpp-solar#83, firemen027's earlier run: 4 degC, charge MOS off, 2 cycles.
    frames, _ = assembled(
        "a50191080ceb050cdd0b03b9eb a50192082c012c01dd0b03b93e"
        "a50193080200017c00040f10e3 a5019408100100000000021065"
    )
    answers = by_command(frames)
    assert decode_a5_cell_range(answers[0x91][0]) == (3.307, 5, 3.293, 11)
    assert decode_a5_temperature_range(answers[0x92][0]) == (4.0, 1, 4.0, 1)
    mos = decode_a5_mos(answers[0x93][0])
    assert (mos.charge_mos, mos.discharge_mos, mos.remaining_capacity) == (False, True, 266.0)
    assert decode_a5_counts(answers[0x94][0]).cycles == 2


#: tomatensaus/bms ``test_daly.py`` @ 306df1a: answers its ``daly.py`` printed while reading a
#: 16S pack under a 50 A load through a USB-UART cable, host address 0x40 (five sessions; one).
TOMATENSAUS = (
    "a5019008020300007724033819 a50191080cb7070c1305033868 a5019208470147011305033823"
    "a501930802010171000486c000 a501940810010000020005c01a a5019508010caa0c950c59c0c0"
)


def test_a_pack_under_load_through_a_usb_uart_cable() -> None:
    frames, _ = assembled(TOMATENSAUS)
    answers = by_command(frames)
    assert decode_a5_pack(answers[0x90][0]) == (51.5, -50.0, 82.4)
    assert decode_a5_cell_range(answers[0x91][0]) == (3.255, 7, 3.091, 5)
    assert decode_a5_temperature_range(answers[0x92][0]) == (31.0, 1, 31.0, 1)
    mos = decode_a5_mos(answers[0x93][0])
    assert mos == ("discharging", True, True, 296.64)
    counts = decode_a5_counts(answers[0x94][0])
    assert (counts.cell_count, counts.sensor_count, counts.cycles) == (16, 1, 5)
    # Its reader took one frame of 0x95: three cells, and the rest of the answer is missing.
    assert decode_a5_cell_voltages(answers[0x95], 3) == (3.242, 3.221, 3.161)
    with pytest.raises(FrameDecodeError, match="cell voltage 4: frame 2 of 0x95 missing"):
        decode_a5_status(answers)


def test_a_stale_frame_ahead_of_the_answer_is_replaced_by_the_fresh_one() -> None:
    # jblance/mpp-solar#516 (klvbdmh, 16S): the read began with the last byte of an earlier frame
    # and a frame 6 of the previous poll, then frames 1..6; mpp-solar, slicing at fixed
    # offsets, printed "Cell 02 Voltage -12.788 V".
    frames, assembler = assembled(
        "7b a5019508060cce0cd00cd0a07b"
        "a5019508010cd10cd00ccea077 a5019508020cd00ccf0cd0a078 a5019508030ccf0cd00ccfa078"
        "a5019508040cd00ccf0cd0a07a a5019508050ccf0cd00ccfa07a a5019508060ccf0cd00ccfa07b"
    )
    assert assembler.rejected == {RejectReason.BAD_HEADER: 1}
    cells = decode_a5_cell_voltages(frames, 16)
    assert cells[:3] == (3.281, 3.280, 3.278)
    assert cells[15] == 3.279  # frame 6, first slot: the fresh frame's 0x0ccf, not the stale 0x0cce


def test_a_frame_cut_short_costs_its_cells_and_nothing_after_it() -> None:
    # Louisvdw/dbus-serialbattery#165 (SamuelBrucksch, 16S): frame 5 lost its last 5 bytes;
    # frame 6 and a 0x90 answer followed in the same read ("cell 13 has invalid value").
    frames, assembler = assembled(
        "a5019508010d290d330d329089 a5019508020d2f0d2e0d33908c a5019508030d330d330d339096"
        "a5019508040d330d320d2f9092 a5019508050d300d34"
        "a5019508060d320d340d319097 a5019008021c000076560286b0"
    )
    assert [frame.command for frame in frames] == [0x95] * 5 + [0x90]
    assert [frame.number for frame in frames[:5]] == [1, 2, 3, 4, 6]
    assert assembler.rejected == {RejectReason.BAD_CRC: 1}
    assert decode_a5_pack(frames[-1]) == (54.0, -29.4, 64.6)
    with pytest.raises(FrameDecodeError, match="cell voltage 13: frame 5 of 0x95 missing"):
        decode_a5_cell_voltages(frames[:5], 16)


def test_an_rs485_echo_of_the_request_is_dropped() -> None:
    # patagonaa/esphome-daly-hkms-bms#9 (mobi-ua, "DALY BMS Y-series"): TX then RX on the line;
    # the thread reads 16.2 V, 0 A, 89.6 %.
    frames, assembler = assembled("a540900800000000000000007d a501900800a200007530038008")
    assert assembler.echoes == 1
    [answer] = frames
    assert decode_a5_pack(answer) == (16.2, 0.0, 89.6)


def test_the_second_board_on_a_bus_answers_with_its_number() -> None:
    # esphome/esphome#12445 (Kicosta): request to board 2 (0x41), its answer carries 2.
    assert build_a5_request(0x90, 0x41, bytes(8)).hex() == "a541900800000000000000007e"
    [answer], _ = assembled("A5 02 90 08 00 82 00 00 75 30 01 F4 5B")
    assert answer.address == 2
    assert decode_a5_pack(answer) == (13.0, 0.0, 50.0)
    # Board 2 is asked from 0x41 alone, as in that thread; board 1 from both host addresses.
    assert host_addresses(wired=True, board=2) == (0x41,)
    assert host_addresses(wired=True) == (0x40, 0x80)
    assert host_addresses(wired=False) == (0x80, 0x40)
    with pytest.raises(ValueError, match=r"1\.\.16"):
        host_addresses(wired=True, board=17)


def test_rated_values_as_a_pack_sent_them_over_can() -> None:
    # No 0x50 answer from a UART is published; a pack's CAN frame of the same data id carries
    # the same 8 data bytes: "0x50 ... 0x0 0x0 0x75 0x30 0x0 0x0 0xe 0x10", which its author
    # reads as a capacity of 30000 mAh and a nominal cell voltage of 3600 mV (heezes,
    # 2023-07-07, https://diysolarforum.com/threads/daly-bms-communication-protocol.65439/).
    # The layout, two big-endian u32, is mr-manuel/venus-os_dbus-serialbattery's read_capacity.
    frame = A5Frame(1, 0x50, bytes.fromhex("000075300000 0e10".replace(" ", "")))
    rated = decode_a5_rated(frame)
    assert (rated.rated_capacity, rated.nominal_cell_voltage) == (30.0, 3.6)
    with pytest.raises(FrameDecodeError):
        decode_a5_rated(A5Frame(1, 0x90, bytes(8)))


def test_requests_as_peers_send_them() -> None:
    # tomatensaus' request checksums (host 0x40, zero fill): 0x90 -> 0x7d, 0x94 -> 0x81;
    # dreadnought/python-daly-bms's comment "95 -> a58095080000000000000000c2" (host 0x80).
    assert build_a5_request(0x90, 0x40, bytes(8))[-1] == 0x7D
    assert build_a5_request(0x94, 0x40, bytes(8))[-1] == 0x81
    assert build_a5_request(0x95, 0x80, bytes(8)).hex() == "a58095080000000000000000c2"
    # The default fill is 0xAA (mr-manuel/venus-os_dbus-serialbattery).
    assert build_a5_request(0x90).hex() == "a54090 08aaaaaaaaaaaaaaaa cd".replace(" ", "")


def test_a_4s_bluetooth_module_at_rest() -> None:
    # fl4p/batmon-ha#416 snoop log, as kept in its bmslib/test/test_daly_ble_connect.py: a 4S
    # pack with two sensors that answered host 0x40 only.
    frames, _ = assembled("a501900800850000753001e44d a501940804020000000000438b")
    assert decode_a5_pack(frames[0]) == (13.3, 0.0, 48.4)
    counts = decode_a5_counts(frames[1])
    assert (counts.cell_count, counts.sensor_count, counts.cycles) == (4, 2, 0)


#: dreadnought/python-daly-bms pull request #29, ``tests/test_bluetooth.py`` (KevinEeckman): one
#: BLE notification of an answer to 0x95 as the fixture holds it, with garbage where frames
#: 12..14 were and frame 16 cut at the end. The fixture does not say whether it was captured;
#: its frames carry the stale reserved byte (0x9b) that real devices send.
PR29_NOTIFICATION = (
    "a5019508010d370d360d349ba7a5019508020d350d350d359ba6a5019508030d340d3e0d369bb0"
    "a5019508040d370d360d379bada5019508050d340d350d349ba7a5019508060d37000000009b28"
    "a5019508070000000000009be5a5019508080000000000009be6a5019508090000000000009be7"
    "a50195080a0000000000009be8a50195080b0000000000009be9"
    "a5a8004000702440000d3000007024400038a700006d320000702440005331000000000000a800"
    "a50195080f0000000000009beda501950810"
)


def test_a_bluetooth_notification_with_garbage_and_a_split_frame() -> None:
    frames, assembler = assembled(PR29_NOTIFICATION)
    assert [frame.number for frame in frames] == [*range(1, 12), 15]
    # One run of garbage, counted once (it starts "a5 a8 00 40": a length byte of 0x40).
    assert assembler.rejected == {RejectReason.BAD_LENGTH: 1}
    assert assembler.pending == 5  # frame 16 waits for the next notification
    # The fixture's expectations: 16 cells of 3.383 V or so.
    cells = decode_a5_cell_voltages(frames, 16)
    assert cells[0] == 3.383 and len(cells) == 16
    # The rest of frame 16 arriving with the next notification completes it (the 8 bytes are
    # what that frame's shape implies: six zeros, the stale byte, the checksum).
    [last] = assembler.feed(bytes.fromhex("0000000000009bee"))
    assert last.number == 16 and not assembler.pending
    # A timeout instead drops the partial frame as one rejection.
    other = A5Assembler()
    other.feed(bytes.fromhex("a501950810"))
    assert other.expire() == []
    assert other.rejected == {RejectReason.TIMEOUT: 1}


def test_balancing_and_failure_bits_as_the_pr29_fixtures_expect() -> None:
    # Same pull request; these scenarios look written by hand, but say what their author read:
    # "cells 1 and 9 balancing", and byte 0 bit 1 = "cell voltage is too high level 2 alarm".
    [balancing], _ = assembled("a5019708010100000000000047")
    flags = decode_a5_balancing(balancing, 16)
    assert [number for number, on in enumerate(flags, start=1) if on] == [1, 9]
    [failures], _ = assembled("a5019808020000000000000048")
    assert decode_a5_failures(failures)[1] == ("cell_overvoltage_2",)
    [clear], _ = assembled("a5019808000000000000000046")
    assert decode_a5_failures(clear)[1] == ()


def test_a_fault_code_in_byte_7_is_named() -> None:
    # Daly's protocol V1.0, 0x98 byte 7: "if 0x03, show 'fault code 3', 0 do not show".
    frame = A5Frame(1, 0x98, bytes((0, 0, 0x40, 0, 0, 0, 0, 3)))
    assert decode_a5_failures(frame)[1] == ("soc_low_1", "fault_code_3")


def test_garbage_of_any_length_is_assembled_in_linear_time() -> None:
    # Every candidate start costs a bounded look: megabytes of near-frames are cheap.
    assembler = A5Assembler()
    assert assembler.feed(bytes.fromhex("a50195") * 400_000) == []
    assert assembler.pending < 13


#: Daly's PC software switching the discharge MOSFET on and off, and the BMS's answers
#: (vicgwee's capture in dreadnought/python-daly-bms#3 and jallum/dalymon#2).
PC_SOFTWARE_DISCHARGE_ON = "A5 40 D9 08 01 00 00 00 00 00 00 00 C7"
PC_SOFTWARE_DISCHARGE_ON_ANSWER = "A5 01 D9 08 01 0D 13 0D 21 0D 17 C0 BA"
PC_SOFTWARE_DISCHARGE_OFF = "A5 40 D9 08 00 00 00 00 00 00 00 00 C6"
PC_SOFTWARE_DISCHARGE_OFF_ANSWER = "A5 01 D9 08 00 0D 13 0D 21 0D 17 C0 B9"


def test_the_mosfet_switches_are_the_frames_peers_send() -> None:
    assert build_a5_switch("discharge_switch", 1, 0x40) == bytes.fromhex(PC_SOFTWARE_DISCHARGE_ON)
    assert build_a5_switch("discharge_switch", 0, 0x40) == bytes.fromhex(PC_SOFTWARE_DISCHARGE_OFF)
    # From the Bluetooth app's address, as esphome/feature-requests#1979 sends them raw.
    assert build_a5_switch("charge_switch", 0, 0x80).hex() == "a580da080000000000000000" + "07"
    assert build_a5_switch("charge_switch", 1, 0x80).hex() == "a580da080100000000000000" + "08"
    assert parse_a5_switch(bytes.fromhex(PC_SOFTWARE_DISCHARGE_ON)) == ("discharge_switch", 1)
    assert parse_a5_switch(build_a5_switch("charge_switch", 0, 0x41)) == ("charge_switch", 0)
    # Not a switch: a read, an answer, a state that is neither on nor off.
    assert parse_a5_switch(build_a5_request(0x93)) is None
    assert parse_a5_switch(bytes.fromhex(PC_SOFTWARE_DISCHARGE_ON_ANSWER)) is None
    assert parse_a5_switch(build_a5_request(0xD9, 0x40, bytes((2,)) + bytes(7))) is None
    for name, state in (("soc_setting", 1), ("charge_switch", 2)):
        with pytest.raises(ValueError, match="to 0 or 1"):
            build_a5_switch(name, state, 0x40)


def test_a_switch_s_answer_carries_the_state_and_its_echo_is_dropped() -> None:
    # An RS485 adapter's copy of the request comes first; it carries the host address.
    frames, assembler = assembled(PC_SOFTWARE_DISCHARGE_ON + PC_SOFTWARE_DISCHARGE_ON_ANSWER)
    assert assembler.echoes == 1
    [answer] = frames
    assert (answer.address, answer.command, answer.data[0]) == (1, 0xD9, 1)


def test_the_bms_own_temperature_extremes_are_those_of_0x92() -> None:
    """As the D2 status's max/min temperature registers: what the BMS tells, not recomputed.

    The session of mpp-solar#83 with its 0x92 answer changed by hand to 20 degC (0x3C) on
    sensor 2 and 10 degC (0x32) on sensor 1, per Daly's V1.2 table (degC + 40).
    """
    answers = by_command(
        [
            frame
            for chunk in FIREMEN027_SESSION
            for frame in A5Assembler().feed(bytes.fromhex(chunk))
        ]
    )
    answers[0x92] = [A5Frame(1, 0x92, bytes((0x3C, 2, 0x32, 1, 0, 0, 0, 0)))]
    status = decode_a5_status(answers)
    assert (status.max_temperature, status.min_temperature) == (20.0, 10.0)
    assert status.temperatures == (15.0,)  # the sensors' own values, from 0x96
    del answers[0x92]
    assert decode_a5_status(answers).max_temperature == 15.0  # without 0x92: the sensors'
