"""GATT layouts and advertisements of Daly smart BMS: what the client looks for and the sim serves.

Service fff0 carries the protocol: answers are notified on fff1, requests written to fff2. Newer
DL-/JHB- firmware refuses notifications on fff1 ("org.bluez.Error.NotPermitted") and serves the
same exchange on service ff00 (notify ff01, write ff02) beside it (fl4p/batmon-ha issue #356 and
its ``bmslib/models/daly2.py``). The standard Device Information Service (0x180A, Bluetooth SIG
assigned numbers) is where a BLE device may tell its model and versions.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass


def _sig_uuid(short: int) -> str:
    """Expand a 16-bit Bluetooth SIG UUID to its 128-bit form."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True)
class GattLayout:
    """Where a BMS takes requests and sends answers: one service, its notify and write UUIDs."""

    name: str
    service: str
    notify: str
    write: str


FFF0 = GattLayout("fff0", _sig_uuid(0xFFF0), _sig_uuid(0xFFF1), _sig_uuid(0xFFF2))
FF00 = GattLayout("ff00", _sig_uuid(0xFF00), _sig_uuid(0xFF01), _sig_uuid(0xFF02))
#: In the order the client tries them.
GATT_LAYOUTS = (FFF0, FF00)
#: How Daly BMS name themselves: "DL-" + address digits; "JHB-" on the active-balance boards
#: (patman15/BMS_BLE-HA issues #145, #245; fl4p/batmon-ha issue #356).
NAME_PREFIXES = ("DL-", "JHB-")
#: Company ids of the manufacturer data Daly BMS advertise, some without a name or service:
#: aiobmsble ``aiobmsble/bms/daly_bms.py`` matcher_dict_list (0x402 for JHB- boards), and 0x0106
#: of a nameless 0x81 pack (patman15/BMS_BLE-HA #806).
MANUFACTURER_IDS = frozenset((0x0102, 0x0104, 0x0106, 0x0302, 0x0303, 0x0402))
#: How a Daly's manufacturer data ends: one byte, the module's MAC, then "DL" or "JHB" (and at
#: times a byte more). In #806, ``00 d11a04015994 444c`` under company id 0x0106 carries the
#: MAC D1:1A:04:01:59:94, the pack's own address (its nRF Connect log); the data of the
#: BMS_BLE-HA reports in ``test/test_discovery.py`` all have this form whatever their company id.
MAC_OFFSET = 1
MAC_SIZE = 6
MANUFACTURER_MARKERS = (b"DL", b"JHB")

DEVICE_INFORMATION_UUID = _sig_uuid(0x180A)
#: Device Information characteristics that identify a BMS, by the name the driver reports.
DEVICE_INFORMATION_FIELDS = {
    "model": _sig_uuid(0x2A24),
    "serial_number": _sig_uuid(0x2A25),
    "firmware_version": _sig_uuid(0x2A26),
    "hardware_version": _sig_uuid(0x2A27),
    "software_version": _sig_uuid(0x2A28),
    "manufacturer": _sig_uuid(0x2A29),
}


def manufacturer_mac(data: bytes) -> str | None:
    """Return the MAC ("D1:1A:04:01:59:94") in a Daly's manufacturer data, or None.

    The MAC identifies a pack whatever name and address it advertises with: a pack may
    advertise no name at all (#806), and a platform may hide the address (bleak tells a UUID
    instead on macOS).
    """
    end = MAC_OFFSET + MAC_SIZE
    if not data[end:].startswith(MANUFACTURER_MARKERS):
        return None
    return ":".join(f"{byte:02X}" for byte in data[MAC_OFFSET:end])


def advertises_daly(
    name: str, services: Collection[str], manufacturer: Mapping[int, bytes]
) -> bool:
    """Whether an advertisement is a Daly BMS's: its name, a service, or manufacturer data.

    ``name`` is the advertised name ("" for none), ``services`` the service UUIDs and
    ``manufacturer`` the manufacturer data by company id.
    """
    return (
        name.startswith(NAME_PREFIXES)
        or any(layout.service in services for layout in GATT_LAYOUTS)
        or not MANUFACTURER_IDS.isdisjoint(manufacturer)
        or any(manufacturer_mac(data) for data in manufacturer.values())
    )


def advertised_macs(manufacturer: Mapping[int, bytes]) -> set[str]:
    """Return the MACs (upper case) that manufacturer data carries in Daly's form."""
    return {mac for data in manufacturer.values() if (mac := manufacturer_mac(data))}
