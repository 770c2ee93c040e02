"""The BLE transport on bleak: find the BMS, connect with bleak-retry-connector, notify/write.

Daly smart BMS take requests and answer on service fff0 (notify fff1, write fff2) or, on newer
firmware, on service ff00 (notify ff01, write ff02): the first layout that accepts the
subscription is used. Without an address or name, the first device that looks like a Daly BMS is
taken: named "DL-…" or "JHB-…", advertising fff0 or ff00, or with Daly's manufacturer data (some
packs advertise no name). A pack is at an address when it advertises from it or carries it as
the MAC in its manufacturer data.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

try:
    from bleak.exc import BleakBluetoothNotAvailableError
except ImportError:  # bleak < 0.22 (Ubuntu 24.04's python3-bleak) tells no such error apart

    class BleakBluetoothNotAvailableError(BleakError):  # type: ignore[no-redef]
        """Stands in for the error that older bleak never raises."""


from daly_bms_ros.link.transport import (
    AdapterUnavailableError,
    DeviceNotFoundError,
    LinkCallbacks,
    LinkLostError,
    TransportError,
)
from daly_bms_ros.protocol.gatt import (
    DEVICE_INFORMATION_FIELDS,
    DEVICE_INFORMATION_UUID,
    GATT_LAYOUTS,
    GattLayout,
    advertised_macs,
    advertises_daly,
)
from daly_bms_ros.text import printable

CONNECT_ATTEMPTS = 2
#: No GATT operation of a BMS takes seconds: one that does is stuck (a D-Bus call to BlueZ has
#: no deadline of its own), and the link is treated as lost.
GATT_OPERATION_TIMEOUT_S = 5.0
T = TypeVar("T")
BLEAK_MAJOR = int(version("bleak").split(".", 1)[0])
#: bleak 3.0 takes the adapter in its BlueZ-specific options (``BlueZScannerArgs``,
#: ``BlueZClientArgs``) and deprecates the keyword; bleak 0.20 to 2.x take the keyword alone and
#: ignore the option, scanning on the default adapter (its changelog, 3.0.0).
ADAPTER_IN_BLUEZ_OPTIONS = BLEAK_MAJOR >= 3
#: What bleak and its D-Bus library raise when an operation fails; EOFError is the D-Bus
#: connection to BlueZ closing under a pending call.
BLE_ERRORS = (BleakError, OSError, asyncio.TimeoutError, EOFError)
#: Subscribe with BlueZ's StartNotify, which Daly packs take: bleak 2.0 to 3.0.1 subscribe with
#: AcquireNotify by default (hbldh/bleak #1885, #1942; StartNotify again from 3.0.2, #1977), and
#: against a Daly that ends in "NotPermitted: Notify acquired" (fl4p/batmon-ha #356; #384 shows
#: the error with Bleak 2.0.0). bleak 2.1 added the ``bluez`` option that forces StartNotify (its
#: ``BlueZNotifyArgs``), passed where ``start_notify`` takes it; bleak before 2.0 always uses
#: StartNotify; bleak 2.0.0 offers no choice and is not supported.
START_NOTIFY_OPTIONS: dict[str, Any] = (
    {"bluez": {"use_start_notify": True}}
    if "bluez" in inspect.signature(BleakClient.start_notify).parameters
    else {}
)
#: What a refused subscription adds where this bleak (2.0.x) can only use AcquireNotify.
ACQUIRE_NOTIFY_HINT = (
    f"; bleak {version('bleak')} subscribes with AcquireNotify, which Daly packs refuse: "
    "use bleak 2.1 or newer"
    if BLEAK_MAJOR >= 2 and not START_NOTIFY_OPTIONS
    else ""
)


async def bounded(operation: Awaitable[T], what: str) -> T:
    """Await a GATT operation for at most GATT_OPERATION_TIMEOUT_S; LinkLostError after that."""
    try:
        return await asyncio.wait_for(operation, GATT_OPERATION_TIMEOUT_S)
    except asyncio.TimeoutError as error:
        raise LinkLostError(f"{what} got no reply within {GATT_OPERATION_TIMEOUT_S:g} s") from error


@dataclass(frozen=True)
class GattCharacteristicInfo:
    """One characteristic as the connected device presents it: what it can do."""

    uuid: str
    description: str
    #: BlueZ's flags: "read", "write", "write-without-response", "notify", "indicate", …
    properties: tuple[str, ...]


@dataclass(frozen=True)
class GattServiceInfo:
    """One GATT service of the connected device, with its characteristics."""

    uuid: str
    description: str
    characteristics: tuple[GattCharacteristicInfo, ...]


def adapter_options(adapter: str) -> dict[str, Any]:
    """Return the keyword arguments that pick ``adapter`` ("": the default) in this bleak."""
    if not adapter:
        return {}
    return {"bluez": {"adapter": adapter}} if ADAPTER_IN_BLUEZ_OPTIONS else {"adapter": adapter}


def is_daly(device: BLEDevice, advertisement: AdvertisementData) -> bool:
    """Whether an advertisement looks like a Daly smart BMS (name, service or manufacturer)."""
    return advertises_daly(
        device.name or advertisement.local_name or "",
        advertisement.service_uuids,
        advertisement.manufacturer_data,
    )


def has_address(device: BLEDevice, advertisement: AdvertisementData, mac_address: str) -> bool:
    """Whether a device is the one at ``mac_address`` (upper case).

    Its address says so, or the MAC its manufacturer data carries: that MAC is the pack's own
    address where both are known (patman15/BMS_BLE-HA #806), and it stays the pack's where the
    address does not show it (bleak tells a UUID on macOS).
    """
    return device.address.upper() == mac_address or mac_address in advertised_macs(
        advertisement.manufacturer_data
    )


def translate_error(error: Exception) -> TransportError:
    """Turn bleak/D-Bus failures into this package's errors with a readable text."""
    if isinstance(error, TransportError):
        return error
    if isinstance(error, BleakBluetoothNotAvailableError) or (
        isinstance(error, BleakDBusError) and "org.bluez" in str(error.dbus_error)
    ):
        return AdapterUnavailableError(f"Bluetooth not available: {error}")
    if isinstance(error, (FileNotFoundError, ConnectionError, EOFError)):
        return AdapterUnavailableError(
            f"BlueZ/D-Bus not reachable: {str(error) or 'the D-Bus connection closed'}"
        )
    return LinkLostError(f"{type(error).__name__}: {error}")


class BleakTransport(LinkCallbacks):
    """BmsTransport over bleak's platform backend (BlueZ on Linux)."""

    wired = False

    def __init__(
        self,
        mac_address: str = "",
        device_name: str = "",
        adapter: str = "",
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self._mac_address = mac_address.upper()
        self._device_name = device_name
        self._scanner_options = adapter_options(adapter)
        self._connect_timeout = connect_timeout
        #: The connected client, set only once it is subscribed: a link takes no requests
        #: before it is whole.
        self._client: BleakClientWithServiceCache | None = None
        #: The device ``find`` saw, for the next ``connect`` only.
        self._found: BLEDevice | None = None
        #: The GATT layout the connected BMS answers on.
        self.layout: GattLayout = GATT_LAYOUTS[0]
        self._target = mac_address or device_name or "Daly BMS"
        self._description = self._target
        #: Advertised name of the device last found ("" before that).
        self.name = ""
        self._address = ""

    @property
    def is_connected(self) -> bool:
        """Whether the link is up."""
        return self._client is not None and self._client.is_connected

    @property
    def description(self) -> str:
        """Name and address of the device."""
        return self._description

    @property
    def address(self) -> str:
        """Address of the device last found ("" before that)."""
        return self._address

    @property
    def details(self) -> dict[str, object]:
        """Name, address, GATT layout and MTU of the link (None before it is up)."""
        client = self._client
        mtu = None
        if client is not None and client.is_connected:
            # bleak's public view of the link's MTU: what one write may carry, MTU - 3.
            write = client.services.get_characteristic(self.layout.write)
            mtu = None if write is None else write.max_write_without_response_size + 3
        return {"name": self.name, "address": self._address, "gatt": self.layout.name, "mtu": mtu}

    def _matches(self, device: BLEDevice, advertisement: AdvertisementData) -> bool:
        if self._mac_address:
            return has_address(device, advertisement, self._mac_address)
        if self._device_name:
            return (device.name or advertisement.local_name) == self._device_name
        return is_daly(device, advertisement)

    async def _find(self) -> BLEDevice:
        device = await BleakScanner.find_device_by_filter(
            self._matches, timeout=self._connect_timeout, **self._scanner_options
        )
        if device is None:
            raise DeviceNotFoundError(
                f"no BMS matching {self._target!r} seen within {self._connect_timeout} s"
            )
        return device

    async def find(self) -> None:
        """Scan until the device is seen, for the next ``connect`` (holds no connection)."""
        try:
            self._found = await self._find()
        except BLE_ERRORS as error:
            raise translate_error(error) from error

    async def connect(self) -> None:
        """Find (unless ``find`` did), connect, subscribe to fff1."""
        found, self._found = self._found, None
        try:
            device = found or await self._find()
            self.name, self._address = printable(device.name or ""), device.address
            self._description = f"{self.name or '?'} ({device.address})"
            client = await establish_connection(
                BleakClientWithServiceCache,
                device,
                self._description,
                disconnected_callback=self._disconnected,
                max_attempts=CONNECT_ATTEMPTS,
                timeout=self._connect_timeout,
                **self._scanner_options,
            )
        except (*BLE_ERRORS, LinkLostError) as error:
            raise translate_error(error) from error
        try:
            self.layout = await self._subscribe(client)
            if not client.is_connected:
                raise LinkLostError("the BMS closed the link while it was being subscribed")
        except BaseException as error:  # a stop (cancellation) included: no half-made link
            with contextlib.suppress(*BLE_ERRORS, LinkLostError):
                await bounded(client.disconnect(), "disconnecting")
            if isinstance(error, (*BLE_ERRORS, LinkLostError)):
                raise translate_error(error) from error
            raise
        self._client = client  # the link is whole: it takes requests from now on
        self._link_made()

    async def _subscribe(self, client: BleakClientWithServiceCache) -> GattLayout:
        """Subscribe to the answers of the first GATT layout the BMS has and accepts."""
        refusals = []
        for layout in GATT_LAYOUTS:
            if client.services.get_service(layout.service) is None:
                continue
            try:
                await bounded(
                    client.start_notify(layout.notify, self._notified, **START_NOTIFY_OPTIONS),
                    f"subscribing to {layout.name}",
                )
            except BleakError as error:  # e.g. fff1 "NotPermitted" beside a working ff01
                refusals.append(f"{layout.name}: {error}")
                continue
            return layout
        raise LinkLostError(
            "the device has no Daly service that accepts notifications "
            f"(looked for {', '.join(layout.name for layout in GATT_LAYOUTS)}"
            + (f"; {'; '.join(refusals)})" if refusals else ")")
            + (ACQUIRE_NOTIFY_HINT if refusals else "")
        )

    def _notified(self, _characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        self._on_notify(bytes(data))

    def _disconnected(self, client: Any) -> None:
        # A link being made, or one already replaced, is not the link the client uses.
        if client is self._client:
            self._on_disconnect()

    async def disconnect(self) -> None:
        """Close the link, ignoring errors of a link that is already gone."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*BLE_ERRORS, LinkLostError):
                await bounded(client.disconnect(), "disconnecting")

    async def read_device_information(self) -> dict[str, str]:
        """Model, versions and serial from the GATT Device Information Service, where present.

        What a Bluetooth module tells of itself, beside the versions the BMS's own
        device-information block holds (``DalyClient.device_information``); a field the
        device lacks is left out.
        """
        client = self._client
        if client is None or not client.is_connected:
            raise LinkLostError("not connected")
        service = client.services.get_service(DEVICE_INFORMATION_UUID)
        if service is None:
            return {}
        information = {}
        for field, uuid in DEVICE_INFORMATION_FIELDS.items():
            characteristic = service.get_characteristic(uuid)
            if characteristic is None:
                continue
            try:
                value = await bounded(client.read_gatt_char(characteristic), f"reading {field}")
            except (*BLE_ERRORS, LinkLostError):
                continue
            text = bytes(value).decode("utf-8", "replace").rstrip("\x00").strip()
            information[field] = printable(text)
        return information

    def gatt_table(self) -> list[GattServiceInfo]:
        """Return the services and characteristics of the connected device, with their properties.

        What a user reads to learn which layout a pack has (fff0 or ff00) or that it is no
        Daly BMS at all; in the order of their handles, as the device lays them out (BlueZ
        tells its objects in no order); LinkLostError when not connected.
        """
        client = self._client
        if client is None or not client.is_connected:
            raise LinkLostError("not connected")
        return [
            GattServiceInfo(
                service.uuid,
                service.description,
                tuple(
                    GattCharacteristicInfo(
                        characteristic.uuid,
                        characteristic.description,
                        tuple(characteristic.properties),
                    )
                    for characteristic in sorted(
                        service.characteristics, key=lambda characteristic: characteristic.handle
                    )
                ),
            )
            for service in sorted(client.services, key=lambda service: service.handle)
        ]

    async def write(self, data: bytes) -> None:
        """Write a request without response (what the BMS's own app does)."""
        if self._client is None or not self._client.is_connected:
            raise LinkLostError("not connected")
        layout = self.layout
        try:
            await bounded(
                self._client.write_gatt_char(layout.write, data, response=False),
                f"a write to {layout.name}",
            )
        except BLE_ERRORS as error:
            raise translate_error(error) from error
