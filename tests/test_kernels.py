"""The compiled kernels and the strategies over them.

Kernel level: the vectorised exp/log, each kernel against the NumPy reference across
the code paths (d = 1, 2 and > 2, k = 1 and many, n not a multiple of the block),
identical results on 1 and 2 threads, read-only and non-contiguous inputs, wrong
arguments. Strategy level: the thread count actually used, one joblib pool per fit,
and what happens without OpenMP or without the extension (in subprocesses, by the
environment flags, and one real build without OpenMP).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import strategies
from harness.model.errors import InvalidParameterError
from harness.model.gmm import (
    SufficientStats,
    derive,
    initial_params,
    reference_e_step,
    reference_m_step,
)
from harness.sweep.em import fit
from tests.conftest import make_blobs

ROOT = Path(__file__).resolve().parents[1]
COMPILED = ("cython", "openmp", "openmp-components", "joblib-threads")
RTOL = 1e-10


@pytest.fixture(scope="module")
def K():
    """The compiled module; these tests are skipped (with the reason) when it is not built."""
    import kernels

    reason = kernels.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return kernels.load()


def _model(n: int, d: int, k: int, seed: int = 0):
    X = make_blobs(n=n, d=d, k=max(k, 1), seed=seed)
    derived = derive(initial_params(X, k, seed=seed))
    return X, derived


def _kernel_sums(K, function, X, derived, threads, shift=None, log_resp=None):
    """Run ``fused`` or ``m_step`` and return (loglik_sum, SufficientStats, threads_used)."""
    k, d = derived.n_components, X.shape[1]
    shift = np.ascontiguousarray(derived.means) if shift is None else shift
    mass, shifted_sum, shifted_outer = np.empty(k), np.empty((k, d)), np.empty((k, d, d))
    if log_resp is None:
        loglik, used = function(
            X,
            derived.log_norm,
            derived.means,
            derived.precision_cholesky,
            shift,
            mass,
            shifted_sum,
            shifted_outer,
            threads,
        )
    else:
        loglik, used = None, function(X, log_resp, shift, mass, shifted_sum, shifted_outer, threads)
    stats = SufficientStats.from_shifted_sums(mass, shifted_sum, shifted_outer, shift, len(X))
    return loglik, stats, used


def _assert_stats_close(actual: SufficientStats, expected: SufficientStats) -> None:
    np.testing.assert_allclose(actual.mass, expected.mass, rtol=RTOL)
    np.testing.assert_allclose(
        actual.means, expected.means, rtol=RTOL, atol=RTOL * np.abs(expected.means).max()
    )
    np.testing.assert_allclose(
        actual.scatter, expected.scatter, rtol=RTOL, atol=RTOL * np.abs(expected.scatter).max()
    )


# ---- vectorised exp and log ---------------------------------------------------------------


def test_vector_exp_matches_numpy_and_flushes_underflow(K) -> None:
    x = np.concatenate([np.linspace(-708.0, 709.0, 100_001), [0.0, -1e-300, 1e-300]])
    out = np.empty_like(x)
    K.vector_exp(x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=4e-16, atol=0)
    assert out[-3] == 1.0
    tiny = np.array([-708.5, -745.2, -1e6, -np.inf])
    flushed = np.empty(4)
    K.vector_exp(tiny, flushed)
    assert np.all(flushed == 0.0)


def test_vector_exp_propagates_nan(K) -> None:
    out = np.empty(3)
    K.vector_exp(np.array([np.nan, 0.0, -1.0]), out)
    assert np.isnan(out[0]) and out[1] == 1.0


def test_vector_log_matches_numpy(K) -> None:
    x = np.concatenate([np.geomspace(1e-300, 1e300, 100_001), [1.0, 2.0, np.sqrt(2.0)]])
    out = np.empty_like(x)
    K.vector_log(x, out)
    np.testing.assert_allclose(out, np.log(x), rtol=4e-16, atol=2e-16)
    assert out[-3] == 0.0


def test_loading_the_kernels_leaves_subnormals_alone(K) -> None:
    # -ffast-math in a shared object would set flush-to-zero for the whole process.
    tiny = np.finfo(np.float64).tiny
    assert np.float64(tiny) / 2.0 > 0.0
    assert np.multiply(np.array([tiny]), 0.5)[0] > 0.0


# ---- kernels against the reference ----------------------------------------------------------


@pytest.mark.parametrize(("d", "k"), [(1, 3), (2, 4), (2, 1), (3, 5), (5, 2), (9, 3)])
def test_kernels_match_reference(K, d: int, k: int) -> None:
    n = 1_003  # not a multiple of any block size: the padded last block is exercised
    X, derived = _model(n, d, k, seed=d + k)
    ref_log_resp, ref_loglik = reference_e_step(X, derived)
    ref_stats = reference_m_step(X, ref_log_resp)

    log_resp = np.empty((n, k))
    loglik, _ = K.e_step(
        X, derived.log_norm, derived.means, derived.precision_cholesky, log_resp, 2
    )
    np.testing.assert_allclose(log_resp, ref_log_resp, rtol=RTOL, atol=1e-11)
    assert loglik / n == pytest.approx(ref_loglik, rel=1e-12)

    fused_loglik, fused_stats, _ = _kernel_sums(K, K.fused, X, derived, 2)
    assert fused_loglik / n == pytest.approx(ref_loglik, rel=1e-12)
    _assert_stats_close(fused_stats, ref_stats)

    _, m_stats, _ = _kernel_sums(K, K.m_step, X, derived, 2, log_resp=ref_log_resp)
    _assert_stats_close(m_stats, ref_stats)

    log_resp_c = np.empty((n, k))
    loglik_c, _ = K.e_step_components(
        X, derived.log_norm, derived.means, derived.precision_cholesky, log_resp_c, 2
    )
    np.testing.assert_allclose(log_resp_c, ref_log_resp, rtol=RTOL, atol=1e-11)
    assert loglik_c / n == pytest.approx(ref_loglik, rel=1e-12)
    _, c_stats, _ = _kernel_sums(K, K.m_step_components, X, derived, 2, log_resp=ref_log_resp)
    _assert_stats_close(c_stats, ref_stats)


def test_sums_stay_accurate_far_from_the_origin(K) -> None:
    # Shifted sums: data at 1e6 with unit spread must not lose the covariance.
    X, _ = _model(2_000, 2, 3)
    X = X + 1e6
    derived = derive(initial_params(X, 3, seed=1))
    ref_stats = reference_m_step(X, reference_e_step(X, derived)[0])
    _, stats, _ = _kernel_sums(K, K.fused, X, derived, 1)
    np.testing.assert_allclose(
        stats.scatter, ref_stats.scatter, rtol=1e-7, atol=1e-7 * np.abs(ref_stats.scatter).max()
    )


def test_kernels_ignore_noise_below_the_diagonal_of_P(K) -> None:
    X, derived = _model(500, 3, 2)
    noisy = derived.precision_cholesky + np.tril(np.full((3, 3), 0.5), -1)
    clean_log_resp, noisy_log_resp = np.empty((500, 2)), np.empty((500, 2))
    K.e_step(X, derived.log_norm, derived.means, derived.precision_cholesky, clean_log_resp, 1)
    K.e_step(X, derived.log_norm, derived.means, np.ascontiguousarray(noisy), noisy_log_resp, 1)
    np.testing.assert_array_equal(clean_log_resp, noisy_log_resp)


def test_padded_precision_is_cache_line_aligned(K) -> None:
    # SIMD row loads must not depend on where NumPy's allocator put the array
    for k, d, d4 in [(1, 2, 4), (4, 3, 4), (8, 32, 32), (3, 5, 8)]:
        padded = K._padded_precision(np.ones((k, d, d)), d4)
        assert padded.shape == (k, d, d4) and padded.flags.c_contiguous
        assert padded.ctypes.data % 64 == 0
        np.testing.assert_array_equal(padded[:, :, :d], np.triu(np.ones((k, d, d))))
        assert not padded[:, :, d:].any()


def test_one_and_two_threads_give_identical_results(K) -> None:
    if not K.openmp_enabled():
        pytest.skip(K.openmp_unavailable_reason())
    X, derived = _model(40_000, 3, 4)  # several chunks, so both threads get work
    runs = {}
    for threads in (1, 2):
        log_resp = np.empty((len(X), 4))
        loglik, used_e = K.e_step(
            X, derived.log_norm, derived.means, derived.precision_cholesky, log_resp, threads
        )
        fused_loglik, stats, used_f = _kernel_sums(K, K.fused, X, derived, threads)
        _, m_stats, used_m = _kernel_sums(K, K.m_step, X, derived, threads, log_resp=log_resp)
        runs[threads] = (log_resp, loglik, fused_loglik, stats, m_stats)
        assert used_e == used_f == used_m == threads
    (lr1, ll1, fl1, s1, m1), (lr2, ll2, fl2, s2, m2) = runs[1], runs[2]
    np.testing.assert_array_equal(lr1, lr2)
    assert ll1 == ll2 and fl1 == fl2
    for a, b in ((s1, s2), (m1, m2)):
        np.testing.assert_array_equal(a.mass, b.mass)
        np.testing.assert_array_equal(a.means, b.means)
        np.testing.assert_array_equal(a.scatter, b.scatter)


def test_chunk_grid_depends_on_shape_only(K) -> None:
    for d, k in ((2, 4), (2, 50), (32, 8), (1, 1)):
        block = K.block_rows(d, k)
        assert 32 <= block <= 256 and block % 8 == 0
        for n in (1, 1_000, 4_000_000):
            rows = K.chunk_rows(n, d, k)
            assert rows % block == 0
            assert -(-n // rows) <= 256  # at most MAX_CHUNKS chunks


def test_read_only_memmap_input(K, tmp_path: Path) -> None:
    X, derived = _model(3_000, 2, 3)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert not mapped.flags.writeable
    expected = _kernel_sums(K, K.fused, X, derived, 2)
    loglik, stats, _ = _kernel_sums(K, K.fused, mapped, derived, 2)
    assert loglik == expected[0]
    np.testing.assert_array_equal(stats.scatter, expected[1].scatter)
    for name in COMPILED:
        info = strategies.get_info(name)
        if not info.available:
            continue
        with strategies.create(name, 2) as strategy:
            result = fit(strategy, mapped, initial_params(X, 3), max_iter=2)
        assert np.isfinite(result.loglik).all()


def test_non_contiguous_input_fails_clearly_at_the_kernel_and_works_via_strategies(K) -> None:
    X, derived = _model(2_000, 2, 3)
    wide = np.asfortranarray(X)
    log_resp = np.empty((2_000, 3))
    with pytest.raises(ValueError, match="contiguous"):
        K.e_step(wide, derived.log_norm, derived.means, derived.precision_cholesky, log_resp, 1)
    strided = np.repeat(X, 2, axis=0)[::2]
    assert not strided.flags.c_contiguous
    init = initial_params(X, 3)
    with strategies.create("cython") as strategy:
        expected = fit(strategy, X, init, max_iter=3)
    for name in COMPILED:
        if not strategies.get_info(name).available:
            continue
        with strategies.create(name, 2) as strategy:
            result = fit(strategy, strided, init, max_iter=3)
        np.testing.assert_allclose(result.final.means, expected.final.means, rtol=1e-12)


def test_float32_input_is_converted_by_the_strategy(K) -> None:
    X, derived = _model(1_000, 2, 2)
    log_resp = np.empty((1_000, 2))
    with pytest.raises(ValueError, match="dtype"):
        K.e_step(
            X.astype(np.float32),
            derived.log_norm,
            derived.means,
            derived.precision_cholesky,
            log_resp,
            1,
        )
    with strategies.create("cython") as strategy:
        result = fit(strategy, X.astype(np.float32), initial_params(X, 2), max_iter=2)
    assert np.isfinite(result.loglik).all()


def test_wrong_shapes_raise_value_errors(K) -> None:
    X, derived = _model(100, 3, 2)
    args = (derived.log_norm, derived.means, derived.precision_cholesky)
    with pytest.raises(ValueError, match="log_resp_out"):
        K.e_step(X, *args, np.empty((100, 3)), 1)
    with pytest.raises(ValueError, match="features"):
        K.e_step(np.ascontiguousarray(X[:, :2]), *args, np.empty((100, 2)), 1)
    with pytest.raises(ValueError, match="num_threads"):
        K.e_step(X, *args, np.empty((100, 2)), 0)
    with pytest.raises(ValueError, match="shift"):
        K.fused(X, *args, np.zeros((3, 3)), np.empty(2), np.empty((2, 3)), np.empty((2, 3, 3)), 1)
    with pytest.raises(ValueError, match="rows"):
        K.m_step(
            X,
            np.zeros((99, 2)),
            np.zeros((2, 3)),
            np.empty(2),
            np.empty((2, 3)),
            np.empty((2, 3, 3)),
            1,
        )


def test_strategies_reject_mismatched_arguments(K) -> None:
    X, derived = _model(300, 3, 2)
    other = derive(initial_params(np.ascontiguousarray(X[:, :2]), 2))
    for name in COMPILED:
        if not strategies.get_info(name).available:
            continue
        with strategies.create(name, 2) as strategy:
            with pytest.raises(InvalidParameterError):
                strategy.e_step(derived)  # not prepared
            strategy.prepare(X)
            with pytest.raises(InvalidParameterError, match="features"):
                strategy.e_step(other)
            with pytest.raises(InvalidParameterError, match="shape"):
                strategy.m_step(np.zeros((10, 2)))


# ---- threads actually used -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["openmp", "openmp-components", "joblib-threads", "cython"])
@pytest.mark.parametrize("workers", [1, 2])
def test_thread_count_actually_used(K, name: str, workers: int) -> None:
    info = strategies.get_info(name)
    if not info.available:
        pytest.skip(info.reason)
    X, _ = _model(100_000, 2, 4)
    expected = 1 if name == "cython" else workers
    # OpenMP's team size is exact. joblib counts the pool threads that ran tasks: with a
    # busy machine one thread can occasionally drain the queue alone, so a fit that used
    # fewer threads is retried; a pool that ignored n_jobs would fail every time.
    for _attempt in range(3):
        with strategies.create(name, workers) as strategy:
            fit(strategy, X, initial_params(X, 4), max_iter=4)
            runtime = strategy.runtime_info()
        assert 1 <= runtime["threads_used"] <= expected
        if runtime["threads_used"] == expected:
            break
    assert runtime["threads_used"] == expected
    assert runtime["openmp"] is name.startswith("openmp")
    assert runtime["blas_threads"] <= 1  # the driver held BLAS to one thread
    assert isinstance(runtime["chunk_size"], int) and runtime["chunk_size"] > 0


@pytest.mark.timeout(120)
def test_omp_num_threads_does_not_override_workers(K) -> None:
    if not K.openmp_enabled():
        pytest.skip(K.openmp_unavailable_reason())
    code = """
        import json, numpy as np, strategies
        from harness.sweep.em import fit
        from harness.model.gmm import initial_params
        from tests.conftest import make_blobs
        X = make_blobs(n=20_000, d=2, k=3)
        with strategies.create("openmp", 2) as s:
            fit(s, X, initial_params(X, 3), max_iter=2)
            print(json.dumps(s.runtime_info()["threads_used"]))
    """
    out = _run_python(code, OMP_NUM_THREADS="1")
    assert json.loads(out.splitlines()[-1]) == 2


def test_openmp_components_with_fewer_components_than_threads(K) -> None:
    if not strategies.get_info("openmp-components").available:
        pytest.skip(strategies.get_info("openmp-components").reason)
    X = make_blobs(n=2_000, d=2, k=1)
    init = initial_params(X, 1)
    with strategies.create("openmp-components", 2) as strategy:
        result = fit(strategy, X, init, max_iter=3)
        runtime = strategy.runtime_info()
    with strategies.create("cython") as strategy:
        expected = fit(strategy, X, init, max_iter=3, use_fused=False)
    assert runtime["idle_threads"] == 1 and runtime["components_per_thread"] == 1
    np.testing.assert_allclose(result.final.covariances, expected.final.covariances, rtol=1e-12)


def test_joblib_threads_reuses_one_pool_per_fit_and_releases_it(K, monkeypatch) -> None:
    if not strategies.get_info("joblib-threads").available:
        pytest.skip(strategies.get_info("joblib-threads").reason)
    import joblib

    created = []

    class CountingParallel(joblib.Parallel):
        def __init__(self, *args, **kwargs):
            created.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(joblib, "Parallel", CountingParallel)
    X = make_blobs(n=5_000, d=2, k=3)
    baseline = threading.active_count()
    with strategies.create("joblib-threads", 2) as strategy:
        fit(strategy, X, initial_params(X, 3), max_iter=5)
        threads_used = strategy.runtime_info()["threads_used"]
    assert len(created) == 1
    assert created[0] == {"n_jobs": 2, "backend": "threading"}
    assert 1 <= threads_used <= 2
    deadline = time.monotonic() + 10
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= baseline


# ---- without OpenMP, without the extension --------------------------------------------------


def _run_python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; return its stdout."""
    full_env = {**os.environ, **env}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


