"""Real captured frames: data/daly_d2_real.json and field_frames.json, both in this folder.

data/daly_d2_real.json holds one real 16S pack's status and settings answers with the requests
that asked them (its source: data/README.md).

field_frames.json holds answers of real devices published by other projects, each with its
source (repository, commit, file and line, or issue thread) and the values that source states
("stated") or that were decoded by hand from a published register table ("decoded_by_hand").
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

FRAMES_FILE = Path(__file__).resolve().parent / "data" / "daly_d2_real.json"


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

FIELD_FRAMES_FILE = Path(__file__).resolve().parent / "field_frames.json"


@cache
def field_frames() -> dict[str, dict[str, Any]]:
    """Real answers published by other projects, each with its source and what it states."""
    return {entry["id"]: entry for entry in json.loads(FIELD_FRAMES_FILE.read_text())}


def field_bytes(frame_id: str) -> bytes:
    """The raw bytes of one published capture."""
    return bytes.fromhex(field_frames()[frame_id]["hex"])
