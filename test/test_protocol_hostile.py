"""Hostile input: bytes no BMS sends, and answers whose values no pack can have.

The A5 answers are real ones (firemen027's 16S pack, jblance/mpp-solar#83) with one field
spoilt; what each test expects is the rule the D2 decoder already follows for the register of
the same meaning (``registers.py``): a value out of its range reads NaN and is named in
``invalid``, the raw value of a missing sensor reads NaN (unknown), an answer no pack can give is
refused with FrameDecodeError, and nothing else is ever raised. Counts are bounded by Daly's
UART/485 document ([G] in ``registers.py``): 0x95 "Cell voltage 1~48 ... the maximum 96 byte, is
sent in 16 frames", 0x97 "Bit0~Bit47" for cells 1..48, 0x96 "the maximum 21 byte, send in 3
frames". The assemblers count one rejection per bad piece and take linear time on any input.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from real_frames import SETTINGS, STATUS, frame_bytes
from test_protocol_a5 import FIREMEN027_SESSION, by_command

from daly_bms_ros.protocol import FrameAssembler, FrameDecodeError, RejectReason, crc16_modbus
from daly_bms_ros.protocol.a5 import (
    A5Assembler,
    A5Frame,
    checksum,
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
    decode_a5_temperatures,
)

A5Answers = dict[int, list[A5Frame]]


def session() -> A5Answers:
    """The answers of firemen027's session, by command (53.2 V, 2.1 A out, 16 cells, 15 degC)."""
    assembler = A5Assembler()
    frames = [
        frame for chunk in FIREMEN027_SESSION for frame in assembler.feed(bytes.fromhex(chunk))
    ]
    return by_command(frames)


def spoilt(command: int, first: int, raw: bytes, answers: A5Answers | None = None) -> A5Answers:
    """``answers`` (the session's by default) with ``raw`` over the first frame of ``command``."""
    answers = session() if answers is None else answers
    frame = answers[command][0]
    data = frame.data[:first] + raw + frame.data[first + len(raw) :]
    answers[command][0] = A5Frame(frame.address, command, data)
    return answers


# Item: the current word of 0x90 (bytes 4..5). D2's register refuses raw 0, the -3000 A of an
# empty register, and everything beyond +-3000 A; A5 counts the other way round.
@pytest.mark.parametrize("raw", ["0000", "ffff", "ea61"])  # +3000 A, -3553.5 A, -3000.1 A
def test_an_empty_or_impossible_current_is_nan_and_named(raw: str) -> None:
    status = decode_a5_status(spoilt(0x90, 4, bytes.fromhex(raw)))
    assert math.isnan(status.current) and math.isnan(status.power)
    assert status.invalid == ("current",)
    assert status.pack_voltage == 53.2  # the rest of the answer is as the source says


def test_the_edges_of_the_current_range_are_readings() -> None:
    # Raw 1 and 60000: 2999.9 A charging, 3000.0 A discharging, as D2's range allows.
    assert decode_a5_status(spoilt(0x90, 4, bytes.fromhex("0001"))).current == 2999.9
    assert decode_a5_status(spoilt(0x90, 4, bytes.fromhex("ea60"))).current == -3000.0


def test_zero_volts_for_a_pack_whose_cells_hold_3_3_v_is_refused() -> None:
    with pytest.raises(FrameDecodeError, match="0 V"):
        decode_a5_status(spoilt(0x90, 0, bytes(2)))


def test_an_impossible_soc_and_pack_voltage_are_nan_and_named() -> None:
    status = decode_a5_status(spoilt(0x90, 0, bytes.fromhex("ffff0000ffffffff")))
    assert math.isnan(status.pack_voltage) and math.isnan(status.soc)
    assert set(status.invalid) == {"pack_voltage", "current", "soc"}


def test_a_cell_at_0_mv_is_nan_and_named_not_0_v() -> None:
    status = decode_a5_status(spoilt(0x95, 1, bytes(2)))
    assert math.isnan(status.cell_voltages[0])
    assert status.cell_voltages[1] == 3.326  # 0x0cfe, the source's cell 2
    assert status.invalid == ("cell_voltage_1",)


