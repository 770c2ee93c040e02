"""The virtual BMS's A5 answers (UART/RS485 ports, older Bluetooth modules), from the battery model.

Each request ``A5 <host> <command> 08 …`` gets the frames that ``protocol.a5`` decodes back into
the model's status at that moment: 0x90..0x98, and 0x50 (rated capacity and nominal cell
voltage). The answers carry what real devices send, not only what Daly's document says:

- byte 1 is the board number (1 alone on a bus); board N answers host address 0x40 + N - 1, and
  a UART port or Bluetooth module answers 0x80 too, an RS485 port only its 0x40 address
  (esphome/issues#3452, esphome/esphome#12445, fl4p/batmon-ha#416's module);
- the BMS builds every answer in one 8-byte transmit buffer, writing its fields from the start:
  reserved bytes past them hold what earlier answers left there (0x91 D6-7 = the SOC of the
  0x90 answer before it, 0x94 D7 = D7 of 0x93, the same D7 in every 0x95 frame: the sessions in
  tomatensaus/bms ``test_daly.py`` and jblance/mpp-solar#83);
- 0x93 byte 3, "BMS life", is a free-running counter (tomatensaus' captures);
- the current is 30000 + 10 I with I positive when discharging (tomatensaus, mpp-solar#83),
  the opposite of this driver's sign;
- 0x95 and 0x96 send ceil(cells / 3) and ceil(sensors / 7) frames numbered from 1, or, as
  Bluetooth modules and some UART ports do, all 16 and 3 frames padded with zeros
  (mpp-solar#83, dreadnought/python-daly-bms ``_calc_num_responses``);
- 0x98 is the model's alarm words, bytes 0..6 as the D2 fault registers hold them.

Requests for other commands or host addresses, or that are not valid requests, go unanswered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import replace

from daly_bms_ros.protocol import BmsStatus
from daly_bms_ros.protocol.a5 import (
    ALL_CELL_FRAMES,
    ALL_TEMPERATURE_FRAMES,
    DATA_SIZE,
    MAX_BOARD,
    MAX_CELLS,
    WIRED_HOST_ADDRESSES,
    build_a5_answer,
    frames_expected,
    parse_a5_request,
)
from daly_bms_ros.protocol.registers import (
    A5_BALANCING,
    A5_CELL_RANGE,
    A5_CELL_VOLTAGES,
    A5_CELLS_PER_FRAME,
    A5_CHARGE_STATES,
    A5_CURRENT_OFFSET,
    A5_FAILURES,
    A5_MOS,
    A5_RATED_VALUES,
    A5_SOC,
    A5_STATUS,
    A5_TEMPERATURE_OFFSET,
    A5_TEMPERATURE_RANGE,
    A5_TEMPERATURES,
    A5_TEMPERATURES_PER_FRAME,
)
from daly_bms_ros.sim.battery import BatteryModel

#: Steps of the 0x93 "BMS life" counter a second (its real rate is not known).
HEARTBEAT_PER_SECOND = 1.0


def default_host_addresses(board: int) -> tuple[int, ...]:
    """Return what a UART port of board ``board`` answers: 0x40 + board - 1, and 0x80."""
    upper_computer, bluetooth_app = WIRED_HOST_ADDRESSES
    return (upper_computer + board - 1, bluetooth_app)


def _u16(value: float) -> bytes:
    return round(value).to_bytes(2, "big")


class A5Responder:
    """Answer A5 requests with the model's state at the time of the request.

    ``host_addresses`` are the request addresses answered (default: ``default_host_addresses``);
    ``all_frames`` sends every frame of 0x95 and 0x96, padded with zeros.
    """

    def __init__(
        self,
        model: BatteryModel,
        board: int = 1,
        host_addresses: Collection[int] | None = None,
        all_frames: bool = False,
    ) -> None:
        if not 1 <= board <= MAX_BOARD:
            raise ValueError(f"the board number must be 1..{MAX_BOARD}, not {board}")
        self.model = model
        self.board = board
        self.host_addresses = frozenset(host_addresses or default_host_addresses(board))
        self.all_frames = all_frames
        self.started = time.monotonic()
        self._transmit = bytearray(DATA_SIZE)
        self._encoders: dict[int, Callable[[BmsStatus, float], list[bytes]]] = {
            A5_SOC: self._pack,
            A5_CELL_RANGE: self._cell_range,
            A5_TEMPERATURE_RANGE: self._temperature_range,
            A5_MOS: self._mos,
            A5_STATUS: self._counts,
            A5_CELL_VOLTAGES: self._cell_voltages,
            A5_TEMPERATURES: self._temperatures,
            A5_BALANCING: self._balancing,
            A5_FAILURES: self._failures,
            A5_RATED_VALUES: self._rated_values,
        }

    def __call__(self, request: bytes) -> bytes | None:
        """Return the answer frames to ``request`` now, or None for one this BMS ignores."""
        return self.answer(request, time.monotonic() - self.started)

    def answer(self, request: bytes, elapsed: float) -> bytes | None:
        """Return the answer frames to ``request`` ``elapsed`` seconds after the start."""
        frame = parse_a5_request(request)
        if frame is None or frame.address not in self.host_addresses:
            return None
        encode = self._encoders.get(frame.command)
        if encode is None:
            return None
        fields = encode(self.model.status(elapsed), elapsed)
        return b"".join(self._frame(frame.command, data) for data in fields)

    def _frame(self, command: int, fields: bytes) -> bytes:
        """Write ``fields`` over the start of the transmit buffer and send the buffer."""
        self._transmit[: len(fields)] = fields
        return build_a5_answer(command, bytes(self._transmit), self.board)

    @staticmethod
    def _pack(status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x90: the acquisition voltage (bytes 2..3) is 0, as in every real answer."""
        current = A5_CURRENT_OFFSET - status.current * 10
        return [_u16(status.pack_voltage * 10) + _u16(0) + _u16(current) + _u16(status.soc * 10)]

    @staticmethod
    def _cell_range(status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x91: bytes 6..7 are reserved (stale)."""
        return [
            _u16(status.max_cell_voltage * 1000)
            + bytes((status.max_cell_index,))
            + _u16(status.min_cell_voltage * 1000)
            + bytes((status.min_cell_index,))
        ]

    @staticmethod
    def _temperature_range(status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x92: bytes 4..7 are reserved (stale)."""
        temperatures = status.temperatures
        highest, lowest = max(temperatures), min(temperatures)
        return [
            bytes(
                (
                    round(highest) + A5_TEMPERATURE_OFFSET,
                    temperatures.index(highest) + 1,
                    round(lowest) + A5_TEMPERATURE_OFFSET,
                    temperatures.index(lowest) + 1,
                )
            )
        ]

    @staticmethod
    def _mos(status: BmsStatus, elapsed: float) -> list[bytes]:
        """0x93: state, MOS switches, the free-running counter, remaining capacity in mAh."""
        heartbeat = int(elapsed * HEARTBEAT_PER_SECOND) & 0xFF
        state = A5_CHARGE_STATES.index(status.charge_state)
        switches = bytes((state, status.charge_mos, status.discharge_mos, heartbeat))
        return [switches + round(status.remaining_capacity * 1000).to_bytes(4, "big")]

    @staticmethod
    def _counts(status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x94: counts, flags, cycles; byte 7 is stale.

        The charger and load flags and the DIO bits stay 0, as they read in real answers while
        the pack carries 50 A (tomatensaus, mpp-solar#83).
        """
        counts = (len(status.cell_voltages), len(status.temperatures), 0, 0, 0)
        return [bytes(counts) + _u16(status.cycles)]

    def _cell_voltages(self, status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x95: frame number, three cells of mV, zeros past the last cell; byte 7 is stale."""
        millivolts = b"".join(_u16(voltage * 1000) for voltage in status.cell_voltages)
        return self._series(A5_CELL_VOLTAGES, ALL_CELL_FRAMES, millivolts, A5_CELLS_PER_FRAME * 2)

    def _temperatures(self, status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x96: frame number, seven sensors of degC + 40, zeros past the last sensor."""
        raw = bytes(round(t) + A5_TEMPERATURE_OFFSET for t in status.temperatures)
        return self._series(A5_TEMPERATURES, ALL_TEMPERATURE_FRAMES, raw, A5_TEMPERATURES_PER_FRAME)

    def _series(self, command: int, every_frame: int, values: bytes, width: int) -> list[bytes]:
        """Cut ``values`` into frames of ``width`` bytes after the frame number, zero-padded."""
        model = self.model
        count = (
            every_frame if self.all_frames else frames_expected(command, model.cells, model.sensors)
        )
        return [
            bytes((number + 1,)) + values[number * width : (number + 1) * width].ljust(width, b"\0")
            for number in range(count)
        ]

    @staticmethod
    def _balancing(status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x97: byte i, bit j (least significant first) is cell 8i + j + 1, for 48 cells.

        Bits 48..63 (bytes 6..7) are reserved in Daly's document, so stale here; no real answer
        with a cell balancing has been published to show either.
        """
        bits = sum(1 << index for index, on in enumerate(status.balancing_cells or ()) if on)
        return [bits.to_bytes(MAX_CELLS // 8, "little")]

    @staticmethod
    def _failures(status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x98: the model's alarm words, then fault code 0.

        The first three words low byte first, the fourth's low byte only (its bits end at 3).
        """
        words = (*status.alarm_words, 0, 0, 0, 0)[:4]
        low_high = b"".join(word.to_bytes(2, "little") for word in words[:3])
        return [low_high + bytes((words[3] & 0xFF, 0))]

    def _rated_values(self, _status: BmsStatus, _elapsed: float) -> list[bytes]:
        """0x50: rated capacity in mAh and nominal cell voltage in mV, four bytes each."""
        settings = self.model.settings()
        return [
            round(settings.rated_capacity * 1000).to_bytes(4, "big")
            + round(settings.nominal_cell_voltage * 1000).to_bytes(4, "big")
        ]


class A5Bus:
    """Boards 1..N on one RS485 bus: every board hears each request, the one addressed answers.

    Board n answers host address 0x40 + n - 1 alone, as an RS485 port does, from a model of
    its own whose state of charge starts 10 points below the board before it, so a client can
    tell which board answered.
    """

    def __init__(self, model: BatteryModel, boards: int) -> None:
        if not 2 <= boards <= MAX_BOARD:
            raise ValueError(f"a bus carries 2..{MAX_BOARD} boards, not {boards}")
        self.boards = [
            A5Responder(
                replace(model, initial_soc=max(model.initial_soc - 0.1 * index, 0.05)),
                board,
                default_host_addresses(board)[:1],
            )
            for index, board in enumerate(range(1, boards + 1))
        ]

    def __call__(self, request: bytes) -> bytes | None:
        """Return the addressed board's answer to ``request``, or None when none is."""
        for board in self.boards:
            answer = board(request)
            if answer is not None:
                return answer
        return None
