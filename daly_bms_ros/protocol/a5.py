"""The Daly A5 protocol (UART/RS485 ports, older Bluetooth modules), sans I/O.

A request is ``A5 <host address> <command> 08 <8 data bytes> <checksum>``, the answer
``A5 <board number> <command> 08 <8 data bytes> <checksum>``: 13 bytes, the checksum the low
byte of the sum of the 12 before it, multi-byte fields big-endian (Daly "UART/485
Communications Protocol" V1.2, 2020-12-22, sections 2.2 and 2.3; the same in V1.0). Commands
0x95 (cell voltages) and 0x96 (temperatures) answer with several frames, each numbered in its
first data byte (from 1 in every real capture, although the document says 0). Where each value
sits in a command's answer is one row of ``COMMANDS``, which drives both the decoders below
(frames into the ``BmsStatus`` every other protocol gives) and the virtual BMS's answers.

The A5 assembler is a byte-stream reassembler, as the field needs: a Bluetooth notification
carries many frames and splits one across two (dreadnought/python-daly-bms#28: 200 + 8 bytes),
a serial read starts inside the tail of an earlier frame (jblance/mpp-solar#516), a frame
arrives cut short (Louisvdw/dbus-serialbattery#165), and RS485 adapters echo the request.
"""

from __future__ import annotations

import math
import re
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple

from daly_bms_ros.protocol.decoding import check_plausible, decode_alarms
from daly_bms_ros.protocol.errors import FrameDecodeError
from daly_bms_ros.protocol.fields import (
    Field,
    RangeChecker,
    charge_state,
    check_count,
    derive,
    raw_of,
    read_fields,
)
from daly_bms_ros.protocol.frames import RejectReason
from daly_bms_ros.protocol.model import BmsSettings, BmsStatus
from daly_bms_ros.protocol.registers import (
    A5_BALANCING,
    A5_CELL_RANGE,
    A5_CELL_VOLTAGES,
    A5_CELLS_PER_FRAME,
    A5_CHARGE_STATES,
    A5_FAILURES,
    A5_MOS,
    A5_RATED_VALUES,
    A5_SOC,
    A5_STATUS,
    A5_TEMPERATURE_RANGE,
    A5_TEMPERATURES,
    A5_TEMPERATURES_PER_FRAME,
    A5_WRITES,
    D2_STATUS,
    SETTINGS_REGISTERS,
    Register,
)

START = 0xA5
FRAME_SIZE = 13
DATA_SIZE = 8
#: Host addresses (V1.2's table): 0x40 "upper computer", what the RS485 port answers (and many
#: UART ports); 0x80 "Bluetooth APP", what UART ports and Bluetooth modules answer. Tried in
#: this order over a wire; over Bluetooth 0x80 first (fl4p/batmon-ha's probe order).
WIRED_HOST_ADDRESSES = (0x40, 0x80)
BLUETOOTH_HOST_ADDRESSES = (0x80, 0x40)
#: Boards on one RS485 bus, numbered in Daly's PC tool: board N answers host address
#: 0x40 + N - 1 and carries N in byte 1 of its answers (mr-manuel/venus-os_dbus-serialbattery
#: ``bms/daly.py``: "Board No 1 = 0x40; Board No 2 = 0x41"; two packs on one bus in
#: esphome/esphome#12445: ``A5 41 90 …`` answered by ``A5 02 90 …``). Up to 16 keeps the
#: addresses 0x40..0x4F clear of 0x80.
MAX_BOARD = 16
#: Addresses from 0x20 up are hosts': a frame carrying one is a request (an RS485 echo).
_FIRST_HOST_ADDRESS = 0x20
#: Fill of a read request's data bytes: 0xAA lets the BMS's weak UART sync
#: (mr-manuel/venus-os_dbus-serialbattery ``bms/daly.py``, "reduces read errors dramatically").
READ_FILL = bytes((0xAA,)) * DATA_SIZE
#: Where a frame may start: the start byte with the length 8 three bytes on, or a start byte in
#: the last three bytes received (the rest of its header is still to come). Found in one search
#: across garbage, however long.
_CANDIDATE = re.compile(rb"\xa5(?:[\x00-\xff]{2}\x08|[\x00-\xff]{0,2}\Z)")


