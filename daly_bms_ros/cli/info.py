"""``daly-bms info``: what the BMS is: name, address or port, protocol, versions, cells, capacity.

Software and hardware version and production date come from the D2 device-information block;
model, manufacturer, serial and firmware revision from the standard GATT Device Information
Service where the BMS has it; the pack layout and capacity from one status and settings read.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from daly_bms_ros.cli.device import add_reading_parser, connected, run_on_link
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.protocol.model import json_object
from daly_bms_ros.report import rated_capacity


async def read_info(arguments: argparse.Namespace) -> dict[str, Any]:
    """Identity and layout of the BMS."""
    async with connected(arguments) as client:
        transport = client.transport
        information = await client.device_information()
        sample = await client.read_sample()
    nominal = sample.settings.nominal_cell_voltage if sample.settings else float("nan")
    on_can = transport.details.get("transport") == "can"
    return json_object(
        {
            "name": transport.name,
            # A Bluetooth BMS is known by its address, a wired one by its port or CAN bus (and
            # board).
            "mac_address": None if transport.wired else transport.address,
            "serial_port": client.address if transport.wired and not on_can else None,
            "can_bus": client.address if on_can else None,
            "protocol": client.protocol,
            "software_version": information.pop("software_version", None),
            "hardware_version": information.pop("hardware_version", None),
            "production_date": information.pop("production_date", None),
            "firmware_version": information.pop("firmware_version", None),
            **information,
            "cell_count": len(sample.status.cell_voltages),
            "temperature_sensors": len(sample.status.temperatures),
            "rated_capacity": rated_capacity(sample),
            "nominal_cell_voltage": nominal,
            "cycles": sample.status.cycles,
        }
    )


def add_parser(subparsers: Any) -> None:
    """Register the ``info`` subcommand."""
    add_reading_parser(subparsers, "info", "versions, serial and layout of the BMS", run)


def run(arguments: argparse.Namespace) -> int:
    """Print the identity; a field the BMS does not tell is null (JSON) or "n/a"."""
    info = run_on_link(lambda: read_info(arguments))
    if isinstance(info, ExitCode):
        return info
    if arguments.json:
        print(json.dumps(info))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            print(f"{key.replace('_', ' '):<{width}}  {'n/a' if value is None else value}")
    return ExitCode.OK
