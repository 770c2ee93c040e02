"""The generated interfaces travel through real rclpy and DDS (localhost only, own domain)."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState

from daly_bms_ros.msg import DalyCells


def round_trip(context: Context, msg_type: Any, message: Any) -> Any:
    """Publish ``message`` from one node and return what a second node received."""
    publisher_node = Node("interfaces_test_publisher", context=context)
    subscriber_node = Node("interfaces_test_subscriber", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(publisher_node)
    executor.add_node(subscriber_node)
    received: list[Any] = []
    arrived = threading.Event()
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def on_message(msg: Any) -> None:
        received.append(msg)
        arrived.set()

    subscriber_node.create_subscription(msg_type, "round_trip", on_message, qos)
    publisher = publisher_node.create_publisher(msg_type, "round_trip", qos)
    try:
        for _ in range(200):
            publisher.publish(message)
            executor.spin_once(timeout_sec=0.05)
            if arrived.is_set():
                break
    finally:
        executor.shutdown()
        publisher_node.destroy_node()
        subscriber_node.destroy_node()
    assert received, f"no {msg_type.__name__} arrived through DDS"
    return received[0]


def test_daly_cells_round_trip(ros_context: Context) -> None:
    message = DalyCells()
    message.header.frame_id = "battery"
    message.cell_voltages = [3.188, 3.199, 3.2]
    message.balancing = [False, True, False]
    message.min_cell_voltage = 3.188
    message.max_cell_voltage = 3.2
    message.average_cell_voltage = 3.198
    message.cell_voltage_delta = 0.012
    message.min_cell_index = 1
    message.max_cell_index = 3
    message.temperatures = [23.0, 24.0]
    message.mos_temperature = math.nan

    received = round_trip(ros_context, DalyCells, message)

    assert received.header.frame_id == "battery"
    assert list(received.cell_voltages) == pytest.approx([3.188, 3.199, 3.2])
    assert list(received.balancing) == [False, True, False]
    assert (received.min_cell_index, received.max_cell_index) == (1, 3)
    assert received.cell_voltage_delta == pytest.approx(0.012)
    assert list(received.temperatures) == [23.0, 24.0]
    assert math.isnan(received.mos_temperature)


def test_battery_state_round_trip(ros_context: Context) -> None:
    message = BatteryState()
    message.voltage = 51.1
    message.current = -2.5
    message.percentage = 0.087
    message.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_LIFE
    message.cell_voltage = [3.188, 3.199]
    message.present = True

    received = round_trip(ros_context, BatteryState, message)

    assert received.voltage == pytest.approx(51.1)
    assert received.current == pytest.approx(-2.5)
    assert received.percentage == pytest.approx(0.087)
    assert received.power_supply_technology == BatteryState.POWER_SUPPLY_TECHNOLOGY_LIFE
    assert list(received.cell_voltage) == pytest.approx([3.188, 3.199])
    assert received.present


def test_generated_and_hand_written_modules_import_together() -> None:
    import daly_bms_ros
    import daly_bms_ros.msg

    installed = [path for path in daly_bms_ros.__path__ if "site-packages" in path]
    assert installed, "the installed copy of daly_bms_ros is not part of the package path"
    assert daly_bms_ros.msg.DalyCells is DalyCells
