"""A BMS on a CAN bus: Daly's identifiers, the python-can transport, the node, fleet and CLI.

The protocol and transport tests run python-can's in-process virtual bus; the node, fleet and CLI
tests read ``daly-bms-sim --can`` in another process through python-can's real slcan interface
on a pseudo-terminal, with other devices' frames on the bus and faults armed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import can
import pytest
from bluez_mock import SimProcess
from installed import program
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_spin import spin_in_background
from test_e2e_faults import FAST_LINK, listen, spinning, wait_for_new_samples, wait_until
from test_fleet import Listener, fleet_context, parameters_file
from test_sim_a5 import SIM_MODULE, pty_sim

from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.link.can_bus import CanBuses
from daly_bms_ros.link.can_transport import CanTransport
from daly_bms_ros.link.client import DalyClient
from daly_bms_ros.node.fleet import DalyBmsFleet
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.node.parameters import InvalidSettingError, validate
from daly_bms_ros.protocol.a5 import A5Frame, decode_a5_cell_voltages, decode_a5_mos
from daly_bms_ros.protocol.can_id import (
    a5_answer,
    a5_request,
    answer_id,
    can_answers,
    can_request,
    parse_id,
    request_id,
)
from daly_bms_ros.sim.a5_responder import A5Bus
from daly_bms_ros.sim.battery import BatteryModel

HERE = Path(__file__).parent
FRAMES = json.loads((HERE / "data" / "daly_can_frames.json").read_text())
CLI = program("daly-bms")


def test_identifiers_are_daly_s_layout() -> None:
    # Daly CAN V1.0 section 2.3 and mr-manuel/venus-os_dbus-serialbattery bms/daly_can.py:
    # 0x90 to BMS 0x01 from 0x40 is 0x18900140, its answer 0x18904001.
    assert request_id(0x90, 1) == 0x18900140
    assert answer_id(0x90, 1) == 0x18904001
    assert answer_id(0x95, 3) == 0x18954003
    assert parse_id(0x18904001) == (0x18, 0x90, 0x40, 0x01)
    request = can_request(bytes.fromhex("a54090080000000000000000 7d".replace(" ", "")), 2)
    assert request == (0x18900240, bytes(8))
    assert can_request(bytes.fromhex("d2030000003ed7b9"), 1) is None  # D2 has no CAN form
    carried = a5_request(0x18930240, bytes(8))
    assert carried is not None and carried[1] == 0x41  # board 2's A5 host address


@pytest.mark.parametrize("frame", FRAMES["answers"], ids=lambda frame: frame["can_id"])
def test_real_frames_decode_as_their_sources_state(frame: dict[str, object]) -> None:
    a5 = bytes.fromhex(str(frame["a5"]))
    ((identifier, data),) = can_answers(a5)
    assert identifier == int(str(frame["can_id"]), 16)
    assert a5_answer(identifier, data) == a5  # back to the A5 frame, checksum and all
    decoded = A5Frame(a5[1], a5[2], a5[4:12])
    states = frame["states"]
    assert isinstance(states, dict)
    if decoded.command == 0x93:
        mos = decode_a5_mos(decoded, current=-10.0)
        assert (mos.charge_state, mos.charge_mos, mos.discharge_mos) == (
            states["state"] + "",
            states["charge_mos"],
            states["discharge_mos"],
        )
        assert data[3] == states["heartbeat"]
    else:
        assert decoded.number == states["frame"]
        voltages = decode_a5_cell_voltages([decoded], 3)
        assert [round(v * 1000) for v in voltages] == states["cell_millivolts"]


def test_other_traffic_is_no_answer() -> None:
    for foreign in FRAMES["other_traffic"]:
        identifier, data = int(foreign["can_id"], 16), bytes.fromhex(foreign["data"])
        assert a5_answer(identifier, data, foreign["extended"]) is None
    assert a5_answer(0x181, bytes(8), extended=False) is None  # a motor controller's
    assert a5_answer(0x18900120, bytes(8)) is None  # another host's request
    assert a5_answer(0x18904001, bytes(4)) is None  # not 8 bytes
    assert a5_answer(0x18904080, bytes(8)) is None  # to the host from a host


@contextmanager
def virtual_boards(channel: str, boards: int) -> Iterator[threading.Event]:
    """Boards 1..N answering on python-can's virtual bus, beside a motor controller's frames."""
    responder = A5Bus(BatteryModel(cells=8, sensors=2), boards)
    bus = can.Bus(interface="virtual", channel=channel)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            message = bus.recv(0.05)
            if message is None:
                continue
            request = a5_request(message.arbitration_id, bytes(message.data))
            answer = responder(request) if request else None
            if answer is None:
                continue
            bus.send(can.Message(arbitration_id=0x181, is_extended_id=False, data=b"\1\2"))
            for identifier, data in can_answers(answer):
                bus.send(can.Message(arbitration_id=identifier, is_extended_id=True, data=data))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join()
        bus.shutdown()


def test_two_packs_share_one_bus_and_a_bus_off_ends_both_links() -> None:
    async def scenario() -> None:
        buses = CanBuses()
        lost: list[int] = []
        both_lost = asyncio.Event()

        def lose(address: int) -> None:
            lost.append(address)
            if len(lost) == 2:
                both_lost.set()

        clients = []
        for address in (1, 2):
            transport = CanTransport("virtual", "can-test", 250_000, address, buses)
            client = DalyClient(transport, 1.0, protocol="a5", board=address)
            transport.set_callbacks(client.on_notify, lambda address=address: lose(address))
            await transport.connect()
            client.attach()
            clients.append(client)
        first, second = await asyncio.gather(*(client.read_sample() for client in clients))
        assert first.status.soc - second.status.soc == pytest.approx(10.0, abs=1.0)
        channel = buses.channel("virtual", "can-test", 250_000)
        assert channel.ignored > 0  # the motor controller's frames
        # A passing error (the controller's warning, Linux's CAN_ERR_CTRL 0x04) is counted and
        # the links go on; bus-off (CAN_ERR_BUSOFF 0x40) ends both.
        injector = can.Bus(interface="virtual", channel="can-test")
        injector.send(can.Message(arbitration_id=0x04, is_error_frame=True, dlc=8))
        await asyncio.gather(*(client.read_sample() for client in clients))
        assert channel.bus_errors == 1 and not lost
        injector.send(can.Message(arbitration_id=0x40, is_error_frame=True, dlc=8))
        injector.shutdown()
        await asyncio.wait_for(both_lost.wait(), 10)
        assert sorted(lost) == [1, 2]
        for client in clients:
            await client.transport.disconnect()

    with virtual_boards("can-test", 2):
        asyncio.run(scenario())


def test_bad_can_parameters_are_refused() -> None:
    cases = [
        ({"transport": "can", "protocol": "d2"}, "speaks a5"),
        ({"transport": "can", "can_bitrate": 12345}, "not a CAN bitrate"),
        ({"transport": "can", "can_channel": " "}, "needs can_interface and can_channel"),
        ({"transport": "can", "serial_port": "/dev/ttyUSB0"}, "leave serial_port"),
        ({"transport": "serial", "serial_port": "/x", "can_channel": "can1"}, "transport to can"),
    ]
    for values, message in cases:
        with pytest.raises(InvalidSettingError, match=message):
            validate(values)
    assert validate({"transport": "can", "board": 3}).board == 3


def daly_bms(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does."""
    assert CLI
    return subprocess.run(
        [CLI, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def can_sim(tmp_path: Path, *arguments: str) -> AbstractContextManager[tuple[SimProcess, str]]:
    """Run ``daly-bms-sim --can`` with other traffic on the bus (see ``pty_sim``)."""
    return pty_sim(tmp_path, "--can", "--other-traffic", *arguments)


def test_the_shell_connects_to_the_board_on_the_bus_it_is_given(tmp_path: Path) -> None:
    """No Bluetooth scan, no Bluetooth BMS: the board the options name, on its bus."""
    assert CLI
    with can_sim(tmp_path, "--boards", "2") as (_sim, port):
        bus = ("--transport", "can", "--can-interface", "slcan", "--can-channel", port)
        result = subprocess.run(
            [CLI, "shell", *bus, "--board", "2", "--request-timeout", "1"],
            input="json\nservices\nexit\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"},
        )
    assert result.returncode == 0, result.stderr
    assert f"target: board 2 on the CAN bus slcan:{port}" in result.stdout, result.stdout
    assert f"connected to slcan:{port} BMS 0x02" in result.stdout
    assert "a wire (can), no Bluetooth services; protocol a5" in result.stdout
    assert "no Daly BMS seen" not in result.stdout and "error" not in result.stdout


def test_the_cli_reads_and_scans_the_bus(tmp_path: Path) -> None:
    with can_sim(tmp_path, "--boards", "2") as (sim, port):
        bus = ("--transport", "can", "--can-interface", "slcan", "--can-channel", port)
        read = daly_bms("read", "--json", *bus, "--board", "2", "--request-timeout", "1")
        assert read.returncode == 0, read.stderr
        record = json.loads(read.stdout)
        assert record["device"] == f"slcan:{port} BMS 0x02 (250000 bit/s)"
        assert len(record["cell_voltages"]) == 16
        # A frame spoiled on the wire never arrives: the request is asked again.
        sim.control({"fault": "corrupt_crc", "count": 1})
        again = daly_bms("read", "--json", *bus, "--request-timeout", "1")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["soc"] > record["soc"]  # board 1 starts 10 points up
        info = daly_bms("info", "--json", *bus, "--board", "2", "--request-timeout", "1")
        assert info.returncode == 0, info.stderr
        identity = json.loads(info.stdout)
        assert (identity["can_bus"], identity["serial_port"]) == (f"slcan:{port} board 2", None)
        assert (identity["protocol"], identity["cell_count"]) == ("a5", 16)
        scan = daly_bms("scan", "--can", "--json", *bus[2:], "--request-timeout", "1")
        assert scan.returncode == 0, scan.stderr
        found = [json.loads(line) for line in scan.stdout.splitlines()]
        assert [answer["bms_address"] for answer in found] == [1, 2]
    clash = daly_bms("read", "--can-channel", "can1")
    assert clash.returncode == 2
    assert "set --transport to can" in clash.stderr
    wrong = daly_bms("read", "--transport", "can", "--protocol", "d2")
    assert wrong.returncode == 2
    assert "speaks a5 (or auto)" in wrong.stderr


def test_the_node_reads_the_bus_through_faults_bus_off_and_an_unplug(
    tmp_path: Path, ros_context: Context
) -> None:
    link = tmp_path / "ttyCAN"  # a stable name for the adapter, as /dev/serial/by-id/ gives
    with can_sim(tmp_path, "--cells", "8") as (sim, port):
        os.symlink(port, link)
        node = DalyBmsNode(
            context=ros_context,
            namespace="can",
            parameter_overrides=[
                *FAST_LINK,
                Parameter("request_timeout", value=1.0),
                Parameter("transport", value="can"),
                Parameter("can_interface", value="slcan"),
                Parameter("can_channel", value=str(link)),
            ],
        )
        listener = Node("listener", context=ros_context)
        received = listen(listener, "can")
        with spinning(ros_context, [node], listener):
            wait_for_new_samples(received, 3, "samples over the CAN bus")
            with received.lock:
                assert len(received.batteries[-1].cell_voltage) == 8
            for fault in ("corrupt_crc", "no_answer", "late"):
                timeouts = int(received.diagnostic_values().get("timeouts", "0"))
                sim.control({"fault": fault, "count": 1})
                wait_until(
                    lambda timeouts=timeouts: int(received.diagnostic_values()["timeouts"])
                    > timeouts,
                    f"the {fault} answer waited out",
                )
                wait_for_new_samples(received, 3, f"samples after the {fault} answer")
            # Bus-off behind an slcan adapter: nothing is heard, so polls fail until it recovers.
            sim.control({"link": "bus_off"})
            wait_until(
                lambda: int(received.diagnostic_values().get("consecutive_failures", "0")) >= 1,
                "the silent bus seen as failing polls",
            )
            sim.control({"link": "recover"})
            wait_for_new_samples(received, 3, "samples after the bus recovered")
            sim.control({"link": "disconnect"})
            assert sim.process.stdout is not None
            match = re.search(r"serial port (\S+)", sim.process.stdout.readline())
            assert match
            if match.group(1) != port:
                os.unlink(link)
                os.symlink(match.group(1), link)
            wait_until(
                lambda: int(received.diagnostic_values().get("reconnects", "0")) >= 1,
                "the link rebuilt",
            )
            wait_for_new_samples(received, 3, "samples after the adapter came back")


def test_two_boards_on_one_bus_in_the_fleet(tmp_path: Path) -> None:
    with can_sim(tmp_path, "--boards", "2") as (_sim, port):
        bus = {"transport": "can", "can_interface": "slcan", "can_channel": port}
        packs = {"/c1": bus, "/c2": {**bus, "board": 2}}
        parameters = parameters_file(tmp_path / "can.yaml", packs, batteries=list(packs))
        with fleet_context(parameters) as context:
            fleet = DalyBmsFleet(context=context)
            listener = Listener(context, list(packs))
            stop = spin_in_background(context, fleet, *fleet.children, listener.node)
            try:
                for topic in packs:
                    wait_until(lambda topic=topic: listener.count(topic) >= 3, f"{topic} states")
                c1, c2 = listener.latest("/c1"), listener.latest("/c2")
                assert c1.percentage - c2.percentage == pytest.approx(0.1, abs=0.02)
                assert (c1.serial_number, c2.serial_number) == (
                    f"slcan:{port}",
                    f"slcan:{port} board 2",
                )
            finally:
                stop()
                fleet.close()
        mixed = {"/c1": bus, "/c2": {**bus, "board": 2, "can_bitrate": 500000}}
        with (
            fleet_context(
                parameters_file(tmp_path / "mixed.yaml", mixed, batteries=list(mixed))
            ) as context,
            pytest.raises(InvalidSettingError, match="one bus runs at one bitrate"),
        ):
            DalyBmsFleet(context=context)


def test_a_capture_of_the_bus_holds_its_frames_decodes_and_replays(tmp_path: Path) -> None:
    capture = tmp_path / "can.jsonl"
    with can_sim(tmp_path, "--cells", "8") as (_sim, port):
        bus = ("--transport", "can", "--can-interface", "slcan", "--can-channel", port)
        recorded = daly_bms("record", *bus, "--count", "1", str(capture))
        assert recorded.returncode == 0, recorded.stderr
        original = json.loads(recorded.stdout.splitlines()[-1])
    events = [json.loads(line) for line in capture.read_text().splitlines()[1:]]
    (connection,) = [event for event in events if event["type"] == "connection"]
    assert connection["device"]["transport"] == "can"
    first_request = next(event for event in events if event["type"] == "request")
    assert first_request["can"] == [["18900140", "aa" * 8]]
    decoded = daly_bms("decode", "--capture", str(capture))
    assert decoded.returncode == 0, decoded.stderr
    objects = [json.loads(line) for line in decoded.stdout.splitlines()]
    pack = next(o for o in objects if o.get("can_id") == "18904001")
    assert (pack["board"], pack["command"], pack["block"]) == (1, "0x90", "a5_pack")
    assert pack["soc"] == pytest.approx(original["soc"])
    cells = [o for o in objects if o.get("command") == "0x95"]
    assert [o["frame"] for o in cells[:3]] == [1, 2, 3]  # 8 cells: three frames
    # The poll's answers together: one status, as the driver read it.
    (status,) = [o for o in objects if o.get("block") == "a5_status"]
    assert status["cell_voltages"] == original["cell_voltages"]
    # The recorded BMS, played back on a bus, is read as it was.
    with can_sim(tmp_path, "--replay", str(capture), "--loop") as (_sim, port):
        bus = ("--transport", "can", "--can-interface", "slcan", "--can-channel", port)
        replayed = daly_bms("read", "--json", *bus)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["cell_voltages"] == original["cell_voltages"]


@pytest.mark.parametrize(
    "frames", [{"a": 1}, [["18904001"]], [["zz", "00"]], [["18904001", "00" * 9]], [[1, "00"]]]
)
def test_a_capture_with_bad_can_frames_is_refused(tmp_path: Path, frames: object) -> None:
    capture = tmp_path / "bad.jsonl"
    header = {"type": "header", "format": "daly-bms-capture", "version": 1, "t": 0, "wall": 0}
    event = {"type": "notification", "t": 1, "wall": 1, "hex": "", "can": frames}
    capture.write_text(json.dumps(header) + "\n" + json.dumps(event) + "\n")
    result = daly_bms("decode", "--capture", str(capture))
    assert result.returncode == 2, result.stdout
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--can", "--serial"), "not with --serial"),
        (("--can", "--protocol", "d2"), "--protocol a5"),
        (("--boards", "2"), "are for --can"),
        (("--can", "--boards", "17"), "--boards is 1..16"),
        (("--can", "--boards", "2", "--a5-board", "3"), "not with --a5-board"),
    ],
)
def test_the_virtual_bus_refuses_options_that_do_not_go_together(
    arguments: tuple[str, ...], message: str
) -> None:
    result = subprocess.run(
        [*SIM_MODULE, *arguments], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--transport", "can", "--can-bitrate", "12345"), "not a CAN bitrate"),
        (("--transport", "can", "--can-channel", ""), "needs --can-interface and --can-channel"),
        (("--transport", "can", "--serial-port", "/dev/ttyUSB0"), "leave --serial-port"),
        (("--transport", "can", "--board", "17"), "not a board number"),
    ],
)
def test_the_cli_refuses_bad_can_options(arguments: tuple[str, ...], message: str) -> None:
    result = daly_bms("read", *arguments)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bus_that_cannot_be_opened_is_one_line() -> None:
    result = daly_bms(
        "read", "--transport", "can", "--can-interface", "nosuch", "--can-channel", "x"
    )
    assert result.returncode == ExitCode.NO_BLUETOOTH  # no adapter: a bus that cannot be opened
    assert result.stderr.splitlines() == [
        'daly-bms: cannot open nosuch x: Unknown interface type "nosuch"'
    ]


def test_a_channel_that_cannot_be_opened_is_one_line_its_control_characters_escaped() -> None:
    result = daly_bms("read", "--transport", "can", "--can-channel", "\x1b[31mcan9")
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "\x1b" not in result.stderr and "\\x1b[31mcan9" in result.stderr
