"""The node as ROS users meet it: parameters, time, identity, diagnostics, Nav2, launch policy.

Through real rclpy and DDS against the BMS double that answers with real captures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from bms_double import BmsDouble
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from installed import ros_executable
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from node_harness import node_running
from rcl_interfaces.msg import ParameterType
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_system_default,
)
from rclpy.task import Future
from real_frames import field_bytes
from ros_env import domain_id_for_this_run
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import BatteryState

from daly_bms_ros.node.launch_arguments import (
    LAUNCH_PARAMETERS,
    NOT_GIVEN,
    RefusedConfigurationError,
    check_exit,
    parameter_overrides,
)
from daly_bms_ros.node.lifecycle import DalyBmsLifecycleNode
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.node.parameters import PARAMETERS, InvalidSettingError
from daly_bms_ros.protocol import STATUS_80_BLOCK

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_lowering_the_poll_interval_takes_effect_at_once(ros_context: Context) -> None:
    with node_running(ros_context, BmsDouble(), poll_interval=3600.0) as (node, listener):
        listener.wait_for(lambda: bool(listener.battery), "the first sample")
        count = len(listener.battery)
        # An integer, as users type seconds: accepted for a floating-point parameter.
        result = node.set_parameters([Parameter("poll_interval", value=1)])[0]
        assert result.successful, result.reason
        assert node.settings.poll_interval == 1.0
        listener.wait_for(lambda: len(listener.battery) > count, "a sample after the change")


@pytest.mark.parametrize(
    ("value", "allowed"), [(0, "Min: 0.1, Max: 3600.0"), ("fast", "a number from 0.1 to 3600")]
)
def test_a_poll_interval_that_is_not_allowed_is_refused(
    ros_context: Context, capfd: pytest.CaptureFixture[str], value: Any, allowed: str
) -> None:
    """Out of range: rclpy's reason names the range; a text: the node's log says what is allowed."""
    with node_running(ros_context, BmsDouble()) as (node, _listener):
        result = node.set_parameters([Parameter("poll_interval", value=value)])[0]
        assert not result.successful
        assert allowed in result.reason + capfd.readouterr().err
        assert node.get_parameter("poll_interval").type_ == Parameter.Type.DOUBLE


def answer(future: Future) -> Any:
    """Wait for a service call's answer (the nodes spin in another thread)."""
    deadline = time.monotonic() + 20
    while not future.done():
        assert time.monotonic() < deadline, "no answer from the parameter service"
        time.sleep(0.02)
    return future.result()


def test_an_integer_for_a_double_parameter_is_taken_as_a_double(ros_context: Context) -> None:
    """poll_interval:=2 at start and a set of 3 over the parameter service: still a double."""
    double_type = ParameterType.PARAMETER_DOUBLE
    user = Node("parameter_user", context=ros_context)
    with node_running(
        ros_context, BmsDouble(), extra_nodes=[user], poll_interval=2, stale_timeout=30
    ) as (node, _listener):
        assert node.get_parameter("poll_interval").type_ == Parameter.Type.DOUBLE
        client = AsyncParameterClient(user, "/daly_bms")
        assert client.wait_for_services(timeout_sec=10)
        described = answer(client.describe_parameters(["poll_interval"])).descriptors[0]
        assert described.type == double_type
        assert not described.dynamic_typing
        assert described.floating_point_range[0].from_value == 0.1
        result = answer(client.set_parameters([Parameter("poll_interval", value=3)]))
        assert result.results[0].successful, result.results[0].reason
        value = answer(client.get_parameters(["poll_interval"])).values[0]
        assert (value.type, value.double_value) == (double_type, 3.0)
        assert node.settings.poll_interval == 3.0
        # A read-only double given as an integer at start is a double too.
        assert node.get_parameter("stale_timeout").type_ == Parameter.Type.DOUBLE
        text = answer(client.set_parameters([Parameter("poll_interval", value="fast")]))
        assert not text.results[0].successful
    user.destroy_node()


def test_an_integer_out_of_range_at_start_is_refused_with_the_range(ros_context: Context) -> None:
    with pytest.raises(InvalidSettingError, match=r"from 0\.1 to 3600, not 0"):
        DalyBmsNode(context=ros_context, parameter_overrides=[Parameter("poll_interval", value=0)])


