"""A write never lies: over a rebuilt link, an echoing RS485 adapter, any number a request holds.

The result of a write says what the BMS holds: done only when it holds the value, failed only
when it does not; never a write resent over a link rebuilt meanwhile, never the adapter's copy
of the request taken for the BMS's acknowledgement. Each scenario runs the real transports
against the virtual BMS (bleak over the BlueZ mock, a pty), with its faults.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from bluez_mock import NAME_PREFIX, client_of, one_virtual_bms
from installed import program
from rclpy.context import Context
from rclpy.parameter import Parameter
from ros_spin import spin_in_background
from test_control_node import Robot
from test_e2e_faults import FAST_LINK
from test_sim_a5 import serial_sim

from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.link.bleak_transport import BleakTransport
from daly_bms_ros.link.client import WriteFailedError, WriteOutcomeUnknownError
from daly_bms_ros.link.echo import QUIET_ANSWERS, EchoFilter
from daly_bms_ros.link.supervisor import BmsLink, LinkConfig, LinkStatus
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.protocol import BmsSample
from daly_bms_ros.protocol.registers import WRITABLE
from daly_bms_ros.srv import SetSetting, SetSoc

NAME = f"{NAME_PREFIX}HONEST"
CLI = program("daly-bms")
#: A D2 write of 0 into the charge MOSFET (0x00A5) and its acknowledgement, which is the same
#: eight bytes (Daly's Modbus sheet in syssi/esphome-daly-bms; fl4p/batmon-ha's daly2).
CHARGE_OFF = bytes.fromhex("d2 06 00 a5 00 00 8a 4a")
#: The 62-register status read, and the first bytes of its answer (byte count 0x7C).
STATUS_READ = bytes.fromhex("d2 03 00 00 00 3e d7 b9")
STATUS_ANSWER_START = bytes.fromhex("d2 03 7c 0c e4")


def daly_bms(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert CLI, "daly-bms is not installed next to the test interpreter"
    return subprocess.run(
        [CLI, *arguments], capture_output=True, text=True, timeout=90, check=False
    )


class WritesSent:
    """A tap that tells when a write request goes out, and counts them."""

    def __init__(self) -> None:
        self.writes = 0
        self.first_write = asyncio.Event()

    def connected(self, device: Mapping[str, object]) -> None:
        pass

    def sent(self, data: bytes) -> None:
        if data[1] == 0x06:
            self.writes += 1
            self.first_write.set()

    def received(self, data: bytes) -> None:
        pass

    def detected(self, variant: str, status_registers: int) -> None:
        pass

    def disconnected(self, reason: str) -> None:
        pass


class SlowlySubscribingTransport(BleakTransport):
    """A link whose subscription takes ``delay`` seconds after the first connection.

    The moment a resend must not slip into: connected, but not yet subscribed to answers.
    """

    def __init__(self, delay: float, **options: Any) -> None:
        super().__init__(**options)
        self.delay = delay
        self.subscriptions = 0

    async def _subscribe(self, client: Any) -> Any:
        self.subscriptions += 1
        if self.subscriptions > 1:
            await asyncio.sleep(self.delay)
        return await super()._subscribe(client)


def test_a_write_whose_link_is_rebuilt_is_never_resent_and_tells_what_the_bms_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The BMS does not take the first write; the link drops right after it was sent, and the
    # reconnect's subscription takes 1.5 s: the retry, due 2 s after the send, comes while
    # the new link is connected but not whole. Before, it went out over that link: the MOSFET
    # ended off while the caller was told the write failed.
    with one_virtual_bms(tmp_path, monkeypatch, NAME) as sim:

        async def scenario() -> None:
            transport = SlowlySubscribingTransport(
                1.5, device_name=NAME, adapter="hci0", connect_timeout=15.0
            )
            samples: list[BmsSample] = []
            statuses: list[LinkStatus] = []
            config = LinkConfig(
                poll_interval=0.5,
                request_timeout=2.0,
                request_retries=2,
                reconnect_delay_min=0.1,
                reconnect_delay_max=0.2,
            )
            link = BmsLink(transport, config, samples.append, statuses.append)
            tap = WritesSent()
            link.client.taps.append(tap)
            task = asyncio.create_task(link.run())
            try:
                while not samples:
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(sim.control, {"fault": "no_ack", "count": 1})
                write = asyncio.create_task(link.write("charge_switch", 0))
                await tap.first_write.wait()
                await asyncio.to_thread(sim.control, {"link": "disconnect"})
                with pytest.raises(WriteFailedError, match="does not hold it") as raised:
                    await write
                result = raised.value.result
                assert result is not None and (result.before, result.after) == (1.0, 1.0)
                assert tap.writes == 1  # never resent over the rebuilt link
                count = len(samples)
                while len(samples) == count:
                    await asyncio.sleep(0.05)
                assert samples[-1].status.charge_mos  # what the answer said the BMS holds
            finally:
                await link.stop()
                await asyncio.wait_for(task, 10)

        asyncio.run(scenario())


@pytest.mark.parametrize(
    ("arguments", "status"),
    [
        (("restart", "1", "--confirm-power-cut"), ExitCode.OUTCOME_UNKNOWN),
        (("charge-mos", "off"), ExitCode.NOT_ACKNOWLEDGED),
    ],
)
def test_an_echoing_adapter_never_acknowledges_a_write_the_bms_did_not_get(
    tmp_path: Path, arguments: tuple[str, ...], status: ExitCode
) -> None:
    with serial_sim(tmp_path, "--protocol", "d2", "--rs485-echo") as (sim, port):
        sim.control({"fault": "no_ack", "count": 3})  # the CLI sends a write three times
        result = daly_bms(
            "set", *arguments, "--allow-control", "--serial-port", port, "--request-timeout", "0.5"
        )
        assert result.returncode == status, result.stdout + result.stderr
        assert "did not acknowledge" in result.stderr
        read = daly_bms("settings", "--json", "--serial-port", port, "--request-timeout", "0.5")
    assert read.returncode == ExitCode.OK, read.stderr
    assert '"charge_switch": 1.0' in read.stdout  # the write never reached the BMS


def test_over_an_echoing_adapter_a_write_the_bms_takes_is_done(tmp_path: Path) -> None:
    # The adapter's copy comes first, the BMS's acknowledgement (the same bytes) after it.
    with serial_sim(tmp_path, "--protocol", "d2", "--rs485-echo") as (_sim, port):
        target = ("--serial-port", port, "--request-timeout", "0.5")
        result = daly_bms("set", "charge-mos", "off", "--allow-control", "--json", *target)
        assert result.returncode == ExitCode.OK, result.stderr
        assert '"after": 0.0' in result.stdout
        read = daly_bms("settings", "--json", *target)
    assert '"charge_switch": 0.0' in read.stdout


def test_the_echo_filter_learns_the_adapter_from_reads_before_it_trusts_a_write() -> None:
    echoing = EchoFilter(wired=True)
    assert echoing.unknown
    echoing.sent([CHARGE_OFF], answer_may_equal_request=True)
    # Unknown adapter: a write's copy cannot be told from its acknowledgement, so nothing goes.
    assert echoing.received(CHARGE_OFF) == CHARGE_OFF
    echoing.sent([STATUS_READ], answer_may_equal_request=False)
    # A direction switch's glitch, then the copy split across reads, then the answer.
    assert echoing.received(b"\x00" + STATUS_READ[:3]) == b"\x00"
    assert echoing.received(STATUS_READ[3:] + STATUS_ANSWER_START) == STATUS_ANSWER_START
    assert echoing.echoes is True
    echoing.answered()
    echoing.sent([CHARGE_OFF], answer_may_equal_request=True)
    assert echoing.received(CHARGE_OFF) == b""  # the adapter's copy
    assert echoing.received(CHARGE_OFF) == CHARGE_OFF  # the BMS's acknowledgement
    # The tail of a late answer before the copy passes on; the copy is still taken out.
    echoing.sent([CHARGE_OFF], answer_may_equal_request=True)
    assert echoing.received(STATUS_ANSWER_START + CHARGE_OFF) == STATUS_ANSWER_START

    quiet = EchoFilter(wired=True)
    for _read in range(QUIET_ANSWERS):
        assert quiet.unknown  # one answer without a copy first could be a stray one
        quiet.sent([STATUS_READ], answer_may_equal_request=False)
        # An answer starting like the request (d2 03) is held until it differs, then passed.
        assert quiet.received(STATUS_ANSWER_START[:2]) == b""
        assert quiet.received(STATUS_ANSWER_START[2:]) == STATUS_ANSWER_START
        quiet.answered()
    assert quiet.echoes is False
    quiet.sent([CHARGE_OFF], answer_may_equal_request=True)
    assert quiet.received(CHARGE_OFF) == CHARGE_OFF

    radio = EchoFilter(wired=False)
    assert not radio.unknown
    radio.sent([STATUS_READ], answer_may_equal_request=False)
    assert radio.received(STATUS_READ) == STATUS_READ


def test_a_restart_the_bms_does_not_acknowledge_is_sent_once_and_not_called_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A BMS that restarts before it answers looks like one that never got the command: a
    # resend could restart it again, and "failed" could be false.
    with one_virtual_bms(tmp_path, monkeypatch, NAME) as sim:

        async def scenario() -> None:
            async with client_of(NAME) as client:
                tap = WritesSent()
                client.taps.append(tap)
                await client.read_sample()
                await asyncio.to_thread(sim.control, {"fault": "no_ack", "count": 3})
                with pytest.raises(WriteOutcomeUnknownError, match="not known"):
                    await client.write_register("restart", 1)
                assert tap.writes == 1

        asyncio.run(scenario())


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e308", "65536"])
def test_the_cli_refuses_any_number_a_setting_cannot_hold(text: str) -> None:
    result = daly_bms("set", "--allow-control", "--confirm-power-cut", "sleep-time", "--", text)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "sleep_time must be 0..65535 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_service_request_ends_the_node_and_requesters_cannot_forge_log_lines(
    ros_context: Context, capfd: pytest.CaptureFixture[str]
) -> None:
    # Refused before anything reaches a link: no BMS is needed to show it.
    bms = DalyBmsNode(
        context=ros_context,
        namespace="honest",
        parameter_overrides=[
            *FAST_LINK,
            Parameter("device_name", value="DL-ABSENT"),
            Parameter("allow_control", value=True),
        ],
    )
    robot = Robot(ros_context, "honest")
    stop = spin_in_background(ros_context, bms, robot.node)
    forged = "x\nwrite by root: discharge_switch 1 -> 0"
    try:
        for value in (math.inf, -math.inf, math.nan, 1e308):
            for name in WRITABLE:
                answer = robot.call(
                    SetSetting, "set_setting", name=name, value=value, confirm_power_cut=True
                )
                assert not answer.success
                assert f"{name} must be" in answer.message
            soc = robot.call(SetSoc, "set_soc", soc=value)
            assert not soc.success and "soc_setting must be 0..100 %" in soc.message
        client = robot.node.create_client(SetSoc, "/honest/set_soc")
        future = client.call_async(SetSoc.Request(soc=200.0, requester=forged))
        deadline = time.monotonic() + 30
        while not future.done():
            assert time.monotonic() < deadline, "no answer from set_soc"
            time.sleep(0.02)
        assert not future.result().success
    finally:
        stop()
        bms.close()
    logged = capfd.readouterr().err
    assert "x\\nwrite by root" in logged
    assert not any(line.startswith("write by root") for line in logged.splitlines())
