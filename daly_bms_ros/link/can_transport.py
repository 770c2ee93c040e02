"""A BMS on a CAN bus, with python-can: the A5 conversation carried in Daly's CAN frames.

To the client this link is a wired A5 port: each A5 request it writes goes out as the CAN frame
that carries it to this pack's BMS address (``protocol.can_id``), and each answer from that
address comes back as the A5 frame a UART would have sent, checksum and all. So the A5 code
matches answers and reassembles multi-frame ones as on a serial port. Only A5 has a CAN form:
the D2 and 0x81 probes are not sent (``write`` drops them), so a CAN link asks A5 only. Any
A5 command the client writes goes out: the reads, and the MOSFET switches 0xD9/0xDA.

The bus is shared (``can_bus``): several packs on one channel use one open bus. Any python-can
interface works (``socketcan`` for a Raspberry Pi CAN HAT or a candleLight adapter, ``slcan`` for
a serial-line adapter, ``virtual`` in tests).
"""

from __future__ import annotations

from collections.abc import Mapping

from daly_bms_ros.link.can_bus import SHARED_BUSES, CanBusError, CanBuses, CanChannel
from daly_bms_ros.link.transport import AdapterUnavailableError, LinkCallbacks, LinkLostError
from daly_bms_ros.protocol.can_id import (
    BITRATE,
    DEFAULT_BMS_ADDRESS,
    DEFAULT_CHANNEL,
    DEFAULT_INTERFACE,
    can_request,
    check_bms_address,
)
from daly_bms_ros.text import printable


class CanTransport(LinkCallbacks):
    """A link to the BMS at ``address`` on a CAN channel (``BmsTransport``)."""

    wired = True

    def __init__(
        self,
        interface: str = DEFAULT_INTERFACE,
        channel: str = DEFAULT_CHANNEL,
        bitrate: int = BITRATE,
        address: int = DEFAULT_BMS_ADDRESS,
        buses: CanBuses = SHARED_BUSES,
    ) -> None:
        super().__init__()
        check_bms_address(address)  # ValueError
        self._interface = interface
        self._channel = channel
        self._bitrate = bitrate
        self._address = address
        self._buses = buses
        self._bus: CanChannel | None = None
        self.name = printable(f"{interface}:{channel}")

    @property
    def is_connected(self) -> bool:
        """Whether the bus is open and this pack's answers reach the client."""
        return self._bus is not None

    @property
    def description(self) -> str:
        """The channel and BMS address, for logs and diagnostics."""
        return f"{self.name} BMS {self._address:#04x} ({self._bitrate} bit/s)"

    @property
    def address(self) -> str:
        """The channel: with the board the client adds, the battery's identity on this robot."""
        return self.name

    @property
    def details(self) -> Mapping[str, object]:
        """What a capture records of the link."""
        return {
            "transport": "can",
            "interface": self._interface,
            "channel": self._channel,
            "bitrate": self._bitrate,
            "bms_address": self._address,
        }

    async def find(self) -> None:
        """Nothing to search: a pack on a bus is found by asking it."""

    async def connect(self) -> None:
        """Open the channel (shared) and take this BMS address's answers."""
        try:
            bus = self._buses.channel(self._interface, self._channel, self._bitrate)
            await bus.subscribe(self._address, self._on_notify, self._lost)
        except CanBusError as error:
            raise AdapterUnavailableError(str(error)) from error
        self._bus = bus
        self._link_made()

    def _lost(self, _reason: str) -> None:
        if self._bus is None:
            return
        self._bus = None
        self._on_disconnect()

    async def disconnect(self) -> None:
        """Leave the bus (the last pack out closes it); never raises."""
        bus, self._bus = self._bus, None
        if bus is not None:
            await bus.unsubscribe(self._address)

    async def write(self, data: bytes) -> None:
        """Send an A5 request as its CAN frame; what has no CAN form is not sent."""
        bus = self._bus
        if bus is None:
            raise LinkLostError(f"{self.description} is not connected")
        frame = can_request(data, self._address)
        if frame is None:
            return  # a D2/0x81 probe: a Daly CAN port answers A5 commands only
        try:
            await bus.send(*frame)
        except CanBusError as error:
            raise LinkLostError(str(error)) from error

    async def read_device_information(self) -> dict[str, str]:
        """Return nothing: the bus tells nothing of the device."""
        if self._bus is None:
            raise LinkLostError(f"{self.description} is not connected")
        return {}
