"""What the node costs: CPU and resident memory at poll intervals of 1 s and 0.1 s, and headroom.

The node runs as its own process against the virtual BMS over the BlueZ mock; CPU is measured
from /proc over ``--seconds`` per interval after a warm-up, as % of one core. Headroom: the
node's missed polls at its fastest allowed interval (0.1 s), and how many complete samples per
second the BLE client reads back to back on the same link.

    .venv/bin/python bench/node_cost.py [--seconds 180] [--burst 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from harness import NAME, TimedPeripheral, listening, mock_bus, process_usage, start_node, stop_node

from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.link.client import DalyClient

WARM_UP_S = 10.0


def node_cost(interval: float, seconds: float) -> None:
    with listening() as listener:
        node = start_node(poll_interval=interval)
        try:
            listener.wait_for(1, timeout=60)
            time.sleep(WARM_UP_S)
            cpu_before, _ = process_usage(node.pid)
            count_before = listener.count()
            with listener.lock:
                missed_before = int(listener.diagnostics.get("missed_polls", "0"))
                requests_before = int(listener.diagnostics.get("requests", "0"))
            started = time.monotonic()
            peak_rss = 0
            while time.monotonic() - started < seconds:
                time.sleep(1.0)
                peak_rss = max(peak_rss, process_usage(node.pid)[1])
            elapsed = time.monotonic() - started
            cpu_after, rss = process_usage(node.pid)
            samples = listener.count() - count_before
            with listener.lock:
                missed = int(listener.diagnostics.get("missed_polls", "0")) - missed_before
                requests = int(listener.diagnostics.get("requests", "0")) - requests_before
        finally:
            stop_node(node)
    print(
        f"poll interval {interval:g} s over {elapsed:.0f} s: "
        f"CPU {100 * (cpu_after - cpu_before) / elapsed:.1f} % of one core, "
        f"RSS {rss / 2**20:.1f} MiB (peak {peak_rss / 2**20:.1f} MiB), "
        f"{samples / elapsed:.2f} samples/s, missed polls {missed}, "
        f"{requests / max(samples, 1):.2f} requests per sample"
    )


async def back_to_back(seconds: float) -> tuple[int, float, int]:
    transport = BleakTransport(device_name=NAME, adapter="hci0", connect_timeout=10.0)
    client = DalyClient(transport, request_timeout=1.0)
    transport.set_callbacks(client.on_notify, lambda: None)
    await transport.connect()
    client.attach()
    try:
        await client.read_sample()
        samples, started, requests = 0, time.monotonic(), client.requests
        while time.monotonic() - started < seconds:
            await client.read_sample()
            samples += 1
        return samples, time.monotonic() - started, client.requests - requests
    finally:
        await transport.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--burst", type=float, default=10.0)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, mock_bus(Path(work)) as bus:
        bms = TimedPeripheral(bus)
        try:
            for interval in (1.0, 0.1):
                node_cost(interval, arguments.seconds)
            samples, elapsed, requests = asyncio.run(back_to_back(arguments.burst))
            print(
                f"BLE client back to back: {samples / elapsed:.0f} complete samples/s "
                f"({samples} in {elapsed:.0f} s, {requests / samples:.2f} requests per sample)"
            )
        finally:
            bms.close()


if __name__ == "__main__":
    main()
