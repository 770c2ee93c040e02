"""Many packs, one process: daly_bms_fleet against virtual BMS on the BlueZ mock, through bleak.

Each pack is a virtual BMS on an adapter of its own (hci1..), all read over hci0; the fleet's
parameters come from a parameters file, as on a robot.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import rclpy
import yaml
from bluez_mock import NAME_PREFIX, SimProcess, bluez_mock, sim_process
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from installed import ros_executable
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_env import domain_id_for_this_run
from ros_spin import spin_in_background
from sensor_msgs.msg import BatteryState
from test_e2e_faults import wait_until
from test_sim_a5 import serial_sim

from daly_bms_ros.link.shared import SharedLinks
from daly_bms_ros.node.fleet import DalyBmsFleet, groups_of, namespaces_of
from daly_bms_ros.node.groups import combine, parse_group
from daly_bms_ros.node.node import make_transport
from daly_bms_ros.node.parameters import InvalidSettingError, NodeSettings

PACKS = {"/a": 100.0, "/b": 50.0, "/c": 100.0}  # namespace: rated capacity (Ah)
FLEET = Path(ros_executable("daly_bms_fleet"))


class Yaml(str):
    """A value written into a parameters file as it is (``.nan``), not as Python's repr."""

    def __repr__(self) -> str:
        return str(self)


DEEP = "r: " + "series(" * 3000 + "/a" + ")" * 3000


def name_of(namespace: str) -> str:
    return f"{NAME_PREFIX}FL{namespace[1:].upper()}"


def parameters_file(
    path: Path, packs: Mapping[str, Mapping[str, object]] | None = None, **fleet: object
) -> Path:
    """A parameters file as users write it: the fleet's section and one per pack.

    ``packs``: each pack's own parameters by namespace (default: PACKS, found by name on hci0).
    """
    if packs is None:
        packs = {ns: {"device_name": name_of(ns), "adapter": "hci0"} for ns in PACKS}
    lines = ["/daly_bms_fleet:", "  ros__parameters:"]
    lines += [f"    {name}: {value!r}" for name, value in fleet.items()]
    for namespace, own in packs.items():
        lines += [f"{namespace}/daly_bms:", "  ros__parameters:"]
        lines += [f"    {name}: {value!r}" for name, value in own.items()]
        lines += [
            "    poll_interval: 0.5",
            "    connect_timeout: 5.0",
            "    request_timeout: 0.5",
            "    reconnect_delay_min: 0.2",
            "    reconnect_delay_max: 1.0",
            "    diagnostics_period: 0.5",
            "    diagnostic_updater.use_fqn: true",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, SimProcess]]:
    with bluez_mock(tmp_path, peripherals=len(PACKS)) as address, ExitStack() as sims:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield {
            namespace: sims.enter_context(
                sim_process(name_of(namespace), tmp_path, f"hci{number}",
                            "--capacity", str(capacity), "--load-period", "600")
            )
            for number, (namespace, capacity) in enumerate(PACKS.items(), start=1)
        }  # fmt: skip


@contextmanager
def fleet_context(parameters: Path) -> Iterator[Context]:
    context = Context()
    rclpy.init(
        context=context,
        domain_id=domain_id_for_this_run(),
        args=["--ros-args", "--params-file", str(parameters)],
    )
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


class Listener:
    """BatteryState of each pack and group, and each pack's latest diagnostics."""

    def __init__(self, context: Context, topics: list[str]) -> None:
        self.node = Node("fleet_listener", context=context)
        self.lock = threading.Lock()
        self.states: dict[str, list[tuple[float, BatteryState]]] = {t: [] for t in topics}
        self.diagnostics: dict[str, DiagnosticStatus] = {}
        self.by_name: dict[str, DiagnosticStatus] = {}
        for topic in topics:
            self.node.create_subscription(
                BatteryState, f"{topic}/battery_state", self._keeper(topic), 50
            )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnosed, 50)

    def _keeper(self, topic: str):  # type: ignore[no-untyped-def]
        def keep(message: BatteryState) -> None:
            with self.lock:
                self.states[topic].append((time.monotonic(), message))

        return keep

    def _diagnosed(self, message: DiagnosticArray) -> None:
        with self.lock:
            for status in message.status:
                self.diagnostics[status.name.split("/daly_bms")[0]] = status
                self.by_name[status.name] = status

    def count(self, topic: str, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for at, _ in self.states[topic] if at >= since)

    def latest(self, topic: str) -> BatteryState:
        with self.lock:
            return self.states[topic][-1][1]


