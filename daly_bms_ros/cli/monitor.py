"""``daly-bms monitor``: read continuously, as a table, JSON lines or legacy ``BMS_DATA`` lines.

The link is kept up as the node does it (reconnects with backoff), so a monitor left running
survives the BMS sleeping or walking out of range; Ctrl+C or SIGTERM ends it with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from daly_bms_ros.ble.bleak_transport import BleakTransport
from daly_bms_ros.ble.link import LinkStatus
from daly_bms_ros.cli.device import (
    add_device_arguments,
    add_poll_arguments,
    follow,
    positive_count,
)
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.cli.legacy import bms_data_line
from daly_bms_ros.protocol import BmsSample
from daly_bms_ros.report import sample_record, text_report

FORMATS = ("table", "json", "bms-data")


def format_sample(
    output_format: str, transport: BleakTransport, sample: BmsSample, status: LinkStatus
) -> str:
    """One sample in the chosen output format."""
    if output_format == "json":
        return json.dumps(sample_record(sample))
    if output_format == "bms-data":
        return bms_data_line(sample, transport.name, transport.address, status.notifications)
    return text_report(sample) + "\n"


def add_parser(subparsers: Any) -> None:
    """Register the ``monitor`` subcommand."""
    parser = subparsers.add_parser("monitor", help="read continuously until Ctrl+C")
    add_device_arguments(parser)
    add_poll_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument(
        "--count", type=positive_count, default=0, help="stop after this many samples"
    )
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Print each sample as it arrives."""
    output_format = "json" if arguments.json else arguments.format

    def emit(transport: BleakTransport, sample: BmsSample, status: LinkStatus) -> None:
        print(format_sample(output_format, transport, sample, status), flush=True)

    asyncio.run(follow(arguments, emit, arguments.count))
    return ExitCode.OK
