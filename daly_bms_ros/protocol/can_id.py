"""Daly's CAN frames as A5 frames, and back: the 29-bit identifier's layout, sans I/O.

Daly "CAN Communications Protocol" V1.0 (2019-06-11; transcribed in jblance/powermon
``docs/protocol_docs/daly_can``, https://jblance.github.io/powermon/protocol_docs/daly_can/):
250 kbit/s (section 1), 29-bit extended identifiers ``priority + data ID + destination +
source``, ``0x18 <command> <BMS> <host>`` for a request and ``0x18 <command> <host> <BMS>`` for
its answer (section 2.3), always 8 data bytes. The BMS is at 0x01 by default, the "upper
computer" at 0x40 (section 2.2). The commands and their data bytes are the A5 protocol's
(0x90..0x98), so a CAN frame is an A5 frame whose addresses moved into the identifier:
mr-manuel/venus-os_dbus-serialbattery ``etc/dbus-serialbattery/bms/daly_can.py`` asks
``0x18900140`` and reads ``0x18904001``, decoding the data bytes as its A5 driver does, and adds
0x50 (``0x18500140``, rated capacity) in later versions; ai-republic/bms-to-inverter
``bms-daly-can/.../DalyBmsCANProcessor.java`` builds the identifier from the same four bytes.
Several packs share one bus by their BMS address (set in Daly's PC tool), each answering
requests to its own address only (section 2.1). The same Java code lists the MOSFET commands
of the A5 family, 0xD9 (discharge) and 0xDA (charge), for its CAN and RS485 links alike
(``bms-daly-common/.../daly/can/DalyCommand.java``): a request of any A5 command has its CAN
form here, the MOSFET switches (``registers`` [O]) included.

Not covered: the CAN protocol of newer H/K/M/S/V-series firmware, whose only public trace is a
spreadsheet attached to mr-manuel/venus-os_dbus-serialbattery#374 ("KVMS intranet
communication CAN protocol"), and packs whose CAN port broadcasts an inverter protocol on
standard identifiers (0x351, 0x355...: mr-manuel/venus-os_dbus-serialbattery#212), which answer
no request and are other traffic here.

This module maps an A5 request to the CAN frame that carries it and a CAN answer to the A5
frame it would have been on a UART (its checksum computed), so the A5 conversation is the same
over both. The board number of A5 (1..16) is the BMS's CAN address.
"""

from __future__ import annotations

from typing import NamedTuple

from daly_bms_ros.protocol.a5 import (
    DATA_SIZE,
    FRAME_SIZE,
    MAX_BOARD,
    WIRED_HOST_ADDRESSES,
    A5Frame,
    build_a5_answer,
    build_a5_request,
    checksum,
    parse_a5_request,
)

#: Daly's CAN speed, bits per second (V1.0 section 1).
BITRATE = 250_000
#: The identifier's top byte in every Daly frame (V1.0 section 2.3, "priority").
PRIORITY = 0x18
#: The host's address, the "upper computer" (V1.0 section 2.2), in every request and answer.
HOST_ADDRESS = WIRED_HOST_ADDRESSES[0]
#: The BMS's address unless set otherwise (V1.0 section 2.2, "BMS master").
DEFAULT_BMS_ADDRESS = 0x01
#: What ``protocol`` may name over CAN: A5 is the only protocol a Daly CAN port speaks.
CAN_PROTOCOLS = ("auto", "a5")
#: The python-can interface and channel of a CAN bus unless named: a SocketCAN interface, as a
#: Raspberry Pi CAN HAT or a candleLight USB adapter gives.
DEFAULT_INTERFACE, DEFAULT_CHANNEL = "socketcan", "can0"
#: The bitrates CAN adapters commonly take (python-can's slcan S0..S8, without 83.3k).
BITRATES = (10_000, 20_000, 50_000, 100_000, 125_000, 250_000, 500_000, 750_000, 1_000_000)
#: The largest identifier of an extended (29-bit) frame.
MAX_EXTENDED_ID = (1 << 29) - 1


class CanId(NamedTuple):
    """The four fields of a Daly identifier."""

    priority: int
    command: int
    destination: int
    source: int

    def to_int(self) -> int:
        """Return the 29-bit identifier."""
        return (self.priority << 24) | (self.command << 16) | (self.destination << 8) | self.source


def parse_id(identifier: int) -> CanId:
    """Split a 29-bit identifier into its four bytes (the priority keeps bits 24..28)."""
    return CanId(
        (identifier >> 24) & 0x1F,
        (identifier >> 16) & 0xFF,
        (identifier >> 8) & 0xFF,
        identifier & 0xFF,
    )


def request_id(command: int, bms_address: int) -> int:
    """Return the identifier of a request of ``command`` to the BMS at ``bms_address``."""
    return CanId(PRIORITY, command, bms_address, HOST_ADDRESS).to_int()


