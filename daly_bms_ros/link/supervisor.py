"""Keep one BMS link alive: connect, poll at a fixed rate, reconnect with capped backoff.

``BmsLink.run`` never raises for link trouble: every failure becomes a state in ``LinkStatus``
(with its text in ``last_error``) and a wait before the next attempt, so the owner (the ROS node,
the CLI) simply runs it until ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import gc
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from daly_bms_ros.link.client import (
    DalyClient,
    WriteFailedError,
    WriteOutcomeUnknownError,
    WriteResult,
)
from daly_bms_ros.link.schedule import PollSchedule
from daly_bms_ros.link.transport import BmsTransport, LinkLostError, TransportError
from daly_bms_ros.protocol import BmsSample, DalyProtocolError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
#: Polls that may fail in a row before the link is dropped and built anew.
FAILED_POLLS_BEFORE_RECONNECT = 3
#: How long a write whose link went waits for a link to read it back over: a reconnect takes
#: a search, a connection and a subscription, a few seconds with the backoff's first delays.
WRITE_VERIFY_TIMEOUT_S = 20.0
#: How often a write of unknown outcome is read again while the link is up but the BMS silent.
VERIFY_RETRY_INTERVAL_S = 1.0


class LinkState(enum.Enum):
    """Where the link is."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    #: Between two turns on an adapter shared by more batteries than it holds links: no link
    #: is held, by design, and the last sample came at its turn.
    IN_TURN = "in_turn"


#: Every move the link makes, in one place. A link held for polling goes CONNECTING ->
#: CONNECTED until it is lost, then BACKOFF -> CONNECTING again; a link taken in turns goes
#: CONNECTING -> IN_TURN with its first sample and stays IN_TURN from turn to turn, until a few
#: turns in a row fail (BACKOFF). A stop ends any state.
TRANSITIONS: dict[LinkState, frozenset[LinkState]] = {
    LinkState.CONNECTING: frozenset(
        (LinkState.CONNECTED, LinkState.IN_TURN, LinkState.BACKOFF, LinkState.STOPPED)
    ),
    LinkState.CONNECTED: frozenset((LinkState.BACKOFF, LinkState.STOPPED)),
    LinkState.IN_TURN: frozenset((LinkState.BACKOFF, LinkState.STOPPED)),
    LinkState.BACKOFF: frozenset((LinkState.CONNECTING, LinkState.STOPPED)),
    LinkState.STOPPED: frozenset(),
}


#: Seconds between two collections after turns, at the least: a turn a second per battery
#: would otherwise cost a full collection each; the garbage of a few seconds of turns waits.
TURN_COLLECTION_INTERVAL = 5.0


class ConnectionGarbage:
    """Free what ended connections left, before the next connection allocates its own.

    bleak's client, its D-Bus connection and the services it found hold one another in
    reference cycles, freed only by a full collection, which Python runs seldom: until then
    each new connection took fresh memory, and the resident memory crept up under frequent
    reconnects and turns (bench/soak.py). Collecting only the young generations makes it
    worse (it promotes them). A full collection takes milliseconds; one serves every link of
    the process, so they are spaced out by ``min_interval``.
    """

    def __init__(self) -> None:
        self._last = -math.inf

    def collect(self, min_interval: float = 0.0) -> None:
        """Run a full collection, unless one ran less than ``min_interval`` seconds ago."""
        now = time.monotonic()
        if now - self._last >= min_interval:
            self._last = now
            gc.collect()


#: The process's one: a collection serves every link.
CONNECTION_GARBAGE = ConnectionGarbage()


