"""The CLI where scripts and pipes meet it: a reader that closes the pipe early, the shell on a
serial port, a slow wired BMS found by ``scan --serial``. Run from the source tree."""

from __future__ import annotations

import json
import os
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from real_frames import STATUS, frame_bytes
from source_cli import daly_bms
from test_sim_a5 import serial_sim

from daly_bms_ros.cli.scan import default_request_timeout
from daly_bms_ros.sim.a5_responder import A5Responder
from daly_bms_ros.sim.battery import BatteryModel
from daly_bms_ros.sim.request_stream import RequestStream, a5_request_length

#: No system bus: a command that wrongly turns to Bluetooth fails at once.
NO_BLUETOOTH = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"}


def with_stdout_closed(*arguments: str) -> tuple[int, str]:
    """Run ``daly-bms`` with a standard output nobody reads (its reader closed, as head does)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = daly_bms(*arguments, stdout=writer, env=NO_BLUETOOTH)
    finally:
        os.close(writer)
    return result.returncode, result.stderr


def test_a_closed_standard_output_ends_decode_quietly() -> None:
    status, stderr = with_stdout_closed("decode", frame_bytes(STATUS).hex())
    assert (status, stderr) == (141, "")


@pytest.mark.parametrize(
    "command",
    [
        ["read", "--json"],
        ["monitor", "--json", "--interval", "0.1"],  # no --count: it would poll for nobody
        ["scan", "--protocol", "a5"],
        ["shell"],
    ],
)
def test_a_closed_standard_output_ends_every_command_quietly(
    tmp_path: Path, command: list[str]
) -> None:
    with serial_sim(tmp_path, "--protocol", "a5", "--cells", "8") as (_sim, port):
        started = time.monotonic()
        status, stderr = with_stdout_closed(*command, "--serial-port", port)
    assert status == 141, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert time.monotonic() - started < 30


def test_the_shell_connects_to_the_serial_port_it_is_given(tmp_path: Path) -> None:
    with serial_sim(tmp_path, "--protocol", "a5", "--cells", "8") as (_sim, port):
        result = daly_bms(
            "shell", "--serial-port", port, "--request-timeout", "0.5",
            input="json\nservices\nexit\n", env=NO_BLUETOOTH,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Auto-connect: the port it names, at once, with no Bluetooth scan.
    assert f"connected to {port} (9600 baud)" in result.stdout, result.stdout
    assert "no Daly BMS seen" not in result.stdout and "error" not in result.stdout
    assert f"{port} (9600 baud): a wire (serial), no Bluetooth services; protocol a5" in (
        result.stdout
    )
    [record] = [  # after the prompt
        json.loads(line[line.index("{") :]) for line in result.stdout.splitlines() if "{" in line
    ]
    assert len(record["cell_voltages"]) == 8


@contextmanager
def paced_a5_bms(baudrate: int, cells: int) -> Iterator[str]:
    """An A5 BMS on a pseudo-terminal that answers as slowly as a wire at ``baudrate``.

    A pseudo-terminal carries bytes at once, whatever its speed: each answer is held back for
    the time its bytes take at 8N1 (10 bits a byte). Yields the port's path.
    """
    master, slave = os.openpty()
    responder = A5Responder(BatteryModel(cells=cells, sensors=2, max_cells=48))
    requests = RequestStream(a5_request_length)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if not select.select([master], [], [], 0.1)[0]:
                continue
            for request in requests.feed(os.read(master, 1024)):
                answer = responder(request)
                if answer:
                    time.sleep(len(answer) * 10 / baudrate)
                    os.write(master, answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield os.ttyname(slave)
    finally:
        stop.set()
        thread.join(5)
        os.close(master)
        os.close(slave)


def test_scan_waits_as_long_as_a_slow_port_takes_to_answer() -> None:
    """1200 baud: the cell voltages of a 16S pack (6 frames of 13 bytes) take 0.65 s."""
    assert default_request_timeout(1200) > 17 * 13 * 10 / 1200  # all 16 frames and the request
    assert default_request_timeout(9600) == 0.5
    with paced_a5_bms(1200, 16) as port:
        result = daly_bms(
            "scan", "--serial-port", port, "--baud", "1200", "--protocol", "a5", env=NO_BLUETOOTH
        )
    assert result.returncode == 0, result.stderr
    assert f"{port}  a5   16S" in result.stdout, result.stdout


def test_bms_data_lines_of_a_wired_a5_bms(tmp_path: Path) -> None:
    """A5 answers carry no Modbus frame: the Pi reader's record keeps its keys, those empty."""
    with serial_sim(tmp_path, "--protocol", "a5", "--cells", "8") as (_sim, port):
        result = daly_bms(
            "monitor", "--format", "bms-data", "--count", "1", "--serial-port", port,
            env=NO_BLUETOOTH, timeout=30,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    main_info = json.loads(line.removeprefix("BMS_DATA:"))["daly_protocol"]["commands"]["main_info"]
    assert (main_info["command_sent"], main_info["response_data"]) == ("", "")
    assert main_info["response_received"] is True
    parsed = main_info["parsed_data"]
    assert (parsed["header"], parsed["checksum"]) == ("", "")
    assert len(parsed["cellVoltages"]) == 8
