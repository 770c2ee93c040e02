"""Where the package under test is installed, and its programs, wherever the tests run.

scripts/test.sh installs it into the environment of the test interpreter (programs in bin/ beside
python, ROS executables in lib/daly_bms_ros/); a colcon workspace into install/daly_bms_ros, the
first prefix on AMENT_PREFIX_PATH once its setup is sourced (`colcon test`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def install_prefix() -> Path:
    """The prefix of the installed package: its ament prefix, else this Python's environment."""
    for entry in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if entry and (Path(entry) / "share" / "daly_bms_ros" / "package.xml").is_file():
            return Path(entry)
    return Path(sys.executable).parent.parent


def program(name: str) -> str:
    """The path of a command-line program of the package (``daly-bms``, ``daly-bms-sim``)."""
    return str(install_prefix() / "bin" / name)


def ros_executable(name: str) -> str:
    """The path of an executable ``ros2 run daly_bms_ros`` starts (``daly_bms_node``...)."""
    return str(install_prefix() / "lib" / "daly_bms_ros" / name)
