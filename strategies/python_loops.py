"""``python``: pure Python, one point and one component at a time.

The seed notebook's first version, made numerically safe. Every number is a Python
float and every loop runs in the interpreter under the GIL: this is the baseline
that shows what interpreted code costs, not a contender. It is still exact: it
follows the reference maths (log space, max-shifted log-sum-exp, centred scatter).
"""

from __future__ import annotations

import math

import numpy as np

from harness.model.gmm import LOG_2PI, DerivedParams, SufficientStats
from strategies.base import Strategy


class PythonLoopsStrategy(Strategy):
    name = "python"
    kind = "serial"
    kernel = "python"
    description = "pure-Python loops per point and component (interpreter baseline)"

    def _setup(self, X: np.ndarray) -> None:
        self._rows: list[list[float]] = X.tolist()

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        k, d = derived.n_components, derived.n_features
        means = derived.means.tolist()
        precision_cholesky = derived.precision_cholesky.tolist()
        constants = (
            derived.log_weights + derived.log_det_precision_cholesky - 0.5 * d * LOG_2PI
        ).tolist()
        log_resp: list[list[float]] = []
        total = 0.0
        for x in self._rows:
            row = []
            for j in range(k):
                mean, factor = means[j], precision_cholesky[j]
                distance = 0.0
                for col in range(d):
                    projected = 0.0
                    for i in range(col + 1):  # P is upper triangular
                        projected += (x[i] - mean[i]) * factor[i][col]
                    distance += projected * projected
                row.append(constants[j] - 0.5 * distance)
            peak = max(row)
            log_norm = peak + math.log(sum(math.exp(value - peak) for value in row))
            log_resp.append([value - log_norm for value in row])
            total += log_norm
        return np.array(log_resp), total / len(self._rows)

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        rows = self._rows
        log_resp = np.asarray(log_resp).tolist()
        n, d = len(rows), len(rows[0])
        k = len(log_resp[0])
        resp = [[math.exp(value) for value in row] for row in log_resp]
        mass = [0.0] * k
        sums = [[0.0] * d for _ in range(k)]
        for x, r in zip(rows, resp, strict=True):
            for j in range(k):
                mass[j] += r[j]
                for i in range(d):
                    sums[j][i] += r[j] * x[i]
        means = [[s / mass[j] if mass[j] > 0 else 0.0 for s in sums[j]] for j in range(k)]
        scatter = [[[0.0] * d for _ in range(d)] for _ in range(k)]
        for x, r in zip(rows, resp, strict=True):
            for j in range(k):
                diff = [x[i] - means[j][i] for i in range(d)]
                for a in range(d):
                    weighted = r[j] * diff[a]
                    for b in range(a + 1):
                        scatter[j][a][b] += weighted * diff[b]
        for j in range(k):
            for a in range(d):
                for b in range(a):
                    scatter[j][b][a] = scatter[j][a][b]
        return SufficientStats(np.array(mass), np.array(means), np.array(scatter), n)
