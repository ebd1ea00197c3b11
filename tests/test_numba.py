"""The ``numba`` strategy: fixed chunk grid, bitwise thread independence, its cache."""

from __future__ import annotations

import numpy as np
import pytest

import strategies
from harness.model.gmm import derive, initial_params
from tests.conftest import make_blobs

pytestmark = pytest.mark.skipif(
    not strategies.get_info("numba").available, reason=strategies.get_info("numba").reason
)


def test_chunk_grid_is_the_openmp_one() -> None:
    from kernels import numba_em

    gmm_kernels = pytest.importorskip("kernels.gmm_kernels")
    for n, d, k in [(480, 3, 4), (4_000_000, 2, 4), (130_000, 2, 50), (200_000, 32, 8), (7, 2, 2)]:
        assert numba_em.chunk_rows(n, d, k) == gmm_kernels.chunk_rows(n, d, k)
        assert numba_em.block_rows(d, k) == gmm_kernels.block_rows(d, k)


def test_exp_is_accurate_and_flushes_underflow() -> None:
    from kernels import numba_em

    compiled = numba_em.build()
    # 4006 values: 500 vectors of LANES, then 6 one by one (the float64 code path).
    x = np.concatenate([np.linspace(-707, 709, 4001), [-1.0, 0.0, 1.0, -800.0, -1e6]])
    out = np.empty_like(x)
    compiled.vector_exp(x, out)
    np.testing.assert_allclose(out[:-2], np.exp(x[:-2]), rtol=4e-16, atol=0)
    assert out[-2] == 0.0 and out[-1] == 0.0
    assert out[-5] == pytest.approx(np.exp(-1.0), rel=1e-15)
    # The vector code path: underflow, -inf and NaN inside one vector.
    special = np.array([-708.5, -745.2, -1e6, -np.inf, np.nan, 0.0, -1.0, 709.0])
    out = np.empty_like(special)
    compiled.vector_exp(special, out)
    assert np.all(out[:4] == 0.0) and np.isnan(out[4]) and out[5] == 1.0
    np.testing.assert_allclose(out[6:], np.exp(special[6:]), rtol=4e-16, atol=0)


def test_log_is_accurate() -> None:
    from kernels import numba_em

    x = np.concatenate([np.geomspace(1e-300, 1e300, 100_001), [1.0, 2.0, np.sqrt(2.0)]])
    out = np.empty_like(x)
    numba_em.build().vector_log(x, out)
    np.testing.assert_allclose(out, np.log(x), rtol=4e-16, atol=2e-16)
    assert out[-3] == 0.0


@pytest.mark.parametrize("d", [2, 3])  # 2 has its own kernel
def test_statistics_are_bitwise_equal_at_one_and_two_threads(d: int) -> None:
    X = make_blobs(n=6000, d=d, k=4, seed=2)
    derived = derive(initial_params(X, 4, seed=1))
    results = []
    for workers in (1, 2):
        with strategies.create("numba", workers=workers) as strategy:
            strategy.prepare(X)
            stats, loglik = strategy.fused_iteration(derived)
            log_resp, e_loglik = strategy.e_step(derived)
            m_stats = strategy.m_step(log_resp)
            info = strategy.runtime_info()
        results.append((stats, loglik, log_resp, e_loglik, m_stats))
        assert info["threads_used"] == workers
    assert info["threading_layer"] in {"omp", "tbb", "workqueue"}
    assert info["compile_from"] in {"cached", "cold"} and info["compile_seconds"] > 0
    assert X.shape[0] // info["chunk_size"] >= 2  # several chunks, so threads share work
    (a, la, ra, ea, ma), (b, lb, rb, eb, mb) = results
    for left, right in ((a, b), (ma, mb)):
        assert np.array_equal(left.mass, right.mass)
        assert np.array_equal(left.means, right.means)
        assert np.array_equal(left.scatter, right.scatter)
    assert la == lb and ea == eb
    assert np.array_equal(ra, rb)


def test_a_changed_compile_option_never_reuses_cached_code(tmp_path) -> None:
    from kernels import numba_em

    def run(options):
        compiled = numba_em.build(options, cache_root=tmp_path)
        out = np.empty(3)
        compiled.vector_exp(np.zeros(3), out)
        assert out.tolist() == [1.0, 1.0, 1.0]
        stats = compiled.vector_exp.stats
        return compiled.cache_dir, sum(stats.cache_hits.values()), sum(stats.cache_misses.values())

    strict, fast = numba_em.Options(), numba_em.Options(fastmath=True)
    strict_dir, hits, misses = run(strict)
    assert (hits, misses) == (0, 1)
    fast_dir, hits, misses = run(fast)
    assert fast_dir != strict_dir
    assert (hits, misses) == (0, 1)  # compiled afresh, not the strict build from the cache
    saved = dict(numba_em._BUILT)
    numba_em._BUILT.clear()  # as a new process would: fresh dispatchers, same disk cache
    try:
        _, hits, misses = run(strict)
        assert (hits, misses) == (1, 0)
    finally:
        numba_em._BUILT.clear()
        numba_em._BUILT.update(saved)


def test_read_only_data_and_parameters_compile_nothing_after_prepare() -> None:
    # Derived parameters are read-only arrays, and so may the data be: Numba compiles a
    # separate specialisation for read-only arrays, which must happen in prepare.
    X = make_blobs(n=3000, d=2, k=3, seed=4)
    X.setflags(write=False)
    derived = derive(initial_params(X, 3, seed=0))
    with strategies.create("numba", workers=2) as strategy:
        strategy.prepare(X)
        run_chunks = strategy.compiled.run_chunks
        signatures = list(run_chunks.signatures)
        strategy.fused_iteration(derived)
        log_resp, _ = strategy.e_step(derived)
        log_resp.setflags(write=False)
        strategy.m_step(log_resp)
        assert run_chunks.signatures == signatures
        info = strategy.runtime_info()
    assert info["numba_init_seconds"] >= 0 and info["numba_import_seconds"] >= 0


def test_missing_numba_is_unavailable_with_the_install_command(monkeypatch) -> None:
    import importlib.util

    from strategies.numba_chunks import NumbaStrategy

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a)
    )
    reason = NumbaStrategy.unavailable_reason()
    assert reason is not None and "numba is not installed" in reason and ".[numba]" in reason
