"""`daly-bms` scan/read/monitor/info/shell against the virtual BMS, through the real bleak."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluez_mock import NAME_PREFIX, PERIPHERAL_ADDRESS, SimProcess, bluez_mock, sim_process
from installed import program

from daly_bms_ros.cli.exit_codes import ExitCode

NAME = f"{NAME_PREFIX}CLI01"
CLI = program("daly-bms")
ON_CENTRAL = ("--adapter", "hci0")


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimProcess]:
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(NAME, tmp_path, "hci1", "--cells", "8", "--sensors", "3") as process:
            yield process


def daly_bms(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert CLI, "daly-bms is not installed next to the test interpreter"
    return subprocess.run(
        [CLI, *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_scan_lists_the_virtual_bms(sim: SimProcess) -> None:
    result = daly_bms("scan", "--json", "--timeout", "2", *ON_CENTRAL)
    assert result.returncode == ExitCode.OK, result.stderr
    [device] = json_lines(result.stdout)
    assert device["name"] == NAME
    assert device["address"] == PERIPHERAL_ADDRESS
    assert isinstance(device["rssi"], int)


def test_read_json_by_name_then_by_address(sim: SimProcess) -> None:
    for target in (("--name", NAME), ("--mac", PERIPHERAL_ADDRESS.lower())):
        result = daly_bms("read", "--json", *target, *ON_CENTRAL)
        assert result.returncode == ExitCode.OK, result.stderr
        [record] = json_lines(result.stdout)
        assert record["device"] == f"{NAME} ({PERIPHERAL_ADDRESS})"
        assert len(record["cell_voltages"]) == 8
        assert len(record["temperatures"]) == 3
        assert record["rated_capacity"] == pytest.approx(100.0)
        assert record["pack_voltage"] == pytest.approx(sum(record["cell_voltages"]), abs=0.05)
        # The BMS's own power register: floor(|V*I|), signed like the current.
        power = record["pack_voltage"] * record["current"]
        assert record["power"] == math.copysign(math.floor(abs(power)), power)


def test_read_prints_a_table(sim: SimProcess) -> None:
    result = daly_bms("read", "--name", NAME, *ON_CENTRAL)
    assert result.returncode == ExitCode.OK, result.stderr
    labels = [line.split("  ")[0] for line in result.stdout.splitlines()]
    assert {"pack voltage", "state of charge", "cell 1", "cell 8"} <= set(labels)


def test_monitor_prints_the_legacy_bms_data_lines(sim: SimProcess) -> None:
    result = daly_bms(
        "monitor", "--format", "bms-data", "--count", "2", "--interval", "0.2", "--name", NAME,
        *ON_CENTRAL,
    )  # fmt: skip
    assert result.returncode == ExitCode.OK, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("BMS_DATA:") for line in lines)
    record = json.loads(lines[-1].removeprefix("BMS_DATA:"))
    assert set(record) == {"timestamp", "device", "mac_address", "daly_protocol", "data_found"}
    assert isinstance(record["timestamp"], int)
    assert record["device"] == NAME
    assert record["mac_address"] == PERIPHERAL_ADDRESS
    assert record["data_found"] is True
    protocol = record["daly_protocol"]
    assert set(protocol) == {"status", "notifications", "commands"}
    assert protocol["notifications"] > 0
    main_info = protocol["commands"]["main_info"]
    assert set(main_info) == {"command_sent", "response_received", "response_data", "parsed_data"}
    # The virtual BMS answers the 80-register read, as firmware that has it does.
    assert main_info["command_sent"] == "d20300000050" + "5655"
    assert main_info["response_received"] is True
    parsed = main_info["parsed_data"]
    assert set(parsed) == {
        "header", "cellVoltages", "packVoltage", "current", "soc", "remainingCapacity",
        "totalCapacity", "cycles", "temperatures", "mosStatus", "checksum", "timestamp",
    }  # fmt: skip
    response = bytes.fromhex(main_info["response_data"])
    assert parsed["header"] == response[:3].hex() == "d203a0"
    assert parsed["checksum"] == response[-2:].hex()
    assert [cell["cellNumber"] for cell in parsed["cellVoltages"]] == list(range(1, 9))
    assert all(3.0 < cell["voltage"] < 3.6 for cell in parsed["cellVoltages"])
    assert [sensor["sensor"] for sensor in parsed["temperatures"]] == [1, 2, 3]
    assert set(parsed["mosStatus"]) == {"chargingMos", "dischargingMos", "balancing"}
    assert parsed["totalCapacity"] == pytest.approx(100.0)
    # The wire frame decodes to the values printed beside it.
    decoded = daly_bms("decode", main_info["response_data"])
    [status] = json_lines(decoded.stdout)
    assert status["pack_voltage"] == parsed["packVoltage"]
    assert status["soc"] == parsed["soc"]


def test_monitor_json_lines(sim: SimProcess) -> None:
    result = daly_bms("monitor", "--json", "--count", "3", "--interval", "0.1", *ON_CENTRAL)
    assert result.returncode == ExitCode.OK, result.stderr
    records = json_lines(result.stdout)
    assert len(records) == 3
    assert [record["timestamp"] for record in records] == sorted(r["timestamp"] for r in records)
    assert "connected" in result.stderr


def test_info_reads_the_device_information(sim: SimProcess) -> None:
    result = daly_bms("info", "--json", "--name", NAME, *ON_CENTRAL)
    assert result.returncode == ExitCode.OK, result.stderr
    [info] = json_lines(result.stdout)
    assert info["name"] == NAME
    assert info["mac_address"] == PERIPHERAL_ADDRESS
    assert (info["serial_port"], info["protocol"]) == (None, "d2")
    # From the D2 device-information block...
    assert info["software_version"] == "11_261125_SIM1"
    assert info["hardware_version"] == "H1.0_SIM_16S"
    assert info["production_date"] == "20261125"
    # ...and from the GATT Device Information Service.
    assert info["firmware_version"] == "SIM-BLE-1.0"
    assert info["manufacturer"] == "Daly (virtual)"
    assert info["model"] == "DL-SIM"
    assert info["cell_count"] == 8
    assert info["temperature_sensors"] == 3
    assert info["rated_capacity"] == pytest.approx(100.0)


def test_no_device_and_no_answer_have_their_exit_codes(sim: SimProcess) -> None:
    missing = daly_bms("read", "--name", "DL-NOWHERE", "--timeout", "1.5", *ON_CENTRAL)
    assert missing.returncode == ExitCode.NOT_FOUND
    assert "no BMS matching 'DL-NOWHERE'" in missing.stderr
    assert missing.stdout == ""
    assert sim.control({"fault": "no_answer", "count": 50}) == {"armed": {"no_answer": 50}}
    silent = daly_bms("read", "--name", NAME, "--request-timeout", "0.3", *ON_CENTRAL)
    assert silent.returncode == ExitCode.NO_ANSWER
    assert "no answer to the status request" in silent.stderr


def test_bad_arguments_are_usage_errors() -> None:
    result = daly_bms("read", "--mac", "not-a-mac")
    assert result.returncode == ExitCode.USAGE
    assert "is not a MAC address like" in result.stderr
    assert daly_bms("monitor", "--interval", "0").returncode == ExitCode.USAGE


def test_shell_runs_a_script(sim: SimProcess) -> None:
    assert CLI
    script = "\n".join(
        ["scan", "connect 1", "json", "status", "continuous 0.1 2", "frobnicate", "reset", "data"]
    )
    result = subprocess.run(
        [CLI, "shell", "--timeout", "3", *ON_CENTRAL],
        input=script + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == ExitCode.OK, result.stderr
    output = result.stdout
    assert f"1. {PERIPHERAL_ADDRESS}" in output
    assert f"connected to {NAME} ({PERIPHERAL_ADDRESS})" in output
    records = [
        json.loads(line.removeprefix("daly> ")) for line in output.splitlines() if "{" in line
    ]
    assert len(records) == 3  # json, then two continuous reads
    assert all(len(record["cell_voltages"]) == 8 for record in records)
    assert "requests: " in output
    assert "unknown command 'frobnicate'" in output
    assert "reset" in output
    assert "not connected: use connect first" in output


class ShellSession:
    """A ``daly-bms shell`` driven line by line, as a user at its prompt drives it."""

    def __init__(self, *arguments: str) -> None:
        assert CLI
        self.process = subprocess.Popen(
            [CLI, "shell", *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.seen: list[str] = []

    def until(self, text: str) -> str:
        """Read output lines until one holds ``text``; return it (the end of output fails)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} never came:\n{''.join(self.seen)}")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> int:
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait(30)


