"""Decode throughput and per-frame latency of the protocol core on the real captured frames.

Side by side, in one run and on the same interpreter, with the Daly plugin of aiobmsble (the
decoder most Daly BLE users run, through Home Assistant's BMS_BLE). aiobmsble needs Python 3.12
or newer: when this interpreter is older, the comparison runs in a venv of a 3.12+ interpreter
found on the machine (``--python``, ``python3.12``/``python3.13`` on PATH, or pyenv's), created
once under ~/.cache/daly_bms_ros/ with aiobmsble from PyPI; without one, only this decoder is
measured and the output says so.

Both paths do the same work per status frame: check header, length and CRC, then decode cells,
temperatures, voltage, current, SOC, capacity, cycles and MOS states into values (aiobmsble also
adds its derived values, as its update does; this core adds min/max/average/delta and alarms).

An A5 poll (the nine answers of a real 16S session, through the A5 assembler's checks) is
measured beside it, and ``--hostile`` adds what the two assemblers make of a stream of bytes:
real answers, random bytes, and headers repeated over and over (each ``d2 03`` announces a frame
that holds a hundred more headers), in MiB/s, fed in 20-byte notifications.

    .venv/bin/python bench/decode.py [--iterations 20000] [--python /path/to/python3.12]
                                     [--alone] [--hostile]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FRAMES = ROOT / "test" / "data" / "daly_d2_real.json"
AIOBMSBLE = "aiobmsble==0.31.0"
CACHE = Path.home() / ".cache" / "daly_bms_ros" / "bench-aiobmsble"


def status_frame() -> bytes:
    """The real 16-cell status capture."""
    captures = {entry["id"]: entry for entry in json.loads(FRAMES.read_text())}
    return bytes.fromhex(captures["daly16s-status-7c"]["hex"])


def this_decoder() -> Callable[[bytes], Any]:
    """Frame bytes in, BmsStatus out, through the assembler's checks."""
    sys.path.insert(0, str(ROOT))
    from daly_bms_ros.protocol import FrameAssembler, decode_status

    assembler = FrameAssembler()

    def decode(data: bytes) -> Any:
        [frame] = assembler.feed(data)
        return decode_status(frame)

    return decode


def a5_session() -> bytes:
    """A real A5 session: the nine answers of firemen027's 16S pack (jblance/mpp-solar#83)."""
    sys.path.insert(0, str(ROOT / "test"))
    from test_protocol_a5 import FIREMEN027_SESSION

    return bytes.fromhex("".join(FIREMEN027_SESSION))


def a5_decoder() -> Callable[[bytes], Any]:
    """A poll's bytes in, BmsStatus out, through the A5 assembler's checks."""
    sys.path.insert(0, str(ROOT))
    from daly_bms_ros.protocol.a5 import A5Assembler, A5Frame, decode_a5_status

    assembler = A5Assembler()

    def decode(data: bytes) -> Any:
        answers: dict[int, list[A5Frame]] = {}
        for frame in assembler.feed(data):
            answers.setdefault(frame.command, []).append(frame)
        return decode_a5_status(answers)

    return decode


def throughput(make: Callable[[], Any], data: bytes, chunk: int = 20) -> float:
    """MiB/s of an assembler fed ``data`` in ``chunk``-byte notifications (best of three)."""
    best = float("inf")
    for _ in range(3):
        assembler = make()
        began = time.perf_counter()
        for start in range(0, len(data), chunk):
            assembler.feed(data[start : start + chunk])
        assembler.expire()
        best = min(best, time.perf_counter() - began)
    return len(data) / best / 2**20


