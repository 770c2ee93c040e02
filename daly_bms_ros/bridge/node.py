"""``daly_bms_bridge``: serve the battery topics of one or more BMS nodes over HTTP/JSON.

It subscribes ``<namespace>/battery_state`` and ``<namespace>/cells`` of each battery in the
``batteries`` parameter, pairs the two messages of each sample by their stamp, and keeps the
latest per battery in memory for the HTTP server (and the data directory, when set). The URL
it serves, with the port actually bound, is published on ``~/url`` (transient local). The
link's counters (reconnects, rejected frames) come from ``/diagnostics``: the status whose
hardware id is the battery's serial number. With ``mqtt_host`` set, it also publishes to that
MQTT broker (Home Assistant discovery included).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from sensor_msgs.msg import BatteryState
from std_msgs.msg import String

from daly_bms_ros.bridge.files import DataDirectoryWriter
from daly_bms_ros.bridge.http_server import DEFAULT_HOST, BridgeHttpServer, exposure_warning
from daly_bms_ros.bridge.mqtt import MqttPublisher, MqttSettings
from daly_bms_ros.bridge.store import PUBLISHING, LinkCounters, SampleStore
from daly_bms_ros.link.supervisor import LinkState
from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.main import run_node
from daly_bms_ros.node.messages import sample_from_battery_state, sample_from_messages
from daly_bms_ros.node.node import DIAGNOSTIC_TASK
from daly_bms_ros.node.parameters import (
    InvalidSettingError,
    check_parameter_files,
    namespace_of,
    parameter_files,
)

#: The link states (diagnostics' ``link_state``) in which a node delivers samples.
LINK_STATES_DELIVERING = (LinkState.CONNECTED.value, LinkState.IN_TURN.value)
#: Name of the battery in the bridge's own namespace (parameter value "").
DEFAULT_BATTERY = "bms"
QUEUE_DEPTH = 10


def battery_name(namespace: str) -> str:
    """Name a battery in the HTTP paths: its namespace without slashes."""
    return namespace.strip("/").replace("/", "_") or DEFAULT_BATTERY


def reported_link(status: DiagnosticStatus) -> str | None:
    """Return the link as a battery's diagnostics tell it when it delivers nothing, else None.

    A node's status: ``backoff: <why>`` (its link state and last error), as ``daly-bms serve``
    words it. A pack group's (daly_bms_fleet's ``group <name>``, no link of its own): its
    message while it is not OK, e.g. which member's state is too old.
    """
    values = {entry.key: entry.value for entry in status.values}
    state = values.get("link_state")
    if state is None:
        return None if status.level == DiagnosticStatus.OK else status.message
    if state in LINK_STATES_DELIVERING:
        return None
    error = values.get("last_error", "")
    return f"{state}: {error}" if error else state


def topic(namespace: str, name: str) -> str:
    """``name`` in ``namespace``; relative (the bridge's own namespace) when that is empty."""
    return f"{namespace.rstrip('/')}/{name}" if namespace.strip("/") else name


class _Pairing:
    """Wait for the BatteryState and the DalyCells of the same stamp, then store the sample.

    A battery that publishes no DalyCells (a pack group of daly_bms_fleet: no cell voltages in
    its BatteryState, no publisher of its ``cells`` on the graph, none ever heard) is a battery
    too: its BatteryState alone is the sample.
    """

    def __init__(self, store: SampleStore, name: str, cells_publishers: Callable[[], int]) -> None:
        self._store = store
        self._name = name
        self._cells_publishers = cells_publishers
        self._cells_heard = False
        self._battery: BatteryState | None = None
        self._cells: DalyCells | None = None
        #: The battery's serial number, as its last BatteryState told (its diagnostics' id).
        self.serial_number = ""
        #: Its identity, once two BatteryStates in a row told the same (None before).
        self._identity: str | None = None

    def _combine(self) -> None:
        if self._battery is None or self._cells is None:
            return
        if self._battery.header.stamp == self._cells.header.stamp:
            self._store.update(
                self._name, sample_from_messages(self._battery, self._cells), self._identity
            )
            self._store.set_link(self._name, PUBLISHING)
            self._battery = self._cells = None

    def on_battery_state(self, message: BatteryState) -> None:
        self._battery = message
        # A node tells its BMS's address (a wired one: port and board) until the BMS has told
        # its own serial number, after the first sample: a passing identity is not taken.
        if message.serial_number == self.serial_number:
            self._identity = message.serial_number or self._name
        self.serial_number = message.serial_number
        # A pack's BatteryState lists its cells; while its DalyCells publisher is not yet
        # discovered, the BatteryState waits for them all the same.
        if not (self._cells_heard or message.cell_voltage) and self._cells_publishers() == 0:
            self._store.update(
                self._name,
                sample_from_battery_state(message, f"{message.location or self._name} (group)"),
                self._identity,
            )
            self._store.set_link(self._name, PUBLISHING)
            return
        self._combine()

    def on_cells(self, message: DalyCells) -> None:
        self._cells_heard = True
        self._cells = message
        self._combine()


class DalyBmsBridge(Node):
    """Subscribe the batteries' topics and serve them over HTTP."""

    def __init__(self, parameter_files: Sequence[str] = (), **node_options: Any) -> None:
        """Check the parameters (and ``parameter_files`` for keys written twice), serve."""
        super().__init__("daly_bms_bridge", **node_options)
        check_parameter_files(parameter_files)
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
        # '' (or '/') is the bridge's own namespace; rcl takes only names of letters, digits, _.
        namespaces = [
            namespace_of(value, "batteries", relative=True) if value.strip("/") else ""
            for value in namespaces
        ]
        names = [battery_name(namespace) for namespace in namespaces]
        if len(set(names)) != len(names):
            raise InvalidSettingError(
                f"batteries must name distinct namespaces, got {list(namespaces)}"
            )
        if not host:
            raise InvalidSettingError("host must be an address to bind, e.g. 127.0.0.1")
        self.store = SampleStore(names, max_age)
        pairings = {}
        for namespace, name in zip(namespaces, names, strict=True):
            cells = topic(namespace, "cells")
            pairing = pairings[name] = _Pairing(
                self.store, name, functools.partial(self.count_publishers, cells)
            )
            self.create_subscription(
                BatteryState,
                topic(namespace, "battery_state"),
                pairing.on_battery_state,
                QUEUE_DEPTH,
            )
            self.create_subscription(DalyCells, cells, pairing.on_cells, QUEUE_DEPTH)
        self._pairings = pairings
        #: The diagnostics status name of each battery's node, fully qualified.
        own = self.get_namespace().rstrip("/")
        self._status_names = {
            name: f"{namespace or own}/daly_bms: {DIAGNOSTIC_TASK}"
            for namespace, name in zip(namespaces, names, strict=True)
        }
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, QUEUE_DEPTH)
        mqtt = self._mqtt_settings()
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
        self._mqtt = MqttPublisher(self.store, mqtt) if mqtt is not None else None
        if self._mqtt is not None:
            self._mqtt.start()
        self.get_logger().info(f"serving {', '.join(names)} on {self.server.url}")
        if (warning := exposure_warning(host)) is not None:
            self.get_logger().warning(warning)

    def _mqtt_settings(self) -> MqttSettings | None:
        """Declare the MQTT parameters; return their settings, None when ``mqtt_host`` is ''."""
        host = self._declare("mqtt_host", "", "MQTT broker to publish to; '' publishes nothing")
        port = self._declare(
            "mqtt_port",
            1883,
            "MQTT broker's port",
            integer_range=[IntegerRange(from_value=1, to_value=65535, step=1)],
        )
        username = self._declare("mqtt_username", "", "user name at the broker; '' for none")
        password_file = self._declare(
            "mqtt_password_file", "", "file holding the broker password (not a parameter: visible)"
        )
        tls = self._declare("mqtt_tls", False, "TLS to the broker")
        ca_file = self._declare("mqtt_ca_file", "", "CA certificate for TLS; '' the system's")
        topic_prefix = self._declare("mqtt_topic_prefix", "daly_bms", "first level of the topics")
        discovery_prefix = self._declare(
            "mqtt_discovery_prefix", "homeassistant", "Home Assistant's discovery prefix"
        )
        interval = self._declare(
            "mqtt_interval",
            5.0,
            "seconds between state messages",
            floating_point_range=[FloatingPointRange(from_value=0.1, to_value=3600.0, step=0.0)],
        )
        if not host:
            return None
        try:
            password = Path(password_file).read_text().strip() if password_file else None
        except OSError as error:
            raise InvalidSettingError(
                f"mqtt_password_file {password_file}: {error.strerror}"
            ) from error
        try:
            settings = MqttSettings(
                host=host,
                port=port,
                username=username or None,
                password=password,
                tls=tls,
                ca_file=ca_file or None,
                topic_prefix=topic_prefix,
                discovery_prefix=discovery_prefix,
                interval=interval,
            )
        except ValueError as error:
            raise InvalidSettingError(str(error)) from error
        return settings

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        """Take each served battery's link counters and link state from its diagnostics status.

        A status is a battery's when its hardware id is the serial number the battery's
        BatteryState told, or its name is the battery node's fully qualified one (a fleet's
        packs, ``diagnostic_updater.use_fqn``), or it is a fleet's ``group <name>`` of the
        battery's name (a pack group): the last two hold before any sample too.
        """
        for status in message.status:
            names = [
                name
                for name, pairing in self._pairings.items()
                if (pairing.serial_number and pairing.serial_number == status.hardware_id)
                or status.name == self._status_names[name]
                or (status.hardware_id == name and status.name.endswith(f": group {name}"))
            ]
            if len(names) != 1:
                continue
            values = {entry.key: entry.value for entry in status.values}
            if "reconnects" in values:
                try:
                    counters = LinkCounters(
                        int(values["reconnects"]),
                        {
                            key.removeprefix("rejected_"): int(value)
                            for key, value in values.items()
                            if key.startswith("rejected_")
                        },
                    )
                except ValueError:
                    continue  # not a status of this driver
                self.store.set_counters(names[0], counters)
            self.store.set_reported_link(names[0], reported_link(status))

    def _declare(self, name: str, default: Any, description: str, **ranges: Any) -> Any:
        descriptor = ParameterDescriptor(description=description, read_only=True, **ranges)
        return self.declare_parameter(name, default, descriptor).value

    def close(self) -> None:
        """Stop serving and write the files a last time."""
        self.server.stop()
        if self._writer is not None:
            self._writer.stop()
        if self._mqtt is not None:
            self._mqtt.stop()


def main(args: Sequence[str] | None = None) -> int:
    """Run the bridge node."""
    files = parameter_files(sys.argv if args is None else args)
    return run_node(
        functools.partial(DalyBmsBridge, parameter_files=files), "daly_bms_bridge", args
    )


if __name__ == "__main__":
    sys.exit(main())
