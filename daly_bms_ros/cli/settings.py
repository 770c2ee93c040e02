"""``daly-bms settings``: read the settings block, as a table or (``--json``) one JSON object.

Reading changes nothing on the BMS, so it needs no ``--allow-control``; the names are those
``daly-bms set`` takes (with dashes or underscores).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from daly_bms_ros.cli.device import add_reading_parser, connected, run_on_link
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.protocol import BmsSettings, DalyProtocolError
from daly_bms_ros.protocol.registers import SETTINGS_REGISTERS


async def read_settings(arguments: argparse.Namespace) -> BmsSettings:
    """Return the settings block (read with the first sample of a connection)."""
    async with connected(arguments) as client:
        sample = await client.read_sample()
    if sample.settings is None:
        raise DalyProtocolError("this BMS has no settings block (the 0x81 protocol)")
    return sample.settings


def add_parser(subparsers: Any) -> None:
    """Register the ``settings`` subcommand."""
    add_reading_parser(subparsers, "settings", "read the settings block", run)


def run(arguments: argparse.Namespace) -> int:
    """Print every setting with its unit."""
    settings = run_on_link(lambda: read_settings(arguments))
    if isinstance(settings, ExitCode):
        return settings
    if arguments.json:
        print(json.dumps(settings.to_dict()))
        return ExitCode.OK
    values = settings.by_name()
    width = max(map(len, values))
    for name, value in values.items():
        unit = SETTINGS_REGISTERS[name].unit
        print(f"{name.replace('_', '-'):<{width}}  {value:g} {unit}".rstrip())
    return ExitCode.OK
