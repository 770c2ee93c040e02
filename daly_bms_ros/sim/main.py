"""``daly-bms-sim``: a virtual Daly BMS on a BlueZ adapter or a serial port, until Ctrl+C.

It answers the status, settings, MOS-temperature and device-information requests from a battery
model, whole frames in one notification where the link's MTU allows (``--mtu`` caps it), like a
Daly smart BMS does; or the A5 protocol of UART/RS485 ports and older Bluetooth modules. With
``--serial`` it is a pseudo-terminal instead, as a BMS wired through a USB adapter; with
``--can``, A5 boards on a CAN bus behind an slcan adapter on a pseudo-terminal. Options present
it as the hardware variants found in the field.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dbus_fast.errors import DBusError

from daly_bms_ros.capture.files import MAX_KEPT_BYTES, InputFileError
from daly_bms_ros.capture.format import CONNECTION, read_events
from daly_bms_ros.protocol import D2, VARIANTS, X81
from daly_bms_ros.protocol.a5 import MAX_BOARD as A5_MAX_BOARD
from daly_bms_ros.protocol.a5 import MAX_CELLS as A5_MAX_CELLS
from daly_bms_ros.protocol.gatt import FFF0, GATT_LAYOUTS
from daly_bms_ros.protocol.registers import X81_MAX_CELLS
from daly_bms_ros.sim.a5_responder import A5Bus, A5Responder
from daly_bms_ros.sim.battery import BatteryModel
from daly_bms_ros.sim.can_port import SlcanBms
from daly_bms_ros.sim.faults import Fault, FaultInjector
from daly_bms_ros.sim.peripheral import (
    DEFAULT_MTU,
    MINIMUM_MTU,
    DalyPeripheral,
    wait_until_discovering,
)
from daly_bms_ros.sim.replay import ReplayResponder, steps_of
from daly_bms_ros.sim.request_stream import a5_request_length, modbus_request_length
from daly_bms_ros.sim.responder import ModelResponder, device_info_of
from daly_bms_ros.sim.serial_port import SerialBms

#: The Modbus-style variants by name; "a5" is the A5 protocol.
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}
A5 = "a5"
PROTOCOLS = (*VARIANTS_BY_NAME, A5)
#: The most cells each protocol carries (D2's is the model's default).
MAX_CELLS = {X81.name: X81_MAX_CELLS, A5: A5_MAX_CELLS}
DEFAULT_NAME = "DL-SIM000001"
#: The most bytes of UTF-8 a name may have: what an advertisement carries of it (31 bytes of
#: advertising or scan response data, less the length and type of the name's field).
MAX_NAME_BYTES = 29


def name_problem(name: object) -> str | None:
    """Tell what keeps ``name`` from being advertised, or None when nothing does.

    A BLE name is UTF-8 text of at most MAX_NAME_BYTES; control characters (a NUL ends a name on
    D-Bus) and bytes that are not UTF-8 (the command line keeps them as lone surrogates) are
    refused rather than sent in some mangled form.
    """
    if not isinstance(name, str):
        return f"{name!r} is not text"
    if not name.isprintable():
        return f"{name!r} holds characters that are not printable text (or not UTF-8)"
    size = len(name.encode("utf-8"))
    if not 1 <= size <= MAX_NAME_BYTES:
        return f"{name!r} is {size} bytes of UTF-8; an advertised name is 1..{MAX_NAME_BYTES}"
    return None


def advertised_name(text: str) -> str:
    """Check an argparse value: a name to advertise (see ``name_problem``)."""
    problem = name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def manufacturer_entry(text: str) -> tuple[int, bytes]:
    """Parse ``--manufacturer-data``: a company id and bytes, in hex (0106:00d11a04015994444c)."""
    company, _, data = text.partition(":")
    try:
        entry = int(company, 16), bytes.fromhex(data)
    except ValueError:
        entry = (-1, b"")
    if not 0 <= entry[0] <= 0xFFFF or not entry[1]:
        raise argparse.ArgumentTypeError(f"not a company id and bytes such as 0106:00d1: {text!r}")
    return entry


def a5_host_addresses_argument(text: str) -> tuple[int, ...]:
    """Parse ``--a5-hosts``: addresses such as 0x40,0x80, each a host's (0x20..0xFF)."""
    try:
        addresses = tuple(int(part, 0) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not addresses such as 0x40,0x80: {text!r}") from None
    if not all(0x20 <= address <= 0xFF for address in addresses):
        raise argparse.ArgumentTypeError(f"host addresses are 0x20..0xff, not {text!r}")
    return addresses


def build_parser() -> argparse.ArgumentParser:
    """Build the command line parser."""
    parser = argparse.ArgumentParser(prog="daly-bms-sim", description=__doc__)
    parser.add_argument(
        "--name",
        type=advertised_name,
        help="advertised name, printable UTF-8 of at most 29 bytes (default DL-SIM000001, or "
        "the one a --replay capture holds)",
    )
    parser.add_argument("--adapter", default="hci1", help="BlueZ adapter to advertise on")
    parser.add_argument(
        "--manufacturer-data",
        type=manufacturer_entry,
        action="append",
        default=[],
        metavar="ID:HEX",
        help="advertise manufacturer data, e.g. 0106:00d11a04015994444c as a 0x81 pack did",
    )
    parser.add_argument(
        "--no-name",
        action="store_true",
        help="advertise neither name nor service, only the manufacturer data, as a 0x81 pack "
        "did (the name still fills the device information)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="d2 (address 0xD2; the default on BLE), x81 (the newer one, 0x81/0x51) or a5 "
        "(UART/RS485 ports and older Bluetooth modules; the default with --serial)",
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="serve on a pseudo-terminal instead of BlueZ, as a BMS wired through a USB "
        "adapter; its path is printed as 'serial port PATH'",
    )
    parser.add_argument(
        "--can",
        action="store_true",
        help="a5: serve A5 boards on a CAN bus behind an slcan adapter on a pseudo-terminal "
        "(python-can's slcan interface opens it); its path is printed as 'serial port PATH'",
    )
    parser.add_argument(
        "--boards",
        type=int,
        default=1,
        metavar="N",
        help=f"with --can: boards at BMS addresses 1..N (1..{A5_MAX_BOARD}; default 1), each its "
        "own pack (its SOC 10 points below the one before)",
    )
    parser.add_argument(
        "--other-traffic",
        action="store_true",
        help="with --can: frames of other devices on the bus before each answer",
    )
    parser.add_argument(
        "--rs485-echo",
        action="store_true",
        help="with --serial: send every byte received back before the answer, as a "
        "half-duplex RS485 adapter does",
    )
    parser.add_argument(
        "--a5-board",
        type=int,
        metavar="N",
        help=f"a5: the board number answers carry (1..{A5_MAX_BOARD}; default 1)",
    )
    parser.add_argument(
        "--a5-hosts",
        type=a5_host_addresses_argument,
        metavar="ADDRESSES",
        help="a5: the request addresses answered, e.g. 0x40 as an RS485 port (default: "
        "0x40 + board - 1 and 0x80, as a UART port)",
    )
    parser.add_argument(
        "--a5-bus",
        type=int,
        metavar="N",
        help=f"a5 with --serial: boards 1..N (2..{A5_MAX_BOARD}) on one RS485 bus, board n "
        "answering 0x40 + n - 1 alone, each its own pack (its SOC 10 points below the one "
        "before)",
    )
    parser.add_argument(
        "--a5-all-frames",
        action="store_true",
        help="a5: send all 16 frames of the cell voltages and 3 of the temperatures, padded "
        "with zeros, as Bluetooth modules do",
    )
    parser.add_argument(
        "--cells", type=int, default=16, help="cells in series (1..32; 1..48 for x81 and a5)"
    )
    parser.add_argument("--sensors", type=int, default=2, help="temperature sensors (1..8)")
    parser.add_argument("--capacity", type=float, default=100.0, help="rated capacity, Ah")
    parser.add_argument(
        "--load-period",
        type=float,
        default=BatteryModel.period_s,
        help="seconds of one discharge-then-charge cycle of the load (default %(default)g)",
    )
    parser.add_argument(
        "--mtu",
        type=int,
        default=DEFAULT_MTU,
        help=f"largest ATT MTU (notifications carry MTU - 3 bytes; default {DEFAULT_MTU}: "
        "whole frames; 23: 20-byte pieces)",
    )
    parser.add_argument(
        "--gatt",
        choices=[layout.name for layout in GATT_LAYOUTS],
        default=FFF0.name,
        help="fff0 (fff1/fff2), or ff00 (ff01/ff02, with fff1 refusing notifications) as "
        "newer firmware",
    )
    parser.add_argument(
        "--status-registers",
        type=int,
        choices=(80, 62),
        default=80,
        help="D2 status reads answered: 80 (and 62), or 62 only as older firmware",
    )
    parser.add_argument(
        "--device-info-fields",
        type=int,
        choices=(16, 32),
        default=16,
        help="D2 device-information layout: 16-byte fields (software version reversed, "
        "production date) or 32-byte fields",
    )
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between notifications")
    parser.add_argument(
        "--control",
        metavar="SOCKET",
        help='Unix socket (mode 0600) taking JSON lines such as {"fault": "corrupt_crc", '
        '"count": 2}, {"disarm": "all"}, {"link": "sleep"}; with --serial, {"link": '
        '"disconnect"} unplugs the port and opens a new one',
    )
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="CAPTURE",
        help="answer as the BMS of a capture (daly-bms record) did, request by request, with "
        "its timing, name and GATT layout; with --can, a capture of a CAN bus, as CAN frames",
    )
    parser.add_argument(
        "--fast", action="store_true", help="with --replay: answer at once, not at recorded delays"
    )
    parser.add_argument(
        "--loop", action="store_true", help="with --replay: start over at the capture's end"
    )
    parser.add_argument(
        "--after-discovery-on",
        metavar="ADAPTER",
        help="start advertising only once this central adapter scans (for BlueZ mocks)",
    )
    return parser


