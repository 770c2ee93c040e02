"""Start one daly_bms_node: `ros2 launch daly_bms_ros daly_bms.launch.py [name:=value ...]`.

The launch arguments mac_address and device_name, when given, override the parameters file, so
the common case needs no file of its own; namespace puts all topics of one battery under one
prefix (see two_batteries.launch.py).
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

OVERRIDABLE_PARAMETERS = ("mac_address", "device_name")


def node_for(context: LaunchContext) -> list[Node]:
    """Create the node once the arguments are known, adding only the overrides that were set."""

    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides = {name: argument(name) for name in OVERRIDABLE_PARAMETERS if argument(name)}
    return [
        Node(
            package="daly_bms_ros",
            executable="daly_bms_node",
            name="daly_bms",
            namespace=argument("namespace"),
            parameters=[argument("params_file"), overrides],
            arguments=["--ros-args", "--log-level", argument("log_level")],
            respawn=argument("respawn").lower() == "true",
            respawn_delay=2.0,
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node."""
    default_params = PathJoinSubstitution(
        [FindPackageShare("daly_bms_ros"), "config", "daly_bms.yaml"]
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "mac_address", default_value="", description="Bluetooth address of the BMS"
            ),
            DeclareLaunchArgument(
                "device_name", default_value="", description="Advertised name of the BMS"
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of this battery's topics"
            ),
            DeclareLaunchArgument(
                "params_file", default_value=default_params, description="Parameters YAML file"
            ),
            DeclareLaunchArgument(
                "log_level", default_value="info", description="debug, info, warn, error, fatal"
            ),
            DeclareLaunchArgument(
                "respawn", default_value="true", description="Restart the node if it exits"
            ),
            OpaqueFunction(function=node_for),
        ]
    )
