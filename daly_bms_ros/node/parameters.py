"""The node's ROS parameters: one table of names, defaults, ranges and meanings.

Everything a user can set is declared from ``PARAMETERS`` with a descriptor (description, range,
read-only flag), so ``ros2 param describe`` documents it and rclpy refuses values out of range.
Checks that a descriptor cannot express (MAC address format, technology names, the order of the
backoff bounds) live in ``validate`` and give a message that names what is allowed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # rclpy's own dependency, without stubs
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from daly_bms_ros.link.serial_transport import MAXIMUM_BAUDRATE, MINIMUM_BAUDRATE
from daly_bms_ros.link.transport import MAC_ADDRESS_PATTERN, TRANSPORTS
from daly_bms_ros.protocol.a5 import MAX_BOARD
from daly_bms_ros.protocol.can_id import (
    BITRATE as CAN_BITRATE,
)
from daly_bms_ros.protocol.can_id import (
    BITRATES,
    DEFAULT_CHANNEL,
    DEFAULT_INTERFACE,
    CanChoice,
    can_choice_problem,
)
from daly_bms_ros.protocol.session import PROTOCOLS

#: Names accepted by ``technology``, as sensor_msgs/BatteryState POWER_SUPPLY_TECHNOLOGY_* names.
TECHNOLOGIES: Mapping[str, str] = {
    "LiFePO4": "LIFE",
    "Li-ion": "LION",
    "LiPo": "LIPO",
    "LiMn": "LIMN",
    "NiMH": "NIMH",
    "NiCd": "NICD",
    "unknown": "UNKNOWN",
}


@dataclass(frozen=True)
class ParameterSpec:
    """How one parameter is declared: meaning, bounds and whether it may change at run time."""

    description: str
    minimum: float | None = None
    maximum: float | None = None
    step: float = 0.0
    read_only: bool = True
    constraints: str = ""

    def descriptor(self, default: Any, writable: bool = False) -> ParameterDescriptor:
        """Build the ROS descriptor; the range type follows the default value's type.

        A floating-point parameter also takes an integer ("poll_interval:=2", as users type
        seconds): it is declared with dynamic typing, then turned double (see
        ``declaration.declare_parameters``). ``writable``: never read-only (a managed node,
        unconfigured).
        """
        descriptor = ParameterDescriptor(
            description=self.description,
            read_only=self.read_only and not writable,
            additional_constraints=self.constraints,
            dynamic_typing=isinstance(default, float),
        )
        if self.minimum is not None and self.maximum is not None:
            if isinstance(default, int):
                descriptor.integer_range = [
                    IntegerRange(
                        from_value=int(self.minimum),
                        to_value=int(self.maximum),
                        step=int(self.step),
                    )
                ]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(
                        from_value=float(self.minimum), to_value=float(self.maximum), step=self.step
                    )
                ]
        return descriptor


def setting(default: Any, spec: ParameterSpec) -> Any:
    """Declare a field of NodeSettings: its default and how ROS declares it (``spec``)."""
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values of one node, and how each is declared (``setting``).

    The one table of the node's parameters: each field's default and its ``ParameterSpec``
    (meaning, bounds, whether it may change at run time) stand together.
    """

    mac_address: str = setting(
        "",
        ParameterSpec(
            "Bluetooth address of the BMS. Empty: find it by device_name, or else the first device "
            "that looks like a Daly BMS (named 'DL-…' or 'JHB-…', advertising service fff0 or "
            "ff00, or with Daly manufacturer data).",
            constraints="empty or six colon-separated hex bytes, e.g. C6:6C:09:03:1B:9E",
        ),
    )
    device_name: str = setting(
        "",
        ParameterSpec(
            "Advertised name of the BMS (e.g. DL-40D63C3F3E5A); used when mac_address is empty.",
        ),
    )
    adapter: str = setting(
        "",
        ParameterSpec(
            "Bluetooth adapter to use (e.g. hci0). Empty: the system default adapter.",
        ),
    )
    transport: str = setting(
        "ble",
        ParameterSpec(
            "How the BMS is reached: ble (Bluetooth LE), serial (Daly's UART/RS485 port through "
            "an adapter, at serial_port), or can (its CAN port on a CAN bus, can_channel).",
            constraints="ble, serial or can",
        ),
    )
    serial_port: str = setting(
        "",
        ParameterSpec(
            "Serial port of a wired BMS (transport serial), e.g. /dev/ttyUSB0; a "
            "/dev/serial/by-id/ path stays the same across reboots.",
        ),
    )
    baud: int = setting(
        9600,
        ParameterSpec(
            "Serial speed (transport serial); Daly's ports run at 9600.",
            minimum=MINIMUM_BAUDRATE,
            maximum=MAXIMUM_BAUDRATE,
            step=1,
        ),
    )
    rs485: bool = setting(
        False,
        ParameterSpec(
            "Let the kernel switch an RS485 adapter's direction with RTS (transport serial; only "
            "for adapters that do not switch by themselves).",
        ),
    )
    can_interface: str = setting(
        DEFAULT_INTERFACE,
        ParameterSpec(
            "python-can interface of the CAN bus (transport can): socketcan (a CAN HAT, a "
            "candleLight adapter) or slcan (a serial-line adapter).",
        ),
    )
    can_channel: str = setting(
        DEFAULT_CHANNEL,
        ParameterSpec(
            "The CAN interface's channel (transport can): can0, or an slcan adapter's serial port. "
            "Packs on one channel share one open bus.",
        ),
    )
    can_bitrate: int = setting(
        CAN_BITRATE,
        ParameterSpec(
            "CAN bitrate (transport can); Daly's CAN port runs at 250000.",
            constraints="one of: " + ", ".join(map(str, BITRATES)),
        ),
    )
    protocol: str = setting(
        "auto",
        ParameterSpec(
            "The protocol the BMS speaks: d2 (Daly's Bluetooth modules), x81 (newer packs and "
            "wired D2 boards), a5 (UART/RS485 ports, older Bluetooth modules), or auto to find it "
            "out at each connection (the probes the BMS does not answer cost a request timeout "
            "each).",
            constraints="one of: " + ", ".join(PROTOCOLS),
        ),
    )
    board: int = setting(
        1,
        ParameterSpec(
            "An A5 BMS's board number on a shared RS485 bus, its BMS address on a CAN bus (set in "
            "Daly's PC tool); 1 for a BMS alone on its port.",
            minimum=1,
            maximum=MAX_BOARD,
            step=1,
        ),
    )
    poll_interval: float = setting(
        1.0,
        ParameterSpec(
            "Seconds between two reads of the BMS status. May be changed at run time.",
            minimum=0.1,
            maximum=3600.0,
            read_only=False,
        ),
    )
    connect_timeout: float = setting(
        10.0,
        ParameterSpec(
            "Seconds allowed for discovery and connection before the attempt counts as failed.",
            minimum=1.0,
            maximum=300.0,
        ),
    )
    request_timeout: float = setting(
        2.0,
        ParameterSpec(
            "Seconds to wait for the complete answer to one request.",
            minimum=0.1,
            maximum=60.0,
        ),
    )
    request_retries: int = setting(
        2,
        ParameterSpec(
            "How often an unanswered request is sent again before the poll counts as failed.",
            minimum=0,
            maximum=10,
            step=1,
        ),
    )
    reconnect_delay_min: float = setting(
        1.0,
        ParameterSpec(
            "First wait in seconds before reconnecting after the link is lost; doubles per "
            "failure.",
            minimum=0.1,
            maximum=600.0,
        ),
    )
    reconnect_delay_max: float = setting(
        30.0,
        ParameterSpec(
            "Cap in seconds of the reconnect wait.",
            minimum=0.1,
            maximum=3600.0,
        ),
    )
    stale_timeout: float = setting(
        10.0,
        ParameterSpec(
            "Age in seconds after which the last sample is reported stale in diagnostics. May be "
            "changed at run time.",
            minimum=0.1,
            maximum=3600.0,
            read_only=False,
        ),
    )
    diagnostics_period: float = setting(
        1.0,
        ParameterSpec(
            "Seconds between two diagnostics messages. May be changed at run time.",
            minimum=0.1,
            maximum=60.0,
            read_only=False,
        ),
    )
    frame_id: str = setting(
        "battery",
        ParameterSpec("header.frame_id of the published messages."),
    )
    location: str = setting(
        "",
        ParameterSpec("BatteryState.location: where the pack sits on the robot."),
    )
    serial_number: str = setting(
        "",
        ParameterSpec(
            "BatteryState.serial_number. Empty: the serial number the BMS tells, else its address."
        ),
    )
    technology: str = setting(
        "LiFePO4",
        ParameterSpec(
            "Cell chemistry reported in BatteryState.power_supply_technology.",
            constraints="one of: " + ", ".join(TECHNOLOGIES),
        ),
    )
    design_capacity: float = setting(
        0.0,
        ParameterSpec(
            "Design capacity in Ah for BatteryState.design_capacity. 0: the BMS's rated capacity.",
            minimum=0.0,
            maximum=100000.0,
        ),
    )
    invert_current: bool = setting(
        False,
        ParameterSpec(
            "Turn the sign of the current round, for firmware that reports charging as negative "
            "(BatteryState.current is positive while charging).",
        ),
    )
    soc_warn: float = setting(
        20.0,
        ParameterSpec(
            "State of charge (%) at or below which diagnostics turn WARN (low).",
            minimum=0.0,
            maximum=100.0,
            read_only=False,
        ),
    )
    soc_error: float = setting(
        10.0,
        ParameterSpec(
            "State of charge (%) at or below which diagnostics turn ERROR (critical).",
            minimum=0.0,
            maximum=100.0,
            read_only=False,
        ),
    )
    cell_delta_warn: float = setting(
        0.1,
        ParameterSpec(
            "Highest minus lowest cell voltage (V) at or above which diagnostics turn WARN.",
            minimum=0.0,
            maximum=5.0,
            read_only=False,
        ),
    )
    cell_delta_error: float = setting(
        0.3,
        ParameterSpec(
            "Highest minus lowest cell voltage (V) at or above which diagnostics turn ERROR.",
            minimum=0.0,
            maximum=5.0,
            read_only=False,
        ),
    )
    temperature_warn: float = setting(
        50.0,
        ParameterSpec(
            "Highest temperature (degC; sensors and MOS) at or above which diagnostics turn WARN.",
            minimum=-40.0,
            maximum=150.0,
            read_only=False,
        ),
    )
    temperature_error: float = setting(
        60.0,
        ParameterSpec(
            "Highest temperature (degC; sensors and MOS) at or above which diagnostics turn ERROR.",
            minimum=-40.0,
            maximum=150.0,
            read_only=False,
        ),
    )
    allow_control: bool = setting(
        False,
        ParameterSpec(
            "Allow the services that write to the BMS (switch its MOSFETs or balancer, set the "
            "SOC or a setting, restart it). false: every such call is refused. Only at start.",
        ),
    )
    record_path: str = setting(
        "",
        ParameterSpec(
            "Record the raw conversation with the BMS to this file (JSON Lines capture, rotated at "
            "50 MiB, 3 old parts kept) for a bug report; replay it with daly-bms-sim --replay. "
            "Empty: no recording.",
        ),
    )
    publish_raw_frames: bool = setting(
        False,
        ParameterSpec(
            "Publish every request and notification on raw_frames (daly_bms_ros/RawFrame), so "
            "ros2 bag record keeps them.",
        ),
    )


