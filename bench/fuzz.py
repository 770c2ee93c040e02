"""Fuzz the frame assembler and the decoders: no input may raise anything but the module's error,
and no frame with a bad CRC may ever come out.

With atheris installed (``pip install atheris``), a coverage-guided run of libFuzzer; without
it, a mutation loop over the real captures (random flips, cuts, splices, chunkings). The test
suite runs the same property with hypothesis on every CI run; this is the longer run.

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CAPTURES = [
    bytes.fromhex(entry["hex"])
    for entry in json.loads((ROOT.parent / "shared" / "frames" / "daly_d2_real.json").read_text())
]


def check(data: bytes) -> int:
    """Feed ``data`` in chunks its first byte chooses; decode what comes out. Return frames."""
    from daly_bms_ros.protocol import (
        FrameAssembler,
        decode_mos_temperature,
        decode_settings,
        decode_status,
    )
    from daly_bms_ros.protocol.crc import crc16_modbus
    from daly_bms_ros.protocol.errors import DalyProtocolError

    decoders = {
        124: decode_status,
        160: decode_status,
        82: decode_settings,
        18: decode_mos_temperature,
    }
    assembler = FrameAssembler()
    step = 1 + (data[0] % 40 if data else 0)
    frames = [
        frame
        for start in range(0, len(data), step)
        for frame in assembler.feed(data[start : start + step])
    ]
    frames += assembler.expire()  # what a cut-short frame hid
    for frame in frames:
        wire = frame.to_bytes()
        if crc16_modbus(wire[:-2]) != int.from_bytes(wire[-2:], "little"):
            raise AssertionError(f"frame with a bad CRC came out: {wire.hex()}")
        decoder = decoders.get(len(frame.payload))
        if decoder is not None:
            with contextlib.suppress(DalyProtocolError):  # the module's own error is allowed
                decoder(frame)
    return len(frames)


def mutate(draw: random.Random) -> bytes:
    """A capture (or two spliced) with random damage."""
    data = bytearray(draw.choice(CAPTURES))
    if draw.random() < 0.3:
        data += draw.choice(CAPTURES)[: draw.randrange(1, 140)]
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


def mutation_loop(seconds: float, seed: int) -> None:
    draw = random.Random(seed)
    runs = frames = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frames += check(mutate(draw))
        runs += 1
    print(
        f"mutation fuzzing ({seconds:g} s, seed {seed}): {runs} inputs, {frames} valid frames "
        f"out, 0 failures (a failure stops the run with its input)"
    )


def atheris_run(atheris: object, seconds: float) -> None:
    corpus = Path(__file__).resolve().parent / ".fuzz-corpus"
    corpus.mkdir(exist_ok=True)
    for number, capture in enumerate(CAPTURES):
        (corpus / f"capture{number}").write_bytes(capture)
    with atheris.instrument_imports():  # type: ignore[attr-defined]
        import daly_bms_ros.protocol  # noqa: F401
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
