"""The ROS-free parts install and run from pip alone, on every Python the README promises.

The CLI, the protocol core and the HTTP server need no ROS: a robot without ROS, or a Humble one
(Python 3.10), installs them with pip. Each interpreter gets a fresh virtual environment; the
lowest bleak and bleak-retry-connector the package declares read the virtual BMS over the BlueZ
mock on Python 3.10 (the mock and the virtual BMS run from the test's own environment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bluez_mock import NAME_PREFIX, bluez_mock, sim_process
from real_frames import STATUS, frame_bytes

ROOT = Path(__file__).resolve().parents[1]
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
#: The lowest versions the package declares (pyproject.toml): Ubuntu 24.04's python3-bleak.
LOWEST = (
    "bleak==0.21.1",
    "bleak-retry-connector==3.5.0",
    "prometheus-client==0.17.0",
    "paho-mqtt==2.0.0",
)


def interpreter(version: str) -> Path:
    """The pyenv interpreter of ``version`` (e.g. "3.10"); skip where this machine lacks it."""
    found = sorted(PYENV_VERSIONS.glob(f"{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no Python {version} under {PYENV_VERSIONS}")
    return found[-1]


def pip_installed(tmp_path: Path, python: Path, *requirements: str) -> Path:
    """A fresh venv of ``python`` with the package (and ``requirements``) pip-installed."""
    environment = tmp_path / f"venv-{python.name}"
    subprocess.run([str(python), "-m", "venv", str(environment)], check=True, timeout=120)
    install = subprocess.run(
        [
            str(environment / "bin" / "python"),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *requirements,
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    return environment


def run(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def test_pip_install_gives_a_working_cli_without_ros(tmp_path: Path) -> None:
    environment = pip_installed(tmp_path, Path(sys.executable))
    python = environment / "bin" / "python"
    assert run([str(python), "-c", "import rclpy"]).returncode != 0, "rclpy must be absent"
    decoded = run([str(environment / "bin" / "daly-bms"), "decode", frame_bytes(STATUS).hex()])
    assert decoded.returncode == 0, decoded.stderr
    assert '"pack_voltage": 51.1' in decoded.stdout
    imports = run(
        [
            str(python),
            "-c",
            "import daly_bms_ros.bridge.http_server, daly_bms_ros.bridge.files, "
            "daly_bms_ros.bridge.mqtt, daly_bms_ros.cli.serve, daly_bms_ros.sim.main",
        ]
    )
    assert imports.returncode == 0, imports.stderr


@pytest.mark.interpreters
@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_cli_runs_on_newer_pythons(tmp_path: Path, version: str) -> None:
    environment = pip_installed(tmp_path, interpreter(version))
    decoded = run([str(environment / "bin" / "daly-bms"), "decode", frame_bytes(STATUS).hex()])
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout)["cycles"] == 2


@pytest.mark.interpreters
def test_lowest_bleak_on_python_3_10_reads_the_virtual_bms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = pip_installed(tmp_path, interpreter("3.10"), *LOWEST)
    versions = run([str(environment / "bin" / "python"), "-m", "pip", "list", "--format", "json"])
    installed = {item["name"]: item["version"] for item in json.loads(versions.stdout)}
    assert installed["bleak"] == "0.21.1", installed
    assert (installed["prometheus-client"], installed["paho-mqtt"]) == ("0.17.0", "2.0.0")
    outputs = run(
        [
            str(environment / "bin" / "python"),
            "-c",
            "import daly_bms_ros.bridge.mqtt, daly_bms_ros.bridge.metrics, daly_bms_ros.cli.serve",
        ]
    )
    assert outputs.returncode == 0, outputs.stderr
    name = f"{NAME_PREFIX}LOW01"
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(name, tmp_path, "hci1", "--cells", "4", "--mtu", "23"):
            result = run(
                [
                    str(environment / "bin" / "daly-bms"),
                    *("read", "--json", "--name", name, "--adapter", "hci0"),
                ],
                timeout=120,
            )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["device"].startswith(name)
    assert len(record["cell_voltages"]) == 4
    assert record["rated_capacity"] == 100.0
