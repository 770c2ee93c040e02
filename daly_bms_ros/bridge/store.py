"""The latest sample of each battery and how old it is, shared between threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from daly_bms_ros.protocol import BmsSample

#: The link of a battery whose node publishes its topics (the ROS bridge's only knowledge).
PUBLISHING = "publishing"
#: What that link is reported as once no sample came for longer than max_age.
SILENT = "silent: no message within max_age (is the node running?)"


@dataclass(frozen=True)
class Reading:
    """A battery's latest sample, when it arrived (monotonic s) and what the link said."""

    sample: BmsSample | None
    updated: float | None
    link: str


class SampleStore:
    """Latest sample per battery name; writers and readers may be in any thread."""

    def __init__(
        self,
        names: Sequence[str],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not names:
            raise ValueError("a store needs at least one battery name")
        self.names = tuple(names)
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._readings = {name: Reading(None, None, "no data yet") for name in self.names}
        #: Incremented by every update, so writers can tell whether anything changed.
        self.version = 0
        self._problems: dict[str, str] = {}

    def update(self, name: str, sample: BmsSample) -> None:
        """Record a fresh sample of battery ``name``."""
        with self._lock:
            self._readings[name] = Reading(sample, self._clock(), self._readings[name].link)
            self.version += 1

    def set_link(self, name: str, link: str) -> None:
        """Record the link state of battery ``name`` (e.g. "connected", "backoff: …")."""
        with self._lock:
            previous = self._readings[name]
            self._readings[name] = Reading(previous.sample, previous.updated, link)
            self.version += 1

    def report_problem(self, component: str, reason: str | None) -> None:
        """Record that an output (e.g. "data_dir") is failing, and why; None: it works again.

        A failing output makes the bridge unhealthy: its health check must not say "ok" while
        a tool reading its files sees nothing new.
        """
        with self._lock:
            if reason is None:
                self._problems.pop(component, None)
            else:
                self._problems[component] = reason

    def problems(self) -> dict[str, str]:
        """Return the outputs failing now, with their reasons."""
        with self._lock:
            return dict(self._problems)

    def get(self, name: str) -> Reading:
        """Return the latest reading of ``name`` (KeyError for an unknown name)."""
        with self._lock:
            return self._readings[name]

    def age(self, reading: Reading) -> float | None:
        """Seconds since the reading arrived; None when there was none."""
        return None if reading.updated is None else self._clock() - reading.updated
