"""``daly-bms set NAME VALUE --allow-control``: write one setting, verified by reading it back.

Names: ``charge-mos``, ``discharge-mos`` and ``balancing`` (``on``/``off``), ``soc`` (percent), and
every setting of ``daly-bms settings`` (``sleep-time 3600``, ``rated-capacity 100``…; ``restart
1``). Nothing is written without ``--allow-control``; switching the discharge MOSFET off or a
restart also needs ``--confirm-power-cut``. A write whose link drops before it is read back is
read back over a new connection. Exit status: 0 the BMS holds the value written, 2 a name or
value not allowed, 7 refused (control not allowed or not confirmed), 8 not acknowledged by the
BMS and not held, 9 acknowledged but another value read back, 10 sent but not proven (the link
went and did not come back, or a command was not acknowledged); 6 the link failed before the
write was sent; else as for ``read``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from daly_bms_ros.cli.device import add_device_arguments, connected, run_on_link
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.control import ControlRefusedError, Permission, check_write, describe_write
from daly_bms_ros.link.client import WriteFailedError, WriteOutcomeUnknownError, WriteResult
from daly_bms_ros.link.transport import TransportError
from daly_bms_ros.protocol import DalyProtocolError
from daly_bms_ros.protocol.registers import WRITABLE

#: Short names of the controls a user reaches for most, and the setting each one writes.
ALIASES = {
    "charge-mos": "charge_switch",
    "discharge-mos": "discharge_switch",
    "balancing": "balancer_switch",
    "soc": "soc_setting",
}
SWITCH_WORDS = {"on": 1.0, "off": 0.0}
HOW_TO_ALLOW = Permission("--allow-control", "--confirm-power-cut")


def setting_name(text: str) -> str:
    """Return the setting a command-line name stands for (an alias, dashes for underscores)."""
    return ALIASES.get(text, text.replace("-", "_"))


def setting_value(text: str) -> float:
    """Return a value: on/off for a switch, else a number in the setting's unit."""
    if text.lower() in SWITCH_WORDS:
        return SWITCH_WORDS[text.lower()]
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number, on or off") from None


def add_parser(subparsers: Any) -> None:
    """Register the ``set`` subcommand."""
    parser = subparsers.add_parser(
        "set", help="write one setting of the BMS (needs --allow-control)", description=__doc__
    )
    add_device_arguments(parser)
    parser.add_argument("setting", help="charge-mos, discharge-mos, balancing, soc, or a setting")
    parser.add_argument("value", type=setting_value, help="on, off, or a number in its unit")
    parser.add_argument(
        "--allow-control", action="store_true", help="allow writing to the BMS (else refused)"
    )
    parser.add_argument(
        "--confirm-power-cut",
        action="store_true",
        help="confirm a write that can cut the pack's power (discharge-mos off, restart)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Check, write, report; the exit status tells what happened."""
    name = setting_name(arguments.setting)
    if name not in WRITABLE:
        settings = ", ".join(sorted([*ALIASES, *(n.replace("_", "-") for n in WRITABLE)]))
        print(
            f"daly-bms: no setting {arguments.setting!r}; settings are {settings}", file=sys.stderr
        )
        return ExitCode.USAGE
    try:
        check_write(name, arguments.value, arguments.allow_control, arguments.confirm_power_cut,
                    HOW_TO_ALLOW)  # fmt: skip
    except ControlRefusedError as error:
        print(f"daly-bms: {error}", file=sys.stderr)
        return ExitCode.REFUSED
    except ValueError as error:  # before anything is sent
        print(f"daly-bms: {error}", file=sys.stderr)
        return ExitCode.USAGE

    async def write() -> WriteResult:
        async with connected(arguments) as client:
            try:
                return await client.write_register(name, arguments.value)
            except WriteOutcomeUnknownError as error:
                if not WRITABLE[name].readable:
                    raise  # a command: nothing to read back over a new link
                unknown = error
        # The link went after the write was sent: what the BMS holds, over a new link.
        try:
            async with connected(arguments) as client:
                return await client.verify_write(unknown)
        except WriteFailedError:
            raise  # read back: the BMS does not hold it
        except (TransportError, DalyProtocolError) as error:
            raise unknown from error

    result = run_on_link(write)
    if isinstance(result, ExitCode):
        return result
    if arguments.json:
        unit = WRITABLE[name].register.unit
        print(json.dumps({"setting": name, "before": result.before, "after": result.after,
                          "unit": unit}))  # fmt: skip
    else:
        print(describe_write(getpass.getuser(), result))
    return ExitCode.OK