_AVAILABILITY_AND_FITS = """
    import json, numpy as np, strategies
    from harness.sweep.em import fit
    from harness.model.gmm import initial_params, derive, reference_e_step
    from tests.conftest import make_blobs
    X = make_blobs(n=3_000, d=3, k=3)
    init = initial_params(X, 3)
    report = {"registry": {n: [i.available, i.reason] for n, i in strategies.registry().items()}}
    with strategies.create("einsum") as s:
        expected = fit(s, X, init, max_iter=5).final.means
    for name in ("cython", "joblib-threads"):
        if report["registry"][name][0]:
            with strategies.create(name, 2) as s:
                means = fit(s, X, init, max_iter=5).final.means
            report[name] = float(np.max(np.abs(means - expected)))
    try:
        import kernels.gmm_kernels as K
        log_resp = np.empty((3_000, 3))
        d = derive(init)
        report["threads"] = K.e_step(X, d.log_norm, d.means, d.precision_cholesky,
                                     log_resp, 2)[1]
        report["build"] = K.build_info()
    except ImportError as exc:
        report["import_error"] = str(exc)
    print(json.dumps(report))
"""


@pytest.mark.timeout(120)
def test_simulated_build_without_openmp(K) -> None:
    report = json.loads(
        _run_python(_AVAILABILITY_AND_FITS, GMM_HARNESS_DISABLE_OPENMP="1").splitlines()[-1]
    )
    registry = report["registry"]
    for name in ("openmp", "openmp-components"):
        available, reason = registry[name]
        assert not available and "GMM_HARNESS_DISABLE_OPENMP" in reason
    for name in ("cython", "joblib-threads", "python", "einsum", "sklearn"):
        assert registry[name][0], registry[name]
    assert report["cython"] < 1e-9 and report["joblib-threads"] < 1e-9
    assert report["threads"] == 1  # kernels run on one thread whatever is asked
    assert report["build"]["openmp_enabled"] is False


