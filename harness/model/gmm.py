"""Gaussian-mixture maths: the one source of truth every strategy is tested against.

Three value types carry an EM iteration:

* :class:`GMMParams`: what the model is (weights, means, covariances).
* :class:`DerivedParams`: what the E-step needs, computed once per iteration
  (log-weights, Cholesky factors of the precisions, their log-determinants).
* :class:`SufficientStats`: what the M-step produces (per-component responsibility
  mass, weighted means and *centred* scatter matrices). Partial statistics from
  chunks or workers are merged pairwise with :meth:`SufficientStats.merge`, which
  never forms the uncentred ``sum w x x^T``.

:func:`params_from_stats` turns statistics into the next parameters (adding
``reg_covar`` and flooring collapsed components) in one place, so that strategies
only compute statistics and cannot diverge in how they regularise.

The reference E-step and M-step (:func:`reference_e_step`, :func:`reference_m_step`)
follow scikit-learn's ``GaussianMixture(covariance_type="full")``: log densities
through the precision Cholesky factor and a max-shifted log-sum-exp.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harness.model.errors import InvalidParameterError, NumericalError

#: Added to every covariance diagonal, as scikit-learn's default ``reg_covar``.
REG_COVAR = 1e-6

#: Added to every component's responsibility mass before normalising, exactly as
#: scikit-learn does (``nk + 10 * eps``), so that weights are never zero.
MASS_EPS = 10 * np.finfo(np.float64).eps

#: A component whose responsibility mass is below this fraction of ``n`` has no
#: usable mean or covariance left: it is floored (see :func:`params_from_stats`).
COLLAPSE_FRACTION = 1e-12

LOG_2PI = math.log(2.0 * math.pi)


class CollapsedComponentWarning(RuntimeWarning):
    """A component lost (almost) all its points and was floored instead of becoming NaN."""


def axis_length(array: str, axis: int, doc: str) -> property:
    """A read-only ``int`` attribute: the length of attribute ``array`` along ``axis``."""
    return property(lambda self: int(getattr(self, array).shape[axis]), doc=doc)


@dataclass(frozen=True)
class GMMParams:
    """Parameters of a full-covariance Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of float64, shape (k,)
        Mixing weights, positive, summing to 1.
    means : ndarray of float64, shape (k, d)
    covariances : ndarray of float64, shape (k, d, d)
        Symmetric positive definite, ``reg_covar`` already included.
    collapsed : tuple of int
        Components floored by the M-step that produced these parameters.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    collapsed: tuple[int, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        means = np.ascontiguousarray(self.means, dtype=np.float64)
        covariances = np.ascontiguousarray(self.covariances, dtype=np.float64)
        if weights.ndim != 1 or means.ndim != 2 or covariances.ndim != 3:
            raise InvalidParameterError(
                "GMM parameters need weights (k,), means (k, d), covariances (k, d, d); got "
                f"{weights.shape}, {means.shape}, {covariances.shape}"
            )
        k, d = means.shape
        if weights.shape != (k,) or covariances.shape != (k, d, d):
            raise InvalidParameterError(
                f"inconsistent GMM parameter shapes: weights {weights.shape}, "
                f"means {means.shape}, covariances {covariances.shape}"
            )
        for value in (weights, means, covariances):
            value.setflags(write=False)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covariances", covariances)

    n_components = axis_length("means", 0, "k, the number of components")
    n_features = axis_length("means", 1, "d, the number of features")

    def to_dict(self) -> dict[str, list]:
        """Nested lists, for JSON."""
        return {
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> GMMParams:
        return cls(
            np.asarray(data["weights"]), np.asarray(data["means"]), np.asarray(data["covariances"])
        )


def _of_params(name: str) -> property:
    """A read-only attribute of :class:`DerivedParams` that is its ``params``' own."""
    return property(lambda self: getattr(self.params, name), doc=f"``params.{name}``")


@dataclass(frozen=True)
class DerivedParams:
    """What the E-step needs, derived once per iteration from :class:`GMMParams`.

    Attributes
    ----------
    params : GMMParams
    log_weights : ndarray of float64, shape (k,)
    cov_cholesky : ndarray of float64, shape (k, d, d)
        Lower-triangular ``L`` with ``covariance = L @ L.T``.
    precision_cholesky : ndarray of float64, shape (k, d, d)
        Upper-triangular ``P = inv(L).T``, so ``precision = P @ P.T`` and the
        Mahalanobis distance is ``||(x - mu) @ P||^2`` (scikit-learn's convention).
    log_det_precision_cholesky : ndarray of float64, shape (k,)
        ``sum(log(diag(P)))`` = ``-0.5 * log det(covariance)``.
    log_norm : ndarray of float64, shape (k,)
        ``log_weights + log_det_precision_cholesky - 0.5 * d * log(2 pi)``: the
        per-component constant of the weighted log density.
    """

    params: GMMParams
    log_weights: np.ndarray
    cov_cholesky: np.ndarray
    precision_cholesky: np.ndarray
    log_det_precision_cholesky: np.ndarray
    log_norm: np.ndarray

    # Read-only views of the parameters the factors were derived from.
    weights = _of_params("weights")
    means = _of_params("means")
    covariances = _of_params("covariances")
    n_components = _of_params("n_components")
    n_features = _of_params("n_features")

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(log_norm, means, precision_cholesky)`` as C-contiguous float64 arrays, as
        every compiled kernel takes the model."""
        return tuple(  # type: ignore[return-value]
            np.ascontiguousarray(a, dtype=np.float64)
            for a in (self.log_norm, self.means, self.precision_cholesky)
        )


def derive(params: GMMParams) -> DerivedParams:
    """Compute Cholesky factors and log-determinants once for an iteration.

    Raises
    ------
    NumericalError
        If a covariance is not positive definite.
    """
    k, d = params.means.shape
    covariances = params.covariances
    # One LAPACK call per stack, not k Python-level SciPy calls: at k = 50 and d = 2 the
    # per-call overhead was most of derive's time, and derive runs serially every
    # iteration. NumPy's batched cholesky does not check finiteness (SciPy's did).
    bad = np.flatnonzero(~np.isfinite(covariances).reshape(k, -1).all(axis=1))
    if bad.size:
        raise NumericalError(f"covariance of component {bad[0]} is not finite")
    try:
        cov_cholesky = np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError as exc:
        raise NumericalError(
            f"covariance of component {_first_not_positive_definite(covariances)} is not "
            "positive definite; the data may have fewer distinct points than dimensions for "
            "it (increase reg_covar)"
        ) from exc
    # inv(L) of a triangular L is triangular; np.triu drops the rounding-level entries a
    # general inverse may leave in the other triangle.
    precision_cholesky = np.triu(np.swapaxes(np.linalg.inv(cov_cholesky), 1, 2))
    log_det = np.log(np.diagonal(precision_cholesky, axis1=1, axis2=2)).sum(axis=1)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    log_norm = log_weights + log_det - 0.5 * d * LOG_2PI
    for value in (log_weights, cov_cholesky, precision_cholesky, log_det, log_norm):
        value.setflags(write=False)
    return DerivedParams(params, log_weights, cov_cholesky, precision_cholesky, log_det, log_norm)


def _first_not_positive_definite(covariances: np.ndarray) -> int:
    """Index of the first covariance whose Cholesky factorisation fails (the error path)."""
    for j, covariance in enumerate(covariances):
        try:
            np.linalg.cholesky(covariance)
        except np.linalg.LinAlgError:
            return j
    return -1  # not reached: called only after the stacked factorisation failed


@dataclass(frozen=True)
class SufficientStats:
    """Per-component statistics of one pass over (part of) the data.

    Attributes
    ----------
    mass : ndarray of float64, shape (k,)
        ``N_k = sum_n r_nk``.
    means : ndarray of float64, shape (k, d)
        Responsibility-weighted means ``sum_n r_nk x_n / N_k`` (0 where ``N_k = 0``).
    scatter : ndarray of float64, shape (k, d, d)
        Centred scatter ``sum_n r_nk (x_n - mean_k)(x_n - mean_k)^T``.
    n_points : int
        Number of points the statistics cover.
    """

    mass: np.ndarray
    means: np.ndarray
    scatter: np.ndarray
    n_points: int

    @classmethod
    def empty(cls, k: int, d: int) -> SufficientStats:
        return cls(np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d)), 0)

    @classmethod
    def from_shifted_sums(
        cls,
        mass: np.ndarray,
        shifted_sum: np.ndarray,
        shifted_outer: np.ndarray,
        shift: np.ndarray,
        n_points: int,
    ) -> SufficientStats:
        """Build centred statistics from sums taken relative to a shift.

        Kernels accumulate ``S1 = sum r (x - c)`` and ``S2 = sum r (x - c)(x - c)^T``
        with ``c`` the previous means: with ``c`` close to the new mean the
        subtraction ``S2 - S1 S1^T / N`` loses almost nothing, unlike the raw
        ``sum r x x^T`` on data far from the origin.

        Parameters
        ----------
        mass : ndarray of float64, shape (k,)
        shifted_sum : ndarray of float64, shape (k, d)
        shifted_outer : ndarray of float64, shape (k, d, d)
        shift : ndarray of float64, shape (k, d)
        n_points : int
        """
        mass = np.asarray(mass, dtype=np.float64)
        safe = np.where(mass > 0, mass, 1.0)
        offset = shifted_sum / safe[:, None]
        means = np.where(mass[:, None] > 0, shift + offset, 0.0)
        scatter = shifted_outer - mass[:, None, None] * np.einsum("ki,kj->kij", offset, offset)
        scatter = 0.5 * (scatter + np.swapaxes(scatter, 1, 2))
        return cls(mass, means, scatter, int(n_points))

    def merge(self, other: SufficientStats) -> SufficientStats:
        """Combine two disjoint parts (Chan et al.'s pairwise update of centred moments)."""
        total = self.mass + other.mass
        safe = np.where(total > 0, total, 1.0)
        delta = other.means - self.means
        frac_other = np.where(total > 0, other.mass / safe, 0.0)
        means = self.means + delta * frac_other[:, None]
        cross = np.where(total > 0, self.mass * other.mass / safe, 0.0)
        scatter = (
            self.scatter
            + other.scatter
            + cross[:, None, None] * np.einsum("ki,kj->kij", delta, delta)
        )
        return SufficientStats(total, means, scatter, self.n_points + other.n_points)

    @staticmethod
    def merge_all(parts: list[SufficientStats]) -> SufficientStats:
        """Merge in a fixed pairwise tree, so the result depends only on the order of parts."""
        if not parts:
            raise ValueError("merge_all needs at least one part")
        level = list(parts)
        while len(level) > 1:
            merged = [level[i].merge(level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                merged.append(level[-1])
            level = merged
        return level[0]


def params_from_stats(
    stats: SufficientStats,
    previous: GMMParams,
    reg_covar: float = REG_COVAR,
    *,
    warn: bool = True,
) -> GMMParams:
    """The M-step's closing part, shared by every strategy.

    ``weights = (N_k + 10 eps) / sum``, ``means`` as given, ``covariances =
    scatter / N_k + reg_covar * I``. A component whose mass fell below
    ``COLLAPSE_FRACTION * n`` has no usable mean or covariance: it keeps its previous
    mean and covariance, gets the floor weight, is listed in ``collapsed`` and a
    :class:`CollapsedComponentWarning` is emitted, instead of producing NaN.

    Parameters
    ----------
    stats : SufficientStats
    previous : GMMParams
        Parameters of the iteration that produced ``stats``.
    reg_covar : float
    warn : bool
        Emit the warning for collapsed components.

    Returns
    -------
    GMMParams
    """
    d = stats.means.shape[1]
    n = max(stats.n_points, 1)
    mass = stats.mass + MASS_EPS
    collapsed = np.flatnonzero(stats.mass < COLLAPSE_FRACTION * n)
    safe_mass = np.where(stats.mass > 0, stats.mass + MASS_EPS, 1.0)
    means = stats.means.copy()
    covariances = stats.scatter / safe_mass[:, None, None]
    diag = np.arange(d)
    covariances[:, diag, diag] += reg_covar
    if collapsed.size:
        means[collapsed] = previous.means[collapsed]
        covariances[collapsed] = previous.covariances[collapsed]
        if warn:
            warnings.warn(
                f"component(s) {collapsed.tolist()} lost all their points; kept their previous "
                "mean and covariance and floored their weight",
                CollapsedComponentWarning,
                stacklevel=2,
            )
    weights = mass / mass.sum()
    if not (np.isfinite(means).all() and np.isfinite(covariances).all()):
        raise NumericalError("M-step produced non-finite means or covariances")
    return GMMParams(weights, means, covariances, collapsed=tuple(collapsed.tolist()))


# --------------------------------------------------------------------------------------
# Reference E-step and M-step (plain NumPy): the oracle.
# --------------------------------------------------------------------------------------


def component_columns(n: int, k: int, column: Callable[[int], np.ndarray]) -> np.ndarray:
    """An (n, k) float64 array whose column ``j`` is ``column(j)``, shape (n,).

    The per-component loop of every E-step that works one component at a time.
    """
    out = np.empty((n, k))
    for j in range(k):
        out[:, j] = column(j)
    return out


def log_weighted_density(X: np.ndarray, derived: DerivedParams) -> np.ndarray:
    """``log(w_k) + log N(x_n | mu_k, Sigma_k)`` for every point and component.

    Parameters
    ----------
    X : ndarray of float64, shape (n, d)
    derived : DerivedParams

    Returns
    -------
    ndarray of float64, shape (n, k)
    """

    # One scratch array for all components: a fresh (n, d) temporary per component is
    # returned to the operating system and faulted in again each time.
    y = np.empty((X.shape[0], derived.n_features))

    def squared_distance(j: int) -> np.ndarray:
        P = derived.precision_cholesky[j]
        np.matmul(X, P, out=y)
        np.subtract(y, derived.means[j] @ P, out=y)
        return np.einsum("nd,nd->n", y, y)

    out = component_columns(X.shape[0], derived.n_components, squared_distance)
    out *= -0.5
    out += derived.log_norm
    return out


def normalise_log_resp(log_prob: np.ndarray) -> tuple[np.ndarray, float]:
    """Max-shifted log-sum-exp over components, in place.

    Parameters
    ----------
    log_prob : ndarray of float64, shape (n, k)
        Weighted log densities; overwritten with log responsibilities.

    Returns
    -------
    log_resp : ndarray of float64, shape (n, k)
        The same array as ``log_prob``.
    mean_loglik : float
    """
    # Imported here: SciPy's import costs every measurement process a noticeable
    # start-up, and only the NumPy-level E-steps need it.
    from scipy.special import logsumexp

    log_norm = logsumexp(log_prob, axis=1)
    log_prob -= log_norm[:, None]
    return log_prob, float(log_norm.mean())


def reference_e_step(X: np.ndarray, derived: DerivedParams) -> tuple[np.ndarray, float]:
    """Reference E-step.

    Returns
    -------
    log_resp : ndarray of float64, shape (n, k)
    mean_loglik : float
        Mean over points of ``log sum_k w_k N(x | mu_k, Sigma_k)``.
    """
    return normalise_log_resp(log_weighted_density(X, derived))


def reference_m_step(X: np.ndarray, log_resp: np.ndarray) -> SufficientStats:
    """Reference M-step statistics (two-pass: means first, then centred scatter).

    Parameters
    ----------
    X : ndarray of float64, shape (n, d)
    log_resp : ndarray of float64, shape (n, k)
    """
    resp = np.exp(log_resp)
    mass = resp.sum(axis=0)
    safe = np.where(mass > 0, mass, 1.0)
    means = (resp.T @ X) / safe[:, None]
    k, d = means.shape
    scatter = np.empty((k, d, d))
    for j in range(k):
        diff = X - means[j]
        scatter[j] = (resp[:, j] * diff.T) @ diff
    return SufficientStats(mass, means, scatter, X.shape[0])


# --------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------


def initial_params(X: np.ndarray, k: int, seed: int = 0, reg_covar: float = REG_COVAR) -> GMMParams:
    """Deterministic start: k-means++ seeding for the means, the data covariance for all.

    Means are chosen by scikit-learn's ``kmeans_plusplus`` (D^2 sampling, seeded);
    every component starts with the covariance of the whole data set plus
    ``reg_covar`` and weight ``1/k``. No Lloyd iterations are run, so the cost of
    initialising does not blur the per-iteration timings, and every strategy starts
    from exactly the same parameters.

    Parameters
    ----------
    X : ndarray of float64, shape (n, d)
    k : int
    seed : int

    Returns
    -------
    GMMParams
    """
    from sklearn.cluster import kmeans_plusplus

    n, d = X.shape
    # D^2 seeding on a bounded sample keeps initialisation well under a second at n = 1e7.
    sample_size = min(n, 200_000)
    rng = np.random.default_rng(seed)
    sample = X if sample_size == n else X[np.sort(rng.choice(n, sample_size, replace=False))]
    means, _ = kmeans_plusplus(np.asarray(sample), k, random_state=seed)
    covariance = np.atleast_2d(np.cov(sample, rowvar=False)) if n > 1 else np.zeros((d, d))
    covariance = covariance + reg_covar * np.eye(d)
    covariances = np.broadcast_to(covariance, (k, d, d)).copy()
    return GMMParams(np.full(k, 1.0 / k), means, covariances)