class LinkTurns:
    """The links of one Bluetooth adapter or serial bus, taken in turn by more batteries.

    Bluetooth adapters hold a few links at once (ESP32 stacks three; many dongles and the
    Raspberry Pi's chip fewer than the packs of a large robot); an RS485 bus carries one
    conversation at a time, its boards asked one after another. At most ``limit`` batteries
    are connected at a time, each for one sample, then the next.
    """

    def __init__(
        self, medium: str, limit: int, batteries: int, closed: asyncio.Event | None = None
    ) -> None:
        #: What is shared, for diagnostics: "adapter hci0", "serial port /dev/ttyUSB0".
        self.medium = medium
        self.limit = limit
        self.batteries = batteries
        self._slots = asyncio.Semaphore(limit)
        #: Set when the process stops: every wait for a turn, and every turn, ends then.
        self.closed = closed or asyncio.Event()

    @property
    def description(self) -> str:
        """The schedule, for diagnostics."""
        return (
            f"{self.medium} shared by {self.batteries} batteries, at most {self.limit} "
            "connected at once: each connects for its samples in turn"
        )

    def turn(self) -> asyncio.Semaphore:
        """Hold for one turn: ``async with turns.turn(): ...``."""
        return self._slots


class SearchLock(asyncio.Lock):
    """The searches of one adapter's batteries, one at a time, until the process stops.

    Its ``closed`` event ends the search under way and every wait for the lock: a process
    that stops must not let each absent battery run a whole search in turn (seconds each).
    """

    def __init__(self, closed: asyncio.Event | None = None) -> None:
        super().__init__()
        self.closed = closed or asyncio.Event()


class LinkStoppedError(Exception):
    """The link was stopped while it waited (for a search, a turn, a connection, a read)."""


@dataclass(frozen=True)
class LinkConfig:
    """How the link runs: its timing (seconds), and what the BMS speaks."""

    poll_interval: float = 1.0
    request_timeout: float = 2.0
    request_retries: int = 2
    reconnect_delay_min: float = 1.0
    reconnect_delay_max: float = 30.0
    #: Turn the sign of current and power round (firmware that reports charging as negative).
    invert_current: bool = False
    #: Longest hold of a shared adapter's link for one turn (connect, read, disconnect).
    turn_timeout: float = 20.0
    #: The protocol the BMS speaks (client.PROTOCOLS), "auto" to find it out.
    protocol: str = "auto"
    #: An A5 BMS's board number on a shared RS485 bus (1: alone on its port).
    board: int = 1


@dataclass(frozen=True)
class LinkStatus:
    """A snapshot of the link for logs and diagnostics."""

    state: LinkState
    device: str
    reconnects: int
    consecutive_failures: int
    last_error: str
    rejected: dict[str, int]
    requests: int
    notifications: int
    timeouts: int
    missed_polls: int
    last_sample_at: float | None
    #: Polls that failed in a row on this connection (the link is rebuilt after a few).
    failed_polls: int = 0
    #: Address of the BMS once found ("" before).
    address: str = ""
    device_information: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: How the link is scheduled on a shared adapter ("" when it holds its link).
    schedule: str = ""
    #: Seconds between the last two samples, when it is longer than the poll interval.
    stretched_interval: float | None = None

    @property
    def summary(self) -> str:
        """The state, with the reason when the link is waiting to reconnect."""
        if self.state is LinkState.BACKOFF and self.last_error:
            return f"{self.state.value}: {self.last_error}"
        return self.state.value


def backoff_delay(failures: int, config: LinkConfig) -> float:
    """Capped exponential delay with jitter (0.5x..1x) so many robots do not retry in step."""
    ceiling = min(
        config.reconnect_delay_max, config.reconnect_delay_min * 2 ** max(failures - 1, 0)
    )
    return random.uniform(ceiling / 2, ceiling)


