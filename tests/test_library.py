"""Library (whole-fit) strategies: differencing, agreement with the reference, availability.

The differencing is tested on synthetic libraries whose cost is known: a fake clock
(exact) and sleeps (through the real timers, loose bounds). The real libraries
(``sklearn-fit``, ``onedal``) are tested against the reference in
``test_strategies.py`` (whole fits, within their stated tolerance) and here through
the measurement process's check and a tiny sweep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import strategies
from harness.model.gmm import REG_COVAR, GMMParams, initial_params
from harness.sweep import library_timing, measure
from harness.sweep import spec as measure_spec
from harness.sweep.em import fit
from harness.sweep.library_timing import (
    FIXED_FLOOR_SECONDS,
    MIN_EXTRA_ITERATIONS,
    DifferencingError,
    LibraryDisagreementError,
    LibraryTimer,
    difference,
    extra_iterations,
)
from harness.sweep.results import LIBRARY_PHASES
from strategies.library import (
    PEERS_INSTALL,
    LibraryFit,
    LibraryStrategy,
    reference_fit,
    scaled_difference,
)
from tests.conftest import make_blobs
from tests.test_runner import assert_consistent, run_harness

ROOT = Path(__file__).resolve().parents[1]
FIXED, PER_ITERATION = 0.030, 0.020


class SleepyLibrary(LibraryStrategy):
    """Costs FIXED + n * PER_ITERATION seconds of sleep; returns the reference's answer."""

    name = "sleepy"
    tolerance_note = "is the reference"

    def _fit(self, X, init, n_iter, reg_covar, tol):
        time.sleep(FIXED + n_iter * PER_ITERATION)
        params, loglik = reference_fit(X, init, n_iter, reg_covar)
        return LibraryFit(params, loglik, n_iter)


class WrongLibrary(LibraryStrategy):
    """Fast and wrong: one covariance off by 1e-4 relative."""

    name = "wrong"
    tolerance_note = "should be the reference"

    def _fit(self, X, init, n_iter, reg_covar, tol):
        params, loglik = reference_fit(X, init, n_iter, reg_covar)
        covariances = params.covariances.copy()
        covariances[0] *= 1 + 1e-4
        return LibraryFit(GMMParams(params.weights, params.means, covariances), loglik, n_iter)


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, GMMParams]:
    X = make_blobs(n=300, d=2, k=3, seed=4)
    return X, initial_params(X, 3, seed=1)


# ---- differencing, exact (fake clock) ---------------------------------------------------


def test_difference_recovers_a_known_cost_exactly() -> None:
    calls = []

    def fit_seconds(n_iter: int) -> float:
        calls.append(n_iter)
        return 0.5 + 0.125 * n_iter

    result = difference(fit_seconds, pairs=3, extra=4)
    assert result.per_iteration == pytest.approx(0.125, rel=1e-12)
    assert result.fixed == pytest.approx(0.5, rel=1e-12)
    assert len(result.pairs) == 3
    # interleaved, the order alternating so drift favours neither length
    assert calls == [1, 5, 5, 1, 1, 5]


def test_a_pair_that_is_not_slower_is_measured_again_then_fails() -> None:
    # short 1.0, long 0.9: not slower, so retried in the other order: long 1.2, short 1.0
    times = iter([1.0, 0.9, 1.2, 1.0])

    result = difference(lambda n: next(times), pairs=1, extra=2)
    assert result.per_iteration == pytest.approx(0.1)
    with pytest.raises(DifferencingError, match="noise exceeds"):
        difference(lambda n: 1.0, pairs=1, extra=2)


def test_extra_iterations_cover_min_time_within_bounds() -> None:
    assert extra_iterations(0.01, 0.05) == 5
    assert extra_iterations(1.0, 0.05) == MIN_EXTRA_ITERATIONS
    assert extra_iterations(1e-9, 0.05) == library_timing.MAX_EXTRA_ITERATIONS
    assert extra_iterations(float("nan"), 0.05) == MIN_EXTRA_ITERATIONS


class InstantLibrary(SleepyLibrary):
    """Returns at once; the fake clock of :class:`FakeClock` says what a fit cost."""

    def _fit(self, X, init, n_iter, reg_covar, tol):
        return LibraryFit(init, 0.0, n_iter)


class FakeClock:
    """``timed(call)`` for :class:`LibraryTimer`: a fit of N iterations costs ``fixed +
    0.01 N`` seconds; every fit run is counted."""

    def __init__(self, fixed: float) -> None:
        self.fixed = fixed
        self.fits: list[int] = []

    def __call__(self, call) -> float:
        fitted = call()
        self.fits.append(fitted.iterations)
        return self.fixed + 0.01 * fitted.iterations


