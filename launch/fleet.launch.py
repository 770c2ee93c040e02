"""Every pack of a robot in one process: `ros2 launch daly_bms_ros fleet.launch.py`.

The parameters file names the packs (``batteries``), the robot's groups (``pack_groups``) and
each pack's parameters under its namespace, as config/four_batteries.yaml shows. With
respawn:=true a crashed process is started again; one that refuses its parameters ends the
launch with its error and a non-zero exit status.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from daly_bms_ros.node.launch_arguments import check_exit


def fleet_for(context: LaunchContext) -> list[Node | RegisterEventHandler]:
    """Create the fleet's process once the arguments are known."""

    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    node = Node(
        package="daly_bms_ros",
        executable="daly_bms_fleet",
        # No name=: launch_ros would pass __node:=, which renames every node of the process,
        # the packs' nodes too (their parameters are keyed <namespace>/daly_bms).
        parameters=[argument("params_file")],
        arguments=["--ros-args", "--log-level", argument("log_level")],
        respawn=argument("respawn").lower() == "true",
        respawn_delay=2.0,
        output="screen",
    )

    def on_exit(event: ProcessExited, _context: LaunchContext) -> None:
        check_exit(event.process_name, event.returncode)

    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit))]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the fleet."""
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("daly_bms_ros"), "config", "four_batteries.yaml"]
                ),
                description="Parameters YAML file: the fleet's section and one per pack",
            ),
            DeclareLaunchArgument(
                "log_level", default_value="info", description="debug, info, warn, error, fatal"
            ),
            DeclareLaunchArgument(
                "respawn",
                default_value="true",
                description="Start again after a crash (never after refused parameters)",
            ),
            OpaqueFunction(function=fleet_for),
        ]
    )
