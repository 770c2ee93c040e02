"""Exit statuses of ``daly-bms`` that scripts can rely on, and the error each one stands for."""

from __future__ import annotations

import contextlib
import enum
import os
import sys

from daly_bms_ros.link.client import (
    ControlNotSupportedError,
    ReadBackMismatchError,
    RequestTimeoutError,
    WriteNotAcknowledgedError,
    WriteOutcomeUnknownError,
)
from daly_bms_ros.link.transport import (
    AdapterUnavailableError,
    DeviceNotFoundError,
    TransportError,
)


class ExitCode(enum.IntEnum):
    """What a ``daly-bms`` exit status means."""

    OK = 0
    FAILED = 1  # a frame did not decode, or another failure
    USAGE = 2  # bad arguments (argparse's own status)
    NOT_FOUND = 3  # no matching BMS seen within the timeout
    NO_ANSWER = 4  # connected, but the BMS did not answer
    NO_BLUETOOTH = 5  # no adapter, BlueZ or D-Bus not reachable; a CAN bus that cannot be opened
    LINK_LOST = 6  # the connection failed or dropped
    REFUSED = 7  # a write not allowed (no --allow-control) or not confirmed
    NOT_ACKNOWLEDGED = 8  # the BMS did not acknowledge a write and does not hold the value
    READ_BACK_MISMATCH = 9  # the BMS acknowledged a write but holds another value
    OUTCOME_UNKNOWN = 10  # a write was sent, but whether the BMS holds it could not be read
    ADAPTER_OFF = 11  # the Bluetooth adapter is powered off or blocked by rfkill
    PERMISSION_DENIED = 12  # the user may not use the adapter (D-Bus policy) or the serial port
    PORT_BUSY = 13  # another process holds the serial port
    OUTPUT_CLOSED = 141  # standard output closed by its reader (| head): 128 + SIGPIPE, as the
    # shell reports a tool that SIGPIPE ended


def output_closed() -> ExitCode:
    """End quietly after the reader of standard output closed it; return OUTPUT_CLOSED.

    As Unix tools do in ``daly-bms read --json | head -c 200``: no traceback, no message. What
    is still buffered for standard output would fail again when Python flushes it at exit (and
    say so on stderr): standard output is pointed at /dev/null first.
    """
    with contextlib.suppress(OSError, ValueError):  # ValueError: stdout has no descriptor
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return ExitCode.OUTPUT_CLOSED


def exit_code_for(error: TransportError) -> ExitCode:
    """Return the exit status for a BLE failure."""
    if isinstance(error, DeviceNotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(error, RequestTimeoutError):
        return ExitCode.NO_ANSWER
    if isinstance(error, AdapterUnavailableError):
        return ExitCode.NO_BLUETOOTH
    if isinstance(error, ReadBackMismatchError):
        return ExitCode.READ_BACK_MISMATCH
    if isinstance(error, WriteNotAcknowledgedError):
        return ExitCode.NOT_ACKNOWLEDGED
    if isinstance(error, ControlNotSupportedError):
        return ExitCode.FAILED
    if isinstance(error, WriteOutcomeUnknownError):
        return ExitCode.OUTCOME_UNKNOWN
    return ExitCode.LINK_LOST
