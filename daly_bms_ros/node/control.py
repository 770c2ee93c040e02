"""The node's services that write to the BMS, refused unless ``allow_control`` is true.

Services (relative names, so under the battery's namespace): ``set_charge_mos``,
``set_discharge_mos`` and ``set_balancing`` (SetSwitch), ``set_soc`` (SetSoc), ``set_setting``
(SetSetting, any writable setting by name) and ``restart`` (Restart). Each write goes through
the rules of ``daly_bms_ros.control`` (allowed, confirmed where it can cut the power), then over
the link (Bluetooth, a serial port, a CAN bus) between two polls, and answers only once the BMS
holds the value when read back. The callbacks are coroutines: the executor serves topics and
other calls while a write waits for the BMS.
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future

from daly_bms_ros.control import (
    ControlRefusedError,
    Permission,
    check_write,
    describe_failure,
    describe_write,
)
from daly_bms_ros.link.client import WriteOutcomeUnknownError, WriteResult
from daly_bms_ros.link.transport import TransportError
from daly_bms_ros.srv import Restart, SetSetting, SetSoc, SetSwitch
from daly_bms_ros.text import printable

HOW_TO_ALLOW = Permission(
    "starting the node with the parameter allow_control:=true",
    "set confirm_power_cut in the request",
)
#: Switch services: service name and the setting each one writes.
SWITCHES = {
    "set_charge_mos": "charge_switch",
    "set_discharge_mos": "discharge_switch",
    "set_balancing": "balancer_switch",
}
Write = Callable[[str, float], concurrent.futures.Future[WriteResult]]


class ControlServices:
    """Serve the write services of one node; ``write`` starts a write on the BMS link."""

    def __init__(
        self, node: Node, write: Write, allowed: bool, reported_soc: Callable[[], float]
    ) -> None:
        self._node = node
        self._write = write
        self._allowed = allowed
        #: The SOC (%) of the latest sample, NaN before any: set_soc's ``previous``.
        self._reported_soc = reported_soc
        # Writes end in the link's thread; their results reach the executor through this
        # queue and a guard condition, and complete the futures the callbacks await.
        self._finished: queue.SimpleQueue[
            tuple[Future[WriteResult], concurrent.futures.Future[WriteResult]]
        ] = queue.SimpleQueue()
        # A group of their own: a call awaiting the BMS must not hold the node's default
        # (mutually exclusive) group, where samples and diagnostics are published.
        group = ReentrantCallbackGroup()
        self._wake = node.create_guard_condition(self._complete, callback_group=group)
        self._services = [
            *(
                node.create_service(
                    SetSwitch, service, self._switch_callback(setting), callback_group=group
                )
                for service, setting in SWITCHES.items()
            ),
            node.create_service(SetSoc, "set_soc", self._set_soc, callback_group=group),
            node.create_service(SetSetting, "set_setting", self._set_setting, callback_group=group),
            node.create_service(Restart, "restart", self._restart, callback_group=group),
        ]

    def destroy(self) -> None:
        """Remove the services from the node."""
        for service in self._services:
            self._node.destroy_service(service)
        self._node.destroy_guard_condition(self._wake)

    def _complete(self) -> None:
        """Hand finished writes to the callbacks awaiting them (executor thread)."""
        while True:
            try:
                awaited, finished = self._finished.get_nowait()
            except queue.Empty:
                return
            if finished.cancelled():  # the driver stopped (deactivated) during the write
                awaited.set_exception(
                    WriteOutcomeUnknownError(
                        "the driver stopped during the write: whether the BMS holds it is not "
                        "known",
                        None,
                    )
                )
                continue
            error = finished.exception()
            if isinstance(error, Exception):
                awaited.set_exception(error)
            else:
                awaited.set_result(finished.result())

    async def _run(
        self, name: str, value: float, confirmed: bool, requester: str, response: Any
    ) -> Any:
        """Check, write and fill ``response`` (success, message; previous/current if it has)."""
        logger = self._node.get_logger()
        # Both go into the log: no forged lines.
        name, requester = printable(name), printable(requester)
        try:
            check_write(name, value, self._allowed, confirmed, HOW_TO_ALLOW)
            finished = self._write(name, value)
        except (ControlRefusedError, TransportError, ValueError) as error:
            logger.warning(f"{error} (asked by {requester or 'an unnamed requester'})")
            response.success, response.message = False, str(error)
            _fill_values(response, None)
            return response
        awaited: Future[WriteResult] = Future()

        def hand_over(done: concurrent.futures.Future[WriteResult]) -> None:
            self._finished.put((awaited, done))
            self._wake.trigger()

        finished.add_done_callback(hand_over)
        try:
            result = await awaited
        except Exception as error:
            outcome = "is not known" if isinstance(error, WriteOutcomeUnknownError) else "failed"
            logger.error(
                f"write of {name} = {value:g} by {requester or 'an unnamed requester'} "
                f"{outcome}: {describe_failure(error)}"
            )
            response.success, response.message = False, describe_failure(error)
            _fill_values(response, getattr(error, "result", None))
            return response
        assert result is not None  # set_result was given a WriteResult
        line = describe_write(requester, result)
        logger.info(line)
        response.success, response.message = True, line
        _fill_values(response, result)
        return response

    def _switch_callback(
        self, setting: str
    ) -> Callable[[SetSwitch.Request, SetSwitch.Response], Any]:
        async def callback(request: SetSwitch.Request, response: SetSwitch.Response) -> Any:
            return await self._run(
                setting,
                float(request.enable),
                request.confirm_power_cut,
                request.requester,
                response,
            )

        return callback

    async def _set_soc(self, request: SetSoc.Request, response: SetSoc.Response) -> Any:
        """Set the SOC; ``previous`` is the SOC the BMS reported, not the register's last set.

        The register 0x00A7 holds the value last written to it, which the coulomb counter has
        counted away from since: the user means the SOC the BMS tells.
        """
        reported = self._reported_soc()
        await self._run("soc_setting", request.soc, False, request.requester, response)
        response.previous = reported
        if response.success:
            response.message += f"; the BMS reported {reported:g} % before"
        return response

    async def _set_setting(self, request: SetSetting.Request, response: SetSetting.Response) -> Any:
        return await self._run(
            request.name, request.value, request.confirm_power_cut, request.requester, response
        )

    async def _restart(self, request: Restart.Request, response: Restart.Response) -> Any:
        return await self._run(
            "restart", 1.0, request.confirm_power_cut, request.requester, response
        )


def _fill_values(response: Any, result: WriteResult | None) -> None:
    """Set the value before and after a write where the response has them (NaN: unknown)."""
    if hasattr(response, "current"):
        response.previous = math.nan if result is None or result.before is None else result.before
        response.current = math.nan if result is None else result.after
