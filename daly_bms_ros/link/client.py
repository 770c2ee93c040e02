"""Request/response over a transport: the I/O loop under the protocol's sessions.

What to ask and what an answer means is the sans-I/O ``protocol.session``'s (detection, each
family's sample, retries, multi-frame answers); the client sends what a session asks, feeds it
the frames that arrive, applies the timeouts, and binds each write to the link it began on.

The protocol (D2, its 0x81 variant, A5) and the D2 status read (80 registers, else 62) are
found with the first sample of each connection: a BMS swapped behind the same adapter, or one
whose firmware was updated, is read as what it is now. A pack's turn on a shared adapter is no
new connection to it: what was found is kept.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from daly_bms_ros.link.echo import QUIET_ANSWERS, EchoFilter
from daly_bms_ros.link.transport import BmsTransport, LinkLostError, TransportError
from daly_bms_ros.protocol import (
    D2,
    DEVICE_INFO_BLOCK,
    X81,
    X81_DEVICE_INFO_BLOCK,
    Block,
    BmsSample,
    DalyProtocolError,
    Frame,
    FrameAssembler,
    Variant,
    decode_device_info,
)
from daly_bms_ros.protocol.a5 import A5Assembler, host_addresses
from daly_bms_ros.protocol.frames import RejectReason
from daly_bms_ros.protocol.registers import WRITABLE, encode_writable
from daly_bms_ros.protocol.session import (
    A5,
    MODBUS,
    Ask,
    DetectionPlan,
    NoAnswerError,
    PackMemory,
    Session,
    ask_write,
    read_block,
    read_written,
    sample,
    write_address,
    write_refusal,
)
from daly_bms_ros.text import printable

#: Seconds between A5 requests: a Daly UART is not ready for the next one at once
#: (mr-manuel/venus-os_dbus-serialbattery: "else the Daly is not ready and throws a lot of no
#: reply errors").
A5_REQUEST_GAP = 0.02

_F = TypeVar("_F")


class _Assembler(Protocol[_F]):
    rejected: Counter[RejectReason]

    def feed(self, chunk: bytes) -> list[_F]: ...

    def expire(self) -> list[_F]: ...

    def reset(self) -> None: ...


class _Stream(Generic[_F]):
    """One protocol family's assembler and the frames it completed, waiting to be taken."""

    def __init__(self, assembler: _Assembler[_F]) -> None:
        self.assembler = assembler
        self.frames: asyncio.Queue[_F] = asyncio.Queue()

    def reset(self) -> None:
        self.assembler.reset()
        self.frames = asyncio.Queue()

    def feed(self, data: bytes) -> None:
        for frame in self.assembler.feed(data):
            self.frames.put_nowait(frame)


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


class _LinkChangedError(LinkLostError):
    """The link a write began on is gone: nothing of this request was sent."""


class _MaybeSentError(LinkLostError):
    """A write went to the transport, and the link failed before it was acknowledged."""


class WriteOutcomeUnknownError(LinkLostError):
    """A write was sent, but the link went before the BMS was seen to hold it.

    Neither done nor failed: the BMS may hold the value. ``verify_write`` over the next link
    tells which; ``pending`` is the write (its value before; ``after`` not yet known), None
    where even that is not known (the driver stopped during the write).
    """

    def __init__(self, message: str, pending: WriteResult | None) -> None:
        super().__init__(message)
        self.pending = pending


class ControlNotSupportedError(TransportError):
    """The BMS speaks a protocol whose writes are not known, or one that does not take this one."""


@dataclass(frozen=True)
class WriteResult:
    """A write, with the value before and the one read back (in the unit).

    ``acknowledged`` is False for a write the BMS did not echo as sent but holds when read
    back: done all the same (some firmware echoes late, or echoes another value).
    ``address`` is the D2 register written, or the A5 command (``protocol`` "a5").
    """

    name: str
    address: int
    written: int
    before: float | None
    after: float
    acknowledged: bool = True
    protocol: str = "d2"

    @property
    def register_value(self) -> float:
        """The written value in the unit."""
        return WRITABLE[self.name].register.decode(self.written)

    @property
    def target(self) -> str:
        """Where the write went, for log lines: "register 0x00A5", "A5 command 0xDA"."""
        if self.protocol == A5:
            return f"A5 command 0x{self.address:02X}"
        return f"register 0x{self.address:04X}"


_Answer = TypeVar("_Answer")


