"""The real bleak over the BlueZ mock, against a virtual BMS that answers with real frames."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bleak import BleakClient
from bluez_mock import PERIPHERAL_ADDRESS, SimProcess, bluez_mock, sim_process, virtual_bms
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import BatteryState

from daly_bms_ros.link import supervisor
from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.link.client import DalyClient
from daly_bms_ros.link.supervisor import BmsLink, LinkConfig, LinkStatus, LinkTurns
from daly_bms_ros.link.transport import DeviceNotFoundError
from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.protocol import BmsSample

NAME = "DL-SIM000001"


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with virtual_bms(address, NAME):
            yield address


def read_one_sample(transport: BleakTransport) -> tuple[str, BmsSample, DalyClient]:
    async def scenario() -> tuple[str, BmsSample, DalyClient]:
        client = DalyClient(transport, request_timeout=1.0, request_retries=1)
        transport.set_callbacks(client.on_notify, lambda: None)
        await transport.connect()
        try:
            client.attach()
            return transport.description, await client.read_sample(), client
        finally:
            await transport.disconnect()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "target",
    [{"device_name": NAME}, {"mac_address": PERIPHERAL_ADDRESS.lower()}, {}],
    ids=["by-name", "by-address", "by-daly-pattern"],
)
def test_bleak_transport_reads_the_virtual_bms(bus: str, target: dict[str, str]) -> None:
    transport = BleakTransport(adapter="hci0", connect_timeout=10.0, **target)
    description, sample, client = read_one_sample(transport)
    assert description == f"{NAME} ({PERIPHERAL_ADDRESS})"
    assert sample.status.pack_voltage == pytest.approx(51.1)
    assert [round(v * 1000) for v in sample.status.cell_voltages][:3] == [3188, 3199, 3199]
    assert sample.settings is not None
    assert sample.settings.rated_capacity == pytest.approx(310.0)
    # Whole answers in one notification each (the link's MTU allows it), none rejected.
    assert not client.rejected


def test_unknown_name_is_not_found(bus: str) -> None:
    transport = BleakTransport(device_name="DL-ELSEWHERE", adapter="hci0", connect_timeout=2.0)
    with pytest.raises(DeviceNotFoundError, match="no BMS matching 'DL-ELSEWHERE'"):
        read_one_sample(transport)


def test_node_publishes_the_virtual_bms_through_bleak(bus: str, ros_context: Context) -> None:
    node = DalyBmsNode(
        context=ros_context,
        parameter_overrides=[
            Parameter("device_name", value=NAME),
            Parameter("adapter", value="hci0"),
            Parameter("poll_interval", value=0.2),
            Parameter("request_timeout", value=0.5),
            Parameter("request_retries", value=0),
        ],
    )
    listener = Node("e2e_listener", context=ros_context)
    received: list[BatteryState] = []
    cells: list[DalyCells] = []
    listener.create_subscription(BatteryState, "battery_state", received.append, 10)
    listener.create_subscription(DalyCells, "cells", cells.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        deadline = time.monotonic() + 60
        while not (received and cells) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert received, "no BatteryState from the virtual BMS"
        assert received[0].voltage == pytest.approx(51.1)
        assert received[0].capacity == pytest.approx(310.0)
        assert received[0].percentage == pytest.approx(0.087)
        assert len(cells[0].cell_voltages) == 16
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        listener.destroy_node()


@pytest.mark.parametrize("turns", [False, True], ids=["lost-links", "turns"])
def test_an_ended_connection_leaves_nothing_behind_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, turns: bool
) -> None:
    """A dead connection's objects are freed before the next connects, not left to the collector.

    They hold one another in cycles (bleak's client, its D-Bus connection, the services): left
    to the collector, each new connection took fresh memory meanwhile, and the resident memory
    crept up under frequent reconnects and turns (bench/soak.py). With automatic collection
    off, at most the live connection's client may remain after three links lost, or four turns
    on a shared adapter (collected after each here; 5 s apart at the least in use).
    """
    name = "DL-SIMGC0001"
    monkeypatch.setattr(supervisor, "TURN_COLLECTION_INTERVAL", 0.0)

    async def three_connections_ended(sim: SimProcess) -> tuple[int, LinkStatus]:
        samples: list[BmsSample] = []
        transport = BleakTransport(device_name=name, adapter="hci0", connect_timeout=5.0)
        config = LinkConfig(
            poll_interval=0.2, request_timeout=0.5, reconnect_delay_min=0.1, reconnect_delay_max=0.2
        )
        shared = LinkTurns("adapter hci0", 1, 2) if turns else None
        link = BmsLink(transport, config, samples.append, lambda _status: None, turns=shared)
        running = asyncio.create_task(link.run())

        async def next_sample() -> None:
            count = len(samples)
            deadline = time.monotonic() + 30
            while len(samples) == count:
                assert time.monotonic() < deadline, "no sample"
                await asyncio.sleep(0.05)

        try:
            for _ in range(3):
                await next_sample()
                if not turns:
                    await asyncio.to_thread(sim.control, {"link": "disconnect"})
            await next_sample()
            clients = sum(isinstance(item, BleakClient) for item in gc.get_objects())
            return clients, link.status()
        finally:
            await link.stop()
            await running

    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(name, tmp_path) as sim:
            gc.collect()
            gc.disable()
            try:
                clients, status = asyncio.run(three_connections_ended(sim))
            finally:
                gc.enable()
    assert status.reconnects >= 3 or turns
    assert clients <= 1
