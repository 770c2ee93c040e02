"""``daly-bms-sim``: a virtual Daly BMS advertising on a BlueZ adapter until Ctrl+C.

It answers the status, settings, MOS-temperature and device-information requests from a battery
model, whole frames in one notification where the link's MTU allows (``--mtu`` caps it), like a
Daly smart BMS does; options present it as the hardware variants found in the field.
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
from daly_bms_ros.protocol.gatt import FFF0, GATT_LAYOUTS
from daly_bms_ros.protocol.registers import X81_MAX_CELLS
from daly_bms_ros.sim.battery import BatteryModel
from daly_bms_ros.sim.faults import Fault
from daly_bms_ros.sim.peripheral import (
    DEFAULT_MTU,
    MINIMUM_MTU,
    DalyPeripheral,
    wait_until_discovering,
)
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
    responder = ModelResponder(
        model_for(arguments, variant),
        variant,
        answers_80_registers=arguments.status_registers == 80,
        device_info_fields_of_32=arguments.device_info_fields == 32,
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
    try:
        asyncio.run(serve(arguments))
    except (OSError, ConnectionError) as error:
        print(f"daly-bms-sim: BlueZ not reachable: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
