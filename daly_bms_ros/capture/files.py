"""Reading the files a user hands the tools: captures, nRF Connect logs, hex dumps.

A path may name anything: a FIFO nobody writes to (opening it for reading waits forever),
``/dev/zero`` (a read that never ends), a directory, a file of one 90 MB line, a file another
program keeps appending to. So an input file is a regular file or is refused, it is opened
without waiting, read no further than the size it had when opened, a line or a chunk at a time,
and a line longer than ``MAX_LINE_BYTES`` is refused: what a tool holds stays bounded whatever the
file holds. Standard input ("-") is a stream by nature: it is read in chunks, never whole.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: The longest line taken (without its line end): a capture's line holds one notification of at
#: most 512 bytes as hex, an nRF Connect log's line one value; 64 KiB leaves room for any of them.
MAX_LINE_BYTES = 64 * 1024
#: What one read takes of a file or of standard input read in chunks.
CHUNK_BYTES = 64 * 1024
#: The largest file a tool keeps whole in memory (a replay, a conversion): 256 MiB. The capture
#: writer rotates its files at 50 MiB.
MAX_KEPT_BYTES = 256 * 2**20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class InputFileError(ValueError):
    """A file that cannot be read as input; the message names it and says why."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: Path, max_bytes: int | None = None) -> tuple[BinaryIO, int]:
    """Open ``path`` for reading if it is a regular file; return it and its size.

    Opened without blocking, so a FIFO is refused instead of waited on. ``max_bytes``: refuse a
    larger file.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise InputFileError(f"{path}: {error.strerror}") from error
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise InputFileError(f"{path}: {_kind(status.st_mode)}, not a regular file")
        if max_bytes is not None and status.st_size > max_bytes:
            raise InputFileError(
                f"{path}: {status.st_size} bytes, over the {max_bytes // 2**20} MiB taken"
            )
        os.set_blocking(descriptor, True)
        file = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    return file, status.st_size


def read_lines(
    path: Path, errors: str = "strict", max_bytes: int | None = None
) -> Iterator[tuple[int, str]]:
    """Yield the number and the UTF-8 text (without its line end) of each line of ``path``.

    InputFileError for a file that is not a regular file (or over ``max_bytes``), a line over
    MAX_LINE_BYTES, text that is not UTF-8 (with ``errors="strict"``) or a failed read.
    """
    file, size = open_regular(path, max_bytes)
    left = size
    with file:
        number = 0
        while left > 0:
            number += 1
            try:
                line = file.readline(min(MAX_LINE_BYTES + 1, left))
            except OSError as error:
                raise InputFileError(f"{path}:{number}: {error.strerror}") from error
            if not line:
                return  # the file shrank meanwhile
            left -= len(line)
            text = line.rstrip(b"\r\n")
            if len(text) > MAX_LINE_BYTES:
                raise InputFileError(f"{path}:{number}: a line over {MAX_LINE_BYTES} bytes")
            try:
                decoded = text.decode("utf-8", errors)
            except UnicodeDecodeError as error:
                raise InputFileError(
                    f"{path}:{number}: not UTF-8 text (byte {error.start + 1} of the line)"
                ) from None
            yield number, decoded


def read_chunks(path: str) -> Iterator[bytes]:
    """Yield the bytes of ``path`` ("-": standard input) in chunks of at most CHUNK_BYTES.

    A file is read up to the size it had when opened; standard input until its end.
    InputFileError as ``read_lines``.
    """
    if path == "-":
        yield from _chunks(sys.stdin.buffer, None, "standard input")
        return
    file, size = open_regular(Path(path))
    with file:
        yield from _chunks(file, size, path)


def _chunks(stream: BinaryIO, size: int | None, name: str) -> Iterator[bytes]:
    left = size
    while left is None or left > 0:
        try:
            chunk = stream.read(CHUNK_BYTES if left is None else min(CHUNK_BYTES, left))
        except OSError as error:
            raise InputFileError(f"{name}: {error.strerror}") from error
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk
