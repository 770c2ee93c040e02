"""The node's write services, called from a separate client node over DDS, against the virtual
BMS through the real bleak: refused without allow_control or confirmation, verified by
read-back, reported as failed when the BMS does not take a write, polling on around them."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bluez_mock import NAME_PREFIX, SimProcess, one_virtual_bms
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from ros_spin import spin_in_background
from sensor_msgs.msg import BatteryState
from test_e2e_faults import FAST_LINK

from daly_bms_ros.msg import DalyCells, DalySettings
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.srv import Restart, SetSetting, SetSoc, SetSwitch

NAME = f"{NAME_PREFIX}CTRL"


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimProcess]:
    with one_virtual_bms(tmp_path, monkeypatch, NAME, "--load-period", "40") as process:
        yield process


class Robot:
    """A separate node that calls the BMS node's services and listens to its topics."""

    def __init__(self, context: Context, namespace: str) -> None:
        self.node = Node("robot_supervisor", context=context)
        self.namespace = namespace
        self.cells: list[DalyCells] = []
        self.settings: list[DalySettings] = []
        self.battery: list[BatteryState] = []
        self.lock = threading.Lock()
        self.node.create_subscription(DalyCells, f"/{namespace}/cells", self._keep(self.cells), 20)
        self.node.create_subscription(
            BatteryState, f"/{namespace}/battery_state", self._keep(self.battery), 20
        )
        self.node.create_subscription(
            DalySettings,
            f"/{namespace}/settings",
            self._keep(self.settings),
            QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL),
        )

    def _keep(self, target: list[Any]) -> Callable[[Any], None]:
        def append(message: Any) -> None:
            with self.lock:
                target.append(message)

        return append

    def call(self, kind: Any, service: str, **fields: Any) -> Any:
        client = self.node.create_client(kind, f"/{self.namespace}/{service}")
        try:
            assert client.wait_for_service(timeout_sec=10), service
            future = client.call_async(kind.Request(requester="robot_supervisor", **fields))
            deadline = time.monotonic() + 30
            while not future.done():
                assert time.monotonic() < deadline, f"no answer from {service}"
                time.sleep(0.02)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def latest_setting(self, name: str) -> float:
        with self.lock:
            if not self.settings:
                return math.nan
            message = self.settings[-1]
        return message.values[message.names.index(name)]

    def latest_cells(self) -> DalyCells | None:
        with self.lock:
            return self.cells[-1] if self.cells else None


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_writes_through_the_services_are_verified_and_polling_goes_on(
    sim: SimProcess, ros_context: Context
) -> None:
    bms = DalyBmsNode(
        context=ros_context,
        namespace="front",
        parameter_overrides=[
            *FAST_LINK,
            Parameter("device_name", value=NAME),
            Parameter("allow_control", value=True),
        ],
    )
    robot = Robot(ros_context, "front")
    # The executor of rclpy.spin, as the installed node runs: a write awaiting the BMS must
    # leave it free to publish.
    stop = spin_in_background(ros_context, bms, robot.node, single_threaded=True)
    try:
        wait_until(lambda: robot.latest_setting("discharge_switch") == 1.0, "latched settings")
        refused = robot.call(SetSwitch, "set_discharge_mos", enable=False)
        assert not refused.success
        assert "without confirmation" in refused.message
        done = robot.call(SetSwitch, "set_discharge_mos", enable=False, confirm_power_cut=True)
        assert done.success, done.message
        assert (done.previous, done.current) == (1.0, 0.0)
        assert "robot_supervisor" in done.message
        wait_until(
            lambda: (cells := robot.latest_cells()) is not None and not cells.discharge_mos,
            "the discharge MOS off in the published cells",
        )
        wait_until(lambda: robot.latest_setting("discharge_switch") == 0.0, "settings again")
        assert robot.call(
            SetSwitch, "set_discharge_mos", enable=True
        ).success  # on needs no confirm
        with robot.lock:
            reported = robot.battery[-1].percentage * 100
        soc = robot.call(SetSoc, "set_soc", soc=100.0)
        assert (soc.success, soc.current) == (True, 100.0)
        # The SOC the BMS reported (a sample later at most: 0.1 % steps), not the register's.
        assert soc.previous == pytest.approx(reported, abs=0.15)
        assert "the BMS reported" in soc.message
        # A protection threshold or the sleep time, set wrong, makes the BMS cut the power.
        unconfirmed = robot.call(SetSetting, "set_setting", name="sleep_time", value=1800.0)
        assert not unconfirmed.success and "without confirmation" in unconfirmed.message
        sleep = robot.call(
            SetSetting, "set_setting", name="sleep_time", value=1800.0, confirm_power_cut=True
        )
        assert (sleep.success, sleep.previous, sleep.current) == (True, 3600.0, 1800.0)
        # A value that would round to a power cut is refused, not rounded.
        rounded = robot.call(SetSetting, "set_setting", name="discharge_switch", value=0.3)
        assert not rounded.success and "steps of 1" in rounded.message
        unknown = robot.call(SetSetting, "set_setting", name="turbo", value=1.0)
        assert not unknown.success and "no setting 'turbo'" in unknown.message
        sim.control({"fault": "ignored_write", "count": 2})
        ignored = robot.call(SetSwitch, "set_charge_mos", enable=False)
        assert not ignored.success
        assert "did not take it" in ignored.message
        assert ignored.current == 1.0  # read back: still on
        assert not robot.call(Restart, "restart").success  # not confirmed
        restarted = robot.call(Restart, "restart", confirm_power_cut=True)
        assert restarted.success, restarted.message
        # A command has no value before or after: sent and echoed is all there is.
        assert restarted.message.startswith(
            "command by robot_supervisor: restart sent and echoed (register 0x00F0 = 1"
        ), restarted.message
        count = len(robot.cells)
        wait_until(lambda: len(robot.cells) > count + 5, "samples after the restart")
    finally:
        stop()
        bms.close()


def test_every_write_is_refused_without_allow_control(ros_context: Context) -> None:
    # Refused before anything reaches a link: no BMS is needed to show it.
    bms = DalyBmsNode(
        context=ros_context,
        namespace="rear",
        parameter_overrides=[*FAST_LINK, Parameter("device_name", value="DL-ABSENT")],
    )
    robot = Robot(ros_context, "rear")
    stop = spin_in_background(ros_context, bms, robot.node)
    try:
        answers = [
            robot.call(SetSwitch, "set_charge_mos", enable=False),
            robot.call(SetSwitch, "set_discharge_mos", enable=False, confirm_power_cut=True),
            robot.call(SetSwitch, "set_balancing", enable=True),
            robot.call(SetSoc, "set_soc", soc=100.0),
            robot.call(SetSetting, "set_setting", name="sleep_time", value=10.0),
            robot.call(Restart, "restart", confirm_power_cut=True),
        ]
        for answer in answers:
            assert not answer.success
            assert "control of the BMS is off" in answer.message
            assert "allow_control:=true" in answer.message
    finally:
        stop()
        bms.close()
