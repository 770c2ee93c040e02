"""Which serial ports a BMS answers on: the ports of this machine, each asked for a sample.

Asking writes Daly requests to a port, and another device on it (a motor controller, a GPS)
would receive them: callers probe only when the user asked for it. Every port is asked at
the same time, each through the client as a node would read it, so the answer is a sample
and the protocol it came in.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serial.tools import list_ports

from daly_bms_ros.link.client import DalyClient, RequestTimeoutError
from daly_bms_ros.link.serial_transport import SerialTransport
from daly_bms_ros.link.transport import TransportError
from daly_bms_ros.protocol import BmsSample, DalyProtocolError

#: Where udev names USB serial adapters by their serial number: a path that stays.
BY_ID = Path("/dev/serial/by-id")


@dataclass(frozen=True)
class SerialAnswer:
    """A port that answered: a sample of the BMS behind it, or why it could not be asked."""

    port: str
    #: The /dev/serial/by-id/ name of the port where udev gives one, else the port.
    stable_path: str
    #: The adapter as the kernel describes it ("FT232R USB UART"), "" when it does not.
    description: str
    protocol: str = ""
    sample: BmsSample | None = None
    #: Why the port could not be asked (busy, permission denied); "" when it was.
    problem: str = ""


def serial_ports() -> list[str]:
    """Return the serial ports of this machine (USB adapters, on-board UARTs), by name."""
    return sorted(port.device for port in list_ports.comports())


def _descriptions() -> dict[str, str]:
    return {
        port.device: port.description
        for port in list_ports.comports()
        if port.description and port.description != "n/a"
    }


def stable_path(port: str) -> str:
    """Return the /dev/serial/by-id/ link to ``port`` when there is one, else ``port``."""
    try:
        target = os.path.realpath(port)
        links = sorted(BY_ID.iterdir())
    except OSError:
        return port
    for link in links:
        if os.path.realpath(link) == target:
            return str(link)
    return port


async def ask_port(
    port: str,
    baudrate: int,
    request_timeout: float,
    protocol: str = "auto",
    board: int = 1,
    description: str = "",
) -> SerialAnswer | None:
    """Read one sample from ``port``; None when nothing answered a Daly request there."""
    transport = SerialTransport(port, baudrate)
    client = DalyClient(transport, request_timeout, 0, protocol=protocol, board=board)
    transport.set_callbacks(client.on_notify, lambda: None)
    stable = stable_path(port)
    try:
        await transport.connect()
        client.attach()
        sample = await client.read_sample()
    except (RequestTimeoutError, DalyProtocolError):
        return None
    except TransportError as error:
        return SerialAnswer(port, stable, description, problem=str(error))
    finally:
        await transport.disconnect()
    return SerialAnswer(port, stable, description, client.protocol, sample)


async def ask_ports(
    ports: Sequence[str],
    baudrate: int,
    request_timeout: float,
    protocol: str = "auto",
    board: int = 1,
) -> list[SerialAnswer]:
    """Ask every port at once; return those that answered or could not be asked, by port."""
    descriptions = _descriptions()
    answers = await asyncio.gather(
        *(
            ask_port(port, baudrate, request_timeout, protocol, board, descriptions.get(port, ""))
            for port in ports
        )
    )
    return [answer for answer in answers if answer is not None]
