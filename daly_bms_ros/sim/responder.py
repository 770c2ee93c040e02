"""The virtual BMS's answers: each request of its protocol variant, from the battery model.

A D2 BMS answers the status (80 registers, and the 62-register block), settings,
MOS-temperature, device-information and password blocks, a read of any one register it can be
written, and a write of one such register, which it echoes and applies to the model (a MOS
switched off stops the current, a SOC written moves the counter, a restart is echoed); a 0x81
BMS its two status blocks and its device-information block. Requests of the other variant, or
for other registers, go unanswered, as on a real BMS.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from daly_bms_ros.protocol import (
    D2,
    DEVICE_INFO_BLOCK,
    MOS_BLOCK,
    SETTINGS_BLOCK,
    STATUS_80_BLOCK,
    STATUS_BLOCK,
    X81,
    X81_DEVICE_INFO_BLOCK,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    Block,
    DeviceInfo,
    Variant,
    build_response,
    build_write_answer,
    encode_device_info,
    encode_settings,
    encode_status,
    encode_x81_status,
    parse_read_request,
    parse_write_request,
)
from daly_bms_ros.protocol.frames import READ
from daly_bms_ros.protocol.registers import PASSWORD_BLOCK, SETTINGS_REGISTERS, WRITABLE
from daly_bms_ros.sim.battery import BatteryModel

#: What the virtual BMS tells about itself in its device-information block.
#: The versions have the forms Daly's app shows ("11_240123_K00T", "H2.0_103R_309F9F").
DEVICE_INFO = DeviceInfo(
    software_version="11_261125_SIM1",
    hardware_version="H1.0_SIM_16S",
    production_date="20261125",
    serial_number="SIM000001",
    model="DL_SIM_1.0",
)
Registers = Callable[[float], list[int]]


def device_info_of(name: str) -> DeviceInfo:
    """Return the device information of a virtual BMS named ``name``, with its own serial.

    Two virtual packs must not share the serial that a driver takes for their identity.
    """
    serial = name.split("-", 1)[-1][-14:] or DEVICE_INFO.serial_number
    return dataclasses.replace(DEVICE_INFO, serial_number=serial)


#: The settings password real packs hold (syssi/esphome-daly-bms's capture of Daly's app).
PASSWORD = b"123456"
#: The writable registers by address.
WRITABLE_BY_ADDRESS = {writable.address: name for name, writable in WRITABLE.items()}


class ModelResponder:
    """Answer read requests with the model's state at the time of the request.

    ``answers_80_registers`` False makes a D2 BMS of the firmware that answers only the
    62-register status read (and the MOS block for its MOS temperature);
    ``device_info_fields_of_32`` picks the device-information layout of 32-byte fields over
    the one of 16-byte fields with its reversed software version.
    """

    def __init__(
        self,
        model: BatteryModel,
        variant: Variant = D2,
        answers_80_registers: bool = True,
        device_info_fields_of_32: bool = False,
        device_info: DeviceInfo = DEVICE_INFO,
    ) -> None:
        self.model = model
        self.variant = variant
        self.started = time.monotonic()
        answers: dict[Block, Registers]
        if variant is X81:
            answers = {
                X81_PACK_BLOCK: lambda elapsed: self._x81_blocks(elapsed)[0],
                X81_STATE_BLOCK: lambda elapsed: self._x81_blocks(elapsed)[1],
                X81_DEVICE_INFO_BLOCK: lambda _elapsed: encode_device_info(device_info, X81),
            }
        else:
            answers = {
                STATUS_BLOCK: lambda elapsed: self._d2_status(elapsed)[: STATUS_BLOCK.count],
                SETTINGS_BLOCK: lambda _elapsed: encode_settings(model.settings()),
                # Registers 62..70 of the 80-register layout, as real packs answer it.
                MOS_BLOCK: lambda elapsed: self._d2_status(elapsed)[
                    MOS_BLOCK.start : MOS_BLOCK.start + MOS_BLOCK.count
                ],
                DEVICE_INFO_BLOCK: lambda _elapsed: encode_device_info(
                    device_info, fields_of_32=device_info_fields_of_32
                ),
            }
            if answers_80_registers:
                answers[STATUS_80_BLOCK] = self._d2_status
            answers[PASSWORD_BLOCK] = lambda _elapsed: [
                int.from_bytes(PASSWORD[i : i + 2], "big") for i in range(0, len(PASSWORD), 2)
            ]
            for address, name in WRITABLE_BY_ADDRESS.items():
                if WRITABLE[name].readable:
                    answers[Block(name, address, 1)] = self._register_reader(name)
        self._by_range = {(block.start, block.count): make for block, make in answers.items()}

    def _register_reader(self, name: str) -> Registers:
        """Read one writable register from the model, as a one-register read answers it."""
        if name in SETTINGS_REGISTERS:
            index = SETTINGS_REGISTERS[name].index
            return lambda _elapsed: [encode_settings(self.model.settings())[index]]
        return lambda _elapsed: [int(self.model.balancer_on)]

    def _write(self, request: bytes) -> bytes | None:
        """Apply a write of one writable register and echo it; anything else goes unanswered."""
        write = parse_write_request(request, self.variant)
        if write is None or self.variant is not D2:
            return None
        address, values = write
        name = WRITABLE_BY_ADDRESS.get(address)
        if name is None or len(values) != 1:
            return None
        if name != "restart":
            value = WRITABLE[name].register.decode(values[0])
            self.model.write(time.monotonic() - self.started, name, value)
        return build_write_answer(request)

    def _d2_status(self, elapsed: float) -> list[int]:
        return encode_status(self.model.status(elapsed))

    def _x81_blocks(self, elapsed: float) -> tuple[list[int], list[int]]:
        return encode_x81_status(self.model.status(elapsed))

    def __call__(self, request: bytes) -> bytes | None:
        """Return the response frame, or None for a request this BMS does not answer."""
        if len(request) > 1 and request[1] != READ:
            return self._write(request)
        block = parse_read_request(request, self.variant)
        make = None if block is None else self._by_range.get((block.start, block.count))
        if make is None:
            return None
        return build_response(make(time.monotonic() - self.started), self.variant)
