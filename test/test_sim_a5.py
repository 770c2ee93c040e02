"""The virtual BMS speaking A5: answers that decode to its model, real devices' quirks, the
byte stream of a serial port, and ``daly-bms-sim`` on BLE and on a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import serial
from bluez_mock import NAME_PREFIX, SimProcess, bluez_mock, client_of, sim_process

from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.protocol import (
    D2,
    STATUS_BLOCK,
    X81,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    BmsSample,
    BmsStatus,
    Frame,
    FrameAssembler,
    RejectReason,
    build_read_request,
    build_write_multiple_request,
    build_write_request,
    decode_x81_status,
)
from daly_bms_ros.protocol.a5 import (
    READ_FILL,
    A5Assembler,
    A5Frame,
    build_a5_answer,
    build_a5_request,
    build_a5_switch,
    decode_a5_cell_voltages,
    decode_a5_mos,
    decode_a5_pack,
    decode_a5_rated,
    decode_a5_status,
    frames_expected,
)
from daly_bms_ros.protocol.registers import (
    A5_CELL_RANGE,
    A5_CELL_VOLTAGES,
    A5_CURRENT_OFFSET,
    A5_MOS,
    A5_RATED_VALUES,
    A5_SAMPLE_COMMANDS,
    A5_SOC,
    A5_STATUS,
    A5_TEMPERATURE_RANGE,
    A5_TEMPERATURES,
    WRITABLE,
)
from daly_bms_ros.sim.a5_responder import A5Bus, A5Responder
from daly_bms_ros.sim.battery import BatteryModel
from daly_bms_ros.sim.faults import Fault, FaultInjector
from daly_bms_ros.sim.request_stream import (
    RequestStream,
    a5_request_length,
    modbus_request_length,
)
from daly_bms_ros.sim.responder import ModelResponder

DISCHARGING_S = 100.0
RESTART = WRITABLE["restart"].address
CHARGING_S = 400.0


def poll(responder: A5Responder, elapsed: float, host: int = 0x40) -> dict[int, list[A5Frame]]:
    """Ask every command of a sample, in a driver's order; return the answers by command."""
    assembler = A5Assembler()
    answers: dict[int, list[A5Frame]] = defaultdict(list)
    for command in A5_SAMPLE_COMMANDS:
        for frame in assembler.feed(
            responder.answer(build_a5_request(command, host), elapsed) or b""
        ):
            answers[frame.command].append(frame)
    assert not assembler.rejected and not assembler.pending
    return answers


def assert_same_status(decoded: BmsStatus, model: BmsStatus) -> None:
    """What A5 carries of the status: all of it, at its resolution."""
    assert decoded.cell_voltages == model.cell_voltages
    assert decoded.temperatures == model.temperatures
    assert decoded.pack_voltage == model.pack_voltage
    assert decoded.current == model.current
    assert decoded.soc == model.soc
    assert decoded.remaining_capacity == model.remaining_capacity
    assert decoded.cycles == model.cycles
    assert decoded.charge_state == model.charge_state
    assert (decoded.charge_mos, decoded.discharge_mos) == (model.charge_mos, model.discharge_mos)
    assert decoded.balancing_cells == model.balancing_cells
    assert decoded.balancing == model.balancing
    assert decoded.alarms == model.alarms
    assert (decoded.min_cell_voltage, decoded.min_cell_index) == (
        model.min_cell_voltage,
        model.min_cell_index,
    )
    assert (decoded.max_cell_voltage, decoded.max_cell_index) == (
        model.max_cell_voltage,
        model.max_cell_index,
    )
    assert (decoded.min_temperature, decoded.max_temperature) == (
        model.min_temperature,
        model.max_temperature,
    )


