"""Spin ROS nodes in a background thread, so a test can wait on HTTP or files meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node


def spin_in_background(context: Context, *nodes: Node) -> Callable[[], None]:
    """Spin ``nodes`` in a thread; return the function that stops it."""
    executor = MultiThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()

    def stop() -> None:
        executor.shutdown()
        thread.join(10)

    return stop
