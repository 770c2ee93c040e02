#!/usr/bin/env bash
# Build and test the package in a colcon workspace, as a robot does (README, "Installing on a
# robot"): the files of this checkout in src/ of a fresh workspace, `colcon build`, `colcon test`,
# `colcon test-result`, against the ROS 2 wheels of the environment scripts/setup.sh prepares
# (DISTRO, PYTHON, VENV: see scripts/environment.sh). PYTEST_ADDOPTS reaches the test run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/environment.sh"
bash "$ROOT/scripts/setup.sh"

COLCON_VENV="$ROOT/.venv-colcon"
if ! cmp -s "$ROOT/requirements/colcon.txt" "$COLCON_VENV/requirements.txt" 2>/dev/null; then
    echo "[workspace] installing colcon into $COLCON_VENV" >&2
    [ -x "$COLCON_VENV/bin/python" ] || python3 -m venv "$COLCON_VENV"
    "$COLCON_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$ROOT/requirements/colcon.txt" 2> >(grep -v "is ignored: it is neither" >&2)
    cp "$ROOT/requirements/colcon.txt" "$COLCON_VENV/requirements.txt"
fi

WORKSPACE=$(mktemp -d /tmp/daly_bms_ros_ws.XXXXXX)
trap 'rm -rf "$WORKSPACE"' EXIT
mkdir -p "$WORKSPACE/src/daly_bms_ros"
# What a clone holds, with the changes not committed yet: the files git tracks or would track.
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) |
    tar -xf - -C "$WORKSPACE/src/daly_bms_ros"

cd "$WORKSPACE"
# The wheels stand where a ROS install's /opt/ros/<distro> would.
export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$COLCON_VENV/bin:$PATH"
echo "== colcon build (ROS 2 $DISTRO, $("$VENV/bin/python" --version))"
colcon build --event-handlers console_direct- --cmake-args \
    -DPython3_EXECUTABLE="$VENV/bin/python" -Wno-dev
set +u  # setup.bash reads variables that may be unset
source install/setup.bash
set -u
echo "== colcon test"
colcon test || true  # the results tell
echo "== colcon test-result"
colcon test-result --verbose
