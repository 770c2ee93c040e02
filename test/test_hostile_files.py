"""Input files as anybody may hand them over: a FIFO, /dev/zero, a directory, a line of 100 MB,
JSON nested 30,000 deep, a capture with values of the wrong type, a log with dates that do not
exist. Each is one clear line on stderr and exit status 2: never a traceback, a hang or memory
without bound. The commands run from the source tree with 512 MiB of address space."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from real_frames import STATUS, frame_bytes
from source_cli import assert_one_clear_line, daly_bms, daly_bms_sim

from daly_bms_ros.capture.files import MAX_LINE_BYTES
from daly_bms_ros.capture.format import CaptureError, read_events
from daly_bms_ros.capture.nrf import convert_nrf_log

Result = subprocess.CompletedProcess[str]
DATA = Path(__file__).parent / "data"
NRF_LOG = DATA / "nrf_connect_bms_ble_ha_806.txt"
HEADER = {"type": "header", "format": "daly-bms-capture", "version": 1}
REQUEST = {"type": "request", "t": 1.0, "wall": 1.7e9, "hex": "d2030000003ed7b9"}


def capture(path: Path, *records: object, header: object = HEADER) -> Path:
    """Write a capture of ``records`` (a str is written as it is) after ``header``."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in (header, *records)]
    path.write_text("\n".join(lines) + "\n")
    return path


def decode_capture(path: Path) -> Result:
    return daly_bms("decode", "--capture", str(path))


def replay(path: Path) -> Result:
    return daly_bms_sim("--replay", str(path), "--fast", "--adapter", "hci-none")


def decode_file(path: Path) -> Result:
    return daly_bms("decode", "--file", str(path))


def convert(path: Path) -> Result:
    return daly_bms("convert-log", str(path), str(path.parent / "converted.jsonl"))


READERS: dict[str, Callable[[Path], Result]] = {
    "decode --capture": decode_capture,
    "daly-bms-sim --replay": replay,
    "decode --file": decode_file,
    "convert-log": convert,
}


def not_a_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes to it: opening it to read would wait forever
    elif kind == "zero":
        path.symlink_to("/dev/zero")  # endless
    else:
        path.mkdir()
    return path


@pytest.mark.parametrize("kind", ["fifo", "zero", "directory"])
@pytest.mark.parametrize("reader", READERS)
def test_only_regular_files_are_read(tmp_path: Path, reader: str, kind: str) -> None:
    result = READERS[reader](not_a_file(tmp_path, kind))
    assert_one_clear_line(result, 2, "not a regular file")


@pytest.mark.parametrize("reader", ["decode --capture", "daly-bms-sim --replay", "convert-log"])
def test_a_line_longer_than_any_line_of_the_format_is_refused(tmp_path: Path, reader: str) -> None:
    """A second line of 250 MB (zeros, a sparse file): about the memory the command has."""
    path = tmp_path / "long.txt"
    first = json.dumps(HEADER) if reader != "convert-log" else "nRF Connect, 2026-08-26"
    with path.open("w") as file:
        file.write(first + "\n")
        file.truncate(250 * 2**20)
    result = READERS[reader](path)
    assert_one_clear_line(result, 2, f":2: a line over {MAX_LINE_BYTES} bytes")


def test_hex_of_any_length_is_decoded_as_it_is_read(tmp_path: Path) -> None:
    """A 45 MB line of spaced hex, the status frame at its end: within 512 MiB."""
    path = tmp_path / "long.hex"
    with path.open("w") as file:
        file.write("00 " * (15 * 2**20))
        file.write(frame_bytes(STATUS).hex(" ") + "\n")
    result = decode_file(path)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects[0]["pack_voltage"] == 51.1
    assert objects[1:] == [{"error": "bad_header"}]


def test_the_device_line_of_a_log_is_read_in_linear_time() -> None:
    """60,000 spaces and no address: every split of them was tried (seconds)."""
    log = [
        "nRF Connect, 2026-08-26",
        "DL-X" + " " * 60000 + "x",
        *NRF_LOG.read_text().splitlines()[2:],
    ]
    started = time.monotonic()
    lines = list(convert_nrf_log(log))
    assert time.monotonic() - started < 1.0
    assert json.loads(lines[1])["device"]["name"] == ""


@pytest.mark.parametrize("reader", ["decode --capture", "daly-bms-sim --replay"])
def test_json_nested_deeper_than_python_decodes_is_refused(tmp_path: Path, reader: str) -> None:
    nested = '{"type": "request", "t": 1, "wall": 1, "x": ' + "[" * 30000 + "]" * 30000 + "}"
    result = READERS[reader](capture(tmp_path / "nested.jsonl", nested))
    assert_one_clear_line(result, 2, ":2: JSON nested too deeply")


