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
from types import ModuleType
from typing import ClassVar

import numpy as np

import kernels
from harness.model.errors import InvalidParameterError
from harness.model.problems import check_vector
from harness.model.validation import check_workers
from strategies.base import Kind


def task_bounds(n: int, tasks: int) -> list[tuple[int, int]]:
    """``tasks`` contiguous, near-equal ranges covering ``[0, n)`` (fewer if n < tasks).

    For pairwise the ranges are of rows; every row costs n pair operations, so equal
    row counts are equal work.
    """
    tasks = max(1, min(int(tasks), int(n)))
    if n == 0:
        return []
    return [(i * n // tasks, (i + 1) * n // tasks) for i in range(tasks)]


class MicroStrategy(abc.ABC):
    """Base class of the micro-problem strategies.

    Parameters
    ----------
    workers : int
        Threads or processes the strategy uses; honoured exactly.

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

    name: ClassVar[str] = ""
    problem: ClassVar[str] = ""
    kind: ClassVar[Kind] = "serial"
    releases_gil: ClassVar[bool] = False
    needs_compiled: ClassVar[bool] = False
    parallel: ClassVar[bool] = False
    uses_openmp: ClassVar[bool] = False
    has_fused_iteration: ClassVar[bool] = False
    whole_fit: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, workers: int = 1) -> None:
        self.workers = check_workers(workers)
        self._x: np.ndarray | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this strategy cannot run here, or None; cheap, never raises."""
        if not cls.needs_compiled:
            return None
        reason = kernels.micro_unavailable_reason()
        if reason is None and cls.uses_openmp:
            reason = kernels.load_micro().openmp_unavailable_reason()
        return reason

    # ---- life cycle -----------------------------------------------------------------

    def prepare(self, x: np.ndarray) -> None:
        """Validate ``x`` and place it where the workers read it.

        Parameters
        ----------
        x : array_like, shape (n,)
            Converted to C-contiguous float64 if needed; n = 0 is allowed.
        """
        self.close()
        self._x = check_vector(x)
        try:
            self._setup(self._x)
        except BaseException:
            self.close()
            raise

    def _setup(self, x: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """Hook: start pools, share data. ``x`` is already validated."""

    @property
    def x(self) -> np.ndarray:
        """The prepared data, shape (n,), float64."""
        if self._x is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(x) first")
        return self._x

    @property
    def tasks(self) -> int:
        """Tasks one :meth:`run` splits the work into (1 for serial strategies)."""
        return len(task_bounds(self.x.shape[0], self.workers)) if self.parallel else 1

    @abc.abstractmethod
    def run(self) -> object:
        """The problem's answer for the prepared data (the timed call)."""

    def blas_threads(self) -> int:
        """BLAS threads while this runs: 1 (nothing here uses BLAS; no oversubscription)."""
        return 1

    def runtime_info(self) -> dict[str, object]:
        """What ran: tasks per run and the work unit count per task, for results."""
        if self._x is None:
            return {}
        kernel = "python" if not self.needs_compiled else "openmp" if self.uses_openmp else "cython"
        return {"problem": self.problem, "tasks_per_run": self.tasks, "kernel": kernel}

    def close(self) -> None:
        """Release every resource; safe to call more than once."""
        self._teardown()

    def _teardown(self) -> None:  # noqa: B027 (optional hook)
        """Hook: stop pools, unlink shared memory."""

    def __enter__(self) -> MicroStrategy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


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
