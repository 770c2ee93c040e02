"""The real captured frames in ../shared/frames beside the repository."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

FRAMES_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "frames" / "daly_d2_real.json"


@cache
def real_frames() -> dict[str, dict[str, Any]]:
    """Every capture by id."""
    return {entry["id"]: entry for entry in json.loads(FRAMES_FILE.read_text())}


def frame_bytes(frame_id: str) -> bytes:
    """The raw bytes of one capture."""
    return bytes.fromhex(real_frames()[frame_id]["hex"])


STATUS = "daly16s-status-7c"
SETTINGS = "daly16s-settings-52"
BAD_CRC = "daly16s-status-7c-badcrc"