def test_one_process_serves_every_pack_and_the_groups(
    packs: dict[str, SimProcess], tmp_path: Path
) -> None:
    parameters = parameters_file(
        tmp_path / "fleet.yaml",
        batteries=list(PACKS),
        pack_groups=["string: series(/a, /b)", "bank: parallel(/a, /b, /c)"],
        group_max_age=2.0,
    )
    with fleet_context(parameters) as context:
        fleet = DalyBmsFleet(context=context)
        listener = Listener(context, [*PACKS, "/string", "/bank"])
        stop = spin_in_background(context, fleet, *fleet.children, listener.node)
        try:
            for topic in (*PACKS, "/string", "/bank"):
                wait_until(lambda topic=topic: listener.count(topic) >= 3, f"{topic} states")
            # The process's one diagnostics timer follows the fastest pack's period.
            [first, *_] = fleet.children
            assert first.set_parameters([Parameter("diagnostics_period", value=0.25)])[0].successful
            assert 250_000_000 in {timer.timer_period_ns for timer in fleet.timers}
            bank = listener.latest("/bank")
            assert bank.capacity == pytest.approx(sum(PACKS.values()))  # parallel: capacities add
            members = [listener.latest(pack) for pack in PACKS]
            # Read a moment apart: the packs' currents move (at most 0.2 A/s each here).
            assert bank.current == pytest.approx(sum(m.current for m in members), abs=1.0)
            string = listener.latest("/string")
            a, b = listener.latest("/a"), listener.latest("/b")
            assert string.voltage == pytest.approx(a.voltage + b.voltage, abs=0.5)
            # The emptiest pack limits the string (their SOCs move at once: a tolerance).
            assert string.percentage == pytest.approx(min(a.percentage, b.percentage), abs=0.02)
            assert string.capacity in (a.capacity, b.capacity)
            assert string.location == "string" and bank.header.frame_id == "bank"
            # A pack that sleeps: the others keep their pace, its groups stop, the other goes on.
            packs["/c"].control({"link": "sleep"})
            time.sleep(1.0)
            since = time.monotonic()
            for name in ("/a", "/b", "/string"):  # 0.5 s polls: four in about 2 s
                wait_until(lambda name=name: listener.count(name, since) >= 4, f"{name} going on")
            assert listener.count("/c", since) == 0
            wait_until(
                lambda: listener.count("/bank", time.monotonic() - 1.0) == 0,
                "the bank to stop with a stale member",
            )
            wait_until(
                lambda: listener.diagnostics.get("/c") is not None
                and listener.diagnostics["/c"].level == DiagnosticStatus.ERROR,
                "the sleeping pack's diagnostics",
            )
            # The fleet tells which member holds the group back; the other group is fine.
            bank = listener.by_name["/daly_bms_fleet: group bank"]
            assert bank.level == DiagnosticStatus.ERROR and bank.hardware_id == "bank"
            assert "not published: /c's latest state is" in bank.message
            assert listener.by_name["/daly_bms_fleet: group string"].level == DiagnosticStatus.OK
            packs["/c"].control({"link": "wake"})
            wait_until(lambda: listener.count("/bank", time.monotonic() - 1.0) > 0, "the bank")
            wait_until(
                lambda: listener.by_name["/daly_bms_fleet: group bank"].level
                == DiagnosticStatus.OK,
                "the bank's status OK again",
            )
        finally:
            stop()
            fleet.close()


def test_an_adapter_with_more_packs_than_links_serves_them_in_turn(
    packs: dict[str, SimProcess], tmp_path: Path
) -> None:
    parameters = parameters_file(tmp_path / "turns.yaml", batteries=list(PACKS), max_connections=1)
    with fleet_context(parameters) as context:
        fleet = DalyBmsFleet(context=context)
        listener = Listener(context, list(PACKS))
        stop = spin_in_background(context, fleet, *fleet.children, listener.node)
        try:
            since = time.monotonic()
            for pack in PACKS:
                wait_until(lambda pack=pack: listener.count(pack, since) >= 4, f"{pack} in turn")
            for pack in PACKS:
                status = listener.diagnostics[pack]
                values = {value.key: value.value for value in status.values}
                assert "shared by 3 batteries, at most 1 connected" in values["schedule"]
                assert values["link_state"] in ("in_turn", "connecting")
                assert status.level != DiagnosticStatus.ERROR
        finally:
            stop()
            fleet.close()


