"""The rclpy node: parameters in, BatteryState / DalyCells / diagnostics out.

The link (Bluetooth, a serial port, a CAN bus) runs in an asyncio loop of its own thread
(``EventLoopThread``, or the one a fleet shares), which publishes each decoded sample as it comes
(rclpy publishers take any thread); the executor serves parameters, services and the diagnostics
timer and never waits on the link.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType  # type: ignore[attr-defined]  # Humble: no clock_type
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from rclpy.timer import Timer
from sensor_msgs.msg import BatteryState

try:
    from rclpy.event_handler import PublisherEventCallbacks
except ImportError:  # Humble: the module's earlier name
    from rclpy.qos_event import PublisherEventCallbacks

from daly_bms_ros.capture.writer import CaptureWriter
from daly_bms_ros.link.client import WriteResult
from daly_bms_ros.link.loop_thread import EventLoopThread
from daly_bms_ros.link.supervisor import BmsLink, LinkConfig, LinkState, LinkStatus
from daly_bms_ros.link.transport import BmsTransport, LinkLostError
from daly_bms_ros.msg import DalyCells, DalySettings
from daly_bms_ros.node.control import ControlServices
from daly_bms_ros.node.declaration import USE_FQN_PARAMETER, declare_parameters
from daly_bms_ros.node.diagnostics import SimClockWatch, link_diagnostics
from daly_bms_ros.node.hosting import STOP_TIMEOUT_S, Alone, Hosting
from daly_bms_ros.node.messages import BatteryIdentity, battery_state, daly_cells, daly_settings
from daly_bms_ros.node.parameters import (
    PARAMETERS,
    TECHNOLOGIES,
    InvalidSettingError,
    NodeSettings,
    target_of,
    validate,
)
from daly_bms_ros.node.raw_frames import RawFramePublisher
from daly_bms_ros.protocol import BmsSample, BmsSettings

TransportFactory = Callable[[NodeSettings], BmsTransport]
#: At most one log line per this many seconds about failed polls.
FAILED_POLL_LOG_PERIOD_S = 10.0
#: The diagnostics task: the status is named "<node name>: battery" (diagnostic_updater style).
DIAGNOSTIC_TASK = "battery"


def make_transport(settings: NodeSettings) -> BmsTransport:
    """Build the transport the parameters name: a serial port, a CAN bus, or Bluetooth LE.

    Each backend is imported only when chosen: a wired robot needs no Bluetooth libraries
    (bleak, dbus-fast), a Bluetooth one no pyserial. The packs of a process on one CAN
    channel share one open bus (``link.can_bus``).
    """
    if settings.transport == "can":
        from daly_bms_ros.link.can_transport import CanTransport  # noqa: PLC0415

        return CanTransport(
            settings.can_interface, settings.can_channel, settings.can_bitrate, settings.board
        )
    if settings.transport == "serial":
        from daly_bms_ros.link.serial_transport import SerialTransport  # noqa: PLC0415

        return SerialTransport(settings.serial_port, settings.baud, settings.rs485)
    from daly_bms_ros.link.bleak_transport import BleakTransport  # noqa: PLC0415

    return BleakTransport(
        mac_address=settings.mac_address,
        device_name=settings.device_name,
        adapter=settings.adapter,
        connect_timeout=settings.connect_timeout,
    )


def checked_change(
    settings: NodeSettings, parameters: list[Parameter[Any]]
) -> tuple[NodeSettings | None, SetParametersResult]:
    """Return the settings after a run-time change (None if refused) and the result."""
    changes = {p.name: p.value for p in parameters if p.name in PARAMETERS}
    try:
        changed = validate({**asdict(settings), **changes})
    except InvalidSettingError as error:
        return None, SetParametersResult(successful=False, reason=str(error))
    return changed, SetParametersResult(successful=True)


class BatteryDriver:
    """What a node does for one BMS: publishers, diagnostics, and the link in its loop's thread.

    Shared by the plain node (started at once) and the managed one (started on activation,
    stopped on deactivation); ``start`` and ``stop`` may alternate any number of times.
    """

    def __init__(
        self,
        node: Node,
        settings: NodeSettings,
        transport_factory: TransportFactory,
        hosting: Hosting,
    ) -> None:
        self._node = node
        self.settings = settings
        self._transport_factory = transport_factory
        #: Alone in its process, or a pack of a fleet: who owns the loop, what is shared.
        self._hosting = hosting
        self._identity = BatteryIdentity(
            frame_id=settings.frame_id,
            location=settings.location,
            serial_number=settings.serial_number or settings.mac_address.upper(),
            technology=getattr(
                BatteryState, "POWER_SUPPLY_TECHNOLOGY_" + TECHNOLOGIES[settings.technology]
            ),
            design_capacity=settings.design_capacity,
        )
        # Alone in its process, a node warns of subscribers with incompatible QoS; beside other
        # packs (daly_bms_fleet) that watch, two waitables a publisher, would cost every
        # wake-up of the process's executor more than the packs' work.
        events = None if hosting.alone else PublisherEventCallbacks(use_default_callbacks=False)
        self._battery_publisher = node.create_publisher(
            BatteryState, "battery_state", 10, event_callbacks=events
        )
        self._cells_publisher = node.create_publisher(
            DalyCells, "cells", 10, event_callbacks=events
        )
        # Latched: a late subscriber gets the settings, which change seldom.
        self._settings_publisher = node.create_publisher(
            DalySettings,
            "settings",
            QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL),
            event_callbacks=events,
        )
        self._published_settings: BmsSettings | None = None
        self._raw_frames = (
            RawFramePublisher(node, settings.frame_id) if settings.publish_raw_frames else None
        )
        self._capture: CaptureWriter | None = None
        self._control = ControlServices(
            node, self.write, settings.allow_control, self._reported_soc
        )
        self._lock = threading.Lock()
        self._link_status: LinkStatus | None = None
        self._last_sample: BmsSample | None = None
        # Samples are published from the link's thread as they come (rclpy publishers take
        # any thread), alone or beside other packs: no hand-off to the executor, whose wake-up
        # would add to every sample's latency. Alone, the node publishes its diagnostics on a
        # timer of its own; beside other packs the process publishes every pack's on one timer
        # (``diagnostic_status``).
        # Diagnostics keep coming on wall time also under use_sim_time before any /clock: a
        # driver that cannot reach its BMS must say so whatever the simulation does.
        self._diagnostics: tuple[Publisher[DiagnosticArray], Timer] | None = None
        if hosting.alone:
            publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            timer = node.create_timer(
                settings.diagnostics_period,
                lambda: publish_diagnostics(node, publisher, [self.diagnostic_status()]),
                clock=Clock(clock_type=ClockType.STEADY_TIME),
            )
            self._diagnostics = (publisher, timer)
        self._status_prefix = (
            node.get_fully_qualified_name()
            if node.get_parameter(USE_FQN_PARAMETER).value
            else node.get_name()
        )
        self._stamp_clock = SimClockWatch(node.get_clock())
        #: Whether the link was up since ``start``: "down" only then, else "not reached yet".
        self._link_was_up = False
        self._link: BmsLink | None = None
        self._loop: EventLoopThread | None = None
        self._running: concurrent.futures.Future[None] = concurrent.futures.Future()

    def start(self) -> None:
        """Connect to the BMS and poll it, in the loop its hosting gives, until ``stop``."""
        if self._link is not None:
            return  # started already
        settings = self.settings
        self._link_was_up = False
        self._node.get_logger().info(f"looking for the BMS ({self._target()})")
        turns, search_lock = self._hosting.sharing(settings)
        self._link = BmsLink(
            self._transport_factory(settings),
            LinkConfig(
                poll_interval=settings.poll_interval,
                request_timeout=settings.request_timeout,
                request_retries=settings.request_retries,
                reconnect_delay_min=settings.reconnect_delay_min,
                reconnect_delay_max=settings.reconnect_delay_max,
                invert_current=settings.invert_current,
                protocol="a5" if settings.transport == "can" else settings.protocol,
                board=settings.board,
                # A turn on a shared adapter: connecting, then the first turn's reads.
                turn_timeout=settings.connect_timeout
                + 4 * (settings.request_retries + 1) * settings.request_timeout,
            ),
            on_sample=self._on_sample,
            on_status=self._on_link_status,
            turns=turns,
            search_lock=search_lock,
        )
        if self._raw_frames is not None:
            self._link.client.taps.append(self._raw_frames)
        if settings.record_path:
            self._capture = CaptureWriter(Path(settings.record_path))
            self._capture.start()  # OSError: the node cannot start as configured
            self._link.client.taps.append(self._capture)
            self._node.get_logger().info(
                f"recording the BMS conversation to {settings.record_path}"
            )
        self._loop = self._hosting.acquire_loop()
        self._running = self._loop.submit(self._link.run())

    def write(self, name: str, value: float) -> concurrent.futures.Future[WriteResult]:
        """Start writing a setting over the link (LinkLostError when not started)."""
        link, loop = self._link, self._loop
        if link is None or loop is None:
            raise LinkLostError("the driver is not running (a managed node must be active)")
        return loop.submit(link.write(name, value))

    def stop(self) -> None:
        """Disconnect from the BMS and give its loop back; diagnostics stop until ``start``."""
        link, loop, self._link, self._loop = self._link, self._loop, None, None
        if link is None or loop is None:
            return
        try:
            loop.submit(link.stop()).result(STOP_TIMEOUT_S)
            # The link's task ends once it sees the stop (a read in progress finishes first):
            # wait for it, so that nothing of this pack runs on a shared loop after this.
            self._running.result(STOP_TIMEOUT_S)
        except concurrent.futures.TimeoutError:  # not the built-in one before Python 3.11
            self._node.get_logger().warning(f"the BMS link did not close within {STOP_TIMEOUT_S} s")
            self._running.cancel()
        except concurrent.futures.CancelledError:
            pass  # its loop ended first
        finally:
            self._hosting.release_loop(loop)
            with self._lock:
                self._link_status = None
            if self._capture is not None:
                self._capture.close()
                self._capture = None

    def destroy(self) -> None:
        """Stop, and remove the publishers and timers from the node."""
        self.stop()
        node = self._node
        for publisher in (
            self._battery_publisher,
            self._cells_publisher,
            self._settings_publisher,
            *([self._raw_frames.publisher] if self._raw_frames is not None else []),
        ):
            node.destroy_publisher(publisher)
        self._control.destroy()
        if self._diagnostics is not None:
            node.destroy_publisher(self._diagnostics[0])
            node.destroy_timer(self._diagnostics[1])

    def _target(self) -> str:
        return target_of(self.settings) or (
            "first device that looks like a Daly BMS (DL-…/JHB-…, fff0/ff00, manufacturer)"
        )

    def apply(self, settings: NodeSettings) -> None:
        """Take run-time changes: a new poll or diagnostics period at once, thresholds from now.

        Beside other packs the process's one diagnostics timer follows ``diagnostics_period``
        (``DalyBmsNode.on_settings_change``).
        """
        if settings.poll_interval != self.settings.poll_interval:
            if self._loop is not None and self._link is not None:
                self._loop.call_soon(self._link.set_poll_interval, settings.poll_interval)
            self._node.get_logger().info(f"poll_interval is now {settings.poll_interval} s")
        if settings.diagnostics_period != self.settings.diagnostics_period:
            if self._diagnostics is not None:
                set_period(self._diagnostics[1], settings.diagnostics_period)
            self._node.get_logger().info(
                f"diagnostics_period is now {settings.diagnostics_period} s"
            )
        self.settings = settings

    # Called in the link's thread.
    def _on_sample(self, sample: BmsSample) -> None:
        with self._lock:
            self._last_sample = sample
        # RCLError: the process is stopping, rclpy's signal handler shut the context down
        # before the link stopped. The sample goes nowhere; the link is not to fail for it.
        with contextlib.suppress(RCLError):
            self._publish(sample)

    def _publish(self, sample: BmsSample) -> None:
        # The stamp is the moment the answer arrived, on the node's clock (sim time too).
        stamp = self._node.get_clock().now().to_msg()
        identity = dataclasses.replace(self._identity, serial_number=self._serial_number())
        self._battery_publisher.publish(battery_state(sample, identity, stamp))
        self._cells_publisher.publish(daly_cells(sample, self._identity.frame_id, stamp))
        if sample.settings is not None and sample.settings != self._published_settings:
            self._settings_publisher.publish(
                daly_settings(sample.settings, sample.device, self._identity.frame_id, stamp)
            )
            self._published_settings = sample.settings

    def _on_link_status(self, status: LinkStatus) -> None:
        with self._lock:
            previous, self._link_status = self._link_status, status
        entered = previous is None or previous.state is not status.state
        logger = self._node.get_logger()
        if status.state in (LinkState.CONNECTED, LinkState.IN_TURN):
            self._link_was_up = True
        if entered and status.state is LinkState.CONNECTED and not status.schedule:
            logger.info(f"connected to {status.device}")
        elif entered and status.state is LinkState.BACKOFF and not self._link_was_up:
            # Never up since the start: nothing went down.
            logger.warning(
                f"BMS not reached yet ({status.last_error}); retrying, "
                f"{status.consecutive_failures} attempt(s) failed"
            )
        elif entered and status.state is LinkState.BACKOFF:
            logger.warning(
                f"BMS link down ({status.last_error}); retrying, "
                f"{status.consecutive_failures} failure(s) in a row"
            )
        elif status.failed_polls and (previous is None or not previous.failed_polls):
            logger.warning(
                f"a poll of {status.device} failed ({status.last_error}); polling on",
                throttle_duration_sec=FAILED_POLL_LOG_PERIOD_S,
            )

    # Called in any thread: what they read is behind the lock.
    def _reported_soc(self) -> float:
        """Return the SOC (%) of the latest sample, NaN before any."""
        with self._lock:
            sample = self._last_sample
        return math.nan if sample is None else sample.status.soc

    def _serial_number(self) -> str:
        """Return the battery's stable identity: the parameter, the BMS's serial, its address.

        The same however the BMS was found (by address or by name), once it has been found.
        """
        with self._lock:
            status = self._link_status
        if status is None:
            return self._identity.serial_number
        return (
            self.settings.serial_number
            or status.device_information.get("serial_number", "")
            or status.address
            or self._identity.serial_number
        )

    def diagnostic_status(self) -> DiagnosticStatus | None:
        """Return the battery's diagnostics status now; None while the driver is stopped."""
        with self._lock:
            status, sample = self._link_status, self._last_sample
        if status is None:
            return None
        return link_diagnostics(
            f"{self._status_prefix}: {DIAGNOSTIC_TASK}",
            self._serial_number() or self.settings.device_name or "none",
            status,
            sample,
            self.settings,
            self._stamp_clock.problem(self.settings.stale_timeout),
        )


