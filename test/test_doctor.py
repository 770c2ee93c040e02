"""``daly-bms doctor`` against the BlueZ mock and pseudo-terminals: each fault it meets is the first
failure it reports, with its exit status; a BMS that answers is read."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
from bluez_mock import NAME_PREFIX, PERIPHERAL_ADDRESS, SimProcess, bluez_mock, sim_process
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from installed import program
from test_sim_a5 import serial_sim

from daly_bms_ros.cli import doctor_system
from daly_bms_ros.cli.doctor_system import Adapter, Outcome, adapter_finding, ros_finding
from daly_bms_ros.cli.exit_codes import ExitCode

CLI = program("daly-bms")
NAME = f"{NAME_PREFIX}DOC01"
ON_CENTRAL = ("--adapter", "hci0")
#: Without the capabilities that let root open any file, a process meets file modes as any
#: user does: what an unprivileged user's doctor meets.
AS_UNPRIVILEGED = (
    "setpriv",
    *("--bounding-set", "-dac_override,-dac_read_search"),
    *("--inh-caps", "-dac_override,-dac_read_search"),
)


def doctor(*arguments: str, prefix: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    """Run ``daly-bms doctor --json``; return its exit status and its checks by name."""
    assert CLI, "daly-bms is not installed next to the test interpreter"
    result = subprocess.run(
        [*prefix, CLI, "doctor", "--json", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    record = json.loads(result.stdout)
    assert record["exit_status"] == result.returncode
    assert record["sample_read"] is (result.returncode == ExitCode.OK)
    return result.returncode, {check["check"]: check for check in record["checks"]}


def outcomes(checks: dict[str, Any]) -> dict[str, str]:
    return {name: check["outcome"] for name, check in checks.items()}


@pytest.fixture
def mock_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address


@pytest.fixture
def sim(mock_bus: str, tmp_path: Path) -> Iterator[SimProcess]:
    with sim_process(NAME, tmp_path, "hci1", "--cells", "8", "--gatt", "ff00") as process:
        yield process


def test_no_system_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
    status, checks = doctor(*ON_CENTRAL)
    assert status == ExitCode.NO_BLUETOOTH
    assert "is not reachable" in checks["bluez"]["found"]
    assert "systemctl status dbus" in checks["bluez"]["advice"]
    ros = outcomes(checks).pop("ros")  # told beside: it never fails the doctor
    assert ros in ("ok", "warn")
    assert outcomes(checks) | {"ros": "-"} == {
        "bluez": "fail", "permission": "skipped", "adapter": "skipped", "advertising": "skipped",
        "connection": "skipped", "answer": "skipped", "ros": "-",
    }  # fmt: skip


def test_no_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with bluez_mock(tmp_path, central=False) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        status, checks = doctor()
    assert status == ExitCode.NO_BLUETOOTH
    adapter = checks["adapter"]
    assert adapter["found"] == "BlueZ has no Bluetooth adapter (hciconfig would list none)"
    assert "dtoverlay=disable-bt" in adapter["advice"]


def test_bluez_refusing_the_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A D-Bus policy that lets this user reach BlueZ but not call it: 'Permission denied'."""
    refused = (
        '<deny send_destination="org.bluez" send_interface="org.freedesktop.DBus.ObjectManager"/>'
    )
    with bluez_mock(tmp_path, bus_rules=refused) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        status, checks = doctor()
    assert status == ExitCode.PERMISSION_DENIED
    assert checks["bluez"]["outcome"] == "ok"
    permission = checks["permission"]
    assert "org.freedesktop.DBus.Error.AccessDenied" in permission["found"]
    assert "'Permission denied' (AccessDenied) is the D-Bus policy" in permission["advice"]
    assert "sudo usermod -aG bluetooth" in permission["advice"]
    assert checks["adapter"]["outcome"] == "skipped"


