"""``daly-bms``: work with Daly smart BMS from the command line (see ``daly-bms --help``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from daly_bms_ros.cli import (
    control,
    convert,
    decode,
    doctor,
    info,
    monitor,
    read,
    record,
    scan,
    serve,
    settings,
    shell,
)
from daly_bms_ros.cli.device import check_transport_arguments
from daly_bms_ros.cli.exit_codes import output_closed


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="daly-bms", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in (
        scan, read, monitor, record, info, settings, control, shell, serve, decode, convert, doctor,
    ):  # fmt: skip
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return its exit status (2 for usage errors).

    Standard output closed by its reader (``| head``) ends any command quietly: ExitCode's
    OUTPUT_CLOSED, no traceback.
    """
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
        if (problem := check_transport_arguments(arguments)) is not None:
            parser.error(problem)
        status: int = arguments.handler(arguments)
        sys.stdout.flush()
    except BrokenPipeError:
        return output_closed()
    return status


if __name__ == "__main__":
    sys.exit(main())
