"""Fuzz the assemblers and the decoders: no input may raise anything but the decoders' own error,
and no frame with a bad CRC or checksum may ever come out.

Both protocols: the D2/0x81 assembler and decoders, and the A5 assembler and decoders, whose
answers are fuzzed at two levels: bytes (flips, cuts, splices, chunkings) and answers (any data
bytes and frame numbers with a valid checksum, the cell count of 0x94 running through every
value 0..255 in turn, so that the decoders see what a checksum lets through).

With atheris installed (``pip install atheris``), a coverage-guided run of libFuzzer; without
it, a mutation loop over the real captures. The test suite runs the same properties with
hypothesis on every CI run; this is the longer run.

    .venv/bin/python bench/fuzz.py [--seconds 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))
CAPTURES = [
    bytes.fromhex(entry["hex"])
    for entry in json.loads((ROOT / "test" / "data" / "daly_d2_real.json").read_text())
]
# The protocol is imported where it is used, so that atheris instruments it at its import.


def a5_captures() -> list[bytes]:
    """Real A5 sessions as the A5 tests quote them, with their sources there.

    jblance/mpp-solar#83 (a 16S pack over its UART), tomatensaus/bms (under a 50 A load) and
    dreadnought/python-daly-bms#29 (a Bluetooth notification with garbage and a split frame).
    """
    from test_protocol_a5 import FIREMEN027_SESSION, PR29_NOTIFICATION, TOMATENSAUS

    return [
        bytes.fromhex("".join(FIREMEN027_SESSION)),
        bytes.fromhex(TOMATENSAUS.replace(" ", "")),
        bytes.fromhex(PR29_NOTIFICATION),
    ]


def chunked(assembler: Any, data: bytes) -> list[Any]:
    """Feed ``data`` in chunks its first byte chooses, then expire; return the frames."""
    step = 1 + (data[0] % 40 if data else 0)
    frames = [
        frame
        for start in range(0, len(data), step)
        for frame in assembler.feed(data[start : start + step])
    ]
    return frames + assembler.expire()  # what a cut-short frame hid


def check(data: bytes) -> int:
    """Run ``data`` through both assemblers and every decoder. Return the frames that came out."""
    return check_d2(data) + check_a5(data)


def check_d2(data: bytes) -> int:
    """The D2/0x81 assembler, then the decoder of each block its frames' sizes name."""
    from daly_bms_ros.protocol import (
        DalyProtocolError,
        FrameAssembler,
        decode_mos_temperature,
        decode_settings,
        decode_status,
    )
    from daly_bms_ros.protocol.crc import crc16_modbus

    decoders = {
        124: decode_status,
        160: decode_status,
        82: decode_settings,
        18: decode_mos_temperature,
    }
    frames = chunked(FrameAssembler(), data)
    for frame in frames:
        wire = frame.to_bytes()
        if crc16_modbus(wire[:-2]) != int.from_bytes(wire[-2:], "little"):
            raise AssertionError(f"frame with a bad CRC came out: {wire.hex()}")
        decoder = decoders.get(len(frame.payload))
        if decoder is not None:
            with contextlib.suppress(DalyProtocolError):  # the module's own error is allowed
                decoder(frame)
    return len(frames)


def check_a5(data: bytes) -> int:
    """The A5 assembler, then every decoder on its answers, and the status of them all."""
    from daly_bms_ros.protocol import FrameDecodeError, a5

    decoders: dict[int, Any] = {
        0x90: a5.decode_a5_pack,
        0x91: a5.decode_a5_cell_range,
        0x92: a5.decode_a5_temperature_range,
        0x93: a5.decode_a5_mos,
        0x94: a5.decode_a5_counts,
        0x98: a5.decode_a5_failures,
        0x50: a5.decode_a5_rated,
    }
    frames = chunked(a5.A5Assembler(), data)
    answers: dict[int, list[Any]] = {}
    for frame in frames:
        wire = frame.to_bytes()
        if a5.checksum(wire[:12]) != wire[12] or wire not in data:
            raise AssertionError(f"an A5 frame that was not received came out: {wire.hex()}")
        answers.setdefault(frame.command, []).append(frame)
        decoder = decoders.get(frame.command)
        with contextlib.suppress(FrameDecodeError):  # the decoders' documented error
            if decoder is not None:
                decoder(frame)
            elif frame.command == 0x97:
                a5.decode_a5_balancing(frame, frame.data[0])  # any count a byte can say
    with contextlib.suppress(FrameDecodeError):
        a5.decode_a5_status(answers)
    return len(frames)


