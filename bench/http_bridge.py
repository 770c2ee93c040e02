"""HTTP bridge answer times: every endpoint, from memory, over a kept-alive connection.

The server is the one `daly-bms serve` and `daly_bms_bridge` run, holding a sample decoded from
the real status capture; requests go over loopback, one client and then 8 in parallel.

    .venv/bin/python bench/http_bridge.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daly_bms_ros.bridge.http_server import BridgeHttpServer  # noqa: E402
from daly_bms_ros.bridge.store import SampleStore  # noqa: E402
from daly_bms_ros.protocol import BmsSample, FrameAssembler, decode_status  # noqa: E402

PATHS = ("/health", "/bms", "/bms/summary", "/bms/cells", "/bms/temps", "/bms/formatted")


def real_sample() -> BmsSample:
    captures = json.loads((ROOT.parent / "shared" / "frames" / "daly_d2_real.json").read_text())
    status = next(bytes.fromhex(c["hex"]) for c in captures if c["id"] == "daly16s-status-7c")
    [frame] = FrameAssembler().feed(status)
    return BmsSample(decode_status(frame), received_at=time.time())


def timed_gets(port: int, path: str, count: int) -> list[float]:
    """Milliseconds per GET of ``path``, ``count`` times on one connection."""
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, path
    connection.close()
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000)
    arguments = parser.parse_args()
    store = SampleStore(["bms"], max_age=3600.0)
    store.update("bms", real_sample())
    server = BridgeHttpServer(store, port=0)
    server.start()
    try:
        print("| path | p50 ms | p99 ms |")
        print("| --- | --- | --- |")
        for path in PATHS:
            times = timed_gets(server.server_port, path, arguments.requests)
            p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
            print(f"| `{path}` | {p50:.2f} | {p99:.2f} |")
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: timed_gets(server.server_port, "/bms", 250), range(8)))
        elapsed = time.perf_counter() - started
        print(f"8 clients in parallel: {8 * 250 / elapsed:,.0f} requests/s on /bms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