def test_all_cells_at_0_mv_are_nan_and_named() -> None:
    answers = session()
    answers[0x95] = [A5Frame(1, 0x95, bytes((n, 0, 0, 0, 0, 0, 0, 0x40))) for n in range(1, 17)]
    status = decode_a5_status(answers)
    assert all(math.isnan(voltage) for voltage in status.cell_voltages)
    assert status.invalid == tuple(f"cell_voltage_{n}" for n in range(1, 17))
    # No cell to average; the extremes stay those the BMS told in 0x91, as in D2.
    assert math.isnan(status.average_cell_voltage) and math.isnan(status.cell_delta)
    assert (status.max_cell_voltage, status.min_cell_voltage) == (3.328, 3.326)


def test_zero_volts_with_every_cell_at_0_mv_is_no_reading_but_not_refused() -> None:
    # As in D2: 0 V is refused only while a cell holds voltage; without one, nothing is known.
    answers = spoilt(0x90, 0, bytes(2))
    answers[0x95] = [A5Frame(1, 0x95, bytes((n, *bytes(7)))) for n in range(1, 17)]
    status = decode_a5_status(answers)
    assert status.pack_voltage == 0.0
    assert all(math.isnan(voltage) for voltage in status.cell_voltages)


@pytest.mark.parametrize("raw", [0xFF, 0x00])
def test_a_sensor_the_pack_lacks_is_unknown_not_215_or_minus_40_degc(raw: int) -> None:
    # D2 registers read 0x00FF and 0x0000 in the slots of sensors not fitted [E][H][F].
    answers = spoilt(0x96, 1, bytes((raw,)))
    del answers[0x92]  # the extremes then come from the sensors, of which none is fitted
    status = decode_a5_status(answers)
    assert math.isnan(status.temperatures[0])
    assert math.isnan(status.max_temperature) and math.isnan(status.min_temperature)
    assert status.invalid == ()
    told = decode_a5_temperature_range(spoilt(0x92, 0, bytes((raw,)))[0x92][0])
    assert math.isnan(told.max_temperature) and told.min_temperature == 15.0


def test_a_temperature_beyond_the_sensors_range_is_nan_and_named() -> None:
    status = decode_a5_status(spoilt(0x96, 1, bytes((200,))))  # 160 degC: D2's limit is 120
    assert math.isnan(status.temperatures[0])
    assert status.invalid == ("temperature_1",)


def test_the_bms_extremes_out_of_range_are_nan_and_a_cell_it_lacks_is_number_0() -> None:
    invalid: list[str] = []
    # 0x91: highest cell 65.535 V in cell 200 of a 16-cell pack.
    answers = spoilt(0x91, 0, bytes.fromhex("ffffc8"))
    told = decode_a5_cell_range(answers[0x91][0], invalid)
    assert math.isnan(told.max_cell_voltage) and invalid == ["max_cell_voltage"]
    status = decode_a5_status(answers)
    assert math.isnan(status.max_cell_voltage) and status.max_cell_index == 0
    assert status.invalid == ("max_cell_voltage",)


def test_an_impossible_remaining_capacity_is_nan_and_named() -> None:
    status = decode_a5_status(spoilt(0x93, 4, bytes.fromhex("ffffffff")))  # 4,294,967 Ah
    assert math.isnan(status.remaining_capacity)
    assert status.invalid == ("remaining_capacity",)


def test_idle_while_2_1_a_flows_is_an_unknown_charge_state() -> None:
    # D2's rule: a state of 0 while at least 1 A flows is a field the pack does not fill.
    assert decode_a5_status(spoilt(0x93, 0, bytes(1))).charge_state == "unknown"
    assert decode_a5_status(spoilt(0x93, 0, bytes((7,)))).charge_state == "unknown"


def test_impossible_rated_values_are_nan_and_named() -> None:
    rated = decode_a5_rated(A5Frame(1, 0x50, bytes(8)))
    assert math.isnan(rated.rated_capacity) and math.isnan(rated.nominal_cell_voltage)
    assert rated.invalid == ("rated_capacity", "nominal_cell_voltage")


