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
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from daly_bms_ros.node.launch_actions import driver_process, process_arguments
from daly_bms_ros.node.launch_arguments import (
    EMPTY_TEXTS,
    LAUNCH_PARAMETERS,
    NOT_GIVEN,
    USE_SIM_TIME,
    parameter_overrides,
)
from daly_bms_ros.node.parameters import DEFAULTS, PARAMETERS

#: What a parameter's launch argument takes, by the parameter's type, beyond its value.
ARGUMENT_FORMS = {
    bool: " true or false (or 1 or 0).",
    str: f' {EMPTY_TEXTS[0]} ("name:={EMPTY_TEXTS[0]}" in a shell) gives an empty text.',
}


def node_for(context: LaunchContext) -> list[Node | RegisterEventHandler]:
    """Create the node once the arguments are known, adding only the overrides that were set."""

    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    given = {name: argument(name) for name in (*LAUNCH_PARAMETERS, USE_SIM_TIME)}
    return driver_process(
        context,
        executable="daly_bms_node",
        name="daly_bms",
        namespace=argument("namespace"),
        parameters=[argument("params_file"), parameter_overrides(given)],
    )


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node."""
    default_params = PathJoinSubstitution(
        [FindPackageShare("daly_bms_ros"), "config", "daly_bms.yaml"]
    )
    parameter_arguments = [
        DeclareLaunchArgument(
            name,
            default_value=NOT_GIVEN,
            description=PARAMETERS[name].description
            + " Not given: the parameters file's value."
            + ARGUMENT_FORMS.get(type(getattr(DEFAULTS, name)), ""),
        )
        for name in LAUNCH_PARAMETERS
    ]
    return LaunchDescription(
        [
            *parameter_arguments,
            DeclareLaunchArgument(
                USE_SIM_TIME,
                default_value=NOT_GIVEN,
                description="true (or 1): stamp messages with /clock time. Not given: the "
                "file's value.",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of this battery's topics"
            ),
            DeclareLaunchArgument(
                "params_file", default_value=default_params, description="Parameters YAML file"
            ),
            *process_arguments(),
            OpaqueFunction(function=node_for),
        ]
    )
