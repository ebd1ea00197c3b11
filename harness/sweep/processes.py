"""Processes and signals of a sweep: process groups, their stopping, SIGTERM as Ctrl-C.

The runner starts each configuration's measurement process in a session (and so a
process group) of its own, and must stop the whole group, cleanly where it can, so
that pool workers, shared-memory segments and memmap folders never outlive a
configuration (:func:`run_in_own_group`, :func:`kill_group`). SIGTERM is turned into
:class:`~harness.model.errors.Terminated`, a ``KeyboardInterrupt``, both in the runner
and in the measurement process
(:func:`terminate_as_interrupt`), and held back while result files are replaced
(:func:`interrupts_deferred`).

Only the standard library and the harness's errors: the measurement process imports
this module before any numeric library. It knows nothing of strategies, timings or the
results folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness.model.errors import Terminated

#: Signals that stop a sweep the way Ctrl-C does (SIGTERM: CI cancelling a job, kill).
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while files are replaced, then stop as Ctrl-C does."""
    received: list[int] = []

    def remember(signum: int, frame: object) -> None:
        received.append(signum)

    try:
        previous = {signum: signal.signal(signum, remember) for signum in _STOP_SIGNALS}
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if signal.SIGTERM in received:
            raise Terminated
        if received:
            raise KeyboardInterrupt


def _raise_interrupt(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM stops the process as Ctrl-C does: ``finally`` blocks run.

    Used by the runner (a terminated sweep must not leave its measurement process, in
    a session of its own, running with nobody to collect it) and by the measurement
    process itself (the runner stops an overrunning configuration with SIGTERM first;
    by default SIGTERM would end it at once, leaving its pool workers, shared-memory
    segments and memmap folders to the resource trackers).
    """
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: Seconds the rest of a finished configuration process's group gets to exit by itself.
LINGER_SECONDS = 1.0
#: Seconds a configuration process gets to clean up after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 5.0
#: Seconds what is left of its group (resource trackers deleting shared memory and
#: memmap folders once their parent is gone) gets before SIGKILL.
TRACKER_GRACE_SECONDS = 5.0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_group(pgid: int, seconds: float) -> bool:
    """Wait until the process group is empty; True when it emptied in time."""
    deadline = time.monotonic() + seconds
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def kill_group(process: subprocess.Popen, stop_grace: float | None = None) -> bool:
    """Stop the process group of ``process`` (it leads its own session), cleanly if it can.

    SIGTERM first: the configuration process turns it into SystemExit and closes its
    strategy (pools, shared memory, memmap folders). A leader deaf to it (hung in C
    code) gets SIGKILL after ``stop_grace`` seconds (default
    :data:`STOP_GRACE_SECONDS`). The rest of the group, the resource trackers that
    delete what a dead parent registered, then get :data:`TRACKER_GRACE_SECONDS` to
    finish before everything left is killed: killing them at once is what leaks
    ``/dev/shm`` entries.

    Returns
    -------
    bool
        True when something was still running in the group when it was stopped.
    """
    pgid = process.pid
    # a finished process's resource trackers exit on their own within moments
    if process.poll() is not None and wait_group(pgid, LINGER_SECONDS):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS if stop_grace is None else stop_grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    if not wait_group(pgid, TRACKER_GRACE_SECONDS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return True


def run_in_own_group(
    command: Sequence[str],
    *,
    env: dict[str, str],
    log_file: Path,
    timeout: float,
    stop_grace: float | None = None,
) -> tuple[int | None, bool]:
    """Run ``command`` in a session of its own, its output to ``log_file``.

    Whatever happens (timeout, Ctrl-C), the process's whole group is stopped with
    :func:`kill_group` (given ``stop_grace``) before this returns or raises.

    Returns
    -------
    returncode : int or None
        None when the process ran over ``timeout`` seconds.
    leftovers : bool
        True when something of its group was still running when it was stopped.
    """
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            list(command),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        returncode = None
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            leftovers = kill_group(process, stop_grace)  # also on Ctrl-C: nothing left behind
    return returncode, leftovers


def death_reason(returncode: int | None, log_file: Path) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        reason = f"measurement process killed by {name}"
    else:
        reason = f"measurement process exited with status {returncode} without a result"
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    if lines:
        reason += f"; last output: {lines[-1].strip()[:200]}"
    return reason


__all__ = [
    "LINGER_SECONDS",
    "STOP_GRACE_SECONDS",
    "TRACKER_GRACE_SECONDS",
    "death_reason",
    "group_alive",
    "interrupts_deferred",
    "kill_group",
    "run_in_own_group",
    "terminate_as_interrupt",
    "wait_group",
]