@pytest.mark.timeout(120)
def test_strategies_import_cleanly_without_the_extension() -> None:
    code = "import sys\nsys.modules['kernels.gmm_kernels'] = None  # import now fails\n"
    report = json.loads(
        _run_python(code + textwrap.dedent(_AVAILABILITY_AND_FITS)).splitlines()[-1]
    )
    registry = report["registry"]
    for name in COMPILED:
        available, reason = registry[name]
        assert not available and "make install" in reason
    for name in ("python", "scipy", "einsum", "sklearn"):
        assert registry[name][0], registry[name]
    assert "import_error" in report


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_build_without_openmp_matches_the_openmp_build(K, tmp_path: Path) -> None:
    """Build with GMM_HARNESS_NO_OPENMP=1, portable target, and compare with the main build.

    The portable target (baseline x86-64: SSE2 vectors, no FMA) also covers the
    narrowest explicit-SIMD path of the C micro-kernels.
    """
    if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    portable = "x86-64" if x86 else "none"
    package = tmp_path / "kernels"
    package.mkdir()
    # The C that `make install` generated from these very sources comes along, with
    # its times: cythonize regenerates it only if a .pyx is newer, as in the checkout.
    sources = ("__init__.py", "_build.py", "gmm_kernels.pyx", "micro_kernels.pyx")
    generated = tuple(p.name for p in (ROOT / "kernels").glob("*_kernels.c"))
    for name in sources + generated:
        shutil.copy2(ROOT / "kernels" / name, package / name)
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; from kernels._build import extensions; "
            "setup(name='probe', ext_modules=extensions(), "
            "script_args=['build_ext', '--inplace', '--parallel', '2'])",
        ],
        cwd=tmp_path,
        env={**os.environ, "GMM_HARNESS_NO_OPENMP": "1", "GMM_HARNESS_MARCH": portable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    X, derived = _model(20_000, 3, 4)
    arrays = tmp_path / "arrays.npz"
    np.savez(
        arrays, X=X, log_norm=derived.log_norm, means=derived.means, prec=derived.precision_cholesky
    )
    code = f"""
        import json, numpy as np, kernels.gmm_kernels as K
        a = np.load({str(arrays)!r})
        k, d = a["means"].shape
        out = [np.empty(k), np.empty((k, d)), np.empty((k, d, d))]
        loglik, used = K.fused(a["X"], a["log_norm"], a["means"], a["prec"], a["means"],
                               *out, 2)
        np.save({str(tmp_path / "scatter.npy")!r}, out[2])
        print(json.dumps({{"file": K.__file__, "loglik": loglik, "used": used,
                          "compiled": K.openmp_compiled(), "simd": K.build_info()["simd"],
                          "reason": K.openmp_unavailable_reason()}}))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert Path(report["file"]).is_relative_to(tmp_path)
    assert report["compiled"] is False and report["used"] == 1
    assert "GMM_HARNESS_NO_OPENMP" in report["reason"]
    if x86:
        assert report["simd"] == "sse2"
    # Same chunk grid and code; only the vector width and FMA contraction differ.
    k, d = 4, 3
    mass, shifted_sum, expected_outer = np.empty(k), np.empty((k, d)), np.empty((k, d, d))
    expected_loglik, _ = K.fused(
        X,
        derived.log_norm,
        derived.means,
        derived.precision_cholesky,
        derived.means,
        mass,
        shifted_sum,
        expected_outer,
        2,
    )
    assert report["loglik"] == pytest.approx(expected_loglik, rel=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "scatter.npy"), expected_outer, rtol=1e-12)
    # The micro kernels of the same build: one thread, so the race cannot happen.
    micro = subprocess.run(
        [
            sys.executable,
            "-c",
            "import kernels.micro_kernels as M; print(M.openmp_unavailable_reason()); "
            "print(M.race_unprotected(200000, 2), M.race_atomic(200000, 2))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert micro.returncode == 0, micro.stderr
    reason, counts = micro.stdout.strip().splitlines()[-2:]
    assert "built without OpenMP" in reason and "GMM_HARNESS_NO_OPENMP" in reason
    assert counts == "200000 200000"