CONNECTION = {"type": "connection", "t": 0.5, "wall": 1.7e9}
MALFORMED: dict[str, tuple[list[object], dict[str, object], str]] = {
    "no device": ([CONNECTION, REQUEST], HEADER, ":2: a connection's device is None"),
    "device not an object": (
        [CONNECTION | {"device": "DL-1"}, REQUEST], HEADER, ":2: a connection's device is 'DL-1'"
    ),
    "unknown GATT layout": (
        [CONNECTION | {"device": {"gatt": "zzzz"}}, REQUEST], HEADER, "device gatt 'zzzz' is not"
    ),
    "name not text": ([CONNECTION | {"device": {"name": 7}}, REQUEST], HEADER, "device name 7"),
    "MTU not a number": (
        [CONNECTION | {"device": {"mtu": "big"}}, REQUEST], HEADER, "MTU 'big' is not 23..65535"
    ),
    "version true": ([REQUEST], HEADER | {"version": True}, ":1: capture version True"),
    "version -7": ([REQUEST], HEADER | {"version": -7}, ":1: capture version -7"),
    "blank first line": ([REQUEST], "", ":2: no header"),
    "t NaN": ([REQUEST | {"t": "NaN"}], HEADER, ":2: t 'NaN' is not a finite number"),
    "t not JSON": ([json.dumps(REQUEST).replace("1.0", "NaN")], HEADER, ":2: not JSON: NaN"),
    "t infinite": ([json.dumps(REQUEST).replace("1.0", "1e999")], HEADER, ":2: t inf is not"),
    "t of 400 digits": ([json.dumps(REQUEST).replace("1.0", "9" * 400)], HEADER, ":2: t 9999"),
    "hex not text": ([REQUEST | {"hex": 5}], HEADER, ":2: hex 5 is not text"),
    "not an object": (["[1, 2]"], HEADER, ":2: a JSON list, not an object"),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED)
@pytest.mark.parametrize("reader", ["decode --capture", "daly-bms-sim --replay"])
def test_a_malformed_capture_is_one_clear_line(tmp_path: Path, reader: str, case: str) -> None:
    records, header, message = MALFORMED[case]
    result = READERS[reader](capture(tmp_path / "bad.jsonl", *records, header=header))
    assert_one_clear_line(result, 2, message)


@pytest.mark.parametrize("reader", ["decode --capture", "daly-bms-sim --replay"])
def test_a_binary_file_is_not_a_capture(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(json.dumps(HEADER).encode() + b"\n\xff\xfe\x00garbage\n")
    assert_one_clear_line(READERS[reader](path), 2, ":2: not UTF-8 text")
    path.write_bytes(b"")
    assert_one_clear_line(READERS[reader](path), 2, "no header")


@pytest.mark.parametrize("name", ["DL-\x00REC", "DL-" + "9" * 40, "\x1b[2J"])
def test_a_recorded_name_that_cannot_be_advertised_asks_for_name(tmp_path: Path, name: str) -> None:
    device = {"name": name, "address": "00:AA:01:00:00:02", "gatt": "fff0", "mtu": 23}
    path = capture(tmp_path / "named.jsonl", CONNECTION | {"device": device}, REQUEST)
    assert_one_clear_line(replay(path), 2, "give --name")


def test_a_capture_being_written_is_read_up_to_its_size_when_opened(tmp_path: Path) -> None:
    path = capture(tmp_path / "growing.jsonl", REQUEST)
    events = read_events(path)
    first = next(events)
    with path.open("a") as file:
        file.write(json.dumps(REQUEST) + "\n")  # written after the reader opened it
    assert first.kind == "request"
    assert list(events) == []
    with pytest.raises(CaptureError, match="no header"):
        list(read_events(capture(tmp_path / "headless.jsonl", header="")))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda log: log.replace("2026-08-26", "2026-13-45", 1), ":1: no such date '2026-13-45'"),
        (lambda log: log.replace("19:33:29.657", "99:99:99.999", 1), ":3: no such time"),
        (lambda log: log.replace("MTU changed to: 512", "MTU changed to: " + "9" * 5000),
         "MTU of 5000 digits is not 23..65535"),
        (lambda log: log.replace("MTU changed to: 512", "MTU changed to: 7"), "MTU 7 is not"),
    ],
)  # fmt: skip
def test_a_log_with_values_that_do_not_exist_is_one_clear_line(
    tmp_path: Path, edit: Callable[[str], str], message: str
) -> None:
    path = tmp_path / "log.txt"
    path.write_text(edit(NRF_LOG.read_text()))
    assert_one_clear_line(convert(path), 2, message)
