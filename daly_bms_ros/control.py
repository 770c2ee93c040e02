"""The rules every write to a BMS passes, whoever asks (ROS service, CLI): one place for safety.

Nothing is written unless the user allowed control (the node's ``allow_control``, the CLI's
``--allow-control``); what can cut the power the pack supplies (the discharge MOSFET off, a
restart) needs an explicit confirmation besides; every write is logged with who asked, what,
and the value before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

from daly_bms_ros.link.client import ReadBackMismatchError, WriteResult
from daly_bms_ros.protocol.registers import WRITABLE, encode_writable

#: Writes that cannot cut the power the pack supplies, as (setting, raw value; None: any):
#: the charge MOSFET, the balancer, the SOC counter and the rated capacity, and switching the
#: discharge MOSFET on. Every other write needs a confirmation: the discharge MOSFET off and a
#: restart cut the output, and a protection threshold, a cell count or the sleep time set
#: wrong can make the BMS cut it.
SAFE_WRITES: frozenset[tuple[str, int | None]] = frozenset(
    {
        ("charge_switch", None),
        ("balancer_switch", None),
        ("soc_setting", None),
        ("rated_capacity", None),
        ("discharge_switch", 1),
    }
)


class ControlRefusedError(Exception):
    """A write that the rules do not allow; the message says why and what would allow it."""


@dataclass(frozen=True)
class Permission:
    """How a user of one interface allows control, and confirms a power cut, for messages."""

    allow: str
    confirm: str


def check_write(
    name: str, value: float, allowed: bool, confirmed: bool, permission: Permission
) -> int:
    """Return the raw value to write, or raise why writing ``value`` into ``name`` is refused.

    ControlRefusedError when control is off or a write that can cut the power is not
    confirmed; ValueError for a name or value the setting does not take (before anything is
    sent). The check is made on the value as it will be stored, after rounding.
    """
    if not allowed:
        raise ControlRefusedError(
            f"writing {name} is refused: control of the BMS is off; {permission.allow} "
            "allows writes"
        )
    raw = encode_writable(name, value)
    if not confirmed and not {(name, None), (name, raw)} & SAFE_WRITES:
        raise ControlRefusedError(
            f"writing {name} = {value:g} is refused without confirmation: it can cut the power "
            f"the pack supplies, the robot's included, or make the BMS cut it; "
            f"{permission.confirm} to go ahead"
        )
    return raw


def describe_write(requester: str, result: WriteResult) -> str:
    """Return the log line of a write that took: who, what, the value before and after."""
    writable = WRITABLE[result.name]
    who = requester or "an unnamed requester"
    if not writable.readable:  # a command: no value before or after, only its acknowledgement
        return (
            f"command by {who}: {result.name} sent and echoed (register 0x{result.address:04X} "
            f"= {result.written}; a command is not read back)"
        )
    before = "unknown" if result.before is None else f"{result.before:g}"
    # A D2 write is acknowledged by its echo, an A5 switch by an answer of its own.
    acknowledge = "answer" if result.protocol == "a5" else "echo"
    if result.acknowledged:
        proof = f"{acknowledge}ed and read back"
    else:
        proof = f"read back; the BMS did not {acknowledge} it as sent"
    return (
        f"write by {who}: {result.name} {before} -> "
        f"{result.after:g} {writable.register.unit}".rstrip()
        + f" ({result.target}, {proof})"
    )


def describe_failure(error: Exception) -> str:
    """Return why a write failed, with what the BMS holds where it was read back."""
    result = getattr(error, "result", None)
    if result is None or isinstance(error, ReadBackMismatchError):
        return str(error)
    return f"{error}; {result.name} reads {result.after:g} now"
