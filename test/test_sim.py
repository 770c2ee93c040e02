"""The virtual BMS: its battery model, and `daly-bms-sim` read through the real bleak."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bluez_mock import NAME_PREFIX, bluez_mock
from dbus_fast import Message
from dbus_fast.aio import MessageBus
from installed import program
from source_cli import assert_one_clear_line, daly_bms_sim

from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.link.client import DalyClient
from daly_bms_ros.protocol import (
    STATUS_BLOCK,
    BmsSample,
    FrameAssembler,
    build_read_request,
    build_response,
    decode_status,
    encode_status,
)
from daly_bms_ros.sim.battery import BatteryModel, open_circuit_voltage
from daly_bms_ros.sim.responder import ModelResponder


def test_state_of_charge_integrates_the_current() -> None:
    model = BatteryModel(capacity_ah=50.0, load_amps=30.0, period_s=120.0)
    step = 0.01
    soc = model.initial_soc
    for i in range(6000):  # one minute, rectangle rule
        soc += model.current(i * step) * step / 3600 / model.capacity_ah
    assert model.soc(60.0) == pytest.approx(soc, abs=2e-4)
    assert model.soc(60.0) < model.initial_soc  # the first half-period discharges


def test_status_is_consistent_and_survives_the_wire() -> None:
    model = BatteryModel(cells=24, sensors=4)
    status = model.status(400.0)  # charging part of the profile
    assert status.current > 0
    assert len(status.cell_voltages) == 24
    assert len(status.temperatures) == 4
    assert status.pack_voltage == pytest.approx(sum(status.cell_voltages), abs=0.05)
    assert status.cell_delta == pytest.approx(max(status.cell_voltages) - min(status.cell_voltages))
    [frame] = FrameAssembler().feed(build_response(encode_status(status)))
    assert decode_status(frame) == status


def test_ocv_curve_is_monotonic() -> None:
    values = [open_circuit_voltage(i / 100) for i in range(101)]
    assert values == sorted(values)
    assert values[0] == pytest.approx(2.8)
    assert values[-1] == pytest.approx(3.55)


def test_model_refuses_impossible_packs() -> None:
    with pytest.raises(ValueError, match=r"cells must be 1\.\.32"):
        BatteryModel(cells=33)


def test_responder_answers_known_blocks_only() -> None:
    responder = ModelResponder(BatteryModel(cells=8))
    [frame] = FrameAssembler().feed(responder(build_read_request(STATUS_BLOCK)) or b"")
    assert len(decode_status(frame).cell_voltages) == 8
    assert responder(b"\xd2\x03\x00") is None


SIM = program("daly-bms-sim")


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address


def test_sim_command_is_read_through_bleak(bus: str) -> None:
    assert SIM, "daly-bms-sim is not installed next to the test interpreter"
    name = f"{NAME_PREFIX}CMD"
    transport = BleakTransport(device_name=name, adapter="hci0", connect_timeout=15.0)
    client = DalyClient(transport, request_timeout=1.0, request_retries=1)
    transport.set_callbacks(client.on_notify, lambda: None)
    processes: list[subprocess.Popen[str]] = []

    async def scenario() -> BmsSample:
        await transport.connect()
        client.attach()
        try:
            return await client.read_sample()
        finally:
            await transport.disconnect()

    processes.append(
        subprocess.Popen(
            [SIM, "--name", name, "--cells", "12", "--after-discovery-on", "hci0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
    try:
        sample = asyncio.run(scenario())
    finally:
        for process in processes:
            process.terminate()
    output, _ = processes[0].communicate(timeout=30)
    assert processes[0].returncode == 0, output
    assert f"virtual BMS {name} advertising on hci1" in output
    status = sample.status
    assert len(status.cell_voltages) == 12
    assert all(3.0 < voltage < 3.6 for voltage in status.cell_voltages)
    assert 0 < status.soc <= 100
    assert sample.settings is not None
    assert sample.settings.rated_capacity == pytest.approx(100.0)
    assert not math.isnan(sample.mos_temperature)


def send_control(path: Path, command: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(10)
        connection.connect(str(path))
        connection.sendall(json.dumps(command).encode() + b"\n")
        reply: dict[str, object] = json.loads(connection.makefile().readline())
        return reply


def check_control_socket_refuses_bad_commands(control: Path) -> None:
    """Only its owner may use it; every bad command gets an error reply, nothing crashes."""
    assert stat.S_IMODE(control.stat().st_mode) == 0o600
    for command in (
        {"fault": "melt"},
        {"fault": "late", "count": -3},
        {"fault": "late", "count": "2"},
        {"link": "explode"},
        ["fault"],
    ):
        assert "error" in send_control(control, command), command  # type: ignore[arg-type]
    assert send_control(control, {"fault": "late", "count": 4}) == {"armed": {"late": 4}}
    assert send_control(control, {"disarm": "late"}) == {"armed": {}}
    send_control(control, {"fault": "no_answer", "count": 2})
    assert send_control(control, {"disarm": "all"}) == {"armed": {}}
    # Nested too deep for the JSON parser; longer than a control line may be.
    for line in (b"[" * 50000 + b"\n", b'{"fault": "' + b"x" * 200000 + b'"}\n'):
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(10)
            connection.connect(str(control))
            with contextlib.suppress(BrokenPipeError):  # closed after its error reply
                connection.sendall(line)
            assert "error" in json.loads(connection.makefile().readline())
    assert send_control(control, {"disarm": "all"}) == {"armed": {}}  # still serving


def test_a_control_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    assert SIM
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    result = subprocess.run(
        [SIM, "--control", str(taken)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "exists and is not a socket" in result.stderr
    assert taken.read_text() == "keep me"


def ble_client(name: str, request_retries: int) -> tuple[BleakTransport, DalyClient]:
    """A client of the BMS named ``name``, searched on hci0."""
    transport = BleakTransport(device_name=name, adapter="hci0", connect_timeout=15.0)
    client = DalyClient(transport, request_timeout=0.5, request_retries=request_retries)
    transport.set_callbacks(client.on_notify, lambda: None)
    return transport, client


@contextlib.contextmanager
def controlled_sim(name: str, control: Path) -> Iterator[None]:
    """`daly-bms-sim` with a control socket on hci1 while the block runs; it must end cleanly."""
    assert SIM, "daly-bms-sim is not installed next to the test interpreter"
    process = subprocess.Popen(
        [SIM, "--name", name, "--after-discovery-on", "hci0", "--control", str(control)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Traceback" not in output


def test_injected_faults_are_rejected_and_survived(bus: str, tmp_path: Path) -> None:
    name = f"{NAME_PREFIX}FLT"
    control = tmp_path / "control.sock"
    transport, client = ble_client(name, request_retries=3)

    async def scenario() -> list[BmsSample]:
        await transport.connect()
        client.attach()
        try:
            samples = [await client.read_sample()]
            for fault in ("corrupt_crc", "truncated", "no_answer", "duplicate", "late"):
                reply = send_control(control, {"fault": fault})
                assert reply == {"armed": {fault: 1}}
                samples.append(await client.read_sample())
            return samples
        finally:
            await transport.disconnect()

    with controlled_sim(name, control):
        samples = asyncio.run(scenario())
        check_control_socket_refuses_bad_commands(control)
    assert not control.exists()  # removed on exit
    assert len(samples) == 6
    assert all(len(sample.status.cell_voltages) == 16 for sample in samples)
    rejected = {reason.value: count for reason, count in client.rejected.items()}
    assert rejected["bad_crc"] == 1
    # The truncated answer waits for bytes that never come until the request times out.
    assert rejected["timeout"] >= 1
    assert client.timeouts >= 3  # the truncated, the unanswered and the late answer


def test_an_adapter_that_does_not_exist_is_one_clear_line(bus: str) -> None:
    assert SIM
    result = subprocess.run(
        [SIM, "--adapter", "hci9"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "BlueZ refused" in result.stderr and "hci9" in result.stderr
    assert "Traceback" not in result.stderr


async def call_bluez(bus_address: str, path: str, interface: str, member: str) -> Message:
    """Call a method without arguments of a BlueZ object; its reply (an error one too)."""
    bus = await MessageBus(bus_address=bus_address).connect()
    try:
        reply = await bus.call(
            Message(destination="org.bluez", path=path, interface=interface, member=member)
        )
        assert reply is not None
        return reply
    finally:
        bus.disconnect()


async def gatt_paths(bus_address: str) -> set[str]:
    """The object paths of the GATT characteristics the central's adapter (hci0) sees."""
    reply = await call_bluez(
        bus_address, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"
    )
    return {
        path
        for path, interfaces in reply.body[0].items()
        if path.startswith("/org/bluez/hci0/") and "org.bluez.GattCharacteristic1" in interfaces
    }