PARAMETERS: Mapping[str, ParameterSpec] = {
    each.name: each.metadata["spec"] for each in fields(NodeSettings)
}
#: The fleet's own parameters (each of its packs has those of NodeSettings): default and
#: declaration. A list's default is [""]: rclpy cannot tell an empty list's type.
FLEET_PARAMETERS: Mapping[str, tuple[Any, ParameterSpec]] = {
    "batteries": ([""], ParameterSpec("namespaces of the packs, e.g. ['/front', '/rear']")),
    "max_connections": (
        0,
        ParameterSpec(
            "Bluetooth links an adapter holds at once; more packs on it are served in turn "
            "(connect, read, disconnect). 0: no limit",
            minimum=0,
            maximum=64,
            step=1,
        ),
    ),
    "pack_groups": (
        [""],
        ParameterSpec(
            "packs combined into one BatteryState each: '<name>: <expression>', e.g. "
            "'robot: parallel(series(/a, /b), series(/c, /d))', published on "
            "<name>/battery_state"
        ),
    ),
    "group_max_age": (
        5.0,
        ParameterSpec(
            "seconds after which a pack's state is too old for its group: the group is not "
            "published then"
        ),
    ),
}

DEFAULTS = NodeSettings()
#: Diagnostics thresholds as (warning, error, whether the error level is the lower one).
THRESHOLD_PAIRS = (
    ("soc_warn", "soc_error", True),
    ("cell_delta_warn", "cell_delta_error", False),
    ("temperature_warn", "temperature_error", False),
)


