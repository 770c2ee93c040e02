"""The Daly D2 BLE protocol, sans I/O: bytes in, typed values out. No ROS, no bleak, no asyncio."""

from daly_bms_ros.protocol.crc import crc16_modbus
from daly_bms_ros.protocol.decoding import (
    decode_alarms,
    decode_device_info,
    decode_mos_temperature,
    decode_settings,
    decode_status,
    encode_device_info,
    encode_mos_temperature,
    encode_settings,
    encode_status,
)
from daly_bms_ros.protocol.errors import DalyProtocolError, FrameDecodeError, HexInputError
from daly_bms_ros.protocol.frames import (
    Frame,
    FrameAssembler,
    RejectReason,
    build_read_request,
    build_response,
    parse_read_request,
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
    STATUS_BLOCK,
    Block,
)

__all__ = [
    "DEVICE_INFO_BLOCK",
    "MOS_BLOCK",
    "SETTINGS_BLOCK",
    "STATUS_BLOCK",
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
    "build_read_request",
    "build_response",
    "crc16_modbus",
    "decode_alarms",
    "decode_device_info",
    "decode_mos_temperature",
    "decode_settings",
    "decode_status",
    "encode_device_info",
    "encode_mos_temperature",
    "encode_settings",
    "encode_status",
    "parse_read_request",
]
