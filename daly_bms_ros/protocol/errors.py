"""Errors of the protocol core: everything it raises derives from DalyProtocolError."""


class DalyProtocolError(Exception):
    """Base of every error the protocol core raises."""


class FrameDecodeError(DalyProtocolError):
    """A valid frame does not hold the block it was decoded as (wrong size or content)."""


class HexInputError(DalyProtocolError):
    """Text given as hexadecimal bytes is not hexadecimal."""