def test_the_adapter_missing(mock_bus: str) -> None:
    status, checks = doctor("--adapter", "hci7")
    assert status == ExitCode.NO_BLUETOOTH
    assert outcomes(checks)["bluez"] == outcomes(checks)["permission"] == "ok"
    assert checks["adapter"]["found"] == "no adapter hci7; BlueZ has hci0, hci1"
    assert checks["adapter"]["advice"].startswith("--adapter hci0")
    assert checks["adapter"]["exit_status"] == ExitCode.NO_BLUETOOTH
    assert checks["advertising"]["outcome"] == "skipped"


async def power_off(bus_address: str, adapter: str) -> None:
    """Turn an adapter off as ``bluetoothctl power off`` does: its Powered property."""
    bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=f"/org/bluez/{adapter}",
                interface="org.freedesktop.DBus.Properties",
                member="Set",
                signature="ssv",
                body=["org.bluez.Adapter1", "Powered", Variant("b", False)],
            )
        )
        assert reply is not None and reply.message_type is MessageType.METHOD_RETURN
    finally:
        bus.disconnect()


def test_the_adapter_powered_off(mock_bus: str) -> None:
    asyncio.run(power_off(mock_bus, "hci0"))
    status, checks = doctor(*ON_CENTRAL)
    assert status == ExitCode.ADAPTER_OFF
    adapter = checks["adapter"]
    assert adapter["found"] == "hci0 (00:AA:01:00:00:01) is powered off (not blocked by rfkill)"
    assert adapter["advice"].startswith("bluetoothctl power on")
    assert adapter["details"]["powered"] is False


def test_no_bms_in_range(mock_bus: str) -> None:
    status, checks = doctor("--timeout", "1.5", *ON_CENTRAL)
    assert status == ExitCode.NOT_FOUND
    assert outcomes(checks)["adapter"] == "ok"
    assert checks["advertising"]["found"] == "no Daly BMS advertising within 1.5 s"
    assert "powered and awake" in checks["advertising"]["advice"]
    assert checks["connection"]["outcome"] == "skipped"


def test_a_bms_is_found_connected_and_read(sim: SimProcess) -> None:
    status, checks = doctor("--timeout", "2", "--name", NAME, *ON_CENTRAL)
    assert status == ExitCode.OK, checks
    assert all(outcome == "ok" for name, outcome in outcomes(checks).items() if name != "ros")
    assert checks["advertising"]["found"].startswith(f"{NAME} ({PERIPHERAL_ADDRESS}) at -")
    connection = checks["connection"]
    assert connection["details"]["gatt"] == "ff00"  # the newer firmware's layout
    assert "subscribed to 0000ff01-0000-1000-8000-00805f9b34fb (ff00 layout" in connection["found"]
    answer = checks["answer"]
    assert answer["details"]["protocol"] == "d2"
    assert len(answer["details"]["sample"]["cell_voltages"]) == 8


def test_a_bms_that_never_answers(sim: SimProcess) -> None:
    assert sim.control({"fault": "no_answer", "count": 100})["armed"] == {"no_answer": 100}
    status, checks = doctor(
        "--timeout", "2", "--request-timeout", "0.2", "--protocol", "d2", *ON_CENTRAL
    )
    assert status == ExitCode.NO_ANSWER
    assert outcomes(checks)["connection"] == "ok"
    answer = checks["answer"]
    assert answer["outcome"] == "fail"
    assert answer["found"].startswith("no answer")
    assert "connected and subscribed, yet nothing answered" in answer["advice"]


def test_the_text_report_says_what_to_do(mock_bus: str) -> None:
    assert CLI
    result = subprocess.run(
        [CLI, "doctor", "--adapter", "hci7"], capture_output=True, text=True, check=False
    )
    assert result.returncode == ExitCode.NO_BLUETOOTH
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok    bluez")
    assert "FAIL  adapter            no adapter hci7" in result.stdout
    assert "what to do: --adapter hci0" in result.stdout
    assert lines[-1] == "adapter failed (exit status 5)"


@pytest.fixture
def pseudo_terminal() -> Iterator[str]:
    main, port = os.openpty()
    try:
        yield os.ttyname(port)
    finally:
        os.close(main)
        os.close(port)


