"""Run the BlueZ mock ``bluezoo`` with the fixes a reconnecting BLE client needs.

bluezoo 1.0.2 (installed from PyPI, run here as a process of its own) serves org.bluez on a
D-Bus bus well enough for one scan, one connection, notifications and writes. A BMS driver must
also survive the BMS dropping the link, going to sleep and coming back, which bluezoo does not
model. This launcher starts bluezoo with these run-time fixes, each one small:

1. A device is announced again on every scan tick, with a changing RSSI: BlueZ reports each
   advertisement it receives, and bleak only hears of a device through a property change.
2. A disconnect withdraws the GATT objects that the connection exported, stops notifications
   and clears ServicesResolved, so the next connection can export them again.
3. A disconnect from either side reaches both sides (bluezoo updates an object that nobody
   sees), so a peripheral can drop the link and the central hears of it.
4. A peripheral whose GATT application goes away (unregistered, or its process died) drops its
   connections, as a radio link to a vanished device does.
5. Connecting to a device that has no GATT application or no advertisement fails, as a
   connection attempt to a device that is out of range or asleep does.
6. The scan interval may be a fraction of a second.
7. Discovery is shared as in BlueZ: it runs while any client asked for it (one client's
   StopDiscovery no longer ends another's scan), with one scan task per adapter.
8. A device's ManufacturerData is keyed by 16-bit company id (D-Bus a{qv}, as BlueZ's
   org.bluez.Device1 documents it), not by text (bluezoo's a{sv}).
9. A device that advertises no name has none: its Name is empty (BlueZ leaves the property out)
   and its Alias is its address with dashes, as BlueZ makes it; bluezoo named it after its
   adapter.

A central's AcquireNotify reaches the peripheral's GATT application unchanged (bluezoo passes it
on), so the application answers it, as a device's characteristic behind BlueZ does.

Usage: python tools/bluez_mock.py --scan-interval 0.5 -a 00:AA:01:00:00:01 -a 00:AA:01:00:00:02
(on the bus that DBUS_SYSTEM_BUS_ADDRESS names). Without -a it serves a BlueZ that has no
adapter, as on a machine whose adapter is missing; an adapter is powered off through its
Powered property, as ``bluetoothctl power off`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
from typing import Any

from bluezoo import bluezoo as service_module
from bluezoo.adapter import Adapter
from bluezoo.device import Device
from bluezoo.exceptions import DBusBluezFailedError
from bluezoo.gatt.characteristic import GattCharacteristicClientLink
from bluezoo.gatt.manager import GattManager
from bluezoo.utils import BluetoothAddress

LOG = logging.getLogger("bluez_mock")
DEVICE_INTERFACE = "org.bluez.Device1"


def counterpart(device: Device) -> Device | None:
    """Find the object that stands for the other end of ``device``'s link, on the peer adapter."""
    if device.adapter is None:
        return None
    peer_adapter: Adapter = device.peer_adapter
    path = f"{peer_adapter.get_object_path()}/dev_{device.adapter.address.replace(':', '_')}"
    return peer_adapter.devices.get(path)


async def _announce_again(adapter: Adapter, device: Device) -> None:
    """Fix 1: report a known device anew, as each received advertisement is in BlueZ."""
    known: Device = adapter.devices[device.get_object_path()]
    await known.properties_sync(device)
    known.rssi = -random.randint(40, 80)
    known.properties_changed.emit((DEVICE_INTERFACE, {"RSSI": ("n", known.rssi)}, []))


original_add_device = Adapter.add_device


def _name_as_advertised(device: Device) -> None:
    """Fix 9: leave a device that advertises no name without one."""
    advertisements = device.peer_adapter.advertisements
    if device.is_le and advertisements:
        advertisement = next(iter(advertisements.values()))
        if advertisement.LocalName.get() is None:
            device.name_ = ""


def alias(self: Device) -> str:
    """Fix 9: the name, or the address with dashes where there is none (BlueZ's device.c)."""
    name: str = self.name
    return name or self.address.replace(":", "-")


