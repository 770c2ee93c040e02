"""Answer as a recorded BMS did: each request with the recorded answer to the same request.

A capture (``daly-bms record``, the node's ``record_path``, a converted nRF Connect log) is cut
into steps: a request, the notifications that followed it until the next request (garbage,
cut-short and duplicated answers included, each at its delay), and whether the link went down
meanwhile. A request is answered by the next step that holds the same request, in order, so a
driver that asks again after a recorded timeout meets the recorded answer to its resend. A
request the rest of the capture does not hold is an error: it is reported and left
unanswered, never answered with invented values.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from daly_bms_ros.capture.format import (
    CONNECTION,
    DISCONNECT,
    NOTIFICATION,
    REQUEST,
    CaptureError,
    CaptureEvent,
)
from daly_bms_ros.sim.peripheral import Recorded


@dataclass
class Step:
    """One recorded request and what followed it."""

    request: bytes
    at: float
    notifications: list[tuple[float, bytes]] = field(default_factory=list)
    disconnect_after: float | None = None

    def answer(self, fast: bool) -> Recorded:
        """Return the recorded answer; ``fast``: with every delay 0."""
        return Recorded(
            tuple((0.0 if fast else delay, data) for delay, data in self.notifications),
            None if self.disconnect_after is None else 0.0 if fast else self.disconnect_after,
        )


def steps_of(events: Iterable[CaptureEvent]) -> list[Step]:
    """Cut a capture into steps (CaptureError when it holds no request)."""
    steps: list[Step] = []
    for event in events:
        if event.kind == REQUEST:
            steps.append(Step(event.data, event.t))
        elif not steps or event.kind == CONNECTION:
            continue  # before the first request: nothing was asked
        elif event.kind == NOTIFICATION and steps[-1].disconnect_after is None:
            steps[-1].notifications.append((event.t - steps[-1].at, event.data))
        elif event.kind == DISCONNECT and steps[-1].disconnect_after is None:
            steps[-1].disconnect_after = event.t - steps[-1].at
    if not steps:
        raise CaptureError("the capture holds no request to replay")
    return steps


class ReplayResponder:
    """Answer requests from the steps of a capture, in order (``loop``: again from the start)."""

    def __init__(self, steps: list[Step], fast: bool = False, loop: bool = False) -> None:
        self._steps = steps
        self._fast = fast
        self._loop = loop
        self._next = 0
        #: Requests the capture did not hold where they came.
        self.unmatched = 0

    def __call__(self, request: bytes) -> Recorded | None:
        """Return the recorded answer to ``request``, or None (reported) if there is none."""
        for index in self._candidates():
            if self._steps[index].request == request:
                self._next = index + 1
                return self._steps[index].answer(self._fast)
        self.unmatched += 1
        where = "after its end" if self._next >= len(self._steps) else f"from step {self._next}"
        print(
            f"daly-bms-sim: replay: request {request.hex()} is not in the capture {where}; "
            "not answered",
            file=sys.stderr,
            flush=True,
        )
        return None

    def _candidates(self) -> Iterable[int]:
        yield from range(self._next, len(self._steps))
        if self._loop:
            yield from range(self._next)
