"""Write a capture without ever blocking the poll loop, in files of a bounded size.

The lines go through a queue to a thread of their own (logging's QueueHandler and
QueueListener) and into a RotatingFileHandler: at ``max_bytes`` the file becomes ``FILE.1``
(the older ones move up, ``backups`` are kept) and a new one starts, with the header again.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daly_bms_ros.capture.format import (
    CONNECTION,
    DISCONNECT,
    NOTIFICATION,
    PROTOCOL,
    REQUEST,
    can_record,
    event_line,
    header_line,
)
from daly_bms_ros.protocol.can_id import can_answers, can_request

DEFAULT_MAX_BYTES = 50 * 2**20
DEFAULT_BACKUPS = 3


class _CaptureFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file whose every part starts with the capture header."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.setFormatter(logging.Formatter("%(message)s"))
        self._write_header()

    def _write_header(self) -> None:
        if self.stream is not None and self.stream.tell() == 0:
            self.stream.write(header_line() + "\n")
            self.stream.flush()

    def doRollover(self) -> None:  # noqa: N802 (logging's name)
        """Start the next part with the header."""
        super().doRollover()
        if self.stream is None:
            self.stream = self._open()
        self._write_header()


class CaptureWriter:
    """Record one BMS conversation to ``path``; the methods only queue a line and return.

    Open with ``start`` (OSError when the file cannot be written), close with ``close``,
    which writes out what is queued.
    """

    def __init__(
        self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        # A logger of its own, outside the logging tree: nothing propagates to the root.
        self._logger = logging.Logger("daly_bms_capture")
        self._logger.addHandler(logging.handlers.QueueHandler(self._queue))
        self._listener: logging.handlers.QueueListener | None = None
        #: The BMS address of a link on a CAN bus, whose frames are recorded; None otherwise.
        self._can_address: int | None = None

    def start(self) -> None:
        """Open the file (appending to an existing capture) and the writing thread."""
        handler = _CaptureFileHandler(self.path, self._max_bytes, self._backups)
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._listener.start()

    def close(self) -> None:
        """Write out what is queued and close the file."""
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None

    def _put(self, line: str) -> None:
        if self._listener is not None:
            self._logger.info(line)

    # The tap a DalyClient calls (see daly_bms_ros.link.client.Tap).
    def connected(self, device: Mapping[str, Any]) -> None:
        """Record that a link came up, and to what."""
        address = device.get("bms_address")
        self._can_address = (
            address if device.get("transport") == "can" and isinstance(address, int) else None
        )
        self._put(event_line(CONNECTION, device=dict(device)))

    def sent(self, data: bytes) -> None:
        """Record bytes written to the BMS (on a CAN bus, the frame that carried them)."""
        if self._can_address is None:
            self._put(event_line(REQUEST, data))
            return
        frame = can_request(data, self._can_address)
        self._put(event_line(REQUEST, data, can=can_record([frame] if frame else [])))

    def received(self, data: bytes) -> None:
        """Record one notification (on a CAN bus, with the frames it was)."""
        if self._can_address is None:
            self._put(event_line(NOTIFICATION, data))
            return
        self._put(event_line(NOTIFICATION, data, can=can_record(can_answers(data))))

    def detected(self, variant: str, status_registers: int) -> None:
        """Record the protocol the BMS answered."""
        self._put(event_line(PROTOCOL, variant=variant, status_registers=status_registers))

    def disconnected(self, reason: str) -> None:
        """Record that the link went down."""
        self._put(event_line(DISCONNECT, reason=reason))
