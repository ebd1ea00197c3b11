"""``CompiledStrategy``: the shared adapter between the compiled kernels and the
strategy interface (not registered).

It allocates outputs, chooses the shift of the M-step sums and turns sums into
:class:`~harness.model.gmm.SufficientStats`; ``cython``, ``openmp``,
``openmp-components`` and ``joblib-threads`` derive from it. It may import the kernels
and :mod:`harness.model`, nothing above them; it times nothing and writes no files.
"""

from __future__ import annotations

from types import ModuleType
from typing import ClassVar

import numpy as np

import kernels
from harness.model.errors import InvalidParameterError
from harness.model.gmm import DerivedParams, SufficientStats
from strategies.base import ShiftedSumsStrategy


def observed_blas_threads() -> int:
    """Largest thread count of the loaded BLAS pools now (0 when no BLAS is loaded)."""
    from threadpoolctl import threadpool_info

    counts = [
        int(pool.get("num_threads") or 0)
        for pool in threadpool_info()
        if pool.get("user_api") == "blas"
    ]
    return max(counts, default=0)


class CompiledStrategy(ShiftedSumsStrategy):
    """Adapter from the compiled kernels to the strategy interface (not registered).

    OpenMP strategies run ``workers`` OpenMP threads per kernel call, the others one
    (:meth:`_kernel_threads`); :attr:`kernel_names` names the kernel functions called,
    and subclasses may replace the kernel calls. The M-step sums are shifted
    (:class:`~strategies.base.ShiftedSumsStrategy`).
    """

    needs_compiled = True
    kernel = "cython"
    #: True when the strategy needs the kernels' OpenMP parallel regions.
    uses_openmp: ClassVar[bool] = False
    #: The kernel functions of :mod:`kernels` the E-step and M-step call.
    kernel_names: ClassVar[dict[str, str]] = {"e_step": "e_step", "m_step": "m_step"}

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._kernels: ModuleType | None = None
        self._threads = 1
        self._threads_used = 0
        self._blas_threads = 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = kernels.unavailable_reason()
        if reason is None and cls.uses_openmp:
            reason = kernels.load().openmp_unavailable_reason()
        return reason

    def _kernel_threads(self) -> int:
        """OpenMP threads per kernel call: the workers where OpenMP runs them, else 1."""
        return self.workers if self.uses_openmp else 1

    def _setup(self, X: np.ndarray) -> None:
        self._kernels = kernels.load()
        self._threads = self._kernels.effective_threads(self._kernel_threads())
        self._data_mean = X.mean(axis=0)
        self._shift = None
        self._threads_used = 0
        # prepare() runs inside the driver's BLAS limit: record what it actually is.
        self._blas_threads = observed_blas_threads()

    @property
    def kernels(self) -> ModuleType:
        if self._kernels is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(X) first")
        return self._kernels

    # ---- argument checks and shared conversions ---------------------------------------

    def _record(self, threads_used: int) -> None:
        self._threads_used = max(self._threads_used, int(threads_used))

    @staticmethod
    def _empty_sums(k: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.empty(k), np.empty((k, d)), np.empty((k, d, d))

    # ---- the interface ------------------------------------------------------------------

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        self._check_derived(derived)
        X = self.X
        log_resp = np.empty((X.shape[0], derived.n_components))
        loglik_sum, used = self._e_step_kernel(derived, log_resp)
        self._record(used)
        self._shift = np.ascontiguousarray(derived.means)
        return log_resp, loglik_sum / X.shape[0]

    def _e_step_kernel(self, derived: DerivedParams, log_resp: np.ndarray) -> tuple[float, int]:
        return self._e_step_on(self.X, derived, log_resp, self._threads)

    def _e_step_on(
        self, X: np.ndarray, derived: DerivedParams, log_resp: np.ndarray, threads: int
    ) -> tuple[float, int]:
        """The E-step kernel on the rows ``X`` (all of them, or one task's slice)."""
        model = derived.kernel_arrays()
        kernel = getattr(self.kernels, self.kernel_names["e_step"])
        return kernel(X, *model, log_resp, threads)

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        log_resp = self._log_resp_array(log_resp)
        X = self.X
        k, d = log_resp.shape[1], X.shape[1]
        shift = self._shift_for(k)
        mass, shifted_sum, shifted_outer = self._empty_sums(k, d)
        used = self._m_step_kernel(log_resp, shift, mass, shifted_sum, shifted_outer)
        self._record(used)
        return SufficientStats.from_shifted_sums(
            mass, shifted_sum, shifted_outer, shift, X.shape[0]
        )

    def _m_step_kernel(
        self,
        log_resp: np.ndarray,
        shift: np.ndarray,
        mass: np.ndarray,
        shifted_sum: np.ndarray,
        shifted_outer: np.ndarray,
    ) -> int:
        return getattr(self.kernels, self.kernel_names["m_step"])(
            self.X, log_resp, shift, mass, shifted_sum, shifted_outer, self._threads
        )

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        self._check_derived(derived)
        X = self.X
        k, d = derived.n_components, X.shape[1]
        shift = np.ascontiguousarray(derived.means)
        mass, shifted_sum, shifted_outer = self._empty_sums(k, d)
        loglik_sum, used = self._fused_kernel(derived, shift, mass, shifted_sum, shifted_outer)
        self._record(used)
        self._shift = shift
        stats = SufficientStats.from_shifted_sums(
            mass, shifted_sum, shifted_outer, shift, X.shape[0]
        )
        return stats, loglik_sum / X.shape[0]

    def _fused_kernel(
        self,
        derived: DerivedParams,
        shift: np.ndarray,
        mass: np.ndarray,
        shifted_sum: np.ndarray,
        shifted_outer: np.ndarray,
    ) -> tuple[float, int]:
        sums = mass, shifted_sum, shifted_outer
        return self._fused_on(self.X, derived, shift, sums, self._threads)

    def _fused_on(
        self, X: np.ndarray, derived: DerivedParams, shift: np.ndarray, sums: tuple, threads: int
    ) -> tuple[float, int]:
        """The fused kernel on the rows ``X``, accumulating into ``sums`` (mass, shifted
        sum, shifted outer products) relative to ``shift``."""
        model = derived.kernel_arrays()
        return self.kernels.fused(X, *model, shift, *sums, threads)

    def runtime_info(self) -> dict[str, object]:
        if self._kernels is None or self._data is None:
            return {}
        n, d = self.X.shape
        k = self._shift.shape[0] if self._shift is not None else 1
        openmp = bool(self.uses_openmp and self._kernels.openmp_enabled())
        return {
            "kernel": "openmp" if openmp else "cython",
            "threads_used": self._threads_used,
            "openmp": openmp,
            "kernel_threads": self._threads,
            "chunk_size": int(self._kernels.chunk_rows(n, d, k)),
            "block_rows": int(self._kernels.block_rows(d, k)),
            "blas_threads": self._blas_threads,
            "simd": self._kernels.build_info()["simd"],
        }

    def _teardown(self) -> None:
        self._shift = None
