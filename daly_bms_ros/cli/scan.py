"""``daly-bms scan``: list the Daly BMS in range with name, address and signal strength."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

from bleak import BleakScanner
from bleak.exc import BleakError

from daly_bms_ros.cli.device import add_adapter_arguments, run_ble
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.link.bleak_transport import adapter_options, is_daly, translate_error


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
            device.name or advertisement.local_name or "", device.address, advertisement.rssi
        )
        for device, advertisement in seen.values()
        if is_daly(device, advertisement)
    ]
    return sorted(found, key=lambda device: device.rssi, reverse=True)


def add_parser(subparsers: Any) -> None:
    """Register the ``scan`` subcommand."""
    parser = subparsers.add_parser("scan", help="list Daly BMS in range")
    add_adapter_arguments(parser)
    parser.set_defaults(timeout=5.0)
    parser.add_argument("--json", action="store_true", help="one JSON object per device")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Print the devices; exit 3 when none was seen."""
    found = run_ble(lambda: scan(arguments.adapter, arguments.timeout))
    if isinstance(found, ExitCode):
        return found
    for device in found:
        if arguments.json:
            print(json.dumps(asdict(device)), flush=True)
        else:
            print(f"{device.address}  {device.rssi:>4} dBm  {device.name}", flush=True)
    return ExitCode.OK if found else ExitCode.NOT_FOUND