async def add_device(self: Adapter, device: Device) -> None:
    """Add a new device, or announce a known one again (fixes 1 and 9)."""
    device.attach_to_adapter(self)
    _name_as_advertised(device)
    if device.get_object_path() in self.devices:
        await _announce_again(self, device)
        return
    await original_add_device(self, device)


async def _drop_gatt_links(device: Device) -> None:
    """Fix 2: stop notifications and withdraw the GATT objects of one side of a link."""
    for link in list(device.services.values()):
        if isinstance(link, GattCharacteristicClientLink):
            link.client_props_changed_subscription.unsubscribe()
            try:
                await link.client.StopNotify()
            except Exception as error:  # the peripheral may be gone already
                LOG.debug("StopNotify on %s: %s", link, error)
        device.peer_adapter.mock.remove_object(link)
    device.services.clear()


async def disconnect(self: Device, uuid: str | None = None) -> None:
    """Disconnect both ends of the link (fixes 2 and 3)."""
    for side in (self, counterpart(self)):
        if side is None:
            continue
        side.connecting_task.cancel()
        await _drop_gatt_links(side)
        if side.services_resolved:
            await side.ServicesResolved.set_async(False)
        if side.connected:
            LOG.info("Disconnecting %s from %s", side, side.adapter)
            await side.Connected.set_async(False)


original_connect = Device.connect


async def connect(self: Device, uuid: str | None = None) -> None:
    """Refuse a connection to a device that is not there (fix 5)."""
    peer_adapter: Adapter = self.peer_adapter
    if self.is_le and not (peer_adapter.gatt_apps and peer_adapter.advertisements):
        raise DBusBluezFailedError("le-connection-abort-by-local")
    await original_connect(self, uuid)


original_del_gatt_application = GattManager._GattManager__del_gatt_application


async def del_gatt_application(self: Adapter, app: Any) -> None:
    """Drop the links to a peripheral whose GATT application went away (fix 4)."""
    await original_del_gatt_application(self, app)
    for adapter in self.mock.adapters.values():
        for device in list(adapter.devices.values()):
            if device.peer_adapter is self and device.connected:
                await disconnect(device)


original_create_discovering_task = service_module.BluezMockService.create_discovering_task


def create_discovering_task(self: Any, adapter_id: int) -> asyncio.Task[None]:
    """Keep one scan task per adapter, however many clients start discovery (fix 7)."""
    running: asyncio.Task[None] = self.adapters[adapter_id].discovering_task
    if isinstance(running, asyncio.Task) and not running.done():
        return running
    task: asyncio.Task[None] = original_create_discovering_task(self, adapter_id)
    return task


original_stop_discovering = Adapter._Adapter__stop_discovering


async def stop_discovering(self: Adapter) -> None:
    """Stop scanning only when no client wants it any more (fix 7)."""
    if not self.scan_subscribers:
        await original_stop_discovering(self)


def install_fixes() -> None:
    """Patch bluezoo's classes in this process."""
    Adapter.add_device = add_device
    Device.connect = connect
    Device.disconnect = disconnect
    GattManager._GattManager__del_gatt_application = del_gatt_application
    service_module.BluezMockService.create_discovering_task = create_discovering_task
    Adapter._Adapter__stop_discovering = stop_discovering
    Device.ManufacturerData.property_signature = "a{qv}"  # fix 8
    Device.Alias.property_getter = alias


def main() -> None:
    """Start bluezoo on the system bus (DBUS_SYSTEM_BUS_ADDRESS) with the fixes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scan-interval", type=float, default=1.0, help="seconds (fix 6)")
    parser.add_argument(
        "-a",
        "--adapter",
        dest="adapters",
        action="append",
        default=[],
        help="an adapter's address (repeatable); none: a BlueZ that has no adapter",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.INFO)
    install_fixes()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(
        service_module.startup(
            bus="system",
            adapters=[BluetoothAddress(address) for address in arguments.adapters],
            auto_enable=True,
            scan_interval=arguments.scan_interval,
        )
    )
    loop.run_forever()


if __name__ == "__main__":
    main()
