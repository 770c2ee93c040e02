"""``daly-bms-sim``: a virtual Daly BMS advertising on a BlueZ adapter until Ctrl+C.

It answers the status, settings, MOS-temperature and device-information requests from a battery
model, whole frames in one notification where the link's MTU allows (``--mtu`` caps it), like a
Daly smart BMS does; options present it as the hardware variants found in the field.
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
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from dbus_fast.errors import DBusError

from daly_bms_ros.capture.format import CONNECTION, CaptureError, read_events
from daly_bms_ros.protocol import VARIANTS, X81, Variant
from daly_bms_ros.protocol.gatt import FFF0, GATT_LAYOUTS
from daly_bms_ros.protocol.registers import X81_MAX_CELLS
from daly_bms_ros.sim.battery import BatteryModel
from daly_bms_ros.sim.faults import Fault
from daly_bms_ros.sim.peripheral import (
    DEFAULT_MTU,
    MINIMUM_MTU,
    DalyPeripheral,
    Responder,
    wait_until_discovering,
)
from daly_bms_ros.sim.replay import ReplayResponder, steps_of
from daly_bms_ros.sim.responder import ModelResponder, device_info_of

PROTOCOLS = {variant.name: variant for variant in VARIANTS}
DEFAULT_NAME = "DL-SIM000001"


def build_parser() -> argparse.ArgumentParser:
    """Build the command line parser."""
    parser = argparse.ArgumentParser(prog="daly-bms-sim", description=__doc__)
    parser.add_argument(
        "--name", help="advertised name (default DL-SIM000001, or the one a --replay capture holds)"
    )
    parser.add_argument("--adapter", default="hci1", help="BlueZ adapter to advertise on")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="d2",
        help="protocol variant: d2 (address 0xD2) or x81 (the newer one, 0x81/0x51)",
    )
    parser.add_argument(
        "--cells", type=int, default=16, help="cells in series (1..32; 1..48 for x81)"
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
        '"count": 2}, {"disarm": "all"}, {"link": "sleep"}',
    )
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="CAPTURE",
        help="answer as the BMS of a capture (daly-bms record) did, request by request, with "
        "its timing, name and GATT layout",
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


#: Link events a control client may trigger, and the peripheral method that plays each.
LINK_EVENTS = {
    "disconnect": DalyPeripheral.disconnect_centrals,
    "sleep": DalyPeripheral.sleep,
    "wake": DalyPeripheral.wake,
}


#: The longest control line taken; a longer one is answered with an error and skipped.
CONTROL_LINE_LIMIT = 65536
USAGE = (
    f'send {{"fault": one of {", ".join(fault.value for fault in Fault)}, "count": N >= 1}}, '
    f'{{"disarm": a fault or "all"}} or {{"link": one of {", ".join(LINK_EVENTS)}}}'
)


async def apply_command(command: object, peripheral: DalyPeripheral) -> dict[str, object]:
    """Carry out one control command; return the reply (ValueError for a wrong command)."""
    if not isinstance(command, dict):
        raise ValueError("a command is a JSON object")
    if "link" in command:
        if command["link"] not in LINK_EVENTS:
            raise ValueError(f"no link event {command['link']!r}")
        await LINK_EVENTS[command["link"]](peripheral)
        return {"link": command["link"]}
    if "disarm" in command:
        target = command["disarm"]
        peripheral.faults.disarm(None if target == "all" else Fault(target))
    else:
        count = command.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool):
            raise ValueError(f"count must be a whole number, not {count!r}")
        peripheral.faults.arm(Fault(command["fault"]), count)
    return {"armed": {fault.value: n for fault, n in peripheral.faults.armed.items() if n}}


async def control(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peripheral: DalyPeripheral,
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
                "error": f"a line of over {CONTROL_LINE_LIMIT} bytes; {USAGE}"
            }
        else:
            if not line:
                break
            try:
                reply = await apply_command(json.loads(line), peripheral)
            except (ValueError, KeyError, TypeError, RecursionError) as error:
                reply = {"error": f"{type(error).__name__}: {str(error)[:200]}; {USAGE}"}
            except DBusError as error:
                reply = {"error": f"BlueZ refused: {error}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
        if not line:
            break
    writer.close()


@contextlib.asynccontextmanager
async def control_socket(path: str, peripheral: DalyPeripheral) -> AsyncIterator[None]:
    """Serve the control socket at ``path``, for its owner only (0600); removed afterwards."""
    previous = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(
            lambda reader, writer: control(reader, writer, peripheral),
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


async def serve(arguments: argparse.Namespace) -> None:
    """Advertise and answer until SIGINT or SIGTERM."""
    variant = PROTOCOLS[arguments.protocol]
    responder: Responder = arguments.replay_responder or ModelResponder(
        model_for(arguments, variant),
        variant,
        answers_80_registers=arguments.status_registers == 80,
        device_info_fields_of_32=arguments.device_info_fields == 32,
        device_info=device_info_of(arguments.name),
    )
    peripheral = DalyPeripheral(
        arguments.name,
        responder,
        arguments.adapter,
        arguments.mtu,
        arguments.gap,
        gatt={layout.name: layout for layout in GATT_LAYOUTS}[arguments.gatt],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if arguments.control:
            try:
                await stack.enter_async_context(control_socket(arguments.control, peripheral))
            except OSError as error:
                message = f"cannot serve --control {arguments.control}: {error}"
                raise ControlSocketError(message) from error
        if arguments.after_discovery_on:
            await wait_until_discovering(arguments.after_discovery_on)
        await peripheral.start()
        print(f"virtual BMS {arguments.name} advertising on {arguments.adapter}", flush=True)
        try:
            await stop.wait()
        finally:
            await peripheral.stop()


class ControlSocketError(Exception):
    """The control socket cannot be served (its path is taken or not writable)."""


def model_for(arguments: argparse.Namespace, variant: Variant) -> BatteryModel:
    """Build the battery model the arguments describe; ValueError for an impossible pack."""
    return BatteryModel(
        cells=arguments.cells,
        sensors=arguments.sensors,
        capacity_ah=arguments.capacity,
        period_s=arguments.load_period,
        max_cells=X81_MAX_CELLS if variant is X81 else BatteryModel.max_cells,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the virtual BMS; exit 2 on bad arguments, 1 when BlueZ refuses it."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        model_for(arguments, PROTOCOLS[arguments.protocol])
    except ValueError as error:
        parser.error(str(error))
    if not MINIMUM_MTU <= arguments.mtu <= DEFAULT_MTU:
        parser.error(f"--mtu must be {MINIMUM_MTU}..{DEFAULT_MTU}, not {arguments.mtu}")
    control = arguments.control
    if control and os.path.exists(control) and not stat.S_ISSOCK(os.stat(control).st_mode):
        parser.error(f"--control {control} exists and is not a socket")
    arguments.replay_responder = None
    if arguments.replay:
        try:
            events = list(read_events(arguments.replay))
            arguments.replay_responder = ReplayResponder(
                steps_of(events), arguments.fast, arguments.loop
            )
        except (OSError, CaptureError) as error:
            parser.error(f"--replay {arguments.replay}: {error}")
        device: dict[str, Any] = next(
            (e.details["device"] for e in events if e.kind == CONNECTION), {}
        )
        arguments.name = arguments.name or device.get("name") or DEFAULT_NAME
        arguments.gatt = device.get("gatt") or arguments.gatt
    arguments.name = arguments.name or DEFAULT_NAME
    try:
        asyncio.run(serve(arguments))
    except ControlSocketError as error:
        print(f"daly-bms-sim: {error}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError) as error:
        print(f"daly-bms-sim: BlueZ not reachable: {error}", file=sys.stderr)
        return 1
    except DBusError as error:
        print(f"daly-bms-sim: BlueZ refused: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
