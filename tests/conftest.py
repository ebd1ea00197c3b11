"""Shared fixtures: small deterministic data sets, the registry parametrisation, and
results folders written the way the runner writes them (:func:`write_run_folder`).

Also how the suite shares out between pytest-xdist workers (``-n`` in pyproject.toml):
tests that read one expensive module or session fixture (a sweep, a cluster) are kept
on one worker, which builds it once, and tests marked ``exclusive`` run while no other
test runs (:func:`_exclusive_or_shared`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import strategies
from harness.model.gmm import GMMParams, initial_params
from harness.sweep.results import COLUMNS, META_FILE, SCHEMA_VERSION, TABLE_FILE

#: Why whole-fit strategies skip the tests of single steps.
WHOLE_FIT_REASON = (
    "whole-fit library strategy: no E/M split to test step by step "
    "(its whole fit is tested against the reference in test_library.py and below)"
)


def registry_params(
    parallel_workers: bool = False, problem: str = "gmm", *, steps: bool = False
) -> list:
    """One pytest param per registered strategy of ``problem`` (and per worker count for
    parallel ones).

    Unavailable strategies are kept as params and skipped with the registry's reason, so
    the test report says why they did not run instead of silently dropping them. With
    ``steps`` (a test that calls ``e_step``/``m_step``), whole-fit library strategies
    are skipped with :data:`WHOLE_FIT_REASON`.
    """
    params = []
    for name, info in strategies.registry(problem).items():
        worker_counts = (
            [1, 2] if (parallel_workers and info.cls is not None and info.cls.parallel) else [1]
        )
        marks = [] if info.available else [pytest.mark.skip(reason=f"{name}: {info.reason}")]
        if steps and info.cls is not None and info.cls.whole_fit:
            marks.append(pytest.mark.skip(reason=f"{name}: {WHOLE_FIT_REASON}"))
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


# ---- sharing out between xdist workers ---------------------------------------------------

#: Fixtures that cost seconds to build: every test that uses one goes to the same
#: xdist worker (``--dist loadgroup``), so that it is built once, not once per worker.
SHARED_FIXTURES = ("tiny_run", "micro_run", "complete_run", "dask_cluster_address")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups from the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = [name for name in SHARED_FIXTURES if name in item.fixturenames]
        callspec = getattr(item, "callspec", None)
        spec = callspec.params.get("strategy_spec") if callspec is not None else None
        if isinstance(spec, tuple) and spec and spec[0] == "dask":
            names.append("dask_cluster_address")  # through _dask_strategy_on_shared_cluster
        if names:
            item.add_marker(pytest.mark.xdist_group(names[0]))


@pytest.fixture(autouse=True)
def _exclusive_or_shared(request: pytest.FixtureRequest, tmp_path_factory) -> None:
    """A test marked ``exclusive`` holds a lock that every other test holds shared.

    The lock file is common to the xdist workers of one run (their base temporary
    folder's parent), so an exclusive test (one that loads every CPU on purpose, say)
    waits for the test running beside it and keeps the next one waiting until it ends.
    Without xdist there is one test at a time anyway.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        yield
        return
    lock_path = tmp_path_factory.getbasetemp().parent / "exclusive.lock"
    exclusive = request.node.get_closest_marker("exclusive") is not None
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)


# ---- results folders ------------------------------------------------------------------


def blank_row(**fields: Any) -> dict[str, Any]:
    """A row of the tidy table: every column of :data:`COLUMNS` empty but ``fields``."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    row.update(fields)
    return row


def write_run_folder(
    path: Path, rows: list[dict[str, Any]] | pd.DataFrame, meta: dict[str, Any] | None = None
) -> Path:
    """A results folder as the runner leaves it: ``results.csv`` and ``meta.json``.

    ``rows`` become the table with the columns of :data:`COLUMNS` in order; a
    DataFrame is written as it is (to test tables that lack columns). ``meta`` is
    merged over ``{"schema_version": SCHEMA_VERSION, "run_id": <folder name>}``.
    """
    path.mkdir(parents=True, exist_ok=True)
    table = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=list(COLUMNS))
    table.to_csv(path / TABLE_FILE, index=False)
    document = {"schema_version": SCHEMA_VERSION, "run_id": path.name, **(meta or {})}
    (path / META_FILE).write_text(json.dumps(document))
    return path
