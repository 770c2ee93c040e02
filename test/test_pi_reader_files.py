"""The data files of the earlier Raspberry Pi reader, kept by ``daly-bms serve --data-layout
pi-reader``: what scripts written for that reader read from ``bms_data/`` still works."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from bluez_mock import NAME_PREFIX, PERIPHERAL_ADDRESS, bluez_mock, sim_process
from installed import program
from real_frames import STATUS, frame_bytes
from test_bridge import FakeClock, real_sample, serve_process, wait_for_status

from daly_bms_ros.bridge.files import DataDirectoryWriter
from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.cli.legacy import PiReaderLayout

NAME = f"{NAME_PREFIX}PIRD1"


def pi_reader_script(directory: Path) -> dict[str, Any]:
    """Read the files as scripts for that reader did: the main_info's parsed data, the status."""
    latest = json.loads((directory / "bms_latest.json").read_text())
    status = json.loads((directory / "bms_status.json").read_text())
    if not latest["data_found"]:
        return {"error": latest["error"], "status": status["status"]}
    parsed = latest["daly_protocol"]["commands"]["main_info"]["parsed_data"]
    return {
        "device": latest["device"],
        "mac_address": latest["mac_address"],
        "pack_voltage": parsed["packVoltage"],
        "soc": parsed["soc"],
        "cells": [cell["voltage"] for cell in parsed["cellVoltages"]],
        "status": status["status"],
        "status_soc": status["soc"],
    }


def test_the_files_hold_the_latest_sample_then_the_failure(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SampleStore(["bms"], max_age=5.0, clock=clock)
    layout = PiReaderLayout()
    writer = DataDirectoryWriter(store, tmp_path, layout=layout)
    writer.write()
    assert pi_reader_script(tmp_path) == {"error": "no sample received yet", "status": "error"}
    sample = dataclasses.replace(real_sample(), status_frame=frame_bytes(STATUS))
    layout.track("DL-40D63C3F3E5A", "40:D6:3C:3F:3E:5A", 12, 0)
    store.update("bms", sample)
    writer.write()
    seen = pi_reader_script(tmp_path)
    assert seen["device"] == "DL-40D63C3F3E5A"
    assert seen["mac_address"] == "40:D6:3C:3F:3E:5A"
    assert seen["pack_voltage"] == sample.status.pack_voltage
    assert seen["soc"] == seen["status_soc"] == sample.status.soc
    assert seen["cells"] == list(sample.status.cell_voltages)
    assert seen["status"] == "reading"
    status = json.loads((tmp_path / "bms_status.json").read_text())
    assert status == {
        "service": "bms_background", "status": "reading", "last_read": sample.received_at,
        "pack_voltage": sample.status.pack_voltage, "soc": sample.status.soc,
        "current": sample.status.current,
    }  # fmt: skip
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "bms_latest.json",
        "bms_status.json",
    ]
    clock.now += 6.0  # older than max_age: never passed on as current
    writer.write()
    latest = json.loads((tmp_path / "bms_latest.json").read_text())
    assert latest["data_found"] is False
    assert latest["service_status"] == "error"
    assert "older than max_age" in latest["error"]
    assert latest["last_successful_read"] == round(sample.received_at * 1000)
    assert json.loads((tmp_path / "bms_status.json").read_text())["status"] == "error"


def test_serve_keeps_the_pi_readers_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = program("daly-bms")
    assert cli
    data = tmp_path / "bms_data"
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with (
            sim_process(NAME, tmp_path, "hci1", "--cells", "8"),
            serve_process(
                cli, NAME, "--interval", "0.2", "--data-dir", str(data),
                "--data-layout", "pi-reader",
            ) as (_serve, url),
        ):  # fmt: skip
            wait_for_status(url + "/bms/summary", 200)
            deadline = time.monotonic() + 20
            while (seen := pi_reader_script(data)).get("status") != "reading":
                assert time.monotonic() < deadline, seen
                time.sleep(0.1)  # the files are rewritten every second: nothing to wait on
    assert seen["device"] == NAME
    assert seen["mac_address"] == PERIPHERAL_ADDRESS
    assert len(seen["cells"]) == 8
    assert 0 < seen["soc"] <= 100


def test_the_pi_reader_layout_needs_a_data_directory() -> None:
    cli = program("daly-bms")
    assert cli
    result = subprocess.run(
        [cli, "serve", "--data-layout", "pi-reader"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "daly-bms: --data-layout pi-reader needs --data-dir, e.g. bms_data"
    )
