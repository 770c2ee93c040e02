"""DalyClient and BmsLink against the BMS double: values, retries, rejects, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from bms_double import BmsDouble

from daly_bms_ros.link import bleak_transport
from daly_bms_ros.link.client import DalyClient, RequestTimeoutError
from daly_bms_ros.link.supervisor import (
    BmsLink,
    LinkConfig,
    LinkState,
    LinkStatus,
    LinkTurns,
    backoff_delay,
)
from daly_bms_ros.link.transport import AdapterUnavailableError, LinkLostError
from daly_bms_ros.protocol import D2, BmsSample

FAST = LinkConfig(
    poll_interval=0.05,
    request_timeout=0.2,
    request_retries=1,
    reconnect_delay_min=0.02,
    reconnect_delay_max=0.1,
)


async def connected_client(double: BmsDouble, retries: int = 1) -> DalyClient:
    client = DalyClient(double, request_timeout=0.2, request_retries=retries)
    double.set_callbacks(client.on_notify, lambda: None)
    await double.connect()
    client.attach()
    return client


def test_sample_carries_the_real_values() -> None:
    async def scenario() -> BmsSample:
        return await (await connected_client(BmsDouble())).read_sample()

    sample = asyncio.run(scenario())
    assert sample.status.pack_voltage == pytest.approx(51.1)
    assert len(sample.status.cell_voltages) == 16
    assert sample.status.cell_voltages[0] == pytest.approx(3.188)
    assert sample.status.soc == pytest.approx(8.7)
    assert sample.settings is not None
    assert sample.settings.rated_capacity == pytest.approx(310.0)
    assert sample.received_at > 0


def test_corrupt_and_truncated_answers_are_counted_then_retried() -> None:
    double = BmsDouble()

    async def scenario() -> tuple[DalyClient, BmsSample]:
        client = await connected_client(double, retries=2)
        double.corrupt_next = 1
        double.truncate_next = 1
        return client, await client.read_sample()

    client, sample = asyncio.run(scenario())
    assert sample.status.pack_voltage == pytest.approx(51.1)
    rejected = {reason.value: count for reason, count in client.rejected.items()}
    assert rejected == {"bad_crc": 1, "timeout": 1}
    # The double answers as the 62-register firmware of its capture: each of the three rounds
    # of detection has an unanswered probe (80 registers, 0x81) before the 62-register read;
    # two for the spoiled status answers, three for the MOS block the capture lacks.
    assert client.timeouts == 3 + 2 + 3
    assert client.read_mos_temperature is False


@pytest.mark.parametrize("wired", [False, True])
def test_silent_bms_times_out_after_the_retries_of_every_protocol(wired: bool) -> None:
    double = BmsDouble()
    double.silent = True
    double.wired = wired

    async def scenario() -> DalyClient:
        client = await connected_client(double, retries=2)
        with pytest.raises(RequestTimeoutError, match=r"any protocol \(D2, 0x81, A5\)"):
            await client.read_sample()
        return client

    client = asyncio.run(scenario())
    modbus_round = 2 + 1  # the D2 80-register and 0x81 status together, then D2 62 alone
    a5_round = 2  # 0x90 from host 0x40 and from 0x80
    # A wire: three rounds of both, A5 first; Bluetooth: three of D2 and 0x81, then A5 once.
    expected = 3 * (a5_round + modbus_round) if wired else 3 * modbus_round + a5_round
    assert client.requests == expected
    assert client.protocol == ""


def test_bms_falling_silent_times_out_after_the_retries() -> None:
    double = BmsDouble()

    async def scenario() -> DalyClient:
        client = await connected_client(double, retries=2)
        await client.read_sample()
        assert client.variant is D2
        double.silent = True
        before = client.requests
        with pytest.raises(RequestTimeoutError, match="status request after 3 tries"):
            await client.read_sample()
        assert client.requests == before + 3
        return client

    asyncio.run(scenario())


class Recorder:
    def __init__(self) -> None:
        self.samples: list[BmsSample] = []
        self.statuses: list[LinkStatus] = []


async def run_link(
    double: BmsDouble, scenario: Callable[[BmsLink, Recorder], Awaitable[None]]
) -> Recorder:
    recorder = Recorder()
    link = BmsLink(double, FAST, recorder.samples.append, recorder.statuses.append)
    task = asyncio.create_task(link.run())
    try:
        await scenario(link, recorder)
    finally:
        await link.stop()
        await asyncio.wait_for(task, 5)
    return recorder


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("condition not reached")


def test_link_reconnects_after_drop_and_delivers_nothing_while_asleep() -> None:
    double = BmsDouble()

    async def scenario(link: BmsLink, recorder: Recorder) -> None:
        await until(lambda: len(recorder.samples) >= 2)
        double.asleep = True
        double.drop_link()
        await until(lambda: link.status().state is LinkState.BACKOFF)
        delivered = len(recorder.samples)
        await asyncio.sleep(0.3)
        assert len(recorder.samples) == delivered
        assert "no BMS matching" in link.status().last_error
        double.asleep = False
        await until(lambda: len(recorder.samples) > delivered)
        assert link.status().reconnects == 1

    recorder = asyncio.run(run_link(double, scenario))
    assert recorder.statuses[-1].state is LinkState.STOPPED
    assert double.connects == 2
    assert not double.is_connected


def test_a_new_poll_interval_takes_effect_at_once() -> None:
    """With a clock the test holds still, the next poll's time is exact: no sleep measures it."""
    double = BmsDouble()
    clock = FrozenClock()

    async def scenario() -> None:
        recorder = Recorder()
        link = BmsLink(double, FAST, recorder.samples.append, recorder.statuses.append, clock=clock)
        task = asyncio.create_task(link.run())
        try:
            await until(lambda: len(recorder.samples) >= 1)
            link.set_poll_interval(10.0)
            assert link.schedule.interval == 10.0
            # Due ten seconds after the last poll began: the clock has not moved since.
            assert link.schedule.wait() == pytest.approx(10.0, abs=FAST.poll_interval * 3)
            clock.now += 10.0
            link.set_poll_interval(10.0)  # the wait ends and counts again: due now
            await until(lambda: len(recorder.samples) >= 2)
        finally:
            await link.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


