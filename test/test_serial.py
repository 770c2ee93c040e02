"""A wired BMS: the CLI and the node read the virtual BMS over a real pseudo-terminal (pyserial).

The virtual BMS (``daly-bms-sim --serial``) answers A5 or the 0x81 Modbus variant on a pty;
the same client and supervisor as over Bluetooth read it, faults and an unplugged adapter
included. The node's port is a symbolic link, as /dev/serial/by-id/ gives a real adapter: the
link is pointed at the new pty when the adapter is "plugged in" again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bluez_mock import SimProcess
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from test_e2e_faults import FAST_LINK, listen, spinning, wait_for_new_samples, wait_until
from test_sim_a5 import serial_sim

from daly_bms_ros.node.node import DalyBmsNode

CLI = shutil.which("daly-bms", path=str(Path(sys.executable).parent))


def next_port(sim: SimProcess) -> str:
    """Read the next "serial port" line the virtual BMS prints (a new pty after an unplug)."""
    assert sim.process.stdout is not None
    line = sim.process.stdout.readline()
    match = re.search(r"serial port (\S+)", line)
    assert match, line
    return match.group(1)


@pytest.mark.parametrize("protocol", ["a5", "x81"])
def test_the_cli_reads_a_wired_bms(tmp_path: Path, protocol: str) -> None:
    assert CLI
    with serial_sim(tmp_path, "--protocol", protocol, "--cells", "8") as (_sim, port):
        result = subprocess.run(
            [CLI, "read", "--json", "--serial-port", port, "--request-timeout", "0.5"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["device"] == f"{port} (9600 baud)"
    assert len(record["cell_voltages"]) == 8
    assert 0 < record["soc"] <= 100
    assert record["pack_voltage"] == pytest.approx(sum(record["cell_voltages"]), abs=0.1)


def test_the_cli_says_when_the_port_is_missing_or_the_options_clash() -> None:
    assert CLI
    missing = subprocess.run(
        [CLI, "read", "--serial-port", "/dev/no-such-adapter"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 3
    assert "no serial port /dev/no-such-adapter" in missing.stderr
    clash = subprocess.run(
        [CLI, "read", "--serial-port", "/dev/ttyUSB0", "--mac", "C6:6C:09:03:1B:9E"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
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
            # Corrupt answers are counted and survived.
            sim.control({"fault": "corrupt_crc", "count": 2})
            wait_until(
                lambda: int(received.diagnostic_values().get("rejected_bad_crc", "0")) >= 1,
                "the corrupt answers counted",
            )
            wait_for_new_samples(received, 3, "samples after the corrupt answers")
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
