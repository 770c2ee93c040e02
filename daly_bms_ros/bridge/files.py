"""latest.json and status.json in a data directory, for tools that read files, never half-written.

Each file is written to a temporary file in the same directory and renamed over the old one, so a
reader sees the old or the new content, whole. With one battery the files are at the top of the
directory; with several, in a subdirectory per battery (like the HTTP paths). What the files are
called and hold is a layout: the bridge's own here, others (the files of an earlier reader that
scripts still read) beside the code that knows them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.bridge.views import battery_view, health

LOG = logging.getLogger(__name__)
#: The name under which a failing data directory shows in the store's problems.
DATA_DIR_PROBLEM = "data_dir"


def _file_mode() -> int:
    """Return the mode a new file gets under the umask (mkstemp alone gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


#: Read once: other users' tools read the files as the umask (the units' UMask=0022) allows.
FILE_MODE = _file_mode()


def write_json_atomically(path: Path, content: Any) -> None:
    """Replace ``path`` with ``content`` as JSON in one rename."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "w") as file:
            json.dump(content, file)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class FileLayout(Protocol):
    """What a data directory's two files are called and what they hold."""

    #: The file rewritten every interval, at the top of the directory: how the outputs are.
    status_name: str
    #: The file of each battery, with its latest data.
    latest_name: str

    def status(self, store: SampleStore) -> Any:
        """Return the content of the status file now."""

    def latest(self, store: SampleStore, name: str, changed: bool) -> Any | None:
        """Return the content of battery ``name``'s latest file, or None to leave it as it is.

        ``changed``: the store changed since the last write.
        """


class BridgeLayout:
    """latest.json (the latest fresh sample, as ``GET /bms``) and status.json (``/health``)."""

    status_name = "status.json"
    latest_name = "latest.json"

    def status(self, store: SampleStore) -> Any:
        """Return the ``/health`` answer; the directory counts as working while it is written."""
        return health(store, ignoring={DATA_DIR_PROBLEM})[1]

    def latest(self, store: SampleStore, name: str, changed: bool) -> Any | None:
        """Return the record of a new fresh sample, else None: the file only ever holds one."""
        if not changed:
            return None
        status, record = battery_view(store, name, "")
        return record if status == 200 else None


class DataDirectoryWriter:
    """Write the store to a directory every ``interval`` seconds, from a thread of its own.

    The status file is rewritten each time (data ages even when nothing arrives), each
    battery's latest file when its layout says (the bridge's: only when a new sample came, and
    only ever with a fresh sample). A write that fails (disk full, directory removed) is
    retried every interval and reported in the store as the problem ``data_dir`` until a write
    succeeds again: the thread never dies of it, and ``/health`` does not say "ok" while the
    files stand still.
    """

    def __init__(
        self,
        store: SampleStore,
        directory: Path,
        interval: float = 1.0,
        layout: FileLayout | None = None,
    ) -> None:
        self._store = store
        self._directory = directory
        self._interval = interval
        self._layout: FileLayout = layout or BridgeLayout()
        self._stopping = threading.Event()
        self._written_version = -1
        self._failing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="daly_bms_files", daemon=True)

    def _battery_directory(self, name: str) -> Path:
        if len(self._store.names) == 1:
            return self._directory
        return self._directory / name

    def check(self) -> None:
        """Raise ValueError when the directory cannot serve at all (a setting to fix).

        It is created when missing; it must then be a writable directory whose files, if any,
        are files. Failures after this (a full disk) are conditions, retried by the thread.
        """
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"data directory {self._directory}: {error.strerror}") from error
        if not os.access(self._directory, os.W_OK | os.X_OK):
            raise ValueError(f"data directory {self._directory}: not writable")
        for name in (self._layout.status_name, self._layout.latest_name):
            if (self._directory / name).is_dir():
                raise ValueError(f"data directory {self._directory}: {name} is a directory")

    def write(self) -> None:
        """Write the status file, and each battery's latest file as the layout says."""
        version = self._store.version
        changed = version != self._written_version
        for name in self._store.names:
            self._battery_directory(name).mkdir(parents=True, exist_ok=True)
        layout = self._layout
        write_json_atomically(self._directory / layout.status_name, layout.status(self._store))
        for name in self._store.names:
            content = layout.latest(self._store, name, changed)
            if content is not None:
                write_json_atomically(self._battery_directory(name) / layout.latest_name, content)
        self._written_version = version

    def write_and_report(self) -> None:
        """Write; on failure report the problem (logged once), on success clear it."""
        try:
            self.write()
            if self._failing_since is not None:
                self._store.report_problem(DATA_DIR_PROBLEM, None)
                LOG.warning("writing to %s again", self._directory)
                self._failing_since = None
        except Exception as error:  # the thread must live on, reporting whatever stops it
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
                LOG.error("cannot write to %s: %s; retrying", self._directory, error)
            self._store.report_problem(
                DATA_DIR_PROBLEM,
                f"cannot write to {self._directory}: {error} "
                f"(for {now - self._failing_since:.0f} s, retrying every {self._interval:g} s)",
            )

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.write_and_report()

    def start(self) -> None:
        """Check the directory (ValueError when it cannot serve), write now, then every interval."""
        self.check()
        self.write_and_report()
        self._thread.start()

    def stop(self) -> None:
        """Stop, after a last write."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self.write_and_report()
