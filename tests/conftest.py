"""Shared fixtures: small deterministic data sets and the registry parametrisation."""

from __future__ import annotations

import numpy as np
import pytest

import strategies
from harness.model.gmm import GMMParams, initial_params


def registry_params(parallel_workers: bool = False) -> list:
    """One pytest param per registered strategy (and per worker count for parallel ones).

    Unavailable strategies are kept as params and skipped with the registry's reason, so
    the test report says why they did not run instead of silently dropping them.
    """
    params = []
    for name, info in strategies.registry().items():
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


@pytest.fixture(scope="session")
def dask_cluster_address():
    """One loopback LocalCluster (2 worker processes, 1 thread each) shared by the session.

    Starting a cluster costs seconds; the registry-wide tests of the ``dask`` strategy
    reach this one through ``GMM_HARNESS_DASK_SCHEDULER`` instead of starting their own.
    """
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture(autouse=True)
def _dask_strategy_on_shared_cluster(request, monkeypatch):
    """Point registry-parametrised tests of ``dask`` at the session's cluster."""
    callspec = getattr(request.node, "callspec", None)
    spec = callspec.params.get("strategy_spec") if callspec is not None else None
    if isinstance(spec, tuple) and spec and spec[0] == "dask":
        monkeypatch.setenv(
            "GMM_HARNESS_DASK_SCHEDULER", request.getfixturevalue("dask_cluster_address")
        )
