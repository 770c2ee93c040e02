"""``daly-bms-sim``: a virtual Daly BMS advertising on a BlueZ adapter until Ctrl+C.

It answers the status, settings, MOS-temperature and device-information requests from a battery
model, in notifications of ``--mtu`` bytes, like a Daly smart BMS does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from dbus_fast.errors import DBusError

from daly_bms_ros.protocol import VARIANTS, X81, Variant
from daly_bms_ros.protocol.registers import X81_MAX_CELLS
from daly_bms_ros.sim.battery import BatteryModel
from daly_bms_ros.sim.faults import Fault
from daly_bms_ros.sim.peripheral import DalyPeripheral, wait_until_discovering
from daly_bms_ros.sim.responder import ModelResponder

PROTOCOLS = {variant.name: variant for variant in VARIANTS}


def build_parser() -> argparse.ArgumentParser:
    """Build the command line parser."""
    parser = argparse.ArgumentParser(prog="daly-bms-sim", description=__doc__)
    parser.add_argument("--name", default="DL-SIM000001", help="advertised name")
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
    parser.add_argument("--mtu", type=int, default=20, help="bytes per notification")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between notifications")
    parser.add_argument(
        "--control",
        metavar="SOCKET",
        help='Unix socket taking JSON lines such as {"fault": "corrupt_crc", "count": 2}',
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


async def apply_command(
    command: dict[str, object], peripheral: DalyPeripheral
) -> dict[str, object]:
    """Carry out one control command; return the reply."""
    if "link" in command:
        await LINK_EVENTS[str(command["link"])](peripheral)
        return {"link": command["link"]}
    peripheral.faults.arm(Fault(command["fault"]), int(str(command.get("count", 1))))
    return {"armed": {fault.value: n for fault, n in peripheral.faults.armed.items() if n}}


async def control(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peripheral: DalyPeripheral,
) -> None:
    """Serve one control connection: one JSON command per line, one JSON reply per line."""
    while line := await reader.readline():
        try:
            reply = await apply_command(json.loads(line), peripheral)
        except (ValueError, KeyError, TypeError) as error:
            faults = ", ".join(fault.value for fault in Fault)
            reply = {
                "error": f'{error!r}; send {{"fault": one of {faults}, "count": N}} '
                f'or {{"link": one of {", ".join(LINK_EVENTS)}}}'
            }
        except DBusError as error:
            reply = {"error": f"BlueZ refused: {error}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
    writer.close()


async def serve(arguments: argparse.Namespace) -> None:
    """Advertise and answer until SIGINT or SIGTERM."""
    variant = PROTOCOLS[arguments.protocol]
    responder = ModelResponder(model_for(arguments, variant), variant)
    peripheral = DalyPeripheral(
        arguments.name, responder, arguments.adapter, arguments.mtu, arguments.gap
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    if arguments.control:
        await asyncio.start_unix_server(
            lambda reader, writer: control(reader, writer, peripheral),
            arguments.control,
        )
    if arguments.after_discovery_on:
        await wait_until_discovering(arguments.after_discovery_on)
    await peripheral.start()
    print(f"virtual BMS {arguments.name} advertising on {arguments.adapter}", flush=True)
    try:
        await stop.wait()
    finally:
        await peripheral.stop()


def model_for(arguments: argparse.Namespace, variant: Variant) -> BatteryModel:
    """Build the battery model the arguments describe; ValueError for an impossible pack."""
    return BatteryModel(
        cells=arguments.cells,
        sensors=arguments.sensors,
        capacity_ah=arguments.capacity,
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
    try:
        asyncio.run(serve(arguments))
    except (OSError, ConnectionError) as error:
        print(f"daly-bms-sim: BlueZ not reachable: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