def test_timer_phases_and_fixed_floor(small) -> None:
    """The pyperf time functions: one pair per call, value times loops, fixed floored."""
    X, init = small
    clock = FakeClock(fixed=0.2)
    with InstantLibrary() as strategy:
        strategy.prepare(X)
        timer = LibraryTimer(strategy, init, clock, min_time=0.05)
        assert timer.extra == 5
        assert timer.time("iteration", 3) == pytest.approx(0.03)
        assert timer.time("fixed", 1) == pytest.approx(0.2)
        clock.fixed = 0.0
        assert timer.time("fixed", 1) == FIXED_FLOOR_SECONDS
        with pytest.raises(Exception, match="no phase"):
            timer.time("e_step", 1)


def test_fixed_replays_the_pairs_iteration_timed(small) -> None:
    """``fixed`` runs no fits of its own: its values are the iteration pairs' intercepts."""
    X, init = small
    clock = FakeClock(fixed=0.1)
    with InstantLibrary() as strategy:
        strategy.prepare(X)
        timer = LibraryTimer(strategy, init, clock, min_time=0.05)
        intercepts = (0.1, 0.2, 0.3)  # each pair with its own fixed cost
        for fixed in intercepts:
            clock.fixed = fixed
            timer.time("iteration", 1)
        fits_so_far = len(clock.fits)
        replayed = [timer.time("fixed", 1) for _ in intercepts]
        assert replayed == pytest.approx(intercepts)
        assert len(clock.fits) == fits_so_far  # no fit run for them
        timer.time("fixed", 1)  # beyond the recorded pairs: a pair of its own
        assert len(clock.fits) == fits_so_far + 2


# ---- differencing, real timers (sleeps) ------------------------------------------------


# Sleeps timed to a few milliseconds: nothing else of the suite may load the CPUs.
@pytest.mark.exclusive
def test_fit_differences_a_sleeping_library(small) -> None:
    """em.fit on a library whose cost is known: per-iteration and fixed cost recovered."""
    X, init = small
    with SleepyLibrary() as strategy:
        result = fit(strategy, X, init, max_iter=6)
    assert result.whole_fit and result.iterations == 6
    assert len(set(result.iteration_seconds)) == 1
    # sleeps overshoot a little (more on a loaded machine), and equally at both lengths
    assert result.iteration_seconds[0] == pytest.approx(PER_ITERATION, abs=0.008)
    assert result.fixed_seconds == pytest.approx(FIXED + 0.0, abs=0.025)
    expected, loglik = reference_fit(X, init, 6)
    assert scaled_difference(result.final, expected) == 0.0
    assert result.loglik == [loglik]


# Sleeps timed to a few milliseconds: nothing else of the suite may load the CPUs.
@pytest.mark.exclusive
def test_measurement_process_times_a_sleeping_library(small) -> None:
    """The sweep's timer (through Measurement's own clock) on the sleeping library."""
    X, init = small
    measurement = _measurement(SleepyLibrary, X, init)
    strategy, info = measure.run_check(measurement)
    try:
        assert info["whole_fit"] and info["iterations_checked"] == measure_spec.CHECK_ITERATIONS
        assert info["iteration_seconds"] == pytest.approx(PER_ITERATION, abs=0.008)
        assert "agrees" in info["runtime_info"]["agreement"]
        measurement.setup(strategy)
        values = [measurement.time_func("iteration")(1) for _ in range(3)]
        assert np.median(values) == pytest.approx(PER_ITERATION, abs=0.008)
        fixed = [measurement.time_func("fixed")(1) for _ in range(3)]
        assert np.median(fixed) == pytest.approx(FIXED, abs=0.025)
    finally:
        measurement.release()


# ---- agreement ------------------------------------------------------------------------


def test_a_disagreeing_library_fails_the_check(small) -> None:
    X, init = small
    with WrongLibrary() as strategy:
        strategy.prepare(X)
        agreement = strategy.agreement(strategy.fit(init, 3), init)
    assert not agreement.agrees
    assert 1e-6 < agreement.difference <= 1e-4 * (1 + 1e-9)  # scaled by the largest entry
    assert "DISAGREES" in agreement.describe() and "reg_covar=1e-06" in agreement.describe()
    with pytest.raises(LibraryDisagreementError, match="DISAGREES"):
        measure.run_check(_measurement(WrongLibrary, X, init))


def _measurement(cls: type, X: np.ndarray, init: GMMParams) -> measure.Measurement:
    spec = measure_spec.MeasureSpec("synthetic", X.shape[0], cls.name, 1, min_time=0.05)
    measurement = measure.Measurement(spec)
    measurement.info = SimpleNamespace(cls=cls, kind="library", name=cls.name)
    measurement.dataset = SimpleNamespace(X=X, d=X.shape[1], k=init.n_components)
    measurement.init = init
    return measurement


@pytest.mark.parametrize("name", ["sklearn-fit", "onedal"])
def test_real_library_agrees_within_its_stated_tolerance(name, small) -> None:
    info = strategies.get_info(name)
    if not info.available:
        pytest.skip(f"{name}: {info.reason}")
    X, init = small
    with strategies.create(name, workers=1) as strategy:
        strategy.prepare(X)
        result = strategy.fit(init, 8)
        agreement = strategy.agreement(result, init)
    assert result.iterations == 8
    assert agreement.agrees, agreement.describe()
    assert agreement.reference_reg_covar == (
        REG_COVAR if info.cls.reference_reg_covar is None else info.cls.reference_reg_covar
    )


