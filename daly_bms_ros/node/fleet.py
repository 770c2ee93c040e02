"""``daly_bms_fleet``: every pack of a robot in one process, and the robot's battery.

One node per pack, each exactly ``daly_bms_node`` in its namespace (``/front/daly_bms``: its
parameters come from the same parameters file, its topics and diagnostics are a single node's),
all in one process over one Bluetooth event loop: a pack costs a few MiB instead of a process.
An adapter with more packs than ``max_connections`` serves them in turn (connect, read,
disconnect). ``pack_groups`` combine packs into one BatteryState each (see ``groups``),
published only while every member's latest state is younger than ``group_max_age``. A fleet
serves at most MAX_PACKS packs.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.clock import Clock, ClockType  # type: ignore[attr-defined]  # Humble: no clock_type
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import BatteryState

from daly_bms_ros.link.shared import SharedLinks
from daly_bms_ros.node.declaration import USE_FQN_PARAMETER
from daly_bms_ros.node.diagnostics import group_diagnostics
from daly_bms_ros.node.groups import Group, combine, parse_group, shown
from daly_bms_ros.node.hosting import STOP_TIMEOUT_S, InFleet
from daly_bms_ros.node.main import run_node
from daly_bms_ros.node.node import (
    DalyBmsNode,
    TransportFactory,
    make_transport,
    publish_diagnostics,
    set_period,
)
from daly_bms_ros.node.parameters import (
    FLEET_PARAMETERS,
    InvalidSettingError,
    check_parameter_files,
    namespace_of,
    parameter_files,
    same_bms_key,
)

QUEUE_DEPTH = 10
#: Packs one fleet serves at most. Each costs its node (~1 MiB) and a share of one executor
#: and one Bluetooth loop; a thousand took 700 MB and a minute to start. More: another fleet.
MAX_PACKS = 32

#: A ROS name token, as rcl accepts it.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def namespaces_of(values: Sequence[str]) -> list[str]:
    """Check the ``batteries`` parameter: distinct absolute namespaces, 1 to MAX_PACKS."""
    if not values:
        raise InvalidSettingError("batteries must name at least one namespace, e.g. ['/front']")
    if len(values) > MAX_PACKS:
        raise InvalidSettingError(
            f"batteries names {len(values)} packs; a fleet serves at most {MAX_PACKS} "
            "(run another fleet, with its own node name, for more)"
        )
    namespaces = [namespace_of(value, "batteries") for value in values]
    twice = sorted({namespace for namespace in namespaces if namespaces.count(namespace) > 1})
    if twice:
        raise InvalidSettingError(
            f"batteries must be distinct: {', '.join(twice)} is named twice, each pack once"
        )
    return namespaces


def groups_of(values: Sequence[str]) -> dict[str, Group]:
    """Check ``pack_groups``: ``"<name>: <expression>"`` entries, e.g. ``"robot: series(/a)"``."""
    groups = {}
    for value in values:
        name, colon, expression = value.partition(":")
        name = name.strip()
        if not colon or not NAME.fullmatch(name):
            raise InvalidSettingError(
                f"pack_groups: {shown(value)} is not '<name>: <expression>' with a name of "
                "letters, digits and _, e.g. 'robot: parallel(series(/a, /b), series(/c, /d))'"
            )
        if name in groups:
            raise InvalidSettingError(f"pack_groups: {name!r} is named twice")
        try:
            groups[name] = parse_group(expression)
        except ValueError as error:
            raise InvalidSettingError(f"pack_groups: {error}") from error
    return groups


def check_targets(packs: dict[str, DalyBmsNode]) -> None:
    """Refuse packs that name no BMS, or one BMS between them (two spellings of a port too)."""
    keys = {namespace: same_bms_key(node.settings) for namespace, node in packs.items()}
    problems = [f"{namespace} names none" for namespace, key in keys.items() if not key]
    for key in sorted({key for key in keys.values() if key}):
        sharing = [namespace for namespace, other in keys.items() if other == key]
        if len(sharing) > 1:
            problems.append(f"{' and '.join(sharing)} name one ({key})")
    if problems:
        raise InvalidSettingError(
            "each pack needs a mac_address or device_name (or, wired, a serial_port or CAN "
            "channel, and board) "
            f"of its own in its section (<namespace>/daly_bms): {'; '.join(problems)}"
        )
    check_can_bitrates(packs)


def check_can_bitrates(packs: dict[str, DalyBmsNode]) -> None:
    """Refuse packs on one CAN channel at different bitrates: one bus runs at one bitrate."""
    bitrates: dict[str, set[int]] = {}
    for node in packs.values():
        settings = node.settings
        if settings.transport == "can":
            channel = f"{settings.can_interface}:{settings.can_channel}"
            bitrates.setdefault(channel, set()).add(settings.can_bitrate)
    conflicts = [channel for channel, rates in bitrates.items() if len(rates) > 1]
    if conflicts:
        raise InvalidSettingError(
            f"packs on one CAN channel ({', '.join(conflicts)}) give it different can_bitrate "
            "values: one bus runs at one bitrate"
        )


class DalyBmsFleet(Node):
    """The packs of ``batteries``, each a DalyBmsNode in its namespace, and ``pack_groups``."""

    def __init__(
        self,
        transport_factory: TransportFactory = make_transport,
        parameter_files: Sequence[str] = (),
        **node_options: Any,
    ) -> None:
        """Check the parameters (and ``parameter_files`` for sections written twice), start."""
        super().__init__("daly_bms_fleet", **node_options)
        check_parameter_files(parameter_files)
        namespaces = namespaces_of(self._declare("batteries"))
        max_connections = self._declare("max_connections")
        self._groups = groups_of(self._declare("pack_groups"))
        max_age = self._declare("group_max_age")  # 5 as well as 5.0
        if (
            isinstance(max_age, bool)
            or not isinstance(max_age, (int, float))
            or not math.isfinite(max_age)  # NaN: no state would ever be too old
            or max_age <= 0
        ):
            raise InvalidSettingError(
                f"group_max_age must be a number above 0 (seconds), not {max_age!r}"
            )
        self._max_age = float(max_age)
        #: Each group's packs, in the order written (looked up with every pack's message).
        self._members = {name: group.packs() for name, group in self._groups.items()}
        strangers = {p for packs in self._members.values() for p in packs} - set(namespaces)
        if strangers:
            raise InvalidSettingError(
                f"pack_groups name {', '.join(sorted(strangers))}, not among batteries "
                f"({', '.join(namespaces)})"
            )
        # A group publishes <name>/battery_state: named as a pack, it would feed itself.
        clashes = sorted(name for name in self._groups if f"/{name}" in namespaces)
        if clashes:
            raise InvalidSettingError(
                f"pack_groups: {', '.join(clashes)} is also a pack's namespace; name the group "
                "otherwise"
            )
        self._links = SharedLinks(max_connections)
        self._hosting = InFleet(self._links)
        self.children = tuple(self._pack_node(transport_factory, ns) for ns in namespaces)
        check_targets(dict(zip(namespaces, self.children, strict=True)))
        self._links.loop.start()
        for child in self.children:
            child.start()
        # Every pack's diagnostics status, one message, one timer (the fastest pack's period).
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", QUEUE_DEPTH)
        self._diagnostics_timer = self.create_timer(
            self._diagnostics_period(),
            lambda: publish_diagnostics(
                self,
                self._diagnostics,
                [
                    *(child.diagnostic_status() for child in self.children),
                    *self._group_statuses(),
                ],
            ),
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        for child in self.children:
            child.on_settings_change(self._follow_diagnostics_period)
        self._latest: dict[str, tuple[BatteryState, float]] = {}
        self._group_publishers = {
            name: self.create_publisher(BatteryState, f"{name}/battery_state", QUEUE_DEPTH)
            for name in self._groups
        }
        for pack in sorted({pack for packs in self._members.values() for pack in packs}):
            self.create_subscription(
                BatteryState,
                f"{pack}/battery_state",
                lambda message, pack=pack: self._on_pack_state(pack, message),
                QUEUE_DEPTH,
            )
        self.get_logger().info(
            f"serving {len(self.children)} batteries ({', '.join(namespaces)})"
            + (f"; groups {', '.join(self._groups)}" if self._groups else "")
        )

    def _pack_node(self, transport_factory: TransportFactory, namespace: str) -> DalyBmsNode:
        """Make the node of one pack, ``<namespace>/daly_bms``, its diagnostics named fully."""
        node = DalyBmsNode(
            transport_factory,
            hosting=self._hosting,
            context=self.context,
            namespace=namespace,
            # Every pack's status would be "daly_bms: battery" otherwise.
            parameter_overrides=[Parameter(USE_FQN_PARAMETER, value=True)],
        )
        if node.get_name() != "daly_bms":
            raise InvalidSettingError(
                f"the packs' nodes are renamed to {node.get_name()!r} (a __node:= remap applies "
                "to every node of the process): drop it, their parameters are keyed "
                "<namespace>/daly_bms"
            )
        return node

    def _declare(self, name: str) -> Any:
        """Declare one of FLEET_PARAMETERS; return its value (a list without empty items)."""
        default, spec = FLEET_PARAMETERS[name]
        descriptor = spec.descriptor(default)
        try:
            value = self.declare_parameter(name, default, descriptor).value
        except (TypeError, ParameterException) as error:  # e.g. [] (rcl cannot type it)
            raise InvalidSettingError(f"{name}: {error}") from error
        # An empty string array is declared through [""] (rclpy cannot tell an empty list's
        # type), and an empty list in a parameters file arrives as no value.
        if isinstance(default, list):
            return [item for item in value or () if item]
        return value

    def _on_pack_state(self, pack: str, message: BatteryState) -> None:
        """Keep a pack's state; publish each group of it whose members are all fresh."""
        now = time.monotonic()
        self._latest[pack] = (message, now)
        for name, group in self._groups.items():
            members = self._members[name]
            if pack not in members:
                continue
            latest = [self._latest.get(member) for member in members]
            if any(entry is None or now - entry[1] > self._max_age for entry in latest):
                continue
            states = {
                member: entry[0] for member, entry in zip(members, latest, strict=True) if entry
            }
            combined = combine(group, states)
            # As old as its oldest part.
            oldest = min(
                (state.header.stamp for state in states.values()),
                key=lambda stamp: (stamp.sec, stamp.nanosec),
            )
            combined.header.stamp = oldest
            combined.header.frame_id = name
            combined.location = name
            combined.serial_number = name
            self._group_publishers[name].publish(combined)

    def _diagnostics_period(self) -> float:
        """Return the fastest pack's diagnostics period, the process's one timer's."""
        return min(child.settings.diagnostics_period for child in self.children)

    def _follow_diagnostics_period(self) -> None:
        """Give the diagnostics timer the fastest pack's period, changed at run time."""
        set_period(self._diagnostics_timer, self._diagnostics_period())

    def _group_statuses(self) -> list[DiagnosticStatus]:
        """Each group's diagnostics status: published, or which member's state is too old."""
        now = time.monotonic()
        prefix = self.get_fully_qualified_name()
        statuses = []
        for name, members in self._members.items():
            ages = {
                pack: None if entry is None else now - entry[1]
                for pack in members
                for entry in [self._latest.get(pack)]
            }
            statuses.append(group_diagnostics(f"{prefix}: group {name}", name, ages, self._max_age))
        return statuses

    def close(self) -> None:
        """Disconnect every pack, remove their nodes, end the Bluetooth loop."""
        self._links.close()  # no pack searches or takes a turn from now on
        for child in self.children:
            child.close()
            child.destroy_node()
        self._links.loop.stop(STOP_TIMEOUT_S)


def main(args: Sequence[str] | None = None) -> int:
    """Run the fleet (every pack's node spins with it)."""
    files = parameter_files(sys.argv if args is None else args)
    return run_node(functools.partial(DalyBmsFleet, parameter_files=files), "daly_bms_fleet", args)


if __name__ == "__main__":
    sys.exit(main())
