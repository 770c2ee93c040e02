"""What ``daly-bms doctor`` checks of this machine, each saying what it found and what to do.

BlueZ, the adapter, permissions, a serial port, and the ROS environment.

These are the manual checks of the earlier Raspberry Pi reader's troubleshooting section
(``systemctl status bluetooth``, ``hciconfig``, ``groups``; onlinecodewithme/robot-bms-api-service,
README.md) made into code: BlueZ is asked over the system D-Bus, as bleak asks it (its
org.bluez.Adapter1 objects, BlueZ's doc/org.bluez.Adapter.rst), and the kernel's rfkill state is
read from /sys/class/rfkill (Linux's Documentation/ABI/stable/sysfs-class-rfkill).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import grp
import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, InvalidAddressError

from daly_bms_ros.cli.exit_codes import ExitCode

BLUEZ = "org.bluez"
ADAPTER_INTERFACE = "org.bluez.Adapter1"
#: Where the kernel lists its radio switches, one directory each with type, name, soft, hard.
RFKILL = Path("/sys/class/rfkill")
#: The groups that own Bluetooth and serial ports on Debian, Ubuntu and Raspberry Pi OS.
BLUETOOTH_GROUP = "bluetooth"
#: The highest ROS_DOMAIN_ID ROS 2 takes (its "The ROS_DOMAIN_ID" concept page: 0..232 on
#: Linux, 0..101 leaving room for the ports of many participants).
MAX_DOMAIN_ID = 232


class Outcome(enum.Enum):
    """How a check went."""

    OK = "ok"
    #: Works, but something may bite (a weak signal, a port also open elsewhere).
    WARN = "warn"
    FAIL = "fail"
    #: Not run: an earlier check it needs failed.
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Finding:
    """One check: what it found and, when something is wrong, what to do."""

    check: str
    outcome: Outcome
    found: str
    advice: str = ""
    #: The exit status when this is the first check that failed.
    code: ExitCode = ExitCode.OK
    details: Mapping[str, object] = field(default_factory=dict)


def account_name(uid: int) -> str:
    """Return the name of user ``uid`` (its number where it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def user_name() -> str:
    """Return the name of the user this runs as."""
    return account_name(os.geteuid())


def in_group(gid: int) -> bool:
    """Whether this process has group ``gid`` (primary or supplementary)."""
    return gid == os.getegid() or gid in os.getgroups()


def group_name(gid: int) -> str:
    """Return the name of group ``gid`` (its number where it has none)."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@dataclass(frozen=True)
class Adapter:
    """A Bluetooth adapter as BlueZ tells it."""

    name: str
    address: str
    powered: bool


def rfkill_blocks(adapter: str) -> list[str]:
    """Return how the kernel blocks Bluetooth for ``adapter``: "soft", "hard", both or none.

    A switch counts when it is of type bluetooth and is the adapter's own (named after it) or
    the platform's (named otherwise, e.g. a laptop's "tpacpi_bluetooth_sw").
    """
    blocks: set[str] = set()
    with contextlib.suppress(OSError):
        for switch in RFKILL.iterdir():
            try:
                if (switch / "type").read_text().strip() != "bluetooth":
                    continue
                name = (switch / "name").read_text().strip()
                if name.startswith("hci") and name != adapter:
                    continue
                blocks.update(
                    kind for kind in ("soft", "hard") if (switch / kind).read_text().strip() == "1"
                )
            except OSError:
                continue
    return sorted(blocks)


async def _call(bus: MessageBus, message: Message) -> Message:
    reply = await bus.call(message)
    assert reply is not None  # a method call that expects a reply gets one
    return reply


def bluez_permission_advice() -> str:
    """Say what 'Permission denied' from BlueZ means, and how this user gets the right."""
    return (
        "'Permission denied' (AccessDenied) is the D-Bus policy of "
        "/etc/dbus-1/system.d/bluetooth.conf: it lets root and the bluetooth group call BlueZ. "
        f"sudo usermod -aG {BLUETOOTH_GROUP} {user_name()}, then log in again (a systemd unit: "
        f"SupplementaryGroups={BLUETOOTH_GROUP})"
    )


def _bluetooth_group_note() -> str:
    try:
        group = grp.getgrnam(BLUETOOTH_GROUP)
    except KeyError:
        return f"this system has no {BLUETOOTH_GROUP} group"
    member = in_group(group.gr_gid)
    return f"{user_name()} is {'' if member else 'not '}in the {BLUETOOTH_GROUP} group"


async def bluez_findings(adapter_name: str) -> tuple[list[Finding], Adapter | None]:
    """Check BlueZ on the system bus, the user's right to call it, and the adapter.

    Stops at the first failure; returns the findings and, when all passed, the adapter to use.
    """
    try:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    except (OSError, EOFError, AuthError, InvalidAddressError) as error:
        address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")
        return [
            Finding(
                "bluez",
                Outcome.FAIL,
                f"the system D-Bus ({address}) is not reachable: {error or type(error).__name__}",
                "BlueZ is reached over the system D-Bus: is dbus running (systemctl status dbus)? "
                "In a container, mount /run/dbus/system_bus_socket into it",
                ExitCode.NO_BLUETOOTH,
            )
        ], None
    try:
        return await _bluez_on(bus, adapter_name)
    finally:
        bus.disconnect()


async def _bluez_on(bus: MessageBus, adapter_name: str) -> tuple[list[Finding], Adapter | None]:
    owned = await _call(
        bus,
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="NameHasOwner",
            signature="s",
            body=[BLUEZ],
        ),
    )
    if owned.message_type is MessageType.ERROR or not owned.body[0]:
        return [
            Finding(
                "bluez",
                Outcome.FAIL,
                "BlueZ is not running: nothing serves org.bluez on the system bus",
                "sudo systemctl enable --now bluetooth (systemctl status bluetooth and journalctl "
                "-u bluetooth say why it stopped); Debian and Ubuntu package it as bluez",
                ExitCode.NO_BLUETOOTH,
            )
        ], None
    findings = [Finding("bluez", Outcome.OK, "BlueZ (org.bluez) is on the system bus")]
    objects = await _call(
        bus,
        Message(
            destination=BLUEZ,
            path="/",
            interface="org.freedesktop.DBus.ObjectManager",
            member="GetManagedObjects",
        ),
    )
    if objects.message_type is MessageType.ERROR:
        denied = objects.error_name == "org.freedesktop.DBus.Error.AccessDenied"
        findings.append(
            Finding(
                "permission",
                Outcome.FAIL,
                f"BlueZ refused {user_name()}'s call ({objects.error_name}: "
                # D-Bus's text goes on with the rule's details: its first words say enough.
                f"{str(objects.body[0]).split(',', 1)[0] if objects.body else ''}); "
                f"{_bluetooth_group_note()}",
                bluez_permission_advice()
                if denied
                else "sudo systemctl restart bluetooth; journalctl -u bluetooth tells its errors",
                ExitCode.PERMISSION_DENIED if denied else ExitCode.NO_BLUETOOTH,
            )
        )
        return findings, None
    findings.append(
        Finding(
            "permission",
            Outcome.OK,
            f"BlueZ takes {user_name()}'s calls ({_bluetooth_group_note()})",
        )
    )
    adapters = sorted(
        (
            Adapter(
                path.rsplit("/", 1)[-1],
                str(interfaces[ADAPTER_INTERFACE]["Address"].value),
                bool(interfaces[ADAPTER_INTERFACE]["Powered"].value),
            )
            for path, interfaces in objects.body[0].items()
            if ADAPTER_INTERFACE in interfaces
        ),
        key=lambda adapter: adapter.name,
    )
    finding, adapter = adapter_finding(adapters, adapter_name)
    findings.append(finding)
    return findings, adapter


def adapter_finding(adapters: list[Adapter], wanted: str) -> tuple[Finding, Adapter | None]:
    """Check that the adapter (``wanted``, else the first) is there, unblocked and powered."""
    names = ", ".join(adapter.name for adapter in adapters)
    if not adapters:
        return Finding(
            "adapter",
            Outcome.FAIL,
            "BlueZ has no Bluetooth adapter (hciconfig would list none)",
            "a USB adapter unplugged, or a built-in one turned off (Raspberry Pi: "
            "dtoverlay=disable-bt in config.txt); dmesg | grep -i bluetooth tells what the "
            "kernel saw",
            ExitCode.NO_BLUETOOTH,
        ), None
    adapter = next((a for a in adapters if a.name == wanted), None) if wanted else adapters[0]
    if adapter is None:
        return Finding(
            "adapter",
            Outcome.FAIL,
            f"no adapter {wanted}; BlueZ has {names}",
            f"--adapter {adapters[0].name} (or leave --adapter out for the first)",
            ExitCode.NO_BLUETOOTH,
        ), None
    where = f"{adapter.name} ({adapter.address})"
    details = {"adapter": adapter.name, "address": adapter.address, "powered": adapter.powered}
    blocks = rfkill_blocks(adapter.name)
    if blocks:
        return Finding(
            "adapter",
            Outcome.FAIL,
            f"{where} is blocked by rfkill ({' and '.join(blocks)})",
            "a hard block is a switch or the firmware: turn the radio on there"
            if "hard" in blocks
            else "sudo rfkill unblock bluetooth",
            ExitCode.ADAPTER_OFF,
            {**details, "rfkill": blocks},
        ), None
    if not adapter.powered:
        return Finding(
            "adapter",
            Outcome.FAIL,
            f"{where} is powered off (not blocked by rfkill)",
            f"bluetoothctl power on (or sudo hciconfig {adapter.name} up); AutoEnable=true in "
            "/etc/bluetooth/main.conf powers it at boot",
            ExitCode.ADAPTER_OFF,
            details,
        ), None
    return Finding(
        "adapter", Outcome.OK, f"{where} is present and powered, not blocked by rfkill", "",
        ExitCode.OK, details,
    ), adapter  # fmt: skip


def _holders(path: str) -> list[str]:
    """Return the other processes that have ``path`` open ("1234 ModemManager"), where visible.

    An unprivileged user sees only their own processes' descriptors.
    """
    target = os.path.realpath(path)
    holders = []
    for pid in (entry for entry in os.listdir("/proc") if entry.isdigit()):
        if int(pid) == os.getpid():
            continue
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in descriptors):
                holders.append(f"{pid} {Path(f'/proc/{pid}/comm').read_text().strip()}")
        except OSError:
            continue
    return holders


def serial_findings(port: str) -> list[Finding]:
    """Check that ``port`` exists, that this user may open it, and that nobody else holds it.

    Stops at the first failure.
    """
    try:
        info = os.stat(port)
    except OSError as error:
        return [
            Finding(
                "serial_port",
                Outcome.FAIL,
                f"no serial port {port} ({error.strerror})",
                "is the adapter plugged in? ls -l /dev/serial/by-id/ names USB adapters; "
                "daly-bms scan --serial asks every port",
                ExitCode.NOT_FOUND,
            )
        ]
    group = group_name(info.st_gid)
    owner = f"{account_name(info.st_uid)}:{group}"
    mode = stat.S_IMODE(info.st_mode)
    facts = {"port": port, "device": os.path.realpath(port), "owner": owner, "mode": f"{mode:04o}"}
    findings = [
        Finding(
            "serial_port",
            Outcome.OK,
            f"{port}{'' if facts['device'] == port else ' (' + facts['device'] + ')'} exists, "
            f"owner {owner}, mode {mode:04o}",
            details=facts,
        )
    ]
    try:
        descriptor = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        member = in_group(info.st_gid)
        findings.append(
            Finding(
                "serial_permission",
                Outcome.FAIL,
                f"{user_name()} may not open {port} (Permission denied): it is {owner}, mode "
                f"{mode:04o}, and {user_name()} is {'' if member else 'not '}in group {group}",
                (
                    f"sudo usermod -aG {group} {user_name()}, then log in again (a systemd "
                    f"unit: SupplementaryGroups={group})"
                )
                if not member
                else f"the port's mode lets its group no read and write: a udev rule with "
                f'GROUP="{group}", MODE="0660" gives it',
                ExitCode.PERMISSION_DENIED,
            )
        )
        return findings
    except OSError as error:
        findings.append(
            Finding(
                "serial_permission",
                Outcome.FAIL,
                f"{port} cannot be opened: {error.strerror}",
                "unplug and plug the adapter in again; dmesg tells what the driver says",
                ExitCode.LINK_LOST,
            )
        )
        return findings
    try:
        findings.append(Finding("serial_permission", Outcome.OK, f"{user_name()} may open {port}"))
        findings.append(_busy_finding(port, descriptor))
    finally:
        os.close(descriptor)
    return findings


def _busy_finding(port: str, descriptor: int) -> Finding:
    """Whether another reader holds the port: the lock pyserial's exclusive mode takes."""
    holders = _holders(port)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return Finding(
            "serial_busy",
            Outcome.FAIL,
            f"another process holds {port} (locked"
            + (f"; open in {', '.join(holders)})" if holders else ")"),
            "one reader per port: stop the other one (e.g. sudo systemctl stop daly-bms-serve "
            "daly-bms-node) or read through it",
            ExitCode.PORT_BUSY,
            {"holders": holders},
        )
    fcntl.flock(descriptor, fcntl.LOCK_UN)
    if holders:
        return Finding(
            "serial_busy",
            Outcome.WARN,
            f"{port} is also open in {', '.join(holders)}",
            "if one of them reads it, it takes the BMS's answers: close it. ModemManager probes "
            "new serial ports (sudo systemctl disable --now ModemManager, or udev's "
            'ENV{ID_MM_DEVICE_IGNORE}="1")',
            details={"holders": holders},
        )
    return Finding("serial_busy", Outcome.OK, f"no other process holds {port}")


