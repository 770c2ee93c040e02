#!/usr/bin/env bash
# The whole driver on one machine without Bluetooth hardware: set up (idempotent), start a private
# D-Bus with the BlueZ mock bluezoo (central hci0, peripheral hci1), the node searching for a
# Daly BMS on hci0, and a virtual BMS (daly-bms-sim) on hci1; then print the node's topics the way
# `ros2 topic echo` does until Ctrl+C. Every process started here is stopped on exit.
# `bash scripts/demo.sh decode [HEX ...]` decodes captured frames instead (default: the real frames in test/data/).
# `bash scripts/demo.sh page` serves the virtual BMS with `daly-bms serve` instead of the node:
# open http://127.0.0.1:8080/ for the live page (/metrics for Prometheus);
# `bash scripts/demo.sh page --screenshot FILE.png` saves a screenshot of the page and stops.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
VENV="$ROOT/.venv"

if [ "${1:-}" = decode ]; then
    shift
    if [ $# -eq 0 ]; then
        mapfile -t frames < <("$VENV/bin/python" -c '
import json, sys
for capture in json.load(open(sys.argv[1])):
    print(capture["hex"])' "$ROOT/test/data/daly_d2_real.json")
        set -- "${frames[@]}"
    fi
    exec "$VENV/bin/daly-bms" decode "$@"
fi

WORK=$(mktemp -d)
pids=()
cleanup() {
    # Newest first, each gone before the next: the bus goes last.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# DDS stays on this machine, in a domain of its own.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}

dbus-daemon --session --nofork --print-address=1 >"$WORK/bus" 2>/dev/null &
pids+=($!)
until [ -s "$WORK/bus" ]; do sleep 0.05; done
export DBUS_SYSTEM_BUS_ADDRESS=$(head -n 1 "$WORK/bus")

# bluezoo with the fixes that let a client reconnect (see tools/bluez_mock.py).
"$VENV/bin/python" "$ROOT/tools/bluez_mock.py" --scan-interval 0.5 \
    -a 00:AA:01:00:00:01 -a 00:AA:01:00:00:02 >"$WORK/bluezoo.log" 2>&1 &
pids+=($!)
until grep -q "Adding adapter\[1\]" "$WORK/bluezoo.log" 2>/dev/null; do sleep 0.05; done

"$VENV/bin/daly-bms-sim" --name DL-SIM000001 --adapter hci1 &
pids+=($!)
if [ "${1:-}" = page ]; then
    "$VENV/bin/daly-bms" serve --name DL-SIM000001 --adapter hci0 --port "${PORT:-8080}" &
    pids+=($!)
    if [ "${2:-}" = --screenshot ]; then
        "$VENV/bin/python" "$ROOT/tools/page_screenshot.py" "http://127.0.0.1:${PORT:-8080}/" "$3"
        exit 0
    fi
    wait "${pids[-1]}"
    exit 0
fi
"$VENV/lib/daly_bms_ros/daly_bms_node" --ros-args -p device_name:=DL-SIM000001 -p adapter:=hci0 &
pids+=($!)
"$VENV/bin/python" -m daly_bms_ros.node.echo &
pids+=($!)
wait "${pids[-1]}"