def test_all_stamps_come_from_the_node_clock_under_sim_time(ros_context: Context) -> None:
    """use_sim_time: messages carry /clock time; diagnostics come before any /clock too."""
    with node_running(
        ros_context, BmsDouble(), parameter_overrides_extra=[Parameter("use_sim_time", value=True)]
    ) as (_node, listener):
        listener.wait_for(lambda: bool(listener.diagnostics), "diagnostics without /clock")
        listener.wait_for(lambda: bool(listener.battery), "a sample without /clock")
        assert listener.battery[0].header.stamp == Time()  # no /clock yet: time 0
        clock = listener.node.create_publisher(Clock, "/clock", 10)
        simulated = Time(sec=5000)

        def sim_time_stamped() -> bool:
            clock.publish(Clock(clock=simulated))
            return listener.battery[-1].header.stamp.sec >= 5000

        listener.wait_for(sim_time_stamped, "a sample stamped with /clock time")
        battery = listener.battery[-1]
        assert battery.header.stamp.sec < 5100  # sim time, not the wall clock
        listener.wait_for(
            lambda: any(cells.header.stamp == battery.header.stamp for cells in listener.cells),
            "the DalyCells of the same sample, with the same stamp",
        )
        listener.wait_for(
            lambda: listener.diagnostics[-1].header.stamp.sec >= 5000, "diagnostics in sim time"
        )


def test_diagnostics_tell_when_sim_time_stamps_say_nothing(ros_context: Context) -> None:
    """Stamped 0 before the first /clock, one stamp over and over once /clock stops: WARN."""
    with node_running(
        ros_context,
        BmsDouble(),
        stale_timeout=1.0,
        parameter_overrides_extra=[Parameter("use_sim_time", value=True)],
    ) as (_node, listener):

        def says(text: str) -> bool:
            status = listener.last_diagnostic()
            return status is not None and text in status.message

        listener.wait_for(lambda: says("no /clock received yet"), "no /clock yet told")
        assert listener.last_diagnostic().level == DiagnosticStatus.WARN
        clock = listener.node.create_publisher(Clock, "/clock", 10)
        ticks = iter(range(100, 10**6))

        def ticking() -> bool:
            clock.publish(Clock(clock=Time(sec=next(ticks))))
            status = listener.last_diagnostic()
            return status is not None and "use_sim_time" not in status.message

        listener.wait_for(ticking, "diagnostics content while /clock runs")
        assert {v.key: v.value for v in listener.last_diagnostic().values}["stamps"] == "ok"
        # /clock stops: after stale_timeout the stamps are told frozen.
        listener.wait_for(lambda: says("/clock stood still"), "a stopped /clock told")


def test_failed_polls_are_logged(ros_context: Context, capfd: pytest.CaptureFixture[str]) -> None:
    double = BmsDouble()
    logged: list[str] = []
    with node_running(ros_context, double) as (_node, listener):
        listener.wait_for(lambda: bool(listener.battery), "a sample")
        double.silent = True

        def failed_poll_logged() -> bool:
            logged.extend(capfd.readouterr().err.splitlines())
            return any("a poll of" in line for line in logged)

        listener.wait_for(failed_poll_logged, "a log line about the failed poll")
    line = next(line for line in logged if "a poll of" in line)
    # A warning that names the pack and why the poll failed.
    assert "WARN" in line and double.description in line and "no answer" in line


def test_found_by_name_the_battery_is_known_by_its_address(ros_context: Context) -> None:
    double = BmsDouble()
    with node_running(ros_context, double, mac_address="", device_name="DL-DOUBLE") as (
        _node,
        listener,
    ):
        listener.wait_for(lambda: bool(listener.battery), "a sample")
        assert listener.battery[0].serial_number == double.address
        listener.wait_for(lambda: listener.last_diagnostic() is not None, "diagnostics")
        status = listener.last_diagnostic()
        assert status is not None
        # diagnostic_updater's naming: "<node name>: <task>", a stable hardware id.
        assert status.name == "daly_bms: battery"
        assert status.hardware_id == double.address


def test_diagnostics_name_with_the_fully_qualified_node_name_on_request(
    ros_context: Context,
) -> None:
    with node_running(
        ros_context,
        BmsDouble(),
        parameter_overrides_extra=[Parameter("diagnostic_updater.use_fqn", value=True)],
        namespace="front",
    ) as (_node, listener):
        listener.wait_for(lambda: listener.last_diagnostic() is not None, "diagnostics")
        status = listener.last_diagnostic()
        assert status is not None and status.name == "/front/daly_bms: battery"


def generic_analyzer_matches(analyzer: dict[str, Any], name: str) -> bool:
    """diagnostic_aggregator's GenericAnalyzer: startswith, contains, name, expected."""
    return (
        any(name.startswith(prefix) for prefix in analyzer.get("startswith", []))
        or any(part in name for part in analyzer.get("contains", []))
        or name in analyzer.get("name", [])
        or name in analyzer.get("expected", [])
    )


