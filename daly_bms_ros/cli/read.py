"""``daly-bms read``: connect, read one sample, print it as a table or as JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from daly_bms_ros.cli.device import add_reading_parser, connected, run_on_link
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.protocol import BmsSample
from daly_bms_ros.report import sample_record, text_report


async def read_once(arguments: argparse.Namespace) -> BmsSample:
    """Return one complete sample."""
    async with connected(arguments) as client:
        return await client.read_sample()


def add_parser(subparsers: Any) -> None:
    """Register the ``read`` subcommand."""
    add_reading_parser(subparsers, "read", "read one sample", run)


def run(arguments: argparse.Namespace) -> int:
    """Print the sample; the exit status tells what failed (see ``ExitCode``)."""
    result = run_on_link(lambda: read_once(arguments))
    if isinstance(result, ExitCode):
        return result
    if arguments.json:
        print(json.dumps(sample_record(result)))
    else:
        print(text_report(result))
    return ExitCode.OK
