"""The virtual BMS as the hardware found in the field, found and read through the real bleak.

Each presentation is a real variant: a "JHB-" board answering on service ff00 while fff1 refuses
notifications (fl4p/batmon-ha #356), a 0x81 pack on a link of the minimum MTU, and D2 firmware
that answers only the 62-register status and keeps its versions in 32-byte fields, and an older
module speaking A5 (every frame of the cell voltages, in 200 + 8-byte notifications), and a 0x81
pack that advertises its manufacturer data alone, without a name (patman15/BMS_BLE-HA #806). One
BlueZ mock serves them on six adapters (the fourth: a pack whose cells are balanced while it
charges).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from bluez_mock import NAMELESS_X81_PACK, bluez_mock, peripheral_address, sim_process, system_bus
from installed import program
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from test_e2e_faults import node_reading

from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.link.client import DalyClient
from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.protocol import D2, STATUS_80_BLOCK, STATUS_BLOCK, X81, BmsSample
from daly_bms_ros.protocol.gatt import FF00
from daly_bms_ros.sim.responder import DEVICE_INFO

JHB = "JHB-SIM000001"
X81_PACK = "DL-SIMX81"
OLD_D2 = "DL-SIMOLD"
BALANCING = "DL-SIMBAL"
A5_MODULE = "DL-SIMA5"
#: The name that fills the nameless pack's device information; it advertises none.
NAMELESS = "DL-SIMNONAME"
#: The MAC in that pack's manufacturer data: #806's, not the address of its adapter here.
MAC_806 = "D1:1A:04:01:59:94"
CLI = program("daly-bms")


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("presentations")
    with bluez_mock(work, peripherals=6) as address, system_bus(address), ExitStack() as sims:
        sims.enter_context(sim_process(JHB, work, "hci1", "--gatt", "ff00"))
        sims.enter_context(sim_process(X81_PACK, work, "hci2", "--protocol", "x81", "--mtu", "23"))
        sims.enter_context(
            sim_process(
                OLD_D2, work, "hci3", "--status-registers", "62", "--device-info-fields", "32"
            )
        )
        # Charging half of every 4 s: the cells that drifted apart are balanced.
        sims.enter_context(sim_process(BALANCING, work, "hci4", "--load-period", "4"))
        a5_module = ("--protocol", "a5", "--a5-all-frames", "--mtu", "203", "--capacity", "40")
        sims.enter_context(sim_process(A5_MODULE, work, "hci5", *a5_module))
        sims.enter_context(sim_process(NAMELESS, work, "hci6", *NAMELESS_X81_PACK))
        yield address


def read(transport: BleakTransport) -> tuple[BmsSample, DalyClient, dict[str, str]]:
    async def scenario() -> tuple[BmsSample, DalyClient, dict[str, str]]:
        client = DalyClient(transport, request_timeout=1.0, request_retries=1)
        transport.set_callbacks(client.on_notify, lambda: None)
        await transport.connect()
        try:
            client.attach()
            sample = await client.read_sample()
            return sample, client, await client.device_information()
        finally:
            await transport.disconnect()

    return asyncio.run(scenario())


def test_jhb_board_on_ff00_is_found_by_its_name_and_read(bus: str) -> None:
    # That a "JHB-" name alone marks a Daly is shown by the scan below, which lists every
    # virtual pack: with six in range, "the first Daly seen" is any of them.
    transport = BleakTransport(device_name=JHB, adapter="hci0", connect_timeout=10.0)
    sample, client, _information = read(transport)
    assert transport.name == JHB
    assert transport.layout is FF00  # fff1 refused the subscription
    assert (client.variant, client.status_block) == (D2, STATUS_80_BLOCK)
    # One request a sample after the settings: the 80-register read carries the MOS temperature.
    assert sample.status.balancing_cells is not None
    assert sample.mos_temperature == sample.mos_temperature  # not NaN
    # Whole frames in single notifications on a large-MTU link, as a real Daly sends them: one
    # notification an answer (the 0x81 probe of the detection round goes unanswered).
    assert client.notifications == client.requests - 1


def test_x81_pack_is_found_in_one_round_and_tells_its_versions(bus: str) -> None:
    transport = BleakTransport(device_name=X81_PACK, adapter="hci0", connect_timeout=10.0)
    sample, client, information = read(transport)
    assert client.variant is X81
    # The two probes of one round, the second status block, the device information: no D2
    # attempt timed out first.
    assert client.timeouts == 0
    assert client.requests == 2 + 1 + 1
    # 133-byte answers in 20-byte notifications on a 23-byte MTU.
    assert client.notifications > client.requests
    assert len(sample.status.cell_voltages) == 16
    assert information["software_version"] == DEVICE_INFO.software_version
    assert information["serial_number"] == "SIMX81"  # each virtual pack has its own


def test_a_nameless_pack_is_found_by_the_mac_in_its_manufacturer_data(bus: str) -> None:
    transport = BleakTransport(mac_address=MAC_806.lower(), adapter="hci0", connect_timeout=10.0)
    sample, client, _information = read(transport)
    assert (transport.name, transport.address) == ("", peripheral_address(6))
    assert client.variant is X81
    assert len(sample.status.cell_voltages) == 16


def test_old_d2_firmware_falls_back_to_62_registers(bus: str) -> None:
    transport = BleakTransport(device_name=OLD_D2, adapter="hci0", connect_timeout=10.0)
    sample, client, information = read(transport)
    assert (client.variant, client.status_block) == (D2, STATUS_BLOCK)
    # Registers 62..70 come with the MOS block: per-cell balancing and the MOS temperature.
    assert sample.status.balancing_cells is not None
    assert len(sample.status.balancing_cells) == len(sample.status.cell_voltages)
    assert sample.mos_temperature == sample.mos_temperature
    assert client.requests == 2 + 1 + 1 + 1 + 1  # probes, 62 read, settings, MOS, information
    assert information["software_version"] == DEVICE_INFO.software_version
    assert information["hardware_version"] == DEVICE_INFO.hardware_version
    assert "production_date" not in information  # the 32-byte layout has none


def test_cli_scan_and_info_see_every_variant(bus: str) -> None:
    assert CLI
    scan = subprocess.run(
        [CLI, "scan", "--json", "--timeout", "2", "--adapter", "hci0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert scan.returncode == 0, scan.stderr
    devices = [json.loads(line) for line in scan.stdout.splitlines()]
    found = {device["name"]: device["address"] for device in devices}
    assert found == {
        JHB: peripheral_address(1),
        X81_PACK: peripheral_address(2),
        OLD_D2: peripheral_address(3),
        BALANCING: peripheral_address(4),
        A5_MODULE: peripheral_address(5),
        "": peripheral_address(6),  # found by its manufacturer data alone
    }
    info = subprocess.run(
        [CLI, "info", "--json", "--name", X81_PACK, "--adapter", "hci0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert info.returncode == 0, info.stderr
    record = json.loads(info.stdout)
    assert record["software_version"] == DEVICE_INFO.software_version
    assert record["hardware_version"] == DEVICE_INFO.hardware_version


def test_per_cell_balancing_of_the_model_reaches_dalycells(bus: str, ros_context: Context) -> None:
    node = DalyBmsNode(
        context=ros_context,
        parameter_overrides=[
            Parameter("device_name", value=BALANCING),
            Parameter("adapter", value="hci0"),
            Parameter("poll_interval", value=0.2),
            Parameter("request_timeout", value=1.0),
        ],
    )
    listener = Node("balancing_listener", context=ros_context)
    cells: list[DalyCells] = []
    listener.create_subscription(DalyCells, "cells", cells.append, 50)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        deadline = time.monotonic() + 60
        while not any(any(message.balancing) for message in cells):
            assert time.monotonic() < deadline, "no sample with a balancing cell"
            executor.spin_once(timeout_sec=0.1)
        balancing = next(message for message in cells if any(message.balancing))
        assert len(balancing.balancing) == len(balancing.cell_voltages) == 16
        assert balancing.balancing_active
        assert balancing.power > 0  # balancing happens while charging
        lowest = min(balancing.cell_voltages)
        for voltage, on in zip(balancing.cell_voltages, balancing.balancing, strict=True):
            if on:
                assert voltage > lowest  # the cells above the lowest one are balanced
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        listener.destroy_node()


def test_the_node_reads_an_older_a5_module_found_after_d2_and_0x81(
    bus: str, ros_context: Context
) -> None:
    with node_reading(ros_context, "a5", Parameter("device_name", value=A5_MODULE)) as received:
        state = received.batteries[-1]
        assert len(state.cell_voltage) == 16  # of the 16 frames sent, as many as 0x94 counts
        assert state.voltage == pytest.approx(sum(state.cell_voltage), abs=0.1)
        assert state.capacity == pytest.approx(40.0)  # 0x50
        assert 0 < state.percentage <= 1
        assert state.serial_number == peripheral_address(5)