def test_a_sleeping_bms_drops_its_link_and_wakes_with_the_same_gatt_table(
    bus: str, tmp_path: Path
) -> None:
    """Asleep it drops its link and takes no other; awake its handles are those it had before.

    A real module's GATT table is fixed in its firmware: a central finds the same object paths
    after each wake (new ones at every wake would grow the central's caches of paths).
    """
    name = f"{NAME_PREFIX}SLP"
    control = tmp_path / "control.sock"
    transport, client = ble_client(name, request_retries=1)

    async def scenario() -> tuple[set[str], set[str], BmsSample]:
        await transport.connect()
        client.attach()
        await client.read_sample()
        before = await gatt_paths(bus)
        device = next(iter(before)).split("/service")[0]
        await asyncio.to_thread(send_control, control, {"link": "sleep"})
        for _ in range(100):
            if not transport.is_connected:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the link did not drop")
        await transport.disconnect()
        # Not advertising, it cannot be connected to, even by a central that knows it (the
        # device's own object, without a search).
        refused = await call_bluez(bus, device, "org.bluez.Device1", "Connect")
        assert refused.error_name == "org.bluez.Error.Failed"
        await asyncio.to_thread(send_control, control, {"link": "wake"})
        await transport.connect()
        client.attach()
        try:
            sample = await client.read_sample()
            return before, await gatt_paths(bus), sample
        finally:
            await transport.disconnect()

    with controlled_sim(name, control):
        before, after, sample = asyncio.run(scenario())
    assert before, "no GATT characteristics seen"
    assert after == before
    assert len(sample.status.cell_voltages) == 16


@pytest.mark.parametrize(
    "name", [os.fsdecode(b"DL-\xff"), "DL-\x1b[2J", "DL-\u202eMIS", "", "DL-" + "é" * 14]
)
def test_a_name_that_cannot_be_advertised_is_one_clear_line(name: str) -> None:
    """Bytes that are not UTF-8, control characters, nothing, more than an advertisement holds."""
    result = daly_bms_sim("--name", name, "--adapter", "hci-none")
    assert_one_clear_line(result, 2, "argument --name: ")
    no_bus = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"}
    taken = daly_bms_sim("--name", "DL-Bätterie 7", "--adapter", "hci-none", env=no_bus)
    assert_one_clear_line(taken, 1, "BlueZ not reachable")  # the name passed