def checksum(body: bytes | bytearray) -> int:
    """Return the low byte of the sum of ``body`` (the 12 bytes before the checksum)."""
    return sum(body) & 0xFF


class A5Frame(NamedTuple):
    """A 13-byte A5 frame whose start, length and checksum were valid.

    A named tuple: a poll is two dozen frames, and a tuple is built in half the time of a
    frozen dataclass.
    """

    #: Byte 1: the board number of an answer (1 alone on a bus), a host address in a request.
    address: int
    command: int
    data: bytes

    def to_bytes(self) -> bytes:
        """Return the frame as sent on the wire."""
        body = bytes((START, self.address, self.command, DATA_SIZE)) + self.data
        return body + bytes((checksum(body),))

    @property
    def number(self) -> int:
        """Data byte 0: the frame's number in a multi-frame answer (0x95, 0x96)."""
        return self.data[0]


def host_addresses(wired: bool, board: int = 1) -> tuple[int, ...]:
    """Return the host addresses to ask from, in order of trial.

    Board 1 (a BMS alone on its port) is asked from both host addresses, 0x40 first over a
    wire, 0x80 first over Bluetooth; board N > 1 on a shared RS485 bus only from 0x40 + N - 1.
    """
    if not 1 <= board <= MAX_BOARD:
        raise ValueError(f"the board number must be 1..{MAX_BOARD}, not {board}")
    if board > 1:
        return (WIRED_HOST_ADDRESSES[0] + board - 1,)
    return WIRED_HOST_ADDRESSES if wired else BLUETOOTH_HOST_ADDRESSES


def build_a5_request(command: int, host_address: int = 0x40, data: bytes = READ_FILL) -> bytes:
    """Build the 13-byte request of ``command`` from ``host_address`` (0x40 + board - 1, 0x80)."""
    if len(data) != DATA_SIZE:
        raise ValueError(f"an A5 request carries {DATA_SIZE} data bytes, not {len(data)}")
    return A5Frame(host_address, command, data).to_bytes()


def build_a5_answer(command: int, data: bytes, board: int = 1) -> bytes:
    """Build the 13-byte answer of board ``board`` (a virtual BMS's, a test's)."""
    if len(data) != DATA_SIZE:
        raise ValueError(f"an A5 answer carries {DATA_SIZE} data bytes, not {len(data)}")
    return A5Frame(board, command, data).to_bytes()


#: The setting each A5 write command switches (``registers.A5_WRITES`` the other way round).
SWITCHED_BY = {command: name for name, command in A5_WRITES.items()}


def build_a5_switch(name: str, on: int, host_address: int) -> bytes:
    """Build the request that switches MOSFET ``name`` (a key of ``A5_WRITES``) on (1) or off (0).

    Data byte 0 is the state asked, the other seven 0, as Daly's PC software sends it
    (``registers`` [O]). ValueError for a setting A5 does not write or a state not 0 or 1.
    """
    if name not in A5_WRITES or on not in (0, 1):
        raise ValueError(f"an A5 BMS switches {', '.join(A5_WRITES)} to 0 or 1, not {name} {on}")
    return build_a5_request(A5_WRITES[name], host_address, bytes((on,)) + bytes(DATA_SIZE - 1))


def parse_a5_switch(data: bytes) -> tuple[str, int] | None:
    """Return the setting a MOSFET switch request in ``data`` writes and the state it asks.

    None for anything else: another request, an answer, or a state not 0 or 1.
    """
    request = parse_a5_request(data)
    if request is None or request.command not in SWITCHED_BY or request.data[0] not in (0, 1):
        return None
    return SWITCHED_BY[request.command], request.data[0]


def parse_a5_request(data: bytes) -> A5Frame | None:
    """Return the request in ``data`` (13 bytes, valid, from a host address), else None."""
    if (
        len(data) != FRAME_SIZE
        or data[0] != START
        or data[3] != DATA_SIZE
        or data[1] < _FIRST_HOST_ADDRESS
        or checksum(data[:12]) != data[12]
    ):
        return None
    return A5Frame(data[1], data[2], bytes(data[4:12]))


