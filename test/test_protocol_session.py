"""The conversation with a BMS, driven without asyncio, sockets or sleeps.

A scripted BMS answers each request with real frames (or with silence, or with the wrong
answer); the session's choices (what it asks, in which order, what it takes as the answer,
when it gives up) are what is checked, and the values it returns are those the frames'
sources state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from real_frames import SETTINGS, STATUS, frame_bytes, real_frames
from test_protocol_a5 import (
    FIREMEN027_SESSION,
    PC_SOFTWARE_DISCHARGE_OFF_ANSWER,
    PC_SOFTWARE_DISCHARGE_ON,
    PC_SOFTWARE_DISCHARGE_ON_ANSWER,
)

from daly_bms_ros.protocol import (
    D2,
    STATUS_80_BLOCK,
    STATUS_BLOCK,
    X81,
    X81_PACK_BLOCK,
    build_read_request,
)
from daly_bms_ros.protocol.a5 import A5Assembler, A5Frame, build_a5_answer, build_a5_request
from daly_bms_ros.protocol.frames import FrameAssembler
from daly_bms_ros.protocol.registers import A5_MOS, MOS_BLOCK, SETTINGS_BLOCK, WRITABLE
from daly_bms_ros.protocol.session import (
    MODBUS,
    A5Answer,
    Ask,
    DetectionPlan,
    NoAnswerError,
    PackMemory,
    Reading,
    Session,
    ask_write,
    detect,
    read_written,
    sample,
    write_address,
    write_refusal,
)

#: A BMS's answer to a request: bytes, or None for silence.
Answer = Callable[[bytes], bytes | None]


class ScriptedBms:
    """Answers by request: each request's answers in turn (the last one again after that)."""

    def __init__(self, script: dict[bytes, list[bytes | None]]) -> None:
        self.script = {request: list(answers) for request, answers in script.items()}
        self.asked: list[bytes] = []

    def __call__(self, request: bytes) -> bytes | None:
        self.asked.append(request)
        answers = self.script.get(request, [None])
        return answers.pop(0) if len(answers) > 1 else answers[0]


def converse(session: Session, bms: Answer) -> Any:
    """Carry out ``session`` against ``bms``, as the client's loop does but with no clock.

    Every frame of the answer goes to the ask's ``accept`` until it takes one; an answer it
    does not take is silence (the time runs out).
    """
    answer = None
    try:
        while True:
            ask: Ask = session.send(answer)
            assembler = FrameAssembler() if ask.family == MODBUS else A5Assembler()
            answer = None
            for request in ask.requests:
                frames: Iterable[Any] = assembler.feed(bms(request) or b"")
                for frame in frames:
                    if answer is None:
                        answer = ask.accept(frame)
    except StopIteration as done:
        return done.value


def a5_answers(host: int, chunks: Iterable[str]) -> dict[bytes, list[bytes | None]]:
    """The script of an A5 BMS that answers ``host`` with the frames of ``chunks``."""
    by_command: dict[int, bytes] = {}
    for frame in A5Assembler().feed(bytes.fromhex("".join(chunks))):
        by_command[frame.command] = by_command.get(frame.command, b"") + frame.to_bytes()
    return {build_a5_request(command, host): [data] for command, data in by_command.items()}


def plan(protocol: str = "auto", wired: bool = True, retries: int = 0) -> DetectionPlan:
    hosts = (0x40, 0x80) if wired else (0x80, 0x40)
    return DetectionPlan(protocol, wired, retries, hosts)


def test_detection_asks_a5_first_over_a_wire_and_last_over_bluetooth() -> None:
    status_80 = build_read_request(STATUS_80_BLOCK)
    x81_pack = build_read_request(X81_PACK_BLOCK, X81)
    status_62 = build_read_request(STATUS_BLOCK)
    a5_from = {host: build_a5_request(0x90, host) for host in (0x40, 0x80)}
    for wired, order in (
        (True, [a5_from[0x40], a5_from[0x80], status_80, x81_pack, status_62]),
        (False, [status_80, x81_pack, status_62, a5_from[0x80], a5_from[0x40]]),
    ):
        silent = ScriptedBms({})
        with pytest.raises(NoAnswerError, match=r"any protocol .* after 1 rounds"):
            converse(detect(plan(wired=wired)), silent)
        assert silent.asked == order
    pinned = ScriptedBms({})
    with pytest.raises(NoAnswerError, match="status request of x81 after 2 rounds"):
        converse(detect(plan("x81", retries=1)), pinned)
    assert pinned.asked == [x81_pack, x81_pack]


