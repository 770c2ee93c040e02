"""What a robot installs: a wired robot runs without Bluetooth libraries."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_without_ros import interpreter, pip_installed, run

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


#: The tests of what runs without ROS: the protocol core, the decoder, the real frames, the
#: capture files and hostile input to both.
ROS_FREE_TESTS = (
    "test_protocol_frames.py",
    "test_protocol_decoding.py",
    "test_protocol_a5.py",
    "test_protocol_hostile.py",
    "test_field_frames.py",
    "test_cli_decode.py",
    "test_hostile_files.py",
    "test_text.py",
)


@pytest.mark.interpreters
def test_the_tests_that_need_no_ros_pass_where_rclpy_is_not_installed(tmp_path: Path) -> None:
    tools = [line for line in DEV_REQUIREMENTS.read_text().splitlines() if TEST_TOOL.match(line)]
    environment = pip_installed(tmp_path, Path(sys.executable), *tools)
    assert run([environment.command("python"), "-c", "import rclpy"]).returncode != 0
    result = run(
        [
            environment.command("pytest"),
            *("-q", "-p", "no:cacheprovider"),
            *(str(HERE / name) for name in ROS_FREE_TESTS),
        ],
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


def test_the_robot_requirements_are_the_declared_dependencies() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["project"]
    lines = (HERE.parent / "requirements" / "robot.txt").read_text().splitlines()
    robot = [line for line in lines if line and not line.startswith("#")]
    normalise = re.compile(r"\s|'|\"")
    assert [normalise.sub("", line) for line in robot] == [
        normalise.sub("", line) for line in declared["dependencies"]
    ]


#: Where each library the package imports comes from on a robot: a ROS package, a rosdep key
#: (Debian/Ubuntu's python3-*), or pip alone (requirements/robot.txt: no key, or none new
#: enough anywhere). What ros/rosdistro's rosdep/python.yaml and base.yaml hold (2026-08).
IMPORT_SOURCES = {
    "rclpy": "rclpy",
    "builtin_interfaces": "builtin_interfaces",
    "rcl_interfaces": "rcl_interfaces",
    "sensor_msgs": "sensor_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "std_msgs": "std_msgs",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "yaml": "python3-yaml",
    "serial": "python3-serial",
    "can": "python3-can",
    "bleak": "python3-bleak",
    "prometheus_client": "python3-prometheus-client",
    "paho": "python3-paho-mqtt",
    "bleak_retry_connector": "pip",
    "dbus_fast": "pip",
    "h11": "pip",
}


def declared_keys(distro: str) -> set[str]:
    """The rosdep keys package.xml asks for on ``distro`` (its conditions evaluated)."""
    package = pytest.importorskip("catkin_pkg.package")
    parsed = package.parse_package(str(HERE.parent / "package.xml"))
    parsed.validate()
    parsed.evaluate_conditions({"ROS_DISTRO": distro, "ROS_VERSION": "2"})
    return {
        dependency.name
        for dependency in (*parsed.build_depends, *parsed.exec_depends, *parsed.buildtool_depends)
        if dependency.evaluated_condition
    }


@pytest.mark.filterwarnings("ignore:.*deprecated")  # catkin_pkg on a newer pyparsing
def test_package_xml_declares_every_library_the_code_imports() -> None:
    imported = set()
    for path in (HERE.parent / "daly_bms_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert third_party - {"daly_bms_ros"} == set(IMPORT_SOURCES)
    robot = (HERE.parent / "requirements" / "robot.txt").read_text()
    for distro in ("humble", "jazzy", "kilted", "lyrical"):
        keys = declared_keys(distro)
        for module, source in IMPORT_SOURCES.items():
            pip_name = {"paho": "paho-mqtt", "prometheus_client": "prometheus-client"}.get(
                module, module.replace("_", "-")
            )
            # What rosdep does not install on a distro, the robot's pip line must.
            assert source in keys or f"\n{pip_name}>=" in robot, (
                distro,
                module,
            )
    assert "python3-bleak" not in declared_keys("humble")  # Ubuntu 22.04 has none
    assert "python3-paho-mqtt" in declared_keys("lyrical")


@pytest.mark.filterwarnings("ignore:.*obsoleted")  # catkin_pkg on a newer docutils
def test_the_changelog_is_in_the_ros_format_bloom_reads() -> None:
    changelog = pytest.importorskip("catkin_pkg.changelog")
    path = HERE.parent / "CHANGELOG.rst"
    assert changelog.get_changelog_from_path(str(path), "daly_bms_ros") is not None
    # What is not released yet stands under "Forthcoming": catkin_prepare_release names it.
    assert path.read_text().splitlines()[4:6] == ["Forthcoming", "-----------"]


@pytest.mark.interpreters
@pytest.mark.parametrize("version", ["3.10", "3.12"])
def test_the_robot_pip_line_resolves_on_humbles_and_jazzys_python(
    tmp_path: Path, version: str
) -> None:
    python = interpreter(version)
    environment = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(environment)], check=True, timeout=120)
    result = run(
        [
            str(environment / "bin" / "python"),
            *("-m", "pip", "install", "--dry-run", "--disable-pip-version-check"),
            *("-r", str(HERE.parent / "requirements" / "robot.txt")),
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Would install" in result.stdout and "bleak-" in result.stdout
