"""The virtual BMS's A5 answers (UART/RS485 ports, older Bluetooth modules), from the battery model.

Each request ``A5 <host> <command> 08 …`` gets the frames that ``protocol.a5`` decodes back into
the model's status at that moment: 0x90..0x98, and 0x50 (rated capacity and nominal cell
voltage). A MOSFET switch, 0xD9 (discharge) or 0xDA (charge) with data byte 0 = 1 on, 0 off,
switches the model's MOSFET (one switched off stops the current through it) and is answered as
Daly's PC software saw it answered: the same command, data byte 0 the state asked, the other
bytes what the transmit buffer held (``registers`` [O]). The answers carry what real devices
send, not only what Daly's document says:

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
from collections.abc import Collection
from dataclasses import replace

from daly_bms_ros.protocol.a5 import (
    COMMANDS,
    DATA_SIZE,
    MAX_BOARD,
    WIRED_HOST_ADDRESSES,
    answer_values,
    build_a5_answer,
    encode_a5_balancing,
    encode_a5_failures,
    encode_a5_series,
    frames_expected,
    parse_a5_request,
    parse_a5_switch,
)
from daly_bms_ros.protocol.fields import write_fields
from daly_bms_ros.protocol.registers import A5_BALANCING, A5_CELL_VOLTAGES, A5_FAILURES
from daly_bms_ros.sim.battery import BatteryModel

#: Steps of the 0x93 "BMS life" counter a second (its real rate is not known).
HEARTBEAT_PER_SECOND = 1.0


def default_host_addresses(board: int) -> tuple[int, ...]:
    """Return what a UART port of board ``board`` answers: 0x40 + board - 1, and 0x80."""
    upper_computer, bluetooth_app = WIRED_HOST_ADDRESSES
    return (upper_computer + board - 1, bluetooth_app)


class A5Responder:
    """Answer A5 requests with the model's state at the time of the request.

    Every answer is encoded from the rows of ``protocol.a5.COMMANDS`` that the driver decodes
    with. ``host_addresses`` are the request addresses answered (default:
    ``default_host_addresses``); ``all_frames`` sends every frame of 0x95 and 0x96, padded
    with zeros.
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

    def __call__(self, request: bytes) -> bytes | None:
        """Return the answer frames to ``request`` now, or None for one this BMS ignores."""
        return self.answer(request, time.monotonic() - self.started)

    def answer(self, request: bytes, elapsed: float) -> bytes | None:
        """Return the answer frames to ``request`` ``elapsed`` seconds after the start."""
        frame = parse_a5_request(request)
        if frame is None or frame.address not in self.host_addresses:
            return None
        switch = parse_a5_switch(request)
        if switch is not None:
            name, on = switch
            self.model.write(elapsed, name, on)
            return self._frame(frame.command, bytes((on,)))
        command = COMMANDS.get(frame.command)
        if command is None:
            return None
        status = self.model.status(elapsed)
        if command.series is not None:
            values = (
                status.cell_voltages if command.code == A5_CELL_VOLTAGES else status.temperatures
            )
            frames = (
                command.series.every_frame
                if self.all_frames
                else frames_expected(command.code, self.model.cells, self.model.sensors)
            )
            data = encode_a5_series(command.code, values, frames)
        elif command.code == A5_BALANCING:
            data = [encode_a5_balancing(status.balancing_cells or ())]
        elif command.code == A5_FAILURES:
            data = [encode_a5_failures(status.alarm_words)]
        else:
            life = int(elapsed * HEARTBEAT_PER_SECOND)
            values_by_name = answer_values(status, self.model.settings(), life)
            write_fields(command.fields, values_by_name, self._transmit)
            data = [bytes(self._transmit)]
        return b"".join(self._frame(command.code, fields) for fields in data)

    def _frame(self, command: int, fields: bytes) -> bytes:
        """Write ``fields`` over the start of the transmit buffer and send the buffer.

        The BMS builds every answer in one 8-byte buffer: bytes past what it writes hold what
        an earlier answer left there.
        """
        self._transmit[: len(fields)] = fields
        return build_a5_answer(command, bytes(self._transmit), self.board)


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
