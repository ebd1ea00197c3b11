"""The EM driver: runs any strategy for a number of iterations or to convergence.

It uses strategies through the interface of :mod:`strategies.base` only, and times
the iterations for the caller; it writes nothing and knows no results folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harness.model.errors import InvalidParameterError, NumericalError
from harness.model.gmm import REG_COVAR, GMMParams, derive, params_from_stats
from harness.model.threads import limit_blas
from harness.model.validation import check_data, check_n_components
from strategies.base import Strategy


@dataclass
class FitResult:
    """What one fit did.

    Attributes
    ----------
    init, final : GMMParams
    loglik : list of float
        Mean log-likelihood computed in each iteration's E-step (of the parameters
        that iteration started from, as scikit-learn's ``lower_bound_``).
    iteration_seconds : list of float
        Wall time of each full iteration (E-step + M-step statistics + parameter update).
    prepare_seconds : float
    converged : bool
    used_fused : bool
        The fused one-pass iteration was used.
    collapsed : list of tuple
        ``(iteration, components)`` each time components were floored.
    runtime_info : dict
        The strategy's own report of what ran.
    """

    strategy: str
    workers: int
    init: GMMParams
    final: GMMParams
    loglik: list[float] = field(default_factory=list)
    iteration_seconds: list[float] = field(default_factory=list)
    prepare_seconds: float = 0.0
    converged: bool = False
    used_fused: bool = False
    collapsed: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    runtime_info: dict[str, object] = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        return len(self.iteration_seconds)


def em_iteration(
    strategy: Strategy,
    params: GMMParams,
    *,
    fused: bool,
    reg_covar: float = REG_COVAR,
) -> tuple[GMMParams, float]:
    """One EM iteration with a prepared strategy: derive, E-step, M-step, update."""
    derived = derive(params)
    if fused:
        stats, loglik = strategy.fused_iteration(derived)
    else:
        log_resp, loglik = strategy.e_step(derived)
        stats = strategy.m_step(log_resp)
    if not np.isfinite(loglik):
        raise NumericalError(f"strategy {strategy.name!r} returned a non-finite log-likelihood")
    return params_from_stats(stats, params, reg_covar), float(loglik)


def fit(
    strategy: Strategy,
    X: np.ndarray,
    init: GMMParams,
    *,
    max_iter: int = 10,
    tol: float | None = None,
    use_fused: bool | None = None,
    reg_covar: float = REG_COVAR,
    on_iteration: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Fit a Gaussian mixture with ``strategy`` from ``init``.

    Parameters
    ----------
    strategy : Strategy
        Not yet prepared; it is prepared here (timed apart) and left open, so the
        caller's ``with`` block decides when it is closed.
    X : array_like, shape (n, d)
    init : GMMParams
    max_iter : int
        Iterations to run at most.
    tol : float or None
        Stop when the mean log-likelihood changes by less than ``tol`` between two
        iterations (scikit-learn's rule). None runs exactly ``max_iter`` iterations.
    use_fused : bool or None
        Use the fused iteration; None means "when the strategy has one".
    on_iteration : callable(iteration, loglik, seconds), optional
        Progress callback.

    Returns
    -------
    FitResult
    """
    X = check_data(X)
    check_n_components(init.n_components, X.shape[0])
    if init.n_features != X.shape[1]:
        raise InvalidParameterError(
            f"initial means have {init.n_features} features but the data has {X.shape[1]}"
        )
    if max_iter < 1:
        raise InvalidParameterError(f"max_iter must be >= 1; got {max_iter}")
    if tol is not None and not tol >= 0:
        raise InvalidParameterError(f"tol must be >= 0; got {tol}")
    fused = strategy.has_fused_iteration if use_fused is None else bool(use_fused)
    if fused and not strategy.has_fused_iteration:
        raise InvalidParameterError(f"strategy {strategy.name!r} has no fused iteration")

    result = FitResult(strategy.name, strategy.workers, init, init, used_fused=fused)
    with limit_blas(strategy.blas_threads()):
        start = time.perf_counter()
        strategy.prepare(X)
        result.prepare_seconds = time.perf_counter() - start
        params = init
        previous_loglik = -np.inf
        for iteration in range(max_iter):
            start = time.perf_counter()
            params, loglik = em_iteration(strategy, params, fused=fused, reg_covar=reg_covar)
            seconds = time.perf_counter() - start
            result.iteration_seconds.append(seconds)
            result.loglik.append(loglik)
            if params.collapsed:
                result.collapsed.append((iteration, params.collapsed))
            if on_iteration is not None:
                on_iteration(iteration, loglik, seconds)
            if tol is not None and abs(loglik - previous_loglik) < tol:
                result.converged = True
                break
            previous_loglik = loglik
        result.final = params
        result.runtime_info = dict(strategy.runtime_info())
    return result