class FrozenClock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class UnavailableAdapter(BmsDouble):
    async def connect(self) -> None:
        raise AdapterUnavailableError("Bluetooth not available: no adapter hci0")


def test_unavailable_adapter_is_retried_without_escaping() -> None:
    double = UnavailableAdapter()

    async def scenario(link: BmsLink, recorder: Recorder) -> None:
        await until(lambda: link.status().consecutive_failures >= 3)
        assert link.status().last_error == "Bluetooth not available: no adapter hci0"

    recorder = asyncio.run(run_link(double, scenario))
    assert not recorder.samples


def test_backoff_doubles_up_to_the_cap() -> None:
    config = LinkConfig(reconnect_delay_min=1.0, reconnect_delay_max=8.0)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)):
        delays = [backoff_delay(failures, config) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)


def test_a_gatt_operation_without_reply_is_a_lost_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """A D-Bus call to BlueZ has no deadline of its own: the transport gives it one."""
    monkeypatch.setattr(bleak_transport, "GATT_OPERATION_TIMEOUT_S", 0.05)
    never = asyncio.Event()

    async def scenario() -> None:
        with pytest.raises(LinkLostError, match=r"a write to fff2 got no reply within 0\.05 s"):
            await bleak_transport.bounded(never.wait(), "a write to fff2")
        assert await bleak_transport.bounded(asyncio.sleep(0, "done"), "a read") == "done"

    asyncio.run(scenario())


def test_a_lost_link_during_a_poll_reconnects_at_once() -> None:
    double = BmsDouble()

    async def scenario(_link: BmsLink, recorder: Recorder) -> None:
        await until(lambda: len(recorder.samples) >= 2)
        double.fail_next_write = True
        await until(lambda: double.connects >= 2 and len(recorder.samples) >= 4)

    recorder = asyncio.run(run_link(double, scenario))
    # Straight from the failed write to a new connection: no retries over a dead link.
    assert double.connects == 2
    failed = [status for status in recorder.statuses if status.last_error == "write failed"]
    assert failed and failed[0].state is LinkState.BACKOFF
    assert recorder.statuses[-1].reconnects == 1


def test_a_closed_d_bus_connection_means_bluez_is_unreachable() -> None:
    error = bleak_transport.translate_error(EOFError())
    assert isinstance(error, AdapterUnavailableError)
    assert str(error) == "BlueZ/D-Bus not reachable: the D-Bus connection closed"


def test_a_battery_read_in_turns_retries_as_connecting_and_refuses_writes_saying_why() -> None:
    """One loop for both: after a backoff the link shows it is connecting, as a held one does."""
    double = BmsDouble()
    double.asleep = True  # not found: the turns fail, and after a few the link backs off

    async def scenario() -> list[LinkState]:
        recorder = Recorder()
        turns = LinkTurns("adapter hci0", limit=1, batteries=2)
        link = BmsLink(double, FAST, recorder.samples.append, recorder.statuses.append, turns)
        task = asyncio.create_task(link.run())
        try:
            await until(lambda: link.status().state is LinkState.BACKOFF)
            double.asleep = False
            await until(lambda: link.status().state is LinkState.IN_TURN)  # its turn ended
            with pytest.raises(LinkLostError, match=r"read in turns \(adapter hci0 shared"):
                await link.write("charge_switch", 0)
        finally:
            await link.stop()
            await asyncio.wait_for(task, 5)
        return [status.state for status in recorder.statuses]

    states = asyncio.run(scenario())
    after_backoff = states[states.index(LinkState.BACKOFF) + 1 :]
    assert after_backoff[0] is LinkState.CONNECTING
    assert LinkState.CONNECTED not in states  # a turn holds no link between samples
