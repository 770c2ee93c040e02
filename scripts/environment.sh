# Sourced by the scripts: which environment they use. DISTRO=kilted (default: .venv/) or jazzy
# (.venv-jazzy/); PYTHON the interpreter that creates it (default python3); VENV another folder
# (e.g. one per interpreter).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DISTRO=${DISTRO:-kilted}
case "$DISTRO" in
    kilted) VENV=${VENV:-$ROOT/.venv} ;;
    jazzy) VENV=${VENV:-$ROOT/.venv-jazzy} ;;
    *) echo "DISTRO must be kilted or jazzy, not '$DISTRO'" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
export DISTRO VENV PYTHON
