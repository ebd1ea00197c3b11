"""``einsum``: the quadratic form and the covariance update as single ``numpy.einsum`` calls.

As in the einsum post: no per-point Python loop; per component, one einsum
projects every centred point through the precision Cholesky factor and one sums
the responsibility-weighted outer products. With ``optimize=True`` the
contractions go to BLAS, whose threads are set to the worker count (threadpoolctl),
so this is the "let NumPy's BLAS parallelise" strategy.
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


class EinsumStrategy(Strategy):
    name = "einsum"
    kind = "threads"
    parallel = True
    releases_gil = True
    description = "numpy.einsum contractions; parallel only through BLAS threads"
    blas_parallel = True

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        X = self.X
        # Scratch arrays for all components: a fresh (n, d) temporary per component is
        # returned to the operating system and faulted in again each time.
        centred, projected = np.empty_like(X), np.empty_like(X)

        def squared_distance(j: int) -> np.ndarray:
            np.subtract(X, derived.means[j], out=centred)
            np.einsum(
                "nd,de->ne", centred, derived.precision_cholesky[j], out=projected, optimize=True
            )
            return np.einsum("ne,ne->n", projected, projected)

        log_prob = component_columns(X.shape[0], derived.n_components, squared_distance)
        log_prob *= -0.5
        log_prob += derived.log_norm
        return normalise_log_resp(log_prob)

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        X = self.X
        resp = np.exp(log_resp)
        mass = resp.sum(axis=0)
        safe = np.where(mass > 0, mass, 1.0)
        means = np.einsum("nk,nd->kd", resp, X, optimize=True) / safe[:, None]
        k, d = means.shape
        scatter = np.empty((k, d, d))
        for j in range(k):
            diff = X - means[j]
            scatter[j] = np.einsum("n,ni,nj->ij", resp[:, j], diff, diff, optimize=True)
        return SufficientStats(mass, means, scatter, X.shape[0])
