"""End-to-end figures against the virtual BMS over the BlueZ mock, the node in its own process.

- latency: from the last notification of a poll's last answer leaving the virtual BMS to the
  BatteryState arriving at a subscriber, over ``--polls`` polls at 0.1 s;
- time to first message: from starting the node process to the first BatteryState (discovery,
  connection, first sample, Python and DDS start-up included), ``--starts`` times;
- recovery: the BMS sleeps (stops advertising and drops the link) for ``--asleep`` seconds and
  wakes; the time from waking to the next BatteryState, ``--cycles`` times, with the node's
  default reconnect backoff (1 s doubling to 30 s).

    .venv/bin/python bench/e2e.py [--polls 1000] [--starts 5] [--cycles 5] [--asleep 5]
"""

from __future__ import annotations

import argparse
import bisect
import tempfile
import time
from pathlib import Path

from harness import (
    TimedPeripheral,
    listening,
    mock_bus,
    percentiles,
    start_node,
    stop_node,
)


def latency(bms: TimedPeripheral, polls: int) -> None:
    with listening() as listener:
        node = start_node(poll_interval=0.1, request_timeout=1.0)
        try:
            finished = listener.wait_for(polls + 5, timeout=polls * 0.3 + 60)
        finally:
            stop_node(node)
        with listener.lock:
            arrivals = list(listener.arrivals)
    # A poll's last answer: the last frame sent before its BatteryState arrived (one 80-register
    # status, or the MOS block after a 62-register one).
    answers = list(bms.answered_at)
    delays = []
    for arrived, _stamp in arrivals[5:]:  # past connection set-up
        index = bisect.bisect_right(answers, arrived) - 1
        if index >= 0:
            delays.append((arrived - answers[index]) * 1000)
    p50, p95, p99 = percentiles(delays, 50, 95, 99)
    print(
        f"latency, last notification -> BatteryState at a subscriber, {len(delays)} polls"
        f"{'' if finished else ' (fewer than asked: timed out)'}: "
        f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, max {max(delays):.2f} ms"
    )


def time_to_first_message(starts: int) -> None:
    times = []
    with listening() as listener:
        for _ in range(starts):
            before = listener.count()
            started = time.time()
            node = start_node(poll_interval=1.0)
            try:
                if listener.wait_for(before + 1, timeout=60):
                    with listener.lock:
                        times.append(listener.arrivals[before][0] - started)
            finally:
                stop_node(node)
    p50, worst = percentiles(times, 50, 100)
    print(
        f"time to first message (process start -> first BatteryState), {len(times)}/{starts} "
        f"starts: p50 {p50:.2f} s, max {worst:.2f} s"
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
