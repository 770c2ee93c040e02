"""What the batteries of one process share: one event loop, and each adapter's connections."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from daly_bms_ros.link.loop_thread import EventLoopThread
from daly_bms_ros.link.supervisor import LinkTurns, SearchLock

ADAPTER = "adapter"
SERIAL_PORT = "serial port"


class SharedLinks:
    """One event loop for the links of every battery, and the turns of crowded media.

    Register each battery's adapter (or serial port) first. An adapter with more batteries
    than ``max_connections`` (0: no limit) serves them in turn; adapters are told apart by
    name: "" (the system default) and "hci0" count as two. A serial port registered by
    several batteries is an RS485 bus of several boards: they are asked one at a time (its
    spellings, such as a /dev/serial/by-id/ link and the device it names, are one port).
    ``close`` ends every search and turn at once, and lets none start after it.
    """

    def __init__(self, max_connections: int = 0) -> None:
        self.max_connections = max_connections
        self.loop = EventLoopThread("daly_bms_ble")
        self._batteries: Counter[tuple[str, str]] = Counter()
        self._turns: dict[tuple[str, str], LinkTurns] = {}
        self._searches: dict[str, SearchLock] = {}
        #: Set (in the loop) when the process stops: shared by every search lock and turns.
        self._closed = asyncio.Event()

    def register(self, adapter: str) -> None:
        """Count one more battery on ``adapter``."""
        self._batteries[ADAPTER, adapter] += 1

    def register_bus(self, port: str) -> None:
        """Count one more battery (a board) on the serial port ``port``."""
        self._batteries[SERIAL_PORT, os.path.realpath(port)] += 1

    def search_lock(self, adapter: str) -> SearchLock:
        """Return the lock that lets ``adapter``'s packs search one at a time.

        They share one BlueZ client (one D-Bus connection a loop), and BlueZ refuses a
        client's second discovery (InProgress); one pack stopping its scan ends the others'.
        """
        return self._searches.setdefault(adapter, SearchLock(self._closed))

    def turns_for(self, adapter: str) -> LinkTurns | None:
        """Return the turns of ``adapter`` if it serves more batteries than it holds, else None."""
        return self._turns_of(ADAPTER, adapter or "(default)", adapter, self.max_connections)

    def bus_turns(self, port: str) -> LinkTurns | None:
        """Return the turns of the boards on ``port``, one at a time; None for a port of one."""
        return self._turns_of(SERIAL_PORT, port, os.path.realpath(port), 1)

    def _turns_of(self, kind: str, label: str, name: str, limit: int) -> LinkTurns | None:
        batteries = self._batteries[kind, name]
        if not limit or batteries <= limit:
            return None
        if (kind, name) not in self._turns:
            self._turns[kind, name] = LinkTurns(f"{kind} {label}", limit, batteries, self._closed)
        return self._turns[kind, name]

    def close(self) -> None:
        """End every battery's search, turn and wait for either, at once (from any thread).

        Then each battery's own stop finds its link idle. Stopped one after another instead,
        the batteries queued for an adapter's search each ran a whole search (its
        connect_timeout) as the one before stopped: a fleet of absent packs took a minute.
        """
        self.loop.call_soon(self._closed.set)
