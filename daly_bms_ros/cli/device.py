"""Options that pick and reach a BMS, shared by every ``daly-bms`` subcommand that talks to one."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from daly_bms_ros.cli.exit_codes import ExitCode, exit_code_for
from daly_bms_ros.control import describe_failure
from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.link.can_transport import CanTransport
from daly_bms_ros.link.client import DalyClient, Tap
from daly_bms_ros.link.serial_transport import (
    DEFAULT_BAUDRATE,
    MAXIMUM_BAUDRATE,
    MINIMUM_BAUDRATE,
    SerialTransport,
)
from daly_bms_ros.link.supervisor import BmsLink, LinkConfig, LinkState, LinkStatus
from daly_bms_ros.link.transport import (
    MAC_ADDRESS_PATTERN,
    TRANSPORTS,
    BmsTransport,
    TransportError,
)
from daly_bms_ros.protocol import BmsSample, DalyProtocolError
from daly_bms_ros.protocol.a5 import MAX_BOARD
from daly_bms_ros.protocol.can_id import (
    BITRATE as CAN_BITRATE,
)
from daly_bms_ros.protocol.can_id import (
    BITRATES,
    DEFAULT_CHANNEL,
    DEFAULT_INTERFACE,
    CanChoice,
    can_choice_problem,
)
from daly_bms_ros.protocol.session import PROTOCOLS

T = TypeVar("T")


def mac_address(text: str) -> str:
    """Check an argparse value: a MAC address such as C6:6C:09:03:1B:9E ("" for none)."""
    if text and not MAC_ADDRESS_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a MAC address like C6:6C:09:03:1B:9E")
    return text.upper()


#: The shortest time any option takes: below it a wait or an interval means nothing (1e-320 s).
MINIMUM_SECONDS = 0.001


def positive_seconds(text: str) -> float:
    """Check an argparse value: a finite number of seconds, at least MINIMUM_SECONDS."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not MINIMUM_SECONDS <= value < math.inf:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds from {MINIMUM_SECONDS:g} up"
        )
    return value


def positive_count(text: str) -> int:
    """Check an argparse value: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def tcp_port(text: str) -> int:
    """Check an argparse value: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return value