class InvalidSettingError(ValueError):
    """A parameter value is not allowed; the message says which and what is allowed."""


def checked_number(name: str, value: Any) -> float:
    """Return a floating-point parameter's value as a float: a number (int too) in range."""
    spec = PARAMETERS[name]
    low = -math.inf if spec.minimum is None else spec.minimum
    high = math.inf if spec.maximum is None else spec.maximum
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (is_number and low <= float(value) <= high):
        allowed = "a number" if math.isinf(high) else f"a number from {low:g} to {high:g}"
        raise InvalidSettingError(f"{name} must be {allowed}, not {value!r}")
    return float(value)


def target_of(settings: NodeSettings) -> str:
    """Return what picks the BMS, for logs and to tell packs apart.

    Its serial port (and board on a shared bus), Bluetooth address or name; "" when nothing
    does (the first device that looks like a Daly BMS is taken).
    """
    if settings.transport == "serial":
        board = f" board {settings.board}" if settings.board > 1 else ""
        return f"serial port {settings.serial_port}{board}"
    if settings.transport == "can":
        return f"CAN {settings.can_interface}:{settings.can_channel} BMS {settings.board}"
    if settings.mac_address:
        return f"address {settings.mac_address.upper()}"
    if settings.device_name:
        return f"name {settings.device_name}"
    return ""


