"""Spin until SIGINT/SIGTERM, wherever the signal falls, and shut down in a safe order."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def spin_until_signal(*nodes: Node, close: Callable[[], None]) -> None:
    """Spin ``nodes`` in one executor until a signal shuts the context down, then end.

    A signal between the executor's check of the context and its wait set makes rclpy fail
    to build the wait set on the context its signal handler has just shut down (RCLError):
    that is a stop too, not a crash (a traceback and exit status 1 on SIGINT otherwise).
    Then ``close`` releases the nodes, rclpy is shut down, and only then is the executor
    destroyed: its guard condition is registered with rclpy's signal handler, whose thread
    shuts the context down first and triggers the guard conditions after; an executor
    destroyed as soon as its spin ends can be freed under that thread (a segfault on Ctrl+C,
    once in 21 stops of ``ros2 launch``). Shutting rclpy down uninstalls the handler and so
    stops its thread.
    """
    executor = SingleThreadedExecutor()  # what rclpy.spin uses
    try:
        for node in nodes:
            executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except RCLError:
            if executor.context.ok():
                raise
    finally:
        try:
            close()
        finally:
            rclpy.try_shutdown()
            executor.shutdown()