def mutate(draw: random.Random, captures: list[bytes]) -> bytes:
    """A capture (or two spliced) with random damage."""
    data = bytearray(draw.choice(captures))
    if draw.random() < 0.3:
        data += draw.choice(captures)[: draw.randrange(1, 140)]
    for _ in range(draw.randrange(0, 6)):
        action = draw.randrange(4)
        position = draw.randrange(len(data)) if data else 0
        if action == 0 and data:
            data[position] = draw.randrange(256)
        elif action == 1:
            del data[position : position + draw.randrange(1, 20)]
        elif action == 2:
            data[position:position] = draw.randbytes(draw.randrange(1, 20))
        elif data:
            data[position] ^= 1 << draw.randrange(8)
    return bytes(data)


def mutate_a5_answers(draw: random.Random, sessions: list[bytes], cell_count: int) -> bytes:
    """A real A5 session whose answers say anything, each with a valid checksum.

    0x94 reports ``cell_count`` cells; data bytes are changed, frames of 0x95/0x96 added with
    numbers up to what 255 cells or sensors would need, one dropped, the order shuffled.
    """
    from daly_bms_ros.protocol.a5 import A5Assembler, A5Frame

    frames = A5Assembler().feed(draw.choice(sessions))
    frames = [frame for frame in frames if frame.command != 0x94]
    counts = bytes((cell_count, draw.randrange(256) if draw.random() < 0.3 else 1))
    frames.append(A5Frame(1, 0x94, counts + draw.randbytes(6)))
    for command, most in ((0x95, 86), (0x96, 37)):
        for number in range(1, draw.randrange(1, most + 1) if draw.random() < 0.5 else 1):
            frames.append(A5Frame(1, command, bytes((number,)) + draw.randbytes(7)))
    for command in (0x90, 0x91, 0x92, 0x93, 0x97, 0x98, 0x50):
        if draw.random() < 0.2:
            frames.append(A5Frame(1, command, draw.randbytes(8)))
    for _ in range(draw.randrange(0, 8)):
        index = draw.randrange(len(frames))
        frame = frames[index]
        data = bytearray(frame.data)
        data[draw.randrange(8)] = draw.randrange(256)
        frames[index] = A5Frame(frame.address, frame.command, bytes(data))
    if draw.random() < 0.2:
        del frames[draw.randrange(len(frames))]
    if draw.random() < 0.1:
        draw.shuffle(frames)
    return b"".join(frame.to_bytes() for frame in frames)


def mutation_loop(seconds: float, seed: int) -> None:
    draw = random.Random(seed)
    sessions = a5_captures()
    runs = frames = answers = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frames += check(mutate(draw, CAPTURES + sessions))
        frames += check_a5(mutate_a5_answers(draw, sessions, answers % 256))
        answers += 1
        runs += 2
    print(
        f"mutation fuzzing ({seconds:g} s, seed {seed}): {runs} inputs ({answers} of them A5 "
        f"answers with a valid checksum, each cell count 0..255 {answers // 256} times or "
        f"more), {frames} valid frames out, 0 failures (a failure stops the run with its input)"
    )


def atheris_run(atheris: object, seconds: float) -> None:
    corpus = Path(__file__).resolve().parent / ".fuzz-corpus"
    corpus.mkdir(exist_ok=True)
    with atheris.instrument_imports():  # type: ignore[attr-defined]
        import daly_bms_ros.protocol  # noqa: F401

        sessions = a5_captures()
    for number, capture in enumerate(CAPTURES + sessions):
        (corpus / f"capture{number}").write_bytes(capture)
    atheris.Setup(  # type: ignore[attr-defined]
        [sys.argv[0], f"-max_total_time={int(seconds)}", str(corpus)], check
    )
    atheris.Fuzz()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    try:
        import atheris
    except ImportError:
        print("atheris not installed: mutation loop instead")
        mutation_loop(arguments.seconds, arguments.seed)
    else:
        atheris_run(atheris, arguments.seconds)


if __name__ == "__main__":
    main()