def ros_finding(environment: Mapping[str, str]) -> Finding:
    """Say whether other machines see the topics, from the environment ROS 2 reads at start.

    ROS 2 (Jazzy and later) discovers peers as ROS_AUTOMATIC_DISCOVERY_RANGE says: SUBNET by
    default, LOCALHOST, OFF or SYSTEM_DEFAULT; only participants of one ROS_DOMAIN_ID (default
    0) talk (ROS 2 documentation, "Improved Dynamic Discovery" and "The ROS_DOMAIN_ID").
    """
    domain_text = environment.get("ROS_DOMAIN_ID", "")
    discovery = environment.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "") or "SUBNET (the default)"
    peers = environment.get("ROS_STATIC_PEERS", "")
    domain = domain_text or "0 (the default)"
    details = {"ROS_DOMAIN_ID": domain_text or None, "ROS_AUTOMATIC_DISCOVERY_RANGE": discovery}
    if domain_text and not (domain_text.isdigit() and int(domain_text) <= MAX_DOMAIN_ID):
        return Finding(
            "ros",
            Outcome.WARN,
            f"ROS_DOMAIN_ID={domain_text!r} is no domain (0..{MAX_DOMAIN_ID}): ROS nodes do not "
            "start with it",
            "export ROS_DOMAIN_ID=<the robot's domain, e.g. 0> on every machine",
            details=details,
        )
    if discovery.startswith(("LOCALHOST", "OFF")):
        return Finding(
            "ros",
            Outcome.WARN,
            f"ROS_DOMAIN_ID {domain}, discovery {discovery}: other machines do not see the "
            "topics" + (f" (but the static peers {peers})" if peers else ""),
            "unset ROS_AUTOMATIC_DISCOVERY_RANGE (or SUBNET) where other machines must see "
            "them, with the same ROS_DOMAIN_ID on each",
            details=details,
        )
    localhost_only = environment.get("ROS_LOCALHOST_ONLY")
    note = (
        "; ROS_LOCALHOST_ONLY is set: deprecated since Jazzy, ignored by Kilted "
        "(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST replaces it)"
        if localhost_only
        else ""
    )
    return Finding(
        "ros",
        Outcome.OK,
        f"ROS_DOMAIN_ID {domain}, discovery {discovery}: machines on this subnet with the same "
        f"domain see the topics (multicast; without it, ROS_STATIC_PEERS){note}",
        details=details,
    )
