"""`daly-bms set` and `daly-bms settings` against the virtual BMS, through the real bleak."""

from __future__ import annotations

import getpass
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bluez_mock import NAME_PREFIX, SimProcess, one_virtual_bms
from installed import program

from daly_bms_ros.cli.exit_codes import ExitCode

NAME = f"{NAME_PREFIX}SET01"
CLI = program("daly-bms")
TARGET = ("--name", NAME, "--adapter", "hci0", "--request-timeout", "0.5")


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimProcess]:
    with one_virtual_bms(tmp_path, monkeypatch, NAME) as process:
        yield process


def daly_bms(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert CLI, "daly-bms is not installed next to the test interpreter"
    return subprocess.run(
        [CLI, *arguments, *TARGET], capture_output=True, text=True, timeout=60, check=False
    )


def settings() -> dict[str, float]:
    result = daly_bms("settings", "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    values: dict[str, float] = json.loads(result.stdout)
    return values


def test_writes_need_allow_control_and_a_confirmed_power_cut(sim: SimProcess) -> None:
    refused = daly_bms("set", "charge-mos", "off")
    assert refused.returncode == ExitCode.REFUSED
    assert "--allow-control allows writes" in refused.stderr
    unconfirmed = daly_bms("set", "discharge-mos", "off", "--allow-control")
    assert unconfirmed.returncode == ExitCode.REFUSED
    assert "--confirm-power-cut" in unconfirmed.stderr
    assert settings()["discharge_switch"] == 1.0  # nothing was written
    done = daly_bms("set", "discharge-mos", "off", "--allow-control", "--confirm-power-cut")
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout.startswith(f"write by {getpass.getuser()}: discharge_switch 1 -> 0")
    assert settings()["discharge_switch"] == 0.0
    soc = daly_bms("set", "soc", "100", "--allow-control", "--json")
    assert soc.returncode == ExitCode.OK, soc.stderr
    assert json.loads(soc.stdout) == {"setting": "soc_setting", "before": 80.0, "after": 100.0,
                                      "unit": "%"}  # fmt: skip
    assert daly_bms("set", "sleep-time", "1800", "--allow-control").returncode == ExitCode.REFUSED
    confirmed = ("--allow-control", "--confirm-power-cut")
    assert daly_bms("set", "sleep-time", "1800", *confirmed).returncode == ExitCode.OK
    table = daly_bms("settings")
    assert "sleep-time" in table.stdout and "1800 s" in table.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("turbo", "1"), "no setting 'turbo'"),
        (("soc", "101"), "soc_setting must be 0..100 %"),
        (("charge-mos", "maybe"), "not a number, on or off"),
        (("discharge-mos", "0.3"), "discharge_switch takes steps of 1, not 0.3"),
    ],
)
def test_a_name_or_value_not_allowed_exits_2(
    sim: SimProcess, arguments: tuple[str, ...], message: str
) -> None:
    result = daly_bms("set", *arguments, "--allow-control")
    assert result.returncode == ExitCode.USAGE
    assert message in result.stderr


@pytest.mark.parametrize(
    ("fault", "status"),
    [("no_ack", ExitCode.NOT_ACKNOWLEDGED), ("ignored_write", ExitCode.READ_BACK_MISMATCH)],
)
def test_a_write_the_bms_does_not_take_has_its_exit_status(
    sim: SimProcess, fault: str, status: ExitCode
) -> None:
    sim.control({"fault": fault, "count": 3})  # the CLI sends a write three times at most
    result = daly_bms("set", "balancing", "off", "--allow-control")
    assert result.returncode == status, result.stderr
