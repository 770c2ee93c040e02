"""The virtual BMS as bleak sees it over the BlueZ mock: its advertisement and its subscriptions.

A nameless 0x81 pack advertises its manufacturer data alone (patman15/BMS_BLE-HA #806: Home
Assistant showed ``{262: "00d11a04015994444c"}`` and no name); a Daly's notify characteristic
takes StartNotify and refuses AcquireNotify, which bleak 2.0 to 3.0.1 use by default
(hbldh/bleak #1885, #1977; fl4p/batmon-ha #356).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDBusError
from bluez_mock import NAMELESS_X81_PACK, bluez_mock, peripheral_address, sim_process, system_bus

from daly_bms_ros.protocol.gatt import FFF0

NAMED = "DL-SIMNAMED"
NAMELESS = "DL-SIMNONAME"
#: The manufacturer data of BMS_BLE-HA #806's pack, by company id.
DATA_806 = {0x0106: bytes.fromhex("00d11a04015994444c")}


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("advertisement")
    with (
        bluez_mock(work, peripherals=2) as address,
        system_bus(address),
        sim_process(NAMED, work, "hci1"),
        sim_process(NAMELESS, work, "hci2", *NAMELESS_X81_PACK),
    ):
        yield address


def test_a_nameless_pack_advertises_its_manufacturer_data_alone(bus: str) -> None:
    seen = asyncio.run(
        BleakScanner.discover(timeout=2.0, return_adv=True, bluez={"adapter": "hci0"})
    )
    by_address = {device.address: (device, data) for device, data in seen.values()}
    device, advertisement = by_address[peripheral_address(2)]
    assert device.name is None
    assert not advertisement.local_name
    assert advertisement.manufacturer_data == DATA_806
    assert advertisement.service_uuids == []
    named, named_advertisement = by_address[peripheral_address(1)]
    assert named.name == NAMED
    assert named_advertisement.service_uuids == [FFF0.service]
    assert named_advertisement.manufacturer_data == {}


async def _subscribe(use_start_notify: bool) -> None:
    device = await BleakScanner.find_device_by_name(NAMED, 10.0, bluez={"adapter": "hci0"})
    assert device is not None
    async with BleakClient(device, bluez={"adapter": "hci0"}) as client:
        await client.start_notify(
            FFF0.notify, lambda _c, _d: None, bluez={"use_start_notify": use_start_notify}
        )


def test_notifications_are_had_with_start_notify_not_acquire_notify(bus: str) -> None:
    asyncio.run(_subscribe(use_start_notify=True))
    with pytest.raises(BleakDBusError, match=r"NotPermitted.*Notify acquired"):
        asyncio.run(_subscribe(use_start_notify=False))
