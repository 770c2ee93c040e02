"""Values the CLI refuses with a one-line error and exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from installed import program

from daly_bms_ros.bridge.files import write_json_atomically
from daly_bms_ros.bridge.http_server import exposure_warning

CLI = program("daly-bms")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["monitor", "--count", "-1"], "not a whole number above 0"),
        (["monitor", "--count", "0"], "not a whole number above 0"),
        (["monitor", "--interval", "1e-320"], "number of seconds"),
        (["monitor", "--interval", "inf"], "number of seconds"),
        (["serve", "--port", "70000"], "not a TCP port"),
        (["serve", "--port", "-1"], "not a TCP port"),
        (["serve", "--host", ""], "empty host would bind every interface"),
        (["read", "--timeout", "nan"], "number of seconds"),
    ],
)
def test_bad_values_are_refused_with_exit_2(arguments: list[str], message: str) -> None:
    assert CLI
    result = subprocess.run(
        [CLI, *arguments], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("host", "exposed"),
    [("127.0.0.1", False), ("::1", False), ("localhost", False), ("0.0.0.0", True),
     ("192.0.2.7", True), ("robot.local", True)],
)  # fmt: skip
def test_binding_beyond_loopback_is_warned_about(host: str, exposed: bool) -> None:
    assert (exposure_warning(host) is not None) is exposed


def test_data_files_are_readable_as_the_umask_allows(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "latest.json"
    write_json_atomically(path, {"cycles": 2})
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_shell_refuses_bad_values_in_one_line() -> None:
    assert CLI
    script = "continuous -1\ncontinuous nan\ncontinuous inf\ncontinuous 1 -2\nconnect ²\nexit\n"
    result = subprocess.run(
        [CLI, "shell", "--timeout", "0.5"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"},
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.count("usage: continuous") == 4
    assert "error: BlueZ/D-Bus not reachable" in result.stdout  # ² is taken as a name


@pytest.mark.parametrize("directory", ["/proc/nope", "file"])
def test_serve_refuses_a_data_directory_it_cannot_use(tmp_path: Path, directory: str) -> None:
    assert CLI
    if directory == "file":
        directory = str(tmp_path / "file")
        Path(directory).write_text("")
    result = subprocess.run(
        [CLI, "serve", "--port", "0", "--data-dir", directory],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"daly-bms: data directory {directory}")
    assert "Traceback" not in result.stderr
