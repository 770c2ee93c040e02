"""The systemd units as scripts/install-systemd.sh installs them."""

from __future__ import annotations

import configparser
import getpass
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install-systemd.sh"


def install(destdir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), "--destdir", str(destdir), "--user", getpass.getuser(), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


@pytest.fixture
def setups(tmp_path: Path) -> tuple[Path, Path, Path]:
    ros = tmp_path / "opt ros" / "setup.bash"
    workspace = tmp_path / "ws" / "install" / "setup.bash"
    daly_bms = tmp_path / "venv" / "bin" / "daly-bms"
    for path in (ros, workspace, daly_bms):
        path.parent.mkdir(parents=True)
        path.write_text("#!/bin/sh\n")
    daly_bms.chmod(0o755)
    return ros, workspace, daly_bms


def test_every_unit_is_complete_and_hardened(
    tmp_path: Path, setups: tuple[Path, Path, Path]
) -> None:
    ros, workspace, daly_bms = setups
    root = tmp_path / "root"
    result = install(
        root,
        *("--units", "node bridge serve"),
        *(
            "--ros-setup",
            str(ros),
            "--workspace-setup",
            str(workspace),
            "--daly-bms",
            str(daly_bms),
        ),
    )
    assert result.returncode == 0, result.stderr
    units = sorted((root / "etc" / "systemd" / "system").iterdir())
    assert [unit.name for unit in units] == [
        "daly-bms-bridge.service", "daly-bms-node.service", "daly-bms-serve.service",
    ]  # fmt: skip
    for unit in units:
        text = unit.read_text()
        assert not re.search(r"@[A-Z_]+@", text), f"placeholder left in {unit.name}"
        service = read_unit(unit)["Service"]
        assert service["User"] == getpass.getuser()
        assert service["Restart"] == "always"
        # ros2 launch (the node's unit) ends with 1 when the node refused its parameters.
        launched = unit.name == "daly-bms-node.service"
        assert service["RestartPreventExitStatus"] == ("1 2" if launched else "2")
        assert service["KillSignal"] == "SIGINT"
        assert service["NoNewPrivileges"] == "yes"
        assert service["ProtectSystem"] == "strict"
        assert "AF_BLUETOOTH" in service["RestrictAddressFamilies"]
        assert "PrivateDevices" not in service  # DDS shares /dev/shm between nodes
        assert service["SystemCallFilter"] == "@system-service"
        assert service["ProtectProc"] == "invisible"
        assert int(service["LimitNOFILE"]) >= 4096  # the bridge's 2048 connections and more
        assert service["IPAddressDeny"] == "any"
        assert "localhost" in service["IPAddressAllow"]
        # A setting reaches a shell as an environment variable, never as text systemd pasted
        # into the script (where "; rm -rf ~" in /etc/default/daly-bms would run).
        assert not re.search(r"(?<!\$)\$\{DALY_BMS", service["ExecStart"]), service["ExecStart"]
        assert read_unit(unit)["Install"]["WantedBy"] == "multi-user.target"
    node = (root / "etc/systemd/system/daly-bms-node.service").read_text()
    assert f'source "{ros}"' in node and f'source "{workspace}"' in node
    assert "ros2 launch daly_bms_ros daly_bms.launch.py" in node and "respawn:=false" in node
    serve = read_unit(root / "etc/systemd/system/daly-bms-serve.service")["Service"]
    assert serve["ExecStart"].startswith(f'"{daly_bms}" serve')
    assert serve["IPAddressAllow"] == "localhost"  # HTTP to this machine only by default
    assert "network-online.target" in read_unit(units[1])["Unit"]["Wants"]
    assert (
        "DALY_BMS_PARAMS=/etc/daly-bms/daly_bms.yaml" in (root / "etc/default/daly-bms").read_text()
    )
    # It may hold the MQTT password: root's alone.
    assert (root / "etc/default/daly-bms").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/daly-bms/daly_bms_bridge.yaml").read_text() == (
        ROOT / "config" / "daly_bms_bridge.yaml"
    ).read_text()
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--root", str(root), *map(str, units)],
            capture_output=True,
            text=True,
            check=False,
        )
        # Complaints about the empty root (no /bin/bash, no sysinit.target) are expected there.
        problems = re.findall(r".*(?:Unknown|Invalid|Failed to parse|Ignoring).*", verify.stderr)
        assert not problems, verify.stderr


def test_existing_settings_are_kept(tmp_path: Path, setups: tuple[Path, Path, Path]) -> None:
    ros, workspace, _ = setups
    settings = tmp_path / "root" / "etc" / "default" / "daly-bms"
    settings.parent.mkdir(parents=True)
    settings.write_text("ROS_DOMAIN_ID=7\n")
    result = install(
        tmp_path / "root", "--ros-setup", str(ros), "--workspace-setup", str(workspace)
    )
    assert result.returncode == 0, result.stderr
    assert settings.read_text() == "ROS_DOMAIN_ID=7\n"
    assert f"kept {settings}" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--ros-setup", "/nonexistent/setup.bash"), "pass --ros-setup"),
        (("--units", "toaster"), "units are node, bridge, serve"),
        (("--frobnicate",), "unknown option --frobnicate"),
    ],
)
def test_wrong_options_are_refused(
    tmp_path: Path, arguments: tuple[str, ...], message: str
) -> None:
    result = install(tmp_path / "root", *arguments)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "root" / "etc" / "systemd").exists()
