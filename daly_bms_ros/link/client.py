"""Request/response over a transport: one request at a time, each answered by one frame.

The client finds out which of the two Daly protocols the BMS speaks, and which D2 status read it
answers (80 registers, else 62), the first time it reads a sample, and keeps to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from daly_bms_ros.link.transport import BmsTransport, LinkLostError, TransportError
from daly_bms_ros.protocol import (
    D2,
    DEVICE_INFO_BLOCK,
    MOS_BLOCK,
    SETTINGS_BLOCK,
    STATUS_80_BLOCK,
    STATUS_BLOCK,
    X81,
    X81_DEVICE_INFO_BLOCK,
    X81_PACK_BLOCK,
    X81_STATE_BLOCK,
    Block,
    BmsSample,
    BmsSettings,
    DalyProtocolError,
    Frame,
    FrameAssembler,
    Variant,
    build_read_request,
    decode_device_info,
    decode_settings,
    decode_status,
    decode_status_with_mos,
    decode_x81_status,
)
from daly_bms_ros.protocol.frames import READ, WRITE_SINGLE, build_write_request
from daly_bms_ros.protocol.registers import SETTINGS_REGISTERS, WRITABLE, encode_writable

#: What a BMS of unknown protocol is asked first, all at once: the D2 status of 80 registers
#: and the first 0x81 status block. A BMS answers its own protocol only, so the answer tells
#: the protocol in one round trip.
DETECTION_PROBES: tuple[tuple[Block, Variant], ...] = ((STATUS_80_BLOCK, D2), (X81_PACK_BLOCK, X81))
#: Asked when the probes go unanswered: D2 firmware that answers only the 62-register status.
FALLBACK_PROBES: tuple[tuple[Block, Variant], ...] = ((STATUS_BLOCK, D2),)


class Tap(Protocol):
    """What sees the raw conversation of a client: a capture writer, a raw-frames publisher.

    Called in the event loop's thread; each call must return at once.
    """

    def connected(self, device: Mapping[str, object]) -> None:
        """Take note that a link came up (the transport's ``details``)."""

    def sent(self, data: bytes) -> None:
        """Take note of bytes written to the BMS."""

    def received(self, data: bytes) -> None:
        """Take note of one notification."""

    def detected(self, variant: str, status_registers: int) -> None:
        """Take note of the protocol (and D2 status read) the BMS answered."""

    def disconnected(self, reason: str) -> None:
        """Take note that the link went down, and why."""


class RequestTimeoutError(TransportError):
    """The BMS did not answer a request, also after the retries."""


class WriteFailedError(TransportError):
    """A write to the BMS was not proven to take; ``result`` holds what was read back, if any."""

    result: WriteResult | None = None


class WriteNotAcknowledgedError(WriteFailedError):
    """The BMS did not echo a write, or echoed something else."""


class ReadBackMismatchError(WriteFailedError):
    """The BMS echoed a write but holds another value when read back (it ignored it)."""

    def __init__(self, result: WriteResult) -> None:
        super().__init__(
            f"{result.name} reads {result.after:g} after the write of "
            f"{result.name} = {result.register_value:g}: the BMS did not take it"
        )
        self.result: WriteResult | None = result


class ControlNotSupportedError(TransportError):
    """The BMS speaks a protocol whose writes are not known."""


@dataclass(frozen=True)
class WriteResult:
    """A write that was echoed, with the value before and the one read back (in the unit)."""

    name: str
    address: int
    written: int
    before: float | None
    after: float

    @property
    def register_value(self) -> float:
        """The written value in the unit."""
        return WRITABLE[self.name].register.decode(self.written)


_Answer = TypeVar("_Answer")


class DalyClient:
    """Read decoded blocks from one BMS through any BmsTransport.

    Call ``attach`` once the transport is connected (it resets per-connection state); feed
    notifications to ``on_notify``. A read returns only a frame that passed every check.
    ``invert_current`` turns the sign of current and power round, for firmware that reports
    charging as negative.
    """

    def __init__(
        self,
        transport: BmsTransport,
        request_timeout: float = 2.0,
        request_retries: int = 2,
        invert_current: bool = False,
    ) -> None:
        self.transport = transport
        self.request_timeout = request_timeout
        self.request_retries = request_retries
        self.invert_current = invert_current
        self.assembler = FrameAssembler()
        self.requests = 0
        self.notifications = 0
        self.timeouts = 0
        self._frames: asyncio.Queue[Frame] = asyncio.Queue()
        #: One request on the link at a time (polls and writes come from different tasks).
        self._link_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        #: Counts connections, so a write never goes on over a link rebuilt meanwhile.
        self._connection = 0
        self._settings: BmsSettings | None = None
        #: Cleared on a connection whose BMS does not answer the MOS temperature block.
        self.read_mos_temperature = True
        #: The protocol the BMS answered; None until the first sample.
        self.variant: Variant | None = None
        #: The D2 status read the BMS answers: 80 registers (one request a sample) or 62.
        self.status_block: Block = STATUS_80_BLOCK
        #: What sees the raw conversation (captures, the raw-frames topic).
        self.taps: list[Tap] = []

    def attach(self, same_device: bool = False) -> None:
        """Start a new connection: nothing buffered from the previous one survives.

        ``same_device``: a turn of a pack served in turn, which keeps what it knows of the
        device (settings, whether it answers the MOS block); else that is read anew.
        """
        self._connection += 1
        for tap in self.taps:
            tap.connected(self.transport.details)
        self.assembler.reset()
        self._frames = asyncio.Queue()
        if not same_device:
            self._settings = None
            self.read_mos_temperature = True

    def detach(self, reason: str) -> None:
        """End a connection: the taps learn why."""
        for tap in self.taps:
            tap.disconnected(reason)

    def on_notify(self, data: bytes) -> None:
        """Feed one notification (called in the event loop thread)."""
        self.notifications += 1
        for tap in self.taps:
            tap.received(data)
        for frame in self.assembler.feed(data):
            self._frames.put_nowait(frame)

    async def _exchange(
        self, requests: Sequence[bytes], answer: Callable[[Frame], _Answer | None]
    ) -> _Answer | None:
        """Send ``requests``; return the first frame ``answer`` takes (its result), else None.

        One exchange at a time on the link: a write from another task waits for a poll's
        request to be answered (or to time out), and the other way round.
        """
        async with self._link_lock:
            while not self._frames.empty():  # a late answer to an earlier request
                self._frames.get_nowait()
            for request in requests:
                self.requests += 1
                for tap in self.taps:
                    tap.sent(request)
                await self.transport.write(request)
            deadline = asyncio.get_running_loop().time() + self.request_timeout
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    frame = await asyncio.wait_for(self._frames.get(), max(remaining, 0.0))
                except asyncio.TimeoutError:
                    self.timeouts += 1
                    self.assembler.expire()
                    return None
                taken = answer(frame)
                if taken is not None:
                    return taken

    async def _ask(
        self, probes: tuple[tuple[Block, Variant], ...]
    ) -> tuple[Block, Variant, Frame] | None:
        """Send each probe's read request, return the first answer to any of them, else None."""

        def answer(frame: Frame) -> tuple[Block, Variant, Frame] | None:
            for block, variant in probes:
                if (
                    frame.function == READ
                    and len(frame.payload) == block.byte_count
                    and frame.address == variant.response_address
                ):
                    return block, variant, frame
            return None

        requests = [build_read_request(block, variant) for block, variant in probes]
        return await self._exchange(requests, answer)

    async def read_block(
        self, block: Block, retries: int | None = None, variant: Variant = D2
    ) -> Frame:
        """Send the read request for ``block`` and return its answer, resending on timeout.

        ``retries`` overrides ``request_retries`` (0 for a block some firmware never answers).
        """
        attempts = (self.request_retries if retries is None else retries) + 1
        for _attempt in range(attempts):
            answer = await self._ask(((block, variant),))
            if answer is not None:
                return answer[2]
        raise RequestTimeoutError(f"no answer to the {block.name} request after {attempts} tries")

    async def device_information(self) -> dict[str, str]:
        """Versions, production date, model... from the BMS's block and the GATT service.

        The BMS's device-information block (of the protocol it speaks, found first if not yet
        known) comes first where both tell the same field; a field neither tells is absent.
        One unanswered request costs one request timeout.
        """
        if self.variant is None:
            await self.read_sample()
        information = await self.transport.read_device_information()
        variant = self.variant or D2
        try:
            frame = await self.read_block(
                X81_DEVICE_INFO_BLOCK if variant is X81 else DEVICE_INFO_BLOCK, 0, variant
            )
            block = decode_device_info(frame, variant)
        except (RequestTimeoutError, DalyProtocolError):
            return information
        return information | {name: text for name, text in block.to_dict().items() if text}

    async def write_register(self, name: str, value: float) -> WriteResult:
        """Write the setting ``name`` (a key of WRITABLE) in its unit, and prove it took.

        Reads the value before, sends the write and waits for the BMS to echo it (resending
        while unanswered: a write of the same value twice does no harm), then reads it back:
        success only if the BMS holds what was written. A setting of the settings block is
        read with the whole block, as Daly's app and syssi's component read it (and the
        settings of the next sample are those); the balancer switch alone. Raises ValueError
        for a name or value that is not allowed (nothing sent), WriteNotAcknowledgedError and
        ReadBackMismatchError (with what was read back where it could be),
        ControlNotSupportedError, or a TransportError, also when the link was rebuilt meanwhile.
        """
        raw = encode_writable(name, value)
        writable = WRITABLE[name]
        if self.variant is None:
            await self.read_sample()
        if self.variant is not D2:
            raise ControlNotSupportedError(
                "writes are known for the D2 protocol only; no public source shows how a 0x81 "
                "pack takes them over Bluetooth"
            )
        connection = self._connection
        async with self._write_lock:  # read, write, read back: no other write in between
            before = await self._read_writable(name)
            try:
                await self._write(writable.address, raw, name, connection)
            except WriteNotAcknowledgedError as error:
                error.result = await self._result_after_failure(name, raw, before)
                raise
            after = await self._read_writable(name)
        result = WriteResult(name, writable.address, raw, before, raw if after is None else after)
        if after is not None and after != result.register_value:
            raise ReadBackMismatchError(result)
        return result

    async def _read_writable(self, name: str) -> float | None:
        """Read a writable setting's value in its unit; None for a command (nothing to read)."""
        writable = WRITABLE[name]
        if not writable.readable:
            return None
        if name in SETTINGS_REGISTERS:
            self._settings = decode_settings(await self.read_block(SETTINGS_BLOCK))
            return self._settings.by_name()[name]
        frame = await self.read_block(Block(name, writable.address, 1))
        return writable.register.decode(frame.registers[0])

    async def _result_after_failure(
        self, name: str, raw: int, before: float | None
    ) -> WriteResult | None:
        """Read what the BMS holds after a write it did not acknowledge (None: unknown)."""
        try:
            after = await self._read_writable(name)
        except (TransportError, DalyProtocolError):
            return None
        if after is None:
            return None
        return WriteResult(name, WRITABLE[name].address, raw, before, after)

    async def _write(self, address: int, raw: int, name: str, connection: int) -> None:
        """Send the write of ``raw`` into ``address`` until the BMS echoes it."""
        request = build_write_request(address, raw)

        def echo(frame: Frame) -> Frame | None:
            return frame if frame.function == WRITE_SINGLE else None

        for _attempt in range(self.request_retries + 1):
            if self._connection != connection:  # never resend a write over a new link
                raise LinkLostError(f"the link was rebuilt during the write of {name}")
            answer = await self._exchange((request,), echo)
            if answer is None:
                continue
            if answer.payload != request[2:6]:
                echoed_address, echoed = answer.registers
                raise WriteNotAcknowledgedError(
                    f"the BMS echoed {echoed} into 0x{echoed_address:04X} to the write of {raw} "
                    f"into {name} (0x{address:04X})"
                )
            return
        raise WriteNotAcknowledgedError(
            f"the BMS did not acknowledge the write of {name} after "
            f"{self.request_retries + 1} tries"
        )

    async def _detect(self) -> Frame:
        """Find the protocol and status read the BMS answers; return its first status frame.

        Each round asks the D2 80-register status and the 0x81 status at once, then the D2
        62-register status alone: a 0x81 pack is found as fast as a D2 one.
        """
        rounds = self.request_retries + 1
        for _round in range(rounds):
            for probes in (DETECTION_PROBES, FALLBACK_PROBES):
                answer = await self._ask(probes)
                if answer is not None:
                    self.status_block, self.variant, frame = answer
                    for tap in self.taps:
                        tap.detected(self.variant.name, self.status_block.count)
                    return frame
        raise RequestTimeoutError(
            f"no answer to the status request of either protocol (D2, 0x81) after {rounds} rounds"
        )

    async def read_sample(self) -> BmsSample:
        """Read a complete sample of whichever protocol the BMS speaks."""
        if self.variant is None:
            first_frame = await self._detect()
        elif self.variant is X81:
            first_frame = await self.read_block(X81_PACK_BLOCK, variant=X81)
        else:
            first_frame = await self.read_block(self.status_block)
        if self.variant is X81:
            sample = await self._read_x81_sample(first_frame)
        else:
            sample = await self._read_d2_sample(first_frame)
        if self.invert_current:
            return replace(sample, status=sample.status.with_current_inverted())
        return sample

    async def _read_x81_sample(self, pack: Frame) -> BmsSample:
        """Complete a 0x81 sample with its second block (it has no block with the capacity)."""
        state = await self.read_block(X81_STATE_BLOCK, variant=X81)
        return BmsSample(
            decode_x81_status(pack, state),
            None,
            time.time(),
            pack.to_bytes(),
            self.transport.description,
        )

    async def _read_d2_sample(self, status_frame: Frame) -> BmsSample:
        """Complete a D2 sample: settings once per connection; the MOS block after a 62 read.

        The MOS block (0x3E x 9) is registers 62..70 of the 80-register read: after a
        62-register read it brings the per-cell balancing bits, the balance current, the MOS
        and the board temperature, where the BMS answers it.
        """
        status = decode_status(status_frame)
        if self._settings is None:
            self._settings = decode_settings(await self.read_block(SETTINGS_BLOCK))
        if self.status_block is STATUS_BLOCK and self.read_mos_temperature:
            try:
                mos = await self.read_block(MOS_BLOCK)
                status = decode_status_with_mos(status_frame, mos)
            except (RequestTimeoutError, DalyProtocolError):
                # Some firmware never answers this block: stop asking on this connection.
                self.read_mos_temperature = False
        return BmsSample(
            status, self._settings, time.time(), status_frame.to_bytes(), self.transport.description
        )
