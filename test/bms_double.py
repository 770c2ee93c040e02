"""A BMS double behind the BmsTransport interface, answering with the real captured frames.

It speaks the protocol as a BMS does: it parses each request with the protocol core and answers
with the capture of that block, in 20-byte notifications. Switches let tests make it drop the
link, sleep (not found), stay silent or corrupt answers. Methods that tests call from their own
thread hand the work to the event loop the transport runs in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from real_frames import SETTINGS, STATUS, frame_bytes

from daly_bms_ros.link.transport import DeviceNotFoundError, LinkLostError
from daly_bms_ros.protocol import SETTINGS_BLOCK, STATUS_BLOCK, parse_read_request

NOTIFICATION_SIZE = 20


class BmsDouble:
    """In-process stand-in for a Daly BMS reached over BLE."""

    wired = False
    name = "DL-40D63C3F3E5A"

    def __init__(self) -> None:
        self.answers = {
            (STATUS_BLOCK.start, STATUS_BLOCK.count): frame_bytes(STATUS),
            (SETTINGS_BLOCK.start, SETTINGS_BLOCK.count): frame_bytes(SETTINGS),
        }
        self.asleep = False
        self.silent = False
        self.corrupt_next = 0
        self.truncate_next = 0
        #: The next write fails as a write over a dead link does.
        self.fail_next_write = False
        self.connects = 0
        self.link = 0
        self.writes = 0
        self.device_information = {"firmware_version": "DOUBLE-2.1", "hardware_version": "H1"}
        self._connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_notify: Callable[[bytes], None] = lambda _data: None
        self._on_disconnect: Callable[[], None] = lambda: None

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def description(self) -> str:
        return f"DL-DOUBLE ({self.address})"

    @property
    def address(self) -> str:
        return "C6:6C:09:03:1B:9E"

    @property
    def details(self) -> dict[str, object]:
        return {"name": "DL-DOUBLE", "address": self.address, "gatt": "fff0", "mtu": 23}

    def set_callbacks(
        self, on_notify: Callable[[bytes], None], on_disconnect: Callable[[], None]
    ) -> None:
        self._on_notify, self._on_disconnect = on_notify, on_disconnect

    async def find(self) -> None:
        if self.asleep:
            raise DeviceNotFoundError("no BMS matching 'DL-DOUBLE' seen")

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.asleep:
            raise DeviceNotFoundError("no BMS matching 'DL-DOUBLE' seen")
        self.connects += 1
        self.link += 1
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False

    async def read_device_information(self) -> dict[str, str]:
        if not self._connected:
            raise LinkLostError("not connected")
        return dict(self.device_information)

    async def write(self, data: bytes) -> None:
        if not self._connected:
            raise LinkLostError("not connected")
        if self.fail_next_write:
            self.fail_next_write = False
            raise LinkLostError("write failed")
        self.writes += 1
        request = parse_read_request(data)
        answer = None if request is None else self.answers.get((request.start, request.count))
        if answer is None or self.silent:
            return
        if self.corrupt_next:
            self.corrupt_next -= 1
            answer = answer[:-1] + bytes([answer[-1] ^ 0xFF])
        elif self.truncate_next:
            self.truncate_next -= 1
            answer = answer[: len(answer) // 2]
        loop = asyncio.get_running_loop()
        for start in range(0, len(answer), NOTIFICATION_SIZE):
            loop.call_soon(self._on_notify, answer[start : start + NOTIFICATION_SIZE])

    def drop_link(self) -> None:
        """The BMS ends the connection (thread-safe)."""

        def drop() -> None:
            if self._connected:
                self._connected = False
                self._on_disconnect()

        if self._loop is None:
            drop()
        else:
            self._loop.call_soon_threadsafe(drop)
