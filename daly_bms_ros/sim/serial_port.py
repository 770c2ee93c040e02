"""A Daly BMS on a pseudo-terminal: the serial port a USB-UART or USB-RS485 adapter would give.

No BlueZ and no D-Bus: a client opens the terminal's path as it would open /dev/ttyUSB0 (a
pseudo-terminal takes 9600 8N1 or any other setting) and writes requests; each complete request
gets its answer, spoiled by the faults armed, as one write. ``echo`` presents a half-duplex
RS485 adapter that hears what the host sends: every byte comes back before the answer
(matthewgream/DalyBMSInterface and fl4p/batmon-ha's probe drop such echoes).

Link events: "disconnect" unplugs the adapter and plugs it back in. The old terminal is closed,
so a client that has it open reads end of file and fails to write, and a new one is opened and
announced (the kernel may give it the same path). "sleep" stops the answers with the port still
there, as a sleeping BMS ignores RS485 (patagonaa/esphome-daly-hkms-bms README); "wake" ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Awaitable, Callable, Mapping

from daly_bms_ros.sim.faults import FaultInjector
from daly_bms_ros.sim.request_stream import Measure, RequestStream

#: The most bytes taken from the terminal at a time.
READ_SIZE = 4096


class SerialBms:
    """Serve a responder (bytes in, bytes out) on a pseudo-terminal until ``stop``.

    ``measure`` tells where a request ends in the byte stream (``request_stream``);
    ``announce`` is called with the path of each terminal opened.
    """

    def __init__(
        self,
        responder: Callable[[bytes], bytes | None],
        measure: Measure,
        announce: Callable[[str], None],
        echo: bool = False,
    ) -> None:
        self._responder = responder
        self._measure = measure
        self._announce = announce
        self._echo = echo
        #: Arm faults here to spoil the next answers.
        self.faults = FaultInjector()
        self._asleep = False
        #: The terminal's two ends; the slave end is held open so that the master end reads
        #: nothing, rather than failing, while no client has the port open.
        self._master = -1
        self._slave = -1
        self._requests = RequestStream(measure)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def link_events(self) -> Mapping[str, Callable[[], Awaitable[object]]]:
        """The link events a control client may play, by name."""
        return {"disconnect": self.disconnect, "sleep": self.sleep, "wake": self.wake}

    async def start(self) -> None:
        """Open the terminal and answer what arrives on it."""
        self._plug()

    async def stop(self) -> None:
        """Close the terminal; answers under way are dropped."""
        self._unplug()

    async def disconnect(self) -> None:
        """Unplug: close the terminal; plug back in: open and announce a new one."""
        self._unplug()
        self._plug()

    async def sleep(self) -> None:
        """Stop answering; the port stays."""
        self._asleep = True

    async def wake(self) -> None:
        """Answer again."""
        self._asleep = False

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing, no newline translation: bytes as sent
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._requests = RequestStream(self._measure)
        asyncio.get_running_loop().add_reader(master, self._on_readable)
        self._announce(os.ttyname(slave))

    def _unplug(self) -> None:
        if self._master < 0:
            return
        for task in self._tasks:
            task.cancel()
        asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        if self._echo:
            self._write(chunk)
        for request in self._requests.feed(chunk):
            if self._asleep:
                continue
            answer, _restarts = self.faults.answer(request, self._responder)  # the port stays
            if answer:
                task = asyncio.get_running_loop().create_task(self._send(answer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _send(self, answer: bytes) -> None:
        sent = await self.faults.apply(answer)
        if sent:
            self._write(sent)

    def _write(self, data: bytes) -> None:
        """Send what the terminal takes: bytes a client does not read are lost, as on a wire."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._master, data)
