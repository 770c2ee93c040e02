"""What the launch files share: a driver process respawned after a crash, never after refusal.

It imports the launch packages, so only launch files import it (the policy itself, without
them, is ``launch_arguments.check_exit``).
"""

from __future__ import annotations

from typing import Any

from launch import LaunchContext
from launch.actions import DeclareLaunchArgument, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from daly_bms_ros.node.launch_arguments import check_exit, launch_boolean


def process_arguments() -> list[DeclareLaunchArgument]:
    """Declare the arguments of every driver process: log level, respawn."""
    return [
        DeclareLaunchArgument(
            "log_level", default_value="info", description="debug, info, warn, error, fatal"
        ),
        DeclareLaunchArgument(
            "respawn",
            default_value="true",
            description="Start again after a crash (never after refused parameters): true or "
            "false (1 or 0)",
        ),
    ]


def driver_process(
    context: LaunchContext, **node_arguments: Any
) -> list[Node | RegisterEventHandler]:
    """Start the package's ``executable`` with ``node_arguments``, and watch its exit.

    A process that refused its parameters ends the launch with its error (no respawn).
    """
    node = Node(
        package="daly_bms_ros",
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)],
        respawn=launch_boolean("respawn", LaunchConfiguration("respawn").perform(context)),
        respawn_delay=2.0,
        output="screen",
        **node_arguments,
    )

    def on_exit(event: ProcessExited, _context: LaunchContext) -> None:
        check_exit(event.process_name, event.returncode)

    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit))]
