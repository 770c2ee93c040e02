"""What a robot installs: a wired robot runs without Bluetooth libraries."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_BLUETOOTH = """
import sys
from types import SimpleNamespace
for name in ("bleak", "bleak_retry_connector", "dbus_fast"):
    sys.modules[name] = None  # any import of them fails
import daly_bms_ros.node.fleet, daly_bms_ros.node.lifecycle
from daly_bms_ros.node.node import make_transport
settings = SimpleNamespace(transport="serial", serial_port="/dev/ttyUSB0", baud=9600, rs485=False)
print(type(make_transport(settings)).__name__)
"""


def test_a_wired_robot_needs_no_bluetooth_libraries() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_BLUETOOTH],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SerialTransport"