def test_wired_packs_join_the_fleet_and_the_boards_of_a_bus_take_turns(tmp_path: Path) -> None:
    (tmp_path / "bus").mkdir()
    (tmp_path / "d2").mkdir()
    with (
        serial_sim(tmp_path / "bus", "--protocol", "a5", "--a5-bus", "2") as (_bus, bus_port),
        serial_sim(tmp_path / "d2", "--protocol", "d2", "--capacity", "50") as (_d2, d2_port),
    ):
        wired = {
            "/w1": {"transport": "serial", "serial_port": bus_port, "protocol": "a5"},
            "/w2": {"transport": "serial", "serial_port": bus_port, "board": 2},
            "/w3": {"transport": "serial", "serial_port": d2_port},
        }
        parameters = parameters_file(
            tmp_path / "wired.yaml",
            wired,
            batteries=list(wired),
            pack_groups=["bank: parallel(/w1, /w2, /w3)"],
        )
        with fleet_context(parameters) as context:
            fleet = DalyBmsFleet(context=context)
            listener = Listener(context, [*wired, "/bank"])
            stop = spin_in_background(context, fleet, *fleet.children, listener.node)
            try:
                for topic in (*wired, "/bank"):
                    wait_until(lambda topic=topic: listener.count(topic) >= 3, f"{topic} states")
                # Each board answers for its own pack (the bus's second starts 10 points lower).
                w1, w2 = listener.latest("/w1"), listener.latest("/w2")
                assert w1.percentage - w2.percentage == pytest.approx(0.1, abs=0.02)
                schedule = {v.key: v.value for v in listener.diagnostics["/w2"].values}["schedule"]
                assert f"serial port {bus_port} shared by 2 batteries" in schedule
                # A5's rated capacity (0x50) and D2's settings block add up in parallel.
                assert w1.capacity == pytest.approx(100.0)
                assert listener.latest("/bank").capacity == pytest.approx(250.0)
                # Each board its own identity (diagnostics' hardware id, the bridge's key).
                assert (w1.serial_number, w2.serial_number) == (bus_port, f"{bus_port} board 2")
            finally:
                stop()
                fleet.close()
    # Two packs on one port and board would read one BMS twice.
    same = {"/w1": wired["/w1"], "/w2": {**wired["/w1"], "protocol": "auto"}}
    with (
        fleet_context(
            parameters_file(tmp_path / "same.yaml", same, batteries=list(same))
        ) as context,
        pytest.raises(InvalidSettingError, match="of its own"),
    ):
        DalyBmsFleet(context=context)


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        ({"batteries": ["/a", "/a"]}, "distinct"),
        ({"batteries": ["front"]}, "not a namespace"),
        ({"batteries": ["/a"], "pack_groups": ["robot: series(/a, /b"]}, "')' expected"),
        ({"batteries": ["/a"], "pack_groups": ["robot series(/a)"]}, "<name>: <expression>"),
        ({"batteries": ["/a"], "pack_groups": ["r: ring(/a)"]}, "neither series nor parallel"),
        ({"batteries": ["/front-left"]}, "not a namespace"),
        ({"batteries": []}, "batteries"),
        ({"batteries": ["/a"], "pack_groups": ["r: series(/a, /x)"]}, "/x, not among batteries"),
        ({"batteries": ["/a"], "pack_groups": ["r: /a"]}, "a group combines packs"),
        (
            {"batteries": ["/a", "/b"], "pack_groups": ["r: series(/a)", "r: series(/b)"]},
            "named twice",
        ),
        ({"batteries": ["/a"], "group_max_age": 0}, "group_max_age must be a number above 0"),
        (
            {"batteries": ["/a", "/b"], "pack_groups": ["a: series(/a, /b)"]},
            "also a pack's namespace",
        ),
        ({"batteries": ["/a", "/z"]}, "each pack needs a mac_address or device_name"),
        ({"batteries": ["/a"], "group_max_age": Yaml(".nan")}, "above 0 (seconds), not nan"),
        ({"batteries": ["/a"], "group_max_age": Yaml(".inf")}, "above 0 (seconds), not inf"),
        ({"batteries": ["/a"], "pack_groups": [DEEP]}, "groups nest at most 8 deep"),
        ({"batteries": [f"/p{n}" for n in range(1000)]}, "a fleet serves at most 32"),
        ({"batteries": ["/a", "/a/"]}, "/a is named twice"),
        ({"batteries": ["/1a"]}, "not a namespace"),
        ({"batteries": ["/\u00e9"]}, "not a namespace"),
        ({"batteries": ["/front#1"]}, "not a namespace"),
    ],
)
def test_a_wrong_fleet_is_refused_with_what_is_allowed(
    tmp_path: Path, fleet: dict[str, object], message: str
) -> None:
    with (
        fleet_context(parameters_file(tmp_path / "wrong.yaml", **fleet)) as context,
        pytest.raises(InvalidSettingError, match=re.escape(message)),
    ):
        DalyBmsFleet(context=context)