def answer_id(command: int, bms_address: int) -> int:
    """Return the identifier of the answer of the BMS at ``bms_address`` to ``command``."""
    return CanId(PRIORITY, command, HOST_ADDRESS, bms_address).to_int()


def check_bms_address(bms_address: int) -> None:
    """Raise ValueError for an address that is not a BMS's (1..MAX_BOARD)."""
    if not 1 <= bms_address <= MAX_BOARD:
        raise ValueError(f"a BMS's CAN address is 1..{MAX_BOARD}, not {bms_address}")


def can_request(a5_request: bytes, bms_address: int) -> tuple[int, bytes] | None:
    """Return the identifier and data that carry an A5 request to ``bms_address``.

    The A5 host address (0x40 + board - 1, or 0x80) has no place on CAN: the request goes from
    the host address 0x40 to the BMS addressed. None for bytes that are not an A5 request
    (a D2 or 0x81 probe has no CAN form).
    """
    frame = parse_a5_request(a5_request)
    if frame is None:
        return None
    return request_id(frame.command, bms_address), frame.data


def a5_answer(identifier: int, data: bytes, extended: bool = True) -> bytes | None:
    """Return the A5 answer a CAN frame carries (board number = its source), else None.

    None for the rest of a robot's bus: standard identifiers, other priorities, frames not sent
    to the host, sources that are not a BMS, data of another length.
    """
    if not extended or len(data) != DATA_SIZE or not 0 <= identifier <= MAX_EXTENDED_ID:
        return None
    fields = parse_id(identifier)
    if fields.priority != PRIORITY or fields.destination != HOST_ADDRESS:
        return None
    if not 1 <= fields.source <= MAX_BOARD:
        return None
    return build_a5_answer(fields.command, bytes(data), fields.source)


def a5_request(identifier: int, data: bytes, extended: bool = True) -> bytes | None:
    """Return the A5 request a CAN request carries, as the BMS addressed would read it.

    Its host address is the one board N answers on a UART (0x40 + N - 1), so an A5 virtual
    BMS answers it unchanged. None for frames that are not a Daly request to a BMS.
    """
    if not extended or len(data) != DATA_SIZE or not 0 <= identifier <= MAX_EXTENDED_ID:
        return None
    fields = parse_id(identifier)
    if fields.priority != PRIORITY or fields.source != HOST_ADDRESS:
        return None
    if not 1 <= fields.destination <= MAX_BOARD:
        return None
    return build_a5_request(fields.command, HOST_ADDRESS + fields.destination - 1, bytes(data))


def can_answers(a5_bytes: bytes) -> list[tuple[int, bytes]]:
    """Return the CAN frames of the whole, valid A5 answers in ``a5_bytes``, in order.

    A frame whose checksum fails is dropped, as a CAN controller drops a frame whose CRC fails:
    a CAN bus delivers a whole frame or none.
    """
    frames: list[tuple[int, bytes]] = []
    for start in range(0, len(a5_bytes) - FRAME_SIZE + 1, FRAME_SIZE):
        raw = a5_bytes[start : start + FRAME_SIZE]
        if raw[3] != DATA_SIZE or checksum(raw[:12]) != raw[12]:
            continue
        frame = A5Frame(raw[1], raw[2], bytes(raw[4:12]))
        frames.append((answer_id(frame.command, frame.address), frame.data))
    return frames


class CanChoice(NamedTuple):
    """What a configuration says of a CAN link, and how it names each setting to its user.

    ``names`` holds the settings' names as the user gives them (parameters, options), in the
    order transport, interface, channel, bitrate, protocol; ``other_targets`` names the
    settings that pick a serial port or a Bluetooth device.
    """

    transport: str
    interface: str
    channel: str
    bitrate: int
    protocol: str
    other_target: bool
    names: tuple[str, str, str, str, str]
    other_targets: str


def can_choice_problem(choice: CanChoice) -> str | None:
    """Return what is wrong with a CAN configuration (None: nothing): one rule for all."""
    transport, interface, channel, bitrate, protocol = choice.names
    if choice.transport != "can":
        if (choice.interface, choice.channel, choice.bitrate) == (
            DEFAULT_INTERFACE,
            DEFAULT_CHANNEL,
            BITRATE,
        ):
            return None
        return (
            f"{interface}, {channel} and {bitrate} are set but {transport} is "
            f"{choice.transport}: set {transport} to can, or leave them at their defaults"
        )
    if choice.other_target:
        return f"{transport} can reads a CAN bus: leave {choice.other_targets} empty"
    if not choice.interface.strip() or not choice.channel.strip():
        return f"{transport} can needs {interface} and {channel}, e.g. can0"
    if choice.bitrate not in BITRATES:
        allowed = ", ".join(map(str, BITRATES))
        return f"{bitrate} {choice.bitrate} is not a CAN bitrate: allowed are {allowed}"
    if choice.protocol not in CAN_PROTOCOLS:
        return f"{protocol} {choice.protocol} has no CAN form: a Daly CAN port speaks a5 (or auto)"
    return None
