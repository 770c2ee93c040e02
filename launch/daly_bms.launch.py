"""Start one daly_bms_node: `ros2 launch daly_bms_ros daly_bms.launch.py [name:=value ...]`.

The parameters a user commonly sets per battery are launch arguments (see LAUNCH_PARAMETERS):
when given they override the parameters file, so the common case needs no file of its own;
namespace puts all topics of one battery under one prefix (see two_batteries.launch.py). With
respawn:=true a crashed node is started again, but a node that refuses its parameters ends the
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

from daly_bms_ros.node.launch_arguments import (
    LAUNCH_PARAMETERS,
    USE_SIM_TIME,
    check_exit,
    parameter_overrides,
)
from daly_bms_ros.node.parameters import PARAMETERS


def node_for(context: LaunchContext) -> list[Node | RegisterEventHandler]:
    """Create the node once the arguments are known, adding only the overrides that were set."""

    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    given = {name: argument(name) for name in (*LAUNCH_PARAMETERS, USE_SIM_TIME)}
    node = Node(
        package="daly_bms_ros",
        executable="daly_bms_node",
        name="daly_bms",
        namespace=argument("namespace"),
        parameters=[argument("params_file"), parameter_overrides(given)],
        arguments=["--ros-args", "--log-level", argument("log_level")],
        respawn=argument("respawn").lower() == "true",
        respawn_delay=2.0,
        output="screen",
    )

    def on_exit(event: ProcessExited, _context: LaunchContext) -> None:
        check_exit(event.process_name, event.returncode)

    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit))]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node."""
    default_params = PathJoinSubstitution(
        [FindPackageShare("daly_bms_ros"), "config", "daly_bms.yaml"]
    )
    parameter_arguments = [
        DeclareLaunchArgument(
            name,
            default_value="",
            description=PARAMETERS[name].description + " Not given: the parameters file's value.",
        )
        for name in LAUNCH_PARAMETERS
    ]
    return LaunchDescription(
        [
            *parameter_arguments,
            DeclareLaunchArgument(
                USE_SIM_TIME,
                default_value="",
                description="true: stamp messages with /clock time. Empty: the file's value.",
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
                "respawn",
                default_value="true",
                description="Start the node again after a crash (never after refused parameters)",
            ),
            OpaqueFunction(function=node_for),
        ]
    )
