"""Entry point of ``daly_bms_node`` (``ros2 run daly_bms_ros daly_bms_node``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Protocol

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.node.parameters import InvalidSettingError

#: Exit status for parameters that are not allowed: restarting cannot help.
EXIT_INVALID_PARAMETER = 2
#: Exit status when the node cannot start for another reason (e.g. a port in use).
EXIT_START_FAILED = 1


class ClosableNode(Protocol):
    """A node with resources of its own to release before it is destroyed."""

    def close(self) -> None:
        """Release what the node holds besides ROS entities."""

    def destroy_node(self) -> None:
        """Destroy the ROS node."""


def run_node(
    create: Callable[[], ClosableNode], name: str, args: Sequence[str] | None = None
) -> int:
    """Spin a node until SIGINT/SIGTERM, then close it cleanly and return 0.

    A refused parameter returns 2 (a restart cannot help); an OSError while starting returns 1.
    """
    rclpy.init(args=None if args is None else list(args))
    try:
        node = create()
    except (InvalidSettingError, ParameterException) as error:
        rclpy.logging.get_logger(name).fatal(f"invalid parameter: {error}")
        rclpy.try_shutdown()
        return EXIT_INVALID_PARAMETER
    except OSError as error:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return EXIT_START_FAILED
    assert isinstance(node, Node)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: Sequence[str] | None = None) -> int:
    """Run the BMS node."""
    return run_node(DalyBmsNode, "daly_bms", args)


if __name__ == "__main__":
    sys.exit(main())
