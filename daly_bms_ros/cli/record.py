"""``daly-bms record FILE``: poll the BMS and record the raw conversation, for a bug report.

Everything the driver sends and every notification it gets goes to FILE in the capture format
(``daly_bms_ros.capture.format``), with the device and protocol; the decoded samples are
printed as JSON lines meanwhile. ``daly-bms-sim --replay FILE`` plays the file back as a
virtual BMS; ``daly-bms decode --capture FILE`` decodes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from daly_bms_ros.cli import monitor
from daly_bms_ros.cli.device import add_device_arguments, add_poll_arguments


def add_parser(subparsers: Any) -> None:
    """Register the ``record`` subcommand."""
    parser = subparsers.add_parser(
        "record", help="record the raw conversation with the BMS to a file", description=__doc__
    )
    parser.add_argument("record", type=Path, metavar="FILE", help="the capture file to write")
    add_device_arguments(parser)
    add_poll_arguments(parser)
    monitor.add_stop_arguments(parser)
    parser.set_defaults(handler=run, json=True, format="json")


def run(arguments: argparse.Namespace) -> int:
    """Record and print JSON lines until Ctrl+C, --count or --duration."""
    return monitor.run(arguments)
