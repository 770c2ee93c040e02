"""A Daly BMS as a BLE peripheral on BlueZ's D-Bus API (GATT application + advertisement).

It registers service fff0 with characteristic fff1 (notify: answers) and fff2 (write: requests)
on one adapter and advertises a "DL-…" name (or, as some packs, its manufacturer data alone), as
a real Daly BMS does; or, as newer firmware does, serves the exchange on ff00 (ff01/ff02) and
refuses notifications on fff1. Notifications are subscribed to with StartNotify: AcquireNotify is
refused, as a Daly refuses it. Each request written
goes to a responder (bytes in, bytes out); the answer is notified in one notification when the
link's MTU allows it (BlueZ tells the MTU with each write), as a real Daly sends 129- or 133-byte
notifications on a large-MTU link, and else in pieces of MTU - 3 bytes. An A5 answer of several
frames goes the same way, a piece ending inside a frame where the MTU says so, as the HLK-B20
module sent 16 frames in 200 + 8 bytes (dreadnought/python-daly-bms#28).

The D-Bus method signatures below are D-Bus type strings (dbus-fast reads them), which is why
this module does not postpone annotations.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dbus_fast import BusType, DBusError, PropertyAccess, Variant
from dbus_fast.aio import MessageBus, ProxyInterface
from dbus_fast.service import ServiceInterface, dbus_property, method

from daly_bms_ros.protocol.gatt import (
    DEVICE_INFORMATION_FIELDS,
    DEVICE_INFORMATION_UUID,
    FFF0,
    GattLayout,
)
from daly_bms_ros.sim.faults import FaultInjector

APPLICATION_PATH = "/org/dalybms/sim"
ADVERTISEMENT_PATH = f"{APPLICATION_PATH}/advertisement0"


@dataclass(frozen=True)
class Recorded:
    """An answer as a capture holds it: notifications as they came, then maybe a disconnect.

    Each notification with its delay after the request (s); ``disconnect_after``: the link
    went down that long after the request (None: it stayed up).
    """

    notifications: tuple[tuple[float, bytes], ...]
    disconnect_after: float | None = None


#: What answers a request: a frame (sent in MTU-sized notifications), a recorded answer, or
#: nothing.
Responder = Callable[[bytes], bytes | Recorded | None]
#: The largest ATT MTU BlueZ negotiates; what a link to a real Daly usually gets.
DEFAULT_MTU = 517
#: ATT's notification header: a notification carries MTU - 3 bytes.
ATT_HEADER = 3
#: The MTU every BLE link supports.
MINIMUM_MTU = 23
#: What the virtual BMS tells in its Device Information Service: characteristic UUID, text.
DEVICE_INFORMATION = {
    DEVICE_INFORMATION_FIELDS["manufacturer"]: "Daly (virtual)",
    DEVICE_INFORMATION_FIELDS["model"]: "DL-SIM",
    DEVICE_INFORMATION_FIELDS["firmware_version"]: "SIM-BLE-1.0",
}
#: What BlueZ answers a subscription to a notify characteristic that is held (its
#: gatt-client.c): what centrals get from a Daly's fff1 in fl4p/batmon-ha #356.
NOTIFY_ACQUIRED = ("org.bluez.Error.NotPermitted", "Notify acquired")


class _Service(ServiceInterface):
    def __init__(self, uuid: str) -> None:
        super().__init__("org.bluez.GattService1")
        self._uuid = uuid

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> "b":
        return True


class _Characteristic(ServiceInterface):
    """What every GATT characteristic of the service exposes."""

    def __init__(self, uuid: str, service_path: str, flags: list[str]) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self._uuid = uuid
        self._service_path = service_path
        self._flags = flags

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> "o":
        return self._service_path

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":
        return self._flags


class _ReadableCharacteristic(_Characteristic):
    """A characteristic with a value a central may read (bluezoo also needs Value to notify)."""

    def __init__(self, uuid: str, service_path: str, flags: list[str], value: bytes) -> None:
        super().__init__(uuid, service_path, flags)
        self._value = value

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":
        return self._value

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":
        return self._value


class _NotifyCharacteristic(_ReadableCharacteristic):
    """The characteristic that notifies the BMS's answers (fff1 or ff01)."""

    def __init__(self, uuid: str, service_path: str, mtu: int, refuse: bool = False) -> None:
        super().__init__(uuid, service_path, ["notify", "read"], b"")
        self._mtu = mtu
        self._refuse = refuse

    @dbus_property(access=PropertyAccess.READ)
    def MTU(self) -> "q":
        return self._mtu

    @method()
    def StartNotify(self) -> None:
        if self._refuse:  # fff1 of firmware that answers on ff01 (fl4p/batmon-ha #356)
            raise DBusError(*NOTIFY_ACQUIRED)

    @method()
    def AcquireNotify(self, options: "a{sv}") -> "hq":
        """Refuse, as a central's AcquireNotify on a Daly ends: it subscribes with StartNotify.

        bleak 2.0 to 3.0.1 subscribe with AcquireNotify wherever BlueZ offers it
        (hbldh/bleak #1885, #1977); against a Daly that ends in this error (fl4p/batmon-ha #356;
        #384 names Bleak 2.0.0). The BlueZ mock passes a central's AcquireNotify on to here.
        """
        raise DBusError(*NOTIFY_ACQUIRED)

    @method()
    def StopNotify(self) -> None:
        pass

    @method()
    def Confirm(self) -> None:
        """BlueZ acknowledges an indication; nothing to do."""

    def notify(self, value: bytes) -> None:
        self._value = value
        self.emit_properties_changed({"Value": value})


