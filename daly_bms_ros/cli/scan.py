"""``daly-bms scan``: the Daly BMS in range, or the serial ports or CAN addresses answering.

``--serial`` asks serial ports, ``--can`` the BMS addresses on a CAN bus.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from bleak import BleakScanner
from bleak.exc import BleakError

from daly_bms_ros.cli.device import (
    add_adapter_arguments,
    add_can_arguments,
    add_protocol_arguments,
    positive_seconds,
    run_on_link,
)
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.link.bleak_transport import adapter_options, is_daly, translate_error
from daly_bms_ros.link.can_bus import CanBuses
from daly_bms_ros.link.can_transport import CanTransport
from daly_bms_ros.link.client import DalyClient, RequestTimeoutError
from daly_bms_ros.link.serial_ports import SerialAnswer, ask_ports, serial_ports
from daly_bms_ros.protocol import BmsSample
from daly_bms_ros.protocol.a5 import ALL_CELL_FRAMES as A5_ALL_CELL_FRAMES
from daly_bms_ros.protocol.a5 import FRAME_SIZE as A5_FRAME_SIZE
from daly_bms_ros.protocol.a5 import MAX_BOARD
from daly_bms_ros.text import printable

#: The longest exchange a sample waits for, in bytes: the A5 cell voltages of a BMS that sends
#: all 16 frames (Daly's document; 48 cells), 13 bytes each, after the 13-byte request. The
#: longest Modbus exchange (the 80-register status: 8 + 165 bytes) is shorter.
LONGEST_EXCHANGE_BYTES = (A5_ALL_CELL_FRAMES + 1) * A5_FRAME_SIZE
#: Bits on the wire per byte at 8N1: a start bit, 8 data bits, a stop bit.
BITS_PER_BYTE = 10
#: Time for the BMS to start answering, and for the ports and the event loop.
REQUEST_TIMEOUT_MARGIN_S = 0.25
#: The least wait for an answer, whatever the speed (what it was at 9600 baud).
MINIMUM_REQUEST_TIMEOUT_S = 0.5


def default_request_timeout(baudrate: int) -> float:
    """Return how long to wait for an answer at ``baudrate``: the longest exchange, and a margin.

    A fixed wait that suits 9600 baud misses a slow port's answers: at 1200 baud the cell
    voltages of a 16S A5 pack alone take 0.65 s.
    """
    wire_s = LONGEST_EXCHANGE_BYTES * BITS_PER_BYTE / baudrate
    return max(MINIMUM_REQUEST_TIMEOUT_S, wire_s + REQUEST_TIMEOUT_MARGIN_S)


@dataclass(frozen=True)
class FoundDevice:
    """One Daly BMS seen advertising."""

    name: str
    address: str
    rssi: int


async def scan(adapter: str, timeout: float) -> list[FoundDevice]:
    """Scan for ``timeout`` seconds; Daly devices, strongest signal first."""
    options = adapter_options(adapter)
    try:
        seen = await BleakScanner.discover(timeout=timeout, return_adv=True, **options)
    except (BleakError, OSError) as error:
        raise translate_error(error) from error
    found = [
        FoundDevice(
            printable(device.name or advertisement.local_name or ""),
            device.address,
            advertisement.rssi,
        )
        for device, advertisement in seen.values()
        if is_daly(device, advertisement)
    ]
    return sorted(found, key=lambda device: device.rssi, reverse=True)


def pick_target(found: list[FoundDevice], mac: str, name: str) -> FoundDevice | None:
    """Return the device of a scan that --mac/--name name (none named: the strongest)."""
    for device in found:
        if (not mac or device.address.upper() == mac) and (not name or device.name == name):
            return device
    return None


def add_parser(subparsers: Any) -> None:
    """Register the ``scan`` subcommand."""
    parser = subparsers.add_parser(
        "scan",
        help="list Daly BMS in range, or with --serial the serial ports one answers on",
    )
    add_adapter_arguments(parser, 5.0, "scan Bluetooth")
    parser.add_argument("--json", action="store_true", help="one JSON object per device")
    serial = parser.add_argument_group(
        "serial ports",
        "--serial writes Daly requests to each port: another device on one receives them",
    )
    serial.add_argument(
        "--serial",
        action="store_true",
        help="ask this machine's serial ports instead of scanning Bluetooth",
    )
    serial.add_argument(
        "--serial-port",
        action="append",
        default=[],
        dest="serial_ports",
        metavar="PATH",
        help="ask this port (repeatable; implies --serial; default: every serial port)",
    )
    add_protocol_arguments(serial)
    bus = parser.add_argument_group(
        "CAN bus", "--can asks BMS addresses 1..16 on the bus for their status, all at once"
    )
    bus.add_argument(
        "--can", action="store_true", help="ask the BMS addresses on a CAN bus instead"
    )
    add_can_arguments(bus)
    serial.add_argument(
        "--request-timeout",
        type=positive_seconds,
        help=f"seconds to wait for each answer (with --can: {MINIMUM_REQUEST_TIMEOUT_S:g} s; "
        f"else the longest answer's time at --baud "
        f"plus {REQUEST_TIMEOUT_MARGIN_S:g} s, at least {MINIMUM_REQUEST_TIMEOUT_S:g} s: "
        f"{default_request_timeout(9600):g} s at 9600 baud, "
        f"{default_request_timeout(1200):.2f} s at 1200)",
    )
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Print the devices (or answering ports); exit 3 when none was found."""
    if arguments.can:
        return run_can(arguments)
    if arguments.serial or arguments.serial_ports:
        return run_serial(arguments)
    found = run_on_link(lambda: scan(arguments.adapter, arguments.timeout))
    if isinstance(found, ExitCode):
        return found
    for device in found:
        if arguments.json:
            print(json.dumps(asdict(device)), flush=True)
        else:
            print(f"{device.address}  {device.rssi:>4} dBm  {device.name}", flush=True)
    return ExitCode.OK if found else ExitCode.NOT_FOUND


