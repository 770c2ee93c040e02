"""A read-only HTTP server over a SampleStore: GET/HEAD only, JSON errors, loopback by default.

Paths: ``/health``; ``/bms``, ``/bms/summary``, ``/bms/formatted`` (plain text), ``/bms/cells``,
``/bms/temps`` for the battery when there is one; ``/bms/<name>/…`` for each battery by name
(and ``/bms`` lists them all when there are several). Answers are built from memory per request.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.bridge.views import VIEWS, all_batteries, battery_view, health

LOG = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
ALLOWED_METHODS = "GET, HEAD"


def _not_found(detail: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return HTTPStatus.NOT_FOUND, {"error": "not_found", "detail": detail}


def route(store: SampleStore, target: str) -> tuple[HTTPStatus, Any]:
    """Status and body (dict for JSON, str for plain text) of a GET of ``target``."""
    parts = [part for part in urlsplit(target).path.split("/") if part]
    paths = "/health, /bms, /bms/<view>, /bms/<battery>/<view>; views: " + ", ".join(
        view or "(none)" for view in VIEWS
    )
    if parts == ["health"]:
        return health(store)
    if not parts or parts[0] != "bms":
        return _not_found(f"no such path; paths are {paths}")
    rest = parts[1:]
    single = len(store.names) == 1
    if rest and rest[0] in store.names and not (single and rest[0] in VIEWS):
        name, rest = rest[0], rest[1:]
    elif single:
        name = store.names[0]
    elif not rest:
        return all_batteries(store)
    else:
        return _not_found(
            f"several batteries: use /bms/<battery>/<view>; batteries are {', '.join(store.names)}"
        )
    view = rest[0] if rest else ""
    if len(rest) > 1 or view not in VIEWS:
        return _not_found(f"no such view {'/'.join(rest)!r}; paths are {paths}")
    return battery_view(store, name, view)


class _Handler(BaseHTTPRequestHandler):
    """Serve ``route`` answers; refuse every method but GET and HEAD with 405."""

    server: BridgeHttpServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without this, Nagle's algorithm holds the body
    # back until the client's delayed ACK, 40 ms on Linux, on a kept-alive connection.
    disable_nagle_algorithm = True

    def _answer(self, status: HTTPStatus, body: Any, send_body: bool = True) -> None:
        if isinstance(body, str):
            data, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if status is HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ALLOWED_METHODS)
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(*route(self.server.store, self.path))

    def do_HEAD(self) -> None:
        status, body = route(self.server.store, self.path)
        self._answer(status, body, send_body=False)

    def _refuse(self) -> None:
        # The body of a refused request is not read: close so it is not taken for a request.
        self.close_connection = True
        self._answer(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"error": "method_not_allowed", "detail": f"read-only: allowed are {ALLOWED_METHODS}"},
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815 (http.server names)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s " + format, self.address_string(), *args)


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


class BridgeHttpServer(ThreadingHTTPServer):
    """The HTTP server of one store, served from a thread of its own."""

    daemon_threads = True

    def __init__(self, store: SampleStore, host: str = DEFAULT_HOST, port: int = 8080) -> None:
        super().__init__((host, port), _Handler)
        self.store = store
        self._host = host
        self._thread = threading.Thread(
            target=self.serve_forever, name="daly_bms_http", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, with the port actually bound (useful with port 0)."""
        return f"http://{self._host}:{self.server_port}"

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join()
        self.server_close()