def repeated(data: bytes, size: int) -> bytes:
    """``data`` over and over, ``size`` bytes of it."""
    return (data * (size // len(data) + 1))[:size]


def hostile(size: int) -> None:
    """Print the assemblers' throughput on real, random and hostile streams of ``size`` bytes."""
    sys.path.insert(0, str(ROOT))
    from daly_bms_ros.protocol import FrameAssembler
    from daly_bms_ros.protocol.a5 import A5Assembler

    entries = json.loads(FRAMES.read_text())
    real = b"".join(bytes.fromhex(entry["hex"]) for entry in entries if "badcrc" not in entry["id"])
    streams = {
        "real answers": (real, a5_session()),
        "random bytes": (os.urandom(size), os.urandom(size)),
        "`d2 03` / `a5 01 95 08` repeated": (bytes.fromhex("d203"), bytes.fromhex("a5019508")),
        "`51 03 fa` / `a5` repeated": (bytes.fromhex("5103fa"), bytes.fromhex("a5")),
    }
    print(f"\nassemblers, {size // 1024} KiB in 20-byte notifications (best of 3), MiB/s:")
    print("| stream | D2/0x81 assembler | A5 assembler |")
    print("| --- | --- | --- |")
    for name, (d2, a5) in streams.items():
        print(
            f"| {name} | {throughput(FrameAssembler, repeated(d2, size)):.2f} | "
            f"{throughput(A5Assembler, repeated(a5, size)):.2f} |"
        )


def aiobmsble_decoder() -> Callable[[bytes], Any]:
    """The same work through aiobmsble's Daly plugin: its frame checks, then its decoding."""
    from aiobmsble.bms.daly_bms import BMS, Proto
    from bleak.backends.device import BLEDevice

    details = {"path": "/org/bluez/hci0/dev_C6_6C_09_03_1B_9E", "props": {}}
    bms = BMS(BLEDevice("C6:6C:09:03:1B:9E", "DL-BENCH", details))
    protocol = BMS._PROTOS[Proto.D2]
    header = BMS._HEAD_LEN

    def decode(data: bytes) -> Any:
        bms._notification_handler(None, bytearray(data))
        message = bms._msg
        result = BMS._decode_data(protocol.fields, {62: message}, start=header)
        result["temp_values"] = BMS._temp_values(
            message,
            values=result.get("temp_sensors", 0),
            start=protocol.max_cells * 2 + header,
            offset=40,
        )
        result["cell_voltages"] = BMS._cell_voltages(
            message, cells=result.get("cell_count", 0), start=header
        )
        BMS._add_missing_values(result, bms._raw_values())
        return result

    return decode


def measure(decode: Callable[[bytes], Any], data: bytes, iterations: int) -> dict[str, float]:
    """Frames per second over a tight loop, and the latency percentiles of single frames."""
    for _ in range(min(iterations, 1000)):  # warm-up
        decode(data)
    start = time.perf_counter()
    for _ in range(iterations):
        decode(data)
    elapsed = time.perf_counter() - start
    latencies = []
    for _ in range(iterations):
        began = time.perf_counter_ns()
        decode(data)
        latencies.append((time.perf_counter_ns() - began) / 1000)
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "frames_per_s": iterations / elapsed,
        "p50_us": cuts[49],
        "p99_us": cuts[98],
    }


def newer_python(explicit: str | None) -> str | None:
    """A Python 3.12+ interpreter for aiobmsble, if the machine has one."""
    candidates = [explicit] if explicit else []
    candidates += [shutil.which(name) for name in ("python3.13", "python3.12")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv_root.is_dir():
        candidates += sorted(str(path / "bin" / "python3") for path in pyenv_root.glob("3.1[2-9]*"))
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"]
        found = subprocess.run(probe, check=False, capture_output=True).returncode == 0
        if Path(candidate).exists() and found:
            return candidate
    return None


def compare_in(python: str, iterations: int) -> dict[str, Any]:
    """Run both decoders in a venv of ``python`` with aiobmsble; return the worker's figures."""
    environment = CACHE / Path(python).resolve().parent.parent.name
    worker = environment / "bin" / "python"
    if not worker.exists():
        subprocess.run([python, "-m", "venv", str(environment)], check=True)
        subprocess.run(
            [
                str(worker),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                AIOBMSBLE,
            ],
            check=True,
        )
    output = subprocess.run(
        [str(worker), __file__, "--worker", "--iterations", str(iterations)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def worker(iterations: int) -> None:
    """Measure both decoders here and print the figures as JSON."""
    data = status_frame()
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "daly_bms_ros": measure(this_decoder(), data, iterations),
                "aiobmsble": measure(aiobmsble_decoder(), data, iterations),
            }
        )
    )


def row(name: str, figures: dict[str, float]) -> str:
    return (
        f"| {name} | {figures['frames_per_s']:,.0f} | {figures['p50_us']:.1f} | "
        f"{figures['p99_us']:.1f} |"
    )


def main() -> None:
    """Print the figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--python", help="a Python 3.12+ interpreter for aiobmsble")
    parser.add_argument(
        "--alone", action="store_true", help="measure this decoder only, not aiobmsble's"
    )
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="also measure the assemblers on real, random and hostile byte streams",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(arguments.iterations)
        return
    data = status_frame()
    version = sys.version.split()[0]
    print(f"status frame: {len(data)} bytes, {arguments.iterations} iterations")
    print("| decoder (Python) | frames/s | p50 µs | p99 µs |")
    print("| --- | --- | --- | --- |")
    print(row(f"daly_bms_ros ({version})", measure(this_decoder(), data, arguments.iterations)))
    figures = measure(a5_decoder(), a5_session(), arguments.iterations)
    print(row(f"daly_bms_ros, A5 poll of 9 answers, 16S ({version})", figures))
    if arguments.hostile:
        hostile(256 * 1024)
    if arguments.alone:
        return
    python = newer_python(arguments.python)
    if python is None:
        print("aiobmsble needs Python >= 3.12 and none was found (--python): not compared")
        return
    figures = compare_in(python, arguments.iterations)
    print(row(f"daly_bms_ros ({figures['python']})", figures["daly_bms_ros"]))
    print(row(f"aiobmsble 0.31.0 Daly ({figures['python']})", figures["aiobmsble"]))
    ratio = figures["daly_bms_ros"]["frames_per_s"] / figures["aiobmsble"]["frames_per_s"]
    print(f"ratio daly_bms_ros / aiobmsble on Python {figures['python']}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