def set_period(timer: Timer, seconds: float) -> None:
    """Give ``timer`` a new period, counted from now."""
    timer.timer_period_ns = round(seconds * 1e9)
    timer.reset()


def publish_diagnostics(
    node: Node,
    publisher: Publisher[DiagnosticArray],
    statuses: Iterable[DiagnosticStatus | None],
) -> None:
    """Publish the given statuses (those that are not None) as one DiagnosticArray."""
    message = DiagnosticArray()
    message.header.stamp = node.get_clock().now().to_msg()
    message.status = [status for status in statuses if status is not None]
    if message.status:
        publisher.publish(message)


class DalyBmsNode(Node):
    """Publish one Daly BMS on ``battery_state``, ``cells`` and ``/diagnostics``, from start."""

    def __init__(
        self,
        transport_factory: TransportFactory = make_transport,
        hosting: Hosting | None = None,
        **node_options: Any,
    ) -> None:
        """Start at once alone; as a pack of a fleet (``hosting``), at ``start``.

        A fleet's packs each register what they share before any starts.
        """
        super().__init__("daly_bms", **node_options)
        settings = validate(declare_parameters(self))
        hosting = hosting or Alone()
        self._driver = BatteryDriver(self, settings, transport_factory, hosting)
        self._settings_listeners: list[Callable[[], None]] = []
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if hosting.alone:
            self._driver.start()
        else:
            hosting.register(settings)

    def start(self) -> None:
        """Connect to the BMS and poll it (a pack of a fleet)."""
        self._driver.start()

    def diagnostic_status(self) -> DiagnosticStatus | None:
        """Return the battery's diagnostics status now (a pack of a fleet publishes it)."""
        return self._driver.diagnostic_status()

    @property
    def settings(self) -> NodeSettings:
        """The parameters in force."""
        return self._driver.settings

    def _on_set_parameters(self, parameters: list[Parameter[Any]]) -> SetParametersResult:
        """Accept a run-time change only if the whole set stays valid, and apply it."""
        settings, result = checked_change(self._driver.settings, parameters)
        if settings is not None:
            self._driver.apply(settings)
            for listener in self._settings_listeners:
                listener()
        return result

    def on_settings_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each run-time change is applied (``settings`` holds it)."""
        self._settings_listeners.append(listener)

    def close(self) -> None:
        """Disconnect from the BMS and give its loop back."""
        self._driver.stop()
