"""Atomic file writes: readers see the old file or the new one, never half of either.

One helper for every writer in the project (checkpoints, models, snapshots, reports,
downloaded weights, the demo catalogue): write to a temporary file in the same
directory (same file system, so the rename is atomic), fsync, then ``os.replace``.
On any error, ``KeyboardInterrupt`` included, the temporary file is removed and the
destination is left as it was.

Three shapes, for three kinds of caller:

* :func:`atomic_open` - a context manager yielding a binary file, for writers that
  stream (a download, ``np.save`` of a large array) or check what they wrote before
  it goes live;
* :func:`atomic_write` - a callback given that file;
* :func:`atomic_write_bytes` / :func:`atomic_write_text` - the whole content at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: suffix of the temporary files; a crash (kill -9, power loss) can leave one behind
TMP_SUFFIX = ".tmp"


def _file_mode() -> int:
    """What ``open(path, "w")`` would give a new file (0o666 under the umask): mkstemp's 0o600
    would hide an export or a snapshot from a front end running as another user."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` when the ``with`` block ends without error.

    The file is a temporary one beside ``path`` (``<name>.<random>.tmp``); its ``name``
    attribute is that temporary path (a str), so a caller can re-read what it wrote
    (flush first) and raise to refuse it, as a checksum check does.  On success it is
    flushed, fsynced and renamed over ``path``; on any exception the temporary file is
    removed, ``path`` is untouched, and the exception propagates.  Creates the parent
    directory.  Raises OSError when the directory cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TMP_SUFFIX)
    os.close(fd)  # reopened by name below, so that fh.name is the temporary path
    os.chmod(tmp, _MODE)
    try:
        with open(tmp, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every OS can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, fsync, rename over ``path``.

    Creates the parent directory.  On any error (disk full, an exception in ``write``)
    the temp file is removed and ``path`` is untouched; the error propagates.
    """
    with atomic_open(path) as fh:
        write(fh)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`atomic_write` of a bytes object."""
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str, *, encoding: str = "utf-8", private: bool = False) -> None:
    """:func:`atomic_write` of a str, encoded with ``encoding`` (no newline translation).

    ``private``: readable by the owner only (0600), for a file holding a secret.
    """
    with atomic_open(path) as fh:
        if private:
            os.chmod(fh.name, 0o600)
        fh.write(text.encode(encoding))