@pytest.mark.parametrize("elapsed", [DISCHARGING_S, CHARGING_S])
@pytest.mark.parametrize("host", [0x40, 0x80])
def test_answers_decode_to_the_model_status(elapsed: float, host: int) -> None:
    model = BatteryModel(cells=13, sensors=8)
    answers = poll(A5Responder(model), elapsed, host)
    expected = model.status(elapsed)
    assert_same_status(decode_a5_status(answers), expected)
    raw_current = int.from_bytes(answers[A5_SOC][0].data[4:6], "big")
    # Real devices count a discharge above 30000: the opposite of the driver's sign.
    assert (raw_current > A5_CURRENT_OFFSET) == (expected.current < 0)
    assert expected.current != 0


def test_a_charging_pack_balances_its_high_cells() -> None:
    model = BatteryModel(cells=24, sensors=2, seed=3)
    status = model.status(CHARGING_S)
    assert status.balancing and not all(status.balancing_cells or ())
    assert_same_status(decode_a5_status(poll(A5Responder(model), CHARGING_S)), status)


def test_a_low_charge_is_told_by_0x98() -> None:
    model = BatteryModel(initial_soc=0.05)
    status = model.status(DISCHARGING_S)
    assert status.alarms
    assert decode_a5_status(poll(A5Responder(model), DISCHARGING_S)).alarms == status.alarms


def test_reserved_bytes_hold_what_the_previous_answer_left() -> None:
    responder = A5Responder(BatteryModel())

    def data(command: int) -> list[bytes]:
        answer = responder.answer(build_a5_request(command), DISCHARGING_S) or b""
        return [frame.data for frame in A5Assembler().feed(answer)]

    [soc] = data(A5_SOC)
    [cell_range] = data(A5_CELL_RANGE)
    assert cell_range[6:] == soc[6:]  # the SOC, as tomatensaus' captures show
    [temperature_range] = data(A5_TEMPERATURE_RANGE)
    assert temperature_range[4:] == cell_range[4:]
    [mos] = data(A5_MOS)
    [counts] = data(A5_STATUS)
    assert counts[7] == mos[7]
    cells = data(A5_CELL_VOLTAGES)
    assert {frame[7] for frame in cells} == {mos[7]}


def test_bms_life_is_a_free_running_counter() -> None:
    responder = A5Responder(BatteryModel())

    def life(elapsed: float) -> int:
        [frame] = A5Assembler().feed(responder.answer(build_a5_request(A5_MOS), elapsed) or b"")
        return frame.data[3]

    assert (life(300.0) - life(10.0)) % 256 == 290 % 256
    assert life(10.0) != life(11.0)


@pytest.mark.parametrize("all_frames", [False, True])
def test_cells_and_temperatures_come_in_numbered_frames(all_frames: bool) -> None:
    model = BatteryModel(cells=13, sensors=3)
    answers = poll(A5Responder(model, all_frames=all_frames), DISCHARGING_S)
    cell_frames, temperature_frames = answers[A5_CELL_VOLTAGES], answers[A5_TEMPERATURES]
    expected_cells = 16 if all_frames else frames_expected(A5_CELL_VOLTAGES, 13, 3)
    expected_temperatures = 3 if all_frames else 1
    assert [frame.number for frame in cell_frames] == list(range(1, expected_cells + 1))
    assert [frame.number for frame in temperature_frames] == list(
        range(1, expected_temperatures + 1)
    )
    # Past the last cell and sensor: zeros, as firemen027's BMS sent (mpp-solar#83).
    assert cell_frames[4].data[3:7] == bytes(4)
    assert all(frame.data[1:7] == bytes(6) for frame in cell_frames[5:])
    assert temperature_frames[0].data[4:] == bytes(4)
    assert all(frame.data[1:] == bytes(7) for frame in temperature_frames[1:])
    assert_same_status(decode_a5_status(answers), model.status(DISCHARGING_S))


def test_only_the_host_addresses_configured_are_answered() -> None:
    model = BatteryModel()
    rs485 = A5Responder(model, host_addresses=(0x40,))
    assert rs485.answer(build_a5_request(A5_SOC, 0x80), 1.0) is None
    assert rs485.answer(build_a5_request(A5_SOC, 0x40), 1.0)
    second_board = A5Responder(model, board=2)
    assert second_board.answer(build_a5_request(A5_SOC, 0x40), 1.0) is None
    for host in (0x41, 0x80):
        [frame] = A5Assembler().feed(
            second_board.answer(build_a5_request(A5_SOC, host), 1.0) or b""
        )
        assert frame.address == 2
    with pytest.raises(ValueError, match="board number"):
        A5Responder(model, board=17)


