"""Switching an A5 BMS's MOSFETs: `daly-bms set` and the node's services against `daly-bms-sim`.

A UART/RS485 port is a pseudo-terminal (with an adapter that echoes what it sends, or not);
Daly's CAN port is the virtual bus behind python-can's real slcan interface. Each write is the
A5 command 0xDA or 0xD9 from the host address the BMS answers, and is done only when 0x93
reads the switch back as written: failed only when it does not, unknown while no link tells.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from rclpy.context import Context
from rclpy.parameter import Parameter
from ros_spin import spin_in_background
from test_can import can_sim, daly_bms
from test_control_node import Robot, wait_until
from test_e2e_faults import FAST_LINK
from test_protocol_a5 import PC_SOFTWARE_DISCHARGE_OFF, PC_SOFTWARE_DISCHARGE_OFF_ANSWER
from test_sim_a5 import serial_sim
from test_write_honesty import WritesSent

from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.link.client import (
    DalyClient,
    WriteNotAcknowledgedError,
    WriteOutcomeUnknownError,
)
from daly_bms_ros.link.serial_transport import SerialTransport
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.protocol.a5 import parse_a5_switch
from daly_bms_ros.srv import SetSetting, SetSoc, SetSwitch

FAST = ("--request-timeout", "0.5")


def switches(*target: str) -> tuple[bool, bool]:
    """Read a sample as a user does; return its (charge, discharge) MOSFET states."""
    read = daly_bms("read", "--json", *target, *FAST)
    assert read.returncode == ExitCode.OK, read.stderr
    record = json.loads(read.stdout)
    return record["charge_mos"], record["discharge_mos"]


def test_the_cli_switches_an_a5_bms_only_when_allowed_and_proves_each_switch(
    tmp_path: Path,
) -> None:
    with serial_sim(tmp_path, "--protocol", "a5") as (_sim, port):
        target = ("--serial-port", port)
        refused = daly_bms("set", "charge-mos", "off", *target, *FAST)
        assert refused.returncode == ExitCode.REFUSED
        assert "--allow-control allows writes" in refused.stderr
        unconfirmed = daly_bms("set", "discharge-mos", "off", "--allow-control", *target)
        assert unconfirmed.returncode == ExitCode.REFUSED
        assert "--confirm-power-cut" in unconfirmed.stderr
        assert switches(*target) == (True, True)  # nothing was written
        charge = daly_bms("set", "charge-mos", "off", "--allow-control", "--json", *target, *FAST)
        assert charge.returncode == ExitCode.OK, charge.stderr
        assert json.loads(charge.stdout) == {"setting": "charge_switch", "before": 1.0,
                                             "after": 0.0, "unit": ""}  # fmt: skip
        confirmed = ("--allow-control", "--confirm-power-cut")
        discharge = daly_bms("set", "discharge-mos", "off", *confirmed, *target, *FAST)
        assert discharge.returncode == ExitCode.OK, discharge.stderr
        assert discharge.stdout.endswith(
            "discharge_switch 1 -> 0 (A5 command 0xD9, answered and read back)\n"
        )
        assert switches(*target) == (False, False)
        assert daly_bms("set", "charge-mos", "on", "--allow-control", *target).returncode == 0
        assert switches(*target) == (True, False)
        other = daly_bms("set", "sleep-time", "1800", *confirmed, *target, *FAST)
        assert other.returncode == ExitCode.FAILED
        assert other.stderr.splitlines() == [
            "daly-bms: an A5 BMS takes the MOSFET switches only (discharge_switch, "
            "charge_switch: commands 0xD9 and 0xDA); no public source shows how it takes "
            "sleep_time"
        ]


@pytest.mark.parametrize(
    ("adapter", "fault", "status", "proof"),
    [
        # The adapter's copy of the request comes first; only the BMS's answer counts.
        (("--rs485-echo",), None, ExitCode.OK, "answered and read back"),
        # Never reached the BMS: the echo alone acknowledges nothing.
        (("--rs485-echo",), "no_ack", ExitCode.NOT_ACKNOWLEDGED, "did not acknowledge"),
        # Switched, but its answers never came: the read-back tells it is done.
        ((), "lost_ack", ExitCode.OK, "read back; the BMS did not answer it as sent"),
        # Neither switched nor answered: failed, with what the BMS holds.
        ((), "no_ack", ExitCode.NOT_ACKNOWLEDGED, "charge_switch reads 1 now"),
    ],
)
def test_a_switch_is_told_done_or_failed_by_what_0x93_reads_back(
    tmp_path: Path, adapter: tuple[str, ...], fault: str | None, status: ExitCode, proof: str
) -> None:
    with serial_sim(tmp_path, "--protocol", "a5", *adapter) as (sim, port):
        target = ("--serial-port", port)
        if fault is not None:
            sim.control({"fault": fault, "count": 3})  # the CLI sends a write three times
        result = daly_bms("set", "charge-mos", "off", "--allow-control", *target, *FAST)
        assert result.returncode == status, result.stdout + result.stderr
        assert proof in result.stdout + result.stderr
        assert switches(*target) == (status is not ExitCode.OK, True)


def test_over_can_the_switch_goes_to_the_board_asked_and_is_read_back(tmp_path: Path) -> None:
    with can_sim(tmp_path, "--boards", "2") as (sim, port):
        bus = ("--transport", "can", "--can-interface", "slcan", "--can-channel", port)
        second = (*bus, "--board", "2")
        result = daly_bms("set", "charge-mos", "off", "--allow-control", *second, *FAST)
        assert result.returncode == ExitCode.OK, result.stderr
        assert "(A5 command 0xDA, answered and read back)" in result.stdout
        assert switches(*second) == (False, True)
        assert switches(*bus) == (True, True)  # board 1 was not switched
        sim.control({"fault": "no_ack", "count": 3})
        refused = daly_bms("set", "charge-mos", "off", "--allow-control", *bus, *FAST)
        assert refused.returncode == ExitCode.NOT_ACKNOWLEDGED, refused.stderr
        assert switches(*bus) == (True, True)


class SwitchesSent(WritesSent):
    """A tap that tells when an A5 MOSFET switch goes out, and counts them."""

    def sent(self, data: bytes) -> None:
        if parse_a5_switch(data) is not None:
            self.writes += 1
            self.first_write.set()


async def connected_client(port: str) -> DalyClient:
    transport = SerialTransport(port)
    client = DalyClient(transport, request_timeout=0.5, protocol="a5")
    transport.set_callbacks(client.on_notify, lambda: None)
    await transport.connect()
    client.attach()
    return client


@pytest.mark.parametrize(("fault", "held"), [("lost_ack", True), ("no_ack", False)])
def test_a_switch_whose_link_goes_is_unknown_until_0x93_is_read_over_the_next(
    tmp_path: Path, fault: str, held: bool
) -> None:
    with serial_sim(tmp_path, "--protocol", "a5") as (sim, port):

        async def scenario() -> None:
            client = await connected_client(port)
            tap = SwitchesSent()
            client.taps.append(tap)
            try:
                await client.read_sample()
                await asyncio.to_thread(sim.control, {"fault": fault, "count": 1})
                write = asyncio.create_task(client.write_register("charge_switch", 0))
                await tap.first_write.wait()
                await asyncio.to_thread(sim.control, {"link": "disconnect"})  # unplugged
                with pytest.raises(WriteOutcomeUnknownError, match="is not known") as raised:
                    await write
                assert tap.writes == 1  # never resent once the link went
            finally:
                await client.transport.disconnect()
            assert sim.process.stdout is not None
            announced = await asyncio.to_thread(sim.process.stdout.readline)
            again = await connected_client(announced.split(" ", 2)[2].strip())
            try:
                if held:
                    result = await again.verify_write(raised.value)
                    assert (result.before, result.after, result.acknowledged) == (1.0, 0.0, False)
                else:
                    with pytest.raises(WriteNotAcknowledgedError, match="does not hold it"):
                        await again.verify_write(raised.value)
                assert (await again.read_sample()).status.charge_mos is not held
            finally:
                await again.transport.disconnect()

        asyncio.run(scenario())


def test_a_switch_and_its_answer_decode_as_what_they_say() -> None:
    # The request (an RS485 echo, a capture's request) is no answer; the answer tells the state.
    result = daly_bms("decode", PC_SOFTWARE_DISCHARGE_OFF + PC_SOFTWARE_DISCHARGE_OFF_ANSWER)
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"block": "a5_discharge_switch", "command": "0xd9", "board": 1, "discharge_switch": 0}
    ]


def test_the_node_s_switch_services_reach_an_a5_bms_and_its_other_writes_are_refused(
    tmp_path: Path, ros_context: Context
) -> None:
    with serial_sim(tmp_path, "--protocol", "a5", "--rs485-echo") as (_sim, port):
        bms = DalyBmsNode(
            context=ros_context,
            namespace="wired",
            parameter_overrides=[
                *FAST_LINK,
                Parameter("transport", value="serial"),
                Parameter("serial_port", value=port),
                Parameter("allow_control", value=True),
            ],
        )
        robot = Robot(ros_context, "wired")
        stop = spin_in_background(ros_context, bms, robot.node, single_threaded=True)
        try:
            wait_until(lambda: robot.latest_cells() is not None, "samples of the A5 BMS")
            done = robot.call(SetSwitch, "set_charge_mos", enable=False)
            assert done.success, done.message
            assert (done.previous, done.current) == (1.0, 0.0)
            assert "(A5 command 0xDA, answered and read back)" in done.message
            wait_until(
                lambda: (cells := robot.latest_cells()) is not None and not cells.charge_mos,
                "the charge MOS off in the published cells",
            )
            assert robot.call(SetSwitch, "set_charge_mos", enable=True).success
            for answer in (
                robot.call(SetSoc, "set_soc", soc=100.0),
                robot.call(SetSwitch, "set_balancing", enable=False),
                robot.call(
                    SetSetting,
                    "set_setting",
                    name="sleep_time",
                    value=1800.0,
                    confirm_power_cut=True,
                ),
            ):
                assert not answer.success
                assert "an A5 BMS takes the MOSFET switches only" in answer.message
        finally:
            stop()
            bms.close()
