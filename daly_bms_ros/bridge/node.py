"""``daly_bms_bridge``: serve the battery topics of one or more BMS nodes over HTTP/JSON.

It subscribes ``<namespace>/battery_state`` and ``<namespace>/cells`` of each battery in the
``batteries`` parameter, pairs the two messages of each sample by their stamp, and keeps the
latest per battery in memory for the HTTP server (and the data directory, when set). The URL
it serves, with the port actually bound, is published on ``~/url`` (transient local).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from sensor_msgs.msg import BatteryState
from std_msgs.msg import String

from daly_bms_ros.bridge.files import DataDirectoryWriter
from daly_bms_ros.bridge.http_server import DEFAULT_HOST, BridgeHttpServer, exposure_warning
from daly_bms_ros.bridge.store import PUBLISHING, SampleStore
from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.main import run_node
from daly_bms_ros.node.messages import sample_from_messages
from daly_bms_ros.node.parameters import InvalidSettingError

#: Name of the battery in the bridge's own namespace (parameter value "").
DEFAULT_BATTERY = "bms"
QUEUE_DEPTH = 10


def battery_name(namespace: str) -> str:
    """Name a battery in the HTTP paths: its namespace without slashes."""
    return namespace.strip("/").replace("/", "_") or DEFAULT_BATTERY


def topic(namespace: str, name: str) -> str:
    """``name`` in ``namespace``; relative (the bridge's own namespace) when that is empty."""
    return f"{namespace.rstrip('/')}/{name}" if namespace.strip("/") else name


class _Pairing:
    """Wait for the BatteryState and the DalyCells of the same stamp, then store the sample."""

    def __init__(self, store: SampleStore, name: str) -> None:
        self._store = store
        self._name = name
        self._battery: BatteryState | None = None
        self._cells: DalyCells | None = None

    def _combine(self) -> None:
        if self._battery is None or self._cells is None:
            return
        if self._battery.header.stamp == self._cells.header.stamp:
            self._store.update(self._name, sample_from_messages(self._battery, self._cells))
            self._store.set_link(self._name, PUBLISHING)
            self._battery = self._cells = None

    def on_battery_state(self, message: BatteryState) -> None:
        self._battery = message
        self._combine()

    def on_cells(self, message: DalyCells) -> None:
        self._cells = message
        self._combine()


class DalyBmsBridge(Node):
    """Subscribe the batteries' topics and serve them over HTTP."""

    def __init__(self, **node_options: Any) -> None:
        super().__init__("daly_bms_bridge", **node_options)
        namespaces = self._declare(
            "batteries",
            [""],
            "namespaces of the battery nodes to serve; '' is the bridge's own namespace",
        )
        host = self._declare(
            "host", DEFAULT_HOST, "address to bind; 0.0.0.0 exposes the bridge to the network"
        )
        port = self._declare(
            "port",
            8080,
            "TCP port (0: any free port)",
            integer_range=[IntegerRange(from_value=0, to_value=65535, step=1)],
        )
        max_age = self._declare(
            "max_age",
            5.0,
            "seconds after which a sample is stale: answers become 503",
            floating_point_range=[FloatingPointRange(from_value=0.1, to_value=3600.0, step=0.0)],
        )
        data_dir = self._declare(
            "data_dir", "", "directory for latest.json and status.json; '' writes no files"
        )
        names = [battery_name(namespace) for namespace in namespaces]
        if len(set(names)) != len(names):
            raise InvalidSettingError(
                f"batteries must name distinct namespaces, got {list(namespaces)}"
            )
        if not host:
            raise InvalidSettingError("host must be an address to bind, e.g. 127.0.0.1")
        self.store = SampleStore(names, max_age)
        for namespace, name in zip(namespaces, names, strict=True):
            pairing = _Pairing(self.store, name)
            self.create_subscription(
                BatteryState,
                topic(namespace, "battery_state"),
                pairing.on_battery_state,
                QUEUE_DEPTH,
            )
            self.create_subscription(
                DalyCells, topic(namespace, "cells"), pairing.on_cells, QUEUE_DEPTH
            )
        self._writer = DataDirectoryWriter(self.store, Path(data_dir)) if data_dir else None
        if self._writer is not None:
            try:
                self._writer.check()
            except ValueError as error:
                raise InvalidSettingError(str(error)) from error
        self.server = BridgeHttpServer(self.store, host, port)
        self.server.start()
        # The address actually served (port 0 picks a free one), latched for late subscribers.
        self._url_publisher = self.create_publisher(
            String,
            "~/url",
            QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL),
        )
        self._url_publisher.publish(String(data=self.server.url))
        if self._writer is not None:
            self._writer.start()
        self.get_logger().info(f"serving {', '.join(names)} on {self.server.url}")
        if (warning := exposure_warning(host)) is not None:
            self.get_logger().warning(warning)

    def _declare(self, name: str, default: Any, description: str, **ranges: Any) -> Any:
        descriptor = ParameterDescriptor(description=description, read_only=True, **ranges)
        return self.declare_parameter(name, default, descriptor).value

    def close(self) -> None:
        """Stop serving and write the files a last time."""
        self.server.stop()
        if self._writer is not None:
            self._writer.stop()


def main(args: Sequence[str] | None = None) -> int:
    """Run the bridge node."""
    return run_node(DalyBmsBridge, "daly_bms_bridge", args)


if __name__ == "__main__":
    sys.exit(main())
