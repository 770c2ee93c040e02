"""Entry point of ``daly_bms_node`` (``ros2 run daly_bms_ros daly_bms_node``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Protocol

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.exceptions import NotInitializedException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.node.parameters import InvalidSettingError
from daly_bms_ros.node.spinning import spin_until_signal

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

    A refused parameter or argument (a parameters file that does not parse) returns 2 (a
    restart cannot help); an OSError while starting returns 1; a signal while starting returns
    0 without a traceback.
    """
    try:
        rclpy.init(args=None if args is None else list(args))
    except RCLError as error:  # e.g. a parameters file that is not YAML: fix it, no restart
        rclpy.logging.get_logger(name).fatal(f"invalid arguments: {error}")
        return EXIT_INVALID_PARAMETER
    try:
        node = create()
    except (KeyboardInterrupt, ExternalShutdownException):
        rclpy.try_shutdown()  # stopped while starting: as quiet as a stop later on
        return 0
    except (RCLError, NotInitializedException):
        if rclpy.ok():
            raise
        return 0  # a signal shut the context down while the node was being built
    except (InvalidSettingError, ParameterException) as error:
        rclpy.logging.get_logger(name).fatal(f"invalid parameter: {error}")
        rclpy.try_shutdown()
        return EXIT_INVALID_PARAMETER
    except OSError as error:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return EXIT_START_FAILED
    assert isinstance(node, Node)

    def close() -> None:
        try:
            node.close()
        finally:
            node.destroy_node()

    # A node may serve others in the same process (daly_bms_fleet: one per pack).
    spin_until_signal(node, *getattr(node, "children", ()), close=close)
    return 0


def main(args: Sequence[str] | None = None) -> int:
    """Run the BMS node."""
    return run_node(DalyBmsNode, "daly_bms", args)


if __name__ == "__main__":
    sys.exit(main())
