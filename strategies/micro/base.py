"""The smaller interface of the micro-problems (``summarize``, ``pairwise``).

Life cycle, as for the EM strategies but with one timed call::

    with SomeMicroStrategy(workers=2) as strategy:   # nothing started yet
        strategy.prepare(x)                          # start pools, place data (timed apart)
        answer = strategy.run()                      # the timed work, repeatable
    # close(): every process, thread pool, shared-memory segment and file released

``run`` returns the problem's answer (``(n, sum)`` for summarize, a float for
pairwise, see :mod:`harness.model.problems`). A parallel strategy splits the work into
:attr:`MicroStrategy.tasks` equal tasks, one per worker (:func:`task_bounds`), so that
the work per task is the problem's work over ``tasks``: the x axis of the "overhead
against work" chart. Nothing here times anything or writes files.

Each family module (``python_loops``, ``cython_serial``, ``openmp``,
``joblib_threads``, ``multiprocessing_pool``, ``joblib_processes``) defines one class per
problem, registered in ``strategies/__init__.py`` as ``<problem>-<family>``.
"""

from __future__ import annotations

import abc
import weakref
from types import ModuleType
from typing import ClassVar

import numpy as np

import kernels
from harness.model.errors import InvalidParameterError
from harness.model.problems import check_vector
from strategies.base import Lifecycle

#: One line per registered micro-strategy for ``python -m harness strategies``:
#: ``{family: {problem: description}}``, the problems in registry order. The
#: ``python_loops`` family writes its classes out (their ``run`` differs per problem).
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "cython": {
        "summarize": "typed Cython sum, one thread, nogil",
        "pairwise": "typed Cython O(n^2) pairwise sum, one thread, nogil",
    },
    "openmp": {
        "summarize": "OpenMP prange, one block per thread, reduction(+)",
        "pairwise": "OpenMP prange over row blocks, reduction(+)",
    },
    "joblib-threads": {
        "summarize": "joblib threading backend, one task per worker, nogil Cython sum",
        "pairwise": "joblib threading backend, one row block per worker, nogil Cython",
    },
    "multiprocessing": {
        "summarize": "multiprocessing.Pool, x in shared memory once, one chunk per worker",
        "pairwise": "multiprocessing.Pool, x in shared memory once, one row block per worker",
    },
    "joblib-processes": {
        "summarize": "joblib loky processes, x memmapped once, one chunk per worker",
        "pairwise": "joblib loky processes, x memmapped once, one row block per worker",
    },
}


