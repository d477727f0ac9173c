"""One writer at a time: an ``fcntl`` lock on ``<data_dir>/build.lock``.

Why fcntl (flock) and not a pid file: the kernel drops the lock when the holder
dies, even after ``kill -9``, so a crashed build never leaves a stale lock that a
user must delete by hand.  The holder's pid is written into the file only so the
message for the second build can say who holds it.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType

from engine.errors import SynestheteError

log = logging.getLogger(__name__)


class BuildLockedError(SynestheteError):
    """Another build (or demo) holds the lock on this data directory."""

    kind = "build_locked"
    user_message = "Another index build is running on this data directory; wait for it or stop it first."


class BuildLock:
    """Exclusive, non-blocking lock file; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise BuildLockedError(
                f"{self.path} is locked by pid {holder}",
                user_message=(f"Another index build (pid {holder}) is running on this data directory "
                              f"({self.path.parent}); wait for it to finish or stop it first."),
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        log.debug("acquired %s", self.path)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BuildLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
