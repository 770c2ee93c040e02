"""``daly-bms monitor``: read continuously, as a table, JSON lines or legacy ``BMS_DATA`` lines.

The link is kept up as the node does it (reconnects with backoff), so a monitor left running
survives the BMS sleeping or walking out of range; Ctrl+C or SIGTERM ends it with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from daly_bms_ros.capture.writer import CaptureWriter
from daly_bms_ros.cli.device import (
    add_device_arguments,
    add_poll_arguments,
    follow,
    positive_count,
    positive_seconds,
)
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.cli.legacy import bms_data_line
from daly_bms_ros.link.supervisor import LinkStatus
from daly_bms_ros.link.transport import BmsTransport
from daly_bms_ros.protocol import BmsSample
from daly_bms_ros.report import sample_record, text_report

FORMATS = ("table", "json", "bms-data")


def format_sample(
    output_format: str, transport: BmsTransport, sample: BmsSample, status: LinkStatus
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
    add_stop_arguments(parser)
    parser.add_argument(
        "--record", type=Path, metavar="FILE", help="also record the raw conversation to FILE"
    )
    parser.set_defaults(handler=run)


def add_stop_arguments(parser: argparse.ArgumentParser) -> None:
    """When to stop besides Ctrl+C: after a count of samples or a duration."""
    parser.add_argument(
        "--count", type=positive_count, default=0, help="stop after this many samples"
    )
    parser.add_argument(
        "--duration", type=positive_seconds, default=0.0, help="stop after this many seconds"
    )


def run(arguments: argparse.Namespace) -> int:
    """Print each sample as it arrives (and record, with --record); exit 2 if FILE fails."""
    output_format = "json" if arguments.json else arguments.format
    writer = CaptureWriter(arguments.record) if arguments.record else None
    try:
        if writer is not None:
            writer.start()
    except OSError as error:
        print(f"daly-bms: cannot record to {arguments.record}: {error.strerror}", file=sys.stderr)
        return ExitCode.USAGE

    output_closed = False

    def emit(transport: BmsTransport, sample: BmsSample, status: LinkStatus) -> None:
        nonlocal output_closed
        if output_closed:
            return
        try:
            print(format_sample(output_format, transport, sample, status), flush=True)
        except BrokenPipeError:
            # Nobody reads any more (| head): stop as SIGTERM stops it, the link closed and
            # the capture written out, rather than poll for no one.
            output_closed = True
            signal.raise_signal(signal.SIGTERM)

    try:
        asyncio.run(
            follow(
                arguments,
                emit,
                arguments.count,
                taps=[writer] if writer is not None else [],
                duration=arguments.duration,
            )
        )
    finally:
        if writer is not None:
            writer.close()
    if output_closed:
        raise BrokenPipeError("standard output closed")  # ends quietly (cli.main)
    return ExitCode.OK
