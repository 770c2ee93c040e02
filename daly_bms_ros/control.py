"""The rules every write to a BMS passes, whoever asks (ROS service, CLI): one place for safety.

Nothing is written unless the user allowed control (the node's ``allow_control``, the CLI's
``--allow-control``); what can cut the power the pack supplies (the discharge MOSFET off, a
restart) needs an explicit confirmation besides; every write is logged with who asked, what,
and the value before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

from daly_bms_ros.ble.client import WriteResult
from daly_bms_ros.protocol.registers import WRITABLE

#: Settings (name, value) whose write can cut the power of what the pack supplies.
POWER_CUTTING = {("discharge_switch", 0.0), ("restart", 1.0)}


class ControlRefusedError(Exception):
    """A write that the rules do not allow; the message says why and what would allow it."""


@dataclass(frozen=True)
class Permission:
    """How a user of one interface allows control, and confirms a power cut, for messages."""

    allow: str
    confirm: str


def check_write(
    name: str, value: float, allowed: bool, confirmed: bool, permission: Permission
) -> None:
    """Raise ControlRefusedError unless writing ``value`` into ``name`` is allowed now.

    A name or value the setting does not take is refused later, by the client, with the
    allowed range.
    """
    if not allowed:
        raise ControlRefusedError(
            f"writing {name} is refused: control of the BMS is off; {permission.allow} "
            "allows writes"
        )
    if (name, float(value)) in POWER_CUTTING and not confirmed:
        raise ControlRefusedError(
            f"writing {name} = {value:g} is refused without confirmation: it can cut the power "
            f"the pack supplies, the robot's included; {permission.confirm} to go ahead"
        )


def describe_write(requester: str, result: WriteResult) -> str:
    """One log line of a write that took: who, what, the value before and after."""
    unit = WRITABLE[result.name].register.unit
    before = "unknown" if result.before is None else f"{result.before:g}"
    return (
        f"write by {requester or 'an unnamed requester'}: {result.name} {before} -> "
        f"{result.after:g} {unit}".rstrip()
        + f" (register 0x{result.address:04X}, echoed and read back)"
    )
