"""Faults the virtual BMS can be told to show, each for the next N answers.

They are the failures a driver meets with real packs: an answer that never comes, comes too late,
arrives with a bad CRC or cut short, or arrives twice.
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

    def _take(self) -> Fault | None:
        for fault in Fault:
            if self.armed[fault] > 0:
                self.armed[fault] -= 1
                return fault
        return None

    async def apply(self, answer: bytes) -> bytes | None:
        """Return what the BMS sends instead of ``answer`` (None: nothing), after any delay."""
        fault = self._take()
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
