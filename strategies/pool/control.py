"""Parent side of the process strategies: start method, worker environment, traffic,
task deadlines, Ctrl-C, and stopping processes.

Nothing here computes the model or owns a pool; :mod:`strategies.pool.base` uses
these pieces. Nothing here times anything for results or writes files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import psutil

from harness.model.errors import InvalidParameterError
from harness.model.threads import THREAD_ENV_VARS

#: Start methods the strategies accept, and the default. ``forkserver`` (Python
#: 3.14's default on Linux) forks workers from a small server process that has
#: preloaded this module (and so NumPy): starting a worker costs a fork, not an
#: interpreter start as with ``spawn``, and unlike ``fork`` it never copies a parent
#: that may hold threads (the memory sampler, BLAS pools) or locks.
START_METHODS = ("fork", "spawn", "forkserver")
DEFAULT_START_METHOD = "forkserver"

#: Environment variable the runner sets to choose the start method for a whole sweep.
START_METHOD_ENV = "GMM_HARNESS_START_METHOD"


#: Seconds workers get to exit after their pool is shut down before being killed.
EXIT_GRACE_SECONDS = 5.0


def resolve_start_method(start_method: str | None) -> str:
    """The start method to use: the argument, else ``$GMM_HARNESS_START_METHOD``, else
    :data:`DEFAULT_START_METHOD`.

    Raises
    ------
    InvalidParameterError
        For a name that is not one of :data:`START_METHODS` or not supported here.
    """
    source = "start_method"
    if start_method is None:
        start_method = os.environ.get(START_METHOD_ENV) or None
        source = f"${START_METHOD_ENV}"
    if start_method is None:
        return DEFAULT_START_METHOD
    value = str(start_method).strip().lower()
    import multiprocessing

    supported = [m for m in START_METHODS if m in multiprocessing.get_all_start_methods()]
    if value not in supported:
        raise InvalidParameterError(
            f"{source} must be one of {', '.join(supported)}; got {start_method!r}"
        )
    return value


@contextlib.contextmanager
def worker_thread_env() -> Iterator[None]:
    """Set the thread variables to 1 while workers start, so that they inherit them.

    Numeric libraries read these once, when they load; a spawned worker (or the
    forkserver, if it starts now) loads NumPy after inheriting them. The parent's
    own libraries are already loaded and unaffected.
    """
    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    os.environ.update(dict.fromkeys(THREAD_ENV_VARS, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _io_chars(process: psutil.Process) -> tuple[int, int] | None:
    try:
        counters = process.io_counters()
    except (psutil.Error, AttributeError, NotImplementedError):
        return None
    read = getattr(counters, "read_chars", None)
    written = getattr(counters, "write_chars", None)
    if read is None or written is None:
        return None
    return int(read), int(written)


class WorkerTraffic:
    """Bytes the workers read (tasks) and wrote (results) per iteration.

    Measured, not estimated: Linux counts every byte a process moves through
    ``read``/``write`` calls (``/proc/<pid>/io`` ``rchar``/``wchar``, via psutil). Workers
    do no other I/O while they compute (data and outputs are memory-mapped, which
    these counters do not see), so the counts are the pickled tasks and results plus
    the pipes' framing. ``None`` where the platform has no such counters.

    Parameters
    ----------
    processes : list of psutil.Process
    """

    def __init__(self, processes: Sequence[psutil.Process]) -> None:
        self._processes = list(processes)
        self._last: tuple[int, int] | None = None
        self.per_iteration: list[tuple[int, int]] = []
        self._open = False

    def _totals(self) -> tuple[int, int] | None:
        read = written = 0
        for process in self._processes:
            chars = _io_chars(process)
            if chars is None:
                return None
            read += chars[0]
            written += chars[1]
        return read, written

    def begin_iteration(self) -> None:
        """Close the running iteration (if any) and start counting a new one."""
        totals = self._totals()
        if totals is None:
            return
        if self._open and self._last is not None:
            self.per_iteration.append((totals[0] - self._last[0], totals[1] - self._last[1]))
        self._last = totals
        self._open = True

    def summary(self) -> dict[str, object]:
        """Median bytes to / from workers per iteration, including the running one."""
        samples = list(self.per_iteration)
        totals = self._totals()
        if self._open and totals is not None and self._last is not None:
            current = (totals[0] - self._last[0], totals[1] - self._last[1])
            if current != (0, 0):
                samples.append(current)
        if not samples:
            return {"bytes_to_workers": None, "bytes_from_workers": None, "iterations_measured": 0}
        to_workers, from_workers = np.median(np.array(samples, dtype=float), axis=0)
        return {
            "bytes_to_workers": float(to_workers),
            "bytes_from_workers": float(from_workers),
            "iterations_measured": len(samples),
        }


def alive(process: psutil.Process) -> bool:
    """Running (not exited, not a zombie waiting to be reaped)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_processes(
    processes: Sequence[psutil.Process], *, terminate_first: bool, grace: float = EXIT_GRACE_SECONDS
) -> None:
    """Make sure worker processes end: optionally SIGTERM at once, then wait, then SIGKILL.

    Processes are only signalled, never waited for with ``waitpid``: their pool
    reaps them, and reaping here would leave the pool waiting for a status it can no
    longer collect. psutil refuses to signal a pid that was reused by another process.
    """
    if terminate_first:
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.terminate()
    deadline = time.monotonic() + grace
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.02)
    for process in processes:
        if alive(process):
            with contextlib.suppress(psutil.Error):
                process.kill()
    deadline = time.monotonic() + grace
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.02)


