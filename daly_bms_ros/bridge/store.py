"""The latest sample of each battery, how old it is, and a recent history, shared between threads.

The history (pack voltage, current and SOC over ``history_window`` seconds, at most one point per
``history_step`` over time) is what the bridge's page charts: kept in memory, bounded whatever the
poll rate, lost on restart (a time-series database is Prometheus's job, through ``/metrics``).
Points are due a step apart, each with half a step's tolerance: polls at the step with a little
jitter keep every sample (a strict "a step since the last point" dropped one in four at 1 s).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from daly_bms_ros.protocol import BmsSample
from daly_bms_ros.protocol.model import json_ready

#: The link of a battery whose node publishes its topics (the ROS bridge's only knowledge).
PUBLISHING = "publishing"
#: The link of a battery nothing was heard of yet.
NO_DATA_YET = "no data yet"
#: What that link is reported as once no sample came for longer than max_age.
SILENT = "silent: no message within max_age (is the node running?)"


@dataclass(frozen=True)
class LinkCounters:
    """What the link to a battery counted since its reader started."""

    reconnects: int = 0
    #: Frames dropped, by reason (bad CRC, wrong length, …).
    rejected: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    """A battery's latest sample, when it arrived (monotonic s) and what the link said."""

    sample: BmsSample | None
    updated: float | None
    link: str
    #: None while nobody told them (the ROS bridge learns them from /diagnostics).
    counters: LinkCounters | None = None
    #: What stays the battery's own (its serial number, else its port and board, its
    #: address); None while its reader does not know it yet.
    identity: str | None = None
    #: The link as the battery's node reported it (the ROS bridge: from /diagnostics) while
    #: it delivers nothing, e.g. "backoff: BMS not found", and when (monotonic s).
    reported_link: str | None = None
    reported_at: float | None = None


@dataclass(frozen=True)
class History:
    """Recent points of one battery, oldest first: wall time (s since the epoch) and values."""

    times: tuple[float, ...]
    pack_voltage: tuple[float | None, ...]
    current: tuple[float | None, ...]
    soc: tuple[float | None, ...]


class SampleStore:
    """Latest sample per battery name; writers and readers may be in any thread."""

    def __init__(
        self,
        names: Sequence[str],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
        history_window: float = 3600.0,
        history_step: float = 1.0,
    ) -> None:
        if not names:
            raise ValueError("a store needs at least one battery name")
        self.names = tuple(names)
        self.max_age = max_age
        self.history_window = history_window
        self._history_step = history_step
        self._clock = clock
        self._lock = threading.Lock()
        self._readings = {name: Reading(None, None, NO_DATA_YET) for name in self.names}
        points = max(1, math.ceil(history_window / history_step))
        self._history: dict[str, deque[tuple[float, float | None, float | None, float | None]]] = {
            name: deque(maxlen=points) for name in self.names
        }
        #: When each battery's next history point is due (s since the epoch).
        self._history_due: dict[str, float] = {}
        #: Incremented by every update, so writers can tell whether anything changed.
        self.version = 0
        self._problems: dict[str, str] = {}

    def update(self, name: str, sample: BmsSample, identity: str | None = None) -> None:
        """Record a fresh sample of battery ``name``, and its ``identity`` if it is known."""
        status = sample.status
        with self._lock:
            reading = self._readings[name]
            self._readings[name] = replace(
                reading,
                sample=sample,
                updated=self._clock(),
                identity=reading.identity if identity is None else identity,
            )
            self.version += 1
            history, at = self._history[name], sample.received_at
            if history and at < history[-1][0]:
                history.clear()  # the clock went back (set, or a replay looping): start over
            due = self._history_due.get(name) if history else None
            if due is None or at >= due - self._history_step / 2:
                # The next point is due a step after this one's due time (never sooner than
                # half a step after this point): one point per step in the long run.
                self._history_due[name] = max(
                    at + self._history_step,
                    (at if due is None else due) + self._history_step,
                )
                history.append(
                    (
                        sample.received_at,
                        json_ready(status.pack_voltage),
                        json_ready(status.current),
                        json_ready(status.soc),
                    )
                )

    def set_link(self, name: str, link: str) -> None:
        """Record the link state of battery ``name`` (e.g. "connected", "backoff: …")."""
        with self._lock:
            self._readings[name] = replace(self._readings[name], link=link)
            self.version += 1

    def set_reported_link(self, name: str, link: str | None) -> None:
        """Record the link of ``name`` as its node reports it; None: it delivers samples."""
        with self._lock:
            self._readings[name] = replace(
                self._readings[name], reported_link=link, reported_at=self._clock()
            )

    def set_counters(self, name: str, counters: LinkCounters) -> None:
        """Record what the link of battery ``name`` counted (reconnects, rejected frames)."""
        with self._lock:
            self._readings[name] = replace(self._readings[name], counters=counters)

    def history(self, name: str) -> History:
        """Return the recent points of ``name`` (KeyError for an unknown name)."""
        with self._lock:
            points = tuple(self._history[name])
        if not points:
            return History((), (), (), ())
        times, voltages, currents, socs = zip(*points, strict=True)
        return History(times, voltages, currents, socs)

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

    def link(self, reading: Reading, stale: bool) -> str:
        """Return the link to tell: what the node reports once messages stopped, if it does.

        Messages that stopped say nothing of themselves: "publishing" holds while they are
        fresh; after, the node's own report of its link (fresh too) says why, else SILENT.
        """
        if not stale or reading.link not in (PUBLISHING, NO_DATA_YET):
            return reading.link
        reported_age = None if reading.reported_at is None else self._clock() - reading.reported_at
        if reading.reported_link and reported_age is not None and reported_age <= self.max_age:
            return reading.reported_link
        return SILENT if reading.link == PUBLISHING else reading.link
