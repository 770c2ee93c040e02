"""The node under test in-process, and a second node that records what it publishes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from bms_double import BmsDouble
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import BatteryState

from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.node import DalyBmsNode

FAST = {
    "poll_interval": 0.2,
    "request_timeout": 0.5,
    "request_retries": 1,
    "reconnect_delay_min": 0.1,
    "reconnect_delay_max": 0.4,
    "diagnostics_period": 0.2,
    "mac_address": "C6:6C:09:03:1B:9E",
    "location": "rear bay",
}
WAIT_S = 30.0


class Listener:
    """A second node that records what the driver publishes."""

    def __init__(self, context: Context, namespace: str = "") -> None:
        self.node = Node("listener", context=context, namespace=namespace)
        self.battery: list[Any] = []
        self.cells: list[Any] = []
        self.diagnostics: list[Any] = []
        self.lock = threading.RLock()
        for message_type, topic, store in (
            (BatteryState, "battery_state", self.battery),
            (DalyCells, "cells", self.cells),
            (DiagnosticArray, "/diagnostics", self.diagnostics),
        ):
            self.node.create_subscription(message_type, topic, self._keeper(store), 50)

    def _keeper(self, store: list[Any]) -> Callable[[Any], None]:
        def keep(message: Any) -> None:
            with self.lock:
                store.append(message)

        return keep

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                if condition():
                    return
            time.sleep(0.02)
        pytest.fail(f"timed out waiting for {what}")

    def last_diagnostic(self) -> DiagnosticStatus | None:
        with self.lock:
            return self.diagnostics[-1].status[0] if self.diagnostics else None


@contextmanager
def node_running(
    context: Context,
    double: BmsDouble,
    node_class: type[Any] = DalyBmsNode,
    parameter_overrides_extra: list[Parameter[Any]] | None = None,
    namespace: str = "",
    extra_nodes: list[Node] | None = None,
    **overrides: Any,
) -> Iterator[tuple[Any, Listener]]:
    """The node on ``double`` (FAST timing; ``overrides`` are parameters) and a listener.

    They spin, with ``extra_nodes``, until the block ends.
    """
    parameters = [Parameter(name, value=value) for name, value in {**FAST, **overrides}.items()]
    node = node_class(
        transport_factory=lambda _settings: double,
        context=context,
        parameter_overrides=parameters + (parameter_overrides_extra or []),
        namespace=namespace,
    )
    listener = Listener(context, namespace)
    executor = MultiThreadedExecutor(context=context)
    for spun in (node, listener.node, *(extra_nodes or [])):
        executor.add_node(spun)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node, listener
    finally:
        node.close()
        executor.shutdown()
        thread.join(10)
        node.destroy_node()
        listener.node.destroy_node()
