"""A read-only HTTP server over a SampleStore: GET/HEAD only, JSON errors, loopback by default.

What each path answers is ``routes.Site``'s business; this module is the transport.

HTTP/1.1 is parsed by h11 (sans-I/O) on an asyncio loop in a thread of its own, so that a
connection costs no thread and an idle or slow one cannot hold the server: each request must
arrive whole within ``request_timeout`` of the connection or of the previous answer; at most
``max_connections`` are open, and when that many are open the one waiting longest for its
request is closed to let a new one in (a flood of idle connections cannot lock a client out);
a descriptor shortage pauses accepting instead of spinning (asyncio's accept loop). Every answer,
errors included, has a status line; errors are JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import resource
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11

from daly_bms_ros.bridge.routes import ALLOWED_METHODS, Payload, Site
from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.link.loop_thread import EventLoopThread

LOG = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
#: Descriptors kept free for everything else the process opens (DDS, D-Bus, the data files).
_DESCRIPTOR_RESERVE = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client may hold of the server."""

    #: Connections open at once (lowered to what the descriptor limit allows).
    max_connections: int = 2048
    #: Seconds for a whole request to arrive, and for an answer to be taken.
    request_timeout: float = 10.0
    #: Bytes of a request line and headers.
    max_head_bytes: int = 16384
    #: Bytes of a request body (read and dropped: no path takes one).
    max_body_bytes: int = 65536
    #: Connections the kernel queues before the server accepts them.
    backlog: int = 1024


def _response(status: HTTPStatus, body: Any, close: bool) -> tuple[h11.Response, bytes]:
    """Build the head and body of an answer: JSON, plain text for a str, or a Payload as is."""
    if isinstance(body, Payload):
        data, content_type = body.data, body.content_type
    elif isinstance(body, str):
        data, content_type = body.encode(), "text/plain; charset=utf-8"
    else:
        data, content_type = json.dumps(body).encode(), "application/json"
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        ("Cache-Control", "no-store"),
        # The page loads only what the bridge serves; nothing it shows is taken as code.
        ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if status is HTTPStatus.METHOD_NOT_ALLOWED:
        headers.append(("Allow", ALLOWED_METHODS))
    if close:
        headers.append(("Connection", "close"))
    return h11.Response(status_code=int(status), headers=headers, reason=status.phrase), data


class _RequestTooLargeError(Exception):
    """A request body beyond ``max_body_bytes``."""


