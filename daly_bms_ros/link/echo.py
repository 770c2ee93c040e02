"""The echo of our own requests that a half-duplex RS485 adapter sends back, taken out.

Many USB-RS485 adapters hear their own transmitter: every request comes back at once, before the
BMS answers (matthewgream/DalyBMSInterface and fl4p/batmon-ha drop such echoes). For a read
that is harmless garbage, but the answer to a D2 write (Modbus function 0x06) is the request
itself, byte for byte: taken as the BMS's acknowledgement, the adapter's echo would report a
write done that the BMS never got. So the bytes that arrive right after a request are compared
with it: a whole copy is the echo and is dropped; whether the adapter echoes at all is learned
on requests whose answer differs from them (reads), before a write relies on it.

Sans-I/O: bytes in, bytes out, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence


class EchoFilter:
    """Drop the adapter's copy of each request from the bytes received on one link."""

    def __init__(self, wired: bool) -> None:
        self._wired = wired
        #: Whether the link's adapter echoes: None until an unambiguous request told it.
        self.echoes: bool | None = None if wired else False
        self._expected = b""
        self._held = b""
        self._learning = False

    def reset(self) -> None:
        """Start a new link: the adapter may be another one."""
        self.echoes = None if self._wired else False
        self._expected = self._held = b""
        self._learning = False

    @property
    def unknown(self) -> bool:
        """Whether a request whose answer equals it cannot yet be told from its echo."""
        return self.echoes is None

    def sent(self, requests: Sequence[bytes], answer_may_equal_request: bool) -> None:
        """Expect the echo of ``requests``, sent now in this order.

        ``answer_may_equal_request`` (a write): its echo can only be told from its answer
        on an adapter known to echo, so nothing is expected while that is unknown.
        """
        self._held = b""
        self._learning = self.echoes is None and not answer_may_equal_request
        expect = self.echoes is True or self._learning
        self._expected = b"".join(requests) if expect else b""

    def received(self, data: bytes) -> bytes:
        """Return what of ``data`` is not the echo expected."""
        if not self._expected:
            return data
        matched = _common_prefix(data, self._expected)
        if matched == min(len(data), len(self._expected)):
            self._held += data[:matched]
            self._expected = self._expected[matched:]
            if self._expected:
                return b""  # the echo so far, or an answer that starts like the request
            self._held = b""
            if self._learning:
                self.echoes, self._learning = True, False
            return data[matched:]
        # Other bytes than the request: an answer, with no echo before it.
        passed, self._held, self._expected = self._held + data, b"", b""
        if self._learning:
            self.echoes, self._learning = False, False
        return passed


def _common_prefix(first: bytes, second: bytes) -> int:
    """Return how many bytes ``first`` and ``second`` share from the start."""
    for index, (one, other) in enumerate(zip(first, second, strict=False)):
        if one != other:
            return index
    return min(len(first), len(second))