def test_a_serial_port_without_permission(pseudo_terminal: str) -> None:
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root opens any file: drop what lets it, as a user lacks it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux) to drop root's rights")
        prefix = AS_UNPRIVILEGED
    os.chmod(pseudo_terminal, 0)
    status, checks = doctor("--serial-port", pseudo_terminal, prefix=prefix)
    assert status == ExitCode.PERMISSION_DENIED
    assert checks["serial_port"]["details"]["mode"] == "0000"
    permission = checks["serial_permission"]
    assert "(Permission denied)" in permission["found"]
    assert permission["exit_status"] == ExitCode.PERMISSION_DENIED
    assert outcomes(checks)["serial_busy"] == outcomes(checks)["answer"] == "skipped"


def test_a_missing_serial_port() -> None:
    status, checks = doctor("--serial-port", "/dev/ttyDALY-NONE")
    assert status == ExitCode.NOT_FOUND
    assert checks["serial_port"]["found"].startswith("no serial port /dev/ttyDALY-NONE")


def test_a_serial_port_another_reader_holds(tmp_path: Path) -> None:
    with (
        serial_sim(tmp_path, "--protocol", "a5", "--cells", "8") as (_sim, port),
        serial.Serial(port, exclusive=True),  # as daly-bms serve holds it
    ):
        status, checks = doctor("--serial-port", port)
    assert status == ExitCode.PORT_BUSY
    busy = checks["serial_busy"]
    assert busy["found"].startswith(f"another process holds {port} (locked; open in ")
    assert "one reader per port" in busy["advice"]


def test_a_wired_bms_is_read(tmp_path: Path) -> None:
    with serial_sim(tmp_path, "--protocol", "a5", "--cells", "8") as (_sim, port):
        status, checks = doctor("--serial-port", port, "--request-timeout", "0.5")
    assert status == ExitCode.OK, checks
    assert checks["connection"]["found"] == f"opened {port} (9600 baud)"
    assert checks["answer"]["details"]["protocol"] == "a5"


@pytest.mark.parametrize(
    ("environment", "outcome", "said"),
    [
        ({}, Outcome.OK, "ROS_DOMAIN_ID 0 (the default), discovery SUBNET (the default)"),
        ({"ROS_DOMAIN_ID": "7", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, Outcome.WARN,
         "other machines do not see the topics"),
        ({"ROS_DOMAIN_ID": "300"}, Outcome.WARN, "is no domain (0..232)"),
        ({"ROS_LOCALHOST_ONLY": "1"}, Outcome.OK, "ignored by Kilted"),
    ],
)  # fmt: skip
def test_the_ros_environment_says_who_sees_the_topics(
    environment: dict[str, str], outcome: Outcome, said: str
) -> None:
    finding = ros_finding(environment)
    assert finding.outcome is outcome
    assert said in finding.found


def rfkill_switch(root: Path, number: int, name: str, soft: int, hard: int) -> None:
    """One switch as the kernel lists it under /sys/class/rfkill."""
    switch = root / f"rfkill{number}"
    switch.mkdir()
    for field, value in (("type", "bluetooth"), ("name", name), ("soft", soft), ("hard", hard)):
        (switch / field).write_text(f"{value}\n")


def test_an_adapter_blocked_by_rfkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_system, "RFKILL", tmp_path)
    rfkill_switch(tmp_path, 0, "hci1", 1, 0)  # another adapter's switch: not hci0's
    adapters = [Adapter("hci0", "00:AA:01:00:00:01", True)]
    assert adapter_finding(adapters, "")[0].outcome is Outcome.OK
    rfkill_switch(tmp_path, 1, "hci0", 1, 0)
    finding, adapter = adapter_finding(adapters, "")
    assert adapter is None
    assert finding.found == "hci0 (00:AA:01:00:00:01) is blocked by rfkill (soft)"
    assert (finding.advice, finding.code) == ("sudo rfkill unblock bluetooth", ExitCode.ADAPTER_OFF)
    rfkill_switch(tmp_path, 2, "tpacpi_bluetooth_sw", 0, 1)  # the platform's switch
    assert "(hard and soft)" in adapter_finding(adapters, "")[0].found
