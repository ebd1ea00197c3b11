"""Shared fixtures: small deterministic data sets and the registry parametrisation."""

from __future__ import annotations

import numpy as np
import pytest

import strategies
from harness.model.gmm import GMMParams, initial_params


def registry_params(parallel_workers: bool = False, problem: str = "gmm") -> list:
    """One pytest param per registered strategy of ``problem`` (and per worker count for
    parallel ones).

    Unavailable strategies are kept as params and skipped with the registry's reason, so
    the test report says why they did not run instead of silently dropping them.
    """
    params = []
    for name, info in strategies.registry(problem).items():
        worker_counts = (
            [1, 2] if (parallel_workers and info.cls is not None and info.cls.parallel) else [1]
        )
        marks = [] if info.available else [pytest.mark.skip(reason=f"{name}: {info.reason}")]
        for workers in worker_counts:
            ident = name if len(worker_counts) == 1 else f"{name}-w{workers}"
            params.append(pytest.param((name, workers), id=ident, marks=marks))
    return params


def make_blobs(
    n: int = 480, d: int = 3, k: int = 4, seed: int = 7, shift: float = 0.0
) -> np.ndarray:
    """Well-separated but overlapping Gaussian blobs with random full covariances."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 4.0, size=(k, d))
    labels = np.arange(n) % k
    mixing = rng.normal(size=(k, d, d)) * 0.6 + np.eye(d)
    X = centres[labels] + np.einsum("nd,nde->ne", rng.standard_normal((n, d)), mixing[labels])
    return np.ascontiguousarray(X + shift)


@pytest.fixture(scope="session")
def blobs() -> np.ndarray:
    return make_blobs()


@pytest.fixture(scope="session")
def blobs_init(blobs: np.ndarray) -> GMMParams:
    return initial_params(blobs, 4, seed=3)
