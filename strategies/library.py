"""Base of the ``library`` strategies: a peer library's own whole EM fit from the harness's start.

A library (scikit-learn's ``GaussianMixture.fit``, oneDAL's ``em_gmm``) cannot be
stepped one iteration at a time: it is handed the data, a start and an iteration
count, and returns the fitted parameters. So a library strategy offers one call,
:meth:`LibraryStrategy.fit`, and no E-step or M-step of its own (``whole_fit``).
The harness times it per iteration by differencing fits of different lengths
(:mod:`harness.sweep.library_timing`): ``T(N) = fixed + N * per_iteration``, where the
fixed cost is the library's set-up, its own initialisation and any final E-step.

Each library states how its EM differs from the harness's reference
(:class:`LibraryStrategy` ``reference_reg_covar``, ``tolerance``, ``tolerance_note``):
:meth:`LibraryStrategy.agreement` runs the reference for the same iterations under the
library's own regularisation and reports whether the final parameters agree within
the stated tolerance. A library that does not is reported as disagreeing.

To add one: subclass :class:`LibraryStrategy`, implement :meth:`LibraryStrategy._fit`,
state the regularisation difference and tolerance, return the install command from
``unavailable_reason`` when the package is missing, and add a registry line.

Knows nothing of timing or files.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.model.errors import InvalidParameterError
from harness.model.gmm import (
    REG_COVAR,
    DerivedParams,
    GMMParams,
    SufficientStats,
    derive,
    params_from_stats,
    reference_e_step,
    reference_m_step,
)
from harness.model.validation import check_n_components
from strategies.base import Strategy

#: How to install the optional peer libraries (the ``peers`` extra).
PEERS_INSTALL = "pip install -e .[peers]"


@dataclass(frozen=True)
class LibraryFit:
    """What one whole fit returned.

    Attributes
    ----------
    params : GMMParams
        Final parameters, weights (k,), means (k, d), covariances (k, d, d), float64.
    mean_loglik : float
        Mean log-likelihood per point computed in the last iteration's E-step (of the
        parameters that iteration started from), the convention of scikit-learn's
        ``lower_bound_`` and of :class:`harness.sweep.em.FitResult` ``loglik[-1]``.
    iterations : int
        Iterations the library reports it ran.
    converged : bool
        The library stopped on its own tolerance before the iteration cap.
    """

    params: GMMParams
    mean_loglik: float
    iterations: int
    converged: bool = False


@dataclass(frozen=True)
class Agreement:
    """A library fit compared with the reference run under the library's regularisation.

    Attributes
    ----------
    difference : float
        Largest scaled difference of the final parameters (:func:`scaled_difference`).
    loglik_difference : float
        ``|library - reference|`` of the final mean log-likelihood.
    tolerance : float
    reference_reg_covar : float
        ``reg_covar`` the reference ran with.
    note : str
        The library's stated regularisation difference.
    """

    difference: float
    loglik_difference: float
    tolerance: float
    reference_reg_covar: float
    note: str

    @property
    def agrees(self) -> bool:
        return bool(self.difference <= self.tolerance and self.loglik_difference <= self.tolerance)

    def describe(self) -> str:
        verdict = "agrees" if self.agrees else "DISAGREES"
        return (
            f"{verdict} with the reference (reg_covar={self.reference_reg_covar:g}): "
            f"parameters {self.difference:.2e}, mean log-likelihood "
            f"{self.loglik_difference:.2e}, tolerance {self.tolerance:g} ({self.note})"
        )


def scaled_difference(actual: GMMParams, expected: GMMParams) -> float:
    """Largest difference of weights, means and covariances, each scaled by its largest entry.

    Returns
    -------
    float
        ``max(max|a - e| / max|e|)`` over the three arrays; ``inf`` when the shapes differ
        or anything is not finite.
    """
    worst = 0.0
    for a, e in (
        (actual.weights, expected.weights),
        (actual.means, expected.means),
        (actual.covariances, expected.covariances),
    ):
        if a.shape != e.shape or not (np.isfinite(a).all() and np.isfinite(e).all()):
            return math.inf
        scale = float(np.abs(e).max()) or 1.0
        worst = max(worst, float(np.abs(a - e).max()) / scale)
    return worst


def reference_fit(
    X: np.ndarray, init: GMMParams, n_iter: int, reg_covar: float = REG_COVAR
) -> tuple[GMMParams, float]:
    """``n_iter`` iterations of the NumPy reference EM (the oracle), no timing.

    Returns
    -------
    params : GMMParams
    mean_loglik : float
        Of the last iteration's E-step, as :attr:`LibraryFit.mean_loglik`.
    """
    params, loglik = init, math.nan
    for _ in range(n_iter):
        log_resp, loglik = reference_e_step(X, derive(params))
        params = params_from_stats(reference_m_step(X, log_resp), params, reg_covar, warn=False)
    return params, float(loglik)


class LibraryStrategy(Strategy):
    """A peer library's whole EM fit (kind ``library``).

    Class attributes
    ----------------
    reference_reg_covar : float or None
        The ``reg_covar`` the reference must run with to do what the library does:
        None when the library adds the harness's ``reg_covar`` every iteration, as the
        harness does; ``0.0`` when it adds none.
    tolerance : float
        Largest :func:`scaled_difference` (and mean log-likelihood difference) from that
        reference that still counts as agreeing.
    tolerance_note : str
        Says what differs from the harness's EM and so why the tolerance is what it is.
    """

    kind = "library"
    whole_fit = True
    reference_reg_covar: ClassVar[float | None] = None
    tolerance: ClassVar[float] = 1e-8
    tolerance_note: ClassVar[str] = ""

    def fit(
        self,
        init: GMMParams,
        n_iter: int,
        *,
        reg_covar: float = REG_COVAR,
        tol: float | None = None,
    ) -> LibraryFit:
        """Run the library's EM on the prepared data from ``init``.

        Parameters
        ----------
        init : GMMParams
            The harness's start (:func:`harness.model.gmm.initial_params`).
        n_iter : int
            Iterations to run (at most, with ``tol``).
        reg_covar : float
            The harness's regularisation; a library without one ignores it (see
            ``reference_reg_covar``).
        tol : float or None
            Stop when the mean log-likelihood changes by less than ``tol``; None runs
            exactly ``n_iter`` iterations.
        """
        X = self.X
        check_n_components(init.n_components, X.shape[0])
        if init.n_features != X.shape[1]:
            raise InvalidParameterError(
                f"initial means have {init.n_features} features but the data has {X.shape[1]}"
            )
        if int(n_iter) < 1:
            raise InvalidParameterError(f"n_iter must be >= 1; got {n_iter}")
        if tol is not None and not tol >= 0:
            raise InvalidParameterError(f"tol must be >= 0; got {tol}")
        return self._fit(X, init, int(n_iter), float(reg_covar), tol)

    @abc.abstractmethod
    def _fit(
        self, X: np.ndarray, init: GMMParams, n_iter: int, reg_covar: float, tol: float | None
    ) -> LibraryFit:
        """The library call; arguments already checked."""

    def agreement(
        self, result: LibraryFit, init: GMMParams, reg_covar: float = REG_COVAR
    ) -> Agreement:
        """Compare ``result`` with the reference run for as many iterations from ``init``."""
        ref_reg = reg_covar if self.reference_reg_covar is None else self.reference_reg_covar
        expected, loglik = reference_fit(self.X, init, result.iterations, ref_reg)
        return Agreement(
            scaled_difference(result.params, expected),
            abs(result.mean_loglik - loglik) if math.isfinite(result.mean_loglik) else math.inf,
            self.tolerance,
            ref_reg,
            self.tolerance_note,
        )

    # A whole fit has no steps: the driver and the measurement process check whole_fit.
    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        raise NotImplementedError(
            f"strategy {self.name!r} is a whole-fit library strategy: it has no E-step"
        )

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        raise NotImplementedError(
            f"strategy {self.name!r} is a whole-fit library strategy: it has no M-step"
        )
