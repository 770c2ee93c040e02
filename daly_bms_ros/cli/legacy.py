"""The ``BMS_DATA:{…}`` lines of the earlier standalone Raspberry Pi reader.

Scripts written for that reader parse these lines; the key names, nesting and camelCase are
theirs and must not change.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from daly_bms_ros.protocol import VARIANTS, Block, BmsSample, build_read_request
from daly_bms_ros.protocol.model import json_object
from daly_bms_ros.report import rated_capacity

PREFIX = "BMS_DATA:"


def request_for(frame: bytes) -> str:
    """Return the status request (hex) that ``frame`` answered: its protocol and size.

    The earlier reader always sent the 62-register read; a BMS that answers 80 registers is
    read with one request a sample, and the record says so.
    """
    variant = next(variant for variant in VARIANTS if variant.response_address == frame[0])
    return build_read_request(Block("status", 0, frame[2] // 2), variant).hex()


def bms_data(sample: BmsSample, name: str, address: str, notifications: int) -> dict[str, Any]:
    """Build the legacy record of one sample."""
    status = sample.status
    frame = sample.status_frame
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
                        "command_sent": request_for(frame),
                        "response_received": bool(frame),
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
