"""End-to-end figures against the virtual BMS over the BlueZ mock, the node in its own process.

- latency: from the last notification of a poll's last answer leaving the virtual BMS to the
  BatteryState arriving at a subscriber, over ``--polls`` polls at 0.1 s; beside it, in the same
  run, the floor (``bench/floor_node.py``: a bare bleak client publishing each answer through a
  bare rclpy publisher, the least a ROS program can do over the same BlueZ mock and DDS) and the
  node's ratio to it;
- time to first message: from starting the node process to the first BatteryState (discovery,
  connection, first sample, Python and DDS start-up included), ``--starts`` times, and the
  floor's beside it;
- recovery: the BMS sleeps (stops advertising and drops the link) for ``--asleep`` seconds and
  wakes; the time from waking to the next BatteryState, ``--cycles`` times, with the node's
  default reconnect backoff (1 s doubling to 30 s).

    .venv/bin/python bench/e2e.py [--polls 1000] [--starts 5] [--cycles 5] [--asleep 5]
"""

from __future__ import annotations

import argparse
import bisect
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    NAME,
    TimedPeripheral,
    listening,
    mock_bus,
    percentiles,
    start_node,
    stop_node,
)

FLOOR = Path(__file__).resolve().parent / "floor_node.py"


def delays_of(bms: TimedPeripheral, process: subprocess.Popen[bytes], polls: int) -> list[float]:
    """Milliseconds from each poll's last notification to its BatteryState at a subscriber."""
    with listening() as listener:
        try:
            finished = listener.wait_for(polls + 5, timeout=polls * 0.3 + 60)
        finally:
            stop_node(process)
        with listener.lock:
            arrivals = list(listener.arrivals)
    if not finished:
        print(f"  (fewer than {polls} polls: timed out)")
    # A poll's last answer: the last frame sent before its BatteryState arrived (one 80-register
    # status, or the MOS block after a 62-register one).
    answers = list(bms.answered_at)
    bms.answered_at.clear()
    delays = []
    for arrived, _stamp in arrivals[5:]:  # past connection set-up
        index = bisect.bisect_right(answers, arrived) - 1
        if index >= 0:
            delays.append((arrived - answers[index]) * 1000)
    return delays


def latency(bms: TimedPeripheral, polls: int) -> None:
    figures = {}
    for name, start in (
        ("node", lambda: start_node(poll_interval=0.1, request_timeout=1.0)),
        (
            "floor",
            lambda: subprocess.Popen([sys.executable, str(FLOOR), NAME, "--interval", "0.1"]),
        ),
    ):
        delays = delays_of(bms, start(), polls)
        p50, p95, p99 = percentiles(delays, 50, 95, 99)
        over = sum(delay > 10.0 for delay in delays)
        figures[name] = (p50, p99)
        print(
            f"latency ({name}), last notification -> BatteryState at a subscriber, "
            f"{len(delays)} polls: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, "
            f"max {max(delays):.2f} ms, {over} over 10 ms"
        )
    (node_p50, node_p99), (floor_p50, floor_p99) = figures["node"], figures["floor"]
    print(f"node / floor: p50 {node_p50 / floor_p50:.2f}x, p99 {node_p99 / floor_p99:.2f}x")


def time_to_first_message(starts: int) -> None:
    """Process start to first BatteryState, the node's and the floor's, ``starts`` times each.

    A message published before the subscriber has discovered its publisher is lost (volatile
    QoS): at 1 s polls each such sample adds a second, for the floor as for the node.
    """
    floor = [sys.executable, str(FLOOR), NAME, "--interval", "1.0"]
    for name, start in (
        ("node", lambda: start_node(poll_interval=1.0)),
        ("floor", lambda: subprocess.Popen(floor)),
    ):
        times = []
        with listening() as listener:
            for _ in range(starts):
                before = listener.count()
                started = time.time()
                process = start()
                try:
                    if listener.wait_for(before + 1, timeout=60):
                        with listener.lock:
                            times.append(listener.arrivals[before][0] - started)
                finally:
                    stop_node(process)
        p50, worst = percentiles(times, 50, 100)
        print(
            f"time to first message ({name}, process start -> first BatteryState), "
            f"{len(times)}/{starts} starts: p50 {p50:.2f} s, max {worst:.2f} s"
        )


def recovery(bms: TimedPeripheral, cycles: int, asleep: float) -> None:
    times = []
    with listening() as listener:
        node = start_node(poll_interval=0.2, request_timeout=0.5)
        try:
            listener.wait_for(3, timeout=60)
            for _ in range(cycles):
                bms.run(bms.peripheral.sleep())
                time.sleep(asleep)
                count = listener.count()
                woke = time.time()
                bms.run(bms.peripheral.wake())
                if listener.wait_for(count + 1, timeout=60):
                    with listener.lock:
                        times.append(listener.arrivals[count][0] - woke)
                listener.wait_for(count + 3, timeout=10)
        finally:
            stop_node(node)
    p50, worst = percentiles(times, 50, 100)
    print(
        f"recovery after {asleep:g} s asleep (wake -> next BatteryState), {len(times)}/{cycles} "
        f"cycles: p50 {p50:.2f} s, max {worst:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--asleep", type=float, default=5.0)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, mock_bus(Path(work)) as bus:
        bms = TimedPeripheral(bus)
        try:
            latency(bms, arguments.polls)
            time_to_first_message(arguments.starts)
            recovery(bms, arguments.cycles, arguments.asleep)
        finally:
            bms.close()


if __name__ == "__main__":
    main()
