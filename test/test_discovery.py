"""Which advertisements are taken for a Daly BMS: the patterns real devices advertise.

The advertisements are those of aiobmsble's test data (``aiobmsble/test_data/daly_bms.json``,
each from a patman15/BMS_BLE-HA issue), fl4p/batmon-ha issue #356 and BMS_BLE-HA #806 (a 0x81
pack Home Assistant showed without a name), as bleak reports them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from daly_bms_ros.link.bleak_transport import has_address, is_daly
from daly_bms_ros.protocol.gatt import manufacturer_mac

#: BMS_BLE-HA #806's pack: its manufacturer data as Home Assistant showed it (company id 262).
DATA_806 = {262: bytes.fromhex("00d11a04015994444c")}
#: The nRF Connect log of that pack (test/data/README.md), whose second line names it.
NRF_LOG_806 = Path(__file__).parent / "data" / "nrf_connect_bms_ble_ha_806.txt"

FFF0 = "0000fff0-0000-1000-8000-00805f9b34fb"
FF00 = "0000ff00-0000-1000-8000-00805f9b34fb"


def advertisement(
    name: str | None,
    manufacturer: dict[int, bytes] | None = None,
    services: list[str] | None = None,
    address: str = "00:AA:01:00:00:09",
) -> tuple[BLEDevice, AdvertisementData]:
    data = AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer or {},
        service_data={},
        service_uuids=services or [],
        tx_power=None,
        rssi=-60,
        platform_data=(),
    )
    return BLEDevice(address, name, None), data


@pytest.mark.parametrize(
    ("name", "manufacturer", "services"),
    [
        ("DL-46640102XXXX", {25670: bytes.fromhex("010209ac")}, [FFF0]),  # BMS_BLE-HA #89
        ("DL-401710015C9B", {770: bytes.fromhex("16401710015c9b444c")}, []),  # #160
        ("JHB-501812XXXXXX", {260: bytes.fromhex("0150181201a3b34a4842")}, []),  # #145
        ("Randomname", {260: bytes.fromhex("0150181201a4944a4842")}, []),  # #160
        ("BT270-2", {770: bytes.fromhex("16401712011197444c")}, []),  # #174
        ("DL-40160901534C", {258: bytes.fromhex("04")}, []),  # #204
        ("DL-FB4C2E0000000", {771: bytes.fromhex("00b4c2e0000000444c00")}, []),  # #85
        ("JHB-D2190701C66E", {1026: bytes.fromhex("27d2190701c66e4a4842")}, []),  # #510
        (None, {}, [FF00]),  # newer firmware's service, batmon-ha #356
        ("JHB-2486028B3080", {}, []),  # batmon-ha #356, name alone
        (None, DATA_806, []),  # BMS_BLE-HA #806: no name, company id 0x0106
        # The same data under a company id not seen yet: Daly's form (MAC, then "DL") alone.
        (None, {0x0999: DATA_806[262]}, []),
    ],
)
def test_real_daly_advertisements_are_recognised(
    name: str | None, manufacturer: dict[int, bytes], services: list[str]
) -> None:
    assert is_daly(*advertisement(name, manufacturer, services))


@pytest.mark.parametrize(
    ("name", "manufacturer"),
    [
        ("JBD-SP04S034", {}),
        ("Phone", {76: b"\x10\x05"}),
        (None, {}),
        ("xDL-1", {}),
        # "DL" elsewhere than after a MAC, under a company id Daly has not used.
        (None, {0x0999: b"DL" + bytes(7)}),
        (None, {0x0999: bytes(7) + b"XL"}),
    ],
)
def test_other_devices_are_not(name: str | None, manufacturer: dict[int, bytes]) -> None:
    assert not is_daly(*advertisement(name, manufacturer))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("DL-401710015C9B", "16401710015c9b444c"),  # BMS_BLE-HA #160
        ("JHB-D2190701C66E", "27d2190701c66e4a4842"),  # #510
        ("DL-D11A04015994", "00d11a04015994444c"),  # #806
    ],
)
def test_the_mac_in_the_data_is_the_one_in_the_name(name: str, data: str) -> None:
    mac = manufacturer_mac(bytes.fromhex(data))
    assert mac is not None
    assert mac.replace(":", "") == name.split("-", 1)[1]


def test_the_mac_in_806s_data_is_the_address_its_pack_advertised_from() -> None:
    # nRF Connect's second line: "DL-D11A04015994 (D1:1A:04:01:59:94)".
    header = NRF_LOG_806.read_text(encoding="utf-8").splitlines()[1]
    match = re.fullmatch(r"(\S+) \(([0-9A-F:]{17})\)", header)
    assert match, header
    assert manufacturer_mac(DATA_806[262]) == match[2] == "D1:1A:04:01:59:94"


def test_a_pack_is_at_the_mac_its_data_carries_whatever_address_it_is_seen_at() -> None:
    # As bleak on macOS tells a pack: no name, an address that is a UUID.
    seen = advertisement(None, DATA_806, address="5B0F1A3C-7A8E-4F4A-9F6B-1D2E3F405162")
    assert has_address(*seen, "D1:1A:04:01:59:94")
    assert not has_address(*seen, "D1:1A:04:01:59:95")
    at_its_address = advertisement(None, DATA_806, address="D1:1A:04:01:59:94")
    assert has_address(*at_its_address, "D1:1A:04:01:59:94")
    # Data that is not in Daly's form carries no MAC.
    other = advertisement("Phone", {76: bytes.fromhex("00d11a04015994")})
    assert not has_address(*other, "D1:1A:04:01:59:94")
