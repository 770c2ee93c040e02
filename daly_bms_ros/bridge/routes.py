"""What the bridge answers to each path: JSON views, the live page, ``/metrics``.

Paths: ``/`` the live page (its files under ``/page/``); ``/metrics`` for Prometheus;
``/health``; ``/batteries``, every battery keyed by name (what the page polls); ``/bms``,
``/bms/summary``, ``/bms/formatted`` (plain text), ``/bms/cells``, ``/bms/temps``,
``/bms/history`` for the battery when there is one; ``/bms/<name>/…`` for each battery by name
(and ``/bms`` lists them all when there are several). Answers are built from memory per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from daly_bms_ros.bridge.metrics import CONTENT_TYPE, exposition, registry_of
from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.bridge.views import VIEWS, all_batteries, battery_view, health, history_view

ALLOWED_METHODS = "GET, HEAD"
HISTORY_VIEW = "history"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}


@dataclass(frozen=True)
class Payload:
    """An answer that is neither JSON nor plain text: its media type and bytes."""

    content_type: str
    data: bytes


def _page_files() -> dict[str, Payload]:
    """Read the page's files from the package once, by URL path.

    No path from a request is ever joined to a directory: a request names one of these or
    gets 404.
    """
    files: dict[str, Payload] = {}
    folders = [(resources.files("daly_bms_ros.bridge") / "page", "/page")]
    while folders:
        folder, url = folders.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                folders.append((entry, f"{url}/{entry.name}"))
                continue
            suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
            if suffix in _CONTENT_TYPES:
                files[f"{url}/{entry.name}"] = Payload(_CONTENT_TYPES[suffix], entry.read_bytes())
    files["/"] = files["/page/index.html"]
    return files


class Site:
    """Every answer the bridge gives about one store."""

    def __init__(self, store: SampleStore) -> None:
        self.store = store
        self._metrics = registry_of(store)
        self._files = _page_files()

    def route(self, target: str) -> tuple[HTTPStatus, Any]:
        """Status and body (dict: JSON, str: plain text, Payload) of a GET of ``target``."""
        try:
            path = urlsplit(target).path
        except ValueError as error:  # e.g. "//[x/health": an unclosed IPv6 bracket
            return HTTPStatus.BAD_REQUEST, {
                "error": "bad_request",
                "detail": f"bad target: {error}",
            }
        if path in self._files:
            return HTTPStatus.OK, self._files[path]
        parts = [part for part in path.split("/") if part]
        if parts == ["health"]:
            return health(self.store)
        if parts == ["metrics"]:
            return HTTPStatus.OK, Payload(CONTENT_TYPE, exposition(self._metrics))
        if parts == ["batteries"]:
            return HTTPStatus.OK, {"max_age_s": self.store.max_age, **all_batteries(self.store)[1]}
        if not parts or parts[0] != "bms":
            return _not_found("no such path; paths are " + _paths())
        return self._battery(parts[1:])

    def _battery(self, rest: list[str]) -> tuple[HTTPStatus, Any]:
        names = self.store.names
        single = len(names) == 1
        views = (*VIEWS, HISTORY_VIEW)
        if rest and rest[0] in names and not (single and rest[0] in views):
            name, rest = rest[0], rest[1:]
        elif single:
            name = names[0]
        elif not rest:
            return all_batteries(self.store)
        else:
            return _not_found(
                f"several batteries: use /bms/<battery>/<view>; batteries are {', '.join(names)}"
            )
        view = rest[0] if rest else ""
        if len(rest) > 1 or view not in views:
            return _not_found(f"no such view {'/'.join(rest)!r}; paths are {_paths()}")
        if view == HISTORY_VIEW:
            return history_view(self.store, name)
        return battery_view(self.store, name, view)

    def answer(self, method: str, target: str) -> tuple[HTTPStatus, Any]:
        """Status and body for a request: ``route`` for GET and HEAD, 405 for any other."""
        if method in ("GET", "HEAD"):
            return self.route(target)
        return HTTPStatus.METHOD_NOT_ALLOWED, {
            "error": "method_not_allowed",
            "detail": f"read-only: allowed are {ALLOWED_METHODS}",
        }


def _paths() -> str:
    views = ", ".join(view or "(none)" for view in (*VIEWS, HISTORY_VIEW))
    return (
        "/ (the page), /metrics, /health, /batteries, /bms, /bms/<view>, "
        f"/bms/<battery>/<view>; views: {views}"
    )


def _not_found(detail: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return HTTPStatus.NOT_FOUND, {"error": "not_found", "detail": detail}
