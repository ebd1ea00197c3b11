"""Peak memory of a process and all its descendants, as summed PSS.

The proportional set size (PSS) of a process charges each page it maps divided by
the number of processes mapping it. Summed over a process tree it counts a shared
page once, however many workers map it, and a private page once, so it is the
memory the tree really occupies: a strategy that copies X into every worker shows
``workers x`` the size of X, one that shares it shows it once. RSS would count a
shared page in every process.

::

    with PeakMemorySampler() as sampler:     # samples every 20 ms in a thread
        run_something()
    sampler.peak_bytes, sampler.samples

Linux only (PSS comes from ``/proc/<pid>/smaps_rollup``, through psutil). Peaks
shorter than the sampling interval can be missed; the sampler takes one sample on
entry and one on exit, so the start and end state are always covered.

It knows nothing of strategies, timings or results; it only reads process memory
(through psutil).
"""

from __future__ import annotations

import os
import threading

import psutil

from harness.model.errors import HarnessError

#: Seconds between samples. Fine enough for EM phases on large data (a 4M-point
#: E-step allocation lives for tens of milliseconds at least); each sample reads one
#: small /proc file per process, well under a millisecond for a few processes.
DEFAULT_INTERVAL = 0.020


class MemoryMeasurementError(HarnessError, RuntimeError):
    """PSS cannot be read on this platform or for this process."""


def _pss(process: psutil.Process) -> int | None:
    """PSS of one process, None when it has exited meanwhile."""
    try:
        info = process.memory_full_info()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    pss = getattr(info, "pss", None)
    if pss is None:
        raise MemoryMeasurementError(
            "PSS is not available on this platform (psutil reports it on Linux only)"
        )
    return int(pss)


def process_tree_pss(pid: int | None = None) -> int:
    """Summed PSS, in bytes, of a process and all its descendants.

    Parameters
    ----------
    pid : int, optional
        Root of the tree; this process when None.

    Returns
    -------
    int
        Bytes. Descendants that exit while being read are skipped.

    Raises
    ------
    MemoryMeasurementError
        If PSS is unavailable (not Linux) or the process cannot be read.
    """
    try:
        root = psutil.Process(os.getpid() if pid is None else pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess as exc:
        raise MemoryMeasurementError(f"no process with pid {pid}") from exc
    except psutil.AccessDenied as exc:
        raise MemoryMeasurementError(f"cannot read process {pid}: {exc}") from exc
    total = 0
    for process in processes:
        try:
            value = _pss(process)
        except psutil.AccessDenied as exc:
            raise MemoryMeasurementError(
                f"cannot read the memory of pid {process.pid}: {exc}"
            ) from exc
        if value is not None:
            total += value
    return total


class PeakMemorySampler:
    """Context manager: peak summed PSS of a process tree while a block runs.

    A daemon thread calls :func:`process_tree_pss` every ``interval`` seconds; one
    sample is also taken on entry and on exit. Workers started inside the block are
    included from the first sample after they appear.

    Parameters
    ----------
    interval : float
        Seconds between samples (default :data:`DEFAULT_INTERVAL`).
    pid : int, optional
        Root of the tree; this process when None.

    Attributes
    ----------
    peak_bytes : int
        Largest summed PSS seen (0 before the block starts).
    start_bytes : int
        The sample taken on entry (the baseline).
    samples : int
        Samples taken.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL, pid: int | None = None) -> None:
        if not interval > 0:
            raise MemoryMeasurementError(f"interval must be > 0 seconds; got {interval!r}")
        self.interval = float(interval)
        self.pid = pid
        self.peak_bytes = 0
        self.start_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def sample(self) -> int:
        """Take one sample now; returns it (and updates :attr:`peak_bytes`)."""
        value = process_tree_pss(self.pid)
        self.samples += 1
        self.peak_bytes = max(self.peak_bytes, value)
        return value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except BaseException as exc:  # reported on exit, not lost in the thread
                self._error = exc
                return

    def __enter__(self) -> PeakMemorySampler:
        self.start_bytes = self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if exc_info[0] is None:
                raise error
        if exc_info[0] is None:
            self.sample()
