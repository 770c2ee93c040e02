"""Entry point of ``daly_bms_node`` (``ros2 run daly_bms_ros daly_bms_node``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException

from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.node.parameters import InvalidSettingError

#: Exit status for parameters that are not allowed: restarting cannot help.
EXIT_INVALID_PARAMETER = 2


def main(args: Sequence[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM, then disconnect cleanly and return 0."""
    rclpy.init(args=None if args is None else list(args))
    try:
        node = DalyBmsNode()
    except (InvalidSettingError, ParameterException) as error:
        rclpy.logging.get_logger("daly_bms").fatal(f"invalid parameter: {error}")
        rclpy.try_shutdown()
        return EXIT_INVALID_PARAMETER
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
