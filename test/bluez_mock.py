"""A BlueZ mock on a private D-Bus, and virtual BMS on it, for tests with the real bleak.

bluezoo (run as its own process through tools/bluez_mock.py, which lets it reconnect) serves
org.bluez with a central adapter hci0 and peripheral adapters hci1, hci2, ... on a dbus-daemon
of its own; DBUS_SYSTEM_BUS_ADDRESS points bleak at it. Each test gets a fresh bus.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from installed import program
from real_frames import SETTINGS, STATUS, frame_bytes

from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.link.client import DalyClient
from daly_bms_ros.link.loop_thread import EventLoopThread
from daly_bms_ros.protocol import SETTINGS_BLOCK, STATUS_BLOCK, parse_read_request
from daly_bms_ros.sim.peripheral import DalyPeripheral, wait_until_discovering

CENTRAL_ADDRESS = "00:AA:01:00:00:01"
PERIPHERAL_ADDRESS = "00:AA:01:00:00:02"
NAME_PREFIX = "DL-SIM"
READY_TIMEOUT_S = 30.0
SCAN_INTERVAL_S = 0.5
LAUNCHER = Path(__file__).resolve().parents[1] / "tools" / "bluez_mock.py"
#: The interpreter that runs the mock: bluezoo needs Python 3.11+, so a run of the tests on
#: Python 3.10 (Humble's) names another environment's Python that has bluezoo.
MOCK_PYTHON = os.environ.get("DALY_BLUEZ_MOCK_PYTHON", sys.executable)
SIM = program("daly-bms-sim")


@functools.cache
def _why_no_mock() -> str:
    """Why the BlueZ mock cannot run on this machine ("" when it can)."""
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon is not installed"
    found = subprocess.run([MOCK_PYTHON, "-c", "import bluezoo"], capture_output=True, check=False)
    if found.returncode != 0:
        return f"the BlueZ mock bluezoo is not installed for {MOCK_PYTHON} (Python 3.11+)"
    return ""


def require_the_mock() -> None:
    """Skip a test that needs the BlueZ mock where it cannot run (a robot's colcon test).

    Where every tool is promised (DALY_TESTS_NEED_EVERY_TOOL=1, scripts/test.sh), fail instead:
    a set-up that lost the mock must not pass by skipping.
    """
    reason = _why_no_mock()
    if reason and os.environ.get("DALY_TESTS_NEED_EVERY_TOOL") == "1":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


def peripheral_address(number: int) -> str:
    """Address of peripheral adapter hci<number> (hci1 is PERIPHERAL_ADDRESS)."""
    return f"00:AA:01:00:00:{number + 1:02X}"


def real_frame_responder(request: bytes) -> bytes | None:
    """Answer the status and settings reads with the real captures; ignore the rest.

    As the firmware of the captured pack, it answers the 62-register status read only.
    """
    block = parse_read_request(request)
    answers = {
        (STATUS_BLOCK.start, STATUS_BLOCK.count): frame_bytes(STATUS),
        (SETTINGS_BLOCK.start, SETTINGS_BLOCK.count): frame_bytes(SETTINGS),
    }
    return None if block is None else answers.get((block.start, block.count))


async def _adapter_ready(address: str, adapter: str) -> bool:
    """Whether BlueZ serves ``adapter`` ("": BlueZ itself, without adapters) yet."""
    try:
        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    except OSError:
        return False
    try:
        await bus.introspect("org.bluez", f"/org/bluez/{adapter}" if adapter else "/")
        return True
    except Exception:
        return False
    finally:
        bus.disconnect()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


#: A bus as dbus-daemon --session makes it, with room for rules every process must obey.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <policy context="mandatory">{rules}</policy>
</busconfig>
"""


@contextmanager
def bluez_mock(
    log_dir: Path, peripherals: int = 1, central: bool = True, bus_rules: str = ""
) -> Iterator[str]:
    """Start dbus-daemon + bluezoo with hci0..hci<peripherals>; yield the bus address.

    ``central=False``: BlueZ with no adapter at all (a machine whose adapter is missing).
    ``bus_rules``: D-Bus policy rules (``<deny .../>``) every process on the bus obeys, as a
    system bus's policy files make them. Both processes are stopped whatever happens.
    """
    require_the_mock()
    if bus_rules:
        config = log_dir / "bus.conf"
        config.write_text(BUS_CONFIG.format(rules=bus_rules))
        bus = [f"--config-file={config}"]
    else:
        bus = ["--session"]
    daemon = subprocess.Popen(
        ["dbus-daemon", *bus, "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
    )
    processes = [daemon]
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().decode().strip()
        adapters = (
            [CENTRAL_ADDRESS] + [peripheral_address(n) for n in range(1, peripherals + 1)]
            if central
            else []
        )
        with (log_dir / "bluezoo.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        MOCK_PYTHON,
                        str(LAUNCHER),
                        *("--scan-interval", str(SCAN_INTERVAL_S), "-v"),
                        *(argument for address in adapters for argument in ("-a", address)),
                    ],
                    env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not asyncio.run(_adapter_ready(address, f"hci{peripherals}" if central else "")):
            assert time.monotonic() < deadline, "bluezoo did not come up"
            time.sleep(0.1)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)


async def _start_when_central_discovers(peripheral: DalyPeripheral, bus_address: str) -> None:
    await wait_until_discovering("hci0", bus_address)
    await peripheral.start(bus_address)


@contextmanager
def virtual_bms(bus_address: str, name: str) -> Iterator[DalyPeripheral]:
    """Serve a virtual BMS answering with the real captures on hci1, in a thread of its own.

    It appears once the central adapter starts discovering.
    """
    peripheral = DalyPeripheral(name, real_frame_responder, adapter="hci1")
    loop = EventLoopThread("virtual_bms")
    loop.start()
    started = loop.submit(_start_when_central_discovers(peripheral, bus_address))
    try:
        yield peripheral
    finally:
        started.cancel()
        loop.submit(peripheral.stop()).result(READY_TIMEOUT_S)
        loop.stop(READY_TIMEOUT_S)


class SimProcess:
    """A running ``daly-bms-sim`` with its control socket."""

    def __init__(self, process: subprocess.Popen[str], control: Path) -> None:
        self.process = process
        self.control_path = control

    def control(self, command: dict[str, object]) -> dict[str, object]:
        """Send one control command; return the reply."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(10)
            connection.connect(str(self.control_path))
            connection.sendall(json.dumps(command).encode() + b"\n")
            reply: dict[str, object] = json.loads(connection.makefile().readline())
            return reply


@contextmanager
def sim_process(
    name: str, work_dir: Path, adapter: str = "hci1", *arguments: str, sim: str | None = SIM
) -> Iterator[SimProcess]:
    """Run ``daly-bms-sim`` on ``adapter`` until the block ends; yield once it advertises.

    ``sim``: that of another environment (the test interpreter's by default).
    """
    assert sim, "daly-bms-sim is not installed next to the test interpreter"
    control = work_dir / f"{name}.sock"
    process = subprocess.Popen(
        [sim, "--name", name, "--adapter", adapter, "--control", str(control), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "advertising" in line, line + process.stdout.read()
        yield SimProcess(process, control)
    finally:
        _stop(process)


@asynccontextmanager
async def client_of(
    name: str, request_timeout: float = 0.5, request_retries: int = 1
) -> AsyncIterator[DalyClient]:
    """A client connected through the real bleak on hci0 to the BMS advertised as ``name``."""
    transport = BleakTransport(device_name=name, adapter="hci0", connect_timeout=15.0)
    client = DalyClient(transport, request_timeout, request_retries)
    transport.set_callbacks(client.on_notify, lambda: None)
    await transport.connect()
    client.attach()
    try:
        yield client
    finally:
        await transport.disconnect()


#: The virtual BMS as the 0x81 pack of patman15/BMS_BLE-HA#806 advertised: no name, only
#: manufacturer data (company id 0x0106, its MAC, "DL").
NAMELESS_X81_PACK = (
    *("--protocol", "x81", "--no-name"),
    *("--manufacturer-data", "0106:00d11a04015994444c"),
)


@contextmanager
def system_bus(address: str) -> Iterator[None]:
    """Point bleak at the mock's bus for a block (fixtures wider than one test)."""
    previous = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
    try:
        yield
    finally:
        if previous is None:
            del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = previous


@contextmanager
def one_virtual_bms(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, *arguments: str
) -> Iterator[SimProcess]:
    """A private bus with the BlueZ mock and one ``daly-bms-sim`` called ``name`` on hci1."""
    with bluez_mock(work_dir) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(name, work_dir, "hci1", *arguments) as process:
            yield process
