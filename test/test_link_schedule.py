"""The poll schedule and the link's states, with a clock the test turns: no sleeps, no loop."""

from __future__ import annotations

import pytest

from daly_bms_ros.link.schedule import PollSchedule
from daly_bms_ros.link.supervisor import TRANSITIONS, LinkState


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def poll(schedule: PollSchedule, clock: Clock, taking: float) -> None:
    """Wait for the next poll, make one that takes ``taking`` seconds."""
    clock.now += schedule.wait()
    schedule.begin()
    clock.now += taking
    schedule.polled()


def test_polls_keep_a_fixed_rate_whatever_each_takes() -> None:
    clock = Clock()
    schedule = PollSchedule(1.0, clock)
    starts = []
    for taking in (0.2, 0.7, 0.1, 0.9):
        clock.now += schedule.wait()
        starts.append(clock.now)
        schedule.begin()
        clock.now += taking
        schedule.polled()
    assert starts == [100.0, 101.0, 102.0, 103.0]
    assert schedule.missed == 0


def test_a_poll_that_overruns_skips_the_ticks_it_covered() -> None:
    clock = Clock()
    schedule = PollSchedule(1.0, clock)
    poll(schedule, clock, 2.5)  # 100 .. 102.5: the ticks at 101 and 102 are gone
    assert schedule.missed == 2
    assert schedule.wait() == pytest.approx(0.5)  # the next at 103, not at once


def test_a_new_interval_counts_from_the_last_poll() -> None:
    clock = Clock()
    schedule = PollSchedule(5.0, clock)
    poll(schedule, clock, 0.1)  # at 100; the next due at 105
    clock.now = 101.0
    schedule.reschedule(0.5)  # 100 + 0.5 is past: due now
    assert schedule.wait() == 0.0
    schedule.reschedule(10.0)
    assert schedule.wait() == pytest.approx(9.0)  # 100 + 10


def test_an_interval_changed_during_a_poll_counts_from_that_poll() -> None:
    clock = Clock()
    schedule = PollSchedule(1.0, clock)
    schedule.begin()  # the poll due at 100 starts
    clock.now = 100.3
    schedule.reschedule(5.0)
    clock.now = 100.4
    schedule.polled()
    assert schedule.wait() == pytest.approx(4.6)  # 105: five seconds after the poll began


def test_turns_that_take_longer_than_the_interval_stretch_it_without_missing_polls() -> None:
    clock = Clock()
    schedule = PollSchedule(1.0, clock)
    for _turn in range(3):
        clock.now += schedule.wait()
        schedule.begin()
        clock.now += 2.0  # a turn: waiting for the shared adapter, connecting, reading
        schedule.sampled()
        schedule.polled(skip_missed=False)
    assert schedule.missed == 0
    assert schedule.stretched == pytest.approx(2.0)
    assert schedule.wait() == 0.0


def test_a_restart_makes_a_poll_due_now() -> None:
    clock = Clock()
    schedule = PollSchedule(30.0, clock)
    poll(schedule, clock, 0.1)
    assert schedule.wait() > 29
    schedule.restart()
    assert schedule.wait() == 0.0


def test_every_state_can_stop_and_only_stopped_is_final() -> None:
    for state, onward in TRANSITIONS.items():
        assert state is LinkState.STOPPED or LinkState.STOPPED in onward
    assert TRANSITIONS[LinkState.STOPPED] == frozenset()
    # A link taken in turns never shows CONNECTED; one held never shows IN_TURN after it.
    assert LinkState.IN_TURN not in TRANSITIONS[LinkState.CONNECTED]
    assert LinkState.CONNECTED not in TRANSITIONS[LinkState.IN_TURN]