# --------------------------------------------------------------------------------------
# Task deadlines and the watchdog that enforces them
# --------------------------------------------------------------------------------------

#: Environment variable that fixes the per-task deadline in seconds for a whole sweep.
TASK_TIMEOUT_ENV = "GMM_HARNESS_TASK_TIMEOUT"

#: The derived deadline is never shorter than this (seconds): a loaded machine can
#: stall a healthy worker for a while.
TASK_TIMEOUT_FLOOR = 10.0

#: The derived deadline is this many times the slowest of the recent pool calls.
TASK_TIMEOUT_FACTOR = 20.0

#: Pool calls remembered for the derived deadline.
TASK_TIMEOUT_WINDOW = 8

#: Deadline of the calls made before any has been measured (start-up, first pass).
FIRST_CALL_TIMEOUT = 600.0

#: Seconds between two looks of the watchdog.
WATCHDOG_INTERVAL = 0.1


def resolve_task_timeout(value: float | None) -> float | None:
    """A fixed deadline from the argument, else ``$GMM_HARNESS_TASK_TIMEOUT``; None
    means derived from measured calls.

    Raises
    ------
    InvalidParameterError
        For anything but a positive, finite number of seconds.
    """
    source = "task_timeout"
    if value is None:
        raw = os.environ.get(TASK_TIMEOUT_ENV, "").strip()
        if not raw:
            return None
        value, source = raw, f"${TASK_TIMEOUT_ENV}"  # type: ignore[assignment]
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not np.isfinite(seconds) or seconds <= 0:
        raise InvalidParameterError(f"{source} must be a positive number of seconds; got {value!r}")
    return seconds


