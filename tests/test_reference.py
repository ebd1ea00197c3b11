"""The reference maths against scikit-learn, and the statistics algebra it relies on."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from harness.model.gmm import (
    GMMParams,
    SufficientStats,
    derive,
    initial_params,
    params_from_stats,
    reference_e_step,
    reference_m_step,
)
from harness.model.workloads import WORKLOADS, make_workload
from harness.sweep.em import fit
from tests.conftest import make_blobs
from tests.test_strategies import ReferenceStrategy


@pytest.mark.parametrize(("d", "k", "iterations"), [(2, 4, 1), (3, 4, 7), (8, 3, 5)])
def test_reference_matches_sklearn_from_same_start(d: int, k: int, iterations: int) -> None:
    X = make_blobs(n=900, d=d, k=k, seed=d)
    init = initial_params(X, k, seed=1)
    model = GaussianMixture(
        n_components=k,
        covariance_type="full",
        weights_init=init.weights,
        means_init=init.means,
        precisions_init=np.linalg.inv(init.covariances),
        max_iter=iterations,
        tol=0.0,
        n_init=1,
        reg_covar=1e-6,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    with ReferenceStrategy() as reference:
        ours = fit(reference, X, init, max_iter=iterations)
    np.testing.assert_allclose(ours.final.weights, model.weights_, rtol=1e-8)
    np.testing.assert_allclose(ours.final.means, model.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.final.covariances, model.covariances_, rtol=1e-8, atol=1e-10)
    assert ours.loglik[-1] == pytest.approx(model.lower_bound_, rel=1e-10)


def test_e_step_matches_sklearn_log_resp() -> None:
    X = make_blobs(n=300, d=3, k=3, seed=4)
    params = initial_params(X, 3, seed=2)
    derived = derive(params)
    model = GaussianMixture(n_components=3, covariance_type="full")
    model.weights_, model.means_ = params.weights, params.means
    model.precisions_cholesky_ = derived.precision_cholesky
    log_prob_norm, expected = model._estimate_log_prob_resp(X)
    log_resp, loglik = reference_e_step(X, derived)
    np.testing.assert_allclose(log_resp, expected, rtol=1e-10, atol=1e-10)
    assert loglik == pytest.approx(log_prob_norm.mean(), rel=1e-12)


def test_chunk_merge_equals_whole_pass() -> None:
    X = make_blobs(n=1000, d=3, k=3, seed=9, shift=1e5)
    params = initial_params(X, 3, seed=0)
    log_resp, _ = reference_e_step(X, derive(params))
    whole = reference_m_step(X, log_resp)
    bounds = [0, 13, 400, 401, 777, 1000]
    parts = [reference_m_step(X[a:b], log_resp[a:b]) for a, b in itertools.pairwise(bounds)]
    merged = SufficientStats.merge_all(parts)
    assert merged.n_points == 1000
    np.testing.assert_allclose(merged.mass, whole.mass, rtol=1e-12)
    np.testing.assert_allclose(merged.means, whole.means, rtol=1e-12)
    np.testing.assert_allclose(merged.scatter, whole.scatter, rtol=1e-9)


def test_shifted_sums_give_centred_stats_far_from_origin() -> None:
    X = make_blobs(n=500, d=2, k=2, seed=3, shift=1e6)
    params = initial_params(X, 2, seed=0)
    log_resp, _ = reference_e_step(X, derive(params))
    resp = np.exp(log_resp)
    shift = params.means
    diffs = X[:, None, :] - shift[None]
    stats = SufficientStats.from_shifted_sums(
        resp.sum(axis=0),
        np.einsum("nk,nkd->kd", resp, diffs),
        np.einsum("nk,nki,nkj->kij", resp, diffs, diffs),
        shift,
        X.shape[0],
    )
    expected = reference_m_step(X, log_resp)
    np.testing.assert_allclose(stats.means, expected.means, rtol=1e-12)
    np.testing.assert_allclose(stats.scatter, expected.scatter, rtol=1e-7)


def test_merge_with_empty_part_is_identity() -> None:
    X = make_blobs(n=200, d=2, k=2)
    log_resp, _ = reference_e_step(X, derive(initial_params(X, 2)))
    stats = reference_m_step(X, log_resp)
    merged = stats.merge(SufficientStats.empty(2, 2))
    np.testing.assert_allclose(merged.means, stats.means)
    np.testing.assert_allclose(merged.scatter, stats.scatter)


def test_derive_rejects_non_positive_definite_covariance() -> None:
    from harness.model.errors import NumericalError

    params = GMMParams(np.array([1.0]), np.zeros((1, 2)), np.array([[[1.0, 2.0], [2.0, 1.0]]]))
    with pytest.raises(NumericalError, match="not positive definite"):
        derive(params)


def test_derive_names_the_component_that_is_not_positive_definite() -> None:
    from harness.model.errors import NumericalError

    covariances = np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]], np.eye(2)])
    params = GMMParams(np.full(3, 1 / 3), np.zeros((3, 2)), covariances)
    with pytest.raises(NumericalError, match="component 1 is not positive definite"):
        derive(params)
    covariances = covariances.copy()  # GMMParams froze the array it was given
    covariances[1] = np.nan
    with pytest.raises(NumericalError, match="component 1 is not finite"):
        derive(GMMParams(np.full(3, 1 / 3), np.zeros((3, 2)), covariances))


@pytest.mark.parametrize(("d", "k"), [(2, 50), (32, 8), (5, 3)])
def test_batched_derive_matches_per_component_scipy(d: int, k: int) -> None:
    """derive factorises the stacked covariances at once; SciPy one by one is the check."""
    from scipy import linalg

    rng = np.random.default_rng(d * k)
    factors = rng.normal(size=(k, d, d))
    covariances = np.einsum("kij,klj->kil", factors, factors) + 1e-6 * np.eye(d)
    covariances[0] *= 1e4  # a badly scaled component too
    derived = derive(GMMParams(np.full(k, 1 / k), rng.normal(size=(k, d)), covariances))
    for j in range(k):
        lower = linalg.cholesky(covariances[j], lower=True)
        precision = linalg.solve_triangular(lower, np.eye(d), lower=True).T
        np.testing.assert_allclose(derived.cov_cholesky[j], lower, rtol=1e-8, atol=0)
        scale = np.abs(precision).max()
        np.testing.assert_allclose(
            derived.precision_cholesky[j], precision, rtol=1e-8, atol=1e-12 * scale
        )
        assert np.array_equal(np.tril(derived.precision_cholesky[j], -1), np.zeros((d, d)))
        expected = np.log(np.diag(precision)).sum()
        assert derived.log_det_precision_cholesky[j] == pytest.approx(expected, rel=1e-10)


def test_params_from_stats_adds_reg_covar() -> None:
    stats = SufficientStats(np.array([10.0]), np.zeros((1, 2)), np.zeros((1, 2, 2)), 10)
    previous = GMMParams(np.array([1.0]), np.zeros((1, 2)), np.eye(2)[None])
    params = params_from_stats(stats, previous)
    np.testing.assert_allclose(params.covariances[0], 1e-6 * np.eye(2))
    assert params.collapsed == ()


def test_initialisation_is_deterministic() -> None:
    X = make_blobs(n=500, d=2, k=3)
    first, second = initial_params(X, 3, seed=5), initial_params(X, 3, seed=5)
    np.testing.assert_array_equal(first.means, second.means)
    assert not np.array_equal(first.means, initial_params(X, 3, seed=6).means)
    np.testing.assert_allclose(first.weights, 1 / 3)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workloads_are_deterministic_and_shaped(name: str) -> None:
    spec = WORKLOADS[name]
    first = make_workload(name, n=1000, seed=3)
    again = make_workload(name, n=1000, seed=3)
    other = make_workload(name, n=1000, seed=4)
    assert first.X.shape == (1000, spec.d) and first.k == spec.k
    assert first.X.dtype == np.float64 and first.X.flags.c_contiguous
    np.testing.assert_array_equal(first.X, again.X)
    assert not np.array_equal(first.X, other.X)


def test_schreiber_blobs_are_shifted_by_five() -> None:
    data = make_workload("schreiber", n=40_000, seed=0)
    quarter = data.n // 4
    for i in range(4):
        block = data.X[i * quarter : (i + 1) * quarter]
        np.testing.assert_allclose(block.mean(axis=0), [5.0 * i] * 2, atol=0.05)
        np.testing.assert_allclose(block.std(axis=0), [1.0, 1.0], atol=0.05)
