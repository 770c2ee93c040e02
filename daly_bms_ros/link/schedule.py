"""When the next poll is due: fixed-rate polling as arithmetic over a clock the caller gives.

No sleeping and no event loop: the supervisor asks how long to wait and says when a poll was
made; tests drive it with a clock of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class PollSchedule:
    """Polls at a fixed rate: each due one interval after the one before, not after its end.

    A poll that overruns skips the ticks it covered (counted in ``missed``) rather than firing
    them back to back; a new interval counts from the last poll, so a shorter one may be due at
    once. ``restart`` makes a poll due now (a new connection, the end of a backoff).
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._due = clock()
        #: When the last poll begun was due.
        self._last: float | None = None
        self._previous_sample: float | None = None
        #: Ticks skipped because a poll overran them.
        self.missed = 0
        #: Seconds between the last two samples where that is over 1.5 intervals, else None.
        self.stretched: float | None = None

    def restart(self) -> None:
        """Make the next poll due now."""
        self._due = self._clock()

    def wait(self) -> float:
        """Seconds until the next poll is due (0 when it is due or past)."""
        return max(self._due - self._clock(), 0.0)

    def begin(self) -> None:
        """Note that the poll that is due starts now."""
        self._last = self._due

    def polled(self, skip_missed: bool = True) -> None:
        """Note the end of the poll begun; the next is due one interval after it was due.

        ``skip_missed``: ticks already past are skipped and counted (a link held for polling);
        False lets the next be due now instead, uncounted (a link taken in turns, whose
        turns may take longer than the interval by design: told by ``stretched``).
        """
        now = self._clock()
        last = now if self._last is None else self._last
        self._due = last + self.interval
        if self._due >= now:
            return
        if skip_missed:
            skipped = int((now - self._due) // self.interval) + 1
            self.missed += skipped
            self._due += skipped * self.interval
        else:
            self._due = now

    def sampled(self) -> None:
        """Note a sample: ``stretched`` tells when samples come further apart than planned."""
        now = self._clock()
        if self._previous_sample is not None:
            taken = now - self._previous_sample
            self.stretched = taken if taken > self.interval * 1.5 else None
        self._previous_sample = now

    def reschedule(self, interval: float) -> None:
        """Take a new interval at once: the next poll is due one new interval after the last.

        A poll under way when the interval changes counts as the last: the next is due one
        new interval after it.
        """
        self.interval = interval
        now = self._clock()
        self._due = now if self._last is None else max(self._last + interval, now)
