r"""``daly-bms shell``: an interactive session: scan, connect, read, watch, services, reset.

Commands run one at a time against one connected BMS; BLE work happens in an asyncio thread so
Ctrl+C stops ``continuous`` without leaving the shell. Reads stdin lines too, so it can be
scripted (``printf 'connect\\njson\\nexit\\n' | daly-bms shell``).

It starts as the earlier standalone Raspberry Pi reader's shell did, so its users find what they
type: a scan first (a wired BMS: its port), connecting to the BMS the options name when
auto-connect is on; ``auto`` toggles it; one-letter commands (``s``, ``c``, ``d``, ``r``, ``h``,
``q``).
"""

from __future__ import annotations

import argparse
import cmd
import json
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from daly_bms_ros.cli.device import (
    add_device_arguments,
    add_poll_arguments,
    connect_client,
    positive_count,
    positive_seconds,
    transport_for,
)
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.cli.scan import FoundDevice, pick_target, scan
from daly_bms_ros.link.bleak_transport import BleakTransport, GattServiceInfo
from daly_bms_ros.link.client import DalyClient
from daly_bms_ros.link.loop_thread import EventLoopThread
from daly_bms_ros.link.transport import MAC_ADDRESS_PATTERN, BmsTransport, TransportError
from daly_bms_ros.protocol import BmsSample, DalyProtocolError
from daly_bms_ros.protocol.gatt import GATT_LAYOUTS, GattLayout
from daly_bms_ros.report import sample_record, text_report

T = TypeVar("T")

#: The one-letter commands of the earlier Pi reader's shell, and the commands they stand for.
ALIASES = {"s": "scan", "c": "connect", "d": "data", "r": "reset", "h": "help", "q": "exit"}


def target_of(arguments: argparse.Namespace) -> str:
    """Say which BMS the options name: what auto-connect connects to."""
    if arguments.serial_port:
        return f"the BMS on {arguments.serial_port}"
    if arguments.transport == "can":
        bus = f"{arguments.can_interface}:{arguments.can_channel}"
        return f"board {arguments.board} on the CAN bus {bus}"
    if arguments.mac or arguments.name:
        return " ".join(part for part in (arguments.name, arguments.mac) if part)
    return "the first Daly BMS seen"


def gatt_lines(services: list[GattServiceInfo], in_use: GattLayout) -> list[str]:
    """Lay out services and characteristics as lines; mark Daly's layouts and the one in use."""
    roles = {
        uuid: f"{layout.name} {role}{' (in use)' if layout == in_use else ''}"
        for layout in GATT_LAYOUTS
        for uuid, role in (
            (layout.service, "service"),
            (layout.notify, "answers"),
            (layout.write, "requests"),
        )
    }
    lines = []
    for service in services:
        role = roles.get(service.uuid)
        lines.append(
            f"service {service.uuid}  {service.description}" + (f"  [{role}]" if role else "")
        )
        for characteristic in service.characteristics:
            role = roles.get(characteristic.uuid)
            lines.append(
                f"  {characteristic.uuid}  {', '.join(characteristic.properties)}"
                + (f"  [{role}]" if role else "")
            )
    return lines


