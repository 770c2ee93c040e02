"""A wired BMS: the CLI and the node read the virtual BMS over a real pseudo-terminal (pyserial).

The virtual BMS (``daly-bms-sim --serial``) answers A5 or the 0x81 Modbus variant on a pty;
the same client and supervisor as over Bluetooth read it, faults and an unplugged adapter
included. The node's port is a symbolic link, as /dev/serial/by-id/ gives a real adapter: the
link is pointed at the new pty when the adapter is "plugged in" again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from bluez_mock import SimProcess
from installed import program
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from test_e2e_faults import FAST_LINK, listen, spinning, wait_for_new_samples, wait_until
from test_sim_a5 import serial_sim

from daly_bms_ros.link.client import DalyClient, RequestTimeoutError
from daly_bms_ros.link.serial_transport import SerialTransport
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.protocol import BmsSample

CLI = program("daly-bms")


def daly_bms(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does."""
    assert CLI
    return subprocess.run(
        [CLI, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def next_port(sim: SimProcess) -> str:
    """Read the next "serial port" line the virtual BMS prints (a new pty after an unplug)."""
    assert sim.process.stdout is not None
    line = sim.process.stdout.readline()
    match = re.search(r"serial port (\S+)", line)
    assert match, line
    return match.group(1)


@pytest.mark.parametrize("protocol", ["a5", "x81", "d2"])
def test_the_cli_reads_a_wired_bms(tmp_path: Path, protocol: str) -> None:
    with serial_sim(tmp_path, "--protocol", protocol, "--cells", "8") as (_sim, port):
        result = daly_bms("read", "--json", "--serial-port", port, "--request-timeout", "0.5")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["device"] == f"{port} (9600 baud)"
    assert len(record["cell_voltages"]) == 8
    assert 0 < record["soc"] <= 100
    assert record["pack_voltage"] == pytest.approx(sum(record["cell_voltages"]), abs=0.1)


def test_the_cli_says_when_the_port_is_missing_or_the_options_clash() -> None:
    missing = daly_bms("read", "--serial-port", "/dev/no-such-adapter")
    assert missing.returncode == 3
    assert "no serial port /dev/no-such-adapter" in missing.stderr
    clash = daly_bms("read", "--serial-port", "/dev/ttyUSB0", "--mac", "C6:6C:09:03:1B:9E")
    assert clash.returncode == 2
    assert "not with --serial-port" in clash.stderr


def test_the_node_reads_a_wired_a5_bms_through_faults_and_an_unplug(
    tmp_path: Path, ros_context: Context
) -> None:
    link = tmp_path / "ttyBMS"  # what /dev/serial/by-id/ gives: a stable name for the adapter
    with serial_sim(tmp_path, "--protocol", "a5", "--a5-hosts", "0x40") as (sim, port):
        os.symlink(port, link)
        node = DalyBmsNode(
            context=ros_context,
            namespace="wired",
            parameter_overrides=[
                *FAST_LINK,
                Parameter("transport", value="serial"),
                Parameter("serial_port", value=str(link)),
            ],
        )
        listener = Node("listener", context=ros_context)
        received = listen(listener, "wired")
        with spinning(ros_context, [node], listener):
            wait_for_new_samples(received, 3, "samples over the serial port")
            with received.lock:
                first = received.batteries[-1]
            assert len(first.cell_voltage) == 16
            assert first.serial_number == str(link)
            assert first.capacity == pytest.approx(100.0)  # the sim's rating, from 0x50
            # Corrupt answers are counted and survived.
            sim.control({"fault": "corrupt_crc", "count": 2})
            wait_until(
                lambda: int(received.diagnostic_values().get("rejected_bad_crc", "0")) >= 1,
                "the corrupt answers counted",
            )
            wait_for_new_samples(received, 3, "samples after the corrupt answers")
            # Answers cut short, and none at all: each costs a request timeout, then samples go on.
            for fault in ("truncated", "no_answer"):
                timeouts = int(received.diagnostic_values().get("timeouts", "0"))
                sim.control({"fault": fault, "count": 2})
                wait_until(
                    lambda timeouts=timeouts: int(received.diagnostic_values()["timeouts"])
                    > timeouts,
                    f"the {fault} answers waited out",
                )
                wait_for_new_samples(received, 3, f"samples after the {fault} answers")
            # The adapter is unplugged, and plugged in again under the same stable name (the new
            # pty may even get the old number): the link is rebuilt and samples resume.
            sim.control({"link": "disconnect"})
            new_port = next_port(sim)
            if new_port != port:
                os.unlink(link)
                os.symlink(new_port, link)
            wait_until(
                lambda: int(received.diagnostic_values().get("reconnects", "0")) >= 1,
                "the link rebuilt",
            )
            wait_for_new_samples(received, 3, "samples after the adapter came back")
            assert int(received.diagnostic_values()["reconnects"]) >= 1


def test_scan_lists_the_serial_ports_a_bms_answers_on(tmp_path: Path) -> None:
    silent_side, silent = os.openpty()  # a port with nothing behind it
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        with (
            serial_sim(tmp_path / "a", "--protocol", "a5", "--cells", "16") as (_a5, a5_port),
            serial_sim(tmp_path / "b", "--protocol", "x81", "--cells", "8") as (_x81, x81_port),
        ):
            ports = [a5_port, x81_port, os.ttyname(silent), "/dev/no-such-adapter"]
            table = daly_bms("scan", *(f"--serial-port={port}" for port in ports))
            assert table.returncode == 0, table.stderr
            lines = table.stdout.splitlines()
            assert len(lines) == 2, table.stdout  # the silent port is not listed
            assert re.match(rf"{a5_port}  a5 +16S  5\d\.\d V  \d+\.\d %$", lines[0]), lines
            assert re.match(rf"{x81_port}  x81  8S  2\d\.\d V", lines[1]), lines
            assert "/dev/no-such-adapter: no serial port" in table.stderr
            records = [
                json.loads(line)
                for line in daly_bms(
                    "scan", "--json", "--protocol", "a5", "--serial-port", a5_port
                ).stdout.splitlines()
            ]
            assert [(r["device"], r["protocol"], r["cells"]) for r in records] == [
                (a5_port, "a5", 16)
            ]
        nothing = daly_bms("scan", "--serial-port", os.ttyname(silent), "--request-timeout", "0.2")
        assert nothing.returncode == 3
        assert f"no BMS answered on {os.ttyname(silent)}" in nothing.stderr
    finally:
        os.close(silent_side)
        os.close(silent)


class SentRequests:
    """A tap keeping the requests a client sends."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    def connected(self, device: object) -> None:
        """Nothing to note."""

    def sent(self, data: bytes) -> None:
        self.requests.append(data)

    def received(self, data: bytes) -> None:
        """Nothing to note."""

    def detected(self, variant: str, status_registers: int) -> None:
        """Nothing to note."""

    def disconnected(self, reason: str) -> None:
        """Nothing to note."""


async def read_wired(
    port: str, protocol: str = "auto", board: int = 1
) -> tuple[BmsSample, str, list[bytes]]:
    """One sample through the client over ``port``, the protocol found, the requests sent."""
    transport = SerialTransport(port)
    client = DalyClient(transport, 0.3, 0, protocol=protocol, board=board)
    tap = SentRequests()
    client.taps.append(tap)
    transport.set_callbacks(client.on_notify, lambda: None)
    await transport.connect()
    client.attach()
    try:
        return await client.read_sample(), client.protocol, tap.requests
    finally:
        await transport.disconnect()


def test_a_named_protocol_is_the_only_one_asked(tmp_path: Path) -> None:
    with serial_sim(tmp_path, "--protocol", "x81", "--cells", "8") as (_sim, port):
        _sample, found, requests = asyncio.run(read_wired(port))
        assert found == "x81"
        assert requests[0][0] == 0xA5  # found out: A5 is asked first over a wire
        sample, found, requests = asyncio.run(read_wired(port, "x81"))
        assert found == "x81" and len(sample.status.cell_voltages) == 8
        assert all(request[0] == 0x81 for request in requests), requests
        with pytest.raises(RequestTimeoutError, match="status request of a5 after 1 rounds"):
            asyncio.run(read_wired(port, "a5"))
    with serial_sim(tmp_path, "--protocol", "a5", "--capacity", "280") as (_sim, port):
        sample, found, requests = asyncio.run(read_wired(port, "a5"))
        assert found == "a5" and all(request[0] == 0xA5 for request in requests)
        # 0x50 gives the rated capacity A5 has no settings block for.
        assert sample.settings is not None and sample.settings.rated_capacity == 280.0
        with pytest.raises(RequestTimeoutError, match="status request of d2"):
            asyncio.run(read_wired(port, "d2"))


def test_a_board_on_a_shared_rs485_bus_is_asked_by_its_number(tmp_path: Path) -> None:
    # An RS485 port answers only its board's address, 0x40 + board - 1 (esphome#12445).
    with serial_sim(tmp_path, "--protocol", "a5", "--a5-board", "3", "--a5-hosts", "0x42") as (
        _sim,
        port,
    ):
        sample, found, requests = asyncio.run(read_wired(port, board=3))
        assert found == "a5" and sample.status.cell_voltages
        assert {request[1] for request in requests if request[0] == 0xA5} == {0x42}
        with pytest.raises(RequestTimeoutError):
            asyncio.run(read_wired(port, "a5", board=2))
        result = daly_bms(
            "read", "--json", "--serial-port", port, "--board", "3", "--protocol", "a5"
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["soc"] > 0
        info = daly_bms("info", "--json", "--serial-port", port, "--board", "3")
        assert info.returncode == 0, info.stderr
        record = json.loads(info.stdout)
        assert (record["mac_address"], record["serial_port"]) == (None, f"{port} board 3")
        assert (record["protocol"], record["software_version"]) == ("a5", None)
        assert record["rated_capacity"] == 100.0  # 0x50


def test_a_bms_swapped_behind_the_same_port_is_found_anew(tmp_path: Path) -> None:
    """The protocol is found at each connection: another BMS on the port is read as what it is."""
    port_link = tmp_path / "ttyBMS"  # the port's name stays; the BMS behind it changes
    transport = SerialTransport(str(port_link))
    client = DalyClient(transport, 0.3, 0)
    transport.set_callbacks(client.on_notify, lambda: None)

    async def connect_and_read() -> tuple[BmsSample, str]:
        await transport.connect()
        client.attach()
        try:
            return await client.read_sample(), client.protocol
        finally:
            await transport.disconnect()

    found = []
    for protocol, cells in (("x81", "8"), ("a5", "4")):
        (tmp_path / protocol).mkdir()
        with serial_sim(tmp_path / protocol, "--protocol", protocol, "--cells", cells) as (_, port):
            port_link.unlink(missing_ok=True)
            port_link.symlink_to(port)
            sample, protocol_found = asyncio.run(connect_and_read())
            found.append((protocol_found, len(sample.status.cell_voltages)))
    assert found == [("x81", 8), ("a5", 4)]
