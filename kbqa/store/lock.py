"""The one-writer-per-KB lock, and removal of what a killed writer left under it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kbqa.errors import Conflict

LOCK_FILE = ".lock"


class WriterBusy(Conflict):
    """The KB's writer lock is held by another process (or another writer in this one)."""


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files a writer killed mid-checkpoint left (call under the lock).

    Each is up to the size of its index and is never read; only the lock holder writes them,
    so under the lock none of them can be in use.
    """
    from kbqa.store.atomic import temp_files

    gone = []
    for path in temp_files(folder):
        path.unlink(missing_ok=True)
        gone.append(path)
    return gone


@contextmanager
def writer_lock(folder: Path, timeout: float = 10.0) -> Iterator[None]:
    """The one-writer-per-KB lock (an OS file lock, so a killed writer releases it)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / LOCK_FILE))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as e:
        raise WriterBusy(
            f"another process is writing knowledge base {folder.name!r} (lock {folder / LOCK_FILE}); "
            "wait for it to finish and try again"
        ) from e
    try:
        yield
    finally:
        lock.release()
