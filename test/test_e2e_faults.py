"""The node against `daly-bms-sim` through the real bleak: faults survived, two batteries."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bluez_mock import NAME_PREFIX, SimProcess, bluez_mock, peripheral_address, sim_process
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_spin import spin_in_background
from sensor_msgs.msg import BatteryState

from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.sim.battery import BatteryModel
from daly_bms_ros.sim.responder import DEVICE_INFO

SIM_SOFTWARE = DEVICE_INFO.software_version

FRONT = f"{NAME_PREFIX}FRONT"
REAR = f"{NAME_PREFIX}REAR"
FAST_LINK = [
    Parameter("adapter", value="hci0"),
    Parameter("poll_interval", value=0.2),
    Parameter("connect_timeout", value=3.0),
    Parameter("request_timeout", value=0.5),
    Parameter("request_retries", value=0),
    Parameter("reconnect_delay_min", value=0.2),
    Parameter("reconnect_delay_max", value=1.0),
    Parameter("diagnostics_period", value=0.2),
    # One node per battery in namespaces: statuses named "/<namespace>/daly_bms: battery".
    Parameter("diagnostic_updater.use_fqn", value=True),
]


@dataclass
class Received:
    """What a listener got on one battery's topics, safe to read from the test thread."""

    batteries: list[BatteryState] = field(default_factory=list)
    cells: list[DalyCells] = field(default_factory=list)
    diagnostics: list[DiagnosticStatus] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def diagnostic_values(self) -> dict[str, str]:
        with self.lock:
            return (
                {kv.key: kv.value for kv in self.diagnostics[-1].values} if self.diagnostics else {}
            )

    def count(self) -> int:
        with self.lock:
            return len(self.batteries)


def listen(node: Node, namespace: str) -> Received:
    received = Received()

    def keep(target: list[object]) -> Callable[[object], None]:
        def append(message: object) -> None:
            with received.lock:
                target.append(message)

        return append

    def keep_own_diagnostics(message: DiagnosticArray) -> None:
        with received.lock:
            received.diagnostics += [s for s in message.status if f"/{namespace}/" in s.name]

    node.create_subscription(
        BatteryState, f"/{namespace}/battery_state", keep(received.batteries), 50
    )
    node.create_subscription(DalyCells, f"/{namespace}/cells", keep(received.cells), 50)
    node.create_subscription(DiagnosticArray, "/diagnostics", keep_own_diagnostics, 50)
    return received


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_for_new_samples(received: Received, count: int, what: str) -> None:
    """Wait until ``count`` more BatteryState messages than now have arrived."""
    before = received.count()
    wait_until(lambda: received.count() >= before + count, what)


@pytest.fixture
def two_sims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SimProcess, SimProcess]]:
    with bluez_mock(tmp_path, peripherals=2) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with (
            sim_process(FRONT, tmp_path, "hci1") as front,
            sim_process(REAR, tmp_path, "hci2", "--cells", "8", "--capacity", "50") as rear,
        ):
            yield front, rear


@contextmanager
def spinning(context: Context, bms_nodes: list[DalyBmsNode], listener: Node) -> Iterator[None]:
    """Spin the nodes meanwhile; then disconnect the BMS nodes and destroy every node."""
    stop = spin_in_background(context, *bms_nodes, listener)
    try:
        yield
    finally:
        stop()
        for node in bms_nodes:
            node.close()
            node.destroy_node()
        listener.destroy_node()


def start_node(context: Context, namespace: str, *target: Parameter) -> DalyBmsNode:
    return DalyBmsNode(
        context=context, namespace=namespace, parameter_overrides=[*FAST_LINK, *target]
    )


@contextmanager
def node_reading(context: Context, namespace: str, *target: Parameter) -> Iterator[Received]:
    """A node in ``namespace`` and a listener, spinning; yields once 3 samples arrived."""
    node = start_node(context, namespace, *target)
    listener = Node(f"{namespace}_listener", context=context)
    received = listen(listener, namespace)
    with spinning(context, [node], listener):
        wait_until(lambda: received.count() >= 3, f"samples in {namespace}")
        yield received


