"""Which advertisements are taken for a Daly BMS: the patterns real devices advertise.

The advertisements are those of aiobmsble's test data (``aiobmsble/test_data/daly_bms.json``,
each from a patman15/BMS_BLE-HA issue) and fl4p/batmon-ha issue #356, as bleak reports them.
"""

from __future__ import annotations

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from daly_bms_ros.link.bleak_transport import is_daly

FFF0 = "0000fff0-0000-1000-8000-00805f9b34fb"
FF00 = "0000ff00-0000-1000-8000-00805f9b34fb"


def advertisement(
    name: str | None,
    manufacturer: dict[int, bytes] | None = None,
    services: list[str] | None = None,
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
    return BLEDevice("00:AA:01:00:00:09", name, None), data


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
    ],
)
def test_real_daly_advertisements_are_recognised(
    name: str | None, manufacturer: dict[int, bytes], services: list[str]
) -> None:
    assert is_daly(*advertisement(name, manufacturer, services))


@pytest.mark.parametrize(
    ("name", "manufacturer"),
    [("JBD-SP04S034", {}), ("Phone", {76: b"\x10\x05"}), (None, {}), ("xDL-1", {})],
)
def test_other_devices_are_not(name: str | None, manufacturer: dict[int, bytes]) -> None:
    assert not is_daly(*advertisement(name, manufacturer))
