#!/usr/bin/env bash
# Set up (idempotent), then show what the driver reads from a Daly BMS: the real frames captured
# from a 16S pack (../shared/frames, or frames given as arguments) decoded by `daly-bms decode`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
VENV="$ROOT/.venv"
if [ $# -eq 0 ]; then
    FRAMES="$ROOT/../shared/frames/daly_d2_real.json"
    mapfile -t frames < <("$VENV/bin/python" -c '
import json, sys
for capture in json.load(open(sys.argv[1])):
    print(capture["hex"])' "$FRAMES")
    set -- "${frames[@]}"
fi
echo "== daly-bms decode (one JSON object per frame; a rejected frame shows its error)"
"$VENV/bin/daly-bms" decode "$@" || true
