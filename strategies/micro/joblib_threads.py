"""``summarize-joblib-threads`` and ``pairwise-joblib-threads``: threads over nogil code.

One ``joblib.Parallel(backend="threading", n_jobs=workers)`` is entered in ``prepare``
and reused by every ``run``; each run hands it one task per worker (a contiguous range
of elements or rows), each task calls the one-thread kernel, which releases the GIL
for the whole range. The partial sums are added in task order.

What joblib adds on top of the work: dispatch through its thread pool, and its result
polling (``Parallel._retrieve`` sleeps a fixed interval while the next result is pending), which
small tasks feel. With ``workers=1`` joblib runs the task in the calling thread.
"""

from __future__ import annotations

import numpy as np

from strategies.micro.base import (
    CompiledMicroStrategy,
    combine,
    per_problem,
    serial_kernel,
    task_bounds,
)


class _JoblibThreadsMicro(CompiledMicroStrategy):
    family = "joblib-threads"
    kind = "threads"
    parallel = True

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._parallel = None

    def _setup(self, x: np.ndarray) -> None:
        from joblib import Parallel

        super()._setup(x)
        self._parallel = Parallel(n_jobs=self.workers, backend="threading")
        self._parallel.__enter__()

    def _teardown(self) -> None:
        parallel, self._parallel = self._parallel, None
        if parallel is not None:
            parallel.__exit__(None, None, None)

    def run(self) -> object:
        from joblib import delayed

        x = self.x
        kernel = serial_kernel(self.kernels, self.problem)
        bounds = task_bounds(x.shape[0], self.workers)
        partials = self._parallel(delayed(kernel)(x, start, stop) for start, stop in bounds)
        return combine(self.problem, x.shape[0], list(partials))


SummarizeJoblibThreads, PairwiseJoblibThreads = per_problem(_JoblibThreadsMicro)