class TaskDeadline:
    """How long one pool call (every task of one step) may take.

    Fixed when given; otherwise ``max(TASK_TIMEOUT_FLOOR, TASK_TIMEOUT_FACTOR x the
    slowest of the last TASK_TIMEOUT_WINDOW calls)``, and :data:`FIRST_CALL_TIMEOUT`
    before any call has been measured.
    """

    def __init__(self, fixed: float | None) -> None:
        self.fixed = fixed
        self._recent: list[float] = []

    def limit(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if not self._recent:
            return FIRST_CALL_TIMEOUT
        return max(TASK_TIMEOUT_FLOOR, TASK_TIMEOUT_FACTOR * max(self._recent))

    def record(self, seconds: float) -> None:
        self._recent = [*self._recent, float(seconds)][-TASK_TIMEOUT_WINDOW:]


class Watchdog:
    """A parent thread that kills workers stuck past the deadline of a pool call.

    A worker that stops without dying (SIGSTOP, a deadlock) never breaks its pool,
    so the parent would wait for ever. While a call is armed, the watchdog samples
    the workers' CPU time; past the deadline it names the stuck ones (stopped, or no
    CPU time gained during the last second; all that are left when it cannot tell)
    and kills them, which the pool reports as a dead worker at once.

    Parameters
    ----------
    processes : list of psutil.Process
        The pool's workers.
    """

    def __init__(self, processes: Sequence[psutil.Process]) -> None:
        self._processes = list(processes)
        self._lock = threading.Lock()
        self._armed_at: float | None = None
        self._limit = 0.0
        self._progress: dict[int, tuple[float, float]] = {}  # pid -> (cpu, when it grew)
        self.stuck: list[int] = []
        self.stuck_limit = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pool-watchdog", daemon=True)
        self._thread.start()

    def arm(self, limit: float) -> None:
        with self._lock:
            self._armed_at, self._limit = time.monotonic(), limit
            self._progress = {}

    def disarm(self) -> None:
        with self._lock:
            self._armed_at = None

    def stop(self) -> None:
        self._stop.set()

    def _cpu(self, process: psutil.Process) -> float | None:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)

    def _sample(self, now: float) -> None:
        for process in self._processes:
            cpu = self._cpu(process)
            if cpu is None:
                continue
            last = self._progress.get(process.pid)
            if last is None or cpu > last[0]:
                self._progress[process.pid] = (cpu, now)

    def _find_stuck(self, now: float) -> list[int]:
        stuck = []
        for process in self._processes:
            try:
                if process.status() == psutil.STATUS_STOPPED:
                    stuck.append(process.pid)
                    continue
            except psutil.Error:
                continue
            grew = self._progress.get(process.pid, (0.0, 0.0))[1]
            if now - grew >= 1.0:
                stuck.append(process.pid)
        return stuck or [p.pid for p in self._processes if alive(p)]

    def _loop(self) -> None:
        while not self._stop.wait(WATCHDOG_INTERVAL):
            with self._lock:
                if self._armed_at is None:
                    continue
                now = time.monotonic()
                self._sample(now)
                if now - self._armed_at < self._limit:
                    continue
                self.stuck, self.stuck_limit = self._find_stuck(now), self._limit
                self._armed_at = None
            for process in self._processes:
                if process.pid in self.stuck:
                    with contextlib.suppress(psutil.Error):
                        process.kill()

    def describe(self) -> str | None:
        """What the watchdog did, for the error message; None when it did nothing."""
        if not self.stuck:
            return None
        return (
            f"worker process(es) {self.stuck} did not finish within the task deadline of "
            f"{self.stuck_limit:.3g} s (stopped or stuck; set task_timeout or "
            f"${TASK_TIMEOUT_ENV} to change it) and were killed"
        )


# --------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------


class InterruptLatch:
    """Remembers a Ctrl-C, so that one swallowed on its way still stops the fit.

    Python raises ``KeyboardInterrupt`` wherever the main thread happens to be; when
    that is a finalizer or a weakref callback (shared-memory mappings have them), the
    exception is printed as "ignored" and the fit goes on. While installed, the
    SIGINT handler also sets a flag that every pool call checks (:meth:`check`).
    Installed only from the main thread and only over a callable handler, which it
    still calls.
    """

    def __init__(self) -> None:
        self.hit = False
        self._previous: Callable | None = None
        self._handler = self._handle

    def _handle(self, signum: int, frame: object) -> None:
        self.hit = True
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGINT)
        if not callable(current) or current is self._handler:
            return
        self._previous = current
        signal.signal(signal.SIGINT, self._handler)

    def arm(self) -> None:
        """Install for a new ``prepare``: a Ctrl-C from before it was already acted on."""
        self.hit = False
        self.install()

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError, TypeError):  # not the main thread, or at exit
            if signal.getsignal(signal.SIGINT) is self._handler and self._previous is not None:
                signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a Ctrl-C came since the last check."""
        if self.hit:
            self.hit = False
            raise KeyboardInterrupt
