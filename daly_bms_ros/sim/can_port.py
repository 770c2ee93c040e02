"""Daly BMS on a CAN bus, behind an slcan adapter on a pseudo-terminal.

An slcan (LAWICEL) adapter is a serial line that speaks CAN in ASCII lines ending in CR:
``S5`` sets 250 kbit/s, ``O`` opens the channel, ``C`` closes it, ``T<8 hex id><dlc><data>``
sends an extended frame and is how the adapter reports one received (python-can
``can/interfaces/slcan.py``; CANable and USBtin firmware). A client opens the terminal with
python-can's real slcan interface, as it would a CANable in slcan mode on /dev/ttyACM0.

The boards behind it are A5 responders: each CAN request to BMS address N becomes the A5
request board N answers (``protocol.can_id``), and its A5 answer, spoiled by the faults armed,
goes back as CAN frames; a frame whose checksum the fault spoiled is never sent, as a CAN
controller drops a frame whose CRC fails. ``other_traffic`` puts frames of other devices on the
bus before each answer, as a robot's motor controllers and chargers would.

A replay (``--replay`` of a CAN capture) answers each request with the recorded answers, at
their recorded delays, as CAN frames; a recorded disconnect is not played (a bus stays).

Link events: those of the serial port (unplug, sleep, wake), and "bus_off": the controller goes
bus-off, refuses to send (the adapter answers BEL) and hears nothing, until "recover".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from daly_bms_ros.protocol.can_id import a5_request, can_answers
from daly_bms_ros.sim.peripheral import Recorded, Responder
from daly_bms_ros.sim.serial_port import READ_SIZE, SerialBms

#: What an slcan adapter answers: CR for a command done, BEL for one refused.
OK, REFUSED = b"\r", b"\a"
#: Other traffic of a robot's bus: a motor controller's standard frame, another host's Daly
#: request, an inverter's request for battery data (id 0x4200, 8 zero bytes) as one reached
#: a Daly CAN reader (ai-republic/bms-to-inverter#81, "CAN read frame ... [0x00, 0x42, 0x00,
#: 0x00, 0x08, ...]": identifier 0x00004200 little-endian), and a Daly pack's own inverter
#: broadcast (0x351, mr-manuel/venus-os_dbus-serialbattery#212).
OTHER_TRAFFIC = (
    (0x181, False, bytes.fromhex("0a0b0c0d")),
    (0x351, False, bytes.fromhex("2001a60ea60ee400")),
    (0x18900120, True, bytes(8)),
    (0x00004200, True, bytes(8)),
)


def slcan_frame(identifier: int, data: bytes, extended: bool = True) -> bytes:
    """Return the line an slcan adapter sends for a frame received."""
    head = f"T{identifier:08X}" if extended else f"t{identifier:03X}"
    return f"{head}{len(data)}{data.hex().upper()}".encode() + OK


def _no_measure(_data: bytes) -> int | None:
    return None


def _no_answer(_request: bytes) -> bytes | None:
    return None


class SlcanBms(SerialBms):
    """Serve A5 boards on a CAN bus behind an slcan adapter on a pseudo-terminal.

    The serial port's terminal and link events are reused; its request stream is not: slcan
    lines are split here, and each request is answered by ``responder`` (A5 bytes, or a
    recorded answer).
    """

    def __init__(
        self, responder: Responder, announce: Callable[[str], None], other_traffic: bool = False
    ) -> None:
        super().__init__(_no_answer, _no_measure, announce)
        self._answer = responder
        self._other_traffic = other_traffic
        self._line = bytearray()
        self._bus_off = False

    @property
    def link_events(self) -> Mapping[str, Callable[[], Awaitable[object]]]:
        """The serial port's events, and bus-off and its recovery."""
        return {**super().link_events, "bus_off": self.bus_off, "recover": self.recover}

    async def bus_off(self) -> None:
        """Go bus-off: frames are neither sent nor received."""
        self._bus_off = True

    async def recover(self) -> None:
        """Come back from bus-off."""
        self._bus_off = False

    def _plug(self) -> None:
        self._line = bytearray()
        super()._plug()

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        self._line += chunk
        while OK in self._line:
            end = self._line.index(OK)
            line = bytes(self._line[:end])
            del self._line[: end + 1]
            self._command(line.decode("ascii", "replace"))

    def _command(self, line: str) -> None:
        """Carry out one slcan command."""
        if not line.startswith("T"):
            self._write(OK)  # S5, O, C, V...: taken (t, standard frames, are not Daly's)
            return
        if self._bus_off:
            self._write(REFUSED)
            return
        try:
            identifier, length = int(line[1:9], 16), int(line[9])
            data = bytes.fromhex(line[10 : 10 + 2 * length])
        except (ValueError, IndexError):
            self._write(REFUSED)
            return
        self._write(b"Z" + OK)
        request = a5_request(identifier, data)
        if request is None or self._asleep:
            return
        answer, _restarts = self.faults.answer(request, self._answer)
        if isinstance(answer, Recorded):
            self._start(self._play(answer))
        elif answer:
            self._start(self._send_spoiled(answer))

    def _start(self, sending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(sending)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_spoiled(self, answer: bytes) -> None:
        sent = await self.faults.apply(answer)
        if sent:
            self._send_frames(sent)

    async def _play(self, recorded: Recorded) -> None:
        """Send the recorded answers at their delays after the request."""
        start = asyncio.get_running_loop().time()
        for delay, data in recorded.notifications:
            await asyncio.sleep(max(0.0, start + delay - asyncio.get_running_loop().time()))
            self._send_frames(data)

    def _send_frames(self, answer: bytes) -> None:
        """Put the whole A5 frames of ``answer`` on the bus, after other traffic if asked."""
        if self._bus_off:
            return
        lines = b""
        if self._other_traffic:
            lines = b"".join(slcan_frame(i, data, extended) for i, extended, data in OTHER_TRAFFIC)
        lines += b"".join(slcan_frame(identifier, data) for identifier, data in can_answers(answer))
        with contextlib.suppress(OSError):
            self._write(lines)
