"""Soak: the node against `daly-bms-sim` for a long run with random faults injected.

Every ``--fault-every`` seconds one fault is drawn: a spoiled answer (no answer, late, corrupt
CRC, truncated, duplicate), a dropped link, or the BMS sleeping for 1..10 s (``--faults`` draws
from some kinds only, to tell what a kind costs; ``--fault-every 0`` injects none). At the end:
polls, published samples, rejected frames by reason, reconnects, crashes (the node process
ending on its own; must be 0) and resident memory over time: its slope after the warm-up (the
first 10 minutes, or a tenth of a short run), fitted by least squares over a reading every 10 s,
in KiB per hour (target: at most 100 KiB/h over a run of 2 hours or more).

SIGINT or SIGTERM ends it early, with the summary.

    .venv/bin/python bench/soak.py [--minutes 30] [--fault-every 5] [--faults disconnect,...]
        [--poll-interval 0.2] [--seed 1] [--wrap COMMAND]

Under ``--wrap`` the memory figures are those of the wrapper's process, not the node's.
"""

from __future__ import annotations

import argparse
import random
import signal
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    listening,
    memory_breakdown,
    mock_bus,
    process_usage,
    start_node,
    stop_node,
    virtual_bms_process,
)

SPOILERS = ("no_answer", "late", "corrupt_crc", "truncated", "duplicate")
KINDS = (*SPOILERS, "disconnect", "sleep")


def kinds(text: str) -> tuple[str, ...]:
    """Parse ``--faults``: kinds of KINDS, comma-separated."""
    chosen = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = set(chosen) - set(KINDS)
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"fault kinds are some of {', '.join(KINDS)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-every", type=float, default=5.0)
    parser.add_argument("--faults", type=kinds, default=KINDS, help="the kinds to draw from")
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--wrap",
        default="",
        help="a command to run the node under, split on spaces (e.g. 'heaptrack -o node')",
    )
    arguments = parser.parse_args()
    draw = random.Random(arguments.seed)
    wrapper = arguments.wrap.split()
    injected: dict[str, int] = {}
    crashes = 0
    memory: list[tuple[float, int]] = []
    breakdown: list[tuple[float, dict[str, int]]] = []
    with (
        tempfile.TemporaryDirectory() as work,
        mock_bus(Path(work)),
        virtual_bms_process(Path(work)) as sim,
        listening() as listener,
    ):
        node = start_node(wrapper, poll_interval=arguments.poll_interval, request_timeout=0.5)
        started = time.monotonic()
        end = started + arguments.minutes * 60
        stop = threading.Event()
        for number in (signal.SIGINT, signal.SIGTERM):  # end early, with the summary
            signal.signal(number, lambda _number, _frame: stop.set())
        next_fault = started + arguments.fault_every
        try:
            while time.monotonic() < end and not stop.is_set():
                time.sleep(0.5)
                if node.poll() is not None:
                    crashes += 1
                    print(f"node ended with status {node.returncode}; restarting")
                    node = start_node(
                        wrapper, poll_interval=arguments.poll_interval, request_timeout=0.5
                    )
                    continue
                now = time.monotonic()
                if not memory or now - memory[-1][0] >= 10:
                    memory.append((now, process_usage(node.pid)[1]))
                    breakdown.append((now, memory_breakdown(node.pid)))
                if not arguments.fault_every or now < next_fault:
                    continue
                next_fault = now + arguments.fault_every
                kind = draw.choice(arguments.faults)
                injected[kind] = injected.get(kind, 0) + 1
                if kind in SPOILERS:
                    sim.control({"fault": kind, "count": draw.randint(1, 3)})
                elif kind == "disconnect":
                    sim.control({"link": "disconnect"})
                else:
                    sim.control({"link": "sleep"})
                    time.sleep(draw.uniform(1, 10))
                    sim.control({"link": "wake"})
            listener.wait_for(listener.count() + 1, timeout=60)  # recovered from the last fault
        finally:
            status = stop_node(node)
        with listener.lock:
            diagnostics = dict(listener.diagnostics)
        samples = listener.count()
    elapsed = time.monotonic() - started
    warm_up = min(600.0, elapsed / 10)
    warm = [(at, rss) for at, rss in memory if at - started >= warm_up]
    rejected = {
        k.removeprefix("rejected_"): v for k, v in diagnostics.items() if k.startswith("rejected_")
    }
    print(
        f"soak: {elapsed / 60:.1f} min, poll interval {arguments.poll_interval} s, "
        f"seed {arguments.seed}, a fault every {arguments.fault_every} s of "
        f"{', '.join(arguments.faults)}"
    )
    print(f"faults injected: {dict(sorted(injected.items()))}")
    print(
        f"requests {diagnostics.get('requests')}, unanswered {diagnostics.get('timeouts')}, "
        f"published samples {samples}, missed polls {diagnostics.get('missed_polls')}"
    )
    print(f"rejected frames: {rejected}")
    print(
        f"reconnects {diagnostics.get('reconnects')}, crashes {crashes}, "
        f"exit status on SIGINT {status}"
    )
    if len(warm) >= 2:
        print(
            f"RSS after a warm-up of {warm_up / 60:.0f} min {warm[0][1] / 2**20:.1f} MiB, at the "
            f"end {warm[-1][1] / 2**20:.1f} MiB; slope {slope(warm) * 3600 / 2**10:+.0f} KiB/h "
            f"(least squares over {len(warm)} readings, {(warm[-1][0] - warm[0][0]) / 3600:.2f} h)"
        )
        warm_breakdown = [(at, values) for at, values in breakdown if at - started >= warm_up]
        for field in ("RssAnon", "RssFile", "RssShmem"):
            points = [(at, values[field]) for at, values in warm_breakdown if field in values]
            print(
                f"  {field}: {points[0][1] / 2**20:.1f} -> {points[-1][1] / 2**20:.1f} MiB, "
                f"slope {slope(points) * 3600 / 2**10:+.0f} KiB/h"
            )
        threads = [values.get("Threads", 0) for _at, values in warm_breakdown]
        print(f"  threads: {threads[0]} after the warm-up, {min(threads)}..{max(threads)} since")


def slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (time s, bytes) points, in bytes per second."""
    mean_t = sum(t for t, _ in points) / len(points)
    mean_b = sum(b for _, b in points) / len(points)
    covariance = sum((t - mean_t) * (b - mean_b) for t, b in points)
    variance = sum((t - mean_t) ** 2 for t, _ in points)
    return covariance / variance


if __name__ == "__main__":
    main()
