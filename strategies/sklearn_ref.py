"""``sklearn``: scikit-learn's own ``GaussianMixture`` E-step and M-step.

Not a parallel strategy: the yardstick the compiled strategies are measured
against, run through the same driver, data and start as everything else. It calls
the estimator's private ``_estimate_log_prob_resp`` and ``_estimate_gaussian_parameters``
(what ``GaussianMixture.fit`` runs per iteration), so the time is scikit-learn's
E-step + M-step without its initialisation and convergence bookkeeping.
"""

from __future__ import annotations

import numpy as np

from harness.model.gmm import REG_COVAR, DerivedParams, SufficientStats
from strategies.base import Strategy, find_reason, import_optional


class SklearnStrategy(Strategy):
    name = "sklearn"
    kind = "serial"
    kernel = "sklearn"
    description = "scikit-learn GaussianMixture's E-step and M-step (the yardstick)"
    blas_parallel = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return find_reason("sklearn", "scikit-learn is not installed")

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        import_optional(
            "sklearn.mixture._gaussian_mixture",
            "_estimate_gaussian_parameters",
            "this scikit-learn has no _estimate_gaussian_parameters",
        )

    def _setup(self, X: np.ndarray) -> None:
        from sklearn.mixture import GaussianMixture

        self._model = GaussianMixture(covariance_type="full", reg_covar=REG_COVAR)

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        model = self._model
        model.n_components = derived.n_components
        model.weights_ = np.asarray(derived.weights)
        model.means_ = np.asarray(derived.means)
        model.covariances_ = np.asarray(derived.covariances)
        model.precisions_cholesky_ = np.asarray(derived.precision_cholesky)
        log_prob_norm, log_resp = model._estimate_log_prob_resp(self.X)
        return log_resp, float(np.mean(log_prob_norm))

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

        nk, means, covariances = _estimate_gaussian_parameters(
            self.X, np.exp(log_resp), 0.0, "full"
        )
        # scikit-learn adds 10*eps to nk; statistics carry the raw mass.
        mass = nk - 10 * np.finfo(np.float64).eps
        scatter = covariances * nk[:, None, None]
        return SufficientStats(mass, means, scatter, self.X.shape[0])