class DalyShell(cmd.Cmd):
    """The command interpreter; ``help <command>`` prints each command's docstring."""

    intro = None  # start() tells it, before the first scan
    prompt = "daly> "

    def __init__(self, arguments: argparse.Namespace) -> None:
        super().__init__()
        self.arguments = arguments
        self._loop = EventLoopThread("daly_bms_shell")
        self._loop.start()
        self._client: DalyClient | None = None
        self._found: list[FoundDevice] = []
        self._last_sample: BmsSample | None = None
        #: Connect at start and again after a drop (the earlier reader's default: on).
        self.auto_connect: bool = arguments.auto_connect

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T | None:
        """Run BLE work in the loop thread; print a failure instead of raising it."""
        try:
            return self._loop.submit(coroutine).result()
        except (TransportError, DalyProtocolError) as error:
            self._print(f"error: {error}")
            return None

    def _print(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def _transport(self, argument: str) -> BmsTransport:
        """Build the link to the BMS ``connect`` names: a scan's number, a MAC or a name.

        Without one, the BMS the options name (``transport_for``): the --serial-port given,
        else Bluetooth, as every other command reaches it.
        """
        argument = argument.strip()
        if not argument:
            return transport_for(self.arguments)
        mac, name = "", argument
        if argument.isascii() and argument.isdigit() and 1 <= int(argument) <= len(self._found):
            mac, name = self._found[int(argument) - 1].address, ""
        elif MAC_ADDRESS_PATTERN.fullmatch(argument):
            mac, name = argument.upper(), ""
        return BleakTransport(mac, name, self.arguments.adapter, self.arguments.timeout)

    def _connected_client(self) -> DalyClient | None:
        """Return the connected client; after a drop, with auto-connect on, connect again."""
        client = self._client
        if client is not None and not client.transport.is_connected and self.auto_connect:
            self._print(f"link to {client.transport.description} lost: reconnecting (auto)")
            self._connect(client.transport)
            client = self._client
        if client is None or not client.transport.is_connected:
            self._print("not connected: use connect first")
            return None
        return client

    def _connect(self, transport: BmsTransport) -> None:
        self._disconnect()
        client = self._run(connect_client(transport, self.arguments))
        if client is not None:
            self._client = client
            self._print(f"connected to {client.transport.description}")

    def _read(self) -> BmsSample | None:
        client = self._connected_client()
        if client is None:
            return None
        sample = self._run(client.read_sample())
        if sample is not None:
            self._last_sample = sample
        return sample

    def _disconnect(self) -> None:
        if self._client is not None:
            self._run(self._client.transport.disconnect())
            self._client = None

    def _target_line(self) -> str:
        state = "on" if self.auto_connect else "off"
        return f"target: {target_of(self.arguments)}; auto-connect {state}"

    def start(self) -> None:
        """Tell the target, then scan; with auto-connect on, connect to the target.

        A wired BMS is not scanned for: its port (or its CAN bus and board) is the target.
        """
        self._print("Daly BMS shell. Type help (h) for the commands, exit (q) to leave.")
        self._print(self._target_line())
        if self.arguments.serial_port or self.arguments.transport == "can":
            if self.auto_connect:
                self._connect(transport_for(self.arguments))
            return
        self.do_scan("")
        if not self.auto_connect or not self._found:
            return
        target = pick_target(self._found, self.arguments.mac, self.arguments.name)
        if target is None:
            self._print(
                f"{target_of(self.arguments)} was not among them: connect when it is in range"
            )
            return
        self._connect(
            BleakTransport(target.address, "", self.arguments.adapter, self.arguments.timeout)
        )

    def precmd(self, line: str) -> str:
        """Expand a one-letter command (s, c, d, r, h, q) to its command."""
        command, _space, rest = line.strip().partition(" ")
        return f"{ALIASES[command]} {rest}" if command in ALIASES else line

    def do_scan(self, _argument: str) -> None:
        """List the Daly BMS in range, numbered for connect. Usage: scan (or s)."""
        found = self._run(scan(self.arguments.adapter, self.arguments.timeout))
        if found is None:
            return
        self._found = found
        for number, device in enumerate(found, start=1):
            self._print(f"{number}. {device.address}  {device.rssi:>4} dBm  {device.name}")
        if not found:
            self._print("no Daly BMS seen")

    def do_connect(self, argument: str) -> None:
        """Connect to a BMS. Usage: connect [NUMBER|MAC|NAME] (or c).

        Without an argument: the --serial-port given, else the --mac/--name given, else the
        first DL- device.
        """
        self._disconnect()
        self._connect(self._transport(argument))

    def do_auto(self, _argument: str) -> None:
        """Turn auto-connect on or off. Usage: auto.

        On: the shell connects to the target at start and, after the link drops, again before
        the next command that needs the BMS.
        """
        self.auto_connect = not self.auto_connect
        self._print(f"auto-connect {'on' if self.auto_connect else 'off'}")

    def do_services(self, _argument: str) -> None:
        """List the BMS's BLE services and characteristics with their properties. Usage: services.

        Shows which GATT layout the BMS has (fff0 or ff00) and which one answers; for a wired
        BMS, the port.
        """
        client = self._connected_client()
        if client is None:
            return
        transport = client.transport
        if not isinstance(transport, BleakTransport):
            self._print(
                f"{transport.description}: a wire ({transport.details['transport']}), no "
                "Bluetooth services; protocol "
                f"{client.protocol or 'not known yet (read once)'}"
            )
            return
        try:
            services = transport.gatt_table()
        except TransportError as error:
            self._print(f"error: {error}")
            return
        for line in gatt_lines(services, transport.layout):
            self._print(line)

    def do_data(self, _argument: str) -> None:
        """Read one sample and print it as a table. Usage: data (or d)."""
        sample = self._read()
        if sample is not None:
            self._print(text_report(sample))

    def do_json(self, _argument: str) -> None:
        """Read one sample and print it as one JSON object. Usage: json."""
        sample = self._read()
        if sample is not None:
            self._print(json.dumps(sample_record(sample)))

    def do_status(self, _argument: str) -> None:
        """Show connection, counters, rejected frames, last sample age. Usage: status."""
        client = self._client
        connected = client is not None and client.transport.is_connected
        self._print(
            f"connected: {'yes, ' + client.transport.description if client and connected else 'no'}"
        )
        self._print(self._target_line())
        if client is not None:
            rejected = {reason.value: n for reason, n in client.rejected.items() if n}
            self._print(f"requests: {client.requests}, unanswered: {client.timeouts}")
            self._print(f"rejected frames: {rejected or 'none'}")
        if self._last_sample is not None:
            self._print(f"last sample: {time.time() - self._last_sample.received_at:.1f} s ago")

    def do_continuous(self, argument: str) -> None:
        """Print a JSON line per read until Ctrl+C. Usage: continuous [INTERVAL [COUNT]]."""
        words = argument.split()
        try:
            interval = positive_seconds(words[0]) if words else self.arguments.interval
            count = positive_count(words[1]) if len(words) > 1 else 0
        except argparse.ArgumentTypeError as error:
            self._print(f"{error}; usage: continuous [INTERVAL_SECONDS [COUNT]]")
            return
        done = 0
        try:
            while not count or done < count:
                sample = self._read()
                if sample is None:
                    return
                self._print(json.dumps(sample_record(sample)))
                done += 1
                if not count or done < count:
                    time.sleep(interval)
        except KeyboardInterrupt:
            self._print("stopped")

    def do_reset(self, _argument: str) -> None:
        """Disconnect, forget the scan results and the last sample. Usage: reset (or r)."""
        self._disconnect()
        self._found = []
        self._last_sample = None
        self._print("reset")

    def do_exit(self, _argument: str) -> bool:
        """Disconnect and leave. Usage: exit (or quit, q)."""
        self._disconnect()
        return True

    do_quit = do_exit

    def do_EOF(self, argument: str) -> bool:  # noqa: N802 (cmd's name for end of input)
        """End of input: leave like exit."""
        return self.do_exit(argument)

    def emptyline(self) -> bool:
        """Do nothing on an empty line (instead of repeating the last command)."""
        return False

    def default(self, line: str) -> None:
        """Name the unknown command and where the list is."""
        self._print(f"unknown command {line.split()[0]!r}: type help for the commands")

    def close(self) -> None:
        """Disconnect and stop the loop thread."""
        self._disconnect()
        self._loop.stop(5.0)


def add_parser(subparsers: Any) -> None:
    """Register the ``shell`` subcommand."""
    parser = subparsers.add_parser("shell", help="interactive shell")
    add_device_arguments(parser)
    add_poll_arguments(parser)
    parser.add_argument(
        "--no-auto-connect",
        dest="auto_connect",
        action="store_false",
        help="start with auto-connect off: scan, but connect only when told (auto turns it on)",
    )
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Run the shell until exit or end of input."""
    shell = DalyShell(arguments)
    try:
        shell.start()
        shell.cmdloop()
    except KeyboardInterrupt:
        pass
    finally:
        shell.close()
    return ExitCode.OK
