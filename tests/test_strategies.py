"""Every registered strategy against the NumPy reference (parametrised over the registry).

A new strategy added to ``strategies/__init__.py`` is picked up here automatically.
Whole-fit (``library``) strategies have no E-step or M-step: the tests of single steps
skip them with the reason; the tests of whole fits run them against the reference
under the library's own regularisation and within its stated tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import strategies
from harness.model.gmm import (
    REG_COVAR,
    CollapsedComponentWarning,
    GMMParams,
    derive,
    params_from_stats,
    reference_e_step,
    reference_m_step,
)
from harness.sweep.em import fit
from strategies.base import Strategy
from tests.conftest import make_blobs, registry_params

RTOL = 1e-8


class ReferenceStrategy(Strategy):
    """The oracle run through the same driver."""

    name = "reference"

    def e_step(self, derived):
        return reference_e_step(self.X, derived)

    def m_step(self, log_resp):
        return reference_m_step(self.X, log_resp)


def _after_two_iterations(X: np.ndarray, init: GMMParams) -> GMMParams:
    """Parameters a little way into a fit, so the steps are tested off the initial point."""
    with ReferenceStrategy() as reference:
        return fit(reference, X, init, max_iter=2).final


def _assert_params_close(actual: GMMParams, expected: GMMParams, rtol: float = RTOL) -> None:
    scale_means = np.abs(expected.means).max()
    scale_cov = np.abs(expected.covariances).max()
    np.testing.assert_allclose(actual.weights, expected.weights, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(actual.means, expected.means, rtol=rtol, atol=rtol * scale_means)
    np.testing.assert_allclose(
        actual.covariances, expected.covariances, rtol=rtol, atol=rtol * scale_cov
    )


def _library_terms(name: str) -> tuple[float, float]:
    """``(reg_covar of the reference, rtol)`` a strategy's whole fit is held to."""
    cls = strategies.get_strategy(name)
    if not cls.whole_fit:
        return REG_COVAR, RTOL
    reg = REG_COVAR if cls.reference_reg_covar is None else cls.reference_reg_covar
    return reg, cls.tolerance


def test_core_strategies_are_available() -> None:
    for name in ("python", "scipy", "einsum", "sklearn"):
        assert strategies.get_info(name).available, strategies.get_info(name).reason


@pytest.mark.parametrize("strategy_spec", registry_params(parallel_workers=True, steps=True))
def test_e_step_matches_reference(strategy_spec, blobs, blobs_init) -> None:
    name, workers = strategy_spec
    params = _after_two_iterations(blobs, blobs_init)
    derived = derive(params)
    expected_log_resp, expected_loglik = reference_e_step(blobs, derived)
    with strategies.create(name, workers=workers) as strategy:
        strategy.prepare(blobs)
        log_resp, loglik = strategy.e_step(derived)
        log_resp = np.array(log_resp)
    assert log_resp.shape == expected_log_resp.shape
    np.testing.assert_allclose(np.exp(log_resp), np.exp(expected_log_resp), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0, rtol=1e-12)
    assert loglik == pytest.approx(expected_loglik, rel=1e-10)


@pytest.mark.parametrize("strategy_spec", registry_params(parallel_workers=True, steps=True))
def test_m_step_matches_reference(strategy_spec, blobs, blobs_init) -> None:
    name, workers = strategy_spec
    params = _after_two_iterations(blobs, blobs_init)
    log_resp, _ = reference_e_step(blobs, derive(params))
    expected = params_from_stats(reference_m_step(blobs, log_resp), params)
    with strategies.create(name, workers=workers) as strategy:
        strategy.prepare(blobs)
        stats = strategy.m_step(log_resp.copy())
    assert stats.n_points == blobs.shape[0]
    np.testing.assert_allclose(stats.mass, np.exp(log_resp).sum(axis=0), rtol=1e-10)
    _assert_params_close(params_from_stats(stats, params), expected)


@pytest.mark.parametrize("strategy_spec", registry_params(parallel_workers=True))
def test_ten_iteration_fit_matches_reference(strategy_spec, blobs, blobs_init) -> None:
    name, workers = strategy_spec
    reg_covar, rtol = _library_terms(name)
    with ReferenceStrategy() as reference:
        expected = fit(reference, blobs, blobs_init, max_iter=10, reg_covar=reg_covar)
    with strategies.create(name, workers=workers) as strategy:
        result = fit(strategy, blobs, blobs_init, max_iter=10)
    assert result.iterations == 10
    assert len(result.iteration_seconds) == 10
    _assert_params_close(result.final, expected.final, rtol)
    if result.whole_fit:  # a library reports the final log-likelihood only
        assert result.loglik == pytest.approx(expected.loglik[-1:], rel=rtol)
    else:
        np.testing.assert_allclose(result.loglik, expected.loglik, rtol=1e-10)


@pytest.mark.parametrize("strategy_spec", registry_params())
def test_fused_iteration_matches_separate_steps(strategy_spec, blobs, blobs_init) -> None:
    name, workers = strategy_spec
    cls = strategies.get_strategy(name)
    if not cls.has_fused_iteration:
        pytest.skip(f"{name} has no fused iteration")
    with ReferenceStrategy() as reference:
        expected = fit(reference, blobs, blobs_init, max_iter=5)
    with strategies.create(name, workers=workers) as strategy:
        fused = fit(strategy, blobs, blobs_init, max_iter=5, use_fused=True)
    assert fused.used_fused
    _assert_params_close(fused.final, expected.final)


