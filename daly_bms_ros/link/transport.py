"""What the client needs from a link to one BMS: move bytes, report notifications and loss.

The backends are ``BleakTransport`` (Bluetooth LE), ``SerialTransport`` (a UART/RS485 port) and
``CanTransport`` (a CAN bus); tests use an in-process double with the same interface, so
everything above the transport is tested without a radio.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Protocol

#: How a BMS is reached: Bluetooth LE, a serial port (its UART/RS485 port via an adapter), or a
#: CAN bus (its CAN port, through python-can).
TRANSPORTS = ("ble", "serial", "can")
#: A Bluetooth device address as BlueZ prints it, e.g. C6:6C:09:03:1B:9E.
MAC_ADDRESS_PATTERN = re.compile(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}")


class TransportError(Exception):
    """Base of the errors a transport raises; the text says what went wrong for a human."""


class DeviceNotFoundError(TransportError):
    """No matching BMS was seen (out of range, asleep, or another central holds it)."""


class AdapterUnavailableError(TransportError):
    """BlueZ, the system D-Bus or the Bluetooth adapter is not available."""


class LinkLostError(TransportError):
    """The connection dropped or a write failed."""


class BmsTransport(Protocol):
    """A link to one BMS that moves raw bytes."""

    #: A wire (a serial port, a CAN bus), not a radio link: the client asks A5 first.
    wired: bool
    #: The device's name once found (its advertised name; a serial port's path), "" before.
    name: str

    @property
    def is_connected(self) -> bool:
        """Whether the link is up."""

    @property
    def link(self) -> int:
        """Which link this is: a number that moves on each time a link is made whole.

        A request is bound to the link it was first sent on (a write is never resent over a
        link rebuilt meanwhile); a link is whole, and takes requests, only once it is
        subscribed to the BMS's answers.
        """

    @property
    def description(self) -> str:
        """Name and address of the device, for logs and diagnostics."""

    @property
    def address(self) -> str:
        """Address of the device once found ("" before): a stable identity of the battery."""

    @property
    def details(self) -> Mapping[str, object]:
        """What a capture records of the link: name, address, GATT layout, MTU (None: unknown)."""

    def set_callbacks(
        self, on_notify: Callable[[bytes], None], on_disconnect: Callable[[], None]
    ) -> None:
        """Set what to call with each notification and when the link drops."""

    async def find(self) -> None:
        """Find the device without connecting (DeviceNotFoundError): a search holds no link."""

    async def connect(self) -> None:
        """Find the device (unless found), connect, subscribe; a TransportError on failure."""

    async def disconnect(self) -> None:
        """Close the link; never raises."""

    async def write(self, data: bytes) -> None:
        """Send one request; raise LinkLostError if the link is gone."""

    async def read_device_information(self) -> dict[str, str]:
        """Model, versions and serial the device tells (keys of DEVICE_INFORMATION_FIELDS).

        Empty when it tells nothing; raise a TransportError if the link is gone.
        """


class LinkCallbacks:
    """What every transport keeps alike: the client's callbacks and the number of its link.

    A backend calls ``_link_made`` once a link is whole (subscribed to the BMS's answers),
    hands each notification to ``_on_notify`` and a loss to ``_on_disconnect``.
    """

    def __init__(self) -> None:
        self._links = 0
        self._on_notify: Callable[[bytes], None] = lambda _data: None
        self._on_disconnect: Callable[[], None] = lambda: None

    @property
    def link(self) -> int:
        """Which link this is: it moves on each time a link is made whole (``BmsTransport``)."""
        return self._links

    def _link_made(self) -> None:
        self._links += 1

    def set_callbacks(
        self, on_notify: Callable[[bytes], None], on_disconnect: Callable[[], None]
    ) -> None:
        """Set what to call with each notification (or bytes read) and when the link drops."""
        self._on_notify, self._on_disconnect = on_notify, on_disconnect
