"""The ROS-free parts install and run from pip alone, on every Python and bleak the README promises.

The CLI, the protocol core and the HTTP server need no ROS: a robot without ROS, or a Humble one
(Python 3.10), installs them with pip. Each interpreter gets a fresh virtual environment with a
bleak the distributions ship: the lowest supported (Debian 12's 0.20.2, with its dbus-fast, on
Python 3.10), a 2.x (Ubuntu 26.04's 2.1.1, which subscribes with AcquireNotify unless told
otherwise) and the newest. Each environment's CLI reads its own virtual BMS over the BlueZ mock
(the mock runs from the test's own environment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bluez_mock import NAME_PREFIX, bluez_mock, sim_process
from real_frames import STATUS, frame_bytes

ROOT = Path(__file__).resolve().parents[1]
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
#: The lowest versions supported: Debian 12's python3-bleak 0.20.2 and python3-dbus-fast
#: 1.84.2; bleak-retry-connector 3.1.1 is the newest that takes bleak 0.20 (3.2 and later need
#: 0.21). Every runtime requirement is named, as the package is installed without its own.
LOWEST = (
    "bleak==0.20.2",
    "bleak-retry-connector==3.1.1",
    "dbus-fast==1.84.2",
    "h11==0.16.0",
    "prometheus-client==0.17.0",
    "paho-mqtt==2.0.0",
    "pyserial==3.5",
)


@dataclass(frozen=True)
class Environment:
    """A fresh venv with the package: where its commands are, and which bleak it holds."""

    path: Path
    bleak: str

    def command(self, name: str) -> str:
        """The path of one of its commands (python, daly-bms, daly-bms-sim)."""
        return str(self.path / "bin" / name)


def interpreter(version: str) -> Path:
    """The pyenv interpreter of ``version`` (e.g. "3.10"); skip where this machine lacks it."""
    found = sorted(PYENV_VERSIONS.glob(f"{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no Python {version} under {PYENV_VERSIONS}")
    return found[-1]


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return name.lower().replace("_", "-").replace(".", "-")


def pip_install(environment: Path, *arguments: str) -> None:
    """Run pip of ``environment`` quietly; fail the test with its errors."""
    install = subprocess.run(
        [
            str(environment / "bin" / "python"),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr


def pip_installed(work: Path, python: Path, *requirements: str) -> Environment:
    """A fresh venv of ``python`` with the package (and ``requirements``) pip-installed."""
    environment = work / f"venv-{python.name}"
    subprocess.run([str(python), "-m", "venv", str(environment)], check=True, timeout=120)
    pip_install(environment, *requirements, str(ROOT))
    versions = run([str(environment / "bin" / "python"), "-m", "pip", "list", "--format", "json"])
    installed = {canonical(item["name"]): item["version"] for item in json.loads(versions.stdout)}
    for requirement in requirements:
        name, _, pinned = requirement.partition("==")
        assert installed[canonical(name)] == pinned, (requirement, installed)
    return Environment(environment, installed["bleak"])


def run(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def test_pip_install_gives_a_working_cli_without_ros(tmp_path: Path) -> None:
    environment = pip_installed(tmp_path, Path(sys.executable))
    python = environment.command("python")
    assert run([python, "-c", "import rclpy"]).returncode != 0, "rclpy must be absent"
    decoded = run([environment.command("daly-bms"), "decode", frame_bytes(STATUS).hex()])
    assert decoded.returncode == 0, decoded.stderr
    assert '"pack_voltage": 51.1' in decoded.stdout
    imports = run(
        [
            python,
            "-c",
            "import daly_bms_ros.bridge.http_server, daly_bms_ros.bridge.files, "
            "daly_bms_ros.bridge.mqtt, daly_bms_ros.cli.serve, daly_bms_ros.sim.main",
        ]
    )
    assert imports.returncode == 0, imports.stderr


@pytest.fixture(scope="module")
def lowest(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """Python 3.10 with the lowest versions supported."""
    work = tmp_path_factory.mktemp("lowest")
    return pip_installed(work, interpreter("3.10"), *LOWEST)


@pytest.fixture(scope="module")
def bleak_2(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """Python 3.12 with bleak 2.1.1 (Ubuntu 26.04's), whose default is AcquireNotify."""
    return pip_installed(tmp_path_factory.mktemp("bleak2"), interpreter("3.12"), "bleak==2.1.1")


@pytest.fixture(scope="module")
def newest(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """Python 3.13 with bleak 3.1.0, the newest (the rest as pip resolves it)."""
    return pip_installed(tmp_path_factory.mktemp("newest"), interpreter("3.13"), "bleak==3.1.0")


@pytest.fixture
def environment(request: pytest.FixtureRequest) -> Iterator[Environment]:
    """The environment a test is parametrized with, by its fixture's name."""
    yield request.getfixturevalue(request.param)


@pytest.mark.interpreters
@pytest.mark.parametrize("environment", ["bleak_2", "newest"], indirect=True)
def test_cli_runs_on_newer_pythons(environment: Environment) -> None:
    decoded = run([environment.command("daly-bms"), "decode", frame_bytes(STATUS).hex()])
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout)["cycles"] == 2


@pytest.mark.interpreters
def test_lowest_versions_run_the_bridge_outputs(lowest: Environment) -> None:
    outputs = run(
        [
            lowest.command("python"),
            "-c",
            "import daly_bms_ros.bridge.mqtt, daly_bms_ros.bridge.metrics, daly_bms_ros.cli.serve",
        ]
    )
    assert outputs.returncode == 0, outputs.stderr


@pytest.mark.interpreters
@pytest.mark.parametrize("environment", ["lowest", "bleak_2", "newest"], indirect=True)
def test_each_bleak_reads_the_virtual_bms(
    environment: Environment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment's own virtual BMS: the lowest dbus-fast serves it too. Answers in 20-byte
    # notifications (MTU 23), as over a small-MTU link.
    name = f"{NAME_PREFIX}{environment.bleak.replace('.', '')}"
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        sim = environment.command("daly-bms-sim")
        with sim_process(name, tmp_path, "hci1", "--cells", "4", "--mtu", "23", sim=sim):
            result = run(
                [
                    environment.command("daly-bms"),
                    *("read", "--json", "--name", name, "--adapter", "hci0"),
                ],
                timeout=120,
            )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["device"].startswith(name)
    assert len(record["cell_voltages"]) == 4
    assert record["rated_capacity"] == 100.0
