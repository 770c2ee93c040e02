"""``daly_bms_lifecycle_node``: the driver as a managed (lifecycle) node.

A system manager (``ros2 lifecycle set``, nav2_lifecycle_manager, launch_ros's lifecycle events)
brings it up: configure checks the parameters and creates the publishers, activate connects to
the BMS and polls it, deactivate disconnects (the radio link is freed for another central),
cleanup removes what configure created. The same driver as ``daly_bms_node`` does the work.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter

from daly_bms_ros.node.declaration import declare_parameters
from daly_bms_ros.node.hosting import Alone
from daly_bms_ros.node.main import run_node
from daly_bms_ros.node.node import BatteryDriver, TransportFactory, checked_change, make_transport
from daly_bms_ros.node.parameters import PARAMETERS, InvalidSettingError, NodeSettings, validate


class DalyBmsLifecycleNode(LifecycleNode):
    """One Daly BMS, connected only while the node is active.

    It starts whatever its parameters: a value refused at start (out of range, wrong type, not
    allowed) is reported at configure, which fails, and every parameter may be set while the
    node is unconfigured, so a manager's node is corrected without a restart. While configured,
    the parameters a running driver cannot take are refused until cleanup.
    """

    def __init__(
        self, transport_factory: TransportFactory = make_transport, **node_options: Any
    ) -> None:
        super().__init__("daly_bms", **node_options)
        self._transport_factory = transport_factory
        #: Values given at start that rclpy refused, by name, until set anew.
        self._refused: dict[str, str] = {}
        self._values = declare_parameters(self, self._refused, writable=True)
        self._driver: BatteryDriver | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def settings(self) -> NodeSettings | None:
        """The parameters in force once configured."""
        return None if self._driver is None else self._driver.settings

    def _on_set_parameters(self, parameters: list[Parameter[Any]]) -> SetParametersResult:
        """Unconfigured: take any value (configure checks them). Configured: check the change."""
        ours = {p.name: p.value for p in parameters if p.name in PARAMETERS}
        if self._driver is None:
            self._values |= ours
            for name in ours:
                self._refused.pop(name, None)
            return SetParametersResult(successful=True)
        fixed = sorted(name for name in ours if PARAMETERS[name].read_only)
        if fixed:
            return SetParametersResult(
                successful=False,
                reason=f"{', '.join(fixed)} can change only while the node is unconfigured "
                "(deactivate and clean up, set it, configure again)",
            )
        settings, result = checked_change(self._driver.settings, parameters)
        if settings is not None:
            self._driver.apply(settings)
        return result

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters (refused: FAILURE, with what is allowed) and set up."""
        problems = [f"{name}: {reason}" for name, reason in sorted(self._refused.items())]
        try:
            settings = validate(
                {
                    name: value
                    for name, value in self._values.items()
                    if name in NodeSettings.__dataclass_fields__ and name not in self._refused
                }
            )
        except InvalidSettingError as error:
            problems.append(str(error))
        if problems:
            for problem in problems:
                self.get_logger().error(
                    f"invalid parameter: {problem}; set it (ros2 param set) and configure again"
                )
            return TransitionCallbackReturn.FAILURE
        self._driver = BatteryDriver(self, settings, self._transport_factory, Alone())
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Connect to the BMS and poll it."""
        assert self._driver is not None, "activated before configured"
        self._driver.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Disconnect from the BMS: nothing is published until activated again."""
        assert self._driver is not None, "deactivated before configured"
        self._driver.stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Remove what configure created."""
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Disconnect and remove everything, from any state."""
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Disconnect from the BMS and remove the driver (run_node calls it at exit)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.destroy()


def main(args: Sequence[str] | None = None) -> int:
    """Run the managed node (unconfigured until a manager configures it)."""
    return run_node(DalyBmsLifecycleNode, "daly_bms", args)


if __name__ == "__main__":
    sys.exit(main())
