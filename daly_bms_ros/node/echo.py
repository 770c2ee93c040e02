"""Print a battery's topics the way `ros2 topic echo` does, for machines without ros2cli.

`python -m daly_bms_ros.node.echo [--namespace NS]` subscribes to battery_state and cells and
prints every message as YAML, separated by `---`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import BatteryState

from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.spinning import spin_until_signal


def format_value(value: Any) -> str:
    """Format a scalar like the ROS YAML dump: floats with their repr, NaN as `.nan`."""
    if isinstance(value, float):
        return ".nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return f"'{value}'"
    return str(value).lower() if isinstance(value, bool) else str(value)


def message_to_yaml(message: Any, indent: str = "") -> str:
    """Render a ROS message (fields in declaration order) as YAML text."""
    lines: list[str] = []
    for field in message.get_fields_and_field_types():
        value = getattr(message, field)
        if hasattr(value, "get_fields_and_field_types"):
            lines.append(f"{indent}{field}:")
            lines.append(message_to_yaml(value, indent + "  "))
        elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
            items = value.tolist() if hasattr(value, "tolist") else list(value)
            if not items:
                lines.append(f"{indent}{field}: []")
            else:
                lines.append(f"{indent}{field}:")
                lines.extend(f"{indent}- {format_value(item)}" for item in items)
        else:
            lines.append(f"{indent}{field}: {format_value(value)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Subscribe and print until Ctrl+C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="", help="namespace of the battery's topics")
    arguments, ros_arguments = parser.parse_known_args(argv)
    rclpy.init(args=[sys.argv[0], *ros_arguments])
    node = Node("daly_bms_echo", namespace=arguments.namespace)

    def printer(topic: str) -> Any:
        name = node.resolve_topic_name(topic)

        def show(message: Any) -> None:
            print(f"# {name}\n{message_to_yaml(message)}\n---", flush=True)

        return show

    # Best effort matches both reliable and best-effort publishers.
    for message_type, topic in ((BatteryState, "battery_state"), (DalyCells, "cells")):
        node.create_subscription(message_type, topic, printer(topic), qos_profile_sensor_data)
    spin_until_signal(node, close=node.destroy_node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
