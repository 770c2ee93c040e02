"""Every pack of a robot in one process: `ros2 launch daly_bms_ros fleet.launch.py`.

The parameters file names the packs (``batteries``), the robot's groups (``pack_groups``) and
each pack's parameters under its namespace, as config/four_batteries.yaml shows. With
respawn:=true a crashed process is started again; one that refuses its parameters ends the
launch with its error and a non-zero exit status.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from daly_bms_ros.node.launch_actions import driver_process, process_arguments


def fleet_for(context: LaunchContext) -> list[Node | RegisterEventHandler]:
    """Create the fleet's process once the arguments are known.

    No name: launch_ros would pass __node:=, which renames every node of the process, the
    packs' nodes too (their parameters are keyed <namespace>/daly_bms).
    """
    return driver_process(
        context,
        executable="daly_bms_fleet",
        parameters=[LaunchConfiguration("params_file").perform(context)],
    )


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
            *process_arguments(),
            OpaqueFunction(function=fleet_for),
        ]
    )
