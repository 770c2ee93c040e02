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

    .venv/bin/python bench/decode.py [--iterations 20000] [--python /path/to/python3.12]
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
FRAMES = ROOT.parent / "shared" / "frames" / "daly_d2_real.json"
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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(arguments.iterations)
        return
    data = status_frame()
    print(f"status frame: {len(data)} bytes, {arguments.iterations} iterations")
    print("| decoder (Python) | frames/s | p50 µs | p99 µs |")
    print("| --- | --- | --- | --- |")
    print(
        row(
            f"daly_bms_ros ({sys.version.split()[0]})",
            measure(this_decoder(), data, arguments.iterations),
        )
    )
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