def test_a_wrong_answer_to_a_probe_is_not_taken_for_the_protocol() -> None:
    """A settings answer while the status is asked is not the status: the next probe follows."""
    status_62 = frame_bytes(STATUS)
    bms = ScriptedBms(
        {
            build_read_request(STATUS_80_BLOCK): [frame_bytes(SETTINGS)],
            build_read_request(STATUS_BLOCK): [status_62],
        }
    )
    found = converse(detect(plan(wired=False)), bms)
    assert (found.variant, found.status_block, found.a5_host) == (D2, STATUS_BLOCK, None)
    assert found.first_frame.to_bytes() == status_62


def test_a_d2_pack_answering_62_registers_is_read_with_its_settings_once() -> None:
    """The real 16S pack (data/daly_d2_real.json): no 80-register read, no MOS block."""
    bms = ScriptedBms(
        {
            build_read_request(STATUS_BLOCK): [frame_bytes(STATUS)],
            build_read_request(SETTINGS_BLOCK): [frame_bytes(SETTINGS)],
        }
    )
    memory = PackMemory()
    reading: Reading = converse(sample(memory, plan(wired=False)), bms)
    stated = real_frames()[STATUS]["expected_from_raw_registers"]
    status = reading.status
    assert [round(v * 1000) for v in status.cell_voltages] == stated["cell_mV"]
    assert (status.pack_voltage, status.soc) == (stated["pack_voltage_V"], stated["soc_percent"])
    assert reading.settings is not None and reading.settings.rated_capacity == 310.0
    assert memory.protocol == "d2" and memory.status_block is STATUS_BLOCK
    # It answers no MOS block: not asked again on this connection.
    assert memory.read_mos_temperature is False
    bms.asked.clear()
    converse(sample(memory, plan(wired=False)), bms)
    assert bms.asked == [build_read_request(STATUS_BLOCK)]  # settings and MOS: known
    memory.forget()  # a new connection: the protocol and settings are found again
    bms.asked.clear()
    converse(sample(memory, plan(wired=False)), bms)
    assert bms.asked[0] == build_read_request(STATUS_80_BLOCK)
    assert build_read_request(SETTINGS_BLOCK) in bms.asked
    assert build_read_request(MOS_BLOCK) in bms.asked


def test_an_a5_sample_of_a_real_session_asks_0x94_first_and_leaves_out_the_unanswered() -> None:
    """mpp-solar#83's 16S pack over its UART (host 0x80): it never answers 0x97, 0x98, 0x50."""
    bms = ScriptedBms(a5_answers(0x80, FIREMEN027_SESSION))
    memory = PackMemory()
    reading = converse(sample(memory, plan()), bms)
    # mpp-solar's decode: "Battery Bank Voltage 53.2 V ... Current 2.1 A, SOC 88.8 %",
    # discharging; "Maximum Cell Voltage 3.328 V #15"; 16 cells, 1 sensor at 15 degC.
    status = reading.status
    assert (status.pack_voltage, status.current, status.soc) == (53.2, -2.1, 88.8)
    assert (status.max_cell_voltage, status.max_cell_index) == (3.328, 15)
    assert len(status.cell_voltages) == 16 and status.temperatures == (15.0,)
    assert memory.a5_host == 0x80 and memory.protocol == "a5"
    asked = [request[2] for request in bms.asked]
    # Detection asks 0x90 from 0x40 (silence), then from 0x80; the sample 0x94 first.
    assert [request[1] for request in bms.asked[:2]] == [0x40, 0x80]
    assert asked[2:] == [0x94, 0x90, 0x91, 0x92, 0x93, 0x95, 0x96, 0x97, 0x98, 0x50]
    assert memory.a5_unanswered == {0x97, 0x98, 0x50} and reading.settings is None
    bms.asked.clear()
    converse(sample(memory, plan()), bms)
    assert [request[2] for request in bms.asked] == [0x94, 0x90, 0x91, 0x92, 0x93, 0x95, 0x96]


def test_a_needed_a5_command_is_asked_again_and_its_silence_ends_the_sample() -> None:
    script = a5_answers(0x40, FIREMEN027_SESSION)
    request_0x90 = build_a5_request(0x90, 0x40)
    script[request_0x90] = [None, *script[request_0x90]]  # silent once, then answers
    memory = PackMemory(a5_host=0x40)
    bms = ScriptedBms(script)
    reading = converse(sample(memory, plan(retries=1)), bms)
    assert reading.status.soc == 88.8
    assert bms.asked.count(request_0x90) == 2
    script[request_0x90] = [None]
    with pytest.raises(NoAnswerError, match=r"A5 command 0x90 after 2 tries"):
        converse(sample(memory, plan(retries=1)), ScriptedBms(script))


