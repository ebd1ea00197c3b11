"""``numba``: the ``openmp`` strategy's algorithm, written in Numba instead of Cython.

What a user who will not write Cython gets. ``@njit(parallel=True)`` kernels
(:mod:`kernels.numba_em`) run a ``prange`` over the same fixed chunk grid as
``openmp``; each chunk writes its own row of partial sums, and the rows are added in
chunk order after the loop, so the results are bitwise identical for any thread count.
The thread count is set with ``numba.set_num_threads`` before every kernel call (it is
per calling thread); Numba's threading layer (``omp``, ``tbb`` or ``workqueue``) is
recorded in :meth:`runtime_info`.

Compilation happens in ``prepare`` (by calling every kernel once on a few points), so
it is timed with start-up and never inside an iteration; ``runtime_info`` says how long
it took (``compile_seconds``) and whether the machine code came from Numba's on-disk
cache or was compiled (``compile_from``: ``cached`` or ``cold``); importing Numba is
recorded apart (``numba_import_seconds``). The cache is kept per compile-option set
(see :func:`kernels.numba_em.build`), so a changed option never serves stale code.
``GMM_HARNESS_NUMBA_FASTMATH=1`` compiles with the fast-math flags that keep exact
rounding, for experiments; results record it.

May not touch: timing, files (other than Numba's cache), other strategies.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from harness.model.errors import InvalidParameterError
from harness.model.gmm import DerivedParams, SufficientStats
from harness.model.threads import usable_cores
from strategies.base import ShiftedSumsStrategy, find_reason

#: Environment variable: ``1`` compiles the kernels with (rounding-safe) fast-math flags.
FASTMATH_ENV = "GMM_HARNESS_NUMBA_FASTMATH"

_INSTALL_HINT = 'install it with `pip install -e ".[numba]"` (or `make install`)'


def _options_from_env():
    from kernels.numba_em import Options

    return Options(fastmath=os.environ.get(FASTMATH_ENV, "").strip() == "1")


def _chunk_rows(n: int, d: int, k: int) -> int:
    """The ``openmp`` chunk grid: the compiled kernels' own function when they are
    built, else the Numba module's mirror of it (a test checks the two agree)."""
    try:
        from kernels import gmm_kernels
    except ImportError:
        from kernels.numba_em import chunk_rows

        return chunk_rows(n, d, k)
    return int(gmm_kernels.chunk_rows(n, d, k))


