"""The CLI, the protocol core and the HTTP server install and run from pip alone, without ROS."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

from real_frames import STATUS, frame_bytes

ROOT = Path(__file__).resolve().parents[1]


def test_pip_install_gives_a_working_cli_without_ros(tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    no_ros = subprocess.run(
        [str(python), "-c", "import rclpy"], capture_output=True, text=True, check=False
    )
    assert no_ros.returncode != 0, "rclpy must not be importable in this environment"
    decoded = subprocess.run(
        [str(environment / "bin" / "daly-bms"), "decode", frame_bytes(STATUS).hex()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr
    assert '"pack_voltage": 51.1' in decoded.stdout
    imports = subprocess.run(
        [
            str(python),
            "-c",
            "import daly_bms_ros.bridge.http_server, daly_bms_ros.bridge.files, "
            "daly_bms_ros.cli.serve, daly_bms_ros.sim.main",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert imports.returncode == 0, imports.stderr
