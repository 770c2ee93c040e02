"""A5 frames to JSON objects for ``daly-bms decode``: one per answer, one per whole poll.

Each A5 answer names its command, so a frame is decoded by its own bytes, by the rows of
``protocol.a5.COMMANDS``. The answers of one poll (0x90, 0x93, 0x94 and the frames of 0x95 at
least) also give one status, as the driver builds it; a whole poll ends where a command comes
again (a frame of 0x95 or 0x96 whose number came already), or another board answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from daly_bms_ros.protocol import DalyProtocolError
from daly_bms_ros.protocol.a5 import (
    COMMANDS,
    MAX_CELLS,
    SWITCHED_BY,
    A5Frame,
    decode_a5_balancing,
    decode_a5_cell_range,
    decode_a5_counts,
    decode_a5_failures,
    decode_a5_mos,
    decode_a5_pack,
    decode_a5_rated,
    decode_a5_series_frame,
    decode_a5_status,
    decode_a5_temperature_range,
)
from daly_bms_ros.protocol.model import json_object
from daly_bms_ros.protocol.registers import (
    A5_BALANCING,
    A5_CELL_RANGE,
    A5_CELL_VOLTAGES,
    A5_FAILURES,
    A5_MOS,
    A5_RATED_VALUES,
    A5_SOC,
    A5_STATUS,
    A5_TEMPERATURE_RANGE,
    A5_TEMPERATURES,
)

#: The commands a poll cannot give a status without.
_NEEDED = (A5_SOC, A5_MOS, A5_STATUS, A5_CELL_VOLTAGES)


def _series(frame: A5Frame, invalid: list[str]) -> dict[str, Any]:
    number, values = decode_a5_series_frame(frame, invalid)
    return {"frame": number, "values": values}


def _failures(frame: A5Frame, _invalid: list[str]) -> dict[str, Any]:
    words, alarms = decode_a5_failures(frame)
    return {"alarm_words": words, "alarms": alarms}


#: Each command's answer decoded alone, as the driver's decoders read it (the current in the
#: driver's sign, the charge state by name).
_ALONE: dict[int, Callable[[A5Frame, list[str]], Mapping[str, Any]]] = {
    A5_SOC: lambda frame, invalid: decode_a5_pack(frame, invalid)._asdict(),
    A5_CELL_RANGE: lambda frame, invalid: decode_a5_cell_range(frame, invalid)._asdict(),
    A5_TEMPERATURE_RANGE: lambda frame, invalid: decode_a5_temperature_range(
        frame, invalid
    )._asdict(),
    A5_MOS: lambda frame, invalid: decode_a5_mos(frame, invalid=invalid)._asdict(),
    A5_STATUS: lambda frame, _invalid: decode_a5_counts(frame)._asdict(),
    A5_CELL_VOLTAGES: _series,
    A5_TEMPERATURES: _series,
    A5_BALANCING: lambda frame, _invalid: {
        "balancing_cells": decode_a5_balancing(frame, MAX_CELLS)
    },
    A5_FAILURES: _failures,
    A5_RATED_VALUES: lambda frame, invalid: decode_a5_rated(frame).to_dict(),
}


def describe_a5_frame(frame: A5Frame) -> dict[str, Any]:
    """JSON object for one A5 answer: its command's values (NaN as None), or an error.

    The answer to a MOSFET switch tells the state asked in data byte 0 (``registers`` [O]).
    """
    switched = SWITCHED_BY.get(frame.command)
    if switched is not None:
        return {"block": f"a5_{switched}", "command": f"{frame.command:#04x}",
                "board": frame.address, switched: frame.data[0]}  # fmt: skip
    command = COMMANDS.get(frame.command)
    if command is None:
        return {"error": "unknown_command", "command": f"{frame.command:#04x}"}
    head = {"block": f"a5_{command.name}", "command": f"{frame.command:#04x}"}
    invalid: list[str] = []
    try:
        values = _ALONE[frame.command](frame, invalid)
    except DalyProtocolError as error:
        return {"error": "undecodable", **head, "detail": str(error)}
    return json_object({**head, "board": frame.address, "invalid": invalid, **values})


class A5Poll:
    """The answers of one poll; once a command comes again after a whole poll, one status.

    A command that comes again before the poll is whole (a detection's 0x90 ahead of the
    poll's own) replaces its earlier answer; another board's answer ends the poll.
    """

    def __init__(self) -> None:
        self._answers: dict[int, list[A5Frame]] = {}

    def _again(self, frame: A5Frame) -> bool:
        """Whether ``frame`` answers a command this poll holds already."""
        earlier = self._answers.get(frame.command, [])
        if not earlier:
            return False
        command = COMMANDS.get(frame.command)
        numbered = command is not None and command.series is not None
        return not numbered or any(old.number == frame.number for old in earlier)

    def _whole(self) -> bool:
        return all(command in self._answers for command in _NEEDED)

    def push(self, frame: A5Frame) -> list[dict[str, Any]]:
        """Take the next answer; return the status of the poll it ended (if whole) and itself."""
        decoded = []
        board = next((frames[0].address for frames in self._answers.values()), frame.address)
        if frame.address != board or (self._again(frame) and self._whole()):
            decoded = self.finish()
        elif self._again(frame):
            del self._answers[frame.command]
        self._answers.setdefault(frame.command, []).append(frame)
        return [*decoded, describe_a5_frame(frame)]

    def finish(self) -> list[dict[str, Any]]:
        """Return the status of the answers held, where they make one; start a new poll."""
        whole = self._whole()
        answers, self._answers = self._answers, {}
        if not whole:
            return []
        try:
            status = decode_a5_status(answers)
        except DalyProtocolError as error:
            return [{"error": "undecodable", "block": "a5_status", "detail": str(error)}]
        return [{"block": "a5_status", "board": answers[A5_SOC][0].address, **status.to_dict()}]


def decode_a5_frames(frames: Iterable[A5Frame]) -> Iterator[dict[str, Any]]:
    """Decode each answer as it comes, and each whole poll's status after its last answer."""
    poll = A5Poll()
    for frame in frames:
        yield from poll.push(frame)
    yield from poll.finish()
