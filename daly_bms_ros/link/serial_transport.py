"""A BMS on a serial port: Daly's UART or RS485 port through a USB adapter, with pyserial.

The port is opened non-blocking and read by the event loop when bytes are waiting (its file
descriptor, as pyserial-asyncio does), so the client works over it exactly as over Bluetooth:
what arrives is fed to the client like notifications. 9600 baud, 8N1 (Daly's UART/485 protocol
V1.2, section 1.1). A port that vanishes (the adapter unplugged) or answers a read with an error
is a lost link, rebuilt by the supervisor with backoff like a Bluetooth one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping

import serial
from serial.rs485 import RS485Settings

from daly_bms_ros.link.transport import (
    AdapterUnavailableError,
    DeviceNotFoundError,
    LinkCallbacks,
    LinkLostError,
)

DEFAULT_BAUDRATE = 9600
#: The speeds a Daly port may be set to take, from the slowest to the fastest.
MINIMUM_BAUDRATE, MAXIMUM_BAUDRATE = 1200, 115200


class SerialTransport(LinkCallbacks):
    """A link to one BMS over a serial port (``BmsTransport``)."""

    wired = True

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUDRATE, rs485: bool = False) -> None:
        """Name the port; ``rs485`` lets the kernel drive the RS485 transmitter with RTS.

        For adapters that do not switch direction by themselves (most USB-RS485 adapters do).
        """
        super().__init__()
        self._port = port
        self.name = port
        self._baudrate = baudrate
        self._rs485 = rs485
        self._serial: serial.Serial | None = None

    @property
    def is_connected(self) -> bool:
        """Whether the port is open."""
        return self._serial is not None

    @property
    def description(self) -> str:
        """The port, for logs and diagnostics."""
        return f"{self._port} ({self._baudrate} baud)"

    @property
    def address(self) -> str:
        """The port's path: the battery's identity (use a /dev/serial/by-id/ path: it stays)."""
        return self._port

    @property
    def details(self) -> Mapping[str, object]:
        """What a capture records of the link."""
        return {"transport": "serial", "port": self._port, "baudrate": self._baudrate}

    async def find(self) -> None:
        """Check that the port exists (DeviceNotFoundError: unplugged, or another name)."""
        if not os.path.exists(self._port):
            raise DeviceNotFoundError(f"no serial port {self._port} (is the adapter plugged in?)")

    async def connect(self) -> None:
        """Open the port and read it from the event loop."""
        await self.find()
        try:
            port = serial.Serial(
                self._port, self._baudrate, timeout=0, write_timeout=1.0, exclusive=True
            )
        except serial.SerialException as error:
            cause = error.__cause__ or error
            if isinstance(cause, PermissionError) or "Permission denied" in str(error):
                raise AdapterUnavailableError(
                    f"{self._port}: permission denied (add the user to the group owning it, "
                    "e.g. dialout)"
                ) from error
            raise LinkLostError(f"cannot open {self._port}: {error}") from error
        if self._rs485:
            try:
                port.rs485_mode = RS485Settings()
            except (ValueError, OSError) as error:
                port.close()
                raise AdapterUnavailableError(
                    f"{self._port}: the driver cannot switch RS485 direction ({error}); "
                    "use an adapter that switches by itself, without the rs485 option"
                ) from error
        port.reset_input_buffer()
        self._serial = port
        self._link_made()
        asyncio.get_running_loop().add_reader(port.fileno(), self._readable)

    def _readable(self) -> None:
        """Pass on what the port holds; a read error or an end of file is the port gone."""
        port = self._serial
        if port is None:
            return
        try:
            data = os.read(port.fileno(), 4096)
        except OSError:
            data = b""
        if not data:
            self._lose()
            return
        self._on_notify(data)

    def _lose(self) -> None:
        if self._serial is None:
            return
        self._close()
        self._on_disconnect()

    def _close(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        # No loop any more, or the descriptor already gone: nothing left to undo.
        with contextlib.suppress(RuntimeError, ValueError, OSError):
            asyncio.get_running_loop().remove_reader(port.fileno())
        with contextlib.suppress(OSError, serial.SerialException):
            port.close()

    async def disconnect(self) -> None:
        """Close the port; never raises."""
        self._close()

    async def write(self, data: bytes) -> None:
        """Send one request; LinkLostError when the port is gone."""
        port = self._serial
        if port is None:
            raise LinkLostError(f"{self._port} is not open")
        try:
            port.write(data)
        except (OSError, serial.SerialException) as error:
            self._lose()
            raise LinkLostError(f"write to {self._port} failed: {error}") from error

    async def read_device_information(self) -> dict[str, str]:
        """Return nothing: a serial port tells nothing of the device."""
        if self._serial is None:
            raise LinkLostError(f"{self._port} is not open")
        return {}
