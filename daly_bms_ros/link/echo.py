"""The echo of our own requests that a half-duplex RS485 adapter sends back, taken out.

Many USB-RS485 adapters hear their own transmitter: every request comes back at once, before the
BMS answers (matthewgream/DalyBMSInterface and fl4p/batmon-ha drop such echoes). For a read
that is harmless garbage, but the answer to a D2 write (Modbus function 0x06) is the request
itself, byte for byte: taken as the BMS's acknowledgement, the adapter's echo would report a
write done that the BMS never got. So the bytes that arrive after a request are searched for a
whole copy of it, which is dropped; bytes around it (a direction switch's glitch, the tail of a
late answer) pass on. Whether the adapter echoes at all is learned on requests whose answer
differs from them (reads) before a write relies on it: one whole copy says it does; answers
to QUIET_ANSWERS such requests with no copy before them say it does not.

Sans-I/O: bytes in, bytes out, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Answered reads without an echo before them that tell an adapter does not echo: more than
#: one, so that a stray answer arriving first once cannot pass for that.
QUIET_ANSWERS = 2


class EchoFilter:
    """Drop the adapter's copy of each request from the bytes received on one link."""

    def __init__(self, wired: bool) -> None:
        self._wired = wired
        self.reset()

    def reset(self) -> None:
        """Start a new link: the adapter may be another one."""
        #: Whether the link's adapter echoes: None until the reads told.
        self.echoes: bool | None = None if self._wired else False
        self._quiet_answers = 0
        self._expected: list[bytes] = []
        self._partial = b""
        self._learning = False
        self._echo_seen = False

    @property
    def unknown(self) -> bool:
        """Whether a request whose answer equals it cannot yet be told from its echo."""
        return self.echoes is None

    def sent(self, requests: Sequence[bytes], answer_may_equal_request: bool) -> None:
        """Expect the echo of ``requests``, sent now in this order.

        ``answer_may_equal_request`` (a write): its echo can only be told from its answer on
        an adapter known to echo, so nothing is expected while that is unknown. What is held
        of an earlier request's echo that never came whole is dropped.
        """
        self._partial = b""
        self._echo_seen = False
        self._learning = self.echoes is None and not answer_may_equal_request
        expect = self.echoes is True or self._learning
        self._expected = list(requests) if expect else []

    def answered(self) -> None:
        """Note that the exchange got its answer: with no echo before it, a quiet adapter."""
        if self._learning and not self._echo_seen:
            self._quiet_answers += 1
            if self._quiet_answers >= QUIET_ANSWERS:
                self.echoes = False
        self._learning = False
        self._expected, self._partial = [], b""

    def received(self, data: bytes) -> bytes:
        """Return what of ``data`` is not the echo expected."""
        if not self._expected:
            return data
        passed = bytearray()
        for index, byte in enumerate(data):
            echo = self._expected[0]
            held = self._partial + bytes((byte,))
            # Bytes that cannot start the echo pass on; the rest is held until it is whole.
            while held and not echo.startswith(held):
                passed.append(held[0])
                held = held[1:]
            self._partial = held
            if held == echo:
                self._expected.pop(0)
                self._partial = b""
                self._echo_seen = True
                if self._learning:
                    self.echoes = True
                if not self._expected:
                    passed += data[index + 1 :]
                    break
        return bytes(passed)