@pytest.mark.parametrize("strategy_spec", registry_params())
def test_far_from_origin_gives_same_responsibilities(strategy_spec) -> None:
    """Uncentred one-pass covariance formulas fail this; centred ones do not."""
    name, workers = strategy_spec
    shift = 1e4
    X = make_blobs(n=400, d=2, k=3, seed=11)
    init = GMMParams(np.full(3, 1 / 3), X[[0, 1, 2]], np.broadcast_to(np.cov(X.T), (3, 2, 2)))
    shifted_init = GMMParams(init.weights, init.means + shift, init.covariances)
    with strategies.create(name, workers=workers) as strategy:
        near = fit(strategy, X, init, max_iter=8)
        far = fit(strategy, X + shift, shifted_init, max_iter=8)
    np.testing.assert_allclose(far.final.means - shift, near.final.means, atol=1e-6)
    np.testing.assert_allclose(far.final.covariances, near.final.covariances, rtol=1e-6, atol=1e-8)
    resp_near, _ = reference_e_step(X, derive(near.final))
    resp_far, _ = reference_e_step(X + shift, derive(far.final))
    np.testing.assert_allclose(np.exp(resp_far), np.exp(resp_near), atol=1e-6)


@pytest.mark.parametrize("strategy_spec", registry_params(steps=True))
def test_far_points_do_not_underflow_to_nan(strategy_spec) -> None:
    """exp before normalising gives 0/0 = NaN for points far from every component."""
    name, workers = strategy_spec
    X = make_blobs(n=200, d=2, k=2, seed=5)
    X[:3] = [[1e3, -1e3], [-2e3, 5e2], [4e3, 4e3]]
    params = GMMParams(
        np.array([0.5, 0.5]),
        np.array([[0.0, 0.0], [3.0, 3.0]]),
        np.broadcast_to(np.eye(2), (2, 2, 2)),
    )
    with strategies.create(name, workers=workers) as strategy:
        strategy.prepare(X)
        log_resp, loglik = strategy.e_step(derive(params))
    resp = np.exp(np.asarray(log_resp))
    assert np.isfinite(resp).all()
    # log densities near -1e6 carry ~1e-10 absolute rounding into the normalised values
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-9)
    assert np.isfinite(loglik)


@pytest.mark.parametrize("strategy_spec", registry_params(steps=True))
def test_empty_component_is_floored_not_nan(strategy_spec, blobs, blobs_init) -> None:
    name, workers = strategy_spec
    log_resp, _ = reference_e_step(blobs, derive(blobs_init))
    log_resp[:, 0] = -np.inf  # component 0 gets no point at all
    log_resp[:, 1:] -= np.log(np.exp(log_resp[:, 1:]).sum(axis=1, keepdims=True))
    with strategies.create(name, workers=workers) as strategy:
        strategy.prepare(blobs)
        stats = strategy.m_step(log_resp)
    with pytest.warns(CollapsedComponentWarning):
        params = params_from_stats(stats, blobs_init)
    assert params.collapsed == (0,)
    for value in (params.weights, params.means, params.covariances):
        assert np.isfinite(value).all()
    assert params.weights[0] > 0
    np.testing.assert_allclose(params.means[0], blobs_init.means[0])
    derive(params)  # still positive definite


@pytest.mark.parametrize("strategy_spec", registry_params())
def test_constant_column_stays_finite(strategy_spec) -> None:
    name, workers = strategy_spec
    X = make_blobs(n=300, d=3, k=2, seed=2)
    X[:, 1] = 4.0  # singular covariance without reg_covar
    init = GMMParams(
        np.array([0.5, 0.5]), X[[0, 1]], np.broadcast_to(np.cov(X.T) + 1e-6 * np.eye(3), (2, 3, 3))
    )
    with strategies.create(name, workers=workers) as strategy, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = fit(strategy, X, init, max_iter=5)
    for value in (result.final.weights, result.final.means, result.final.covariances):
        assert np.isfinite(value).all()
    assert np.isfinite(result.loglik).all()
    # the constant column's variance is the regularisation: reg_covar, or for a library
    # without one (oneDAL) zero up to rounding
    reg_covar, _ = _library_terms(name)
    assert result.final.covariances[:, 1, 1].min() >= reg_covar * 0.999 - 1e-12


@pytest.mark.parametrize("strategy_spec", registry_params())
def test_read_only_and_non_contiguous_input(strategy_spec, blobs, blobs_init) -> None:
    name, workers = strategy_spec
    read_only = blobs.copy()
    read_only.setflags(write=False)
    fortran = np.asfortranarray(blobs)
    strided = np.repeat(blobs, 2, axis=0)[::2]
    float32_close = blobs.astype(np.float32)
    with ReferenceStrategy() as reference:
        expected = fit(reference, blobs, blobs_init, max_iter=3)
    reg_covar, rtol = _library_terms(name)
    if reg_covar != REG_COVAR:
        with ReferenceStrategy() as reference:
            expected = fit(reference, blobs, blobs_init, max_iter=3, reg_covar=reg_covar)
    for variant in (read_only, fortran, strided):
        with strategies.create(name, workers=workers) as strategy:
            result = fit(strategy, variant, blobs_init, max_iter=3)
        _assert_params_close(result.final, expected.final, rtol)
    with strategies.create(name, workers=workers) as strategy:
        result = fit(strategy, float32_close, blobs_init, max_iter=3)
    assert np.isfinite(result.final.means).all()