class Presentation(Protocol):
    """What the control socket drives: a BLE peripheral or a serial port."""

    faults: FaultInjector

    @property
    def link_events(self) -> Mapping[str, Callable[[], Awaitable[object]]]:
        """The link events a control client may play, by name."""

    async def stop(self) -> None:
        """Withdraw the BMS."""


#: The longest control line taken; a longer one is answered with an error and skipped.
CONTROL_LINE_LIMIT = 65536


def usage(presentation: Presentation) -> str:
    """Tell the commands ``presentation`` takes."""
    return (
        f'send {{"fault": one of {", ".join(fault.value for fault in Fault)}, "count": N >= 1}}, '
        f'{{"disarm": a fault or "all"}} or '
        f'{{"link": one of {", ".join(presentation.link_events)}}}'
    )


async def apply_command(command: object, presentation: Presentation) -> dict[str, object]:
    """Carry out one control command; return the reply (ValueError for a wrong command)."""
    if not isinstance(command, dict):
        raise ValueError("a command is a JSON object")
    faults = presentation.faults
    if "link" in command:
        play = presentation.link_events.get(command["link"])
        if play is None:
            raise ValueError(f"no link event {command['link']!r}")
        await play()
        return {"link": command["link"]}
    if "disarm" in command:
        target = command["disarm"]
        faults.disarm(None if target == "all" else Fault(target))
    else:
        count = command.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool):
            raise ValueError(f"count must be a whole number, not {count!r}")
        faults.arm(Fault(command["fault"]), count)
    return {"armed": {fault.value: n for fault, n in faults.armed.items() if n}}


