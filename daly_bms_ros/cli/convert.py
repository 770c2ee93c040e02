"""``daly-bms convert-log LOG CAPTURE``: turn an nRF Connect log into a capture.

Logs as users paste them in issue threads; ``daly-bms decode --capture`` decodes the capture
and ``daly-bms-sim --replay`` plays it back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from daly_bms_ros.capture.files import MAX_KEPT_BYTES, InputFileError, read_lines
from daly_bms_ros.capture.nrf import convert_nrf_log
from daly_bms_ros.cli.exit_codes import ExitCode


def add_parser(subparsers: Any) -> None:
    """Register the ``convert-log`` subcommand."""
    parser = subparsers.add_parser(
        "convert-log", help="turn an nRF Connect log into a capture", description=__doc__
    )
    parser.add_argument("log", type=Path, help="the nRF Connect log (text, as exported or pasted)")
    parser.add_argument("capture", type=Path, help="the capture file to write")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Convert; exit 2 when the log cannot be read or is not an nRF Connect log.

    The log is read whole before the capture is written (its device comes first in the
    capture, its GATT layout and MTU may come last in the log): a log over MAX_KEPT_BYTES is
    refused.
    """
    log = read_lines(arguments.log, errors="replace", max_bytes=MAX_KEPT_BYTES)
    try:
        lines = list(convert_nrf_log((text for _, text in log), str(arguments.log)))
        arguments.capture.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except InputFileError as error:
        print(f"daly-bms convert-log: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as error:
        print(f"daly-bms convert-log: {arguments.capture}: {error.strerror}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"{len(lines) - 2} events written to {arguments.capture}")
    return ExitCode.OK
