"""``sklearn-fit``: scikit-learn's ``GaussianMixture.fit``, whole, from the harness's start.

What a user who picks scikit-learn would run: ``tol=0`` and ``max_iter=N`` so it runs
exactly N iterations, ``weights_init``, ``means_init`` and ``precisions_init`` from the
harness's start and the harness's ``reg_covar``. Unlike ``sklearn`` (the estimator's
private E-step and M-step through the harness's driver), this times everything
``fit`` does: input checks, its own initialisation (``init_params="random_from_data"``,
the cheapest, since the given start overrides it; the default would run k-means
first) and its final E-step, which differencing puts in the fixed cost.

scikit-learn's EM is the harness's (same log-density, same ``nk + 10 eps``, the same
``reg_covar`` every iteration), so it must agree with the reference to rounding.
"""

from __future__ import annotations

import warnings

import numpy as np

from harness.model.gmm import GMMParams, derive
from strategies.base import find_reason
from strategies.library import LibraryFit, LibraryStrategy


class SklearnFitStrategy(LibraryStrategy):
    name = "sklearn-fit"
    description = (
        "scikit-learn GaussianMixture.fit, whole fit from the harness's start "
        "(per-iteration time by differencing fits)"
    )
    parallel = True  # through BLAS threads only, as `einsum`
    blas_parallel = True
    reference_reg_covar = None  # adds reg_covar every iteration, as the harness does
    tolerance = 1e-8
    tolerance_note = "same EM and reg_covar as the reference; differences are rounding"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return find_reason("sklearn", "scikit-learn is not installed")

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        # scikit-learn's import is slow: paid here, not in prepare or the first timed fit.
        from sklearn.mixture import GaussianMixture

        self._mixture = GaussianMixture

    def runtime_info(self) -> dict[str, object]:
        return {"blas_threads_requested": self.workers}

    def _fit(
        self, X: np.ndarray, init: GMMParams, n_iter: int, reg_covar: float, tol: float | None
    ) -> LibraryFit:
        from sklearn.exceptions import ConvergenceWarning

        cholesky = derive(init).precision_cholesky
        precisions = np.einsum("kij,klj->kil", cholesky, cholesky)  # P @ P.T per component
        model = self._mixture(
            n_components=init.n_components,
            covariance_type="full",
            tol=0.0 if tol is None else tol,
            reg_covar=reg_covar,
            max_iter=n_iter,
            n_init=1,
            init_params="random_from_data",
            weights_init=init.weights,
            means_init=init.means,
            precisions_init=precisions,
            random_state=0,
        )
        with warnings.catch_warnings():
            # tol=0 never "converges"; that is the point, not a problem.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
        params = GMMParams(model.weights_, model.means_, model.covariances_)
        return LibraryFit(
            params,
            float(model.lower_bound_),
            int(model.n_iter_),
            converged=bool(model.converged_) and tol is not None,
        )
