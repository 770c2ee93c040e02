"""Describe the BMS link for /diagnostics: is data flowing, and if not, why."""

from __future__ import annotations

import time
from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from daly_bms_ros.ble.link import LinkState, LinkStatus
from daly_bms_ros.protocol import BmsSample


def firmware_version(information: Mapping[str, str]) -> str:
    """Daly's software version (D2 block), else the GATT firmware revision, else "unknown"."""
    return information.get("software_version") or information.get("firmware_version", "unknown")


def link_diagnostics(
    name: str,
    hardware_id: str,
    status: LinkStatus,
    sample: BmsSample | None,
    stale_timeout: float,
) -> DiagnosticStatus:
    """One DiagnosticStatus: OK with fresh data, WARN on alarms or stale data, ERROR when down."""
    age = None if status.last_sample_at is None else time.monotonic() - status.last_sample_at
    alarms = sample.status.alarms if sample is not None else ()
    if status.state is not LinkState.CONNECTED:
        level = DiagnosticStatus.ERROR
        message = f"link {status.state.name.lower()}"
        if status.last_error:
            message += f": {status.last_error}"
    elif age is None or age > stale_timeout:
        level, message = DiagnosticStatus.WARN, "connected, no fresh sample"
    elif alarms:
        level, message = DiagnosticStatus.WARN, "alarms: " + ", ".join(alarms)
    else:
        level, message = DiagnosticStatus.OK, "receiving samples"
    values = {
        "link_state": status.state.name.lower(),
        "device": status.device,
        "last_sample_age_s": "never" if age is None else f"{age:.2f}",
        "reconnects": str(status.reconnects),
        "consecutive_failures": str(status.consecutive_failures),
        "requests": str(status.requests),
        "timeouts": str(status.timeouts),
        "missed_polls": str(status.missed_polls),
        "last_error": status.last_error,
        "alarms": ", ".join(alarms),
        "firmware_version": firmware_version(status.device_information),
        "hardware_version": status.device_information.get("hardware_version", "unknown"),
        "production_date": status.device_information.get("production_date", "unknown"),
        **{f"rejected_{reason}": str(count) for reason, count in sorted(status.rejected.items())},
    }
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=value) for key, value in values.items()],
    )
