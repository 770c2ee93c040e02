"""The ``BMS_DATA:{…}`` lines and data files of the earlier standalone Raspberry Pi reader.

Scripts written for that reader parse these lines, and read the two files its background
service kept in ``bms_data/`` (onlinecodewithme/robot-bms-api-service,
``bms_background_service.py`` and ``bms_data/``): the key names, nesting and camelCase are
theirs and must not change.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.bridge.views import freshness
from daly_bms_ros.protocol import VARIANTS, Block, BmsSample, build_read_request
from daly_bms_ros.protocol.model import json_object
from daly_bms_ros.report import rated_capacity

PREFIX = "BMS_DATA:"


def request_for(frame: bytes) -> str:
    """Return the status request (hex) that ``frame`` answered: its protocol and size.

    The earlier reader always sent the 62-register read; a BMS that answers 80 registers is
    read with one request a sample, and the record says so. A BMS on the A5 protocol (a wired
    one) answers no Modbus status frame: "" (the record keeps its layout, its values parsed).
    """
    variant = next((v for v in VARIANTS if frame and v.response_address == frame[0]), None)
    if variant is None:
        return ""
    return build_read_request(Block("status", 0, frame[2] // 2), variant).hex()


def bms_data(sample: BmsSample, name: str, address: str, notifications: int) -> dict[str, Any]:
    """Build the legacy record of one sample."""
    status = sample.status
    command = request_for(sample.status_frame)
    frame = sample.status_frame if command else b""  # an A5 frame is no Modbus answer
    parsed = {
        "header": frame[:3].hex(),
        "cellVoltages": [
            {"cellNumber": number, "voltage": voltage}
            for number, voltage in enumerate(status.cell_voltages, start=1)
        ],
        "packVoltage": status.pack_voltage,
        "current": status.current,
        "soc": status.soc,
        "remainingCapacity": status.remaining_capacity,
        "totalCapacity": rated_capacity(sample),
        "cycles": status.cycles,
        "temperatures": [
            {"sensor": number, "temperature": value}
            for number, value in enumerate(status.temperatures, start=1)
        ],
        "mosStatus": {
            "chargingMos": status.charge_mos,
            "dischargingMos": status.discharge_mos,
            "balancing": status.balancing,
        },
        "checksum": frame[-2:].hex(),
        "timestamp": datetime.fromtimestamp(sample.received_at, timezone.utc).isoformat(),
    }
    return json_object(
        {
            "timestamp": round(sample.received_at * 1000),
            "device": name,
            "mac_address": address,
            "daly_protocol": {
                "status": "connected",
                "notifications": notifications,
                "commands": {
                    "main_info": {
                        "command_sent": command,
                        "response_received": True,  # a sample is made of answers only
                        "response_data": frame.hex(),
                        "parsed_data": parsed,
                    }
                },
            },
            "data_found": True,
        }
    )


def bms_data_line(sample: BmsSample, name: str, address: str, notifications: int) -> str:
    """One ``BMS_DATA:{…}`` line."""
    return PREFIX + json.dumps(bms_data(sample, name, address, notifications))


#: The name that reader's background service gave itself in its status file.
SERVICE = "bms_background"


class PiReaderLayout:
    """bms_latest.json and bms_status.json, as that reader's background service wrote them.

    bms_latest.json holds the BMS_DATA record of each new fresh sample and, while there is none,
    the record of the failure that service wrote then (``data_found`` false, the error, the
    last good read): a script never takes old values for current ones. bms_status.json says
    ``reading`` with the pack's voltage, SOC and current, or ``error`` with the reason. One
    battery, as that reader read: a data directory of several has the status of the first.
    """

    status_name = "bms_status.json"
    latest_name = "bms_latest.json"

    def __init__(self) -> None:
        #: Name, address, notifications and reconnects of the link, as last told.
        self._link: tuple[str, str, int, int] = ("", "", 0, 0)

    def track(self, name: str, address: str, notifications: int, reconnects: int) -> None:
        """Note the BMS's name and address and what its link counted (any thread)."""
        self._link = (name, address, notifications, reconnects)

    def status(self, store: SampleStore) -> Any:
        """Return ``reading`` with the latest values, or ``error`` with why there are none."""
        sample, facts = freshness(store, store.names[0])
        if sample is None:
            return {"service": SERVICE, "status": "error", "error": facts["reason"]}
        status = sample.status
        return json_object(
            {
                "service": SERVICE,
                "status": "reading",
                "last_read": sample.received_at,
                "pack_voltage": status.pack_voltage,
                "soc": status.soc,
                "current": status.current,
            }
        )

    def latest(self, store: SampleStore, name: str, changed: bool) -> Any | None:
        """Return a new fresh sample's record, the failure's while none is fresh, else None."""
        sample, facts = freshness(store, name)
        device, address, notifications, reconnects = self._link
        if sample is not None:
            return bms_data(sample, device, address, notifications) if changed else None
        last = store.get(name).sample
        return {
            "timestamp": round(time.time() * 1000),
            "device": device,
            "mac_address": address,
            "error": facts["reason"],
            "data_found": False,
            "service_status": "error",
            "last_successful_read": None if last is None else round(last.received_at * 1000),
            "retry_count": reconnects,
        }