def same_bms_key(settings: NodeSettings) -> str:
    """Return ``target_of`` with the serial port's path resolved: one key per BMS.

    ``/dev/ttyUSB0``, ``/dev/../dev/ttyUSB0`` and a ``/dev/serial/by-id/`` link to it are one
    port; told apart by spelling, two packs would read one BMS (or one bus twice at once).
    """
    if settings.transport == "serial":
        settings = replace(settings, serial_port=os.path.realpath(settings.serial_port))
    return target_of(settings)


#: A namespace as rcl takes it in topic names: parts of letters, digits and _, each starting
#: with a letter (rcl refuses '#', a leading digit, non-ASCII letters with an exception).
_NAMESPACE = re.compile(r"/?[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*")


def namespace_of(value: str, parameter: str, relative: bool = False) -> str:
    """Return ``value`` without its trailing '/', or InvalidSettingError saying what is allowed.

    Checked before any topic is made of it: rcl's exception would end the process with 1,
    which its service restarts, in vain, forever. ``relative``: 'front' is allowed too.
    """
    namespace = value.rstrip("/")
    if not _NAMESPACE.fullmatch(namespace) or not (relative or namespace.startswith("/")):
        raise InvalidSettingError(
            f"{parameter}: {value!r} is not a namespace such as '/front' (letters, digits and _, "
            "each part starting with a letter)"
        )
    return namespace


def parameter_files(arguments: Sequence[str]) -> list[str]:
    """Return the files given to ``--params-file`` in the ROS arguments of a command line."""
    files, ros, iterator = [], False, iter(arguments)
    for argument in iterator:
        if argument == "--ros-args":
            ros = True
        elif argument == "--":
            ros = False
        elif ros and argument == "--params-file":
            files.append(next(iterator, ""))
    return [file for file in files if file]


