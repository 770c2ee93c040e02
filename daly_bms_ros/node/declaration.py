"""Declaring the node's parameters with rclpy: the table of ``parameters``, as ROS shows it.

Each parameter is declared from ``PARAMETERS`` with its descriptor. A floating-point one also
takes an integer (users type seconds as ``poll_interval:=2``) and keeps it a double, at start and
at run time, so that ``ros2 param get``, ``describe`` and ``dump`` say double; a managed node may
have every value refused at start noted instead of raised, for its configure to report.
"""

from __future__ import annotations

import functools
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType, ParameterValue
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from daly_bms_ros.node.parameters import (
    DEFAULTS,
    PARAMETERS,
    InvalidSettingError,
    ParameterSpec,
    checked_number,
)

#: diagnostic_updater's parameter for naming statuses after the fully qualified node name.
USE_FQN_PARAMETER = "diagnostic_updater.use_fqn"


def declare_parameters(
    node: Node, refused: dict[str, str] | None = None, writable: bool = False
) -> dict[str, Any]:
    """Declare every parameter with its descriptor; return the values (checked by ``validate``).

    ``refused``: a value given at start that rclpy refuses (out of range, wrong type) is noted
    there and the default declared instead, for a managed node to report at configure; None:
    it raises (ParameterException). ``writable``: every parameter may be set at run time (a
    managed node refuses what it cannot change while configured itself).
    """
    node.declare_parameter(
        USE_FQN_PARAMETER,
        False,
        ParameterDescriptor(
            description="Name the diagnostics status after the node's fully qualified name "
            "(as diagnostic_updater does with this parameter), e.g. with one node per "
            "battery in namespaces.",
            read_only=True,
        ),
    )
    values = {}
    for name, spec in PARAMETERS.items():
        try:
            values[name] = _declare(node, name, spec, writable)
        except (ParameterException, InvalidSettingError) as error:
            if refused is None:
                raise
            refused[name] = str(error)
            values[name] = _declare(node, name, spec, writable, ignore_override=True)
    if hasattr(node, "add_pre_set_parameters_callback"):  # Humble has none: ints stay ints
        node.add_pre_set_parameters_callback(functools.partial(_doubles_for_integers, node))
    return values


def _declare(
    node: Node, name: str, spec: ParameterSpec, writable: bool, ignore_override: bool = False
) -> Any:
    """Declare one parameter; a floating-point one given as an integer is stored as double.

    Users type seconds as ``poll_interval:=2``: declared with dynamic typing it takes the
    integer, then the descriptor is made double and applied to the value as a double, so that
    ``param get``, ``describe`` and ``dump`` keep saying double. Humble cannot convert later
    sets (no pre-set callback): there the parameter keeps dynamic typing.
    """
    default = getattr(DEFAULTS, name)
    if not isinstance(default, float) or not hasattr(node, "add_pre_set_parameters_callback"):
        descriptor = spec.descriptor(default, writable)
        return node.declare_parameter(name, default, descriptor, ignore_override).value
    # Writable until typed: set_descriptor refuses to touch a read-only parameter.
    descriptor = spec.descriptor(default, writable=True)
    value: Any = node.declare_parameter(name, default, descriptor, ignore_override).value
    try:
        checked_number(name, value)  # InvalidSettingError for a text, naming what is allowed
    except InvalidSettingError:
        node.undeclare_parameter(name)
        raise
    typed = spec.descriptor(default, writable)
    typed.dynamic_typing = False
    typed.type = ParameterType.PARAMETER_DOUBLE
    node.set_descriptor(
        name, typed, ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    )
    return node.get_parameter(name).value


def _doubles_for_integers(node: Node, parameters: list[Parameter[Any]]) -> list[Parameter[Any]]:
    """Pre-set callback: an integer given for a floating-point parameter becomes a double.

    A text stays a text, which rclpy refuses by its type alone ("expected '3' got '4'" in
    Kilted): the node's log says what is allowed.
    """
    converted = []
    for parameter in parameters:
        double = isinstance(getattr(DEFAULTS, parameter.name, None), float)
        if double and parameter.type_ == Parameter.Type.INTEGER:
            converted.append(
                Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
            )
            continue
        if double and parameter.type_ != Parameter.Type.DOUBLE:
            try:
                checked_number(parameter.name, parameter.value)
            except InvalidSettingError as error:
                node.get_logger().warning(f"refused: {error}")
        converted.append(parameter)
    return converted
