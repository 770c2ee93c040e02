"""HTTP bridge answer times: every endpoint, from memory, over a kept-alive connection.

The server is the one `daly-bms serve` and `daly_bms_bridge` run, holding a sample decoded from
the real status capture; requests go over loopback, one client and then 8 in parallel. Then
``--hold`` connections are held open by an attacker (half idle, half slowloris: a header byte
every half second, reconnecting whenever the server closes one) while a normal client connects
and asks, one new connection per request, as a monitoring probe does.

    .venv/bin/python bench/http_bridge.py [--requests 2000] [--hold 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import sys
import threading
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
    captures = json.loads((ROOT / "test" / "data" / "daly_d2_real.json").read_text())
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


class Attacker:
    """Hold ``count`` connections to ``port``: half idle, half sending a header byte at a time."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.slow = [self._open(slow=True) for _ in range(count // 2)]
        self.idle = [self._open(slow=False) for _ in range(count - count // 2)]
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self, slow: bool) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        if slow:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        return sock

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for group, slow in ((self.slow, True), (self.idle, False)):
                poller = select.poll()
                for sock in group:
                    poller.register(sock, select.POLLIN)
                readable = {descriptor for descriptor, _ in poller.poll(0)}
                for index, sock in enumerate(group):
                    try:
                        if sock.fileno() in readable:
                            raise ConnectionError  # the server answered or closed it
                        if slow:
                            sock.send(b"a")
                    except OSError:
                        sock.close()
                        group[index] = self._open(slow)
                        self.reopened += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.slow + self.idle:
            sock.close()


def under_attack(server: BridgeHttpServer, hold: int, seconds: float) -> None:
    """Print answer times of fresh-connection GETs while ``hold`` connections are held."""
    attacker = Attacker(server.server_port, hold)
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        connection = HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        connection.request("GET", "/bms/summary")
        response = connection.getresponse()
        response.read()
        connection.close()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status == 200
        time.sleep(0.05)
    attacker.stop()
    times.sort()
    print(
        f"{hold} connections held ({hold // 2} idle, {hold - hold // 2} slowloris; "
        f"{attacker.reopened} reopened after the server closed them, {server.evicted} evicted): "
        f"{len(times)} GETs on new connections, p50 {times[len(times) // 2]:.2f} ms, "
        f"p99 {times[int(len(times) * 0.99)]:.2f} ms, max {times[-1]:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--hold", type=int, default=1000, help="connections an attacker holds")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the attack")
    arguments = parser.parse_args()
    # The attacker's sockets and the server's ends of them live in this one process.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * arguments.hold + 1024), hard))
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
        if arguments.hold:
            under_attack(server, arguments.hold, arguments.seconds)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
