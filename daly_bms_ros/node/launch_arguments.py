"""What the launch files decide besides declaring actions: typed overrides, and when to stop.

Kept out of the launch files, which need the ``launch`` packages, so that it is tested on its own
and the launch files stay declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daly_bms_ros.node.main import EXIT_INVALID_PARAMETER
from daly_bms_ros.node.parameters import DEFAULTS

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


def _typed(text: str, default: Any) -> Any:
    """``text`` as the type of ``default``; the text itself when it is not of that type.

    The node then refuses a text where it wants a number, naming what is allowed.
    """
    if isinstance(default, bool):
        lowered = text.strip().lower()
        return {"true": True, "false": False}.get(lowered, text)
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
    """Typed parameter values of the launch arguments given (an empty one: the file's value)."""
    overrides = {
        name: _typed(arguments[name], getattr(DEFAULTS, name))
        for name in LAUNCH_PARAMETERS
        if arguments.get(name, "")
    }
    if arguments.get(USE_SIM_TIME, ""):
        overrides[USE_SIM_TIME] = _typed(arguments[USE_SIM_TIME], False)
    return overrides


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
