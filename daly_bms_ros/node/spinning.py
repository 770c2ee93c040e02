"""Spin until SIGINT/SIGTERM, wherever the signal falls."""

from __future__ import annotations

from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def spin_until_signal(*nodes: Node) -> None:
    """Spin ``nodes`` in one executor until a signal shuts the context down; return quietly.

    A signal between the executor's check of the context and its wait set makes rclpy fail
    to build the wait set on the context its signal handler has just shut down (RCLError):
    that is a stop too, not a crash (a traceback and exit status 1 on SIGINT otherwise).
    """
    executor = SingleThreadedExecutor()  # what rclpy.spin uses
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if executor.context.ok():
            raise