class _WriteCharacteristic(_Characteristic):
    """The characteristic that takes requests (fff2 or ff02)."""

    def __init__(
        self, uuid: str, service_path: str, mtu: int, on_write: Callable[[bytes, int], None]
    ) -> None:
        super().__init__(uuid, service_path, ["write", "write-without-response"])
        self._mtu = mtu
        self._on_write = on_write

    @dbus_property(access=PropertyAccess.READ)
    def MTU(self) -> "q":
        return self._mtu

    @method()
    def WriteValue(self, value: "ay", options: "a{sv}") -> None:
        link_mtu = options.get("mtu")
        mtu = link_mtu.value if isinstance(link_mtu, Variant) else self._mtu
        self._on_write(bytes(value), min(mtu, self._mtu))


class _Advertisement(ServiceInterface):
    """Manufacturer data alone, no name nor service: a nameless 0x81 pack's (BMS_BLE-HA #806)."""

    def __init__(self, manufacturer_data: Mapping[int, bytes]) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._manufacturer_data = dict(manufacturer_data)

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> "s":
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> "a{qv}":
        return {company: Variant("ay", data) for company, data in self._manufacturer_data.items()}

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> "b":
        return True

    @method()
    def Release(self) -> None:
        pass


class _NamedAdvertisement(_Advertisement):
    """A name ("DL-…", "JHB-…") and the service, as most Daly BMS advertise."""

    def __init__(
        self, local_name: str, service_uuid: str, manufacturer_data: Mapping[int, bytes]
    ) -> None:
        super().__init__(manufacturer_data)
        self._local_name = local_name
        self._service_uuid = service_uuid

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> "s":
        return self._local_name

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> "as":
        return [self._service_uuid]


async def wait_until_discovering(adapter: str, bus_address: str | None = None) -> None:
    """Return once ``adapter`` (a central on the same bus) is discovering.

    A BlueZ mock such as bluezoo reports a device to the first scan tick only: a peripheral that
    starts advertising once the central scans is never missed.
    """
    bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        path = f"/org/bluez/{adapter}"
        central = bus.get_proxy_object(
            "org.bluez", path, await bus.introspect("org.bluez", path)
        ).get_interface("org.bluez.Adapter1")
        while not await central.get_discovering():  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)
    finally:
        bus.disconnect()