def bind_address(text: str) -> str:
    """Check an argparse value: an address to bind; empty (every interface, silently) is not."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "an empty host would bind every interface: name one, e.g. 127.0.0.1 or 0.0.0.0"
        )
    return text


def add_adapter_arguments(
    parser: argparse.ArgumentParser, timeout: float = 10.0, timeout_help: str = "search and connect"
) -> None:
    """--adapter and --timeout, for commands that scan."""
    parser.add_argument(
        "--adapter", default="", help="Bluetooth adapter, e.g. hci0 (default: system's)"
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=timeout,
        help=f"seconds to {timeout_help} (default {timeout:g})",
    )


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """How to pick the BMS and how long to wait for it."""
    parser.add_argument("--mac", type=mac_address, default="", help="MAC address of the BMS")
    parser.add_argument("--name", default="", help='advertised name, e.g. "DL-41181201234"')
    add_adapter_arguments(parser)
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        help="ble (default); serial: Daly's UART/RS485 port through an adapter (--serial-port); "
        "can: its CAN port on a CAN bus (--can-interface, --can-channel)",
    )
    parser.add_argument(
        "--serial-port",
        default="",
        metavar="PATH",
        help="serial port, e.g. /dev/ttyUSB0 or a /dev/serial/by-id/ path (implies serial)",
    )
    parser.add_argument(
        "--rs485",
        action="store_true",
        help="let the kernel switch the RS485 direction with RTS (adapters that do not)",
    )
    add_can_arguments(parser)
    add_protocol_arguments(parser)
    parser.add_argument(
        "--request-timeout",
        type=positive_seconds,
        default=2.0,
        help="seconds to wait for one answer (default 2)",
    )
    parser.add_argument(
        "--invert-current",
        action="store_true",
        help="turn the current's sign round (firmware that reports charging as negative)",
    )


def add_can_arguments(parser: argparse.ArgumentParser) -> None:
    """--can-interface, --can-channel and --can-bitrate: which CAN bus, with --transport can."""
    parser.add_argument(
        "--can-interface",
        default=DEFAULT_INTERFACE,
        help=f"python-can interface: socketcan (a CAN HAT, a candleLight adapter), slcan (a "
        f"serial-line adapter)... (default {DEFAULT_INTERFACE})",
    )
    parser.add_argument(
        "--can-channel",
        default=DEFAULT_CHANNEL,
        help=f"the interface's channel: can0, or slcan's serial port (default {DEFAULT_CHANNEL})",
    )
    parser.add_argument(
        "--can-bitrate",
        type=can_bitrate,
        default=CAN_BITRATE,
        help=f"CAN bitrate (default {CAN_BITRATE}, Daly's)",
    )


def can_bitrate(text: str) -> int:
    """Check an argparse value: a bitrate CAN adapters take."""
    if not text.isdigit() or int(text) not in BITRATES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a CAN bitrate ({', '.join(map(str, BITRATES))})"
        )
    return int(text)


def add_protocol_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--baud, --protocol and --board: what a wired BMS speaks and how it is addressed."""
    parser.add_argument(
        "--baud", type=baud_rate, default=DEFAULT_BAUDRATE, help="serial speed (default 9600)"
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="auto",
        help="the protocol the BMS speaks, the only one asked; auto (default) finds it out, at "
        "the cost of the probes the BMS does not answer",
    )
    parser.add_argument(
        "--board",
        type=board_number,
        default=1,
        help=f"an A5 BMS's board number on a shared RS485 bus, its address on a CAN bus "
        f"(1..{MAX_BOARD}; default 1)",
    )


def add_reading_parser(
    subparsers: Any, name: str, help_text: str, handler: Callable[[argparse.Namespace], int]
) -> None:
    """Register a subcommand that reads the BMS once and prints a table or, with --json, JSON."""
    parser = subparsers.add_parser(name, help=help_text)
    add_device_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=handler)


def baud_rate(text: str) -> int:
    """Check an argparse value: a serial speed the BMS may use."""
    if not text.isdigit() or not MINIMUM_BAUDRATE <= int(text) <= MAXIMUM_BAUDRATE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a baud rate ({MINIMUM_BAUDRATE} to {MAXIMUM_BAUDRATE})"
        )
    return int(text)


