"""Describe the BMS link for /diagnostics: is data flowing, and if not, why."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ROSClock

from daly_bms_ros.link.supervisor import LinkState, LinkStatus
from daly_bms_ros.node.parameters import NodeSettings
from daly_bms_ros.protocol import BmsSample


class SimClockWatch:
    """Tell when a simulated clock stamps the messages with a time that says nothing.

    Under ``use_sim_time`` samples are stamped with /clock time: 0 before the first /clock,
    and the same stamp again and again once /clock stops. The samples are real either way;
    diagnostics say why their stamps are not.
    """

    def __init__(self, clock: Clock, steady: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._steady = steady
        self._last = 0
        self._since = steady()

    def problem(self, still_after: float) -> str | None:
        """Return what is wrong with the stamps now (None: nothing, or no sim time)."""
        if not isinstance(self._clock, ROSClock) or not self._clock.ros_time_is_active:
            return None
        now, steady = self._clock.now().nanoseconds, self._steady()
        if now != self._last:
            self._last, self._since = now, steady
        if now == 0:
            return "use_sim_time: no /clock received yet, messages are stamped 0"
        still = steady - self._since
        if still > still_after:
            return (
                f"use_sim_time: /clock stood still for {still:.0f} s, messages keep the stamp "
                f"{now / 1e9:.3f}"
            )
        return None


def group_diagnostics(
    name: str, group: str, ages: Mapping[str, float | None], max_age: float
) -> DiagnosticStatus:
    """Return a pack group's status: OK while published, else ERROR naming what holds it.

    A group is published only while every member's latest state is younger than ``max_age``
    (group_max_age); a member that vanished stops it, and this says which and how old.
    ``ages``: each member's latest state's age in seconds, None when none came yet.
    """
    stale = [
        f"{pack}: no state yet" if age is None else f"{pack}'s latest state is {age:.1f} s old"
        for pack, age in ages.items()
        if age is None or age > max_age
    ]
    values = {
        "group_max_age_s": f"{max_age:g}",
        **{f"{pack} age_s": "never" if age is None else f"{age:.2f}" for pack, age in ages.items()},
    }
    return DiagnosticStatus(
        level=DiagnosticStatus.ERROR if stale else DiagnosticStatus.OK,
        name=name,
        message=(
            f"not published: {'; '.join(stale)} (group_max_age {max_age:g} s)"
            if stale
            else "published: every member's state is fresh"
        ),
        hardware_id=group,
        values=[KeyValue(key=key, value=value) for key, value in values.items()],
    )


def firmware_version(information: Mapping[str, str]) -> str:
    """Daly's software version (D2 block), else the GATT firmware revision, else "unknown"."""
    return information.get("software_version") or information.get("firmware_version", "unknown")


def hours_left(sample: BmsSample) -> tuple[float, float]:
    """Hours to empty (discharging) and to full (charging) at the present current; NaN else."""
    status = sample.status
    rated = sample.settings.rated_capacity if sample.settings is not None else math.nan
    current = status.current
    if not current or math.isnan(current) or math.isnan(status.remaining_capacity):
        return math.nan, math.nan
    if current < 0:
        return status.remaining_capacity / -current, math.nan
    return math.nan, max(rated - status.remaining_capacity, 0.0) / current


def _passed(value: float, limit: float, low_is_bad: bool) -> bool:
    return value <= limit if low_is_bad else value >= limit


def battery_findings(sample: BmsSample, settings: NodeSettings) -> tuple[bytes, list[str]]:
    """Return the worst level the thresholds give for a sample, and why (none: all OK).

    Levels are DiagnosticStatus bytes (OK < WARN < ERROR), so the worst is their maximum.
    """
    status = sample.status
    hottest = max((*status.temperatures, sample.mos_temperature), default=math.nan)
    checks = (
        ("state of charge", status.soc, "%", settings.soc_warn, settings.soc_error, True),
        ("cell delta", status.cell_delta, " V", settings.cell_delta_warn,
         settings.cell_delta_error, False),
        ("temperature", hottest, " degC", settings.temperature_warn, settings.temperature_error,
         False),
    )  # fmt: skip
    level, reasons = DiagnosticStatus.OK, []
    for what, value, unit, warning, error, low_is_bad in checks:
        if math.isnan(value):
            continue
        for limit, limit_level, kind in (
            (error, DiagnosticStatus.ERROR, "error"),
            (warning, DiagnosticStatus.WARN, "warning"),
        ):
            if _passed(value, limit, low_is_bad):
                level = max(level, limit_level)
                reasons.append(f"{what} {value:g}{unit} ({kind} at {limit:g}{unit})")
                break
    return level, reasons


def link_diagnostics(
    name: str,
    hardware_id: str,
    status: LinkStatus,
    sample: BmsSample | None,
    settings: NodeSettings,
    clock_problem: str | None = None,
) -> DiagnosticStatus:
    """One DiagnosticStatus, OK when all is well.

    ERROR when the link is down or a threshold's error level is passed; WARN on alarms, stale
    data, a threshold's warning level or stamps a simulated clock makes meaningless
    (``clock_problem``, from SimClockWatch).
    """
    age = None if status.last_sample_at is None else time.monotonic() - status.last_sample_at
    alarms = sample.status.alarms if sample is not None else ()
    level, reasons = (
        battery_findings(sample, settings) if sample is not None else (DiagnosticStatus.OK, [])
    )
    if status.state not in (LinkState.CONNECTED, LinkState.IN_TURN):
        level = DiagnosticStatus.ERROR
        message = f"link {status.state.name.lower()}"
        if status.last_error:
            message += f": {status.last_error}"
    elif age is None or age > settings.stale_timeout:
        level = DiagnosticStatus.WARN
        message = (
            "served in turn, no fresh sample"
            if status.state is LinkState.IN_TURN
            else "connected, no fresh sample"
        )
    elif reasons or alarms:
        level = max(level, DiagnosticStatus.WARN)
        message = "; ".join([*reasons, *(["alarms: " + ", ".join(alarms)] if alarms else [])])
    elif status.state is LinkState.IN_TURN:
        message = "receiving samples in turn"
    else:
        message = "receiving samples"
    if status.stretched_interval is not None:  # by design on a shared adapter: told, no WARN
        message += (
            f"; samples every {status.stretched_interval:.1f} s, not every "
            f"{settings.poll_interval:g} s: the shared adapter's turns take longer"
        )
    if clock_problem is not None:
        level = max(level, DiagnosticStatus.WARN)
        message += f"; {clock_problem}"
    to_empty, to_full = hours_left(sample) if sample is not None else (math.nan, math.nan)
    values = {
        "link_state": status.state.name.lower(),
        "schedule": status.schedule or "holds its own link",
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
        "time_to_empty_h": "n/a" if math.isnan(to_empty) else f"{to_empty:.2f}",
        "time_to_full_h": "n/a" if math.isnan(to_full) else f"{to_full:.2f}",
        "stamps": clock_problem or "ok",
        **{f"rejected_{reason}": str(count) for reason, count in sorted(status.rejected.items())},
    }
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=value) for key, value in values.items()],
    )
