"""``scipy``: one vectorised ``scipy.stats.multivariate_normal`` call per component.

The seed notebook's SciPy version, made numerically safe: ``logpdf`` instead of
``pdf`` and a log-sum-exp instead of dividing densities that underflow to 0/0 for
far points. The covariance is handed to SciPy as its already computed Cholesky
factor (``scipy.stats.Covariance.from_cholesky``), so SciPy does not factor it again.
"""

from __future__ import annotations

import numpy as np

from harness.model.gmm import (
    DerivedParams,
    SufficientStats,
    component_columns,
    normalise_log_resp,
)
from strategies.base import Strategy


class ScipyStrategy(Strategy):
    name = "scipy"
    kind = "serial"
    kernel = "scipy"
    description = "scipy.stats.multivariate_normal.logpdf per component, NumPy M-step"
    blas_parallel = True

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        # Imported here, not with the module: listing the strategies imports every
        # strategy module, and scipy.stats is a heavy import that only this one needs.
        from scipy.stats import Covariance, multivariate_normal

        self._covariance, self._normal = Covariance, multivariate_normal

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        X = self.X
        from_cholesky, logpdf = self._covariance.from_cholesky, self._normal.logpdf

        def log_density(j: int) -> np.ndarray:
            covariance = from_cholesky(derived.cov_cholesky[j])
            return logpdf(X, mean=derived.means[j], cov=covariance)

        log_prob = component_columns(X.shape[0], derived.n_components, log_density)
        log_prob += derived.log_weights
        return normalise_log_resp(log_prob)

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        X = self.X
        resp = np.exp(log_resp)
        k, d = resp.shape[1], X.shape[1]
        mass = resp.sum(axis=0)
        means = np.zeros((k, d))
        scatter = np.empty((k, d, d))
        for j in range(k):
            if mass[j] > 0:
                means[j] = np.average(X, axis=0, weights=resp[:, j])
            diff = X - means[j]
            scatter[j] = (diff * resp[:, j, None]).T @ diff
        return SufficientStats(mass, means, scatter, X.shape[0])