def check_parameter_files(files: Sequence[str]) -> None:
    """Refuse a parameters file that names a section or parameter twice (InvalidSettingError).

    rcl takes the last of the two silently: a pack's section written twice, or copied for a
    new pack and left unrenamed, would quietly lose the settings of the first.
    """
    for file in files:
        try:
            root = yaml.compose(Path(file).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except (OSError, ValueError, yaml.YAMLError):
            continue  # rcl read it (or said why): only the duplicates are ours to find
        nodes = [root] if root is not None else []
        while nodes:  # no recursion: a file may nest deep
            node = nodes.pop()
            if isinstance(node, yaml.SequenceNode):
                nodes.extend(node.value)
            if not isinstance(node, yaml.MappingNode):
                continue
            lines: dict[str, int] = {}
            for key, value in node.value:
                nodes.append(value)
                if not isinstance(key, yaml.ScalarNode):
                    continue
                line = key.start_mark.line + 1
                if key.value in lines:
                    raise InvalidSettingError(
                        f"parameters file {file}: {key.value!r} is written twice (lines "
                        f"{lines[key.value]} and {line}), and the second would silently "
                        "replace the first: write it once"
                    )
                lines[key.value] = line


def _check_can(settings: NodeSettings) -> None:
    """Refuse CAN settings that do not go together (InvalidSettingError)."""
    problem = can_choice_problem(
        CanChoice(
            settings.transport,
            settings.can_interface,
            settings.can_channel,
            settings.can_bitrate,
            settings.protocol,
            bool(settings.serial_port or settings.mac_address or settings.device_name),
            ("transport", "can_interface", "can_channel", "can_bitrate", "protocol"),
            "serial_port, mac_address and device_name",
        )
    )
    if problem:
        raise InvalidSettingError(problem)


def validate(values: Mapping[str, Any]) -> NodeSettings:
    """Return settings built from ``values`` or raise InvalidSettingError naming the problem."""
    merged = {**asdict(DEFAULTS), **values}
    for name, default in asdict(DEFAULTS).items():
        if isinstance(default, float):
            merged[name] = checked_number(name, merged[name])
    settings = NodeSettings(**merged)
    if settings.mac_address and not MAC_ADDRESS_PATTERN.fullmatch(settings.mac_address):
        raise InvalidSettingError(
            f"mac_address {settings.mac_address!r} is not a Bluetooth address: "
            "expected six colon-separated hex bytes such as C6:6C:09:03:1B:9E, or empty"
        )
    if settings.transport not in TRANSPORTS:
        raise InvalidSettingError(
            f"transport {settings.transport!r} is not known: allowed are {', '.join(TRANSPORTS)}"
        )
    if settings.transport == "serial" and not settings.serial_port:
        raise InvalidSettingError("transport serial needs serial_port, e.g. /dev/ttyUSB0")
    if settings.transport == "ble" and settings.serial_port:
        raise InvalidSettingError(
            f"serial_port {settings.serial_port!r} is set but transport is ble: "
            "set transport to serial, or leave serial_port empty"
        )
    if settings.protocol not in PROTOCOLS:
        raise InvalidSettingError(
            f"protocol {settings.protocol!r} is not known: allowed are {', '.join(PROTOCOLS)}"
        )
    _check_can(settings)
    if settings.technology not in TECHNOLOGIES:
        raise InvalidSettingError(
            f"technology {settings.technology!r} is not known: "
            f"allowed are {', '.join(TECHNOLOGIES)}"
        )
    for warning, error, error_is_lower in THRESHOLD_PAIRS:
        warning_value, error_value = getattr(settings, warning), getattr(settings, error)
        if error_value > warning_value if error_is_lower else error_value < warning_value:
            raise InvalidSettingError(
                f"{error} ({error_value}) must be {'at most' if error_is_lower else 'at least'} "
                f"{warning} ({warning_value}): the error level lies beyond the warning one"
            )
    if settings.reconnect_delay_max < settings.reconnect_delay_min:
        raise InvalidSettingError(
            f"reconnect_delay_max ({settings.reconnect_delay_max}) is below reconnect_delay_min "
            f"({settings.reconnect_delay_min}): it must be at least as large"
        )
    return settings
