"""``onedal``: oneDAL's ``em_gmm`` (through ``daal4py`` in scikit-learn-intelex), whole fit.

The fastest EM for full-covariance Gaussian mixtures a user can ``pip install`` that
starts from given parameters: ``daal4py.em_gmm(nComponents, maxIterations,
accuracyThreshold, covarianceStorage="full").compute(X, weights (1, k), means (k, d),
[covariance (d, d)] * k)``. Threads: oneDAL's own pool, set with
``daal4py.daalinit(workers)`` (BLAS held to one thread as for every threaded strategy).
scikit-learn-intelex does not patch ``GaussianMixture``, so this is the library's own API.

How its EM differs from the harness's (hence ``reference_reg_covar = 0``):

* no per-iteration ``reg_covar``: a covariance is regularised (by an eigenvalue-based
  term, ``regularizationFactor``) only when its Cholesky factorisation fails. The
  harness's start already includes ``reg_covar``; after that oneDAL's covariances are
  the plain weighted scatter over ``N_k``. Compared with the reference run with
  ``reg_covar = 0`` the remaining differences are rounding (summation order, a
  ``-650`` floor on log responsibilities before ``exp``, no ``10 eps`` added to ``N_k``).
* it stops once the total log-likelihood rises by no more than ``accuracyThreshold``,
  which must be >= 0: with 0 (used here) it runs ``maxIterations`` iterations unless
  the log-likelihood stops rising at all (converged to rounding), which it cannot be
  forced past. The check in a sweep fails a configuration whose fit ran fewer
  iterations than asked, rather than difference fits of unknown length.

Install: ``pip install -e .[peers]`` (``make install`` does).
"""

from __future__ import annotations

import numpy as np

from harness.model.gmm import GMMParams
from strategies.base import find_reason, import_optional
from strategies.library import PEERS_INSTALL, LibraryFit, LibraryStrategy


class OneDALStrategy(LibraryStrategy):
    name = "onedal"
    releases_gil = True
    parallel = True
    description = (
        "oneDAL em_gmm via daal4py (scikit-learn-intelex), whole fit from the harness's "
        "start (per-iteration time by differencing fits)"
    )
    reference_reg_covar = 0.0  # no per-iteration reg_covar (see the module docstring)
    tolerance = 1e-8
    tolerance_note = (
        "oneDAL adds no per-iteration reg_covar, so the reference runs with reg_covar=0; "
        "differences are rounding"
    )

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return find_reason(
            "daal4py", f"daal4py (scikit-learn-intelex) is not installed; `{PEERS_INSTALL}`"
        )

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._daal4py = import_optional(
            "daal4py", "em_gmm", f"this daal4py has no em_gmm; `{PEERS_INSTALL}` for a current one"
        )

    def _setup(self, X: np.ndarray) -> None:
        self._use_threads()

    def _use_threads(self) -> None:
        # daalinit sets oneDAL's thread count for the whole process, so it is set again
        # before every fit: another oneDAL strategy in the process (bench-compiled
        # prepares every configuration, then interleaves them) may have changed it.
        daal4py = self._daal4py
        daal4py.daalinit(self.workers)
        self._threads = int(daal4py.num_threads())

    def runtime_info(self) -> dict[str, object]:
        return {"threads_used": getattr(self, "_threads", None)}

    def _fit(
        self, X: np.ndarray, init: GMMParams, n_iter: int, reg_covar: float, tol: float | None
    ) -> LibraryFit:
        self._use_threads()
        daal4py = self._daal4py
        n = X.shape[0]
        algorithm = daal4py.em_gmm(
            nComponents=init.n_components,
            maxIterations=n_iter,
            # oneDAL compares the change of the total (not mean) log-likelihood.
            accuracyThreshold=0.0 if tol is None else float(tol) * n,
            covarianceStorage="full",
            fptype="double",
        )
        result = algorithm.compute(
            X,
            np.ascontiguousarray(init.weights[None, :]),
            np.ascontiguousarray(init.means),
            [np.ascontiguousarray(c) for c in init.covariances],
        )
        weights = np.asarray(result.weights, dtype=np.float64).ravel()
        means = np.asarray(result.means, dtype=np.float64)
        covariances = np.stack([np.asarray(c, dtype=np.float64) for c in result.covariances])
        iterations = int(np.asarray(result.nIterations).ravel()[0])
        loglik = float(np.asarray(result.goalFunction).ravel()[0]) / n
        return LibraryFit(
            GMMParams(weights, means, covariances),
            loglik,
            iterations,
            converged=iterations < n_iter,
        )
