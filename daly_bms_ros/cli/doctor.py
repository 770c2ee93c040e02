"""``daly-bms doctor``: find what keeps the BMS from being read, and say what to do about it.

It runs, in order, what a reading needs, and stops at the first failure (the later checks are
reported as skipped): over Bluetooth, BlueZ on the system bus, the user's right to call it, the
adapter (present, powered, not blocked by rfkill), a Daly BMS advertising, a connection and a
subscription to its answers, an answer; for a wired BMS, the port, the right to open it, nobody
else holding it, an answer. The ROS environment that decides who sees the topics is told
beside. Exit status 0 when a sample was read, else the first failing check's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict
from typing import Any

from daly_bms_ros.cli.device import add_device_arguments, connect_client
from daly_bms_ros.cli.doctor_system import (
    Finding,
    Outcome,
    bluez_findings,
    bluez_permission_advice,
    ros_finding,
    serial_findings,
)
from daly_bms_ros.cli.exit_codes import ExitCode, exit_code_for
from daly_bms_ros.cli.scan import FoundDevice, pick_target, scan
from daly_bms_ros.control import describe_failure
from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.link.client import DalyClient, RequestTimeoutError
from daly_bms_ros.link.serial_transport import SerialTransport
from daly_bms_ros.link.transport import BmsTransport, TransportError
from daly_bms_ros.protocol import DalyProtocolError
from daly_bms_ros.report import sample_record

#: Below this signal a BLE link drops and misses answers often enough to matter (BLE receivers
#: are specified down to -70 dBm, Bluetooth Core 5.x Vol 6 Part A 4.1; good ones reach about
#: -95 dBm, and the last 10 dB are where connections fail).
WEAK_SIGNAL_DBM = -85
#: The checks of each kind of link, in the order they run.
BLE_CHECKS = ("bluez", "permission", "adapter", "advertising", "connection", "answer")
SERIAL_CHECKS = ("serial_port", "serial_permission", "serial_busy", "connection", "answer")
MARKS = {Outcome.OK: "ok", Outcome.WARN: "warn", Outcome.FAIL: "FAIL", Outcome.SKIPPED: "skip"}


def advertising_finding(
    found: list[FoundDevice], arguments: argparse.Namespace
) -> tuple[Finding, FoundDevice | None]:
    """Say which Daly BMS advertise, and which one the options name; move closer when weak."""
    seen = [f"{device.name or '?'} ({device.address}) at {device.rssi} dBm" for device in found]
    details = {"seen": [asdict(device) for device in found]}
    target = pick_target(found, arguments.mac, arguments.name)
    if target is None:
        named = " ".join(part for part in (arguments.name, arguments.mac) if part)
        return Finding(
            "advertising",
            Outcome.FAIL,
            f"{named} is not advertising; seen: {'; '.join(seen)}"
            if found
            else f"no Daly BMS advertising within {arguments.timeout:g} s",
            "check --mac and --name against those seen (the name is DL- and the address's digits)"
            if found
            else "is it powered and awake (a load or a charger wakes it)? A BMS stops "
            "advertising while a central holds it: close the phone app and other readers. "
            "Move closer; a longer --timeout",
            ExitCode.NOT_FOUND,
            details,
        ), None
    where = f"{target.name or '?'} ({target.address}) at {target.rssi} dBm"
    others = f"; also seen: {'; '.join(s for s in seen if s != where)}" if len(found) > 1 else ""
    if target.rssi < WEAK_SIGNAL_DBM:
        return Finding(
            "advertising",
            Outcome.WARN,
            f"{where}: a weak signal, below {WEAK_SIGNAL_DBM} dBm{others}",
            "move closer (or the adapter: a USB extension cable), away from metal and the "
            "battery's cables",
            details=details,
        ), target
    return Finding("advertising", Outcome.OK, f"{where}{others}", details=details), target


async def connection_finding(
    transport: BmsTransport, arguments: argparse.Namespace
) -> tuple[Finding, DalyClient | None]:
    """Connect and subscribe to the BMS's answers; say which GATT layout took the subscription."""
    try:
        client = await connect_client(transport, arguments)
    except TransportError as error:
        if transport.wired:
            advice = "unplug and plug the adapter in again; dmesg tells what its driver says"
        elif "no Daly service" in str(error):
            advice = (
                "the device has none of Daly's layouts (fff0, ff00): is it a Daly BMS? "
                "daly-bms shell, then connect and services, lists what it has"
            )
        else:
            advice = (
                "a BMS takes one central at a time: close the phone app and other readers "
                "(systemctl stop daly-bms-serve daly-bms-node); move closer; a BMS that has "
                "just woken may refuse the first connection: run doctor again"
            )
        return Finding(
            "connection", Outcome.FAIL, describe_failure(error), advice, exit_code_for(error)
        ), None
    if not isinstance(transport, BleakTransport):
        return Finding("connection", Outcome.OK, f"opened {transport.description}"), client
    layout = transport.layout
    services = [service.uuid for service in transport.gatt_table()]
    return Finding(
        "connection",
        Outcome.OK,
        f"connected to {transport.description}; subscribed to {layout.notify} ({layout.name} "
        f"layout, requests to {layout.write})",
        details={"gatt": layout.name, "services": services},
    ), client


