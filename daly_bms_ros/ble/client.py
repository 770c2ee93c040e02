"""Request/response over a transport: one request at a time, each answered by one frame.

The client finds out which of the two Daly protocols the BMS speaks, and which D2 status read it
answers (80 registers, else 62), the first time it reads a sample, and keeps to it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from daly_bms_ros.ble.transport import BmsTransport, TransportError
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
    decode_mos_temperature,
    decode_settings,
    decode_status,
    decode_x81_status,
)

#: What a BMS of unknown protocol is asked first, all at once: the D2 status of 80 registers
#: and the first 0x81 status block. A BMS answers its own protocol only, so the answer tells
#: the protocol in one round trip.
DETECTION_PROBES: tuple[tuple[Block, Variant], ...] = ((STATUS_80_BLOCK, D2), (X81_PACK_BLOCK, X81))
#: Asked when the probes go unanswered: D2 firmware that answers only the 62-register status.
FALLBACK_PROBES: tuple[tuple[Block, Variant], ...] = ((STATUS_BLOCK, D2),)


class RequestTimeoutError(TransportError):
    """The BMS did not answer a request, also after the retries."""


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
        self._settings: BmsSettings | None = None
        #: Cleared on a connection whose BMS does not answer the MOS temperature block.
        self.read_mos_temperature = True
        #: The protocol the BMS answered; None until the first sample.
        self.variant: Variant | None = None
        #: The D2 status read the BMS answers: 80 registers (one request a sample) or 62.
        self.status_block: Block = STATUS_80_BLOCK

    def attach(self) -> None:
        """Start a new connection: nothing buffered or cached from the previous one survives."""
        self.assembler.reset()
        self._frames = asyncio.Queue()
        self._settings = None
        self.read_mos_temperature = True

    def on_notify(self, data: bytes) -> None:
        """Feed one notification (called in the event loop thread)."""
        self.notifications += 1
        for frame in self.assembler.feed(data):
            self._frames.put_nowait(frame)

    async def _ask(
        self, probes: tuple[tuple[Block, Variant], ...]
    ) -> tuple[Block, Variant, Frame] | None:
        """Send each probe's read request, return the first answer to any of them, else None."""
        while not self._frames.empty():  # a late answer to an earlier request
            self._frames.get_nowait()
        for block, variant in probes:
            self.requests += 1
            await self.transport.write(build_read_request(block, variant))
        deadline = asyncio.get_running_loop().time() + self.request_timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                frame = await asyncio.wait_for(self._frames.get(), max(remaining, 0.0))
            except asyncio.TimeoutError:
                self.timeouts += 1
                self.assembler.expire()
                return None
            for block, variant in probes:
                if (
                    len(frame.payload) == block.byte_count
                    and frame.address == variant.response_address
                ):
                    return block, variant, frame

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

        The 80-register read carries the MOS temperature; after the 62-register one it is read
        from the MOS block where the BMS answers that.
        """
        status = decode_status(status_frame)
        if self._settings is None:
            self._settings = decode_settings(await self.read_block(SETTINGS_BLOCK))
        if self.status_block is STATUS_BLOCK and self.read_mos_temperature:
            try:
                mos = decode_mos_temperature(await self.read_block(MOS_BLOCK))
                status = replace(status, mos_temperature=mos.temperature)
            except (RequestTimeoutError, DalyProtocolError):
                # Some firmware never answers this block: stop asking on this connection.
                self.read_mos_temperature = False
        return BmsSample(
            status, self._settings, time.time(), status_frame.to_bytes(), self.transport.description
        )
