"""What each battery costs: N packs in one daly_bms_fleet process against N daly_bms_node processes.

For N in ``--counts`` (default 1 2 4 8): N virtual BMS (daly-bms-sim, one BlueZ-mock adapter
each, read over hci0) are served at 1 s polls, first by one fleet process, then by N single
nodes; after a warm-up, resident memory and CPU (% of one core, from /proc over ``--seconds``)
are summed over the driver's processes, and samples/s counted on every pack's battery_state.

    .venv/bin/python bench/fleet_cost.py [--counts 1 2 4 8] [--seconds 60]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import rclpy
from harness import NODE, mock_bus, process_usage, sim_process, stop_node
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import BatteryState

FLEET = NODE.parent / "daly_bms_fleet"
WARM_UP_S = 20.0


def pack_name(number: int) -> str:
    return f"DL-BENCHF{number:02d}"


def namespace(number: int) -> str:
    return f"/pack{number:02d}"


def write_parameters(path: Path, count: int) -> Path:
    lines = ["/daly_bms_fleet:", "  ros__parameters:"]
    lines.append(f"    batteries: {[namespace(n) for n in range(1, count + 1)]!r}")
    for number in range(1, count + 1):
        lines += [
            f"{namespace(number)}/daly_bms:",
            "  ros__parameters:",
            f"    device_name: {pack_name(number)!r}",
            "    adapter: hci0",
            "    poll_interval: 1.0",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Counter:
    """battery_state messages of every pack, counted in a thread of this process."""

    def __init__(self, count: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("bench_fleet_counter", context=self.context)
        self.lock = threading.Lock()
        self.received = 0
        for number in range(1, count + 1):
            self.node.create_subscription(
                BatteryState, f"{namespace(number)}/battery_state", self._count, 10
            )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _count(self, _message: BatteryState) -> None:
        with self.lock:
            self.received += 1

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(10)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def measure(processes: list[subprocess.Popen[bytes]], counter: Counter, seconds: float) -> str:
    time.sleep(WARM_UP_S)
    before = [process_usage(p.pid)[0] for p in processes]
    with counter.lock:
        received = counter.received
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    usage = [process_usage(p.pid) for p in processes]
    with counter.lock:
        rate = (counter.received - received) / elapsed
    cpu = sum(after - first for (after, _), first in zip(usage, before, strict=True))
    rss = sum(rss for _, rss in usage)
    return f"{rss / 2**20:.1f} MiB | {100 * cpu / elapsed:.2f} % | {rate:.2f}"


def single_node(number: int) -> subprocess.Popen[bytes]:
    """A daly_bms_node process for one pack, in the pack's namespace."""
    parameters = {"device_name": pack_name(number), "adapter": "hci0", "poll_interval": "1.0"}
    command = [str(NODE), "--ros-args", "--log-level", "warn", "-r", f"__ns:={namespace(number)}"]
    for name, value in parameters.items():
        command += ["-p", f"{name}:={value}"]
    return subprocess.Popen(command)


def fleet_process(parameters: Path) -> subprocess.Popen[bytes]:
    """One daly_bms_fleet process for every pack of ``parameters``."""
    command = [str(FLEET), "--ros-args", "--log-level", "warn", "--params-file", str(parameters)]
    return subprocess.Popen(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=60.0)
    arguments = parser.parse_args()
    print("| batteries | how | resident memory | CPU (one core) | samples/s |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        for count in arguments.counts:
            with mock_bus(work, peripherals=count), ExitStack() as sims:
                for number in range(1, count + 1):
                    sims.enter_context(sim_process(pack_name(number), work, f"hci{number}"))
                counter = Counter(count)
                try:
                    ways = {
                        "one fleet process": lambda count=count: [
                            fleet_process(write_parameters(work / f"fleet{count}.yaml", count))
                        ],
                        f"{count} node processes": lambda count=count: [
                            single_node(number) for number in range(1, count + 1)
                        ],
                    }
                    for how, start in ways.items():
                        processes = start()
                        try:
                            figures = measure(processes, counter, arguments.seconds)
                            print(f"| {count} | {how} | {figures} |", flush=True)
                        finally:
                            for process in processes:
                                stop_node(process)
                finally:
                    counter.close()


if __name__ == "__main__":
    main()
