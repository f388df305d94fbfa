"""Reading a file a user names: a regular file, and no more of it than the caller allows.

    read_file(path, limit=1 << 20)  ->  bytes, or FileRefusedError with one sentence of why

A runbook, a params file, a credentials file or a past run's report can be anything the user
typed: ``/dev/zero`` would be read for ever, a FIFO would block the run before it starts, and a
huge file would fill memory. The file is opened without blocking and refused unless it is a
regular file; at most ``limit`` bytes are read, and a longer file is refused rather than cut.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileRefusedError(Exception):
    """The file cannot be read as asked; ``reason`` is the sentence's end (no path in it)."""

    def __init__(self, reason: str, *, oversize: bool = False) -> None:
        self.reason = reason
        self.oversize = oversize  # a regular file, only too long
        super().__init__(reason)


def read_file(path: Path, *, limit: int) -> bytes:
    """The whole content of the regular file at ``path``, which must be at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileRefusedError(exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise FileRefusedError(os.strerror(errno.EISDIR))  # as open() says it elsewhere
        for test, kind in _KINDS:
            if test(mode):
                raise FileRefusedError(f"it is {kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise FileRefusedError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise FileRefusedError(f"it is larger than {_size(limit)}", oversize=True)
    return b"".join(chunks)


def file_mode(path: Path) -> int:
    """The permission bits of ``path`` (following links), for checks such as ssh's."""
    return stat.S_IMODE(os.stat(path).st_mode)


def _size(limit: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"