class DalyPeripheral:
    """Register, serve and withdraw one virtual BMS on a BlueZ adapter.

    ``gatt`` FF00 presents the newer firmware: answers on ff00, and fff0 beside it whose fff1
    refuses notifications. ``mtu`` caps the notification size (MTU - 3 bytes) below what the
    link negotiated. ``manufacturer_data`` (by company id) goes into the advertisement, which
    carries ``name`` and the service unless ``advertise_name`` is false.
    """

    def __init__(
        self,
        name: str,
        responder: Responder,
        adapter: str = "hci0",
        mtu: int = DEFAULT_MTU,
        chunk_gap: float = 0.0,
        device_information: Mapping[str, str] = DEVICE_INFORMATION,
        gatt: GattLayout = FFF0,
        manufacturer_data: Mapping[int, bytes] = MappingProxyType({}),
        advertise_name: bool = True,
    ) -> None:
        self.name = name
        self.adapter_path = f"/org/bluez/{adapter}"
        self._responder = responder
        #: Arm faults here to spoil the next answers.
        self.faults = FaultInjector()
        self._chunk_gap = chunk_gap
        self._bus: MessageBus | None = None
        layouts = (gatt,) if gatt is FFF0 else (gatt, FFF0)
        self._objects: dict[str, ServiceInterface] = {}
        for number, layout in enumerate(layouts):
            path = f"{APPLICATION_PATH}/service{number}"
            notifier = _NotifyCharacteristic(layout.notify, path, mtu, refuse=layout is not gatt)
            if layout is gatt:
                self._notifier = notifier
            self._objects |= {
                path: _Service(layout.service),
                f"{path}/char0": notifier,
                f"{path}/char1": _WriteCharacteristic(layout.write, path, mtu, self._on_write),
            }
        information_path = f"{APPLICATION_PATH}/service{len(layouts)}"
        self._objects |= {
            information_path: _Service(DEVICE_INFORMATION_UUID),
            **{
                f"{information_path}/char{number}": _ReadableCharacteristic(
                    uuid, information_path, ["read"], text.encode()
                )
                for number, (uuid, text) in enumerate(device_information.items())
            },
        }
        self._advertisement = (
            _NamedAdvertisement(name, gatt.service, manufacturer_data)
            if advertise_name
            else _Advertisement(manufacturer_data)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._restarting = False
        self._asleep = True  # quiet until start() advertises

    async def start(self, bus_address: str | None = None) -> None:
        """Connect to the system bus (or ``bus_address``), register the app and advertise."""
        bus = MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM)
        self._bus = await bus.connect()
        for path, interface in self._objects.items():
            self._bus.export(path, interface)
        self._bus.export(ADVERTISEMENT_PATH, self._advertisement)
        # A real module's GATT table is fixed in its firmware: the app stays registered through
        # sleeps, so that a central finds the same handles (object paths) after each wake.
        gatt_manager = await self._interface(self.adapter_path, "org.bluez.GattManager1")
        await gatt_manager.call_register_application(APPLICATION_PATH, {})  # type: ignore[attr-defined]
        await self.wake()

    async def _interface(self, path: str, interface: str) -> ProxyInterface:
        assert self._bus is not None, "start() first"
        proxy = self._bus.get_proxy_object(
            "org.bluez", path, await self._bus.introspect("org.bluez", path)
        )
        return proxy.get_interface(interface)

    async def wake(self) -> None:
        """Appear: advertise and answer (again, after ``sleep``; awake already, nothing)."""
        if not self._asleep:
            return
        advertising = await self._interface(self.adapter_path, "org.bluez.LEAdvertisingManager1")
        await advertising.call_register_advertisement(ADVERTISEMENT_PATH, {})  # type: ignore[attr-defined]
        self._asleep = False

    async def sleep(self) -> None:
        """Go quiet as a sleeping BMS does: drop the link, stop advertising and answering.

        Answers on their way are lost with the radio. Not advertising, it cannot be connected to
        (the BlueZ mock refuses the connection at once; real BlueZ times out). Asleep already,
        nothing.
        """
        if self._asleep:
            return
        self._asleep = True
        self._restarting = False
        for task in self._tasks:
            task.cancel()
        advertising = await self._interface(self.adapter_path, "org.bluez.LEAdvertisingManager1")
        await advertising.call_unregister_advertisement(ADVERTISEMENT_PATH)  # type: ignore[attr-defined]
        await self.disconnect_centrals()

    async def disconnect_centrals(self) -> int:
        """Drop the link to every connected central, as a BMS resetting its radio; count them."""
        manager = await self._interface("/", "org.freedesktop.DBus.ObjectManager")
        objects = await manager.call_get_managed_objects()  # type: ignore[attr-defined]
        dropped = 0
        for path, interfaces in objects.items():
            device = interfaces.get("org.bluez.Device1")
            if path.startswith(self.adapter_path + "/") and device and device["Connected"].value:
                await (await self._interface(path, "org.bluez.Device1")).call_disconnect()  # type: ignore[attr-defined]
                dropped += 1
        return dropped

    @property
    def link_events(self) -> Mapping[str, Callable[[], Awaitable[object]]]:
        """The link events a control client may play, by name."""
        return {"disconnect": self.disconnect_centrals, "sleep": self.sleep, "wake": self.wake}

    async def stop(self) -> None:
        """Disappear: close the bus connection, which withdraws the app and the advertisement."""
        for task in self._tasks:
            task.cancel()
        if self._bus is not None:
            self._bus.disconnect()
            await self._bus.wait_for_disconnect()
            self._bus = None

    def _on_write(self, request: bytes, mtu: int) -> None:
        if self._asleep:
            return
        answer, restarts = self.faults.answer(request, self._responder)
        if not answer:
            return
        if restarts:
            self._restarting = True  # a BMS that restarts drops its link once it answered
        sending = self._play(answer) if isinstance(answer, Recorded) else self._send(answer, mtu)
        task = asyncio.get_running_loop().create_task(sending)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _play(self, answer: Recorded) -> None:
        """Send recorded notifications as they came, at their delays; drop the link if it was."""
        started = asyncio.get_running_loop().time()
        for delay, data in answer.notifications:
            await asyncio.sleep(started + delay - asyncio.get_running_loop().time())
            self._notifier.notify(data)
        if answer.disconnect_after is not None:
            await asyncio.sleep(
                started + answer.disconnect_after - asyncio.get_running_loop().time()
            )
            await self.disconnect_centrals()

    async def _send(self, answer: bytes, mtu: int) -> None:
        sent = await self.faults.apply(answer)
        if sent is None:
            self._restarting = False  # a restart whose echo was lost does not happen either
            return
        size = max(mtu, MINIMUM_MTU) - ATT_HEADER
        for start in range(0, len(sent), size):
            self._notifier.notify(sent[start : start + size])
            await asyncio.sleep(self._chunk_gap)
        if self._restarting:
            self._restarting = False
            await self.disconnect_centrals()