def test_node_survives_every_fault_and_never_publishes_stale_data(
    two_sims: tuple[SimProcess, SimProcess], ros_context: Context
) -> None:
    front, _rear = two_sims
    node = start_node(ros_context, "front", Parameter("device_name", value=FRONT))
    listener = Node("fault_listener", context=ros_context)
    received = listen(listener, "front")
    with spinning(ros_context, [node], listener):
        wait_until(lambda: received.count() >= 3, "first samples")
        first = received.batteries[0]
        assert len(first.cell_voltage) == 16
        assert all(3.0 < voltage < 3.6 for voltage in first.cell_voltage)
        assert first.capacity == pytest.approx(100.0)
        assert 0.0 < first.percentage <= 1.0
        model = BatteryModel()  # what daly-bms-sim runs with its defaults
        assert received.cells[0].cycles == model.cycles
        assert first.percentage == pytest.approx(model.initial_soc, abs=0.02)  # just started
        assert first.voltage == pytest.approx(sum(first.cell_voltage), abs=0.1)
        wait_until(
            lambda: received.diagnostic_values().get("firmware_version") == "11_261125_SIM1",
            "firmware",
        )

        # Spoiled answers are counted and dropped; data keeps flowing.
        for fault in ("corrupt_crc", "truncated", "duplicate"):
            assert front.control({"fault": fault}) == {"armed": {fault: 1}}
            wait_for_new_samples(received, 2, f"samples after {fault}")
        wait_until(
            lambda: int(received.diagnostic_values().get("rejected_bad_crc", "0")) >= 1,
            "bad CRC counted",
        )
        wait_for_new_samples(received, 3, "samples after the faults")

        # The BMS drops the link: the node reconnects by itself.
        assert front.control({"link": "disconnect"}) == {"link": "disconnect"}
        wait_until(
            lambda: int(received.diagnostic_values().get("reconnects", "0")) >= 1, "a reconnect"
        )
        wait_for_new_samples(received, 3, "samples after the reconnect")

        # The BMS falls asleep: diagnostics say so and nothing is published meanwhile.
        assert front.control({"link": "sleep"}) == {"link": "sleep"}
        wait_until(
            lambda: received.diagnostic_values().get("link_state") != "connected", "link down"
        )
        down = received.diagnostics[-1]
        assert down.level == DiagnosticStatus.ERROR
        asleep_count = received.count()
        time.sleep(2.0)
        assert received.count() == asleep_count, "published while the BMS was asleep"
        assert received.diagnostic_values()["link_state"] in {"backoff", "connecting"}

        # It wakes: the node finds it again and publishes fresh samples only.
        last_stamp = received.batteries[-1].header.stamp
        assert front.control({"link": "wake"}) == {"link": "wake"}
        wait_until(lambda: received.count() >= asleep_count + 3, "samples after waking")
        with received.lock:
            fresh = received.batteries[asleep_count:]
        assert all(
            (m.header.stamp.sec, m.header.stamp.nanosec) > (last_stamp.sec, last_stamp.nanosec)
            for m in fresh
        )
        assert int(received.diagnostic_values()["reconnects"]) >= 2
        wait_until(
            lambda: received.diagnostics[-1].level == DiagnosticStatus.OK, "diagnostics OK again"
        )


def test_two_batteries_two_nodes_two_namespaces(
    two_sims: tuple[SimProcess, SimProcess], ros_context: Context
) -> None:
    nodes = [
        start_node(ros_context, "front", Parameter("mac_address", value=peripheral_address(1))),
        start_node(ros_context, "rear", Parameter("device_name", value=REAR)),
    ]
    listener = Node("two_listener", context=ros_context)
    front, rear = listen(listener, "front"), listen(listener, "rear")
    with spinning(ros_context, nodes, listener):
        wait_until(lambda: front.count() >= 2 and rear.count() >= 2, "both batteries")
        assert {len(m.cell_voltage) for m in front.batteries} == {16}
        assert {len(m.cell_voltage) for m in rear.batteries} == {8}
        assert front.batteries[-1].capacity == pytest.approx(100.0)
        assert rear.batteries[-1].capacity == pytest.approx(50.0)
        assert {len(m.cell_voltages) for m in rear.cells} == {8}
        wait_until(
            lambda: bool(front.diagnostic_values() and rear.diagnostic_values()), "diagnostics"
        )
        assert front.diagnostic_values()["device"] == f"{FRONT} ({peripheral_address(1)})"
        assert rear.diagnostic_values()["device"] == f"{REAR} ({peripheral_address(2)})"


def test_node_reads_a_bms_of_the_0x81_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ros_context: Context
) -> None:
    name = f"{NAME_PREFIX}X81"
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with (
            sim_process(name, tmp_path, "hci1", "--protocol", "x81", "--cells", "40"),
            node_reading(ros_context, "x81", Parameter("device_name", value=name)) as received,
        ):
            battery = received.batteries[-1]
            assert len(battery.cell_voltage) == 40
            assert all(3.0 < voltage < 3.6 for voltage in battery.cell_voltage)
            assert math.isnan(battery.capacity)  # this variant does not tell it
            assert received.cells[-1].mos_temperature > 0
            wait_until(
                lambda: received.diagnostic_values().get("firmware_version") == "11_261125_SIM1",
                "versions from the 0x81 device-information block",
            )
            assert received.diagnostic_values()["hardware_version"] == DEVICE_INFO.hardware_version
