"""`daly-bms decode` as a user runs it: the installed command, JSON lines, exit status."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from installed import program
from real_frames import BAD_CRC, SETTINGS, STATUS, field_bytes, frame_bytes

from daly_bms_ros.capture.format import CaptureError, event_line, header_line
from daly_bms_ros.cli.decode import decode_capture
from daly_bms_ros.protocol import X81, build_response, encode_x81_status
from daly_bms_ros.sim.battery import BatteryModel

COMMAND = program("daly-bms")


def decode(*arguments: str) -> tuple[int, list[dict[str, object]]]:
    assert COMMAND, "daly-bms is not installed next to the test interpreter"
    result = subprocess.run(
        [COMMAND, "decode", *arguments], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def spaced(data: bytes) -> str:
    return " ".join(f"{byte:02x}" for byte in data)


def test_status_frame_with_spaces() -> None:
    status, objects = decode(spaced(frame_bytes(STATUS)))
    assert status == 0
    [decoded] = objects
    assert decoded["pack_voltage"] == 51.1
    assert decoded["current"] == 0.0
    assert decoded["soc"] == 8.7
    assert decoded["remaining_capacity"] == 26.9
    assert decoded["cycles"] == 2
    assert decoded["cell_delta"] == 0.012
    assert decoded["alarms"] == ["soc_low_2"]
    assert decoded["temperatures"] == [23.0, 23.0]
    assert len(decoded["cell_voltages"]) == 16  # type: ignore[arg-type]
    for key in ("power", "charge_mos", "discharge_mos", "balancing"):
        assert key in decoded


def test_device_info_block_prints_what_the_app_shows() -> None:
    # A real answer (aiobmsble's test data): versions stored reversed in 16-byte fields.
    status, [decoded] = decode(field_bytes("aiobmsble-version16").hex())
    assert status == 0
    assert decoded == {
        "block": "device_info",
        "software_version": "11_240123_K00T",
        "hardware_version": "H2.0_103R_309F9F",
        "production_date": "20240229",
        "serial_number": "",  # the D2 block has none
        "model": "",
    }


def test_80_register_status_and_every_reason_is_printed_once() -> None:
    blue = field_bytes("blue16s-status80-1")
    short = field_bytes("aiobmsble-too-short")
    status, objects = decode(blue.hex(), short.hex(), frame_bytes(BAD_CRC).hex(), "ab" * 5)
    assert status == 1
    assert objects[0]["block"] == "status_80"
    assert objects[0]["power"] == -131.0
    assert objects[1:] == [{"error": "bad_crc"}, {"error": "bad_length"}, {"error": "bad_header"}]


def test_a_truncated_frame_does_not_hide_the_frame_after_it() -> None:
    status, objects = decode(frame_bytes(STATUS)[:22].hex() + frame_bytes(SETTINGS).hex())
    assert status == 1
    assert objects[0]["block"] == "settings"
    assert objects[1:] == [{"error": "truncated"}]


def test_concatenation_with_a_bad_frame_exits_1() -> None:
    data = frame_bytes(SETTINGS) + frame_bytes(STATUS) + frame_bytes(BAD_CRC)
    status, objects = decode(data.hex())
    assert status == 1
    assert objects[0]["rated_capacity"] == 310.0
    assert objects[1]["block"] == "status"
    assert objects[2] == {"error": "bad_crc"}


def test_truncated_input_and_non_hex() -> None:
    status, objects = decode(frame_bytes(STATUS)[:30].hex())
    assert (status, objects) == (1, [{"error": "truncated"}])
    status, objects = decode("zz12")
    assert status == 1
    assert objects[0]["error"] == "bad_hex"


def test_usage_error_exits_2() -> None:
    assert COMMAND
    result = subprocess.run([COMMAND], capture_output=True, timeout=60, check=False)
    assert result.returncode == 2


def test_x81_status_is_decoded_from_its_two_blocks() -> None:
    model = BatteryModel(cells=20, sensors=2, max_cells=48)
    pack, state = encode_x81_status(model.status(0.0))
    frames = build_response(pack, X81) + build_response(state, X81)
    status, [decoded] = decode(frames.hex())
    assert status == 0
    assert decoded["block"] == "x81_status"
    assert len(decoded["cell_voltages"]) == 20  # type: ignore[arg-type]
    assert decoded["mos_temperature"] == model.mos_temperature(0.0).temperature
    # Half a status is reported, not guessed at.
    status, [alone] = decode(build_response(pack, X81).hex())
    assert status == 1
    assert alone == {"error": "incomplete_x81_status", "block": "x81_pack"}


def test_hex_from_standard_input_and_files(tmp_path: Path) -> None:
    """Input of any length: 10 MB of hex would not fit in arguments."""
    assert COMMAND
    frames = (frame_bytes(STATUS) + frame_bytes(SETTINGS)) * 4000  # about 1.6 MB of hex
    capture = tmp_path / "capture.hex"
    capture.write_text(spaced(frames[: len(frames) // 2]) + "\n")
    rest = frames[len(frames) // 2 :].hex()
    result = subprocess.run(
        [COMMAND, "decode", "--file", str(capture), "-"],
        input=rest,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-500:]
    lines = result.stdout.splitlines()
    assert len(lines) == 8000
    assert json.loads(lines[0])["pack_voltage"] == 51.1
    assert json.loads(lines[-1])["block"] == "settings"
    status, _ = decode("--file", str(tmp_path / "missing.hex"))
    assert status == 2


def write_capture(
    path: Path, *notifications: tuple[float, bytes], broken_after: bool = False
) -> Path:
    """A capture of a request, then ``notifications`` (time, bytes); a broken line at the end."""
    lines = [header_line(), event_line("request", bytes.fromhex("81030000003ed7b9"), at=(0.5, 0.5))]
    lines += [event_line("notification", data, at=(t, t)) for t, data in notifications]
    path.write_text("\n".join([*lines, *(["{broken"] if broken_after else [])]) + "\n")
    return path


def x81_halves() -> tuple[bytes, bytes]:
    pack, state = encode_x81_status(BatteryModel(cells=8, max_cells=48).status(0.0))
    return build_response(pack, X81), build_response(state, X81)


def test_a_capture_is_decoded_in_time_order_with_its_0x81_halves_paired(tmp_path: Path) -> None:
    pack, state = x81_halves()
    garbage = b"\xab" * 5
    paired = decode_capture(
        write_capture(tmp_path / "a.jsonl", (1, pack), (2, garbage), (3, state))
    )
    assert [(o["t"], o.get("block"), o.get("error")) for o in paired] == [
        (2, None, "bad_header"), (3, "x81_status", None),
    ]  # fmt: skip
    alone = decode_capture(
        write_capture(tmp_path / "b.jsonl", (1, pack), (2, garbage), (3, frame_bytes(STATUS)))
    )
    assert [(o["t"], o.get("block"), o.get("error")) for o in alone] == [
        (1, "x81_pack", "incomplete_x81_status"), (2, None, "bad_header"), (3, "status", None),
    ]  # fmt: skip


def test_a_capture_is_decoded_as_it_is_read(tmp_path: Path) -> None:
    """What comes before a broken line is decoded before the line is read."""
    objects = decode_capture(
        write_capture(tmp_path / "c.jsonl", (1, frame_bytes(STATUS)), broken_after=True)
    )
    assert next(objects)["block"] == "status"
    with pytest.raises(CaptureError, match=r"c\.jsonl:4: not JSON"):
        next(objects)