def state(
    voltage: float, current: float, charge: float, capacity: float, health: int = 1
) -> BatteryState:
    return BatteryState(
        voltage=voltage, current=current, charge=charge, capacity=capacity,
        design_capacity=capacity, percentage=charge / capacity, temperature=25.0,
        present=True, power_supply_health=health,
    )  # fmt: skip


def test_series_parallel_and_nested_groups_follow_the_electrics() -> None:
    states = {
        "/a": state(51.2, -10.0, 80.0, 100.0),
        "/b": state(51.0, -10.2, 20.0, 50.0, BatteryState.POWER_SUPPLY_HEALTH_OVERHEAT),
        "/c": state(51.4, -9.8, 90.0, 100.0),
        "/d": state(51.2, -10.0, 50.0, 100.0),
    }
    string = combine(parse_group("series(/a, /b)"), states)
    assert string.voltage == pytest.approx(102.2)  # voltages add
    assert string.current == pytest.approx(-10.1)  # one current through both
    assert (string.charge, string.capacity) == (20.0, 50.0)  # the emptiest pack limits it
    assert string.percentage == pytest.approx(0.4)
    assert string.power_supply_health == BatteryState.POWER_SUPPLY_HEALTH_OVERHEAT  # the worst
    bank = combine(parse_group("parallel(/a, /b)"), states)
    assert bank.voltage == pytest.approx(51.1)
    assert bank.current == pytest.approx(-20.2)  # currents add
    assert (bank.charge, bank.capacity) == (100.0, 150.0)
    assert bank.percentage == pytest.approx((0.8 * 100 + 0.4 * 50) / 150)  # weighted by capacity
    assert bank.power_supply_status == BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
    robot = combine(parse_group("parallel(series(/a, /b), series(/c, /d))"), states)
    assert robot.voltage == pytest.approx((102.2 + 102.6) / 2)
    assert robot.current == pytest.approx(-10.1 + -9.9)
    assert robot.capacity == pytest.approx(50.0 + 100.0)
    assert robot.percentage == pytest.approx((0.4 * 50 + 0.5 * 100) / 150)
    assert parse_group("parallel(series(/a, /b), series(/c, /d))").packs() == [
        "/a",
        "/b",
        "/c",
        "/d",
    ]


def test_the_shipped_four_battery_file_is_a_valid_fleet() -> None:
    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "four_batteries.yaml").open())
    fleet = config["/daly_bms_fleet"]["ros__parameters"]
    namespaces = namespaces_of(fleet["batteries"])
    [robot] = groups_of(fleet["pack_groups"]).values()
    assert sorted(robot.packs()) == sorted(namespaces)
    for namespace in namespaces:
        assert config[f"{namespace}/daly_bms"]["ros__parameters"]["mac_address"]


def test_two_spellings_of_one_port_are_one_port(tmp_path: Path) -> None:
    """A link, a detour through '..', the path itself: one port, one BMS (board 1) on it."""
    (tmp_path / "by-id").symlink_to("/dev/ttyDALY0")
    spellings = ["/dev/ttyDALY0", "/dev/../dev/ttyDALY0", str(tmp_path / "by-id")]
    for other in spellings[1:]:
        packs = {
            "/a": {"transport": "serial", "serial_port": spellings[0]},
            "/b": {"transport": "serial", "serial_port": other},
        }
        with (
            fleet_context(
                parameters_file(tmp_path / "ports.yaml", packs, batteries=list(packs))
            ) as context,
            pytest.raises(
                InvalidSettingError,
                match=re.escape("/a and /b name one (serial port /dev/ttyDALY0)"),
            ),
        ):
            DalyBmsFleet(context=context)
    # Boards of one bus, however their port is spelt, take turns on it.
    links = SharedLinks()
    for spelling in spellings:
        links.register_bus(spelling)
    turns = {id(links.bus_turns(spelling)) for spelling in spellings}
    assert len(turns) == 1
    assert links.bus_turns(spellings[0]) is not None


