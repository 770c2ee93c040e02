"""Requests, CRC and frame assembly, on the real captures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from real_frames import BAD_CRC, SETTINGS, STATUS, frame_bytes, real_frames

from daly_bms_ros.protocol import (
    SETTINGS_BLOCK,
    STATUS_BLOCK,
    X81,
    X81_PACK_BLOCK,
    FrameAssembler,
    RejectReason,
    build_read_request,
    build_response,
    build_write_multiple_request,
    crc16_modbus,
    parse_read_request,
)


def test_requests_match_the_captured_client_writes() -> None:
    assert build_read_request(STATUS_BLOCK).hex() == real_frames()[STATUS]["request"]
    assert build_read_request(SETTINGS_BLOCK).hex() == real_frames()[SETTINGS]["request"]


def test_parse_read_request_round_trip_and_rejects_bad_crc() -> None:
    request = build_read_request(SETTINGS_BLOCK)
    parsed = parse_read_request(request)
    assert parsed is not None
    assert (parsed.start, parsed.count) == (0x80, 41)
    assert parse_read_request(request[:-1] + bytes([request[-1] ^ 1])) is None


def test_crc_of_real_frames_is_valid() -> None:
    for frame_id in (STATUS, SETTINGS):
        data = frame_bytes(frame_id)
        assert crc16_modbus(data[:-2]) == int.from_bytes(data[-2:], "little")


@pytest.mark.parametrize("frame_id", [STATUS, SETTINGS])
def test_split_at_every_offset(frame_id: str) -> None:
    data = frame_bytes(frame_id)
    for cut in range(1, len(data)):
        assembler = FrameAssembler()
        frames = assembler.feed(data[:cut]) + assembler.feed(data[cut:])
        assert [frame.payload for frame in frames] == [data[3:-2]], cut
        assert not assembler.rejected


@pytest.mark.parametrize("chunk_size", range(1, 140))
def test_any_chunk_size(chunk_size: int) -> None:
    data = frame_bytes(STATUS) + frame_bytes(SETTINGS)
    assembler = FrameAssembler()
    frames = []
    for start in range(0, len(data), chunk_size):
        frames += assembler.feed(data[start : start + chunk_size])
    assert [len(frame.payload) for frame in frames] == [124, 82]


def test_bad_crc_frame_is_counted_and_never_yielded() -> None:
    assembler = FrameAssembler()
    assert assembler.feed(frame_bytes(BAD_CRC)) == []
    assert assembler.rejected == {RejectReason.BAD_CRC: 1}


def test_captured_concatenation_yields_the_valid_frames_only() -> None:
    data = b"".join(frame_bytes(frame_id) for frame_id in (SETTINGS, STATUS, BAD_CRC))
    assembler = FrameAssembler()
    assert [len(frame.payload) for frame in assembler.feed(data)] == [82, 124]
    assert assembler.rejected[RejectReason.BAD_CRC] == 1


def test_leading_garbage_is_skipped_and_counted() -> None:
    assembler = FrameAssembler()
    frames = assembler.feed(b"\x00\x11garbage" + frame_bytes(SETTINGS))
    assert len(frames) == 1
    assert assembler.rejected[RejectReason.BAD_HEADER] >= 1


def test_truncated_frame_followed_by_a_new_frame() -> None:
    status = frame_bytes(STATUS)
    assembler = FrameAssembler()
    frames = assembler.feed(status[:50]) + assembler.feed(status)
    assert [frame.payload for frame in frames] == [status[3:-2]]
    assert assembler.rejected[RejectReason.BAD_CRC] == 1


def test_expire_drops_partial_frame_as_timeout() -> None:
    assembler = FrameAssembler()
    assembler.feed(frame_bytes(STATUS)[:40])
    assembler.expire()
    assert assembler.rejected[RejectReason.TIMEOUT] == 1
    assert assembler.pending == 0
    assert len(assembler.feed(frame_bytes(SETTINGS))) == 1


def test_error_responses_of_both_variants_are_reported() -> None:
    frames = b""
    for address in (0xD2, 0x51):
        body = bytes([address, 0x83, 0x02])
        frames += body + crc16_modbus(body).to_bytes(2, "little")
    assembler = FrameAssembler()
    assert assembler.feed(frames) == []
    assert assembler.rejected[RejectReason.ERROR_RESPONSE] == 2


def test_frames_of_the_0x81_variant_are_assembled_with_their_address() -> None:
    request = build_read_request(X81_PACK_BLOCK, X81)
    assert request[:2] == b"\x81\x03"
    parsed = parse_read_request(request, X81)
    assert parsed is not None
    assert (parsed.start, parsed.count) == (X81_PACK_BLOCK.start, X81_PACK_BLOCK.count)
    assert parse_read_request(request) is None  # not a D2 request
    x81 = build_response(list(range(62)), X81)
    d2 = frame_bytes(STATUS)
    assembler = FrameAssembler()
    frames = assembler.feed(b"\x81\x00" + x81[:7]) + assembler.feed(x81[7:] + d2)
    assert [frame.address for frame in frames] == [0x51, 0xD2]
    assert frames[0].registers == tuple(range(62))
    assert frames[0].to_bytes() == x81
    assert assembler.rejected[RejectReason.BAD_HEADER] == 1  # the two bytes before the frame


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_random_bytes_never_yield_a_frame_with_a_bad_crc(chunks: list[bytes]) -> None:
    assembler = FrameAssembler()
    received = b"".join(chunks)
    for chunk in chunks:
        for frame in assembler.feed(chunk):
            wire = frame.to_bytes()
            assert wire in received  # exactly the bytes received, not a repaired copy
            assert crc16_modbus(wire[:-2]) == int.from_bytes(wire[-2:], "little")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=299))
def test_real_frame_survives_random_prefix_noise(noise: bytes, cut: int) -> None:
    """Garbage before a real frame never hides it when the garbage holds no header."""
    noise = noise.replace(b"\xd2", b"\x00").replace(b"\x51", b"\x00")
    status = frame_bytes(STATUS)
    assembler = FrameAssembler()
    data = noise + status
    frames = assembler.feed(data[:cut]) + assembler.feed(data[cut:])
    assert [frame.payload for frame in frames] == [status[3:-2]]


def test_bytes_that_look_like_a_write_answer_do_not_swallow_the_next_frame() -> None:
    """A cut-short answer whose data holds D2 06 / D2 10 / 51 06, then a whole answer."""
    lookalike = build_response([0xD206, 0x0010, 0xD210, 0x5106, 0x0A0B] * 6)
    whole = build_response([3200] * 62)
    assembler = FrameAssembler()
    frames = assembler.feed(lookalike[: len(lookalike) // 2] + whole)
    assert [frame.to_bytes() for frame in frames] == [whole]
    assert sum(assembler.rejected.values()) == 1  # one bad input, one rejection


def test_write_answers_are_assembled_and_a_spoilt_echo_is_one_rejection() -> None:
    # Daly's app capture (syssi/esphome-daly-bms docs/pdus/btsnoop_daly_balancer.log, records
    # 248..251): an echo with a bad CRC, then the echo of the resent write.
    assembler = FrameAssembler()
    frames = assembler.feed(bytes.fromhex("d20600cf00011c8a") + bytes.fromhex("d20600cf00016b96"))
    assert [(frame.function, frame.registers) for frame in frames] == [(0x06, (0x00CF, 1))]
    assert assembler.rejected[RejectReason.BAD_CRC] == 1
    # Daly's Modbus sheet: the answer to a write of two registers from 0x000C.
    [answer] = FrameAssembler().feed(bytes.fromhex("d210000c00029268"))
    assert (answer.function, answer.registers) == (0x10, (0x000C, 2))
    assert build_write_multiple_request(0x000C, [1, 2]).hex() == "d210000c0002000100027d65"