def test_other_requests_go_unanswered() -> None:
    responder = A5Responder(BatteryModel())
    request = build_a5_request(A5_SOC)
    for unanswered in (
        build_a5_request(0x99),
        request[:-1] + bytes((request[-1] ^ 1,)),
        build_a5_answer(A5_SOC, READ_FILL),  # from a board, not a host
        request[:12],
        build_read_request(STATUS_BLOCK),
    ):
        assert responder.answer(unanswered, 1.0) is None, unanswered.hex()


def test_the_boards_of_a_bus_answer_their_own_address_with_their_own_pack() -> None:
    bus = A5Bus(BatteryModel(), 3)
    socs = []
    for board in (1, 2, 3):
        [frame] = A5Assembler().feed(bus(build_a5_request(A5_SOC, 0x40 + board - 1)) or b"")
        assert frame.address == board
        socs.append(decode_a5_pack(frame).soc)
    assert socs[0] - socs[1] == pytest.approx(10.0, abs=0.5)
    assert socs[1] - socs[2] == pytest.approx(10.0, abs=0.5)
    assert bus(build_a5_request(A5_SOC, 0x80)) is None  # an RS485 port: no 0x80
    assert bus(build_a5_request(A5_SOC, 0x43)) is None  # no fourth board


def test_rated_values() -> None:
    responder = A5Responder(BatteryModel(capacity_ah=280.0))
    [frame] = A5Assembler().feed(responder.answer(build_a5_request(A5_RATED_VALUES), 1.0) or b"")
    assert int.from_bytes(frame.data[:4], "big") == 280_000  # mAh
    assert int.from_bytes(frame.data[4:], "big") == 3200  # mV
    assert decode_a5_rated(frame).rated_capacity == 280.0


def test_faults_spoil_a5_answers() -> None:
    answer = A5Responder(BatteryModel(cells=16)).answer(build_a5_request(A5_CELL_VOLTAGES), 1.0)
    assert answer is not None and len(answer) == 6 * 13
    faults = FaultInjector()
    faults.arm(Fault.CORRUPT_CRC)
    faults.arm(Fault.TRUNCATED)
    assembler = A5Assembler()
    corrupt = asyncio.run(faults.apply(answer))
    assert corrupt is not None and len(corrupt) == len(answer)
    assert [frame.number for frame in assembler.feed(corrupt)] == [1, 2, 3, 4, 5]
    assert assembler.rejected == {RejectReason.BAD_CRC: 1}
    truncated = asyncio.run(faults.apply(answer))
    assert truncated is not None
    assert [frame.number for frame in A5Assembler().feed(truncated)] == [1, 2, 3]


def test_write_faults_spoil_writes_only() -> None:
    """The write faults every presentation applies; a restart answered is told."""
    responder = ModelResponder(BatteryModel())
    faults = FaultInjector()
    switch = WRITABLE["charge_switch"].address
    write, restart = build_write_request(switch, 0), build_write_request(RESTART, 1)
    assert faults.answer(restart, responder) == (restart, True)
    faults.arm(Fault.WRONG_ECHO)
    assert faults.answer(write, responder) == (build_write_request(switch, 1), False)
    faults.arm(Fault.IGNORED_WRITE)
    assert faults.answer(restart, responder) == (restart, False)
    faults.arm(Fault.LOST_ACK)  # restarted, its echo lost
    assert faults.answer(restart, responder) == (None, True)
    faults.arm(Fault.NO_ACK)
    a5 = A5Responder(BatteryModel())
    answer, restarts = faults.answer(build_a5_request(A5_SOC), a5)  # not a write: answered
    assert answer and not restarts
    assert faults.answer(write, responder) == (None, False)


