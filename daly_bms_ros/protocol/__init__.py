"""The Daly protocols (D2, its 0x81 variant, A5), sans I/O: bytes in, typed values out.

No ROS, no bleak, no asyncio. ``registers`` holds the D2 and 0x81 register tables, ``a5`` the
A5 command table; ``fields`` reads values by those rows and derives what every family's status
holds the same way.
"""

from daly_bms_ros.protocol.crc import crc16_modbus
from daly_bms_ros.protocol.decoding import (
    decode_alarms,
    decode_device_info,
    decode_mos_temperature,
    decode_settings,
    decode_status,
    decode_status_with_mos,
    decode_x81_status,
    encode_device_info,
    encode_settings,
    encode_status,
    encode_x81_status,
)
from daly_bms_ros.protocol.errors import DalyProtocolError, FrameDecodeError, HexInputError
from daly_bms_ros.protocol.frames import (
    D2,
    VARIANTS,
    X81,
    Frame,
    FrameAssembler,
    RejectReason,
    Variant,
    build_read_request,
    build_response,
    build_write_answer,
    build_write_multiple_request,
    build_write_request,
    parse_read_request,
    parse_write_request,
)
from daly_bms_ros.protocol.model import (
    BmsSample,
    BmsSettings,
    BmsStatus,
    DeviceInfo,
    MosTemperature,
)
from daly_bms_ros.protocol.registers import (
    DEVICE_INFO_BLOCK,
    MOS_BLOCK,
    SETTINGS_BLOCK,
    STATUS_80_BLOCK,
    STATUS_BLOCK,
    X81_DEVICE_INFO_BLOCK,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    Block,
)

__all__ = [
    "D2",
    "DEVICE_INFO_BLOCK",
    "MOS_BLOCK",
    "SETTINGS_BLOCK",
    "STATUS_80_BLOCK",
    "STATUS_BLOCK",
    "VARIANTS",
    "X81",
    "X81_DEVICE_INFO_BLOCK",
    "X81_PACK_BLOCK",
    "X81_STATE_BLOCK",
    "Block",
    "BmsSample",
    "BmsSettings",
    "BmsStatus",
    "DalyProtocolError",
    "DeviceInfo",
    "Frame",
    "FrameAssembler",
    "FrameDecodeError",
    "HexInputError",
    "MosTemperature",
    "RejectReason",
    "Variant",
    "build_read_request",
    "build_response",
    "build_write_answer",
    "build_write_multiple_request",
    "build_write_request",
    "crc16_modbus",
    "decode_alarms",
    "decode_device_info",
    "decode_mos_temperature",
    "decode_settings",
    "decode_status",
    "decode_status_with_mos",
    "decode_x81_status",
    "encode_device_info",
    "encode_settings",
    "encode_status",
    "encode_x81_status",
    "parse_read_request",
    "parse_write_request",
]
