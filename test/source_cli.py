"""Run ``daly-bms`` and ``daly-bms-sim`` from this source tree, with bounded memory and time.

The commands run as modules of the tree the tests belong to (not an installed copy that may be
older), with at most MEMORY_LIMIT of address space: a command that would read an endless file
into memory fails with MemoryError there instead of taking the machine's memory.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEMORY_LIMIT = 512 * 2**20


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def command(module: str, *arguments: str) -> list[str]:
    """The command line running ``module`` (e.g. ``daly_bms_ros.cli.main``) with ``arguments``."""
    return [sys.executable, "-m", module, *arguments]


def run(
    module: str, *arguments: str, timeout: float = 60, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``module`` from the source tree until it exits; its output as text.

    ``options`` go to ``subprocess.run`` (``stdout=`` another file, ``input=``, ``env=``).
    """
    settings: dict[str, Any] = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
        "errors": "replace",
    }
    return subprocess.run(
        command(module, *arguments),
        cwd=ROOT,
        timeout=timeout,
        check=False,
        preexec_fn=_limit_memory,
        **(settings | options),
    )


def daly_bms(*arguments: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run ``daly-bms`` from the source tree."""
    return run("daly_bms_ros.cli.main", *arguments, **options)


def daly_bms_sim(*arguments: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run ``daly-bms-sim`` from the source tree."""
    return run("daly_bms_ros.sim.main", *arguments, **options)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    """The command failed with ``status`` and said why in one line holding ``text``, no traceback.

    argparse's errors (``daly-bms-sim``) print the usage first: the line is the last one.
    """
    assert result.returncode == status, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert lines, "nothing on stderr"
    assert text in lines[-1], lines[-1]
    assert lines[-1].startswith(("daly-bms: ", "daly-bms ", "daly-bms-sim: ")), lines[-1]
    if not lines[0].startswith("usage:"):
        assert len(lines) == 1, result.stderr