def test_an_a5_switch_acts_on_the_model_and_is_answered_as_real_packs_answer_it() -> None:
    model = BatteryModel(load_amps=20.0, period_s=600.0)
    board = A5Responder(model, board=3)  # answers 0x42 and 0x80
    mos = build_a5_request(A5_MOS, 0x42)
    # After a read, the transmit buffer holds 0x93's bytes: the answer's tail is theirs.
    held = A5Assembler().feed(board.answer(mos, 100.0) or b"")[0].data
    answer = board.answer(build_a5_switch("discharge_switch", 0, 0x42), 100.0)
    [frame] = A5Assembler().feed(answer or b"")
    assert (frame.address, frame.command, frame.data) == (3, 0xD9, b"\0" + held[1:])
    assert not model.discharge_mos_on
    assert model.current(150.0) == 0.0  # the load discharges then: the MOSFET stops it
    [after] = A5Assembler().feed(board.answer(mos, 150.0) or b"")
    assert not decode_a5_mos(after).discharge_mos and decode_a5_mos(after).charge_mos
    assert board.answer(build_a5_switch("discharge_switch", 1, 0x80), 451.0)
    assert model.discharge_mos_on
    # Another board's address, or a state that is neither on nor off: no answer, no change.
    assert board.answer(build_a5_switch("charge_switch", 0, 0x40), 452.0) is None
    assert board.answer(build_a5_request(0xDA, 0x42, bytes((2,)) + bytes(7)), 452.0) is None
    assert model.charge_mos_on


@pytest.mark.parametrize(
    ("fault", "answered_state", "held"),
    [(None, 0, False), (Fault.NO_ACK, None, True), (Fault.LOST_ACK, None, False),
     (Fault.WRONG_ECHO, 1, False), (Fault.IGNORED_WRITE, 0, True)],
)  # fmt: skip
def test_write_faults_spoil_an_a5_switch(
    fault: Fault | None, answered_state: int | None, held: bool
) -> None:
    model = BatteryModel()
    faults = FaultInjector()
    if fault is not None:
        faults.arm(fault)
    answer, restarts = faults.answer(build_a5_switch("charge_switch", 0, 0x40), A5Responder(model))
    assert not restarts and model.charge_mos_on is held
    frames = A5Assembler().feed(answer) if isinstance(answer, bytes) else []
    assert [(frame.address, frame.command, frame.data[0]) for frame in frames] == (
        [] if answered_state is None else [(1, 0xDA, answered_state)]
    )
    assert sum(faults.armed.values()) == 0  # used up by the write


def test_a5_requests_are_found_in_a_noisy_stream() -> None:
    stream = RequestStream(a5_request_length)
    first, second = build_a5_request(A5_STATUS, 0x80), build_a5_request(A5_SOC)
    assert stream.feed(b"\x00\xa5\x40" + first[:5]) == []
    assert stream.feed(first[5:] + b"\n" + second[:1]) == [first]  # mpp-solar's newline
    assert stream.feed(second[1:]) == [second]
    answer = A5Responder(BatteryModel()).answer(second, 1.0) or b""
    assert stream.feed(answer + first) == [first]  # an answer is no request


def test_modbus_requests_are_found_in_a_noisy_stream() -> None:
    stream = RequestStream(modbus_request_length(D2))
    read = build_read_request(STATUS_BLOCK)
    write = build_write_multiple_request(0x10, [1, 2, 3])
    assert stream.feed(b"\xd2\xd2\x03" + read + write[:7]) == [read]
    assert stream.feed(write[7:] + build_read_request(X81_PACK_BLOCK, X81)) == [write]
    x81 = RequestStream(modbus_request_length(X81))
    assert x81.feed(b"\x51" + build_read_request(X81_PACK_BLOCK, X81)) == [
        build_read_request(X81_PACK_BLOCK, X81)
    ]


# ---- daly-bms-sim on Bluetooth


async def read_through_the_client(name: str) -> BmsSample:
    async with client_of(name, request_timeout=0.5, request_retries=0) as client:
        sample = await client.read_sample()
        assert client.protocol == "a5" and client.a5_host == 0x80
        return sample