class DalyClient:
    """Read decoded blocks from one BMS through any BmsTransport.

    Call ``attach`` once the transport is connected (it resets per-connection state); feed
    notifications to ``on_notify``. A read returns only a frame that passed every check.
    ``invert_current`` turns the sign of current and power round, for firmware that reports
    charging as negative. ``protocol`` (one of PROTOCOLS) names the protocol the BMS speaks,
    "auto" to find it out; ``board`` is an A5 BMS's number on a shared RS485 bus (1 alone).
    """

    def __init__(
        self,
        transport: BmsTransport,
        request_timeout: float = 2.0,
        request_retries: int = 2,
        invert_current: bool = False,
        protocol: str = "auto",
        board: int = 1,
    ) -> None:
        self.board = board
        self.transport = transport
        self.request_timeout = request_timeout
        self.request_retries = request_retries
        self.invert_current = invert_current
        #: How the protocol is found (ValueError: no such protocol or board).
        hosts = host_addresses(transport.wired, board)
        self._plan = DetectionPlan(protocol, transport.wired, request_retries, hosts, board)
        #: What this connection learned about the BMS.
        self.memory = PackMemory()
        #: An RS485 adapter's copy of each request, taken out before the assemblers.
        self._echo = EchoFilter(transport.wired)
        self._streams: dict[str, _Stream[Any]] = {
            MODBUS: _Stream(FrameAssembler()),
            A5: _Stream(A5Assembler()),
        }
        #: The stream the bytes received now belong to: that of the request last sent.
        self._listening: _Stream[Any] = self._streams[MODBUS]
        self.requests = 0
        self.notifications = 0
        self.timeouts = 0
        #: One request on the link at a time (polls and writes come from different tasks).
        self._link_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._sampling = asyncio.Lock()
        #: What sees the raw conversation (captures, the raw-frames topic).
        self.taps: list[Tap] = []

    def attach(self, same_device: bool = False) -> None:
        """Start a new connection: nothing buffered from the previous one survives.

        ``same_device``: a turn of a pack served in turn, which keeps what it knows of the
        device (settings, whether it answers the MOS block); else that is read anew.
        """
        for tap in self.taps:
            tap.connected(self.transport.details)
        self._echo.reset()
        for stream in self._streams.values():
            stream.reset()
        if not same_device:
            self.memory.forget()

    @property
    def rejected(self) -> Counter[RejectReason]:
        """Received bytes that did not become frames, by reason, of every protocol."""
        return sum((stream.assembler.rejected for stream in self._streams.values()), Counter())

    @property
    def protocol(self) -> str:
        """The protocol the BMS speaks: "d2", "x81", "a5", or "" before the first sample."""
        return self.memory.protocol

    @property
    def variant(self) -> Variant | None:
        """The D2/0x81 variant the BMS answered; None before the first sample and for A5."""
        return self.memory.variant

    @property
    def status_block(self) -> Block:
        """The D2 status read the BMS answers: 80 registers (one request a sample) or 62."""
        return self.memory.status_block

    @property
    def read_mos_temperature(self) -> bool:
        """Whether the BMS answers the MOS block (asked after a 62-register status read)."""
        return self.memory.read_mos_temperature

    @property
    def a5_host(self) -> int | None:
        """The host address an A5 BMS answers (0x40, 0x80); None when it does not speak A5."""
        return self.memory.a5_host

    @property
    def address(self) -> str:
        """Where the BMS is: the transport's address, and its board on a shared RS485 bus."""
        address = self.transport.address
        return f"{address} board {self.board}" if address and self.board > 1 else address

    def detach(self, reason: str) -> None:
        """End a connection: the taps learn why."""
        for tap in self.taps:
            tap.disconnected(reason)

    def on_notify(self, data: bytes) -> None:
        """Feed one notification (called in the event loop thread)."""
        self.notifications += 1
        for tap in self.taps:
            tap.received(data)
        data = self._echo.received(data)
        if data:
            self._listening.feed(data)

    async def _converse(
        self,
        stream: _Stream[_F],
        requests: Sequence[bytes],
        answer: Callable[[_F], _Answer | None],
        write_link: int | None = None,
    ) -> _Answer | None:
        """Send ``requests``; return the first result ``answer`` gives for a frame, else None.

        One exchange at a time on the link: a write from another task waits for a poll's
        request to be answered (or to time out), and the other way round. The bytes that
        arrive meanwhile are assembled as ``stream``'s protocol. ``write_link`` makes the
        request a write (its acknowledgement is the request itself) bound to that link:
        nothing is sent unless the transport's link is still that one and up (LinkLostError),
        checked with no wait before the send, so no rebuilt link can slip in between.
        """
        async with self._link_lock:
            transport = self.transport
            if write_link is not None and (
                transport.link != write_link or not transport.is_connected
            ):
                raise _LinkChangedError("the link the write began on is gone")
            self._listening = stream
            while not stream.frames.empty():  # a late answer to an earlier request
                stream.frames.get_nowait()
            self._echo.sent(requests, answer_may_equal_request=write_link is not None)
            for request in requests:
                self.requests += 1
                for tap in self.taps:
                    tap.sent(request)
                await self.transport.write(request)
            deadline = asyncio.get_running_loop().time() + self.request_timeout
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    frame = await asyncio.wait_for(stream.frames.get(), max(remaining, 0.0))
                except asyncio.TimeoutError:
                    self.timeouts += 1
                    stream.assembler.expire()
                    return None
                taken = answer(frame)
                if taken is not None:
                    self._echo.answered()
                    return taken

    async def run(self, session: Session) -> Any:
        """Carry out ``session``: send what it asks, feed it what arrives, time out silence.

        What it returns is returned; its ``NoAnswerError`` is a RequestTimeoutError.
        """
        known = bool(self.protocol)
        answer = None
        try:
            while True:
                ask = session.send(answer)
                if not known and self.protocol:  # detection found it: told before what follows
                    known = True
                    self._detected()
                answer = await self._ask(ask)
        except StopIteration as done:
            if not known and self.protocol:
                self._detected()
            return done.value
        except NoAnswerError as error:
            raise RequestTimeoutError(str(error)) from None
        finally:
            session.close()

    async def _ask(self, ask: Ask, write_link: int | None = None) -> Any:
        """Send ``ask``'s requests; return what its ``accept`` takes of the frames, else None.

        A paced request waits A5_REQUEST_GAP first over a wire.
        """
        if ask.paced and self.transport.wired:
            await asyncio.sleep(A5_REQUEST_GAP)
        return await self._converse(self._streams[ask.family], ask.requests, ask.accept, write_link)

    async def read_block(
        self, block: Block, retries: int | None = None, variant: Variant = D2
    ) -> Frame:
        """Send the read request for ``block`` and return its answer, resending on timeout.

        ``retries`` overrides ``request_retries`` (0 for a block some firmware never answers).
        """
        retries = self.request_retries if retries is None else retries
        frame: Frame = await self.run(read_block(block, retries, variant))
        return frame

    async def device_information(self) -> dict[str, str]:
        """Versions, production date, model... from the BMS's block and the GATT service.

        The BMS's device-information block (of the protocol it speaks, found first if not yet
        known) comes first where both tell the same field; a field neither tells is absent.
        One unanswered request costs one request timeout.
        """
        if not self.protocol:
            await self.read_sample()
        information = await self.transport.read_device_information()
        if self.a5_host is not None:
            return information  # no A5 command tells versions every board answers
        variant = self.variant or D2
        try:
            frame = await self.read_block(
                X81_DEVICE_INFO_BLOCK if variant is X81 else DEVICE_INFO_BLOCK, 0, variant
            )
            block = decode_device_info(frame, variant)
        except (RequestTimeoutError, DalyProtocolError):
            return information
        told = {name: printable(text) for name, text in block.to_dict().items() if text}
        return information | told

    async def write_register(self, name: str, value: float) -> WriteResult:
        """Write the setting ``name`` (a key of WRITABLE) in its unit, and prove it took.

        Reads the value before, sends the write and waits for the BMS to acknowledge it (a
        D2 echo, an A5 answer; resending while unanswered, over the same link only: a write
        of the same value twice does no harm; a command such as a restart is sent once), then
        reads it back (``session.read_written``: an A5 switch from 0x93): done only if the
        BMS holds what was written, whatever the acknowledgement said. Raises
        ValueError for a name or value that is not allowed, and a TransportError when the
        link failed before the write was sent (nothing sent); WriteNotAcknowledgedError and
        ReadBackMismatchError (with what was read back) when the BMS does not hold the value;
        ControlNotSupportedError; WriteOutcomeUnknownError when the write was sent but the
        link went, or the BMS fell silent, before it was proven (``verify_write`` tells
        later), and for a command the BMS did not acknowledge.
        """
        raw = encode_writable(name, value)
        for _sample in range(QUIET_ANSWERS + 1):
            # The protocol, and over a wire whether the adapter echoes: a write's own echo
            # must never pass for the BMS's acknowledgement.
            if self.protocol and not self._echo.unknown:
                break
            await self.read_sample()
        refusal = write_refusal(self.memory, name)
        if refusal:
            raise ControlNotSupportedError(refusal)
        if self._echo.unknown:
            raise ControlNotSupportedError(
                "nothing was written: the reads have not yet told whether the adapter echoes "
                "what it sends, so its echo could pass for the BMS's acknowledgement"
            )
        link = self.transport.link
        async with self._write_lock:  # read, write, read back: no other write in between
            before = await self._read_writable(name)
            address = write_address(self.memory, name)
            pending = WriteResult(name, address, raw, before, math.nan, False, self.protocol)
            try:
                pending = replace(pending, acknowledged=await self._write(pending, link))
            except _LinkChangedError:
                raise  # nothing of this write was sent
            except _MaybeSentError as error:
                raise self._unknown(pending, str(error)) from error
            try:
                after = await self._read_writable(name)
            except (TransportError, DalyProtocolError) as error:
                raise self._unknown(pending, str(error)) from error
        return self._proven(pending, after)

    @staticmethod
    def _unknown(pending: WriteResult, why: str) -> WriteOutcomeUnknownError:
        return WriteOutcomeUnknownError(
            f"the write of {pending.name} was sent, but {why}: whether the BMS holds it is not "
            "known",
            pending,
        )

    async def verify_write(self, unknown: WriteOutcomeUnknownError) -> WriteResult:
        """Read whether the BMS holds a write whose outcome a lost link left unknown.

        The result of the write as ``write_register`` tells it, read over the link up now; a
        command (a restart) cannot be read back: its outcome stays unknown (``unknown``).
        """
        pending = unknown.pending
        if pending is None or not WRITABLE[pending.name].readable:
            raise unknown
        if not self.protocol:  # a new link: the protocol, and the A5 host address, anew
            await self.read_sample()
        if self.protocol != pending.protocol:
            raise unknown  # another protocol answers now: what was written is not there to read
        async with self._write_lock:
            after = await self._read_writable(pending.name)
        return self._proven(pending, after)

    def _proven(self, result: WriteResult, after: float | None) -> WriteResult:
        """Return ``result`` with the value read back, or raise why the BMS does not hold it.

        ``after`` None: a command, which cannot be read back; its acknowledgement is all the
        proof there is, and without one whether it was done is not known.
        """
        if after is None:
            if not result.acknowledged:
                why = "the BMS did not acknowledge it, and a command cannot be read back"
                raise self._unknown(result, why)
            return replace(result, after=result.register_value)
        result = replace(result, after=after)
        if after == result.register_value:
            return result
        if result.acknowledged:
            raise ReadBackMismatchError(result)
        error = WriteNotAcknowledgedError(
            f"the BMS did not acknowledge the write of {result.name} and does not hold it"
        )
        error.result = result
        raise error

    async def _read_writable(self, name: str) -> float | None:
        """Read a writable setting's value in its unit; None for a command (nothing to read)."""
        if not WRITABLE[name].readable:
            return None
        plan = replace(self._plan, retries=self.request_retries)
        value: float = await self.run(read_written(self.memory, name, plan))
        return value

    async def _write(self, result: WriteResult, link: int) -> bool:
        """Send the write of ``result`` on ``link`` until the BMS acknowledges it.

        True when acknowledged as sent, False when no acknowledgement came after every try or
        it carried another value (the read-back then tells). A command that cannot be read
        back (a restart) is sent once: a resend could repeat what it does. _LinkChangedError
        when the link was gone before the first try (nothing sent); _MaybeSentError when a
        try reached the transport and the link failed afterwards.
        """
        ask = ask_write(self.memory, result.name, result.written, self.board)
        tries = self.request_retries + 1 if WRITABLE[result.name].readable else 1
        for attempt in range(tries):
            try:
                answer = await self._ask(ask, write_link=link)
            except _LinkChangedError as error:
                if attempt == 0:
                    raise
                raise _MaybeSentError(str(error)) from error
            except TransportError as error:  # the send itself failed: it may have gone out
                raise _MaybeSentError(str(error)) from error
            if answer is not None:
                return bool(answer)
        return False

    def _detected(self) -> None:
        """Tell the taps the protocol (and D2 status read) the BMS answered."""
        status_registers = 0 if self.memory.a5_host is not None else self.status_block.count
        for tap in self.taps:
            tap.detected(self.protocol, status_registers)

    async def read_sample(self) -> BmsSample:
        """Read a complete sample of whichever protocol the BMS speaks (found first if new)."""
        plan = replace(self._plan, retries=self.request_retries)
        # One sample at a time: a poll and a write's read-back over a new link must not both
        # find the protocol, probe for probe.
        async with self._sampling:
            reading = await self.run(sample(self.memory, plan))
        status = reading.status.with_current_inverted() if self.invert_current else reading.status
        return BmsSample(
            status, reading.settings, time.time(), reading.status_frame, self.transport.description
        )