def board_number(text: str) -> int:
    """Check an argparse value: an A5 board number."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_BOARD:
        raise argparse.ArgumentTypeError(f"{text!r} is not a board number (1 to {MAX_BOARD})")
    return int(text)


def check_transport_arguments(arguments: argparse.Namespace) -> str | None:
    """Return what is wrong with the transport options (None: nothing), before anything runs."""
    if not hasattr(arguments, "serial_port"):
        return None  # a command that talks to no BMS
    if arguments.transport == "serial" and not arguments.serial_port:
        return "--transport serial needs --serial-port, e.g. --serial-port /dev/ttyUSB0"
    if arguments.serial_port and arguments.transport == "ble":
        return "--serial-port is a serial port: not with --transport ble"
    if arguments.serial_port and (arguments.mac or arguments.name):
        return "--mac and --name pick a Bluetooth device: not with --serial-port"
    return check_can_arguments(arguments)


def check_can_arguments(arguments: argparse.Namespace) -> str | None:
    """Return what is wrong with the CAN options (None: nothing); pin A5 on a CAN bus."""
    problem = can_choice_problem(
        CanChoice(
            arguments.transport,
            arguments.can_interface,
            arguments.can_channel,
            arguments.can_bitrate,
            arguments.protocol,
            bool(arguments.serial_port or arguments.mac or arguments.name),
            ("--transport", "--can-interface", "--can-channel", "--can-bitrate", "--protocol"),
            "--serial-port, --mac and --name",
        )
    )
    if problem is None and arguments.transport == "can":
        arguments.protocol = "a5"
    return problem


def transport_for(arguments: argparse.Namespace) -> BmsTransport:
    """Build the transport the options describe (no --mac/--name: the first Daly-like device).

    ``--serial-port`` picks the serial transport (``check_transport_arguments`` ran first).
    """
    if arguments.serial_port:
        return SerialTransport(arguments.serial_port, arguments.baud, arguments.rs485)
    if arguments.transport == "can":
        return CanTransport(
            arguments.can_interface, arguments.can_channel, arguments.can_bitrate, arguments.board
        )
    return BleakTransport(arguments.mac, arguments.name, arguments.adapter, arguments.timeout)


async def connect_client(transport: BmsTransport, arguments: argparse.Namespace) -> DalyClient:
    """Connect ``transport`` and return a client reading through it as the options say."""
    client = DalyClient(
        transport,
        arguments.request_timeout,
        invert_current=arguments.invert_current,
        protocol=arguments.protocol,
        board=arguments.board,
    )
    transport.set_callbacks(client.on_notify, lambda: None)
    await transport.connect()
    client.attach()
    return client


@asynccontextmanager
async def connected(arguments: argparse.Namespace) -> AsyncIterator[DalyClient]:
    """Yield a client on a connected transport; disconnect whatever happens."""
    transport = transport_for(arguments)
    try:
        yield await connect_client(transport, arguments)
    finally:
        await transport.disconnect()


def run_on_link(command: Callable[[], Coroutine[Any, Any, T]]) -> T | ExitCode:
    """Run a coroutine that talks to a BMS; a failure is printed and becomes the exit status."""
    try:
        return asyncio.run(command())
    except TransportError as error:
        print(f"daly-bms: {describe_failure(error)}", file=sys.stderr)
        return exit_code_for(error)
    except DalyProtocolError as error:
        print(f"daly-bms: the BMS answered something undecodable: {error}", file=sys.stderr)
        return ExitCode.FAILED


def add_poll_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the commands that keep polling."""
    parser.add_argument(
        "--interval", type=positive_seconds, default=1.0, help="seconds between reads (default 1)"
    )


SampleHandler = Callable[[BmsTransport, BmsSample, LinkStatus], None]


async def follow(
    arguments: argparse.Namespace,
    on_sample: SampleHandler,
    limit: int = 0,
    on_status: Callable[[LinkStatus], None] = lambda _status: None,
    taps: Sequence[Tap] = (),
    duration: float = 0.0,
) -> None:
    """Poll the BMS, reconnecting as needed, until SIGINT/SIGTERM, a limit or a duration.

    ``limit`` samples and ``duration`` seconds: 0 for none. Each change of the link's state is
    reported on stderr, so a script reading stdout sees data only; ``on_status`` gets every
    status; ``taps`` see the raw conversation.
    """
    transport = transport_for(arguments)
    stop = asyncio.Event()
    samples = 0
    last_state: LinkState | None = None

    def sample_seen(sample: BmsSample) -> None:
        nonlocal samples
        samples += 1
        on_sample(transport, sample, link.status())
        if limit and samples >= limit:
            stop.set()

    def status_seen(status: LinkStatus) -> None:
        nonlocal last_state
        on_status(status)
        if status.state is not last_state:
            last_state = status.state
            print(f"daly-bms: {status.device}: {status.summary}", file=sys.stderr, flush=True)

    config = LinkConfig(
        poll_interval=arguments.interval,
        request_timeout=arguments.request_timeout,
        invert_current=arguments.invert_current,
        protocol=arguments.protocol,
        board=arguments.board,
    )
    link = BmsLink(transport, config, sample_seen, status_seen)
    link.client.taps.extend(taps)
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    if duration:
        loop.call_later(duration, stop.set)
    running = asyncio.create_task(link.run())
    await stop.wait()
    await link.stop()
    await running