def test_a_section_written_twice_is_refused(tmp_path: Path) -> None:
    """rcl would take the second /a section silently, and the first's BMS would be lost."""
    parameters = parameters_file(tmp_path / "twice.yaml", batteries=list(PACKS))
    parameters.write_text(parameters.read_text() + TWICE)
    with (
        fleet_context(parameters) as context,
        pytest.raises(InvalidSettingError, match=re.escape("'/a/daly_bms' is written twice")),
    ):
        DalyBmsFleet(context=context, parameter_files=[str(parameters)])


TWICE = "/a/daly_bms:\n  ros__parameters:\n    device_name: DL-OTHER\n"


@pytest.mark.parametrize(
    ("fleet", "appended", "message"),
    [
        ({"batteries": ["/a"], "group_max_age": Yaml(".nan")}, "", "not nan"),
        ({"batteries": ["/a"], "pack_groups": [DEEP]}, "", "nest at most 8 deep"),
        ({"batteries": [f"/p{n}" for n in range(1000)]}, "", "at most 32"),
        ({"batteries": list(PACKS)}, TWICE, "'/a/daly_bms' is written twice (lines 4 and 37)"),
    ],
)
def test_a_bad_fleet_ends_the_process_with_2_and_one_line(
    tmp_path: Path, fleet: dict[str, object], appended: str, message: str
) -> None:
    """What a service can tell from a restart that would not help: exit 2, one line why."""
    parameters = parameters_file(tmp_path / "bad.yaml", **fleet)
    parameters.write_text(parameters.read_text() + appended)
    result = subprocess.run(
        [str(FLEET), "--ros-args", "--params-file", str(parameters)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "invalid parameter" in line and message in line
    assert len(line) < 400


def test_a_parameters_file_that_does_not_parse_stops_the_process(tmp_path: Path) -> None:
    """Exit 2, which the launch files and units take for "fix the configuration"."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("/daly_bms_fleet:\n  ros__parameters:\n    batteries: [/a\n")
    result = subprocess.run(
        [str(FLEET), "--ros-args", "--params-file", str(broken)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "invalid arguments" in result.stderr


class SearchLog:
    """When each pack's searches started (monotonic s), read through the real transport."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: list[tuple[str, float]] = []

    def factory(self, settings: NodeSettings) -> Any:
        log, transport = self, make_transport(settings)

        class Searching:
            """The real transport; its searches are logged."""

            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

            async def find(self) -> None:
                with log.lock:
                    log.starts.append((settings.device_name, time.monotonic()))
                await transport.find()

        return Searching()

    def since(self, moment: float) -> list[str]:
        with self.lock:
            return [name for name, at in self.starts if at >= moment]


@pytest.mark.parametrize("max_connections", [0, 1])
def test_a_stop_ends_the_searches_of_absent_packs_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_connections: int
) -> None:
    """Four absent packs on one adapter: one searches, three queue for its search lock.

    A stop ends the search under way and every queued one: none starts after it (each ran
    its whole search, connect_timeout, as the one before stopped). Served in turn or not.
    """
    absent = {
        f"/p{number}": {"device_name": f"{NAME_PREFIX}GONE{number}", "adapter": "hci0"}
        for number in range(1, 5)
    }
    searches = SearchLog()
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        parameters = parameters_file(
            tmp_path / "absent.yaml",
            absent,
            batteries=list(absent),
            max_connections=max_connections,
        )
        with fleet_context(parameters) as context:
            fleet = DalyBmsFleet(searches.factory, context=context)
            try:
                wait_until(lambda: searches.since(0.0), "a search")
            finally:
                stop = time.monotonic()
                fleet.close()
                took = time.monotonic() - stop
    assert searches.since(stop) == []
    assert took < 5.0  # every pack's search took its full connect_timeout (5 s) in turn