def test_onedal_fits_at_its_own_thread_count_beside_another_onedal(small) -> None:
    """oneDAL's thread count is process-wide: each fit must set its own again."""
    info = strategies.get_info("onedal")
    if not info.available:
        pytest.skip(f"onedal: {info.reason}")
    import daal4py

    X, init = small
    with strategies.create("onedal", 1) as one, strategies.create("onedal", 2) as two:
        one.prepare(X)
        two.prepare(X)  # the last daalinit of the process: 2 threads
        one.fit(init, 2)
        assert daal4py.num_threads() == 1 and one.runtime_info()["threads_used"] == 1
        two.fit(init, 2)
        assert daal4py.num_threads() == 2 and two.runtime_info()["threads_used"] == 2


def test_library_strategies_have_no_steps() -> None:
    with SleepyLibrary() as strategy, pytest.raises(NotImplementedError, match="whole-fit"):
        strategy.e_step(None)


# ---- availability ---------------------------------------------------------------------


def test_missing_onedal_is_unavailable_with_the_install_command(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "daal4py" else real(name, *a)
    )
    info = strategies._load("onedal", "strategies.library_onedal:OneDALStrategy")
    assert not info.available and info.kind == "library"
    assert PEERS_INSTALL in info.reason
    # the others are untouched
    other = strategies._load("sklearn-fit", "strategies.library_sklearn:SklearnFitStrategy")
    assert other.available


def test_a_daal4py_without_em_gmm_is_one_clear_error(monkeypatch) -> None:
    import importlib.util
    import types

    from harness.model.errors import StrategyUnavailableError

    old_daal4py = types.ModuleType("daal4py")  # found and importable, but without em_gmm
    old_daal4py.__spec__ = importlib.util.find_spec("daal4py")
    monkeypatch.setitem(sys.modules, "daal4py", old_daal4py)
    with pytest.raises(StrategyUnavailableError, match="no em_gmm") as raised:
        strategies.create("onedal", 1)
    assert PEERS_INSTALL in str(raised.value)


def test_strategies_command_lists_library_kind() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "harness", "strategies", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    kinds = {entry["name"]: entry["kind"] for entry in json.loads(listing.stdout)}
    assert kinds["sklearn-fit"] == "library" and kinds["onedal"] == "library"


# ---- in a sweep -----------------------------------------------------------------------


def test_library_in_a_tiny_sweep(tmp_path: Path) -> None:
    """sklearn-fit (always installed) is swept in the library phases, next to a step strategy."""
    out = tmp_path / "run"
    done = run_harness(
        "--workloads",
        "quinn",
        "--sizes",
        "500",
        "--workers",
        "1",
        "--strategies",
        "einsum,sklearn-fit",
        # One process per configuration: what is checked here is the first process's.
        "--rounds",
        "1,1",
        "--out",
        str(out),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = assert_consistent(out)
    library = table[table["strategy"] == "sklearn-fit"]
    assert set(library["kind"]) == {"library"}
    assert set(library["status"]) == {"ok"}, library["error"].tolist()
    assert set(library["phase"]) == set(LIBRARY_PHASES)
    assert np.isfinite(library["final_loglik"]).all()
    # the same start, the same EM: the library agrees with the step strategy
    einsum = table[table["strategy"] == "einsum"]["final_loglik"].iloc[0]
    assert library["final_loglik"].iloc[0] == pytest.approx(einsum, abs=1e-8)
    plotted = subprocess.run(
        [sys.executable, "-m", "harness", "plot", str(out), "--fit-points", "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert plotted.returncode == 0, plotted.stdout + plotted.stderr
    report = (out / "report.md").read_text()
    section = report.split("## Against the libraries", 1)[1].split("\n## ", 1)[0]
    assert "`einsum` w1" in section and "`sklearn-fit` w1" in section


def test_bench_compiled_prints_peers_ratio_and_floors(tmp_path: Path) -> None:
    """bench-compiled at a tiny size: library columns, the ratio, both floors (no timings)."""
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "harness", "bench-compiled", "--n", "400"),
            *("--workloads", "quinn,highdim", "--rounds", "1", "--warmup", "0"),
            *("--strategies", "openmp", "--peers", "sklearn-fit", "--json", str(figures)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a target failed
    out = done.stdout
    assert "sklearn-fit (fit)" in out and "fixed cost" in out
    assert "% of the floor" in out and "exp floor" in out and "FLOP floor" in out
    assert "sklearn-fit: agrees with the reference" in out
    data = json.loads(figures.read_text())
    assert data["dgemm_flops_one_thread"] > 0
    peer = [c for c in data["workloads"]["quinn"]["configs"] if c["strategy"] == "sklearn-fit"]
    assert peer and peer[0]["fixed_ms"] is not None