def test_a5_over_ble_notifies_pieces_that_split_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"{NAME_PREFIX}A5"
    options = ("--protocol", "a5", "--cells", "16", "--mtu", "203", "--a5-all-frames")

    async def notified(request: bytes, size: int) -> list[bytes]:
        transport = BleakTransport(device_name=name, adapter="hci0", connect_timeout=15.0)
        pieces: list[bytes] = []
        complete = asyncio.Event()

        def on_notify(data: bytes) -> None:
            pieces.append(data)
            if sum(map(len, pieces)) >= size:
                complete.set()

        transport.set_callbacks(on_notify, lambda: None)
        await transport.connect()
        try:
            await transport.write(request)
            await asyncio.wait_for(complete.wait(), 10)
        finally:
            await transport.disconnect()
        return pieces

    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(name, tmp_path, "hci1", *options):
            pieces = asyncio.run(notified(build_a5_request(A5_CELL_VOLTAGES, 0x80), 16 * 13))
            sample = asyncio.run(read_through_the_client(name))
    # The client finds A5 once D2 and 0x81 went unanswered, and reads it whole over Bluetooth.
    assert len(sample.status.cell_voltages) == 16
    assert 0 < sample.status.soc <= 100
    # 16 frames in 200 + 8 bytes: the last frame split, as the HLK-B20 module sent them.
    assert [len(piece) for piece in pieces] == [200, 8]
    frames = A5Assembler().feed(b"".join(pieces))
    assert [frame.number for frame in frames] == list(range(1, 17))
    assert all(3.0 < voltage < 3.6 for voltage in decode_a5_cell_voltages(frames, 16))


# ---- daly-bms-sim on a pseudo-terminal

PORT_TIMEOUT_S = 0.2
SIM_MODULE = (sys.executable, "-m", "daly_bms_ros.sim.main")