async def control(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    presentation: Presentation,
) -> None:
    """Serve one control connection: one JSON command per line, one JSON reply per line.

    A line beyond CONTROL_LINE_LIMIT gets an error reply, then the connection is closed.
    """
    while True:
        try:
            line = await reader.readline()
        except ValueError:
            line = b""
            reply: dict[str, object] = {
                "error": f"a line of over {CONTROL_LINE_LIMIT} bytes; {usage(presentation)}"
            }
        else:
            if not line:
                break
            try:
                reply = await apply_command(json.loads(line), presentation)
            except (ValueError, KeyError, TypeError, RecursionError) as error:
                reply = {
                    "error": f"{type(error).__name__}: {str(error)[:200]}; {usage(presentation)}"
                }
            except DBusError as error:
                reply = {"error": f"BlueZ refused: {error}"}
            except OSError as error:
                reply = {"error": f"the link event failed: {error}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
        if not line:
            break
    writer.close()


@contextlib.asynccontextmanager
async def control_socket(path: str, presentation: Presentation) -> AsyncIterator[None]:
    """Serve the control socket at ``path``, for its owner only (0600); removed afterwards."""
    previous = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(
            lambda reader, writer: control(reader, writer, presentation),
            path,
            limit=CONTROL_LINE_LIMIT,
        )
    finally:
        os.umask(previous)
    try:
        yield
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def responder_for(arguments: argparse.Namespace) -> Callable[[bytes], bytes | None]:
    """Build the battery model and the responder of the protocol the arguments name.

    ValueError for an impossible pack or board number.
    """
    model = model_for(arguments)
    if arguments.a5_bus:
        return A5Bus(model, arguments.a5_bus)
    if arguments.protocol == A5:
        return A5Responder(
            model,
            arguments.a5_board or 1,
            arguments.a5_hosts,
            all_frames=arguments.a5_all_frames,
        )
    return ModelResponder(
        model,
        VARIANTS_BY_NAME[arguments.protocol],
        answers_80_registers=arguments.status_registers == 80,
        device_info_fields_of_32=arguments.device_info_fields == 32,
        device_info=device_info_of(arguments.name),
    )


def announce_port(path: str) -> None:
    """Tell the path of a serial port opened, in the line clients wait for."""
    print(f"serial port {path}", flush=True)


async def serve(arguments: argparse.Namespace) -> None:
    """Advertise (or open the serial port) and answer until SIGINT or SIGTERM."""
    presentation: Presentation
    start: Callable[[], Awaitable[None]]
    if arguments.can:
        bus = SlcanBms(arguments.responder, announce_port, arguments.other_traffic)
        presentation, start = bus, bus.start
    elif arguments.serial:
        protocol = arguments.protocol
        serial = SerialBms(
            arguments.responder,
            a5_request_length
            if protocol == A5
            else modbus_request_length(VARIANTS_BY_NAME[protocol]),
            announce_port,
            echo=arguments.rs485_echo,
        )
        presentation, start = serial, serial.start
    else:
        peripheral = DalyPeripheral(
            arguments.name,
            arguments.responder,
            arguments.adapter,
            arguments.mtu,
            arguments.gap,
            gatt={layout.name: layout for layout in GATT_LAYOUTS}[arguments.gatt],
            manufacturer_data=dict(arguments.manufacturer_data),
            advertise_name=not arguments.no_name,
        )
        presentation = peripheral

        async def start() -> None:
            if arguments.after_discovery_on:
                await wait_until_discovering(arguments.after_discovery_on)
            await peripheral.start()
            print(f"virtual BMS {arguments.name} advertising on {arguments.adapter}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if arguments.control:
            try:
                await stack.enter_async_context(control_socket(arguments.control, presentation))
            except OSError as error:
                message = f"cannot serve --control {arguments.control}: {error}"
                raise ControlSocketError(message) from error
        await start()
        try:
            await stop.wait()
        finally:
            await presentation.stop()


class ControlSocketError(Exception):
    """The control socket cannot be served (its path is taken or not writable)."""


def model_for(arguments: argparse.Namespace) -> BatteryModel:
    """Build the battery model the arguments describe; ValueError for an impossible pack."""
    return BatteryModel(
        cells=arguments.cells,
        sensors=arguments.sensors,
        capacity_ah=arguments.capacity,
        period_s=arguments.load_period,
        max_cells=MAX_CELLS.get(arguments.protocol, BatteryModel.max_cells),
    )


def check_presentation(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> None:
    """Refuse options that do not go together; fill in the protocol of the presentation."""
    arguments.protocol = arguments.protocol or (
        A5 if arguments.serial or arguments.can else D2.name
    )
    check_can(parser, arguments)
    a5_options = (
        arguments.a5_board is not None
        or arguments.a5_hosts
        or arguments.a5_all_frames
        or arguments.a5_bus is not None
    )
    if arguments.protocol != A5 and a5_options:
        parser.error("--a5-board, --a5-hosts, --a5-all-frames and --a5-bus are for --protocol a5")
    if arguments.a5_bus is not None and (
        not (arguments.serial or arguments.can)
        or arguments.a5_board is not None
        or arguments.a5_hosts
    ):
        parser.error(
            "--a5-bus is for --serial, and numbers the boards itself: not with "
            "--a5-board or --a5-hosts"
        )
    if arguments.rs485_echo and not arguments.serial:
        parser.error("--rs485-echo is for --serial")
    if arguments.replay and arguments.serial:
        parser.error("--replay plays Bluetooth notifications: not with --serial")


def check_can(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> None:
    """Refuse CAN options that do not go together; boards 2..N make a bus of A5 boards."""
    if not arguments.can:
        if arguments.boards != 1 or arguments.other_traffic:
            parser.error("--boards and --other-traffic are for --can")
        return
    if arguments.serial or arguments.protocol != A5:
        parser.error("--can carries the A5 protocol (--protocol a5), not with --serial")
    if arguments.a5_bus is not None or arguments.a5_hosts or arguments.rs485_echo:
        parser.error(
            "--can numbers the boards by --boards: not with --a5-bus, --a5-hosts or --rs485-echo"
        )
    if not 1 <= arguments.boards <= A5_MAX_BOARD:
        parser.error(f"--boards is 1..{A5_MAX_BOARD}, not {arguments.boards}")
    if arguments.boards > 1:
        if arguments.a5_board is not None:
            parser.error("--boards numbers the boards itself: not with --a5-board")
        arguments.a5_bus = arguments.boards


def main(argv: Sequence[str] | None = None) -> int:
    """Run the virtual BMS; exit 2 on bad arguments, 1 when BlueZ (or the system) refuses it."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    check_presentation(parser, arguments)
    if not MINIMUM_MTU <= arguments.mtu <= DEFAULT_MTU:
        parser.error(f"--mtu must be {MINIMUM_MTU}..{DEFAULT_MTU}, not {arguments.mtu}")
    control = arguments.control
    if control and os.path.exists(control) and not stat.S_ISSOCK(os.stat(control).st_mode):
        parser.error(f"--control {control} exists and is not a socket")
    arguments.replay_responder = None
    if arguments.replay:
        try:
            events = list(read_events(arguments.replay, max_bytes=MAX_KEPT_BYTES))
            arguments.replay_responder = ReplayResponder(
                steps_of(events), arguments.fast, arguments.loop
            )
        except InputFileError as error:
            parser.error(f"--replay: {error}")
        device: dict[str, Any] = next(
            (e.details["device"] for e in events if e.kind == CONNECTION), {}
        )
        recorded_name = device.get("name")
        if arguments.name is None and recorded_name:
            if (problem := name_problem(recorded_name)) is not None:
                parser.error(
                    f"--replay {arguments.replay}: the recorded name {problem}: give --name"
                )
            arguments.name = recorded_name
        arguments.gatt = device.get("gatt") or arguments.gatt
    arguments.name = arguments.name or DEFAULT_NAME
    try:
        # Built also for a replay: an impossible pack is refused whatever answers.
        model_responder = responder_for(arguments)
    except ValueError as error:
        parser.error(str(error))
    arguments.responder = arguments.replay_responder or model_responder
    try:
        asyncio.run(serve(arguments))
    except ControlSocketError as error:
        print(f"daly-bms-sim: {error}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError) as error:
        failed = (
            "no pseudo-terminal" if arguments.serial or arguments.can else "BlueZ not reachable"
        )
        print(f"daly-bms-sim: {failed}: {error}", file=sys.stderr)
        return 1
    except DBusError as error:
        print(f"daly-bms-sim: BlueZ refused: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