def run_serial(arguments: argparse.Namespace) -> int:
    """Ask the serial ports; print those a BMS answered on, and on stderr those not asked."""
    ports = arguments.serial_ports or serial_ports()
    timeout = arguments.request_timeout or default_request_timeout(arguments.baud)
    answers = run_on_link(
        lambda: ask_ports(ports, arguments.baud, timeout, arguments.protocol, arguments.board)
    )
    if isinstance(answers, ExitCode):
        return answers
    for answer in answers:
        if answer.problem:
            print(f"daly-bms: {answer.port}: {answer.problem}", file=sys.stderr, flush=True)
        elif arguments.json:
            print(json.dumps(serial_record(answer)), flush=True)
        else:
            print(serial_line(answer), flush=True)
    answered = [answer for answer in answers if not answer.problem]
    if not answered:
        print(
            f"daly-bms: no BMS answered on {', '.join(ports) or 'any serial port (none found)'}",
            file=sys.stderr,
        )
    return ExitCode.OK if answered else ExitCode.NOT_FOUND


async def ask_can_bus(arguments: argparse.Namespace, timeout: float) -> list[tuple[int, BmsSample]]:
    """Ask every BMS address on the bus at once (one open bus); return those that answered.

    Answers are told apart by their source address, so the addresses are asked together.
    """
    buses = CanBuses()

    async def ask(address: int) -> tuple[int, BmsSample] | None:
        transport = CanTransport(
            arguments.can_interface, arguments.can_channel, arguments.can_bitrate, address, buses
        )
        client = DalyClient(transport, timeout, request_retries=0, protocol="a5", board=address)
        transport.set_callbacks(client.on_notify, lambda: None)
        await transport.connect()
        client.attach()
        try:
            return address, await client.read_sample()
        except RequestTimeoutError:
            return None  # no answer: no BMS at this address
        finally:
            await transport.disconnect()

    answers = await asyncio.gather(*(ask(address) for address in range(1, MAX_BOARD + 1)))
    return [answer for answer in answers if answer is not None]


def run_can(arguments: argparse.Namespace) -> int:
    """Print the BMS addresses that answered on the bus; exit 3 when none did."""
    # A whole answer takes milliseconds at CAN speeds: the least wait is for the BMS itself.
    timeout = arguments.request_timeout or MINIMUM_REQUEST_TIMEOUT_S
    answers = run_on_link(lambda: ask_can_bus(arguments, timeout))
    if isinstance(answers, ExitCode):
        return answers
    channel = f"{arguments.can_interface}:{arguments.can_channel}"
    for address, sample in answers:
        status = sample.status
        record = {
            "channel": channel,
            "bms_address": address,
            "protocol": "a5",
            "cells": len(status.cell_voltages),
            "pack_voltage": status.pack_voltage,
            "soc": status.soc,
        }
        if arguments.json:
            print(json.dumps(record), flush=True)
        else:
            print(
                f"{channel}  BMS {address:>2}  {record['cells']}S  {status.pack_voltage:.1f} V  "
                f"{status.soc:.1f} %",
                flush=True,
            )
    if not answers:
        print(f"daly-bms: no BMS answered on {channel}", file=sys.stderr)
    return ExitCode.OK if answers else ExitCode.NOT_FOUND


def serial_record(answer: SerialAnswer) -> dict[str, object]:
    """One answering port as JSON: where, what protocol, what pack."""
    assert answer.sample is not None
    status = answer.sample.status
    return {
        "port": answer.stable_path,
        "device": answer.port,
        "description": answer.description,
        "protocol": answer.protocol,
        "cells": len(status.cell_voltages),
        "pack_voltage": status.pack_voltage,
        "soc": status.soc,
    }


def serial_line(answer: SerialAnswer) -> str:
    """One answering port as a line of the table."""
    record = serial_record(answer)
    line = (
        f"{record['port']}  {record['protocol']:<3}  {record['cells']}S  "
        f"{record['pack_voltage']:.1f} V  {record['soc']:.1f} %"
    )
    return f"{line}  {answer.description}" if answer.description else line
