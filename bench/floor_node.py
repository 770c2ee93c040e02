"""The floor the node's latency is measured against: the least a ROS program can do.

A bare bleak client on the benchmark's virtual BMS asks the 80-register status every
``--interval`` seconds and publishes a BatteryState (voltage, current, SOC) through a bare rclpy
publisher straight from the notification that completes each answer: no supervisor, no
decoding beyond three registers, no hand-off to another thread. What the node adds over this
is what ``bench/e2e.py`` reports as its ratio.

    .venv/bin/python bench/floor_node.py NAME [--adapter hci0] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import rclpy
from bleak import BleakClient, BleakScanner
from rclpy.node import Node
from sensor_msgs.msg import BatteryState

from daly_bms_ros.link.bleak_transport import START_NOTIFY_OPTIONS, adapter_options
from daly_bms_ros.protocol import STATUS_80_BLOCK, FrameAssembler, build_read_request

NOTIFY = "0000fff1-0000-1000-8000-00805f9b34fb"
WRITE = "0000fff2-0000-1000-8000-00805f9b34fb"


async def run(name: str, adapter: str, interval: float) -> None:
    """Read and publish until SIGINT or SIGTERM."""
    rclpy.init()
    node = Node("daly_bms_floor")
    publisher = node.create_publisher(BatteryState, "battery_state", 10)
    assembler = FrameAssembler()

    def on_notify(_sender: object, data: bytearray) -> None:
        for frame in assembler.feed(bytes(data)):
            registers = frame.registers
            message = BatteryState()
            message.header.stamp = node.get_clock().now().to_msg()
            message.voltage = registers[40] / 10
            message.current = (registers[41] - 30000) / 10
            message.percentage = registers[42] / 1000
            publisher.publish(message)

    options = adapter_options(adapter)
    device = await BleakScanner.find_device_by_name(name, timeout=30, **options)
    if device is None:
        raise SystemExit(f"no {name} seen")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    request = build_read_request(STATUS_80_BLOCK)
    async with BleakClient(device, **options) as client:
        await client.start_notify(NOTIFY, on_notify, **START_NOTIFY_OPTIONS)
        next_poll = loop.time()
        while not stop.is_set():
            await client.write_gatt_char(WRITE, request, response=False)
            next_poll += interval
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(next_poll - loop.time(), 0.0))
    node.destroy_node()
    rclpy.try_shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("name")
    parser.add_argument("--adapter", default="hci0")
    parser.add_argument("--interval", type=float, default=0.1)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.name, arguments.adapter, arguments.interval))


if __name__ == "__main__":
    main()
