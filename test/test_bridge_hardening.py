"""The HTTP bridge under hostile or clumsy clients, and its data directory on a failing disk.

Requests are raw bytes over real sockets, so what a browser or curl would never send (a body on
a GET, a lowercase method, a broken request line, a connection that never finishes) is sent.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daly_bms_ros.bridge import files
from daly_bms_ros.bridge.files import DataDirectoryWriter
from daly_bms_ros.bridge.http_server import BridgeHttpServer, ConnectionLimits
from daly_bms_ros.bridge.store import SampleStore

FAST_LIMITS = ConnectionLimits(max_connections=20, request_timeout=0.5, max_head_bytes=4096)


@pytest.fixture
def server() -> Iterator[BridgeHttpServer]:
    served = BridgeHttpServer(SampleStore(["bms"], max_age=5.0), port=0, limits=FAST_LIMITS)
    served.start()
    try:
        yield served
    finally:
        served.stop()


def connect(server: BridgeHttpServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.server_port), timeout=5)


def read_responses(sock: socket.socket) -> list[tuple[int, dict[str, str], Any]]:
    """Every response on ``sock`` until the server closes it: status, headers, JSON body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in header_lines)
        length = int(headers["Content-Length"])
        body, data = rest[:length], rest[length:]
        assert headers["Content-Type"] == "application/json"
        responses.append((int(status_line.split()[1]), headers, json.loads(body)))
    return responses


def exchange(server: BridgeHttpServer, request: bytes) -> list[tuple[int, dict[str, str], Any]]:
    with connect(server) as sock:
        sock.sendall(request)
        return read_responses(sock)


def test_a_get_with_a_body_gets_one_answer(server: BridgeHttpServer) -> None:
    smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        len(smuggled),
        smuggled,
    )
    closing = b"GET /bms/cells HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers = exchange(server, request + closing)
    # The body is the GET's body, not a request: two requests, two answers, no 404.
    assert [status for status, _, _ in answers] == [503, 503]
    assert answers[0][2]["status"] == "no_fresh_data"
    assert answers[1][2]["error"] == "no_fresh_data"


@pytest.mark.parametrize("method", [b"TRACE", b"CONNECT", b"get", b"POST", b"PROPFIND"])
def test_every_other_method_gets_a_json_405(server: BridgeHttpServer, method: bytes) -> None:
    request = method + b" /bms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    [(status, headers, body)] = exchange(server, request)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert body["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (b"garbage\r\n\r\n", 400, "bad_request"),
        (b"GET /health HTTP/1.1\r\nBroken header\r\n\r\n", 400, "bad_request"),
        (b"GET //[x/health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, "bad_request"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n", 408, "request_timeout"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n" + b"x" * 70000,
            413,
            "request_too_large",
        ),
    ],
    ids=["request-line", "header", "target", "oversized-head", "unfinished-head", "large-body"],
)
def test_a_broken_request_gets_a_json_error_with_a_status_line(
    server: BridgeHttpServer, request_bytes: bytes, status: int, error: str
) -> None:
    [(answered, headers, body)] = exchange(server, request_bytes)
    assert (answered, body["error"]) == (status, error)
    assert headers.get("Connection") == "close" or status == 400


def test_an_idle_connection_is_closed_after_the_request_timeout(server: BridgeHttpServer) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server, without a word
        assert time.monotonic() - started < 4.0
    with connect(server) as sock:  # also between two requests of a kept-alive connection
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, _, _)] = read_responses(sock)
        assert status == 503


def test_idle_connections_beyond_the_limit_never_lock_a_client_out(
    server: BridgeHttpServer,
) -> None:
    idle = [connect(server) for _ in range(3 * FAST_LIMITS.max_connections)]
    try:
        for _ in range(5):
            [(status, _, _)] = exchange(
                server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status == 503  # answered: no sample yet
        assert server.evicted >= 2 * FAST_LIMITS.max_connections
    finally:
        for sock in idle:
            sock.close()


def test_no_spinning_and_recovery_when_descriptors_run_out(tmp_path: Path) -> None:
    """With RLIMIT_NOFILE reached, accept pauses instead of spinning; clients are answered later."""
    script = textwrap.dedent(
        """
        import os, resource, sys, time
        from daly_bms_ros.bridge.http_server import BridgeHttpServer
        from daly_bms_ros.bridge.store import SampleStore
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        server = BridgeHttpServer(SampleStore(["bms"], 5.0), port=0)
        server.start()
        hogs = []
        try:
            while True:
                hogs.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        print(server.server_port, flush=True)
        sys.stdin.readline()  # the test's clients are waiting in the backlog now
        busy = time.process_time()
        time.sleep(2.0)
        print(time.process_time() - busy, flush=True)
        for hog in hogs:
            os.close(hog)
        sys.stdin.readline()
        server.stop()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        port = int(process.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        for sock in clients:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        process.stdin.write("go\n")
        process.stdin.flush()
        cpu_seconds = float(process.stdout.readline())
        # Spinning on a failing accept burns a whole core; a paused accept loop almost nothing.
        assert cpu_seconds < 0.5, f"{cpu_seconds:.2f} s of CPU in 2 s"
        for sock in clients:
            [(status, _, body)] = read_responses(sock)
            assert (status, body["status"]) == (503, "no_fresh_data")
            sock.close()
        process.stdin.write("stop\n")
        process.stdin.flush()
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()


class FailingDisk:
    """Make the data files' writes fail with ENOSPC while ``full`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        write = files.write_json_atomically

        def write_unless_full(path: Path, content: Any) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            write(path, content)

        monkeypatch.setattr(files, "write_json_atomically", write_unless_full)


def test_a_full_disk_is_reported_and_retried_until_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: BridgeHttpServer
) -> None:
    disk = FailingDisk(monkeypatch)
    store = server.store
    writer = DataDirectoryWriter(store, tmp_path, interval=0.01)
    writer.start()
    try:
        disk.full = True
        deadline = time.monotonic() + 10
        while "data_dir" not in store.problems():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        [(status, _, body)] = exchange(
            server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status == 503
        assert "No space left on device" in body["problems"]["data_dir"]
        disk.full = False
        while "data_dir" in store.problems():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        written = json.loads((tmp_path / "status.json").read_text())
        assert written["problems"] == {}
        assert written["status"] == "no_fresh_data"  # the thread lives on and writes again
    finally:
        writer.stop()


@pytest.mark.parametrize("kind", ["file", "status-dir"])
def test_a_data_directory_that_cannot_serve_is_refused(tmp_path: Path, kind: str) -> None:
    if kind == "file":
        directory = tmp_path / "plain"
        directory.write_text("")
    else:
        directory = tmp_path
        (tmp_path / "status.json").mkdir()
    writer = DataDirectoryWriter(SampleStore(["bms"], 5.0), directory)
    with pytest.raises(ValueError, match="data directory"):
        writer.start()
