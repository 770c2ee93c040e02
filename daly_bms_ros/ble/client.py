"""Request/response over a transport: one request at a time, each answered by one frame.

The client finds out which of the two Daly protocols the BMS speaks (D2 first, then 0x81) the
first time it reads a sample, and keeps to it.
"""

from __future__ import annotations

import asyncio
import math
import time

from daly_bms_ros.ble.transport import BmsTransport, TransportError
from daly_bms_ros.protocol import (
    D2,
    DEVICE_INFO_BLOCK,
    MOS_BLOCK,
    SETTINGS_BLOCK,
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

#: The block each protocol's sample starts with, in the order the protocols are tried.
FIRST_STATUS_BLOCK: dict[Variant, Block] = {D2: STATUS_BLOCK, X81: X81_PACK_BLOCK}


class RequestTimeoutError(TransportError):
    """The BMS did not answer a request, also after the retries."""


class DalyClient:
    """Read decoded blocks from one BMS through any BmsTransport.

    Call ``attach`` once the transport is connected (it resets per-connection state); feed
    notifications to ``on_notify``. A read returns only a frame that passed every check.
    """

    def __init__(
        self, transport: BmsTransport, request_timeout: float = 2.0, request_retries: int = 2
    ) -> None:
        self.transport = transport
        self.request_timeout = request_timeout
        self.request_retries = request_retries
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

    async def read_block(
        self, block: Block, retries: int | None = None, variant: Variant = D2
    ) -> Frame:
        """Send the read request for ``block`` and return its answer, resending on timeout.

        ``retries`` overrides ``request_retries`` (0 for a block some firmware never answers).
        """
        request = build_read_request(block, variant)
        attempts = (self.request_retries if retries is None else retries) + 1
        for _attempt in range(attempts):
            while not self._frames.empty():  # a late answer to an earlier request
                self._frames.get_nowait()
            self.requests += 1
            await self.transport.write(request)
            try:
                frame = await asyncio.wait_for(self._frames.get(), self.request_timeout)
            except asyncio.TimeoutError:
                self.timeouts += 1
                self.assembler.expire()
                continue
            if len(frame.payload) == block.byte_count and frame.address == variant.response_address:
                return frame
        raise RequestTimeoutError(f"no answer to the {block.name} request after {attempts} tries")

    async def device_information(self) -> dict[str, str]:
        """Versions, production date, model... from the D2 block and the GATT service.

        The D2 device-information block comes first where both tell the same field; a field
        neither tells is absent. One unanswered request costs one request timeout.
        """
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

    async def _detect_variant(self) -> tuple[Variant, Frame]:
        """Ask for the D2 status, then for the 0x81 one: a BMS answers its own protocol only.

        Return the variant and the status frame it answered with.
        """
        for variant, block in FIRST_STATUS_BLOCK.items():
            try:
                return variant, await self.read_block(block, variant=variant)
            except RequestTimeoutError:
                continue
        raise RequestTimeoutError("no answer to the status request of either protocol (D2, 0x81)")

    async def _read_x81_sample(self, pack: Frame) -> BmsSample:
        """Complete a 0x81 sample with its second block (it has no block with the capacity)."""
        state = await self.read_block(X81_STATE_BLOCK, variant=X81)
        status, mos = decode_x81_status(pack, state)
        return BmsSample(status, None, mos.temperature, time.time(), pack.to_bytes())

    async def read_sample(self) -> BmsSample:
        """Read a complete sample of whichever protocol the BMS speaks."""
        if self.variant is None:
            self.variant, first_frame = await self._detect_variant()
        else:
            first_frame = await self.read_block(
                FIRST_STATUS_BLOCK[self.variant], variant=self.variant
            )
        if self.variant is X81:
            return await self._read_x81_sample(first_frame)
        return await self._read_d2_sample(first_frame)

    async def _read_d2_sample(self, status_frame: Frame) -> BmsSample:
        """Complete a D2 sample: settings once per connection, the MOS block where answered."""
        status = decode_status(status_frame)
        if self._settings is None:
            self._settings = decode_settings(await self.read_block(SETTINGS_BLOCK))
        mos_temperature = math.nan
        if self.read_mos_temperature:
            try:
                mos_temperature = decode_mos_temperature(
                    await self.read_block(MOS_BLOCK)
                ).temperature
            except (RequestTimeoutError, DalyProtocolError):
                # Some firmware never answers this block: stop asking on this connection.
                self.read_mos_temperature = False
        return BmsSample(
            status, self._settings, mos_temperature, time.time(), status_frame.to_bytes()
        )
