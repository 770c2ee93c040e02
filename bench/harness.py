"""What the end-to-end benchmarks share: the BlueZ mock, a virtual BMS, the node, a listener.

The node runs as its own process (the installed ``daly_bms_node``), as on a robot; the virtual
BMS runs in this process when a benchmark needs to time its notifications, else as
``daly-bms-sim``. DDS stays on this machine, in a domain of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

from ros_env import domain_id_for_this_run  # noqa: E402 (sets localhost-only discovery)

# The node processes inherit the domain: DDS traffic stays between this run's processes.
os.environ.setdefault("ROS_DOMAIN_ID", str(domain_id_for_this_run()))

import rclpy  # noqa: E402
from bluez_mock import SimProcess, bluez_mock, sim_process  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import BatteryState  # noqa: E402

from daly_bms_ros.link.loop_thread import EventLoopThread  # noqa: E402
from daly_bms_ros.protocol import FrameAssembler  # noqa: E402
from daly_bms_ros.sim.battery import BatteryModel  # noqa: E402
from daly_bms_ros.sim.peripheral import DalyPeripheral  # noqa: E402
from daly_bms_ros.sim.responder import ModelResponder  # noqa: E402

NODE = Path(sys.executable).parents[1] / "lib" / "daly_bms_ros" / "daly_bms_node"
NAME = "DL-BENCH0001"


@contextmanager
def mock_bus(work: Path, peripherals: int = 1) -> Iterator[str]:
    """A private D-Bus with the BlueZ mock; DBUS_SYSTEM_BUS_ADDRESS points at it meanwhile."""
    with bluez_mock(work, peripherals) as address:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        yield address


@contextmanager
def virtual_bms_process(work: Path) -> Iterator[SimProcess]:
    """``daly-bms-sim`` on hci1 with its control socket, as the benchmark BMS."""
    with sim_process(NAME, work) as process:
        yield process


class TimedPeripheral:
    """The virtual BMS in this process, noting when the last notification of each answer left."""

    def __init__(self, bus_address: str, name: str = NAME) -> None:
        self.peripheral = DalyPeripheral(name, ModelResponder(BatteryModel()), adapter="hci1")
        self.answered_at: list[float] = []  # time.time() of each frame's last notification
        assembler = FrameAssembler()
        notify = self.peripheral._notifier.notify

        def timed_notify(value: bytes) -> None:
            notify(value)
            now = time.time()
            for _frame in assembler.feed(value):
                self.answered_at.append(now)

        self.peripheral._notifier.notify = timed_notify  # type: ignore[method-assign]
        self._loop = EventLoopThread("bench_bms")
        self._loop.start()
        self._bus_address = bus_address
        self.run(self.peripheral.start(bus_address))

    def run(self, coroutine: object) -> None:
        """Run a peripheral coroutine in its loop and wait for it."""
        self._loop.submit(coroutine).result(30)  # type: ignore[arg-type]

    def close(self) -> None:
        self.run(self.peripheral.stop())
        self._loop.stop(10)


def start_node(wrapper: Sequence[str] = (), **parameters: object) -> subprocess.Popen[bytes]:
    """The installed node, on hci0, finding the benchmark BMS by name.

    ``wrapper`` is a command the node runs under (a memory profiler such as ``heaptrack -o F``).
    """
    values = {"device_name": NAME, "adapter": "hci0", **parameters}
    arguments = [f"{name}:={value}" for name, value in values.items()]
    command = [*wrapper, sys.executable, str(NODE), "--ros-args", "--log-level", "warn"]
    for argument in arguments:
        command += ["-p", argument]
    return subprocess.Popen(command)


def stop_node(process: subprocess.Popen[bytes]) -> int:
    """SIGINT, as systemd and Ctrl+C do; the exit status."""
    process.send_signal(2)
    try:
        return process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


@dataclass
class Listener:
    """Arrival times of BatteryState messages and the latest diagnostics values."""

    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (arrived, stamp)
    diagnostics: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` messages arrived in all; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True


@contextmanager
def listening() -> Iterator[Listener]:
    """Subscribe to battery_state and /diagnostics in a thread of this process."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("bench_listener", context=context)
    listener = Listener()

    def battery(message: BatteryState) -> None:
        now = time.time()
        stamp = message.header.stamp.sec + message.header.stamp.nanosec * 1e-9
        with listener.lock:
            listener.arrivals.append((now, stamp))

    def diagnostics(message: DiagnosticArray) -> None:
        for status in message.status:
            with listener.lock:
                listener.diagnostics = {kv.key: kv.value for kv in status.values}

    node.create_subscription(BatteryState, "battery_state", battery, 100)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        executor.shutdown()
        thread.join(10)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def process_usage(pid: int) -> tuple[float, int]:
    """CPU seconds used so far (user + system) and resident memory in bytes of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return cpu, rss_pages * os.sysconf("SC_PAGE_SIZE")


#: What ``memory_breakdown`` reads of /proc/<pid>/status: resident memory by kind, and threads.
MEMORY_FIELDS = ("RssAnon", "RssFile", "RssShmem", "Threads")


def memory_breakdown(pid: int) -> dict[str, int]:
    """Resident memory of a process by kind, in bytes, and its thread count.

    RssAnon is what a leak grows (heap, arenas, stacks); RssFile grows too while code and data
    of the libraries are first touched, and stops when every path has run once.
    """
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in MEMORY_FIELDS:
            number = int(value.split()[0])
            values[name] = number if name == "Threads" else number * 1024
    return values


def percentiles(values: list[float], *cuts: int) -> list[float]:
    """The given percentiles of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return [
        ordered[min(len(ordered) - 1, max(0, round(cut / 100 * len(ordered)) - 1))] for cut in cuts
    ]