class _Connection:
    """One client connection: read a request, answer it, and again while the client keeps it."""

    def __init__(
        self, server: BridgeHttpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._server = server
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=server.limits.max_head_bytes
        )

    def close(self) -> None:
        """Close the socket (also from the server, to make room for a new connection)."""
        self._writer.close()

    async def serve(self) -> None:
        """Answer requests until the client closes, times out or breaks the protocol."""
        limits = self._server.limits
        while True:
            self._server.waiting(self, True)
            try:
                request = await asyncio.wait_for(self._read_request(), limits.request_timeout)
            except asyncio.TimeoutError:
                if self._h11.their_state is h11.IDLE and not self._h11.trailing_data[0]:
                    return  # an idle connection: closed without a word, as servers do
                await self._send_error(HTTPStatus.REQUEST_TIMEOUT, "request_timeout", "too slow")
                return
            except h11.RemoteProtocolError as error:
                await self._send_error(
                    HTTPStatus(error.error_status_hint), "bad_request", str(error) or "malformed"
                )
                return
            except _RequestTooLargeError:
                await self._send_error(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    "request_too_large",
                    f"a request body may hold at most {limits.max_body_bytes} bytes",
                )
                return
            finally:
                self._server.waiting(self, False)
            if request is None:
                return
            method, target = request.method.decode("ascii"), request.target.decode("latin-1")
            status, body = self._server.site.answer(method, target)
            if not await self._send(status, body, send_body=method != "HEAD", close=False):
                return
            if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                return
            self._h11.start_next_cycle()

    async def _read_request(self) -> h11.Request | None:
        """Return the next whole request (its body read and dropped); None when the client left."""
        request: h11.Request | None = None
        body_bytes = 0
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                # Reads of half the head limit: h11 checks the limit only on an unfinished
                # head, so a whole oversized head must not arrive in one read.
                read_size = max(1, self._server.limits.max_head_bytes // 2)
                self._h11.receive_data(await self._reader.read(read_size))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body_bytes += len(event.data)
                if body_bytes > self._server.limits.max_body_bytes:
                    raise _RequestTooLargeError
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _send(self, status: HTTPStatus, body: Any, send_body: bool, close: bool) -> bool:
        """Send an answer; False when the client did not take it in time."""
        head, data = _response(status, body, close)
        wire = self._h11.send(head) or b""
        if send_body:
            wire += self._h11.send(h11.Data(data=data)) or b""
        wire += self._h11.send(h11.EndOfMessage()) or b""
        self._writer.write(wire)
        try:
            await asyncio.wait_for(self._writer.drain(), self._server.limits.request_timeout)
        except (asyncio.TimeoutError, ConnectionError):
            return False
        return True

    async def _send_error(self, status: HTTPStatus, error: str, detail: str) -> None:
        """Answer a request that cannot be served, then the connection closes."""
        with contextlib.suppress(h11.LocalProtocolError):
            await self._send(status, {"error": error, "detail": detail}, True, close=True)


class BridgeHttpServer:
    """The HTTP server of one store, served from a thread of its own.

    The socket is bound when the server is made (an OSError says why it cannot be); ``start``
    serves, ``stop`` closes every connection and the socket.
    """

    def __init__(
        self,
        store: SampleStore,
        host: str = DEFAULT_HOST,
        port: int = 8080,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.store = store
        self.site = Site(store)
        self.limits = limits or ConnectionLimits()
        self._host = host
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self._socket = socket.socket(family, kind, protocol)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(address)
        except OSError:
            self._socket.close()
            raise
        self._loop = EventLoopThread("daly_bms_http")
        self._server: asyncio.Server | None = None
        #: Open connections; True for those waiting for a request (insertion order: oldest first).
        self._connections: dict[_Connection, bool] = {}
        self.max_connections = self.limits.max_connections
        self._tasks: set[asyncio.Task[None]] = set()
        #: Connections turned away or closed to make room, for the benchmarks and tests.
        self.refused = 0
        self.evicted = 0

    @property
    def server_port(self) -> int:
        """The port bound (useful with port 0)."""
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """Base URL, with the port actually bound."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.server_port}"

    def start(self) -> None:
        """Serve in the background."""
        self.max_connections = _connections_allowed(self.limits.max_connections)
        self._loop.start()
        self._loop.submit(self._listen()).result()

    async def _listen(self) -> None:
        asyncio.get_running_loop().set_exception_handler(_log_loop_error)
        self._server = await asyncio.start_server(
            self._accept, sock=self._socket, backlog=self.limits.backlog
        )

    def waiting(self, connection: _Connection, waiting: bool) -> None:
        """Note whether ``connection`` waits for a request (then it may be closed for room)."""
        if connection in self._connections:
            del self._connections[connection]
            self._connections[connection] = waiting

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        connection = _Connection(self, reader, writer)
        if len(self._connections) >= self.max_connections and not self._make_room():
            self.refused += 1
            await connection._send_error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "busy",
                f"{len(self._connections)} connections are being answered; try again",
            )
            connection.close()
            return
        self._connections[connection] = True
        try:
            await connection.serve()
        except ConnectionError:
            pass
        finally:
            self._connections.pop(connection, None)
            connection.close()

    def _make_room(self) -> bool:
        """Close the connection waiting longest for its request; False if none waits."""
        for connection, waiting in self._connections.items():
            if waiting:
                del self._connections[connection]
                connection.close()
                self.evicted += 1
                return True
        return False

    def stop(self) -> None:
        """Stop serving and close every connection and the socket."""
        if self._server is not None:
            self._loop.submit(self._close()).result()
        self._loop.stop(5.0)
        self._socket.close()

    async def _close(self) -> None:
        """Stop accepting, close every connection and let each one's task end."""
        assert self._server is not None
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)


def _connections_allowed(wanted_connections: int) -> int:
    """Return how many connections (at most ``wanted_connections``) the descriptors allow.

    Many systems start a process with a soft limit of 1024 descriptors and a far higher hard
    one: the soft limit is first raised to what the connections need, as far as allowed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = wanted_connections + 4 * _DESCRIPTOR_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted_connections
    room = soft - len(os.listdir("/proc/self/fd")) - _DESCRIPTOR_RESERVE
    return max(1, min(wanted_connections, room))


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log what asyncio reports (e.g. accept paused for lack of descriptors) in one line."""
    LOG.warning("%s: %s", context.get("message"), context.get("exception"))


def exposure_warning(host: str) -> str | None:
    """Return a warning when ``host`` makes the bridge reachable from other machines."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may be any interface
        loopback = False
    if loopback:
        return None
    return (
        f"serving on {host}: reachable from the network, without authentication "
        "(the bridge is read-only; bind 127.0.0.1 to keep it on this machine)"
    )
