#!/usr/bin/env bash
# Prepare a fresh machine (Debian/Ubuntu, Python 3.10+) for development without a ROS install:
# the Debian packages the tests need (D-Bus, a compiler, mosquitto, chromium), a virtual
# environment with pinned ROS 2 wheels of one distro, bleak and the test tools, and the package
# (messages + Python) built and installed into that environment. Idempotent: pip runs only when
# a requirements file changed, cmake rebuilds only what changed.
#
# DISTRO, PYTHON and VENV choose the environment: see scripts/environment.sh.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/environment.sh"
# One set-up of an environment at a time: two builds installing into one venv at once leave
# message libraries that do not match (Python then crashes loading them).
exec 9>"$VENV.setup-lock"
flock 9
BUILD="$ROOT/build/$(basename "$VENV" | sed "s/^\\.//")/daly_bms_ros"
REQUIREMENTS=("$ROOT/requirements/ros-$DISTRO.txt" "$ROOT/requirements/runtime.txt" "$ROOT/requirements/dev.txt")

log() { printf '[setup] %s\n' "$*" >&2; }

install_debian_packages() {
    local missing=()
    command -v dbus-daemon >/dev/null || missing+=(dbus-daemon)
    command -v cmake >/dev/null || missing+=(cmake)
    command -v c++ >/dev/null || missing+=(g++)
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    # The bridge's outputs are tested for real: an MQTT broker, a browser for the page.
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v openssl >/dev/null || missing+=(openssl)
    [ ${#missing[@]} -eq 0 ] && return
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_python_packages() {
    [ -x "$VENV/bin/python" ] || { log "creating $VENV with $PYTHON"; "$PYTHON" -m venv "$VENV"; }
    local stamp="$VENV/.requirements.sha256"
    local wanted
    wanted=$(cat "${REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        log "installing Python packages (ROS 2 $DISTRO, $("$VENV/bin/python" --version))"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
            2> >(grep -v "is ignored: it is neither" >&2) \
            "${REQUIREMENTS[@]/#/-r}"
        echo "$wanted" >"$stamp"
    fi
}

build_package() {
    log "building messages and installing the package into $VENV"
    local site
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # The wheels' CMake configs and generators are found through the venv prefix.
    export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    cmake -S "$ROOT" -B "$BUILD" -Wno-dev --log-level=WARNING \
        -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$VENV" \
        -DPYTHON_INSTALL_DIR="${site#"$VENV"/}" \
        -DPython3_EXECUTABLE="$VENV/bin/python" \
        -DBUILD_TESTING=OFF >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" -- --quiet >/dev/null
    cmake --install "$BUILD" >/dev/null
}

install_debian_packages
install_python_packages
build_package
log "ready: $VENV"
