"""`daly-bms decode` as a user runs it: the installed command, JSON lines, exit status."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from real_frames import BAD_CRC, SETTINGS, STATUS, frame_bytes

from daly_bms_ros.protocol import (
    X81,
    DeviceInfo,
    build_response,
    encode_device_info,
    encode_x81_status,
)
from daly_bms_ros.sim.battery import BatteryModel

COMMAND = shutil.which("daly-bms", path=str(Path(sys.executable).parent))


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


def test_device_info_block() -> None:
    frame = build_response(encode_device_info(DeviceInfo("K00T-2.1.7", "DL-16S", "2024-03-18")))
    status, [decoded] = decode(frame.hex())
    assert status == 0
    assert decoded == {
        "block": "device_info",
        "software_version": "K00T-2.1.7",
        "hardware_version": "DL-16S",
        "production_date": "2024-03-18",
        "serial_number": "",  # the D2 block has none
    }


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
    pack, state = encode_x81_status(model.status(0.0), model.mos_temperature(0.0))
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
