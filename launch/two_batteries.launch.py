"""Two packs, two nodes, two namespaces: /left/... and /right/...

`ros2 launch daly_bms_ros two_batteries.launch.py params_file:=/path/to/two_batteries.yaml`;
config/two_batteries.yaml shows the parameters file, keyed by each node's full name.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

NAMESPACES = ("left", "right")


def generate_launch_description() -> LaunchDescription:
    """Include daly_bms.launch.py once per namespace with the same parameters file."""
    share = FindPackageShare("daly_bms_ros")
    params_file = LaunchConfiguration("params_file")
    includes = [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([share, "launch", "daly_bms.launch.py"])
            ),
            launch_arguments={"namespace": namespace, "params_file": params_file}.items(),
        )
        for namespace in NAMESPACES
    ]
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "two_batteries.yaml"]),
                description="Parameters YAML file with one section per namespace",
            ),
            *includes,
        ]
    )
