"""Faults the virtual BMS can be told to show, each for the next N answers (or writes).

They are the failures a driver meets with real packs: an answer that never comes, comes too late,
arrives with a bad CRC or cut short, or arrives twice; and for writes: no acknowledgement, an
echo of another value, or an echo of a write the BMS then ignores (fl4p/batmon-ha#356: Daly
firmware echoes writes to registers that do nothing).
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter

from daly_bms_ros.protocol import crc16_modbus


class Fault(enum.Enum):
    """What to do to an answer."""

    NO_ANSWER = "no_answer"
    LATE = "late"
    CORRUPT_CRC = "corrupt_crc"
    TRUNCATED = "truncated"
    DUPLICATE = "duplicate"
    #: Writes only: the write is neither applied nor answered.
    NO_ACK = "no_ack"
    #: Writes only: the write is applied, the echo carries another value.
    WRONG_ECHO = "wrong_echo"
    #: Writes only: the write is echoed as sent but not applied.
    IGNORED_WRITE = "ignored_write"


#: The faults that spoil a write rather than an answer.
WRITE_FAULTS = (Fault.NO_ACK, Fault.WRONG_ECHO, Fault.IGNORED_WRITE)
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

    async def apply(self, answer: bytes) -> bytes | None:
        """Return what the BMS sends instead of ``answer`` (None: nothing), after any delay."""
        fault = self._take(ANSWER_FAULTS)
        if fault is Fault.NO_ANSWER:
            return None
        if fault is Fault.LATE:
            await asyncio.sleep(self.late_delay)
        if fault is Fault.CORRUPT_CRC:
            bad_crc = (crc16_modbus(answer[:-2]) ^ 0xFFFF).to_bytes(2, "little")
            return answer[:-2] + bad_crc
        if fault is Fault.TRUNCATED:
            return answer[: len(answer) // 2]
        if fault is Fault.DUPLICATE:
            return answer + answer
        return answer
