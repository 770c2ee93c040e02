"""Spin ROS nodes in a background thread, so a test can wait on HTTP or files meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rclpy.context import Context
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


def spin_in_background(
    context: Context, *nodes: Node, single_threaded: bool = False
) -> Callable[[], None]:
    """Spin ``nodes`` in a thread; return the function that stops it.

    ``single_threaded``: the executor ``rclpy.spin`` uses, as the installed node runs.
    """
    executor: Executor = (
        SingleThreadedExecutor(context=context)
        if single_threaded
        else MultiThreadedExecutor(context=context)
    )
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()

    def stop() -> None:
        executor.shutdown()
        thread.join(10)

    return stop