@pytest.mark.parametrize(
    ("file", "names"),
    [
        ("diagnostic_analyzers.yaml", {"battery": ["daly_bms: battery"]}),
        (
            "diagnostic_analyzers_two_batteries.yaml",
            {"left": ["/left/daly_bms: battery"], "right": ["/right/daly_bms: battery"]},
        ),
    ],
)
def test_shipped_analyzers_group_the_status_names_the_node_publishes(
    file: str, names: dict[str, list[str]]
) -> None:
    analyzers = yaml.safe_load((CONFIG / file).read_text())["analyzers"]["ros__parameters"]
    for key, status_names in names.items():
        analyzer = analyzers[key]
        assert analyzer["type"] == "diagnostic_aggregator/GenericAnalyzer"
        for name in status_names:
            assert generic_analyzer_matches(analyzer, name), (key, name)
        others = [other for other in names if other != key]
        for other in others:
            for name in names[other]:
                assert not generic_analyzer_matches(analyzer, name), (key, name)


def test_nav2_consumers_read_the_battery_as_they_subscribe(ros_context: Context) -> None:
    """Nav2's IsBatteryLow/IsBatteryCharging (SystemDefaultsQoS, percentage 0..1 against
    min_battery, power_supply_status CHARGING) and the docking server's SimpleChargingDock
    (relative "battery_state", reliable depth 1, current > charging_threshold 0.5 A).
    """
    double = BmsDouble()
    # A real discharge (-3.1 A, SOC 53 %), read inverted: a pack charging at 3.1 A.
    double.answers[(STATUS_80_BLOCK.start, STATUS_80_BLOCK.count)] = field_bytes(
        "blue16s-status80-2"
    )
    nav2 = Node("bt_navigator", context=ros_context)
    dock = Node("docking_server", context=ros_context)
    behavior_tree: list[BatteryState] = []
    docking: list[BatteryState] = []
    # The behavior tree's port battery_topic set to the driver's topic (or one remap).
    nav2.create_subscription(
        BatteryState, "/battery_state", behavior_tree.append, qos_profile_system_default
    )
    dock.create_subscription(
        BatteryState,
        "battery_state",
        docking.append,
        QoSProfile(
            depth=1,
            reliability=QoSReliabilityPolicy.RELIABLE,
            durability=QoSDurabilityPolicy.VOLATILE,
        ),
    )
    with node_running(ros_context, double, invert_current=True, extra_nodes=[nav2, dock]) as (
        _node,
        listener,
    ):
        listener.wait_for(lambda: bool(behavior_tree and docking), "Nav2's subscriptions")
        for message in (behavior_tree[0], docking[0]):
            min_battery = 0.2  # Nav2's example value, on the message's 0..1 scale
            assert 0.0 <= message.percentage <= 1.0
            assert not message.percentage <= min_battery  # IsBatteryLow: not low at 53 %
            assert message.power_supply_status == BatteryState.POWER_SUPPLY_STATUS_CHARGING
            charging_threshold = 0.5
            assert message.current > charging_threshold  # SimpleChargingDock: charging
    nav2.destroy_node()
    dock.destroy_node()


def test_every_launch_argument_is_a_parameter_and_is_typed() -> None:
    assert set(LAUNCH_PARAMETERS) <= set(PARAMETERS)
    given = {name: NOT_GIVEN for name in LAUNCH_PARAMETERS}
    given |= {
        "adapter": "hci1",
        "poll_interval": "2",
        "design_capacity": "105.5",
        "invert_current": "True",
        "allow_control": "1",
        "publish_raw_frames": "0",
        "mac_address": "",  # given empty: clears the parameters file's address
        "device_name": "''",  # empty as ros2 launch takes it: "device_name:=''"
        "use_sim_time": "true",
        "frame_id": "battery_rear",
        "transport": "serial",
        "serial_port": "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
        "baud": "9600",
        "rs485": "false",
        "protocol": "a5",
        "board": "2",
    }
    assert parameter_overrides(given) == {
        "adapter": "hci1",
        "poll_interval": 2,
        "design_capacity": 105.5,
        "invert_current": True,
        "allow_control": True,
        "publish_raw_frames": False,
        "mac_address": "",
        "device_name": "",
        "use_sim_time": True,
        "frame_id": "battery_rear",
        "transport": "serial",
        "serial_port": "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
        "baud": 9600,
        "rs485": False,
        "protocol": "a5",
        "board": 2,
    }
    # Not a number: passed on as text, for the node to refuse with what is allowed.
    assert parameter_overrides({"poll_interval": "soon"}) == {"poll_interval": "soon"}
    # Not a boolean: refused here, saying what launch takes.
    for name in ("allow_control", "use_sim_time"):
        with pytest.raises(InvalidSettingError, match="give true or false \\(or 1 or 0"):
            parameter_overrides({name: "yes"})