class A5Assembler:
    """Collect received bytes and yield only complete, valid A5 answers.

    Sans-I/O, like ``FrameAssembler``: the caller feeds bytes and calls ``expire`` when an answer
    did not complete in time; rejected bytes are counted in ``rejected`` by reason, a run of
    garbage once. After a bad candidate the next one is looked for from the byte after its
    start, so a frame hidden behind a cut-short one is found; candidates are found by one search
    across garbage, however long. Requests echoed by an RS485 adapter are dropped without a
    count (``echoes``).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.rejected: Counter[RejectReason] = Counter()
        self.echoes = 0
        self._in_garbage = False

    def reset(self) -> None:
        """Forget buffered bytes (a new connection starts clean); counts are kept."""
        self._buffer.clear()
        self._in_garbage = False

    @property
    def pending(self) -> int:
        """Bytes waiting for the rest of their frame."""
        return len(self._buffer)

    def _count(self, reason: RejectReason) -> None:
        if not self._in_garbage:
            self.rejected[reason] += 1
            self._in_garbage = True

    def feed(self, chunk: bytes | bytearray) -> list[A5Frame]:
        """Add received bytes; return the answers they completed, in order."""
        buffer = self._buffer
        buffer += chunk
        frames: list[A5Frame] = []
        position = 0
        end = len(buffer)
        while position < end:
            if buffer[position] != START or (
                end - position >= 4 and buffer[position + 3] != DATA_SIZE
            ):
                is_start = buffer[position] == START
                self._count(RejectReason.BAD_LENGTH if is_start else RejectReason.BAD_HEADER)
                found = _CANDIDATE.search(buffer, position + 1)
                position = found.start() if found else end
                continue
            if end - position < FRAME_SIZE:
                break
            raw = bytes(buffer[position : position + FRAME_SIZE])
            # The checksum is the low byte of the sum of the 12 bytes before it.
            if (sum(raw) - 2 * raw[12]) & 0xFF:
                self._count(RejectReason.BAD_CRC)
                next_start = buffer.find(START, position + 1)
                position = end if next_start < 0 else next_start
                continue
            self._in_garbage = False
            if raw[1] >= _FIRST_HOST_ADDRESS:
                self.echoes += 1
            else:
                frames.append(A5Frame(raw[1], raw[2], raw[4:12]))
            position += FRAME_SIZE
        del buffer[:position]
        return frames

    def expire(self) -> list[A5Frame]:
        """Give up on the partial frame at the head (a timeout); return what follows it."""
        frames: list[A5Frame] = []
        while self._buffer:
            self._count(RejectReason.TIMEOUT)
            del self._buffer[:1]
            frames += self.feed(b"")
        return frames


#: What a BMS sending every frame sends, and so the most cells and temperature sensors an
#: answer carries, after Daly's document ([M] in ``registers``): 0x95 "Cell voltage 1~48 ...
#: the maximum 96 byte, is sent in 16 frames", 0x97 "Bit0~Bit47" for cells 1..48, 0x96 "the
#: maximum 21 byte, send in 3 frames". A count in 0x94 beyond them is no Daly answer: it is
#: refused before any frame or bit is looked up by it.
ALL_CELL_FRAMES = 16
ALL_TEMPERATURE_FRAMES = 3
MAX_CELLS = ALL_CELL_FRAMES * A5_CELLS_PER_FRAME
MAX_SENSORS = ALL_TEMPERATURE_FRAMES * A5_TEMPERATURES_PER_FRAME


class Series(NamedTuple):
    """The values of a numbered multi-frame answer (0x95, 0x96).

    ``per_frame`` values of ``width`` bytes each after the frame number, checked by
    ``register`` (its name numbers each value); ``every_frame`` frames carry the most values.
    """

    register: Register
    per_frame: int
    width: int
    every_frame: int


class A5Command(NamedTuple):
    """One A5 command: where each value sits in its answer's 8 data bytes.

    ``fields`` for an answer of one frame; ``series`` for the numbered answers of 0x95 and
    0x96. The bit maps of 0x97 and 0x98 have neither: their plugin functions read them.
    Bytes no field covers are reserved: a BMS leaves in them what an earlier answer wrote.
    """

    code: int
    name: str
    fields: tuple[Field, ...] = ()
    series: Series | None = None


def _field(offset: int, size: int, like: Register, name: str = "", divisor: int = 0) -> Field:
    """Describe a field checked and scaled like ``like`` (``divisor`` where its unit is finer)."""
    register = replace(like, name=name or like.name, index=0, divisor=divisor or like.divisor)
    return Field(register, offset, size)


def _number(offset: int, name: str, size: int = 1) -> Field:
    """Describe a plain number (a count, a flag, a cell's or sensor's number)."""
    return Field(Register(name, 0), offset, size)


_D2 = D2_STATUS.registers
#: Each A5 field is checked by the D2 register of the same meaning and scale ([M][N] in
#: ``registers``), so that an impossible or unknown value reads as it does in a D2 status:
#: raw 0 of the current (-3000 A) is an empty field, temperatures of raw 0 and 255 a sensor the
#: pack lacks. Where A5 counts in a finer unit (mAh, mV) the divisor says so.
COMMANDS: dict[int, A5Command] = {
    command.code: command
    for command in (
        # 0x90's current counts a discharge as positive, D2's a charge: it is read as D2's
        # register reads it (and named so where impossible), its sign turned round after
        # (``decode_a5_pack``).
        A5Command(
            A5_SOC,
            "pack",
            (
                _field(0, 2, _D2["pack_voltage"]),
                _number(2, "acquisition_voltage", 2),  # always 0 in real answers
                _field(4, 2, _D2["current"]),
                _field(6, 2, _D2["soc"]),
            ),
        ),
        A5Command(
            A5_CELL_RANGE,
            "cell_range",
            (
                _field(0, 2, _D2["max_cell_voltage"]),
                _number(2, "max_cell_index"),
                _field(3, 2, _D2["min_cell_voltage"]),
                _number(5, "min_cell_index"),
            ),
        ),
        A5Command(
            A5_TEMPERATURE_RANGE,
            "temperature_range",
            (
                _field(0, 1, _D2["max_temperature"]),
                _number(1, "max_sensor"),
                _field(2, 1, _D2["min_temperature"]),
                _number(3, "min_sensor"),
            ),
        ),
        A5Command(
            A5_MOS,
            "mos",
            (
                _number(0, "charge_state"),
                _number(1, "charge_mos"),
                _number(2, "discharge_mos"),
                _number(3, "life"),  # a free-running counter, not cycles (``decode_a5_mos``)
                _field(4, 4, _D2["remaining_capacity"], divisor=1000),  # mAh
            ),
        ),
        A5Command(
            A5_STATUS,
            "counts",
            (
                _number(0, "cell_count"),
                _number(1, "sensor_count"),
                _number(2, "charger"),
                _number(3, "load"),
                _number(4, "dio"),
                _number(5, "cycles", 2),  # [M] V1.0; V1.2 calls them reserved; every peer
            ),
        ),
        A5Command(
            A5_CELL_VOLTAGES,
            "cell_voltages",
            series=Series(D2_STATUS.cell_voltages, A5_CELLS_PER_FRAME, 2, ALL_CELL_FRAMES),
        ),
        A5Command(
            A5_TEMPERATURES,
            "temperatures",
            series=Series(
                D2_STATUS.temperatures, A5_TEMPERATURES_PER_FRAME, 1, ALL_TEMPERATURE_FRAMES
            ),
        ),
        A5Command(A5_BALANCING, "balancing"),
        A5Command(A5_FAILURES, "failures"),
        A5Command(
            A5_RATED_VALUES,
            "rated",
            (
                _field(0, 4, SETTINGS_REGISTERS["rated_capacity"], divisor=1000),  # mAh
                _field(4, 4, SETTINGS_REGISTERS["nominal_cell_voltage"], divisor=1000),  # mV
            ),
        ),
    )
}


def frames_expected(command: int, cell_count: int, sensor_count: int) -> int:
    """Return how many frames answer ``command`` with data.

    ceil(cells / 3) for 0x95, ceil(sensors / 7) for 0x96, else 1. Some BMS send more (all 16
    of 0x95, padded with zeros: mpp-solar#83).
    """
    if command == A5_CELL_VOLTAGES:
        return max(1, math.ceil(cell_count / A5_CELLS_PER_FRAME))
    if command == A5_TEMPERATURES:
        return max(1, math.ceil(sensor_count / A5_TEMPERATURES_PER_FRAME))
    return 1


def _values(frame: A5Frame, code: int, invalid: list[str] | None = None) -> dict[str, float]:
    """Check ``frame`` answers ``code``; return its fields' values by name."""
    _check(frame, code)
    return read_fields(COMMANDS[code].fields, frame.data, invalid)


class A5Pack(NamedTuple):
    """0x90: pack voltage (V), current (A, negative when discharging), SOC (%)."""

    pack_voltage: float
    current: float
    soc: float


def decode_a5_pack(frame: A5Frame, invalid: list[str] | None = None) -> A5Pack:
    """Decode 0x90; NaN where a value is impossible, its name added to ``invalid``.

    The raw current is (30000 + 10 I) with I positive when discharging in every real capture
    (the discharging state of 0x93 comes with raw > 30000: tomatensaus/bms ``test_daly.py``,
    mpp-solar#83); this driver's convention is the opposite (BatteryState's).
    """
    values = _values(frame, A5_SOC, invalid)
    # 0.0 - I rather than -I: no "-0.0 A" for a pack at rest.
    return A5Pack(values["pack_voltage"], 0.0 - values["current"], values["soc"])


class A5CellRange(NamedTuple):
    """0x91: highest and lowest cell voltage (V) and their 1-based numbers."""

    max_cell_voltage: float
    max_cell_index: int
    min_cell_voltage: float
    min_cell_index: int


def decode_a5_cell_range(frame: A5Frame, invalid: list[str] | None = None) -> A5CellRange:
    """Decode 0x91 (bytes 6..7 are reserved: they hold stale bytes of the previous answer)."""
    values = _values(frame, A5_CELL_RANGE, invalid)
    return A5CellRange(
        values["max_cell_voltage"],
        int(values["max_cell_index"]),
        values["min_cell_voltage"],
        int(values["min_cell_index"]),
    )


class A5TemperatureRange(NamedTuple):
    """0x92: highest and lowest temperature (degC) and their sensor numbers."""

    max_temperature: float
    max_sensor: int
    min_temperature: float
    min_sensor: int


def decode_a5_temperature_range(
    frame: A5Frame, invalid: list[str] | None = None
) -> A5TemperatureRange:
    """Decode 0x92: unsigned bytes, degC + 40."""
    values = _values(frame, A5_TEMPERATURE_RANGE, invalid)
    return A5TemperatureRange(
        values["max_temperature"],
        int(values["max_sensor"]),
        values["min_temperature"],
        int(values["min_sensor"]),
    )


class A5Mos(NamedTuple):
    """0x93: charge state, MOS switches, remaining capacity (Ah)."""

    charge_state: str
    charge_mos: bool
    discharge_mos: bool
    remaining_capacity: float


def decode_a5_mos(frame: A5Frame, current: float = 0.0, invalid: list[str] | None = None) -> A5Mos:
    """Decode 0x93, with the pack's ``current`` (0x90) that tells a state left at idle.

    Byte 3, "BMS life", is a free-running counter, not cycles (it runs 0x71, 0x95, 0xad, 0x91,
    0xa8 in minutes in tomatensaus' captures): not decoded.
    """
    values = _values(frame, A5_MOS, invalid)
    return A5Mos(
        charge_state(int(values["charge_state"]), current, A5_CHARGE_STATES),
        bool(values["charge_mos"]),
        bool(values["discharge_mos"]),
        values["remaining_capacity"],
    )


class A5Counts(NamedTuple):
    """0x94: cells, temperature sensors, charger and load flags, DIO bits, cycles."""

    cell_count: int
    sensor_count: int
    charger: bool
    load: bool
    dio: int
    cycles: int


def decode_a5_counts(frame: A5Frame) -> A5Counts:
    """Decode 0x94.

    Counts beyond ``MAX_CELLS`` and ``MAX_SENSORS`` are refused (FrameDecodeError): they would
    ask for frames no BMS sends.
    """
    values = {name: int(value) for name, value in _values(frame, A5_STATUS).items()}
    return A5Counts(
        check_count("cell_count", values["cell_count"], MAX_CELLS),
        check_count("sensor_count", values["sensor_count"], MAX_SENSORS),
        bool(values["charger"]),
        bool(values["load"]),
        values["dio"],
        values["cycles"],
    )


def decode_a5_cell_voltages(
    frames: Iterable[A5Frame], cell_count: int, invalid: list[str] | None = None
) -> tuple[float, ...]:
    """Decode the 0x95 frames: three cells of mV each, placed by frame number (from 1).

    Frames are keyed by their number, not their order (a stale frame of the previous answer may
    come first: mpp-solar#516); slots past ``cell_count`` are padding or stale and are cut.
    A cell whose frame is missing makes the answer incomplete: FrameDecodeError. A cell out of
    D2's range (0 mV among them) is NaN, named in ``invalid``.
    """
    check_count("cell_count", cell_count, MAX_CELLS)
    return _series(frames, A5_CELL_VOLTAGES, cell_count, "cell voltage", invalid)


def decode_a5_temperatures(
    frames: Iterable[A5Frame], sensor_count: int, invalid: list[str] | None = None
) -> tuple[float, ...]:
    """Decode the 0x96 frames: seven sensors of degC + 40 each, placed by frame number.

    Raw 0 and 255 are a sensor the pack lacks, as in D2's registers: NaN, unknown.
    """
    check_count("sensor_count", sensor_count, MAX_SENSORS)
    return _series(frames, A5_TEMPERATURES, sensor_count, "temperature", invalid)


def _series(
    frames: Iterable[A5Frame], command: int, count: int, what: str, invalid: list[str] | None
) -> tuple[float, ...]:
    """Return values 1..``count`` of a numbered multi-frame answer, checked by its row."""
    series = COMMANDS[command].series
    assert series is not None
    per_frame, width = series.per_frame, series.width
    by_number: dict[int, bytes] = {}
    for address, frame_command, data in frames:
        if frame_command != command or len(data) != DATA_SIZE:
            _check(A5Frame(address, frame_command, data), command)  # says what is wrong
        # The last frame of a number wins: a stale one of the previous answer comes first.
        by_number[data[0]] = data[1 : 1 + per_frame * width]
    chunks = []
    for number in range(1, -(-count // per_frame) + 1):
        chunk = by_number.get(number)
        if chunk is None:
            first = (number - 1) * per_frame + 1
            raise FrameDecodeError(f"{what} {first}: frame {number} of {command:#04x} missing")
        chunks.append(chunk)
    raws = _raws(series, b"".join(chunks), count)
    return RangeChecker(raws, invalid).series(replace(series.register, index=0), count)


def _raws(series: Series, data: bytes, count: int) -> Sequence[int]:
    """Return the first ``count`` raw values of ``series`` in ``data``."""
    return struct.unpack(f">{count}H", data[: 2 * count]) if series.width == 2 else data[:count]


def decode_a5_series_frame(
    frame: A5Frame, invalid: list[str] | None = None
) -> tuple[int, tuple[float, ...]]:
    """Decode one frame of 0x95 or 0x96 alone: its number and every value it carries.

    Without 0x94's counts, padding is not told from values: a padded slot reads as what it
    holds (0 mV is no cell voltage: NaN, named).
    """
    series = COMMANDS[frame.command].series
    if series is None:
        raise FrameDecodeError(f"{frame.command:#04x} is not an answer of numbered frames")
    _check(frame, frame.command)
    checker = RangeChecker(_raws(series, frame.data[1:], series.per_frame), invalid)
    return frame.number, checker.series(replace(series.register, index=0), series.per_frame)


def encode_a5_series(command: int, values: Sequence[float], frames: int) -> list[bytes]:
    """Return the data of ``frames`` numbered answers to ``command`` carrying ``values``.

    Zeros past the last value, as real answers pad them (the virtual BMS's encoder).
    """
    series = COMMANDS[command].series
    assert series is not None
    register, width = series.register, series.width
    raw = b"".join(raw_of(register, value).to_bytes(width, "big") for value in values)
    size = series.per_frame * width
    return [
        bytes((number + 1,)) + raw[number * size : (number + 1) * size].ljust(size, b"\0")
        for number in range(frames)
    ]


def decode_a5_balancing(frame: A5Frame, cell_count: int) -> tuple[bool, ...]:
    """Decode 0x97: data byte i, bit j (least significant first) is cell 8i + j + 1.

    The reading of maland16/daly-bms-uart, acpiccolo/Daly-BMS and matthewgream/DalyBMSInterface
    after V1.2's "Bit0: Cell 1 ... Bit47: Cell 48"; no public capture has a bit set yet.
    """
    _check(frame, A5_BALANCING)
    check_count("cell_count", cell_count, MAX_CELLS)
    return tuple(bool(frame.data[cell // 8] >> (cell % 8) & 1) for cell in range(cell_count))


def encode_a5_balancing(cells: Sequence[bool]) -> bytes:
    """Return 0x97's bytes 0..5 (cells 1..48) for ``cells``; 6..7 are reserved."""
    bits = sum(1 << index for index, on in enumerate(cells) if on)
    return bits.to_bytes(MAX_CELLS // 8, "little")


def decode_a5_failures(frame: A5Frame) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Decode 0x98: the raw words and the alarm names.

    Bytes 0..6 are the fault bits of V1.2's table, the same the D2 fault registers carry two a
    word, first byte in the low half (``registers.FAULT_BITS``); byte 7 is a fault code,
    reported as ``fault_code_<n>`` when not 0.
    """
    _check(frame, A5_FAILURES)
    data = frame.data
    words = tuple(data[i] | data[i + 1] << 8 for i in range(0, DATA_SIZE, 2))
    alarms = decode_alarms((*words[:3], data[6]))
    return words, alarms + ((f"fault_code_{data[7]}",) if data[7] else ())


def encode_a5_failures(alarm_words: Sequence[int], fault_code: int = 0) -> bytes:
    """Return 0x98's data for D2-style fault words (the fourth's low byte only) and a code."""
    words = (*alarm_words, 0, 0, 0, 0)[:4]
    low_high = b"".join(word.to_bytes(2, "little") for word in words[:3])
    return low_high + bytes((words[3] & 0xFF, fault_code))


def decode_a5_rated(frame: A5Frame) -> BmsSettings:
    """Decode 0x50: rated capacity (Ah) and nominal cell voltage (V), the settings A5 tells."""
    invalid: list[str] = []
    values = _values(frame, A5_RATED_VALUES, invalid)
    return BmsSettings(
        rated_capacity=values["rated_capacity"],
        nominal_cell_voltage=values["nominal_cell_voltage"],
        invalid=tuple(invalid),
    )


def answer_values(status: BmsStatus, settings: BmsSettings, life: int) -> dict[str, float]:
    """Return the value of every single-frame field that answers ``status`` (virtual BMS).

    The inverse of the decoders above: what a BMS in ``status`` writes into its answers;
    ``life`` is 0x93's free-running counter. The charger and load flags and the DIO bits stay
    0, as they read in real answers while the pack carries 50 A (tomatensaus, mpp-solar#83).
    """
    temperatures = status.temperatures
    return {
        "pack_voltage": status.pack_voltage,
        "acquisition_voltage": 0,
        "current": -status.current,  # discharging counts positive
        "soc": status.soc,
        "max_cell_voltage": status.max_cell_voltage,
        "max_cell_index": status.max_cell_index,
        "min_cell_voltage": status.min_cell_voltage,
        "min_cell_index": status.min_cell_index,
        "max_temperature": status.max_temperature,
        "max_sensor": _number_of(temperatures, status.max_temperature),
        "min_temperature": status.min_temperature,
        "min_sensor": _number_of(temperatures, status.min_temperature),
        "charge_state": A5_CHARGE_STATES.index(status.charge_state),
        "charge_mos": status.charge_mos,
        "discharge_mos": status.discharge_mos,
        "life": life & 0xFF,
        "remaining_capacity": status.remaining_capacity,
        "cell_count": len(status.cell_voltages),
        "sensor_count": len(temperatures),
        "charger": 0,
        "load": 0,
        "dio": 0,
        "cycles": status.cycles,
        "rated_capacity": settings.rated_capacity,
        "nominal_cell_voltage": settings.nominal_cell_voltage,
    }


def _number_of(values: Sequence[float], value: float) -> int:
    """Return the 1-based number of ``value`` in ``values``, 0 where it is not there (NaN)."""
    return values.index(value) + 1 if value in values else 0


def _check(frame: A5Frame, command: int) -> None:
    if frame.command != command:
        raise FrameDecodeError(f"expected an answer to {command:#04x}, got {frame.command:#04x}")
    if len(frame.data) != DATA_SIZE:
        raise FrameDecodeError(
            f"an answer carries {DATA_SIZE} data bytes, this one of {command:#04x} "
            f"{len(frame.data)}"
        )


def decode_a5_status(answers: Mapping[int, Sequence[A5Frame]]) -> BmsStatus:
    """Build a status from one poll's answers, by command.

    0x90, 0x93, 0x94 and 0x95 are needed (FrameDecodeError without them); 0x91 and 0x92 add the
    BMS's own cell and temperature extremes, 0x96 the temperatures, 0x97 the balancing cells,
    0x98 the alarms.
    The checks are D2's: a value out of its range is NaN and named in ``invalid``, an unknown
    one NaN; a status no pack can be in (0 cells, 0 V while the cells hold voltage) and counts
    beyond what A5 carries are refused with FrameDecodeError, the only error raised.
    """
    for needed in (A5_SOC, A5_MOS, A5_STATUS, A5_CELL_VOLTAGES):
        if not answers.get(needed):
            raise FrameDecodeError(f"no answer to {needed:#04x}: the sample is incomplete")
    invalid: list[str] = []
    counts = decode_a5_counts(answers[A5_STATUS][0])
    cells = decode_a5_cell_voltages(answers[A5_CELL_VOLTAGES], counts.cell_count, invalid)
    pack = decode_a5_pack(answers[A5_SOC][0], invalid)
    check_plausible(counts.cell_count, pack.pack_voltage, cells)
    mos = decode_a5_mos(answers[A5_MOS][0], pack.current, invalid)
    temperatures = (
        decode_a5_temperatures(answers[A5_TEMPERATURES], counts.sensor_count, invalid)
        if answers.get(A5_TEMPERATURES)
        else ()
    )
    balancing_cells = (
        decode_a5_balancing(answers[A5_BALANCING][0], counts.cell_count)
        if answers.get(A5_BALANCING)
        else None
    )
    words, alarms = (
        decode_a5_failures(answers[A5_FAILURES][0]) if answers.get(A5_FAILURES) else ((), ())
    )
    told: dict[str, float] = {}
    if answers.get(A5_CELL_RANGE):
        told.update(decode_a5_cell_range(answers[A5_CELL_RANGE][0], invalid)._asdict())
    if answers.get(A5_TEMPERATURE_RANGE):
        extremes = decode_a5_temperature_range(answers[A5_TEMPERATURE_RANGE][0], invalid)
        told.update(
            max_temperature=extremes.max_temperature, min_temperature=extremes.min_temperature
        )
    derived = derive(cells, temperatures, told)
    return BmsStatus(
        cell_voltages=cells,
        temperatures=temperatures,
        pack_voltage=pack.pack_voltage,
        current=pack.current,
        soc=pack.soc,
        remaining_capacity=mos.remaining_capacity,
        cycles=counts.cycles,
        charge_mos=mos.charge_mos,
        discharge_mos=mos.discharge_mos,
        balancing=any(balancing_cells or ()),
        balancing_cells=balancing_cells,
        alarm_words=words,
        alarms=alarms,
        power=round(pack.pack_voltage * pack.current, 1),
        charge_state=mos.charge_state,
        invalid=tuple(invalid),
        **derived._asdict(),
    )
