"""The virtual BMS's answers: each read request of its protocol variant, from the battery model.

A D2 BMS answers the status, settings, MOS-temperature and device-information blocks; a 0x81
BMS its two status blocks and its device-information block. Requests of the other variant, or
for other registers, go unanswered, as on a real BMS.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from daly_bms_ros.protocol import (
    D2,
    DEVICE_INFO_BLOCK,
    MOS_BLOCK,
    SETTINGS_BLOCK,
    STATUS_BLOCK,
    X81,
    X81_DEVICE_INFO_BLOCK,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    Block,
    DeviceInfo,
    Variant,
    build_response,
    encode_device_info,
    encode_mos_temperature,
    encode_settings,
    encode_status,
    encode_x81_status,
    parse_read_request,
)
from daly_bms_ros.sim.battery import BatteryModel

#: What the virtual BMS tells about itself in its device-information block.
DEVICE_INFO = DeviceInfo(
    software_version="SIM-1.0",
    hardware_version="SIM-HW-16S",
    production_date="20261125",
    serial_number="SIM000001",
)
Registers = Callable[[float], list[int]]


class ModelResponder:
    """Answer read requests with the model's state at the time of the request."""

    def __init__(self, model: BatteryModel, variant: Variant = D2) -> None:
        self.model = model
        self.variant = variant
        self.started = time.monotonic()
        self._answers: dict[Block, Registers] = (
            {
                STATUS_BLOCK: lambda elapsed: encode_status(model.status(elapsed)),
                SETTINGS_BLOCK: lambda _elapsed: encode_settings(model.settings()),
                MOS_BLOCK: lambda elapsed: encode_mos_temperature(model.mos_temperature(elapsed)),
                DEVICE_INFO_BLOCK: lambda _elapsed: encode_device_info(DEVICE_INFO),
            }
            if variant is D2
            else {
                X81_PACK_BLOCK: lambda elapsed: self._x81_blocks(elapsed)[0],
                X81_STATE_BLOCK: lambda elapsed: self._x81_blocks(elapsed)[1],
                X81_DEVICE_INFO_BLOCK: lambda _elapsed: encode_device_info(DEVICE_INFO, X81),
            }
        )
        self._by_range = {(block.start, block.count): make for block, make in self._answers.items()}

    def _x81_blocks(self, elapsed: float) -> tuple[list[int], list[int]]:
        return encode_x81_status(self.model.status(elapsed), self.model.mos_temperature(elapsed))

    def __call__(self, request: bytes) -> bytes | None:
        """Return the response frame, or None for a request this BMS does not answer."""
        block = parse_read_request(request, self.variant)
        make = None if block is None else self._by_range.get((block.start, block.count))
        if make is None:
            return None
        return build_response(make(time.monotonic() - self.started), self.variant)
