"""Record and replay: a session with the virtual BMS recorded through the real bleak, played
back by a second virtual BMS from the file alone, read again with the same results."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bluez_mock import NAME_PREFIX, bluez_mock, client_of, sim_process
from installed import program
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_spin import spin_in_background
from sensor_msgs.msg import BatteryState
from source_cli import daly_bms

from daly_bms_ros.capture.format import CaptureError, read_events
from daly_bms_ros.capture.writer import CaptureWriter
from daly_bms_ros.link.client import DalyClient, RequestTimeoutError
from daly_bms_ros.msg import RawFrame
from daly_bms_ros.node.node import DalyBmsNode
from daly_bms_ros.protocol import STATUS_80_BLOCK, BmsSample, build_read_request

NAME = f"{NAME_PREFIX}REC"
CLI = program("daly-bms")
DATA = Path(__file__).parent / "data"
UTC = datetime.timezone.utc
FAULTS = ({"fault": "corrupt_crc"}, {"fault": "no_answer"}, {"fault": "truncated"}, {})


def values(sample: BmsSample) -> tuple[object, ...]:
    status = sample.status
    return (status.cell_voltages, status.pack_voltage, status.current, status.soc,
            status.temperatures, status.charge_mos, sample.settings)  # fmt: skip


async def read_session(
    client: DalyClient, before_each: Callable[[dict[str, object]], None]
) -> list[BmsSample | None]:
    """A sample per entry of FAULTS (None where the read failed), the fault armed before it."""
    samples: list[BmsSample | None] = []
    for fault in FAULTS:
        before_each(fault)
        try:
            samples.append(await client.read_sample())
        except RequestTimeoutError:
            samples.append(None)
    return samples


def session(
    taps: list[CaptureWriter], before_each: Callable[[dict[str, object]], None]
) -> tuple[list[BmsSample | None], dict[str, int]]:
    async def run() -> tuple[list[BmsSample | None], dict[str, int]]:
        async with client_of(NAME) as client:
            client.taps.extend(taps)
            client.attach()  # once more: the taps see the connection
            try:
                samples = await read_session(client, before_each)
            finally:
                client.detach("closed by the test")
        return samples, {reason.value: n for reason, n in client.rejected.items() if n}

    return asyncio.run(run())


def test_a_recorded_session_replays_to_the_same_samples_and_rejections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = tmp_path / "session.jsonl"
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        writer = CaptureWriter(capture)
        writer.start()
        with sim_process(NAME, tmp_path, "hci1", "--mtu", "23") as sim:

            def arm(fault: dict[str, object]) -> None:
                if fault:
                    sim.control(fault)

            recorded, recorded_rejects = session([writer], arm)
        writer.close()
        kinds = [event.kind for event in read_events(capture)]
        assert kinds[0] == "connection" and kinds[-1] == "disconnect"
        assert "protocol" in kinds
        with sim_process(NAME, tmp_path, "hci1", "--replay", str(capture), "--fast") as replay:
            replayed, replayed_rejects = session([], lambda _fault: None)
            replay.process.terminate()
            output = replay.process.communicate(timeout=30)[0]
    assert recorded_rejects == replayed_rejects
    assert {"bad_crc", "timeout"} <= set(recorded_rejects)
    assert [s is None for s in replayed] == [s is None for s in recorded]
    for first, second in zip(recorded, replayed, strict=True):
        if first is not None and second is not None:
            assert values(first) == values(second)
    assert "not in the capture" not in output  # every request was one the capture held


def test_a_request_the_capture_lacks_is_left_unanswered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = tmp_path / "short.jsonl"
    writer = CaptureWriter(capture)
    writer.start()
    writer.connected({"name": NAME, "address": "00:AA:01:00:00:02", "gatt": "fff0", "mtu": 23})
    writer.sent(bytes.fromhex("d2030000003ed7b9"))  # a 62-register read, never answered
    writer.close()
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(NAME, tmp_path, "hci1", "--replay", str(capture)) as replay:

            async def ask() -> None:
                async with client_of(NAME, request_timeout=0.3, request_retries=0) as client:
                    with pytest.raises(RequestTimeoutError):
                        await client.read_sample()  # the probes: not what the capture holds

            asyncio.run(ask())
            replay.process.terminate()
            output = replay.process.communicate(timeout=30)[0]
    asked = build_read_request(STATUS_80_BLOCK).hex()
    assert f"request {asked} is not in the capture from step 0; not answered" in output


def test_a_file_that_is_not_a_capture_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.jsonl"
    text.write_text('{"hello": 1}\n')
    with pytest.raises(CaptureError, match=r"notes\.jsonl:1"):
        list(read_events(text))
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"type": "header", "format": "daly-bms-capture", "version": 9}\n')
    with pytest.raises(CaptureError, match="version 9"):
        list(read_events(newer))


def test_captures_rotate_at_their_size_with_the_header_in_each_part(tmp_path: Path) -> None:
    capture = tmp_path / "rotating.jsonl"
    writer = CaptureWriter(capture, max_bytes=4000, backups=2)
    writer.start()
    for _ in range(200):
        writer.received(bytes(60))
    writer.close()
    parts = sorted(tmp_path.iterdir())
    assert [part.name for part in parts] == [
        "rotating.jsonl",
        "rotating.jsonl.1",
        "rotating.jsonl.2",
    ]
    for part in parts:
        assert part.stat().st_size <= 4000 + 200
        assert json.loads(part.read_text().splitlines()[0])["type"] == "header"
        assert all(event.kind == "notification" for event in read_events(part))


def test_cli_record_then_the_node_reads_the_replay_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ros_context: Context
) -> None:
    assert CLI
    capture = tmp_path / "cli.jsonl"
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(NAME, tmp_path, "hci1"):
            result = subprocess.run(
                [CLI, "record", str(capture), "--name", NAME, "--adapter", "hci0",
                 "--count", "5", "--interval", "0.2"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        assert result.returncode == 0, result.stderr
        printed = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(printed) == 5
        decoded = subprocess.run(
            [CLI, "decode", "--capture", str(capture)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        frames = [json.loads(line) for line in decoded.stdout.splitlines()]
        statuses = [frame for frame in frames if frame.get("block") == "status_80"]
        assert [s["cell_voltages"] for s in statuses] == [p["cell_voltages"] for p in printed]
        assert all(frame["t"] > 0 and frame["wall"] > 1.7e9 for frame in frames)
        # At the recorded pace. The recorded session ends with the CLI closing the link as the
        # last answer came; the node takes a link lost during a read for a failed read.
        with sim_process(NAME, tmp_path, "hci1", "--replay", str(capture)):
            received = node_reads(ros_context, len(printed) - 1)
    for (battery, _), sample in zip(received, printed, strict=False):
        assert list(battery.cell_voltage) == pytest.approx(sample["cell_voltages"], abs=1e-6)
        assert battery.voltage == pytest.approx(sample["pack_voltage"], abs=1e-4)
        assert battery.current == pytest.approx(sample["current"], abs=1e-4)
    raw = [frames for _, frames in received]
    assert any(f.direction == RawFrame.REQUEST for f in raw[-1])
    assert any(f.direction == RawFrame.NOTIFICATION and bytes(f.data[:2]) == b"\xd2\x03"
               for f in raw[-1])  # fmt: skip


def node_reads(context: Context, count: int) -> list[tuple[BatteryState, list[RawFrame]]]:
    """BatteryState messages of a node reading the replay, with the raw frames seen so far."""
    node = DalyBmsNode(
        context=context,
        parameter_overrides=[
            Parameter("device_name", value=NAME),
            Parameter("adapter", value="hci0"),
            Parameter("poll_interval", value=0.2),
            Parameter("request_timeout", value=0.5),
            Parameter("publish_raw_frames", value=True),
        ],
    )
    listener = Node("replay_listener", context=context)
    received: list[tuple[BatteryState, list[RawFrame]]] = []
    frames: list[RawFrame] = []
    lock = threading.Lock()

    def keep(target: Callable[[Any], None]) -> Callable[[Any], None]:
        def locked(message: Any) -> None:
            with lock:
                target(message)

        return locked

    listener.create_subscription(RawFrame, "raw_frames", keep(frames.append), 100)
    listener.create_subscription(
        BatteryState, "battery_state", keep(lambda m: received.append((m, list(frames)))), 10
    )
    stop = spin_in_background(context, node, listener)
    try:
        deadline = time.monotonic() + 30
        while len(received) < count:
            assert time.monotonic() < deadline, f"{len(received)} of {count} samples"
            time.sleep(0.05)
    finally:
        stop()
        node.close()
    with lock:
        return list(received)


def test_a_pasted_nrf_connect_log_converts_and_decodes(tmp_path: Path) -> None:
    """The log of patman15/BMS_BLE-HA#806 (test/data/README.md): its 0x81 status, device
    information and a write echo, at the log's times."""
    assert CLI
    capture = tmp_path / "nrf.jsonl"
    converted = subprocess.run(
        [CLI, "convert-log", str(DATA / "nrf_connect_bms_ble_ha_806.txt"), str(capture)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    events = list(read_events(capture))
    assert events[0].kind == "connection"
    assert events[0].details["device"] == {
        "name": "DL-D11A04015994", "address": "D1:1A:04:01:59:94", "gatt": "fff0", "mtu": 512,
    }  # fmt: skip
    # Each notification once, though the app logs most of them twice (I and A lines).
    assert [event.kind for event in events[1:]] == ["notification"] * 8
    decoded = subprocess.run(
        [CLI, "decode", "--capture", str(capture)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    objects = [json.loads(line) for line in decoded.stdout.splitlines()]
    [status] = [o for o in objects if o.get("block") == "x81_status"]
    # The state block at 19:33:35.806 paired with the pack block just before it.
    assert status["wall"] == datetime.datetime(2026, 8, 26, 19, 33, 35, 806000, UTC).timestamp()
    assert status["cell_voltages"] == [3.281, 3.216, 3.235, 3.285]
    assert (status["pack_voltage"], status["current"], status["soc"]) == (13.0, -0.4, 11.2)
    assert status["remaining_capacity"] == 20.1
    [info] = [o for o in objects if o.get("block") == "x81_device_info"]
    assert info["model"] == "DL_HKMS_3.2.E"
    assert {"block": "write_answer", "register": 0x0174, "value": 0x00A2}.items() <= next(
        o for o in objects if o.get("block") == "write_answer"
    ).items()


def test_a_log_is_converted_in_utc_whatever_the_machines_time_zone(tmp_path: Path) -> None:
    """The log's times carry no zone and are taken as UTC, also where the clock is not."""
    capture = tmp_path / "tokyo.jsonl"
    converted = daly_bms(
        "convert-log", str(DATA / "nrf_connect_bms_ble_ha_806.txt"), str(capture),
        env={**os.environ, "TZ": "Asia/Tokyo"},
    )  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    first = next(read_events(capture))
    assert first.wall == datetime.datetime(2026, 8, 26, 19, 33, 29, 827000, UTC).timestamp()
