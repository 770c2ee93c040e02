"""Exit statuses of ``daly-bms`` that scripts can rely on, and the error each one stands for."""

from __future__ import annotations

import enum

from daly_bms_ros.ble.client import RequestTimeoutError
from daly_bms_ros.ble.transport import (
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
    NO_BLUETOOTH = 5  # no adapter, BlueZ or D-Bus not reachable
    LINK_LOST = 6  # the connection failed or dropped


def exit_code_for(error: TransportError) -> ExitCode:
    """Return the exit status for a BLE failure."""
    if isinstance(error, DeviceNotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(error, RequestTimeoutError):
        return ExitCode.NO_ANSWER
    if isinstance(error, AdapterUnavailableError):
        return ExitCode.NO_BLUETOOTH
    return ExitCode.LINK_LOST