@contextmanager
def pty_sim(tmp_path: Path, *arguments: str) -> Iterator[tuple[SimProcess, str]]:
    """Run ``daly-bms-sim`` on a pty with a control socket; yield it and its port's path.

    ``--serial`` or ``--can`` among ``arguments`` picks what the pty presents.
    """
    control = tmp_path / "sim.sock"
    process = subprocess.Popen(
        [*SIM_MODULE, "--control", str(control), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("serial port /dev/"), line + process.stdout.read()
        yield SimProcess(process, control), line.split(" ", 2)[2].strip()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Traceback" not in output


def serial_sim(tmp_path: Path, *arguments: str) -> AbstractContextManager[tuple[SimProcess, str]]:
    """Run ``daly-bms-sim --serial`` (see ``pty_sim``)."""
    return pty_sim(tmp_path, "--serial", *arguments)


def read_a5(port: serial.Serial, assembler: A5Assembler, count: int) -> list[A5Frame]:
    """Read until ``count`` answer frames came, or a second passed without them."""
    frames: list[A5Frame] = []
    deadline = time.monotonic() + 1.0
    while len(frames) < count and time.monotonic() < deadline:
        frames += assembler.feed(port.read(max(port.in_waiting, 1)))
    return frames


def read_sample(port: serial.Serial, assembler: A5Assembler) -> BmsStatus:
    """Poll a whole sample as a driver does: the counts first, then as many frames as they say."""
    answers: dict[int, list[A5Frame]] = {}
    cells = sensors = 0
    for command in A5_SAMPLE_COMMANDS:
        port.write(build_a5_request(command))
        answers[command] = read_a5(port, assembler, frames_expected(command, cells, sensors))
        if command == A5_STATUS:
            cells, sensors = answers[command][0].data[:2]
    return decode_a5_status(answers)


def test_serial_port_serves_a5_and_takes_control(tmp_path: Path) -> None:
    with serial_sim(tmp_path, "--cells", "13", "--sensors", "3") as (sim, path):
        port = serial.Serial(path, 9600, timeout=PORT_TIMEOUT_S)
        assembler = A5Assembler()
        status = read_sample(port, assembler)
        assert len(status.cell_voltages) == 13
        assert all(3.0 < voltage < 3.6 for voltage in status.cell_voltages)
        assert len(status.temperatures) == 3
        assert 0 < status.soc <= 100 and status.cycles == BatteryModel.cycles
        assert not math.isnan(status.max_temperature)

        assert sim.control({"fault": "corrupt_crc"}) == {"armed": {"corrupt_crc": 1}}
        port.write(build_a5_request(A5_SOC))
        assert read_a5(port, assembler, 1) == []
        assert assembler.rejected[RejectReason.BAD_CRC] == 1

        assert sim.control({"link": "sleep"}) == {"link": "sleep"}
        port.write(build_a5_request(A5_SOC))
        assert port.read(13) == b""
        assert sim.control({"link": "wake"}) == {"link": "wake"}
        port.write(build_a5_request(A5_SOC))
        assert len(read_a5(port, assembler, 1)) == 1

        assert sim.control({"link": "disconnect"}) == {"link": "disconnect"}
        with pytest.raises(serial.SerialException, match="no data"):  # unplugged: end of file
            port.read(1)
        with pytest.raises(serial.SerialException, match="Input/output error"):
            port.write(build_a5_request(A5_SOC))
        port.close()
        assert sim.process.stdout is not None
        line = sim.process.stdout.readline()
        assert line.startswith("serial port /dev/"), line
        with serial.Serial(line.split(" ", 2)[2].strip(), 9600, timeout=PORT_TIMEOUT_S) as again:
            assert len(read_sample(again, A5Assembler()).cell_voltages) == 13


def test_serial_port_only_for_0x40_as_rs485(tmp_path: Path) -> None:
    with (
        serial_sim(tmp_path, "--a5-hosts", "0x40", "--rs485-echo") as (_sim, path),
        serial.Serial(path, 9600, timeout=PORT_TIMEOUT_S) as port,
    ):
        assembler = A5Assembler()
        port.write(build_a5_request(A5_SOC, 0x80))
        assert read_a5(port, assembler, 1) == []
        port.write(build_a5_request(A5_SOC, 0x40))
        assert [frame.command for frame in read_a5(port, assembler, 1)] == [A5_SOC]
        assert assembler.echoes == 2  # both requests came back first


def test_serial_port_serves_x81_with_an_rs485_echo(tmp_path: Path) -> None:
    with (
        serial_sim(tmp_path, "--protocol", "x81", "--cells", "20", "--rs485-echo") as (_sim, path),
        serial.Serial(path, 9600, timeout=PORT_TIMEOUT_S) as port,
    ):
        frames: list[Frame] = []
        for block in (X81_PACK_BLOCK, X81_STATE_BLOCK):
            request = build_read_request(block, X81)
            port.write(b"\x00" + request)  # line noise first
            assert port.read(len(request) + 1) == b"\x00" + request  # the adapter's echo
            answer = port.read(5 + block.byte_count)
            frames += FrameAssembler().feed(answer)
        assert [frame.address for frame in frames] == [X81.response_address] * 2
        assert len(decode_x81_status(*frames).cell_voltages) == 20


def test_serial_options_that_do_not_go_together_are_refused() -> None:
    for arguments in (
        ["--rs485-echo"],
        ["--serial", "--protocol", "d2", "--a5-board", "2"],
        ["--serial", "--a5-board", "17"],
        ["--serial", "--a5-hosts", "0x10"],
        ["--serial", "--replay", "capture.jsonl"],
        ["--serial", "--cells", "49"],
        ["--a5-bus", "2", "--protocol", "a5"],  # a bus is wired
        ["--serial", "--a5-bus", "2", "--a5-board", "2"],
        ["--serial", "--a5-bus", "17"],
        ["--serial", "--a5-bus", "1"],
    ):
        result = subprocess.run(
            [*SIM_MODULE, *arguments],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, (arguments, result.stderr)
        assert "Traceback" not in result.stderr
