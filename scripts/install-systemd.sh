#!/usr/bin/env bash
# Install the daly-bms systemd units so the driver starts at boot and restarts when it fails.
#
#   sudo scripts/install-systemd.sh                 # daly-bms-node + daly-bms-bridge (ROS 2)
#   sudo scripts/install-systemd.sh --units serve   # daly-bms-serve: BLE to HTTP/JSON, no ROS
#
# Options: --units "node bridge serve"  --user USER (default: the user calling sudo)
#   --ros-setup FILE (default /opt/ros/$ROS_DISTRO/setup.bash)
#   --workspace-setup FILE (default: the colcon workspace holding this package, install/setup.bash)
#   --daly-bms FILE (the daly-bms command, for serve; default: the one on PATH)
#   --destdir DIR (write the files under DIR and enable nothing: for packaging and checks)
#   --no-enable (install, but do not enable and start)
# Settings go to /etc/default/daly-bms and parameters to /etc/daly-bms/*.yaml; existing ones are
# kept. Exit status 2 for a wrong option or a missing file, with the reason.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
units="node bridge"
user=${SUDO_USER:-$(id -un)}
ros_setup="/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
workspace_setup="$(cd "$ROOT/../.." && pwd)/install/setup.bash"
daly_bms=$(command -v daly-bms || true)
destdir=""
enable=1

fail() { echo "install-systemd: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --units) units=$2; shift 2 ;;
        --user) user=$2; shift 2 ;;
        --ros-setup) ros_setup=$2; shift 2 ;;
        --workspace-setup) workspace_setup=$2; shift 2 ;;
        --daly-bms) daly_bms=$2; shift 2 ;;
        --destdir) destdir=$2; enable=0; shift 2 ;;
        --no-enable) enable=0; shift ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
done

for unit in $units; do
    case "$unit" in
        node | bridge)
            [ -f "$ros_setup" ] || fail "$ros_setup: no such file; pass --ros-setup /opt/ros/<distro>/setup.bash"
            [ -f "$workspace_setup" ] || fail "$workspace_setup: no such file; pass --workspace-setup <workspace>/install/setup.bash"
            ;;
        serve)
            [ -n "$daly_bms" ] && [ -x "$daly_bms" ] || fail "daly-bms not found; pass --daly-bms /path/to/venv/bin/daly-bms"
            ;;
        *) fail "unknown unit '$unit'; units are node, bridge, serve" ;;
    esac
done
id "$user" >/dev/null 2>&1 || fail "no such user '$user'; pass --user NAME"

# Escape for sed's replacement text: backslash, ampersand and the | delimiter.
escape() { printf '%s' "$1" | sed 's/[\\&|]/\\&/g'; }

render() {
    local template=$1
    grep -v '^#' "$ROOT/systemd/hardening.conf" >"${tmp}/hardening"
    sed -e "s|@USER@|$(escape "$user")|g" \
        -e "s|@ROS_SETUP@|$(escape "$ros_setup")|g" \
        -e "s|@WORKSPACE_SETUP@|$(escape "$workspace_setup")|g" \
        -e "s|@DALY_BMS@|$(escape "$daly_bms")|g" \
        -e "s|@SHARE@|$(escape "$ROOT")|g" \
        -e "/^@HARDENING@$/{r ${tmp}/hardening" -e 'd}' "$template"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
install -d "$destdir/etc/systemd/system" "$destdir/etc/default" "$destdir/etc/daly-bms"
names=()
for unit in $units; do
    name="daly-bms-$unit.service"
    render "$ROOT/systemd/$name" >"$tmp/$name"
    install -m 644 "$tmp/$name" "$destdir/etc/systemd/system/$name"
    names+=("$name")
    echo "installed $destdir/etc/systemd/system/$name"
done
keep_or_install() {
    if [ -e "$2" ]; then echo "kept $2"; else install -m "${3:-644}" "$1" "$2" && echo "installed $2"; fi
}
# Readable by root alone: it may hold the MQTT password (systemd reads it before dropping root).
keep_or_install "$ROOT/systemd/daly-bms.env" "$destdir/etc/default/daly-bms" 600
keep_or_install "$ROOT/config/daly_bms.yaml" "$destdir/etc/daly-bms/daly_bms.yaml"
keep_or_install "$ROOT/config/daly_bms_bridge.yaml" "$destdir/etc/daly-bms/daly_bms_bridge.yaml"

if [ "$enable" = 1 ]; then
    systemctl daemon-reload
    systemctl enable --now "${names[@]}"
    echo "enabled and started: ${names[*]}; logs: journalctl -u daly-bms-\\*"
fi
