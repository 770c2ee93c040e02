"""A BlueZ mock on a private D-Bus, and a virtual BMS on it, for tests with the real bleak.

bluezoo (run as its own process) serves org.bluez with a central adapter hci0 and a peripheral
adapter hci1 on a dbus-daemon of its own; DBUS_SYSTEM_BUS_ADDRESS points bleak at it. bluezoo
1.0.2 reports a device to the first scan tick only and connects it once, so each test gets a
fresh bus, and the virtual BMS starts advertising only once the central is discovering (as a BMS
that wakes while the driver searches): then no scan can miss its one report.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from real_frames import SETTINGS, STATUS, frame_bytes

from daly_bms_ros.ble.loop_thread import EventLoopThread
from daly_bms_ros.protocol import SETTINGS_BLOCK, STATUS_BLOCK, parse_read_request
from daly_bms_ros.sim.peripheral import DalyPeripheral, wait_until_discovering

CENTRAL_ADDRESS = "00:AA:01:00:00:01"
PERIPHERAL_ADDRESS = "00:AA:01:00:00:02"
NAME_PREFIX = "DL-SIM"
READY_TIMEOUT_S = 30.0


def real_frame_responder(request: bytes) -> bytes | None:
    """Answer the status and settings requests with the real captures; ignore the rest."""
    block = parse_read_request(request)
    answers = {STATUS_BLOCK.start: frame_bytes(STATUS), SETTINGS_BLOCK.start: frame_bytes(SETTINGS)}
    return None if block is None else answers.get(block.start)


async def _adapter_ready(address: str) -> bool:
    try:
        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    except OSError:
        return False
    try:
        await bus.introspect("org.bluez", "/org/bluez/hci1")
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


@contextmanager
def bluez_mock(log_dir: Path) -> Iterator[str]:
    """Start dbus-daemon + bluezoo; yield the bus address; stop both whatever happens."""
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
    )
    processes = [daemon]
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().decode().strip()
        bluezoo = Path(sys.executable).with_name("bluezoo")
        with (log_dir / "bluezoo.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        str(bluezoo),
                        *("--auto-enable", "--scan-interval", "1", "-v"),
                        *("-a", CENTRAL_ADDRESS, "-a", PERIPHERAL_ADDRESS),
                    ],
                    env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not asyncio.run(_adapter_ready(address)):
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
