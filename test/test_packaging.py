"""What a robot installs: a wired robot runs without Bluetooth libraries."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from test_without_ros import pip_installed, run

HERE = Path(__file__).resolve().parent
DEV_REQUIREMENTS = HERE.parent / "requirements" / "dev.txt"
#: What running those tests takes besides the package: pytest and its plugins.
TEST_TOOL = re.compile(r"(pytest|pytest-timeout|hypothesis)==")

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


#: The tests of what runs without ROS: the protocol core, the decoder, the real frames.
ROS_FREE_TESTS = (
    "test_protocol_frames.py",
    "test_protocol_decoding.py",
    "test_protocol_a5.py",
    "test_field_frames.py",
    "test_cli_decode.py",
)


def test_the_tests_that_need_no_ros_pass_where_rclpy_is_not_installed(tmp_path: Path) -> None:
    tools = [line for line in DEV_REQUIREMENTS.read_text().splitlines() if TEST_TOOL.match(line)]
    environment = pip_installed(tmp_path, Path(sys.executable), *tools)
    python = str(environment / "bin" / "python")
    assert run([python, "-c", "import rclpy"]).returncode != 0, "rclpy must be absent"
    result = run(
        [
            str(environment / "bin" / "pytest"),
            *("-q", "-p", "no:cacheprovider"),
            *(str(HERE / name) for name in ROS_FREE_TESTS),
        ],
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
