"""``numba``: the ``openmp`` strategy's algorithm, written in Numba instead of Cython.

What a user who will not write Cython gets. An ``@njit(parallel=True)`` function
(:func:`kernels.numba_em.run_chunks`) runs a ``prange`` over the same fixed chunk grid
as ``openmp``, calling a chunk kernel compiled with Numba (one for d = 2, one for any
d); each chunk writes its own row of partial sums, and the rows are added in chunk
order after the loop, so the results are bitwise identical for any thread count. The
thread count is set with ``numba.set_num_threads`` before every kernel call (it is per
calling thread), and chunks are handed to threads one at a time; Numba's threading
layer (``omp``, ``tbb`` or ``workqueue``) is recorded in :meth:`runtime_info`.

Compilation happens in ``prepare`` (by running every operation once on a few points),
so it is timed with start-up and never inside an iteration. ``runtime_info`` says how
long the kernels took to compile or load (``compile_seconds``) and whether the machine
code came from Numba's on-disk cache or was compiled (``compile_from``: ``cached`` or
``cold``); importing Numba (``numba_import_seconds``) and Numba's one-time set-up of its
compiler (``numba_init_seconds``), which any first use of Numba in a process pays, are
recorded apart. The cache is kept per compile-option set (see
:func:`kernels.numba_em.build`), so a changed option never serves stale code.
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

#: The fused pass reads and writes no log responsibilities: a placeholder of their type.
_NO_LOG_RESP = np.empty((1, 1))

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
        self._kernel = None
        self._compile_seconds = 0.0
        self._import_seconds = 0.0
        self._init_seconds = 0.0
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
        # Numba's one-time set-up, which the first compile or cache load in the process
        # would otherwise pay: timed apart, as the import is.
        began = time.perf_counter()
        numba_em.initialise_numba()
        self._init_seconds = time.perf_counter() - began
        started = time.perf_counter()
        compiled = numba_em.build(_options_from_env())
        self._kernel = compiled.kernel(X.shape[1])
        self._compile_all(compiled, X)
        self._compile_seconds = time.perf_counter() - started
        hits, misses = compiled.cache_use()
        # "cached": every kernel was loaded from Numba's disk cache; "cold": some compiled.
        self._compile_source = "cached" if hits and not misses else "cold"
        self._compiled = compiled
        self._threading_layer = str(numba.threading_layer())
        from strategies.compiled import observed_blas_threads

        self._blas_threads = observed_blas_threads()

    def _compile_all(self, compiled, X: np.ndarray) -> None:
        """Run every operation once on a few points, with the argument types of the real
        calls (the data's own rows, so that a read-only ``X`` is compiled for)."""
        import numba

        from kernels.numba_em import OP_E_STEP, OP_FUSED, OP_M_STEP, block_rows, n_sums

        numba.set_num_threads(self.workers)
        d = X.shape[1]
        k = 1
        rows = min(X.shape[0], 8)
        head = X[:rows]
        log_norm, means, precision = self._model(
            np.zeros(k), np.zeros((k, d)), np.broadcast_to(np.eye(d), (k, d, d))
        )
        log_resp = np.zeros((rows, k))
        B = block_rows(d, k)
        for op in (OP_FUSED, OP_M_STEP, OP_E_STEP):
            row_size = 1 if op == OP_E_STEP else 1 + k * n_sums(d)
            partials, total = np.empty((1, row_size)), np.empty(row_size)
            compiled.run_chunks(
                self._kernel, op, head, log_norm, means, precision, means, log_resp, rows, B,
                partials, total, self.workers,
            )  # fmt: skip

    @staticmethod
    def _model(log_norm, means, precision) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model as the kernel takes it: fresh writable C-contiguous float64 arrays
        (Numba compiles read-only arrays apart, and derived parameters are read-only)
        and the precision factors padded (:func:`kernels.numba_em.padded_precision`)."""
        from kernels.numba_em import padded_precision

        return (
            np.array(log_norm, dtype=np.float64, order="C"),
            np.array(means, dtype=np.float64, order="C"),
            padded_precision(precision),
        )

    @property
    def compiled(self):
        if self._compiled is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(X) first")
        return self._compiled

    def _grid(self, k: int) -> tuple[int, int, int]:
        """(rows per chunk, rows per block, chunks) for the prepared data and k."""
        from kernels.numba_em import block_rows, n_chunks

        n, d = self.X.shape
        rows = _chunk_rows(n, d, k)
        return rows, block_rows(d, k), n_chunks(n, rows)

    def _run(self, op: int, model, shift, log_resp, row_size: int) -> np.ndarray:
        """Run ``op`` over the chunk grid on ``self.workers`` threads; the summed row."""
        import numba

        X = self.X
        k = shift.shape[0]
        rows, block, chunks = self._grid(k)
        partials = np.empty((chunks, row_size))
        total = np.empty(row_size)
        numba.set_num_threads(self.workers)
        self.compiled.run_chunks(
            self._kernel, op, X, *model, shift, log_resp, rows, block, partials, total,
            self.workers,
        )  # fmt: skip
        return total

    # ---- the interface ------------------------------------------------------------------

    def _statistics(self, total: np.ndarray, k: int, shift: np.ndarray):
        from kernels.numba_em import unpack_sums

        mass, shifted_sum, shifted_outer = unpack_sums(total, k, self.X.shape[1])
        return SufficientStats.from_shifted_sums(
            mass, shifted_sum, shifted_outer, shift, self.X.shape[0]
        )

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        from kernels.numba_em import OP_FUSED, n_sums

        self._check_derived(derived)
        k, d = derived.n_components, self.X.shape[1]
        model = self._model(*derived.kernel_arrays())
        shift = model[1]
        total = self._run(OP_FUSED, model, shift, _NO_LOG_RESP, 1 + k * n_sums(d))
        self._shift = shift
        return self._statistics(total, k, shift), float(total[0]) / self.X.shape[0]

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        from kernels.numba_em import OP_E_STEP

        self._check_derived(derived)
        n, k = self.X.shape[0], derived.n_components
        model = self._model(*derived.kernel_arrays())
        log_resp = np.empty((n, k))
        total = self._run(OP_E_STEP, model, model[1], log_resp, 1)
        self._shift = model[1]
        return log_resp, float(total[0]) / n

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        from kernels.numba_em import OP_M_STEP, n_sums

        log_resp = self._log_resp_array(log_resp)
        if not log_resp.flags.writeable:
            log_resp = log_resp.copy()  # the kernel is compiled for writable arrays only
        k, d = log_resp.shape[1], self.X.shape[1]
        shift = np.array(self._shift_for(k), dtype=np.float64, order="C")
        # The M-step reads no model: placeholders of the compiled types.
        model = (np.zeros(k), shift, np.zeros((k, d, (d + 3) // 4 * 4)))
        total = self._run(OP_M_STEP, model, shift, log_resp, 1 + k * n_sums(d))
        return self._statistics(total, k, shift)

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
            "numba_init_seconds": self._init_seconds,
            "chunk_size": _chunk_rows(n, d, k),
            "fastmath": options.fastmath,
            "fma_contraction": options.contract,
            "error_model": options.error_model,
            "blas_threads": self._blas_threads,
            "cache_dir": str(self._compiled.cache_dir),
        }

    def _teardown(self) -> None:
        self._shift = None