class BmsLink:
    """Supervise one BMS: each fresh sample goes to ``on_sample``, each change to ``on_status``."""

    def __init__(
        self,
        transport: BmsTransport,
        config: LinkConfig,
        on_sample: Callable[[BmsSample], None],
        on_status: Callable[[LinkStatus], None],
        turns: LinkTurns | None = None,
        search_lock: SearchLock | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._turns = turns
        self._clock = clock
        self._schedule = PollSchedule(config.poll_interval, clock)
        #: Shared with the other packs on the adapter: their searches one at a time.
        self._search_lock = search_lock
        self._config = config
        self._on_sample = on_sample
        self._on_status = on_status
        self._client = DalyClient(
            transport,
            config.request_timeout,
            config.request_retries,
            config.invert_current,
            config.protocol,
            config.board,
        )
        self._state = LinkState.CONNECTING
        self._lost = asyncio.Event()
        self._stopping = asyncio.Event()
        #: Its own stop, and the close of what it shares (the process stopping).
        self._stops = (
            self._stopping,
            *(shared.closed for shared in (turns, search_lock) if shared is not None),
        )
        #: Set when the poll interval changes, so a wait for the next poll ends at once.
        self._rescheduled = asyncio.Event()
        #: Set each time a link comes up (a write of unknown outcome waits for it).
        self._link_up = asyncio.Event()
        self._reconnects = 0
        #: Failed attempts in a row (connections, polls, turns): the backoff grows with them.
        self._failures = 0
        self._last_error = ""
        self._last_sample_at: float | None = None
        #: Polls (or turns) that failed in a row: a few make the link count as down.
        self._failed_polls = 0
        self._connected_once = False
        self._device_information: dict[str, str] = {}
        transport.set_callbacks(self._client.on_notify, self._lost.set)

    def status(self) -> LinkStatus:
        """Snapshot of the link now."""
        return LinkStatus(
            state=self._state,
            device=self._transport.description,
            reconnects=self._reconnects,
            consecutive_failures=self._failures,
            last_error=self._last_error,
            rejected={reason.value: count for reason, count in self._client.rejected.items()},
            requests=self._client.requests,
            notifications=self._client.notifications,
            timeouts=self._client.timeouts,
            missed_polls=self._schedule.missed,
            last_sample_at=self._last_sample_at,
            device_information=self._device_information,
            failed_polls=self._failed_polls,
            address=self._client.address,
            schedule="" if self._turns is None else self._turns.description,
            stretched_interval=self._schedule.stretched if self._turns is not None else None,
        )

    def set_poll_interval(self, seconds: float) -> None:
        """Change the poll interval at once, not after the old interval runs out.

        The next poll is due one new interval after the last one (now, if that is past).
        Call in the loop thread.
        """
        self._config = dataclasses.replace(self._config, poll_interval=seconds)
        self._schedule.reschedule(seconds)
        self._rescheduled.set()

    def _enter(self, state: LinkState) -> None:
        """Move to ``state`` (one of TRANSITIONS) and tell the owner.

        Once stopped the link stays so: an attempt that ends as the stop comes (a turn's
        sample, a connection made) moves it nowhere.
        """
        if self._state is LinkState.STOPPED:
            return
        if state is not self._state and state not in TRANSITIONS[self._state]:
            raise RuntimeError(f"the link cannot go from {self._state.value} to {state.value}")
        self._state = state
        if state is LinkState.CONNECTED:
            self._link_up.set()
        self._on_status(self.status())

    async def run(self) -> None:
        """Connect, poll, reconnect, until ``stop``: one loop, held link or turns alike.

        Each attempt is a connection polled until it is lost (a link of its own) or one turn
        (an adapter or bus shared by more batteries than it holds links: ``LinkTurns``). A
        failed or lost link waits a growing backoff; turns wait for the next poll, and back off
        only after a few failed turns in a row.
        """
        while not self._stop_requested():
            if self._state is not LinkState.IN_TURN:
                self._enter(LinkState.CONNECTING)
            try:
                await self._unless_stopped(self._attempt())
            except LinkStoppedError:
                pass
            except asyncio.TimeoutError as error:  # a turn out of its time, a held link's wait
                self._failed(str(error) or self._timed_out())
            except (TransportError, DalyProtocolError, OSError) as error:
                self._failed(str(error) or type(error).__name__)
            except Exception as error:
                self._failed(f"unexpected {type(error).__name__}: {error}")
                LOG.exception("BMS link failure")
            if self._turns is None:
                await self._transport.disconnect()
                self._client.detach("stopped" if self._stop_requested() else self._last_error)
            if self._stop_requested():
                break
            if self._turns is None or self._failed_polls >= FAILED_POLLS_BEFORE_RECONNECT:
                CONNECTION_GARBAGE.collect()
                self._enter(LinkState.BACKOFF)
                await self._sleep(backoff_delay(self._failures, self._config))
                self._schedule.restart()
            else:
                self._schedule.polled(skip_missed=False)
                await self._wait_for_next_poll()
        self._enter(LinkState.STOPPED)

    async def _attempt(self) -> None:
        """One attempt: a connection polled until lost, or one turn on a shared medium."""
        if self._turns is None:
            await self._connect()
            await self._poll_until_lost()
        else:
            self._schedule.begin()
            await self._find()  # holding no link: an absent pack never keeps the others waiting
            async with self._turns.turn():
                if self._stop_requested():
                    raise LinkStoppedError
                await asyncio.wait_for(self._take_turn(), self._config.turn_timeout)
            self._failures = self._failed_polls = 0
            self._enter(LinkState.IN_TURN)

    def _timed_out(self) -> str:
        """Why an attempt that ran out of time failed."""
        if self._turns is not None:
            return f"the turn took over {self._config.turn_timeout} s"
        return "TimeoutError"

    def _failed(self, error: str) -> None:
        """Count a failed attempt; a turn's failure is also a failed poll (a few: link down)."""
        self._failures += 1
        self._last_error = error
        if self._turns is not None:
            self._failed_polls += 1
            self._on_status(self.status())

    async def _wait_for_next_poll(self) -> None:
        """Wait until the next poll is due; a new interval takes effect at once."""
        while True:
            self._rescheduled.clear()
            await self._sleep(self._schedule.wait(), self._rescheduled)
            if not self._rescheduled.is_set():
                return

    def _stop_requested(self) -> bool:
        return any(stop.is_set() for stop in self._stops)

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work``; a stop meanwhile cancels it (its clean-up done): LinkStoppedError.

        A search for an absent BMS, a wait for the adapter's search or a turn, a connection,
        a read may each take seconds: a stop waits for none of them.
        """
        if self._stop_requested():
            work.close()
            raise LinkStoppedError
        task = asyncio.ensure_future(work)
        stops = [asyncio.ensure_future(stop.wait()) for stop in self._stops]
        try:
            await asyncio.wait([task, *stops], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for stop in stops:
                stop.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait([task])  # its clean-up: a scan ended, a link closed
        if task.cancelled():
            raise LinkStoppedError
        return task.result()

    async def _find(self) -> None:
        """Search for the BMS, one search at a time where the adapter is shared."""
        async with self._search_lock or contextlib.nullcontext():
            if self._stop_requested():  # the lock came with the stop: no search after it
                raise LinkStoppedError
            await self._transport.find()

    async def _connect(self) -> None:
        self._lost.clear()
        if self._search_lock is not None:
            await self._find()  # the connect then uses what the search found
        await self._transport.connect()
        self._client.attach()
        if self._connected_once:
            self._reconnects += 1
        self._connected_once = True
        self._enter(LinkState.CONNECTED)

    async def _take_turn(self) -> None:
        """Connect, read one sample (handed on at once), the device information once, disconnect.

        Per-device knowledge (protocol, status read, settings) is kept from turn to turn: a turn
        costs the status read alone.
        """
        try:
            self._lost.clear()
            await self._transport.connect()
            self._client.attach(same_device=self._connected_once)
            self._connected_once = True
            self._sampled(await self._client.read_sample())
            if not self._device_information:
                self._device_information = await self._client.device_information()
        finally:
            await self._transport.disconnect()
            self._client.detach("its turn ended")
            self._lost.clear()  # the end of its own turn, not a loss
            CONNECTION_GARBAGE.collect(TURN_COLLECTION_INTERVAL)

    async def _poll_until_lost(self) -> None:
        """Poll at a fixed rate (``PollSchedule``) until the link is lost or polls keep failing."""
        self._failed_polls = 0
        self._schedule.restart()
        information_read = False
        while not self._stop_requested():
            if self._lost.is_set() or not self._transport.is_connected:
                raise LinkLostError("the BMS closed the link")
            self._schedule.begin()
            try:
                sample = await self._client.read_sample()
            except LinkLostError:
                raise  # no use asking again over a link that is gone: reconnect now
            except (TransportError, DalyProtocolError) as error:
                self._failed_polls += 1
                self._last_error = str(error)
                self._on_status(self.status())
                if self._failed_polls >= FAILED_POLLS_BEFORE_RECONNECT:
                    raise
            else:
                if self._lost.is_set():
                    raise LinkLostError("the BMS closed the link during a read")
                self._failed_polls = 0
                self._failures = 0
                self._sampled(sample)
                if not information_read:
                    # Once per connection (firmware may change while away), once the variant
                    # is known, and after the first sample so that it never delays one.
                    self._device_information = await self._client.device_information()
                    information_read = True
                self._on_status(self.status())
            self._schedule.polled()
            await self._wait_for_next_poll()

    def _sampled(self, sample: BmsSample) -> None:
        """Hand a fresh sample on and note when it came."""
        self._last_sample_at = self._clock()
        self._schedule.sampled()
        self._on_sample(sample)

    async def _sleep(self, seconds: float, *wake_on: asyncio.Event) -> None:
        """Wait, but wake at once on stop, link loss or any of ``wake_on``."""
        await _wait_any(seconds, *self._stops, self._lost, *wake_on)

    async def write(self, name: str, value: float) -> WriteResult:
        """Write a setting over the link (see ``DalyClient.write_register``) while connected.

        The write takes its turn between the poll's requests; LinkLostError when the link is
        not up (the write is not queued for later: a robot must not be switched by surprise),
        and for a battery read in turns, which holds no link to prove a write over.
        A write whose link went before it was proven is read back over the rebuilt link
        (``verify_write``), waiting for it up to WRITE_VERIFY_TIMEOUT_S: the answer says
        what the BMS holds, or WriteOutcomeUnknownError when no link came back to tell.
        """
        if self._turns is not None:
            raise LinkLostError(
                f"not written: this battery is read in turns ({self._turns.description}), "
                "holding no link between its samples to prove a write over; give it a link of "
                "its own to write to it"
            )
        if not self._is_up():
            raise LinkLostError(f"not connected to the BMS (link {self.status().summary})")
        try:
            return await self._client.write_register(name, value)
        except WriteOutcomeUnknownError as unknown:
            return await self._verify(unknown)

    def _is_up(self) -> bool:
        return self._state is LinkState.CONNECTED and self._transport.is_connected

    async def _verify(self, unknown: WriteOutcomeUnknownError) -> WriteResult:
        """Read back a write of unknown outcome over the first link that answers.

        Asks again every VERIFY_RETRY_INTERVAL_S while the link is up but the BMS does not
        answer, at once over a link rebuilt meanwhile, never past WRITE_VERIFY_TIMEOUT_S.
        """
        deadline = time.monotonic() + WRITE_VERIFY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop_requested():
                raise unknown
            if not self._is_up():
                self._link_up.clear()
                await _wait_any(remaining, *self._stops, self._link_up)
                continue
            self._link_up.clear()  # a link rebuilt during this try ends the wait below at once
            try:
                return await asyncio.wait_for(self._client.verify_write(unknown), remaining)
            except (WriteOutcomeUnknownError, WriteFailedError):
                raise  # a command (nothing to read back), or the BMS does not hold it
            except (TransportError, DalyProtocolError, asyncio.TimeoutError):
                pass  # this link did not tell: again on it, or on the next
            pause = min(VERIFY_RETRY_INTERVAL_S, deadline - time.monotonic())
            await _wait_any(pause, *self._stops, self._link_up)

    @property
    def schedule(self) -> PollSchedule:
        """When the next poll is due (read it in the loop thread)."""
        return self._schedule

    @property
    def client(self) -> DalyClient:
        """The client reading the BMS (to add taps to)."""
        return self._client

    async def stop(self) -> None:
        """End ``run`` and close the link."""
        self._stopping.set()
        await self._transport.disconnect()
        self._enter(LinkState.STOPPED)


async def _wait_any(seconds: float, *events: asyncio.Event) -> None:
    """Wait ``seconds`` at most, until any of ``events`` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
