"""What the launch files decide besides declaring actions: typed overrides, and when to stop.

Kept out of the launch files, which need the ``launch`` packages, so that it is tested on its own
and the launch files stay declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daly_bms_ros.node.main import EXIT_INVALID_PARAMETER
from daly_bms_ros.node.parameters import DEFAULTS, InvalidSettingError

#: Parameters a user commonly sets per battery: each is a launch argument too, and a given one
#: overrides the parameters file.
LAUNCH_PARAMETERS = (
    "mac_address",
    "device_name",
    "adapter",
    "transport",
    "serial_port",
    "baud",
    "rs485",
    "can_interface",
    "can_channel",
    "can_bitrate",
    "protocol",
    "board",
    "frame_id",
    "location",
    "serial_number",
    "technology",
    "design_capacity",
    "poll_interval",
    "invert_current",
    "allow_control",
    "record_path",
    "publish_raw_frames",
)
#: ROS's own parameter, passed to the node when given.
USE_SIM_TIME = "use_sim_time"
#: The default of every parameter's launch argument: not given, the parameters file's value
#: holds. Any other value, the empty one too (``mac_address:=''`` clears the file's), is given.
NOT_GIVEN = "<from params_file>"
#: How an empty text is written on ros2 launch's command line, which refuses ``name:=`` with
#: nothing after it (ros2/launch_ros, ros2launch/api/api.py, parse_launch_arguments): YAML's
#: empty strings, ``"mac_address:=''"``.
EMPTY_TEXTS = ("''", '""')
#: Launch's own words for true and false, as its conditions read them (ros2/launch,
#: launch/launch/conditions/evaluate_condition_expression_impl.py), in any case.
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def launch_boolean(name: str, text: str) -> bool:
    """``text`` of the launch argument ``name`` as a boolean; InvalidSettingError if it is none."""
    try:
        return BOOLEANS[text.strip().lower()]
    except KeyError:
        raise InvalidSettingError(
            f"{name}:={text!r} is not a boolean: give true or false (or 1 or 0, any case)"
        ) from None


def _typed(name: str, text: str, default: Any) -> Any:
    """``text`` as the type of ``default``; the text itself when it is not a number.

    The node then refuses a text where it wants a number, naming what is allowed; a boolean
    that is none is refused here (InvalidSettingError), with what is accepted.
    """
    if isinstance(default, bool):
        return launch_boolean(name, text)
    if isinstance(default, str):
        return "" if text.strip() in EMPTY_TEXTS else text
    if isinstance(default, (int, float)):
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return text
    return text


def parameter_overrides(arguments: Mapping[str, str]) -> dict[str, Any]:
    """Typed parameter values of the launch arguments given (NOT_GIVEN: the file's value)."""
    given = {
        name: arguments[name]
        for name in (*LAUNCH_PARAMETERS, USE_SIM_TIME)
        if arguments.get(name, NOT_GIVEN) != NOT_GIVEN
    }
    defaults = {
        **{name: getattr(DEFAULTS, name) for name in LAUNCH_PARAMETERS},
        USE_SIM_TIME: False,
    }
    return {name: _typed(name, text, defaults[name]) for name, text in given.items()}


class RefusedConfigurationError(RuntimeError):
    """The node refused its parameters: restarting it cannot help, the launch must end."""


def check_exit(node_name: str, returncode: int | None) -> None:
    """Raise RefusedConfigurationError when the node refused its parameters.

    Raised in a launch event handler, it ends ``ros2 launch`` with this message and a non-zero
    exit status before any respawn; any other exit is a crash and is respawned where enabled.
    """
    if returncode == EXIT_INVALID_PARAMETER:
        raise RefusedConfigurationError(
            f"{node_name} refused its parameters (exit {returncode}; its log says which and what "
            "is allowed): fix the configuration, a restart cannot help"
        )
