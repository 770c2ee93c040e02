"""Writes to the BMS through the real bleak against the virtual BMS: echoed, read back, proven.

Each write reads the value before, waits for the echo and reads the register back; the virtual
BMS applies it to its battery model (a MOS switched off stops the current) or, with a write
fault armed, does not acknowledge it, echoes another value, or ignores it after the echo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from bluez_mock import NAME_PREFIX, SimProcess, bluez_mock, client_of, one_virtual_bms, sim_process

from daly_bms_ros.link.client import (
    ControlNotSupportedError,
    DalyClient,
    ReadBackMismatchError,
    WriteNotAcknowledgedError,
)

NAME = f"{NAME_PREFIX}CTL"
T = TypeVar("T")


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimProcess]:
    with one_virtual_bms(tmp_path, monkeypatch, NAME, "--load-period", "40") as process:
        yield process


def with_client(scenario: Callable[[DalyClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with client_of(NAME) as client:
            return await scenario(client)

    return asyncio.run(run())


def test_switches_soc_and_settings_are_written_and_read_back(sim: SimProcess) -> None:
    async def scenario(client: DalyClient) -> None:
        first = await client.read_sample()
        assert first.status.discharge_mos and first.status.charge_mos
        result = await client.write_register("discharge_switch", 0)
        assert (result.before, result.after) == (1.0, 0.0)
        result = await client.write_register("charge_switch", 0)
        assert (result.before, result.after) == (1.0, 0.0)
        off = await client.read_sample()
        assert not off.status.charge_mos and not off.status.discharge_mos
        assert off.status.current == 0.0  # both MOS off: no current either way
        assert off.settings is not None  # read anew after the writes
        assert off.settings.values["discharge_switch"] == 0.0
        for name in ("discharge_switch", "charge_switch"):
            assert (await client.write_register(name, 1)).after == 1.0
        soc = await client.write_register("soc_setting", 100)
        assert soc.after == 100.0
        full = await client.read_sample()
        assert full.status.soc == pytest.approx(100.0, abs=0.2)
        assert full.status.charge_mos and full.status.discharge_mos
        # A value of another unit and scale: 0.1 Ah, and the 0.1 % that once made 100 % 1 %.
        assert (await client.write_register("rated_capacity", 205.3)).after == 205.3
        assert (await client.write_register("soc_setting", 55.5)).after == 55.5
        assert (await client.write_register("balancer_switch", 0)).after == 0.0
        assert (await client.read_sample()).settings.rated_capacity == 205.3  # type: ignore[union-attr]

    with_client(scenario)


def test_polling_and_writes_share_the_link_one_request_at_a_time(sim: SimProcess) -> None:
    async def scenario(client: DalyClient) -> None:
        await client.read_sample()
        reads = [client.read_sample() for _ in range(5)]
        writes = [client.write_register("sleep_time", 600 + i) for i in range(3)]
        results = await asyncio.gather(*reads, *writes)
        samples, written = results[:5], results[5:]
        assert all(len(sample.status.cell_voltages) == 16 for sample in samples)  # type: ignore[union-attr]
        assert [result.after for result in written] == [600, 601, 602]  # type: ignore[union-attr]
        assert sum(client.rejected.values()) == 0

    with_client(scenario)


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("no_ack", WriteNotAcknowledgedError, "did not acknowledge .* and does not hold it"),
        ("ignored_write", ReadBackMismatchError, "did not take it"),
    ],
)
def test_a_write_the_bms_does_not_take_is_reported_as_failed(
    sim: SimProcess, fault: str, error: type[Exception], message: str
) -> None:
    sim.control({"fault": fault, "count": 2})  # the client tries twice (one retry)

    async def scenario(client: DalyClient) -> None:
        await client.read_sample()
        with pytest.raises(error, match=message) as raised:
            await client.write_register("charge_switch", 0)
        # What the BMS holds is read back and told, also when no echo came.
        assert raised.value.result.after == 1.0  # type: ignore[attr-defined]
        sample = await client.read_sample()  # polling goes on over the same link
        assert sample.status.charge_mos

    with_client(scenario)


def test_a_write_the_bms_holds_is_done_whatever_its_echo_said(sim: SimProcess) -> None:
    sim.control({"fault": "wrong_echo", "count": 2})  # applied, echoed with another value

    async def scenario(client: DalyClient) -> None:
        await client.read_sample()
        result = await client.write_register("charge_switch", 0)
        assert (result.before, result.after, result.acknowledged) == (1.0, 0.0, False)
        assert not (await client.read_sample()).status.charge_mos

    with_client(scenario)


def test_values_outside_a_setting_are_refused_before_anything_is_sent(sim: SimProcess) -> None:
    async def scenario(client: DalyClient) -> None:
        requests = client.requests
        for name, value in (
            ("soc_setting", 100.1),
            ("charge_switch", 2),
            ("sleep_time", -1),
            ("discharge_switch", 0.3),  # would round to 0: off
            ("soc_setting", 55.55),  # finer than the register's 0.1 %
        ):
            with pytest.raises(ValueError, match=name):
                await client.write_register(name, value)
        with pytest.raises(ValueError, match="no setting 'turbo'"):
            await client.write_register("turbo", 1)
        assert client.requests == requests

    with_client(scenario)


def test_a_restart_is_echoed_and_drops_the_link(sim: SimProcess) -> None:
    async def scenario(client: DalyClient) -> bool:
        await client.read_sample()
        result = await client.write_register("restart", 1)
        assert result.before is None  # a command: nothing to read before or after
        for _ in range(100):
            if not client.transport.is_connected:
                return True
            await asyncio.sleep(0.05)
        return False

    assert with_client(scenario)


def test_a_0x81_pack_refuses_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(NAME, tmp_path, "hci1", "--protocol", "x81"):

            async def scenario(client: DalyClient) -> None:
                with pytest.raises(ControlNotSupportedError, match="D2 and A5 protocols only"):
                    await client.write_register("charge_switch", 0)

            with_client(scenario)