def test_a_multi_frame_answer_is_taken_by_frame_number_past_stale_and_foreign_frames() -> None:
    """jblance/mpp-solar#516: a read began with frame 6 of the previous poll, then 1..6."""

    def cells(number: int, millivolts: int) -> A5Frame:
        return A5Frame(1, 0x95, bytes((number,)) + millivolts.to_bytes(2, "big") * 3 + b"\0")

    stale = cells(6, 3100)
    fresh = [cells(number, 3326) for number in range(1, 7)]
    accept = A5Answer(0x95, 6, board=1)
    arriving = [stale, A5Frame(1, 0x90, bytes(8)), *fresh]
    taken = [accept(frame) for frame in arriving]
    assert taken[:-1] == [None] * (len(arriving) - 1)  # complete with the last fresh frame
    assert taken[-1] == fresh  # the fresh frame 6, not the stale one


def test_on_a_shared_bus_only_the_asked_boards_frames_count() -> None:
    accept = A5Answer(0x90, 1, board=2)
    assert accept(A5Frame(1, 0x90, bytes(8))) is None
    assert accept(A5Frame(2, 0x90, bytes(8))) == [A5Frame(2, 0x90, bytes(8))]


def test_an_a5_switch_is_asked_from_the_host_the_bms_answers_and_its_answer_read() -> None:
    memory = PackMemory(a5_host=0x40)
    ask = ask_write(memory, "discharge_switch", 1, board=1)
    assert ask.requests == (bytes.fromhex(PC_SOFTWARE_DISCHARGE_ON),) and ask.paced
    assert write_address(memory, "discharge_switch") == 0xD9
    feed = A5Assembler().feed
    # The adapter's echo never reaches accept: the assembler drops a host's frame.
    assert feed(bytes.fromhex(PC_SOFTWARE_DISCHARGE_ON)) == []
    [on] = feed(bytes.fromhex(PC_SOFTWARE_DISCHARGE_ON_ANSWER))
    [off] = feed(bytes.fromhex(PC_SOFTWARE_DISCHARGE_OFF_ANSWER))
    assert ask.accept(on) is True  # the state asked: acknowledged as sent
    assert ask.accept(off) is False  # another state: the read-back tells
    assert ask.accept(A5Frame(1, 0xDA, on.data)) is None  # the other switch's answer
    # On a shared bus, another board's answer is not it.
    second = ask_write(PackMemory(a5_host=0x41), "charge_switch", 0, board=2)
    assert second.accept(A5Frame(1, 0xDA, bytes(8))) is None
    assert second.accept(A5Frame(2, 0xDA, bytes(8))) is True


def test_an_a5_switch_is_read_back_from_0x93() -> None:
    # 0x93: discharging, charge MOS off, discharge MOS on (tomatensaus' layout).
    mos = build_a5_answer(A5_MOS, bytes.fromhex("02 00 01 71 00 01 38 80".replace(" ", "")))
    bms = ScriptedBms({build_a5_request(A5_MOS, 0x80): [None, mos]})
    memory = PackMemory(a5_host=0x80)
    assert converse(read_written(memory, "charge_switch", plan(retries=1)), bms) == 0.0
    assert converse(read_written(memory, "discharge_switch", plan(retries=1)), bms) == 1.0
    assert bms.asked == [build_a5_request(A5_MOS, 0x80)] * 3  # asked again after the silence
    with pytest.raises(NoAnswerError, match="0x93"):
        converse(read_written(memory, "charge_switch", plan()), ScriptedBms({}))


def test_what_a_bms_takes_is_told_by_its_protocol() -> None:
    a5 = PackMemory(a5_host=0x40)
    assert write_refusal(a5, "charge_switch") == write_refusal(a5, "discharge_switch") == ""
    for name in set(WRITABLE) - {"charge_switch", "discharge_switch"}:
        assert "takes the MOSFET switches only" in write_refusal(a5, name)
    assert write_refusal(PackMemory(variant=D2), "sleep_time") == ""
    assert "D2 and A5 protocols only" in write_refusal(PackMemory(variant=X81), "charge_switch")
    d2_switch = ask_write(PackMemory(variant=D2), "charge_switch", 0, board=1)
    assert d2_switch.requests == (bytes.fromhex("d2 06 00 a5 00 00 8a 4a".replace(" ", "")),)
    assert write_address(PackMemory(variant=D2), "charge_switch") == 0x00A5
