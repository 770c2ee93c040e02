"""What the batteries of one process share: one event loop, and each adapter's connections."""

from __future__ import annotations

import asyncio
from collections import Counter

from daly_bms_ros.link.loop_thread import EventLoopThread
from daly_bms_ros.link.supervisor import AdapterTurns


class SharedLinks:
    """One event loop for the links of every battery, and the turns of crowded adapters.

    Register each battery's adapter first; an adapter with more batteries than
    ``max_connections`` (0: no limit) serves them in turn. Adapters are told apart by name:
    "" (the system default) and "hci0" count as two.
    """

    def __init__(self, max_connections: int = 0) -> None:
        self.max_connections = max_connections
        self.loop = EventLoopThread("daly_bms_ble")
        self._batteries: Counter[str] = Counter()
        self._turns: dict[str, AdapterTurns] = {}
        self._searches: dict[str, asyncio.Lock] = {}

    def register(self, adapter: str) -> None:
        """Count one more battery on ``adapter``."""
        self._batteries[adapter] += 1

    def search_lock(self, adapter: str) -> asyncio.Lock:
        """Return the lock that lets ``adapter``'s packs search one at a time.

        They share one BlueZ client (one D-Bus connection a loop), and BlueZ refuses a
        client's second discovery (InProgress); one pack stopping its scan ends the others'.
        """
        return self._searches.setdefault(adapter, asyncio.Lock())

    def turns_for(self, adapter: str) -> AdapterTurns | None:
        """Return the turns of ``adapter`` if it serves more batteries than it holds, else None."""
        batteries = self._batteries[adapter]
        if not self.max_connections or batteries <= self.max_connections:
            return None
        if adapter not in self._turns:
            self._turns[adapter] = AdapterTurns(adapter, self.max_connections, batteries)
        return self._turns[adapter]