def cell_frames(count: int) -> list[A5Frame]:
    """As many 0x95 frames as ``count`` cells need, every cell at 3300 mV, numbered from 1."""
    return [
        A5Frame(1, 0x95, bytes((number,)) + bytes.fromhex("0ce4") * 3 + b"\x40")
        for number in range(1, -(-count // 3) + 1)
    ]


def test_more_cells_than_a5_carries_is_refused_not_indexed() -> None:
    # 65..255 cells with a 0x97 answer once indexed past its 8 bytes (IndexError).
    for count in range(49, 256):
        answers = spoilt(0x94, 0, bytes((count,)))
        answers[0x95] = cell_frames(count)
        answers[0x97] = [A5Frame(1, 0x97, bytes.fromhex("0100000000000000"))]
        with pytest.raises(FrameDecodeError, match=f"cell_count is {count}, at most 48"):
            decode_a5_status(answers)
        with pytest.raises(FrameDecodeError, match="at most 48"):
            decode_a5_balancing(answers[0x97][0], count)
        with pytest.raises(FrameDecodeError, match="at most 48"):
            decode_a5_cell_voltages(answers[0x95], count)
    # 48 cells, 16 frames, is what the document allows.
    answers = spoilt(0x94, 0, bytes((48,)))
    answers[0x95] = cell_frames(48)
    assert len(decode_a5_status(answers).cell_voltages) == 48


def test_more_sensors_than_a5_carries_is_refused() -> None:
    sensors = [A5Frame(1, 0x96, bytes((n, *(0x37,) * 7))) for n in range(1, 38)]
    for count in range(22, 256):
        answers = spoilt(0x94, 1, bytes((count,)))
        answers[0x96] = sensors
        with pytest.raises(FrameDecodeError, match=f"sensor_count is {count}, at most 21"):
            decode_a5_status(answers)
        with pytest.raises(FrameDecodeError, match="at most 21"):
            decode_a5_temperatures(sensors, count)
    answers = spoilt(0x94, 1, bytes((21,)))
    answers[0x96] = sensors
    assert decode_a5_status(answers).temperatures == (15.0,) * 21


DECODERS: list[tuple[int, Callable[[A5Frame], object]]] = [
    (0x90, decode_a5_pack),
    (0x91, decode_a5_cell_range),
    (0x92, decode_a5_temperature_range),
    (0x93, decode_a5_mos),
    (0x94, decode_a5_counts),
    (0x95, lambda frame: decode_a5_cell_voltages([frame], 3)),
    (0x96, lambda frame: decode_a5_temperatures([frame], 7)),
    (0x97, lambda frame: decode_a5_balancing(frame, 16)),
    (0x98, decode_a5_failures),
    (0x50, decode_a5_rated),
]


@pytest.mark.parametrize(("command", "decoder"), DECODERS)
def test_a_frame_of_any_other_size_is_refused(
    command: int, decoder: Callable[[A5Frame], object]
) -> None:
    for size in (0, 1, 7, 9, 64):
        with pytest.raises(FrameDecodeError, match="8 data bytes"):
            decoder(A5Frame(1, command, bytes((1,)) * size))


@st.composite
def a5_answers(draw: st.DrawFn) -> A5Answers:
    """One poll's answers of any content: every frame 8 random bytes, any frame numbers."""
    data = st.binary(min_size=8, max_size=8)
    answers = {
        command: [A5Frame(1, command, draw(data))]
        for command in (0x90, 0x91, 0x92, 0x93, 0x94, 0x97, 0x98)
        if command in (0x90, 0x93, 0x94) or draw(st.booleans())
    }
    numbered = st.tuples(st.integers(0, 255), st.binary(min_size=7, max_size=7))
    for command, most in ((0x95, 90), (0x96, 40)):
        frames = draw(st.lists(numbered, min_size=1 if command == 0x95 else 0, max_size=most))
        # Mostly numbered 1..n in order, as real answers are, so that decoding gets far.
        if draw(st.booleans()):
            frames = [(number + 1, rest) for number, (_, rest) in enumerate(frames)]
        if frames:
            answers[command] = [A5Frame(1, command, bytes((n,)) + rest) for n, rest in frames]
    return answers


def assert_plausible_or_refused(answers: A5Answers) -> None:
    """Decode; only FrameDecodeError may come out, and every value read is possible or NaN."""
    try:
        status = decode_a5_status(answers)
    except FrameDecodeError:
        return
    assert 1 <= len(status.cell_voltages) <= 48 and len(status.temperatures) <= 21
    assert all(math.isnan(v) or 0.5 <= v <= 5.0 for v in status.cell_voltages)
    assert all(math.isnan(t) or -40.0 <= t <= 120.0 for t in status.temperatures)
    assert math.isnan(status.current) or -3000.0 <= status.current <= 2999.9
    assert math.isnan(status.pack_voltage) or 0.0 <= status.pack_voltage <= 200.0
    assert math.isnan(status.soc) or 0.0 <= status.soc <= 100.0
    assert math.isnan(status.remaining_capacity) or 0.0 <= status.remaining_capacity <= 6500.0
    assert 0 <= status.min_cell_index <= len(status.cell_voltages)
    assert 0 <= status.max_cell_index <= len(status.cell_voltages)
    if status.balancing_cells is not None:
        assert len(status.balancing_cells) == len(status.cell_voltages)


@settings(max_examples=40, deadline=None)
@given(a5_answers())
def test_answers_of_any_content_with_every_cell_count_decode_or_are_refused(
    answers: A5Answers,
) -> None:
    counts = answers[0x94][0]
    for cell_count in range(256):
        answers[0x94] = [A5Frame(1, 0x94, bytes((cell_count,)) + counts.data[1:])]
        assert_plausible_or_refused(answers)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12))
