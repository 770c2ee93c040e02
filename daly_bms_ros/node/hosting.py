"""Where a battery's link runs: alone in its node's process, or as one pack of a fleet.

The one difference between the two, in one place: who owns the event loop the link runs in,
which media the battery shares with other packs (an adapter's turns and searches, an RS485
bus's turns), and whether the battery has the process to itself (its own diagnostics timer,
its publishers' QoS warnings). Everything else, the publish path included, is the same.
"""

from __future__ import annotations

from typing import Protocol

from daly_bms_ros.link.loop_thread import EventLoopThread
from daly_bms_ros.link.shared import SharedLinks
from daly_bms_ros.link.supervisor import LinkTurns, SearchLock
from daly_bms_ros.node.parameters import NodeSettings

#: How long a stop waits for a link to close and for its loop's thread to end (seconds).
STOP_TIMEOUT_S = 10.0


class Hosting(Protocol):
    """What a battery's driver asks of the process that hosts it."""

    #: Whether the battery has the process to itself.
    alone: bool

    def register(self, settings: NodeSettings) -> None:
        """Count the battery on what it will share, before any battery starts."""

    def acquire_loop(self) -> EventLoopThread:
        """Return the running event loop the battery's link is to run in."""

    def release_loop(self, loop: EventLoopThread) -> None:
        """Give back the loop of ``acquire_loop`` once the link has stopped."""

    def sharing(self, settings: NodeSettings) -> tuple[LinkTurns | None, SearchLock | None]:
        """Return the turns the battery takes on a crowded medium and its adapter's searches."""


class Alone:
    """A node with one battery: a loop of its own, nothing shared."""

    alone = True

    def register(self, settings: NodeSettings) -> None:
        """Nothing to share."""

    def acquire_loop(self) -> EventLoopThread:
        """Start a loop of the battery's own."""
        loop = EventLoopThread()
        loop.start()
        return loop

    def release_loop(self, loop: EventLoopThread) -> None:
        """End the battery's own loop."""
        loop.stop(STOP_TIMEOUT_S)

    def sharing(self, settings: NodeSettings) -> tuple[LinkTurns | None, SearchLock | None]:
        """Nothing shared: no turns, no search lock."""
        return None, None


class InFleet:
    """A pack of a fleet: the fleet's one loop, and the adapters and buses its packs share.

    A CAN bus needs no turns: its answers are told apart by their source address.
    """

    alone = False

    def __init__(self, links: SharedLinks) -> None:
        self.links = links

    def register(self, settings: NodeSettings) -> None:
        """Count the pack on its serial port (an RS485 bus) or Bluetooth adapter."""
        if settings.transport == "serial":
            self.links.register_bus(settings.serial_port)
        elif settings.transport == "ble":
            self.links.register(settings.adapter)

    def acquire_loop(self) -> EventLoopThread:
        """Return the fleet's loop."""
        return self.links.loop

    def release_loop(self, loop: EventLoopThread) -> None:
        """Nothing: the fleet stops its loop once every pack has stopped."""

    def sharing(self, settings: NodeSettings) -> tuple[LinkTurns | None, SearchLock | None]:
        """Return the turns and search lock of the pack's serial bus or adapter."""
        if settings.transport == "serial":
            return self.links.bus_turns(settings.serial_port), None
        if settings.transport == "ble":
            return (
                self.links.turns_for(settings.adapter),
                self.links.search_lock(settings.adapter),
            )
        return None, None