@pytest.mark.parametrize(
    ("returncode", "refused"),
    [(0, False), (1, False), (-2, False), (-15, False), (None, False), (2, True)],
)
def test_only_refused_parameters_end_the_launch(returncode: int | None, refused: bool) -> None:
    """A crash or a stop is left to the launch's respawn; exit 2 (bad parameters) ends it."""
    try:
        check_exit("daly_bms", returncode)
    except RefusedConfigurationError as error:
        assert refused, f"exit {returncode} ended the launch: {error}"
        assert "daly_bms refused its parameters (exit 2" in str(error)
    else:
        assert not refused, "exit 2 (refused parameters) was left to respawn"


def test_thresholds_turn_diagnostics_warn_then_error_at_run_time(ros_context: Context) -> None:
    """A real discharge at SOC 53 %: time to empty from it; thresholds moved past the SOC."""
    double = BmsDouble()
    double.answers[(STATUS_80_BLOCK.start, STATUS_80_BLOCK.count)] = field_bytes(
        "blue16s-status80-2"
    )
    with node_running(ros_context, double) as (node, listener):

        def diagnostic(level: bytes, text: str) -> bool:
            status = listener.last_diagnostic()
            return status is not None and status.level == level and text in status.message

        listener.wait_for(lambda: diagnostic(DiagnosticStatus.OK, "receiving"), "OK")
        values = {item.key: item.value for item in listener.last_diagnostic().values}
        # 111.3 Ah left at 3.1 A (the source's stated values): about 35.9 h.
        assert values["time_to_empty_h"] == f"{111.3 / 3.1:.2f}"
        assert values["time_to_full_h"] == "n/a"
        assert node.set_parameters([Parameter("soc_warn", value=60.0)])[0].successful
        listener.wait_for(lambda: diagnostic(DiagnosticStatus.WARN, "state of charge 53"), "WARN")
        assert node.set_parameters([Parameter("soc_error", value=55)])[0].successful
        listener.wait_for(lambda: diagnostic(DiagnosticStatus.ERROR, "error at 55"), "ERROR")
        refused = node.set_parameters([Parameter("soc_error", value=70.0)])[0]
        assert not refused.successful and "at most soc_warn" in refused.reason


def change_state(client_node: Node, transition: int) -> bool:
    """Ask the managed node for a transition through its service, as a lifecycle manager does."""
    client = client_node.create_client(ChangeState, "/daly_bms/change_state")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
    deadline = time.monotonic() + 20
    while not future.done():
        assert time.monotonic() < deadline, "no answer to the transition"
        time.sleep(0.02)
    client_node.destroy_client(client)
    return bool(future.result().success)


@contextmanager
def managed(ros_context: Context, double: BmsDouble, **parameters: Any) -> Iterator[Any]:
    """The managed node on ``double``, a listener and a lifecycle manager, spinning."""
    manager = Node("lifecycle_manager", context=ros_context)
    try:
        with node_running(
            ros_context,
            double,
            node_class=DalyBmsLifecycleNode,
            extra_nodes=[manager],
            **parameters,
        ) as (_node, listener):
            yield listener, manager
    finally:
        manager.destroy_node()


def test_stale_timeout_and_diagnostics_period_change_at_run_time(ros_context: Context) -> None:
    double = BmsDouble()
    with node_running(ros_context, double, stale_timeout=3600.0) as (node, listener):

        def told(text: str) -> bool:
            status = listener.last_diagnostic()
            return status is not None and text in status.message

        listener.wait_for(lambda: bool(listener.battery), "a sample")
        double.silent = True  # no sample from now on, and an hour before it is stale
        assert node.set_parameters([Parameter("stale_timeout", value=0.5)])[0].successful
        listener.wait_for(lambda: told("connected, no fresh sample"), "stale told")
        assert node.set_parameters([Parameter("diagnostics_period", value=2)])[0].successful
        periods = {timer.timer_period_ns for timer in node.timers}
        assert 2_000_000_000 in periods and 200_000_000 not in periods