def test_shell_starts_as_the_pi_reader_did_and_reconnects_after_a_drop(sim: SimProcess) -> None:
    shell = ShellSession("--timeout", "3", "--name", NAME, *ON_CENTRAL)
    try:
        shell.until(f"target: {NAME}; auto-connect on")
        shell.until(f"1. {PERIPHERAL_ADDRESS}")  # the scan it starts with
        shell.until(f"connected to {NAME} ({PERIPHERAL_ADDRESS})")  # auto-connect
        start = len(shell.seen)
        shell.send("services")
        shell.send("status")  # its first line ends the list, in whatever order it came
        shell.until("connected: ")
        listed = shell.seen[start:]
        [service] = [line for line in listed if "0000fff0-0000-1000-8000-00805f9b34fb" in line]
        assert "[fff0 service (in use)]" in service
        [answers] = [line for line in listed if "0000fff1-" in line]
        assert "notify" in answers and "[fff0 answers (in use)]" in answers
        [requests] = [line for line in listed if "0000fff2-" in line]
        assert "write-without-response" in requests and "[fff0 requests (in use)]" in requests
        shell.send("d")  # one-letter commands as in the Pi reader's shell
        shell.until("state of charge")
        assert sim.control({"link": "disconnect"}) == {"link": "disconnect"}
        while True:  # until the shell has heard of the drop
            shell.send("status")
            if "connected: no" in shell.until("connected: "):
                break
        shell.send("json")
        shell.until(f"link to {NAME} ({PERIPHERAL_ADDRESS}) lost: reconnecting (auto)")
        shell.until(f"connected to {NAME} ({PERIPHERAL_ADDRESS})")
        record = json.loads(shell.until("{")[shell.seen[-1].index("{") :])
        assert len(record["cell_voltages"]) == 8
        shell.send("auto")
        shell.until("auto-connect off")
        shell.send("r")
        shell.until("reset")
        shell.send("h")
        shell.until("Documented commands")
        shell.send("q")
        assert shell.process.wait(30) == ExitCode.OK
    finally:
        shell.close()


def test_shell_without_auto_connect_scans_but_waits(sim: SimProcess) -> None:
    shell = ShellSession("--timeout", "2", "--no-auto-connect", *ON_CENTRAL)
    try:
        shell.until("target: the first Daly BMS seen; auto-connect off")
        shell.until(f"1. {PERIPHERAL_ADDRESS}")
        shell.send("services")
        shell.until("not connected: use connect first")
        shell.send("c 1")
        shell.until(f"connected to {NAME} ({PERIPHERAL_ADDRESS})")
        shell.send("exit")
        assert shell.process.wait(30) == ExitCode.OK
    finally:
        shell.close()
