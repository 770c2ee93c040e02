"""Faults the virtual BMS can be told to show, each for the next N answers (or writes).

They are the failures a driver meets with real packs: an answer that never comes, comes too late,
arrives with a bad CRC (an A5 answer: a bad checksum) or cut short, or arrives twice; and for
writes (a D2 write, an A5 MOSFET switch): no acknowledgement, an acknowledgement lost after the
write was applied, an acknowledgement of another value, or one of a write the BMS then ignores
(fl4p/batmon-ha#356: Daly firmware echoes writes to registers that do nothing).
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from daly_bms_ros.protocol import (
    build_write_answer,
    build_write_request,
    crc16_modbus,
    parse_write_request,
)
from daly_bms_ros.protocol.a5 import START as A5_START
from daly_bms_ros.protocol.a5 import build_a5_answer, build_a5_request, parse_a5_switch
from daly_bms_ros.protocol.registers import A5_MOS, WRITABLE

Answer = TypeVar("Answer")


class Fault(enum.Enum):
    """What to do to an answer."""

    NO_ANSWER = "no_answer"
    LATE = "late"
    CORRUPT_CRC = "corrupt_crc"
    TRUNCATED = "truncated"
    DUPLICATE = "duplicate"
    #: Writes only: the write is neither applied nor answered.
    NO_ACK = "no_ack"
    #: Writes only: the write is applied, its acknowledgement never comes.
    LOST_ACK = "lost_ack"
    #: Writes only: the write is applied, the echo carries another value.
    WRONG_ECHO = "wrong_echo"
    #: Writes only: the write is echoed as sent but not applied.
    IGNORED_WRITE = "ignored_write"


#: The faults that spoil a write rather than an answer.
WRITE_FAULTS = (Fault.NO_ACK, Fault.LOST_ACK, Fault.WRONG_ECHO, Fault.IGNORED_WRITE)
ANSWER_FAULTS = tuple(fault for fault in Fault if fault not in WRITE_FAULTS)


class FaultInjector:
    """Spoil the next answers as armed; answers pass unchanged when nothing is armed."""

    def __init__(self, late_delay: float = 3.0) -> None:
        self.late_delay = late_delay
        self.armed: Counter[Fault] = Counter()

    def arm(self, fault: Fault, count: int = 1) -> None:
        """Apply ``fault`` to the next ``count`` answers (ValueError for a count below 1)."""
        if count < 1:
            raise ValueError(f"count must be 1 or more, not {count}")
        self.armed[fault] += count

    def disarm(self, fault: Fault | None = None) -> None:
        """Forget what is armed: ``fault`` only, or everything."""
        for armed in Fault if fault is None else (fault,):
            self.armed[armed] = 0

    def _take(self, faults: tuple[Fault, ...]) -> Fault | None:
        for fault in faults:
            if self.armed[fault] > 0:
                self.armed[fault] -= 1
                return fault
        return None

    def take_write_fault(self) -> Fault | None:
        """Return the fault armed for the next write, if any (used up)."""
        return self._take(WRITE_FAULTS)

    def answer(
        self, request: bytes, respond: Callable[[bytes], Answer]
    ) -> tuple[Answer | bytes | None, bool]:
        """Answer ``request`` with ``respond``, spoiled by the write fault armed for a write.

        A write is a D2 one (function 0x06) or an A5 MOSFET switch (0xD9, 0xDA), whose answer
        carries the state in data byte 0. Also return whether the BMS now restarts: a restart
        it answered and did not ignore (it then drops its Bluetooth link).
        """
        write = parse_write_request(request)
        is_write = write is not None or parse_a5_switch(request) is not None
        fault = self.take_write_fault() if is_write else None
        if fault is Fault.NO_ACK:
            return None, False
        if fault is Fault.IGNORED_WRITE:
            if write is not None:
                return build_write_answer(request), False
            # The board's answer as if applied: which board is told by a read (no change).
            like = respond(build_a5_request(A5_MOS, request[1]))
            if not isinstance(like, bytes) or not like:
                return None, False
            return _a5_answer(request[2], request[4], like), False
        answer = respond(request)
        if not isinstance(answer, bytes) or not answer:  # a recorded answer is played as it was
            return answer, False
        restarts = write == (WRITABLE["restart"].address, (1,))
        if fault is Fault.LOST_ACK:
            return None, restarts
        if fault is Fault.WRONG_ECHO:
            if write is None:
                return _a5_answer(answer[2], answer[4] ^ 1, answer), False
            address, values = write
            return build_write_request(address, (values[0] + 1) & 0xFFFF), False
        return answer, restarts

    async def apply(self, answer: bytes) -> bytes | None:
        """Return what the BMS sends instead of ``answer`` (None: nothing), after any delay."""
        fault = self._take(ANSWER_FAULTS)
        if fault is Fault.NO_ANSWER:
            return None
        if fault is Fault.LATE:
            await asyncio.sleep(self.late_delay)
        if fault is Fault.CORRUPT_CRC:
            return _corrupt_check(answer)
        if fault is Fault.TRUNCATED:
            return answer[: len(answer) // 2]
        if fault is Fault.DUPLICATE:
            return answer + answer
        return answer


def _corrupt_check(answer: bytes) -> bytes:
    """Spoil the check of ``answer``: the checksum of an A5 answer's last frame, else the CRC."""
    if answer[0] == A5_START:
        return answer[:-1] + bytes((answer[-1] ^ 0xFF,))
    bad_crc = (crc16_modbus(answer[:-2]) ^ 0xFFFF).to_bytes(2, "little")
    return answer[:-2] + bad_crc


def _a5_answer(command: int, state: int, like: bytes) -> bytes:
    """Return an answer to A5 ``command`` with ``state`` in data byte 0, else as answer ``like``."""
    return build_a5_answer(command, bytes((state,)) + like[5:12], like[1])
