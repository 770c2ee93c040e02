"""GATT layout of a Daly smart BMS: the UUIDs the client uses and the virtual BMS serves.

Service fff0 carries the D2 protocol: answers are notified on fff1, requests written to fff2.
The standard Device Information Service (0x180A, Bluetooth SIG assigned numbers) is where a BLE
device may tell its model and versions.
"""

from __future__ import annotations


def _sig_uuid(short: int) -> str:
    """Expand a 16-bit Bluetooth SIG UUID to its 128-bit form."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


SERVICE_UUID = _sig_uuid(0xFFF0)
NOTIFY_UUID = _sig_uuid(0xFFF1)
WRITE_UUID = _sig_uuid(0xFFF2)
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
