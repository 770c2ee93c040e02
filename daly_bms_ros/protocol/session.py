"""The conversation with a BMS, sans I/O: what to ask next and what an answer means.

A session is a generator: it yields an ``Ask`` (the requests to send, and ``accept``, which
takes each frame that arrives and says whether it is the answer), and is sent back what
``accept`` took, or None when no answer came in time. It returns what it read, or raises
``NoAnswerError`` when the BMS stayed silent after the retries. It owns no socket, no clock and no
event loop: the caller (``link.client``) sends, feeds, waits and times out, and tests drive a
session with frames alone.

What one connection learned about the BMS (its protocol, its D2 status read, its settings,
what it does not answer) is kept in a ``PackMemory`` the sessions read and fill.

Detection is a session too: the probes, in an order given by the transport's kind. Over a
wire A5 is asked first (UART/RS485 ports speak it; wired D2 boards the 0x81 variant), over
Bluetooth last (Daly's "DL-" modules speak D2; older modules A5). A protocol named by the user
is the only one asked.

A write is two pieces: ``ask_write`` asks it in the protocol the BMS speaks (a D2 register, an
A5 MOSFET switch) and tells whether the answer acknowledges it; ``read_written`` reads back
what the BMS holds, the only proof. Binding a write to its link and judging its outcome is the
client's.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from daly_bms_ros.protocol.a5 import (
    A5Frame,
    build_a5_request,
    build_a5_switch,
    decode_a5_counts,
    decode_a5_mos,
    decode_a5_rated,
    decode_a5_status,
    frames_expected,
)
from daly_bms_ros.protocol.decoding import (
    decode_settings,
    decode_status,
    decode_status_with_mos,
    decode_x81_status,
)
from daly_bms_ros.protocol.errors import DalyProtocolError
from daly_bms_ros.protocol.frames import (
    D2,
    READ,
    WRITE_SINGLE,
    X81,
    Frame,
    Variant,
    build_read_request,
    build_write_request,
)
from daly_bms_ros.protocol.model import BmsSettings, BmsStatus
from daly_bms_ros.protocol.registers import (
    A5_CELL_VOLTAGES,
    A5_MOS,
    A5_RATED_VALUES,
    A5_SAMPLE_COMMANDS,
    A5_SOC,
    A5_STATUS,
    A5_TEMPERATURES,
    A5_WRITES,
    MOS_BLOCK,
    SETTINGS_BLOCK,
    SETTINGS_REGISTERS,
    STATUS_80_BLOCK,
    STATUS_BLOCK,
    WRITABLE,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    Block,
)

MODBUS = "modbus"
A5 = "a5"


@dataclass(frozen=True)
class Ask:
    """Send ``requests`` (in the ``family``'s framing); give ``accept`` each frame that arrives.

    ``accept`` returns the answer, or None for a frame that is not it (a stale one, the tail
    of an earlier answer, another board's) or not all of it yet (a multi-frame answer).
    ``paced``: a Daly UART needs a pause before the request (the caller knows how long).
    """

    family: str
    requests: tuple[bytes, ...]
    accept: Callable[[Any], Any]
    paced: bool = False


#: A session: yields what to ask, is sent the accepted answer (None: none in time), returns
#: what it read.
Session = Generator[Ask, Any, Any]


class NoAnswerError(DalyProtocolError):
    """The BMS did not answer a request, also after the retries."""


class Detected(NamedTuple):
    """What detection found: the protocol's family and, for D2/0x81, the first status frame."""

    variant: Variant | None
    status_block: Block
    a5_host: int | None
    first_frame: Frame | None


class Reading(NamedTuple):
    """A sample's content, as read; when it arrived is the caller's to say."""

    status: BmsStatus
    settings: BmsSettings | None
    status_frame: bytes


@dataclass
class PackMemory:
    """What one connection learned about its BMS; ``forget`` starts a new connection."""

    #: The protocol the BMS answered; None until the first sample (and for A5).
    variant: Variant | None = None
    #: The host address an A5 BMS answers (0x40, 0x80); None when not found to speak A5.
    a5_host: int | None = None
    #: The D2 status read the BMS answers: 80 registers (one request a sample) or 62.
    status_block: Block = STATUS_80_BLOCK
    settings: BmsSettings | None = None
    #: Cleared on a connection whose BMS does not answer the MOS temperature block.
    read_mos_temperature: bool = True
    #: The optional A5 commands this connection's BMS does not answer.
    a5_unanswered: set[int] = field(default_factory=set)

    @property
    def protocol(self) -> str:
        """The protocol found: "d2", "x81", "a5", or "" before the first sample."""
        if self.a5_host is not None:
            return "a5"
        return self.variant.name if self.variant is not None else ""

    def forget(self) -> None:
        """Forget what a connection learned: a new one finds it anew."""
        self.settings = None
        self.read_mos_temperature = True
        self.a5_unanswered.clear()
        self.variant = None
        self.a5_host = None
        self.status_block = STATUS_80_BLOCK


def read_answer(probes: tuple[tuple[Block, Variant], ...]) -> Callable[[Frame], Any]:
    """Accept the answer to any of the read requests of ``probes``: (block, variant, frame).

    An answer is told by its responding address and length: a frame of another length (the
    answer to an earlier request, a write's echo) is not it.
    """

    def accept(frame: Frame) -> tuple[Block, Variant, Frame] | None:
        for block, variant in probes:
            if (
                frame.function == READ
                and len(frame.payload) == block.byte_count
                and frame.address == variant.response_address
            ):
                return block, variant, frame
        return None

    return accept


def ask_blocks(probes: tuple[tuple[Block, Variant], ...]) -> Ask:
    """Ask for each probe's block at once (a BMS answers its own protocol's only)."""
    requests = tuple(build_read_request(block, variant) for block, variant in probes)
    return Ask(MODBUS, requests, read_answer(probes))


def read_block(block: Block, retries: int, variant: Variant = D2) -> Session:
    """Read ``block``, asking again on silence; return its answer frame."""
    attempts = retries + 1
    for _attempt in range(attempts):
        answer = yield ask_blocks(((block, variant),))
        if answer is not None:
            return answer[2]
    raise NoAnswerError(f"no answer to the {block.name} request after {attempts} tries")


class A5Answer:
    """Accept the ``expected`` frames answering an A5 ``command`` (numbered from 1).

    Frames of another command (the tail of an earlier answer) and, on a shared bus (board
    above 1), other boards' frames are not it; frames numbered beyond ``expected`` (the
    padding some BMS send) are not waited for. A BMS sends its frames in order: a number not
    above the last one starts the answer again, and the frames held from that number on were
    stale, the end of an earlier answer (jblance/mpp-solar#516: a read began with frame 6 of
    the previous poll, then frames 1..6).
    """

    def __init__(self, command: int, expected: int, board: int) -> None:
        self.command = command
        self.expected = expected
        self.board = board
        self._got: dict[int, A5Frame] = {}
        self._last = 0

    def __call__(self, frame: A5Frame) -> list[A5Frame] | None:
        """Return the whole answer once ``frame`` completes it, else None."""
        if frame.command != self.command:
            return None
        if self.board > 1 and frame.address != self.board:
            return None
        if self.expected == 1:
            return [frame]
        number = frame.number
        if number <= self._last:
            self._got = {held: old for held, old in self._got.items() if held < number}
        self._last = number
        if 1 <= number <= self.expected:
            self._got[number] = frame
        if len(self._got) < self.expected:
            return None
        return [self._got[held] for held in sorted(self._got)]


def ask_a5(command: int, host: int, board: int, expected: int = 1) -> Ask:
    """Ask one A5 command from ``host``."""
    request = build_a5_request(command, host)
    return Ask(A5, (request,), A5Answer(command, expected, board), paced=True)


def read_a5(command: int, host: int, board: int, retries: int, expected: int = 1) -> Session:
    """Read one A5 command's frames, asking again on silence."""
    attempts = retries + 1
    for _attempt in range(attempts):
        frames = yield ask_a5(command, host, board, expected)
        if frames is not None:
            return frames
    raise NoAnswerError(f"no answer to A5 command {command:#04x} after {attempts} tries")


#: What a BMS of unknown protocol is asked first, all at once: the D2 status of 80 registers
#: and the first 0x81 status block. A BMS answers its own protocol only, so the answer tells
#: the protocol in one round trip.
DETECTION_PROBES: tuple[tuple[Block, Variant], ...] = ((STATUS_80_BLOCK, D2), (X81_PACK_BLOCK, X81))
#: Asked when the probes go unanswered: D2 firmware that answers only the 62-register status.
FALLBACK_PROBES: tuple[tuple[Block, Variant], ...] = ((STATUS_BLOCK, D2),)
#: What ``protocol`` may name: "auto" finds it out; the others are the only one asked.
PROTOCOLS = ("auto", "d2", "x81", "a5")
#: The Modbus-style probe rounds of each choice (A5 has none).
MODBUS_PROBES: dict[str, tuple[tuple[tuple[Block, Variant], ...], ...]] = {
    "auto": (DETECTION_PROBES, FALLBACK_PROBES),
    "d2": (((STATUS_80_BLOCK, D2),), FALLBACK_PROBES),
    "x81": (((X81_PACK_BLOCK, X81),),),
    "a5": (),
}


@dataclass(frozen=True)
class DetectionPlan:
    """How to find the protocol: which (``protocol``), over what (``wired``), how often.

    ``a5_hosts``: the A5 host addresses to ask from, in order (``a5.host_addresses``).
    """

    protocol: str
    wired: bool
    retries: int
    a5_hosts: tuple[int, ...]
    board: int = 1

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not known: allowed are {PROTOCOLS}")

    @property
    def rounds(self) -> list[str]:
        """The families asked, in order: each round of probes is one family's."""
        rounds = self.retries + 1
        if self.protocol == "a5":
            return [A5] * rounds
        if self.protocol != "auto":
            return [MODBUS] * rounds
        if self.wired:
            return [A5, MODBUS] * rounds
        return [MODBUS] * rounds + [A5]


def detect(plan: DetectionPlan) -> Session:
    """Find the protocol the BMS speaks (see the module's description); return ``Detected``.

    Modbus-style probes ask the D2 80-register status and the 0x81 status at once, then the
    D2 62-register status alone; A5 probes ask 0x90 from each host address.
    """
    for family in plan.rounds:
        if family == MODBUS:
            for probes in MODBUS_PROBES[plan.protocol]:
                answer = yield ask_blocks(probes)
                if answer is not None:
                    block, variant, frame = answer
                    return Detected(variant, block, None, frame)
        else:
            for host in plan.a5_hosts:
                if (yield ask_a5(A5_SOC, host, plan.board)) is not None:
                    return Detected(None, STATUS_80_BLOCK, host, None)
    asked = "any protocol (D2, 0x81, A5)" if plan.protocol == "auto" else plan.protocol
    raise NoAnswerError(
        f"no answer to the status request of {asked} after {plan.retries + 1} rounds"
    )


#: The A5 commands a sample cannot do without; the others (extremes, balancing, alarms) are
#: asked once without a retry and left out for the connection when unanswered.
A5_NEEDED = frozenset((A5_SOC, A5_MOS, A5_STATUS, A5_CELL_VOLTAGES))


def a5_sample(memory: PackMemory, _first_frame: Frame | None, plan: DetectionPlan) -> Session:
    """Ask each A5 command of a sample, 0x94 first: its counts say how many frames follow.

    A needed command unanswered after the retries fails the sample; an optional one is left
    out for the rest of the connection. 0x50 (rated capacity, nominal cell voltage) is asked
    once a connection and not again when unanswered: Daly's document leaves the command out,
    so not every board may know it.
    """
    host, board, retries = memory.a5_host, plan.board, plan.retries
    assert host is not None, "a5_sample needs the host address detection found"
    answers: dict[int, list[A5Frame]] = {}
    cells = sensors = 0
    for command in A5_SAMPLE_COMMANDS:
        if command in memory.a5_unanswered or (command == A5_TEMPERATURES and not sensors):
            continue
        expected = frames_expected(command, cells, sensors)
        if command in A5_NEEDED:
            answers[command] = yield from read_a5(command, host, board, retries, expected)
        else:
            try:
                answers[command] = yield from read_a5(command, host, board, 0, expected)
            except NoAnswerError:
                memory.a5_unanswered.add(command)
        if command == A5_STATUS:
            counts = decode_a5_counts(answers[A5_STATUS][0])
            cells, sensors = counts.cell_count, counts.sensor_count
    status = decode_a5_status(answers)
    if memory.settings is None and A5_RATED_VALUES not in memory.a5_unanswered:
        try:
            [frame] = yield from read_a5(A5_RATED_VALUES, host, board, 0)
            memory.settings = decode_a5_rated(frame)
        except NoAnswerError:
            memory.a5_unanswered.add(A5_RATED_VALUES)
    return Reading(status, memory.settings, answers[A5_SOC][0].to_bytes())


def x81_sample(_memory: PackMemory, pack: Frame | None, plan: DetectionPlan) -> Session:
    """Read a 0x81 sample: its two blocks (it has no block with the capacity)."""
    if pack is None:
        pack = yield from read_block(X81_PACK_BLOCK, plan.retries, X81)
    state = yield from read_block(X81_STATE_BLOCK, plan.retries, X81)
    return Reading(decode_x81_status(pack, state), None, pack.to_bytes())


def d2_sample(memory: PackMemory, status_frame: Frame | None, plan: DetectionPlan) -> Session:
    """Read a D2 sample: settings once per connection; the MOS block after a 62 read.

    The MOS block (0x3E x 9) is registers 62..70 of the 80-register read: after a
    62-register read it brings the per-cell balancing bits, the balance current, the MOS
    and the board temperature, where the BMS answers it; a BMS that does not is not asked
    again on this connection.
    """
    retries = plan.retries
    if status_frame is None:
        status_frame = yield from read_block(memory.status_block, retries)
    status = decode_status(status_frame)
    if memory.settings is None:
        memory.settings = decode_settings((yield from read_block(SETTINGS_BLOCK, retries)))
    if memory.status_block is STATUS_BLOCK and memory.read_mos_temperature:
        try:
            mos = yield from read_block(MOS_BLOCK, retries)
            status = decode_status_with_mos(status_frame, mos)
        except (NoAnswerError, DalyProtocolError):
            memory.read_mos_temperature = False
    return Reading(status, memory.settings, status_frame.to_bytes())


#: Each family's sample session, by the protocol name detection finds: called with what the
#: connection learned, the status frame detection brought (None if it brought none), the plan.
FAMILY_SAMPLES: dict[str, Callable[[PackMemory, Frame | None, DetectionPlan], Session]] = {
    "d2": d2_sample,
    "x81": x81_sample,
    "a5": a5_sample,
}


def sample(memory: PackMemory, plan: DetectionPlan) -> Session:
    """Read a complete sample of whichever protocol the BMS speaks, found first if not known.

    Returns a ``Reading``; what detection found is kept in ``memory``.
    """
    first_frame = None
    if not memory.protocol:
        found = yield from detect(plan)
        memory.variant, memory.status_block, memory.a5_host, first_frame = found
    return (yield from FAMILY_SAMPLES[memory.protocol](memory, first_frame, plan))


def write_refusal(memory: PackMemory, name: str) -> str:
    """Return why setting ``name`` cannot be written to the BMS ``memory`` found, "" if it can.

    A D2 BMS takes every setting of WRITABLE; an A5 BMS the two MOSFET switches (A5_WRITES);
    for 0x81 no write is known.
    """
    if memory.a5_host is not None:
        if name in A5_WRITES:
            return ""
        return (
            f"an A5 BMS takes the MOSFET switches only ({', '.join(A5_WRITES)}: commands 0xD9 "
            f"and 0xDA); no public source shows how it takes {name}"
        )
    if memory.variant is not D2:
        return (
            "writes are known for the D2 and A5 protocols only; no public source shows how a "
            "0x81 pack takes them over Bluetooth"
        )
    return ""


def write_address(memory: PackMemory, name: str) -> int:
    """Return where the write of ``name`` goes: the A5 command, or the D2 register."""
    return A5_WRITES[name] if memory.a5_host is not None else WRITABLE[name].address


def ask_write(memory: PackMemory, name: str, raw: int, board: int) -> Ask:
    """Ask the write of ``raw`` into setting ``name`` in the protocol the BMS speaks.

    ``accept`` takes the BMS's answer to it and tells whether it acknowledges the value as
    sent (True) or tells another (False). A D2 write is echoed: function 0x06 with the
    request's register and value. An A5 switch is answered with the same command from the
    board, data byte 0 the state (``registers`` [O]); an RS485 adapter's copy of the request
    carries the host address, which the A5 assembler drops, so it never passes for the
    answer. Neither proves the write: only the read-back does (``read_written``).
    """
    if memory.a5_host is not None:
        command_answer = A5Answer(A5_WRITES[name], 1, board)

        def accept_a5(frame: A5Frame) -> bool | None:
            answer = command_answer(frame)
            return None if answer is None else answer[0].data[0] == raw

        return Ask(A5, (build_a5_switch(name, raw, memory.a5_host),), accept_a5, paced=True)
    request = build_write_request(WRITABLE[name].address, raw)

    def accept_d2(frame: Frame) -> bool | None:
        return frame.payload == request[2:6] if frame.function == WRITE_SINGLE else None

    return Ask(MODBUS, (request,), accept_d2)


def read_written(memory: PackMemory, name: str, plan: DetectionPlan) -> Session:
    """Read what the BMS holds of setting ``name`` (readable in WRITABLE), in its unit.

    An A5 switch from 0x93, the MOSFET states. A D2 setting of the settings block with the
    whole block, as Daly's app and syssi's component read it (the settings of the next
    sample are those), any other by its register alone.
    """
    if memory.a5_host is not None:
        [frame] = yield from read_a5(A5_MOS, memory.a5_host, plan.board, plan.retries)
        mos = decode_a5_mos(frame)
        return float({"charge_switch": mos.charge_mos, "discharge_switch": mos.discharge_mos}[name])
    if name in SETTINGS_REGISTERS:
        memory.settings = decode_settings((yield from read_block(SETTINGS_BLOCK, plan.retries)))
        return memory.settings.by_name()[name]
    writable = WRITABLE[name]
    frame = yield from read_block(Block(name, writable.address, 1), plan.retries)
    return writable.register.decode(frame.registers[0])
