"""``joblib-threads``: joblib's threading backend dispatching chunks to the nogil kernels.

The portable alternative to OpenMP the seed notebook points to (OpenMP is not always
available, e.g. with some Windows or macOS compilers): plain Python threads, each
calling the compiled kernels on its own slice of the points with one OpenMP thread.
The kernels release the GIL for the whole call, so the threads run in parallel; what
remains under the GIL is dispatch and the final addition of the partial sums.

One ``joblib.Parallel(backend="threading", n_jobs=workers)`` is created in
``prepare`` and entered as a context manager, so its thread pool is reused by every
iteration of the fit and shut down by ``close()``; nothing is started per iteration.

What limits it at these sizes is not the GIL but joblib's result retrieval:
``Parallel`` returns results in order and, while the next one is pending, its
``_retrieve`` loop sleeps a fixed interval (joblib 1.3-1.6) before looking again, so a
call whose work is a few such intervals long returns up to one interval late (see
``python -m harness bench-compiled`` for the figures on this machine); with one
worker joblib runs the tasks inline and never sleeps. The effect fades as
iterations lengthen.

The points are split into ``max(16, 4 * workers)`` contiguous tasks (enough for the
pool to balance uneven progress) and the partial sums of the tasks are added in task
order, so results are identical for any worker count up to 4 and agree to rounding
beyond. ``runtime_info()["threads_used"]`` counts the distinct threads that ran tasks
during the fit (at most ``workers``).
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from harness.model.gmm import DerivedParams, SufficientStats
from strategies.compiled import CompiledStrategy

#: Tasks per call are max(MIN_TASKS, TASKS_PER_WORKER * workers): enough to keep a
#: few threads evenly busy, few enough that dispatching them stays small next to the work.
MIN_TASKS = 16
TASKS_PER_WORKER = 4


class JoblibThreadsStrategy(CompiledStrategy):
    name = "joblib-threads"
    kind = "threads"
    parallel = True
    description = "joblib threading backend over chunks, nogil kernels, one pool per fit"

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._parallel = None
        self._bounds: list[tuple[int, int]] = []
        self._thread_ids: set[int] = set()

    def _setup(self, X: np.ndarray) -> None:
        from joblib import Parallel

        super()._setup(X)
        n = X.shape[0]
        n_tasks = min(n, max(MIN_TASKS, TASKS_PER_WORKER * self.workers))
        edges = np.linspace(0, n, n_tasks + 1).round().astype(np.int64)
        self._bounds = [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]
        self._thread_ids = set()
        self._parallel = Parallel(n_jobs=self.workers, backend="threading")
        self._parallel.__enter__()

    def _teardown(self) -> None:
        super()._teardown()
        if self._parallel is not None:
            self._parallel.__exit__(None, None, None)
            self._parallel = None

    def _run(self, task, *args) -> list:
        """``task(start, stop, *args)`` for every slice on the pool, in slice order."""
        from joblib import delayed

        results = self._parallel(delayed(task)(start, stop, *args) for start, stop in self._bounds)
        self._thread_ids.update(thread_id for thread_id, *_ in results)
        self._threads_used = len(self._thread_ids)
        return [rest for _, *rest in results]

    # ---- tasks (run on pool threads; the kernels release the GIL) ----------------------

    def _e_step_task(
        self, start: int, stop: int, derived: DerivedParams, log_resp: np.ndarray
    ) -> tuple[int, float]:
        loglik, _ = self._e_step_on(self.X[start:stop], derived, log_resp[start:stop], 1)
        return threading.get_ident(), loglik

    def _m_step_task(
        self, start: int, stop: int, log_resp: np.ndarray, shift: np.ndarray
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        k, d = shift.shape
        mass, shifted_sum, shifted_outer = self._empty_sums(k, d)
        self.kernels.m_step(
            self.X[start:stop], log_resp[start:stop], shift, mass, shifted_sum, shifted_outer, 1
        )
        return threading.get_ident(), mass, shifted_sum, shifted_outer

    def _fused_task(
        self, start: int, stop: int, derived: DerivedParams, shift: np.ndarray
    ) -> tuple[int, float, np.ndarray, np.ndarray, np.ndarray]:
        k, d = shift.shape
        mass, shifted_sum, shifted_outer = self._empty_sums(k, d)
        sums = mass, shifted_sum, shifted_outer
        loglik, _ = self._fused_on(self.X[start:stop], derived, shift, sums, 1)
        return threading.get_ident(), loglik, mass, shifted_sum, shifted_outer

    # ---- the interface ------------------------------------------------------------------

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        self._check_derived(derived)
        n = self.X.shape[0]
        log_resp = np.empty((n, derived.n_components))
        parts = self._run(self._e_step_task, derived, log_resp)
        self._shift = np.ascontiguousarray(derived.means)
        return log_resp, _ordered_sum(loglik for (loglik,) in parts) / n

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        log_resp = self._log_resp_array(log_resp)
        shift = self._shift_for(log_resp.shape[1])
        parts = self._run(self._m_step_task, log_resp, shift)
        mass, shifted_sum, shifted_outer = (
            _ordered_sum(column) for column in zip(*parts, strict=True)
        )
        return SufficientStats.from_shifted_sums(
            mass, shifted_sum, shifted_outer, shift, self.X.shape[0]
        )

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        self._check_derived(derived)
        shift = np.ascontiguousarray(derived.means)
        parts = self._run(self._fused_task, derived, shift)
        loglik, mass, shifted_sum, shifted_outer = (
            _ordered_sum(col) for col in zip(*parts, strict=True)
        )
        self._shift = shift
        n = self.X.shape[0]
        stats = SufficientStats.from_shifted_sums(mass, shifted_sum, shifted_outer, shift, n)
        return stats, loglik / n

    def runtime_info(self) -> dict[str, object]:
        info = super().runtime_info()
        if info:
            info["openmp"] = False
            info["pool_threads"] = self.workers
            # joblib runs n_jobs=1 in the calling thread, with no pool (its own rule)
            info["inline"] = self.workers == 1
            info["tasks_per_call"] = len(self._bounds)
            info["chunk_size"] = int(max(stop - start for start, stop in self._bounds))
        return info


def _ordered_sum(values):
    """Sum in the given order (partial sums from the tasks, first to last)."""
    iterator = iter(values)
    total = next(iterator)
    total = total.copy() if isinstance(total, np.ndarray) else total
    for value in iterator:
        total = total + value
    return total
