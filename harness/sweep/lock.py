"""One writer per run folder: an advisory lock that a second sweep is refused by.

Two sweeps writing the same folder (two ``run --out X``, two ``run --resume``) would
delete each other's work files and interleave their tables. The runner holds an
exclusive ``fcntl.flock`` on ``<run>/.lock`` while it writes; a second one fails at
once with the holder's pid, which the holder writes into the file. The kernel drops
the lock when the holder's file descriptor closes, which includes the process dying
by any signal, SIGKILL too: a stale lock file is never a problem, only a live holder
is. Linux and macOS only (``fcntl``).

Touches nothing in the folder but the lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from harness.model.errors import DataFileError

LOCK_FILE = ".lock"


class RunFolderBusyError(DataFileError):
    """Another live process holds the run folder's lock."""


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the exclusive write lock of ``run_dir`` (created if missing) for the block.

    Parameters
    ----------
    run_dir : str or Path

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    RunFolderBusyError
        When another process holds it (its pid in the message).
    DataFileError
        When the folder or the lock file cannot be created.
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataFileError(f"cannot create the run folder {run_dir}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderBusyError(
                f"{run_dir} is being written by another sweep (pid {holder}); wait for it "
                "to finish or stop it, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (unlinking it would race)
