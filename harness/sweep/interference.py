"""Interference: how much of the machine other programs took while each value was timed.

For every timed value the measurement process records two shares of that value's
wall-clock window (the window of one pyperf value: every loop of the timed call):

``foreign_cpu``
    CPU time the whole machine spent busy (``/proc/stat``: user, nice, system, irq,
    softirq and steal, summed over the CPUs this process may run on) minus the CPU
    time of the measured process tree (this process with all its threads, its live
    descendants such as pool workers, and the children it reaped), as a fraction of
    the capacity of those CPUs over the window (CPUs x wall seconds), clipped to
    [0, 1]. Steal counts as foreign: a hypervisor giving the CPU to another guest
    takes it from the measurement just as a local program does.
``tree_cpu``
    The measured tree's own CPU time over the wall time, divided by the worker count:
    a 2-worker strategy that kept 1.1 cores busy has ``tree_cpu`` 0.55.

The counters are read by a pyperf *hook* (:data:`HOOK`, ``--hook gmm-interference``):
pyperf enters it right before each call of the timed function and leaves it right
after, so the reads happen outside the timed window (the timed function starts and
stops its own clock inside), and the same hook runs in pyperf's worker processes in
the ``--rigorous`` mode. The hook leaves one number per value in the run's pyperf
metadata (:data:`METADATA_KEYS`), so the values and their interference travel
together in the pyperf JSON; :func:`run_interference` reads them back.

Resolution: ``/proc/stat`` counts in clock ticks (usually 10 ms per CPU), so a single
short value's ``foreign_cpu`` carries an error of a few ticks over its capacity; the
decisions of :mod:`harness.sweep.rounds` use the median over a process's values.
Reading the counters costs well under a millisecond plus a walk of the tree's
``/proc/<pid>/task/*/children`` lists.

Only the standard library (psutil when the kernel does not list children); nothing of
strategies, timing or result files.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: ``/proc/stat`` CPU fields counted as busy: user, nice, system, irq, softirq, steal
#: (guest time is already inside user and nice; idle and iowait are not busy).
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)

HOOK_NAME = "gmm-interference"
#: pyperf run metadata written by the hook: one space-separated number per value.
METADATA_KEYS = {
    "foreign_cpu": "gmm_foreign_cpu",
    "tree_cpu": "gmm_tree_cpu",
    "window": "gmm_window_seconds",
}

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_seconds(stat_text: str, cpus: Iterable[int] | None = None) -> float:
    """Busy CPU seconds in a ``/proc/stat`` text, over ``cpus`` (None: every CPU).

    Parameters
    ----------
    stat_text : str
        The content of ``/proc/stat``.
    cpus : iterable of int, optional
        CPU numbers to sum (the ``cpuN`` lines); None sums the aggregate ``cpu`` line.

    Returns
    -------
    float
        Seconds (clock ticks / ``SC_CLK_TCK``).
    """
    wanted = None if cpus is None else {f"cpu{cpu}" for cpu in cpus}
    total = 0
    for line in stat_text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        if (wanted is None and name != "cpu") or (wanted is not None and name not in wanted):
            continue
        numbers = [int(field) for field in fields]
        total += sum(numbers[i] for i in BUSY_FIELDS if i < len(numbers))
    return total / _TICKS


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` from ``/proc/<pid>/task/*/children``."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(text) for text in _read(f"/proc/{pid}/task/{task}/children").split())
        except OSError:
            continue
    return found


_CHILDREN_LISTED = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, their children, ...)."""
    if not _CHILDREN_LISTED:
        try:
            import psutil

            return [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except Exception:  # psutil missing or the process gone: no children seen
            return []
    found, frontier = [], [pid]
    while frontier:
        children = [child for parent in frontier for child in _children(parent)]
        found.extend(children)
        frontier = children
    return found


def _process_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process, from ``/proc/<pid>/stat``."""
    try:
        text = _read(f"/proc/{pid}/stat")
    except OSError:
        return 0.0  # exited between listing and reading: its time went to its parent
    fields = text[text.rindex(")") + 2 :].split()
    # after the command name: state is field 3, utime..cstime are fields 14..17
    return sum(int(value) for value in fields[11:15]) / _TICKS


def tree_seconds() -> float:
    """CPU seconds of this process (all threads), its reaped children and live descendants."""
    times = os.times()
    own = time.process_time() + times.children_user + times.children_system
    return own + sum(_process_seconds(pid) for pid in descendants(os.getpid()))


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class Sample:
    """One reading: monotonic wall time, machine busy seconds, measured-tree seconds."""

    wall: float
    busy: float
    tree: float


def take_sample(cpus: Sequence[int]) -> Sample:
    """Read the counters; the tree is read outermost (see :class:`InterferenceHook`)."""
    tree = tree_seconds()
    busy = busy_seconds(_read("/proc/stat"), cpus)
    return Sample(time.perf_counter(), busy, tree)


def take_closing_sample(cpus: Sequence[int]) -> Sample:
    wall = time.perf_counter()
    busy = busy_seconds(_read("/proc/stat"), cpus)
    return Sample(wall, busy, tree_seconds())


def shares(before: Sample, after: Sample, cpus: int, workers: int) -> tuple[float, float, float]:
    """``(foreign_cpu, tree_cpu, window_seconds)`` of the interval between two samples.

    Parameters
    ----------
    before, after : Sample
    cpus : int
        CPUs whose busy time the samples sum (the capacity is ``cpus x wall``).
    workers : int
        The measured configuration's worker count (``tree_cpu`` is per worker).

    Returns
    -------
    foreign_cpu : float
        In [0, 1]; NaN for an empty interval.
    tree_cpu : float
        >= 0; NaN for an empty interval.
    window_seconds : float
    """
    wall = after.wall - before.wall
    if not wall > 0:
        return math.nan, math.nan, 0.0
    tree = max(after.tree - before.tree, 0.0)
    foreign = (after.busy - before.busy) - tree
    return (
        min(max(foreign / (cpus * wall), 0.0), 1.0),
        tree / wall / max(int(workers), 1),
        wall,
    )


class InterferenceHook:
    """pyperf hook: counters read around every call of the timed function.

    pyperf creates one instance per batch of values (warm-ups, then values) and calls
    :meth:`teardown` with the run's metadata after each batch, so the metadata ends
    with one entry per kept value. The counters are read in an order that keeps the
    measured tree's reads outermost: the reads' own CPU time is then subtracted rather
    than counted as foreign.
    """

    #: Worker count of the configuration being measured (set by the measurement process).
    workers = 1

    def __init__(self) -> None:
        self.cpus = allowed_cpus()
        self.values: list[tuple[float, float, float]] = []
        self._before: Sample | None = None

    def __enter__(self) -> InterferenceHook:
        self._before = take_sample(self.cpus)
        return self

    def __exit__(self, *exc: object) -> None:
        after = take_closing_sample(self.cpus)
        if self._before is not None:
            self.values.append(shares(self._before, after, len(self.cpus), self.workers))
        self._before = None

    def teardown(self, metadata: dict[str, Any]) -> None:
        if not self.values:
            return
        for position, key in enumerate(METADATA_KEYS.values()):
            metadata[key] = " ".join(_number(value[position]) for value in self.values)


def _number(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.5g}"


class _HookEntry:
    """What pyperf's ``Runner(hooks=...)`` expects: an entry point's name and ``load()``."""

    name = HOOK_NAME

    def load(self) -> type[InterferenceHook]:
        return InterferenceHook


#: Pass to ``pyperf.Runner(hooks=[HOOK])`` and add ``--hook gmm-interference`` to argv.
HOOK = _HookEntry()


def run_interference(metadata: dict[str, Any], values: int) -> list[dict[str, float]]:
    """Per-value ``foreign_cpu``, ``tree_cpu`` and ``window`` from a pyperf run's metadata.

    Returns ``values`` dicts; NaN where the run carries no (or a mismatched) record,
    e.g. a run written before the hook existed.
    """
    columns: dict[str, list[float]] = {}
    for name, key in METADATA_KEYS.items():
        text = str(metadata.get(key, ""))
        numbers = [float(item) for item in text.split()] if text else []
        columns[name] = numbers if len(numbers) == values else [math.nan] * values
    return [{name: columns[name][i] for name in METADATA_KEYS} for i in range(values)]


__all__ = [
    "HOOK",
    "HOOK_NAME",
    "METADATA_KEYS",
    "InterferenceHook",
    "Sample",
    "busy_seconds",
    "descendants",
    "run_interference",
    "shares",
    "tree_seconds",
]
