"""`daly-bms decode` as a user runs it: the installed command, JSON lines, exit status."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest
from installed import program
from real_frames import BAD_CRC, SETTINGS, STATUS, field_bytes, frame_bytes
from test_protocol_a5 import FIREMEN027_SESSION

from daly_bms_ros.capture.format import CaptureError, event_line, header_line
from daly_bms_ros.cli.decode import decode_capture
from daly_bms_ros.protocol import (
    STATUS_BLOCK,
    X81,
    Block,
    build_read_request,
    build_response,
    encode_x81_status,
)
from daly_bms_ros.protocol.a5 import build_a5_request
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


#: Daly's app reading a Daly active balancer: requests and answers (data/README.md).
APP_SESSION = json.loads(
    (Path(__file__).resolve().parent / "data" / "daly_app_balancer_session.json").read_text()
)


def test_a_capture_decodes_each_answer_as_the_block_its_request_asked(tmp_path: Path) -> None:
    capture = tmp_path / "app.jsonl"
    lines = [header_line()] + [
        event_line(event["kind"], bytes.fromhex(event["hex"]), at=(event["t"], event["t"]))
        for event in APP_SESSION["events"]
    ]
    capture.write_text("\n".join(lines) + "\n")
    status, objects = decode("--capture", str(capture))
    assert status == 0
    assert [o["block"] for o in objects] == ["settings", "status", "device_info", "registers"]
    settings, pack, info, password = objects
    # Daly's register sheet: 0x80 rated capacity 0.1 Ah (0x01F4), 0x81 nominal cell mV (0x0C80).
    assert (settings["rated_capacity"], settings["nominal_cell_voltage"]) == (50.0, 3.2)
    # Registers 0..15 cells in mV (0x0D07 = 3335), 40 the pack voltage in 0.1 V (0x0215).
    assert len(pack["cell_voltages"]) == 16 and pack["cell_voltages"][0] == 3.335
    assert (pack["pack_voltage"], pack["current"]) == (53.3, 0.0)
    assert info["hardware_version"] == "BMS-GD230-303E"  # what the app shows (field_frames)
    # 0x00C9..0x00CB, the settings password, is no block the driver reads: given as it is,
    # "123456" in ASCII.
    assert (password["start"], password["registers"]) == (0xC9, [0x3132, 0x3334, 0x3536])
    assert [o["t"] for o in objects] == [e["t"] for e in APP_SESSION["events"][1::2]]


def test_a_read_of_62_registers_from_0x0080_is_not_taken_for_a_status(tmp_path: Path) -> None:
    """Its answer is as long as a status: only the request tells them apart."""
    answer = frame_bytes(STATUS)
    registers = list(struct.unpack(">62H", answer[3:-2]))
    capture = tmp_path / "long.jsonl"
    capture.write_text(
        "\n".join(
            [
                header_line(),
                event_line("request", build_read_request(Block("long", 0x0080, 62)), at=(0.1, 0.1)),
                event_line("notification", answer, at=(0.2, 0.2)),
                event_line("request", build_read_request(STATUS_BLOCK), at=(0.3, 0.3)),
                event_line("notification", answer, at=(0.4, 0.4)),
            ]
        )
        + "\n"
    )
    status, objects = decode("--capture", str(capture))
    assert status == 0
    assert objects[0]["block"] == "registers" and objects[0]["start"] == 0x80
    assert objects[0]["registers"] == registers
    assert objects[1]["block"] == "status"
    # Without requests the length alone speaks: a status.
    _, alone = decode(answer.hex())
    assert alone[0]["block"] == "status"


def test_a5_frames_decode_one_by_one_and_a_whole_poll_as_one_status() -> None:
    status, objects = decode("".join(FIREMEN027_SESSION))
    assert status == 0
    blocks = [o["block"] for o in objects]
    assert blocks[:5] == ["a5_pack", "a5_cell_range", "a5_temperature_range", "a5_mos", "a5_counts"]
    assert blocks.count("a5_cell_voltages") == 16 and blocks.count("a5_temperatures") == 2
    assert blocks[-1] == "a5_status"
    pack = objects[0]
    # mpp-solar#83's decode of this session: "Battery Bank Voltage 53.2 V ... Current 2.1 A,
    # SOC 88.8 %", discharging: negative in the driver's sign.
    assert (pack["pack_voltage"], pack["current"], pack["soc"]) == (53.2, -2.1, 88.8)
    assert objects[blocks.index("a5_cell_voltages")]["values"] == [3.325, 3.326, 3.326]
    assert objects[3]["charge_state"] == "discharging"
    whole = objects[-1]
    assert len(whole["cell_voltages"]) == 16 and whole["cycles"] == 3
    assert (whole["max_cell_voltage"], whole["max_cell_index"]) == (3.328, 15)
    assert whole["temperatures"] == [15.0]


def test_two_a5_polls_give_two_statuses_and_a_lone_answer_none() -> None:
    poll = "".join(FIREMEN027_SESSION)
    status, objects = decode(poll + poll)
    assert status == 0
    assert [o["block"] for o in objects].count("a5_status") == 2
    status, objects = decode(FIREMEN027_SESSION[0])
    assert status == 0
    assert [o["block"] for o in objects] == ["a5_pack"]
    # A detection's 0x90 ahead of the poll's own is replaced by it, not a poll of its own.
    status, objects = decode(FIREMEN027_SESSION[0] + poll)
    assert [o["block"] for o in objects].count("a5_status") == 1


def test_an_a5_capture_decodes_its_answers_and_its_poll(tmp_path: Path) -> None:
    """A UART recording: each request A5, the chunks as the port read them (mpp-solar#83)."""
    # A chunk each; 0x95's answer came in two reads of one request (None: no request).
    commands = (0x90, 0x91, 0x92, 0x93, 0x94, 0x95, None, 0x96)
    lines = [header_line()]
    for n, (command, chunk) in enumerate(zip(commands, FIREMEN027_SESSION, strict=True)):
        if command is not None:
            lines.append(event_line("request", build_a5_request(command, 0x80), at=(n, n)))
        lines.append(event_line("notification", bytes.fromhex(chunk), at=(n + 0.5, n + 0.5)))
    capture = tmp_path / "uart.jsonl"
    capture.write_text("\n".join(lines) + "\n")
    status, objects = decode("--capture", str(capture))
    assert status == 0
    assert objects[0]["block"] == "a5_pack" and objects[0]["t"] == 0.5
    assert objects[-1]["block"] == "a5_status" and objects[-1]["soc"] == 88.8
