"""One open CAN bus per channel, shared by the packs on it; answers routed by source address.

A robot's CAN bus carries several packs (each at its own BMS address) and much else (motor
controllers, chargers). python-can opens a channel once per process here: a reader thread takes
every frame off the bus and hands it to the event loop, where a Daly answer goes to the link of
the pack whose address sent it and everything else is counted and ignored. A failure of the bus
(the adapter gone, a read or send that fails, an error frame such as bus-off) ends the link of
every pack on it; each is rebuilt by its supervisor with backoff, which opens the bus again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import can

from daly_bms_ros.protocol.can_id import a5_answer, parse_id
from daly_bms_ros.text import printable

#: Seconds the reader thread waits for a frame before it looks whether it should stop.
READ_POLL_S = 0.1
#: Bit of an error frame's identifier that tells the controller went bus-off (Linux
#: ``include/uapi/linux/can/error.h``, CAN_ERR_BUSOFF).
CAN_ERR_BUSOFF = 0x40


class CanBusError(Exception):
    """The bus could not be opened, or failed; the text says why for a human."""


@dataclass
class _Subscriber:
    on_answer: Callable[[bytes], None]
    on_lost: Callable[[str], None]


class CanChannel:
    """One python-can bus and the packs (BMS addresses) subscribed to its answers."""

    def __init__(self, interface: str, channel: str, bitrate: int) -> None:
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self._bus: can.BusABC | None = None
        self._subscribers: dict[int, _Subscriber] = {}
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set once the bus failed or its last pack left: the next connection opens a new one.
        self.retired = False
        #: Packs connecting at once open the bus once.
        self._opening = asyncio.Lock()
        #: One frame written at a time (an slcan adapter's line must not interleave).
        self._sending = threading.Lock()
        #: Frames on the bus that no subscribed pack sent: other devices, other hosts' traffic.
        self.ignored = 0
        #: Error frames short of bus-off (a controller's warnings, error-passive, no ACK).
        self.bus_errors = 0

    @property
    def name(self) -> str:
        """The channel as the user names it, for messages (control characters escaped)."""
        return printable(f"{self.interface} {self.channel}")

    async def subscribe(
        self, address: int, on_answer: Callable[[bytes], None], on_lost: Callable[[str], None]
    ) -> None:
        """Route the answers of BMS ``address`` to ``on_answer``; open the bus if needed.

        ``on_lost`` is told why when the bus fails. CanBusError when it cannot be opened, or
        when another link already listens to ``address`` on this channel.
        """
        async with self._opening:
            if self.retired:
                raise CanBusError(f"{self.name} failed just now")  # the next try opens it anew
            if address in self._subscribers:
                raise CanBusError(f"BMS address {address} on {self.name} is already read by a link")
            if self._bus is None:
                await self._open()
            self._subscribers[address] = _Subscriber(on_answer, on_lost)

    async def unsubscribe(self, address: int) -> None:
        """Stop routing ``address``'s answers; the last one out closes the bus."""
        self._subscribers.pop(address, None)
        if not self._subscribers:
            await self._close()

    async def send(self, identifier: int, data: bytes) -> None:
        """Send one extended frame; CanBusError (and every link lost) when the bus fails.

        Sent from a worker thread, one frame at a time: a full transmit queue (no other node
        acknowledging, a busy bus) makes a send wait up to a second, which must not stop the
        loop every other pack's link runs in.
        """
        bus = self._bus
        if bus is None:
            raise CanBusError(f"{self.name} is not open")
        message = can.Message(arbitration_id=identifier, is_extended_id=True, data=data)
        try:
            await asyncio.to_thread(self._send_one, bus, message)
        except (can.CanError, OSError) as error:
            reason = f"send on {self.name} failed: {error}"
            self._fail(reason)
            raise CanBusError(reason) from error

    def _send_one(self, bus: can.BusABC, message: can.Message) -> None:
        with self._sending:
            bus.send(message, timeout=1.0)

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            # Opening may wait (slcan lets a USB adapter settle for 2 s): not in the loop.
            self._bus = await asyncio.to_thread(
                can.Bus, interface=self.interface, channel=self.channel, bitrate=self.bitrate
            )
        except (can.CanError, OSError, ValueError, ImportError) as error:
            raise CanBusError(f"cannot open {self.name}: {error}") from error
        self._stopping.clear()
        self._reader = threading.Thread(
            target=self._read, args=(self._bus,), name=f"can {self.channel}", daemon=True
        )
        self._reader.start()

    def _read(self, bus: can.BusABC) -> None:
        """Take every frame off the bus and hand it to the loop, until stopped or failed."""
        loop = self._loop
        assert loop is not None
        while not self._stopping.is_set():
            try:
                message = bus.recv(READ_POLL_S)
            except (ValueError, IndexError):
                continue  # a garbled slcan line: python-can dropped it, the next one is whole
            except (can.CanError, OSError) as error:
                if not self._stopping.is_set():
                    loop.call_soon_threadsafe(self._fail, f"{self.name} failed: {error}")
                return
            if message is not None:
                loop.call_soon_threadsafe(self._deliver, message)

    def _deliver(self, message: can.Message) -> None:
        """Route one frame: a pack's answer to its link, an error frame ends them all."""
        if message.is_error_frame:
            # Bus-off ends every link on the channel; the passing errors a busy bus reports
            # (warnings, error-passive, a missing acknowledgement) are counted, not fatal.
            if message.arbitration_id & CAN_ERR_BUSOFF:
                self._fail(f"{self.name} reported bus-off")
            else:
                self.bus_errors += 1
            return
        answer = a5_answer(message.arbitration_id, bytes(message.data), message.is_extended_id)
        source = parse_id(message.arbitration_id).source
        subscriber = None if answer is None else self._subscribers.get(source)
        if answer is None or subscriber is None:
            self.ignored += 1
            return
        subscriber.on_answer(answer)

    def _fail(self, reason: str) -> None:
        """Close the bus and tell every link on it (each is rebuilt by its supervisor)."""
        if self._bus is None:
            return
        subscribers = list(self._subscribers.values())
        self._subscribers.clear()
        self._stop_reader()
        for subscriber in subscribers:
            subscriber.on_lost(reason)

    async def _close(self) -> None:
        if self._bus is None:
            return
        reader = self._reader
        self._stop_reader()
        if reader is not None and reader is not threading.current_thread():
            await asyncio.to_thread(reader.join)

    def _stop_reader(self) -> None:
        self.retired = True
        bus, self._bus = self._bus, None
        self._stopping.set()
        if bus is not None:
            # The adapter may be gone already: there is nothing left to close then.
            with contextlib.suppress(can.CanError, OSError, ValueError):
                bus.shutdown()


class CanBuses:
    """The channels a process has open, one per (interface, channel)."""

    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], CanChannel] = {}

    def channel(self, interface: str, channel: str, bitrate: int) -> CanChannel:
        """Return the shared channel; CanBusError when it is open at another bitrate."""
        key = (interface, channel)
        shared = self._channels.get(key)
        if shared is None or shared.retired:
            shared = self._channels[key] = CanChannel(interface, channel, bitrate)
        elif shared.bitrate != bitrate:
            raise CanBusError(
                f"{shared.name} is open at {shared.bitrate} bit/s, not {bitrate}: one bus, one "
                "bitrate"
            )
        return shared


#: The channels of this process: every CAN link shares them unless given its own.
SHARED_BUSES = CanBuses()
