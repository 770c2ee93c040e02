#!/usr/bin/env bash
# Set up (idempotent) and run every check: ruff lint, ruff format check, mypy, pytest.
# Extra arguments go to pytest. DISTRO, PYTHON and VENV choose the environment (see
# scripts/environment.sh; by default ROS 2 Kilted in .venv/). mypy checks the types against
# Kilted's rclpy, typed throughout; Jazzy's is not (its untyped calls are errors in strict mode),
# so with DISTRO=jazzy the static checks are left to the Kilted run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/environment.sh"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ "$DISTRO" = kilted ]; then
    echo "== ruff check"; "$VENV/bin/ruff" check .
    echo "== ruff format --check"; "$VENV/bin/ruff" format --check .
    echo "== mypy"; "$VENV/bin/mypy"
fi
export DALY_TESTS_NEED_EVERY_TOOL=1  # a tool missing here fails its tests, never skips them
echo "== pytest (ROS 2 $DISTRO, $("$VENV/bin/python" --version))"; "$VENV/bin/pytest" "$@"