def test_random_bytes_never_yield_an_a5_frame_with_a_bad_checksum(chunks: list[bytes]) -> None:
    assembler = A5Assembler()
    received = b"".join(chunks)
    frames = [frame for chunk in chunks for frame in assembler.feed(chunk)]
    frames += assembler.expire()
    for frame in frames:
        wire = frame.to_bytes()
        assert wire in received and checksum(wire[:12]) == wire[12]
    assert_plausible_or_refused(by_command(frames))


@pytest.mark.parametrize("pattern", ["d203", "5103fa"])
def test_repeated_headers_are_one_bad_piece(pattern: str) -> None:
    # Each header announces a frame that holds a hundred more headers: one piece of garbage.
    assembler = FrameAssembler()
    assert assembler.feed(bytes.fromhex(pattern) * 20_000) == []
    assert assembler.expire() == []
    assert assembler.rejected == {RejectReason.BAD_CRC: 1}


def test_frames_behind_repeated_headers_are_found_and_each_piece_counted_once() -> None:
    status, settings_block = frame_bytes(STATUS), frame_bytes(SETTINGS)
    data = (
        bytes.fromhex("d203") * 1000
        + status
        + bytes.fromhex("5103fa") * 1000
        + settings_block
        + b"\x00garbage"
    )
    assembler = FrameAssembler()
    frames = assembler.feed(data) + assembler.expire()
    assert [frame.to_bytes() for frame in frames] == [status, settings_block]
    assert assembler.rejected == {RejectReason.BAD_CRC: 2, RejectReason.BAD_HEADER: 1}
    # The same, a byte at a time, as a slow link delivers it.
    assembler = FrameAssembler()
    frames = [frame for byte in data for frame in assembler.feed(bytes((byte,)))]
    frames += assembler.expire()
    assert [frame.to_bytes() for frame in frames] == [status, settings_block]


def test_an_error_answer_behind_a_cut_short_frame_is_reported() -> None:
    # Daly's error answer, ``D2 83 <code> <crc>`` (frames.py), right after an answer cut short.
    body = bytes.fromhex("d28302")
    error = body + crc16_modbus(body).to_bytes(2, "little")
    assembler = FrameAssembler()
    frames = assembler.feed(frame_bytes(STATUS)[:40] + error + frame_bytes(SETTINGS))
    assert [frame.to_bytes() for frame in frames] == [frame_bytes(SETTINGS)]
    assert assembler.rejected == {RejectReason.BAD_CRC: 1, RejectReason.ERROR_RESPONSE: 1}


def assembly_seconds(data: bytes) -> float:
    """The best of three runs of assembling ``data`` in 20-byte notifications, then expiring."""
    best = math.inf
    for _ in range(3):
        assembler = FrameAssembler()
        began = time.perf_counter()
        for start in range(0, len(data), 20):
            assembler.feed(data[start : start + 20])
        assembler.expire()
        best = min(best, time.perf_counter() - began)
    return best


@pytest.mark.parametrize("pattern", ["d203", "5103fa", "d20306", "5183"])
def test_repeated_headers_cost_about_what_real_frames_of_their_size_cost(pattern: str) -> None:
    # Real frames cost a CRC step a byte; so may any input, give or take a small factor (``d2 03``
    # once cost a whole CRC every 2 bytes: 80 times what real frames cost).
    real = (frame_bytes(STATUS) + frame_bytes(SETTINGS)) * 150
    hostile = bytes.fromhex(pattern) * (len(real) * 2 // len(pattern))
    assert assembly_seconds(hostile) < 15 * assembly_seconds(real)