class NumbaStrategy(ShiftedSumsStrategy):
    name = "numba"
    kind = "threads"
    parallel = True
    description = "Numba @njit(parallel=True) prange over the openmp chunk grid, fused pass"

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._compiled = None
        self._compile_seconds = 0.0
        self._import_seconds = 0.0
        self._compile_source = ""
        self._threading_layer = ""
        self._blas_threads = 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return find_reason("numba", f"numba is not installed; {_INSTALL_HINT}")

    # ---- life cycle -----------------------------------------------------------------

    def _setup(self, X: np.ndarray) -> None:
        # Numba starts at most NUMBA_NUM_THREADS threads, fixed when its pool starts; an
        # oversubscribed request (allowed when asked for) needs it raised first.
        wanted = max(self.workers, usable_cores())
        if "numba" not in sys.modules:
            current = int(os.environ.get("NUMBA_NUM_THREADS", "0") or 0)
            if current < wanted:
                os.environ["NUMBA_NUM_THREADS"] = str(wanted)
        began = time.perf_counter()
        import numba

        from kernels import numba_em

        self._import_seconds = time.perf_counter() - began
        if self.workers > numba.config.NUMBA_NUM_THREADS:
            raise InvalidParameterError(
                f"numba can run at most {numba.config.NUMBA_NUM_THREADS} threads in this "
                f"process (NUMBA_NUM_THREADS); {self.workers} were requested"
            )
        self._data_mean = X.mean(axis=0)
        self._shift = None
        started = time.perf_counter()
        compiled = numba_em.build(_options_from_env())
        self._compile_all(compiled, X.shape[1])
        self._compile_seconds = time.perf_counter() - started
        hits, misses = numba_em.cache_stats(compiled)
        # "cached": every kernel was loaded from Numba's disk cache; "cold": some compiled.
        self._compile_source = "cached" if hits and not misses else "cold"
        self._compiled = compiled
        self._threading_layer = str(numba.threading_layer())
        from strategies.compiled import observed_blas_threads

        self._blas_threads = observed_blas_threads()

    def _compile_all(self, compiled, d: int) -> None:
        """Call every kernel once on a few points with the real argument types."""
        import numba

        numba.set_num_threads(self.workers)
        k, rows = 1, 8
        X = np.zeros((rows, d))
        log_norm = np.zeros(k)
        means = np.zeros((k, d))
        prec = np.ascontiguousarray(np.broadcast_to(np.eye(d), (k, d, d)))
        row_size = 1 + k * (1 + d + d * (d + 1) // 2)
        partials = np.empty((1, row_size))
        compiled.fused_chunks(X, log_norm, means, prec, means, rows, 32, partials)
        log_resp = np.empty((rows, k))
        compiled.e_step_chunks(X, log_norm, means, prec, rows, 32, log_resp, np.empty((1, 1)))
        compiled.m_step_chunks(X, log_resp, means, rows, 32, partials)
        compiled.sum_rows(partials, np.empty(row_size))

    @property
    def compiled(self):
        if self._compiled is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(X) first")
        return self._compiled

    def _grid(self, k: int) -> tuple[int, int, int]:
        """(rows per chunk, rows per block, chunks) for the prepared data and k."""
        from kernels.numba_em import block_rows

        n, d = self.X.shape
        rows = _chunk_rows(n, d, k)
        return rows, block_rows(d, k), (n + rows - 1) // rows

    def _threads(self) -> None:
        import numba

        numba.set_num_threads(self.workers)

    # ---- the interface ------------------------------------------------------------------

    def _statistics(self, partials: np.ndarray, k: int, shift: np.ndarray):
        from kernels.numba_em import unpack_sums

        total = np.empty(partials.shape[1])
        self.compiled.sum_rows(partials, total)
        mass, shifted_sum, shifted_outer = unpack_sums(total, k, self.X.shape[1])
        stats = SufficientStats.from_shifted_sums(
            mass, shifted_sum, shifted_outer, shift, self.X.shape[0]
        )
        return stats, float(total[0])

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        self._check_derived(derived)
        X = self.X
        k, d = derived.n_components, X.shape[1]
        rows, block, chunks = self._grid(k)
        shift = np.ascontiguousarray(derived.means)
        partials = np.empty((chunks, 1 + k * (1 + d + d * (d + 1) // 2)))
        self._threads()
        log_norm, means, precision = derived.kernel_arrays()
        self.compiled.fused_chunks(X, log_norm, means, precision, shift, rows, block, partials)
        self._shift = shift
        stats, loglik_sum = self._statistics(partials, k, shift)
        return stats, loglik_sum / X.shape[0]

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        self._check_derived(derived)
        X = self.X
        k = derived.n_components
        rows, block, chunks = self._grid(k)
        log_resp = np.empty((X.shape[0], k))
        partials = np.empty((chunks, 1))
        self._threads()
        model = derived.kernel_arrays()
        self.compiled.e_step_chunks(X, *model, rows, block, log_resp, partials)
        total = np.empty(1)
        self.compiled.sum_rows(partials, total)
        self._shift = np.ascontiguousarray(derived.means)
        return log_resp, float(total[0]) / X.shape[0]

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        X = self.X
        log_resp = self._log_resp_array(log_resp)
        k, d = log_resp.shape[1], X.shape[1]
        shift = self._shift_for(k)
        rows, block, chunks = self._grid(k)
        partials = np.empty((chunks, 1 + k * (1 + d + d * (d + 1) // 2)))
        self._threads()
        self.compiled.m_step_chunks(X, log_resp, shift, rows, block, partials)
        stats, _ = self._statistics(partials, k, shift)
        return stats

    def runtime_info(self) -> dict[str, object]:
        if self._compiled is None or self._data is None:
            return {}
        n, d = self.X.shape
        k = self._shift.shape[0] if self._shift is not None else 1
        options = self._compiled.options
        return {
            "threads_used": self.workers,
            "threading_layer": self._threading_layer,
            "compile_seconds": self._compile_seconds,
            "compile_from": self._compile_source,
            "numba_import_seconds": self._import_seconds,
            "chunk_size": _chunk_rows(n, d, k),
            "fastmath": options.fastmath,
            "error_model": options.error_model,
            "blas_threads": self._blas_threads,
            "cache_dir": str(self._compiled.cache_dir),
        }

    def _teardown(self) -> None:
        self._shift = None