def test_managed_node_connects_only_while_active(ros_context: Context) -> None:
    double = BmsDouble()
    with managed(ros_context, double) as (listener, manager):
        assert change_state(manager, Transition.TRANSITION_CONFIGURE)
        time.sleep(0.5)
        assert double.connects == 0 and not listener.battery  # configured, not active
        assert change_state(manager, Transition.TRANSITION_ACTIVATE)
        listener.wait_for(lambda: bool(listener.battery), "samples once active")
        assert change_state(manager, Transition.TRANSITION_DEACTIVATE)
        assert not double.is_connected  # deactivate frees the BMS
        count = len(listener.battery)
        time.sleep(0.6)  # three poll intervals
        assert len(listener.battery) == count
        assert change_state(manager, Transition.TRANSITION_ACTIVATE)
        listener.wait_for(lambda: len(listener.battery) > count, "samples after reactivation")
        assert double.connects == 2
        assert change_state(manager, Transition.TRANSITION_DEACTIVATE)
        assert change_state(manager, Transition.TRANSITION_CLEANUP)


def test_managed_node_refuses_to_configure_with_bad_parameters(ros_context: Context) -> None:
    double = BmsDouble()
    with managed(ros_context, double, technology="lead-acid") as (_listener, manager):
        assert not change_state(manager, Transition.TRANSITION_CONFIGURE)
        assert double.connects == 0


@pytest.mark.parametrize(
    ("given", "corrected"),
    [
        ({"technology": "Foo"}, Parameter("technology", value="LiFePO4")),
        ({"poll_interval": 0.01}, Parameter("poll_interval", value=0.5)),
        ({"poll_interval": "soon"}, Parameter("poll_interval", value=1)),
        ({"baud": 7}, Parameter("baud", value=9600)),
    ],
)
def test_managed_node_reports_bad_values_at_configure_and_takes_a_correction(
    ros_context: Context, capfd: pytest.CaptureFixture[str], given: Any, corrected: Parameter[Any]
) -> None:
    """It starts whatever it was given; configure says what is wrong; unconfigured, it is fixed."""
    double = BmsDouble()
    with managed(ros_context, double, **given) as (listener, manager):
        assert not change_state(manager, Transition.TRANSITION_CONFIGURE)
        error = capfd.readouterr().err
        assert f"invalid parameter: {corrected.name}" in error, error
        assert "configure again" in error
        client = AsyncParameterClient(manager, "/daly_bms")
        assert client.wait_for_services(timeout_sec=10)
        result = answer(client.set_parameters([corrected])).results[0]
        assert result.successful, result.reason  # read-only ones too, while unconfigured
        assert change_state(manager, Transition.TRANSITION_CONFIGURE)
        # Configured: what the running driver cannot take waits for cleanup.
        refused = answer(client.set_parameters([Parameter("technology", value="LiPo")]))
        assert not refused.results[0].successful
        assert "only while the node is unconfigured" in refused.results[0].reason
        changed = answer(client.set_parameters([Parameter("poll_interval", value=0.3)]))
        assert changed.results[0].successful
        assert change_state(manager, Transition.TRANSITION_ACTIVATE)
        listener.wait_for(lambda: bool(listener.battery), "samples once corrected")
        assert change_state(manager, Transition.TRANSITION_DEACTIVATE)
        assert change_state(manager, Transition.TRANSITION_CLEANUP)
        assert (
            answer(client.set_parameters([Parameter("technology", value="LiPo")]))
            .results[0]
            .successful
        )


def test_installed_managed_node_starts_with_a_value_out_of_range(ros_context: Context) -> None:
    """The process reaches unconfigured and waits for a manager (the plain node exits 2)."""
    environment = {**os.environ, "ROS_DOMAIN_ID": str(domain_id_for_this_run())}
    process = subprocess.Popen(
        [ros_executable("daly_bms_lifecycle_node"), "--ros-args", "-p", "poll_interval:=0.01"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    manager = Node("lifecycle_manager", context=ros_context)
    try:
        client = manager.create_client(GetState, "/daly_bms/get_state")
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(manager)
        state = None
        deadline = time.monotonic() + 60
        # Asked again until answered: a request sent before the service's discovery completes
        # is lost (and a node of an earlier test may linger in the graph for a moment).
        while state is None and time.monotonic() < deadline and process.poll() is None:
            future = client.call_async(GetState.Request())
            executor.spin_until_future_complete(future, timeout_sec=2)
            state = future.result()
        executor.shutdown()
        assert state is not None, "the managed node did not answer"
        assert state.current_state.label == "unconfigured"
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        manager.destroy_node()
    assert process.returncode == 0, output