async def answer_finding(client: DalyClient) -> Finding:
    """Read one sample; say which protocol answered and what."""
    try:
        sample = await client.read_sample()
    except RequestTimeoutError as error:
        return Finding(
            "answer",
            Outcome.FAIL,
            f"no answer: {error}",
            "on the wire: TX and RX crossed? the speed (--baud; Daly's default 9600), the "
            "RS485 direction (--rs485), the board (--board)"
            if client.transport.wired
            else "connected and subscribed, yet nothing answered: a BLE module of another "
            "kind, or one that answers another protocol (--protocol auto asks d2, x81 and a5)",
            ExitCode.NO_ANSWER,
        )
    except DalyProtocolError as error:
        return Finding(
            "answer",
            Outcome.FAIL,
            f"the BMS answered something undecodable: {error}",
            "record the conversation (daly-bms record FILE --count 3) and report it",
            ExitCode.FAILED,
        )
    except TransportError as error:
        return Finding(
            "answer", Outcome.FAIL, describe_failure(error), "run doctor again",
            exit_code_for(error),
        )  # fmt: skip
    status = sample.status
    return Finding(
        "answer",
        Outcome.OK,
        f"the BMS answered in protocol {client.protocol}: {len(status.cell_voltages)} cells, "
        f"{status.pack_voltage:.2f} V, {status.current:.1f} A, SOC {status.soc:.1f} %",
        details={"protocol": client.protocol, "sample": sample_record(sample)},
    )


async def reading_findings(transport: BmsTransport, arguments: argparse.Namespace) -> list[Finding]:
    """Connect, then read once; disconnect whatever happens."""
    try:
        connection, client = await connection_finding(transport, arguments)
        if client is None:
            return [connection]
        return [connection, await answer_finding(client)]
    finally:
        await transport.disconnect()


async def ble_findings(arguments: argparse.Namespace) -> list[Finding]:
    """Run the Bluetooth checks, up to the first failure."""
    findings, adapter = await bluez_findings(arguments.adapter)
    if adapter is None:
        return findings
    try:
        found = await scan(adapter.name, arguments.timeout)
    except TransportError as error:
        denied = "AccessDenied" in str(error)  # the policy may allow listing, not scanning
        return [
            *findings,
            Finding(
                "advertising",
                Outcome.FAIL,
                f"the scan failed: {describe_failure(error)}",
                bluez_permission_advice() if denied else "sudo systemctl restart bluetooth",
                ExitCode.PERMISSION_DENIED if denied else exit_code_for(error),
            ),
        ]
    advertising, target = advertising_finding(found, arguments)
    findings.append(advertising)
    if target is None:
        return findings
    transport = BleakTransport(target.address, "", adapter.name, arguments.timeout)
    return findings + await reading_findings(transport, arguments)


async def diagnose(arguments: argparse.Namespace) -> list[Finding]:
    """Run the checks of the link the options describe; the ROS environment last."""
    names: tuple[str, ...]
    if arguments.serial_port:
        names = SERIAL_CHECKS
        findings = serial_findings(arguments.serial_port)
        if all(finding.outcome is not Outcome.FAIL for finding in findings):
            transport = SerialTransport(arguments.serial_port, arguments.baud, arguments.rs485)
            findings += await reading_findings(transport, arguments)
    else:
        names = BLE_CHECKS
        findings = await ble_findings(arguments)
    failed = next((f.check for f in findings if f.outcome is Outcome.FAIL), None)
    done = {finding.check for finding in findings}
    skipped = [
        Finding(name, Outcome.SKIPPED, f"not checked: {failed} failed")
        for name in names
        if failed and name not in done
    ]
    return [*findings, *skipped, ros_finding(os.environ)]


def exit_status(findings: list[Finding]) -> ExitCode:
    """Return the first failure's code; OK when none failed (a sample was read)."""
    return next((f.code for f in findings if f.outcome is Outcome.FAIL), ExitCode.OK)


def report_lines(findings: list[Finding], status: ExitCode) -> list[str]:
    """Lay out the findings as text: a line each, what to do under failures, a verdict."""
    lines = []
    for finding in findings:
        lines.append(f"{MARKS[finding.outcome]:<4}  {finding.check:<17}  {finding.found}")
        if finding.advice:
            lines.append(f"{'':<25}what to do: {finding.advice}")
    failed = next((f for f in findings if f.outcome is Outcome.FAIL), None)
    lines.append(
        "a sample was read: the BMS works from here"
        if failed is None
        else f"{failed.check} failed (exit status {int(status)})"
    )
    return lines


def report_record(findings: list[Finding], status: ExitCode) -> dict[str, Any]:
    """Return the findings as one JSON object, for scripts."""
    return {
        "sample_read": status is ExitCode.OK,
        "exit_status": int(status),
        "checks": [
            {
                "check": finding.check,
                "outcome": finding.outcome.value,
                "found": finding.found,
                "advice": finding.advice or None,
                "exit_status": int(finding.code) if finding.outcome is Outcome.FAIL else None,
                "details": dict(finding.details),
            }
            for finding in findings
        ],
    }


def add_parser(subparsers: Any) -> None:
    """Register the ``doctor`` subcommand."""
    parser = subparsers.add_parser(
        "doctor",
        help="check Bluetooth (or the serial port), find the BMS, read it: what is wrong, what "
        "to do",
    )
    add_device_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Run the checks, print what they found; exit 0 when a sample was read."""
    findings = asyncio.run(diagnose(arguments))
    status = exit_status(findings)
    if arguments.json:
        print(json.dumps(report_record(findings, status)), flush=True)
    else:
        print("\n".join(report_lines(findings, status)), flush=True)
    return status