def task_bounds(n: int, tasks: int) -> list[tuple[int, int]]:
    """``tasks`` contiguous, near-equal ranges covering ``[0, n)`` (fewer if n < tasks).

    For pairwise the ranges are of rows; every row costs n pair operations, so equal
    row counts are equal work.
    """
    tasks = max(1, min(int(tasks), int(n)))
    if n == 0:
        return []
    return [(i * n // tasks, (i + 1) * n // tasks) for i in range(tasks)]


class MicroStrategy(Lifecycle):
    """Base class of the micro-problem strategies (``workers`` as for ``Strategy``).

    Class attributes (capabilities)
    -------------------------------
    name : str
        Registry name, ``<problem>-<family>``.
    problem : str
        The problem solved (a key of :data:`harness.model.problems.PROBLEMS`).
    kind, releases_gil, needs_compiled, parallel, description
        As for :class:`strategies.base.Strategy`.
    uses_openmp : bool
        Needs the kernels' OpenMP regions (unavailable without OpenMP).
    has_fused_iteration, whole_fit : bool
        Always False (kept so listings and the measurement treat both interfaces alike).
    """

    uses_openmp: ClassVar[bool] = False
    #: Family classes only: the registry-name ending, a key of :data:`DESCRIPTIONS`,
    #: from which :func:`per_problem` makes the registered classes.
    family: ClassVar[str] = ""
    data_name: ClassVar[str] = "x"

    _check = staticmethod(check_vector)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this strategy cannot run here, or None; cheap, never raises."""
        if not cls.needs_compiled:
            return None
        reason = kernels.micro_unavailable_reason()
        if reason is None and cls.uses_openmp:
            reason = kernels.load_micro().openmp_unavailable_reason()
        return reason

    def prepare(self, x: np.ndarray) -> None:
        """Validate ``x`` and place it where the workers read it; on failure, close.

        Parameters
        ----------
        x : array_like, shape (n,)
            Converted to C-contiguous float64 if needed; n = 0 is allowed.
        """
        try:
            super().prepare(x)
        except BaseException:
            self.close()
            raise

    @property
    def x(self) -> np.ndarray:
        """The prepared data, shape (n,), float64."""
        return self._prepared()

    @property
    def tasks(self) -> int:
        """Tasks one :meth:`run` splits the work into (1 for serial strategies)."""
        return len(task_bounds(self.x.shape[0], self.workers)) if self.parallel else 1

    @abc.abstractmethod
    def run(self) -> object:
        """The problem's answer for the prepared data (the timed call)."""

    def runtime_info(self) -> dict[str, object]:
        """What ran: tasks per run and the work unit count per task, for results."""
        if self._data is None:
            return {}
        kernel = "python" if not self.needs_compiled else "openmp" if self.uses_openmp else "cython"
        return {"problem": self.problem, "tasks_per_run": self.tasks, "kernel": kernel}


class CompiledMicroStrategy(MicroStrategy):
    """A micro-strategy calling :mod:`kernels.micro_kernels` (not registered)."""

    needs_compiled = True
    releases_gil = True

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._kernels: ModuleType | None = None

    def _setup(self, x: np.ndarray) -> None:
        self._kernels = kernels.load_micro()

    @property
    def kernels(self) -> ModuleType:
        if self._kernels is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(x) first")
        return self._kernels


def combine(problem: str, n: int, partials: list[float]) -> object:
    """The answer from per-task partial sums, added in task order."""
    total = 0.0
    for value in partials:
        total += value
    return (n, total) if problem == "summarize" else total


def serial_kernel(kernels_module: ModuleType, problem: str):
    """The one-thread kernel ``f(x, start, stop) -> float`` of a problem."""
    if problem == "summarize":
        return kernels_module.summarize_range
    if problem == "pairwise":
        return kernels_module.pairwise_rows
    raise InvalidParameterError(f"no micro kernel for problem {problem!r}")


class ProcessMicroStrategy(CompiledMicroStrategy):
    """A micro-strategy whose workers are processes (not registered).

    What a prepared strategy owns (pool, shared data) lives in a resources object that
    :meth:`_release` frees on ``close``, at garbage collection and at exit, so nothing
    is left in /dev/shm. Subclasses give the resources type, the release, how one run's
    tasks are mapped over the pool and what to add to :meth:`runtime_info`.
    """

    kind = "processes"
    parallel = True
    releases_gil = False

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._resources = self._new_resources()
        # A function of the resources only: holding self would keep it alive forever.
        self._finalizer = weakref.finalize(self, type(self)._release, self._resources)
        self._pids: list[int] = []

    @staticmethod
    @abc.abstractmethod
    def _new_resources() -> object:
        """An empty resources object with a ``pool`` attribute (None until prepared)."""

    @staticmethod
    @abc.abstractmethod
    def _release(resources: object) -> None:
        """Free everything in ``resources``; safe to call more than once."""

    @abc.abstractmethod
    def _map(self, pool: object, bounds: list[tuple[int, int]]) -> list[float]:
        """Run one task per range of ``bounds`` on ``pool``; the partials in task order."""

    def _pool_info(self) -> dict[str, object]:
        """What :meth:`runtime_info` adds ahead of ``worker_pids``."""
        return {}

    def _teardown(self) -> None:
        self._release(self._resources)

    def run(self) -> object:
        pool = self._resources.pool
        n = self.x.shape[0]
        if pool is None:
            raise RuntimeError(f"strategy {self.name!r}: the pool is closed")
        return combine(self.problem, n, list(self._map(pool, task_bounds(n, self.workers))))

    def runtime_info(self) -> dict[str, object]:
        info = super().runtime_info()
        if info:
            info.update(self._pool_info())
            info["worker_pids"] = list(self._pids)
        return info


def per_problem(family: type[MicroStrategy]) -> tuple[type[MicroStrategy], ...]:
    """One registered class per problem of a family, from the family's class attributes.

    ``DESCRIPTIONS[family.family]`` maps each problem to its description, in the order
    the classes are returned; ``family.family`` is the registry-name ending. The classes are
    ``<Problem><Stem>`` (the stem: the family class's name without ``_`` and ``Micro``),
    registered as ``<problem>-<family>``, and belong to the family's module, so they
    pickle and are found by the registry as classes written out are.
    """
    stem = family.__name__.strip("_").removesuffix("Micro")
    classes = []
    for problem, description in DESCRIPTIONS[family.family].items():
        class_name = f"{problem.capitalize()}{stem}"
        attributes = {
            "name": f"{problem}-{family.family}",
            "problem": problem,
            "description": description,
            "__module__": family.__module__,
            "__qualname__": class_name,
        }
        classes.append(type(class_name, (family,), attributes))
    return tuple(classes)
