"""The micro-problems: every registered micro-strategy against its oracle, the kernels,
the registry's problem axis and the race demo."""

from __future__ import annotations

import math

import numpy as np
import pytest

import strategies
from harness.model.errors import InvalidDataError, InvalidParameterError
from harness.model.problems import PROBLEMS, RTOL, get_problem, problem_of_workload
from strategies.micro.base import MicroStrategy, task_bounds
from tests.conftest import registry_params

SUMMARIZE = registry_params(parallel_workers=True, problem="summarize")
PAIRWISE = registry_params(parallel_workers=True, problem="pairwise")


def _cases(problem: str, sizes: list[int], process_sizes: list[int]) -> list:
    """(strategy, workers, n) params; process pools (seconds to start on a loaded
    machine) are tested at fewer sizes, and with one worker at the largest only."""
    params = []
    for param in registry_params(parallel_workers=True, problem=problem):
        (name, workers), marks = param.values[0], param.marks
        is_pool = name.endswith(("-multiprocessing", "-joblib-processes"))
        chosen = sizes if not is_pool else process_sizes if workers > 1 else process_sizes[-1:]
        for n in chosen:
            params.append(pytest.param((name, workers), n, id=f"{param.id}-n{n}", marks=marks))
    return params


def _integers(n: int, seed: int = 1) -> np.ndarray:
    return get_problem("summarize").generate("summarize-integers", n, seed=seed)


def _normal(n: int, seed: int = 2) -> np.ndarray:
    return get_problem("pairwise").generate("pairwise-normal", n, seed=seed)


def _run(name: str, workers: int, x: np.ndarray) -> object:
    with strategies.create(name, workers=workers) as strategy:
        strategy.prepare(x)
        first = strategy.run()
        second = strategy.run()  # run is repeatable on the same prepared data
    assert first == second
    return first


# ---- problems ---------------------------------------------------------------------------


def test_problems_define_workloads_sizes_and_work() -> None:
    assert set(PROBLEMS) == {"gmm", "summarize", "pairwise"}
    summarize, pairwise = get_problem("summarize"), get_problem("pairwise")
    sizes = summarize.workloads["summarize-normal"].sizes
    assert (min(sizes), max(sizes)) == (10**3, 10**8)
    pair_ops = [pairwise.work(n) for n in pairwise.workloads["pairwise-normal"].sizes]
    assert 0.9e5 <= min(pair_ops) <= 1.1e5 and 0.9e10 <= max(pair_ops) <= 1.1e10
    assert summarize.work(1000) == 1000 and pairwise.work(1000) == 10**6
    assert problem_of_workload("pairwise-normal") is pairwise
    assert problem_of_workload("quinn").name == "gmm"


def test_generation_is_deterministic() -> None:
    problem = get_problem("summarize")
    a = problem.generate("summarize-normal", 1000, seed=3)
    b = problem.generate("summarize-normal", 1000, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, problem.generate("summarize-normal", 1000, seed=4))
    assert a.dtype == np.float64 and a.shape == (1000,)


def test_unknown_problem_and_workload_are_clear_errors() -> None:
    with pytest.raises(InvalidParameterError, match="valid problems"):
        get_problem("nope")
    with pytest.raises(InvalidParameterError, match="valid"):
        get_problem("pairwise").generate("summarize-normal", 10)


def test_verify_rejects_wrong_answers() -> None:
    x = _integers(100)
    summarize = get_problem("summarize")
    assert summarize.verify(x, (100, float(x.sum()))) is None
    assert summarize.verify(x, (100, float(x.sum()) + 1.0)) is not None  # exact on integers
    assert summarize.verify(x, (99, float(x.sum()))) is not None
    y = _normal(100)
    pairwise = get_problem("pairwise")
    assert pairwise.verify(y, float(y.sum()) ** 2) is None
    assert pairwise.verify(y, float(y.sum()) ** 2 * (1 + 100 * RTOL)) is not None


# ---- registry -----------------------------------------------------------------------------


def test_registry_lists_micro_strategies_by_problem() -> None:
    families = ["python", "cython", "openmp", "joblib-threads", "multiprocessing"]
    families.append("joblib-processes")
    for problem in ("summarize", "pairwise"):
        assert strategies.names(problem) == [f"{problem}-{family}" for family in families]
        for info in strategies.registry(problem).values():
            assert info.problem == problem
            assert info.cls is None or issubclass(info.cls, MicroStrategy)
    gmm = strategies.names("gmm")
    assert "openmp" in gmm and not any(name.startswith("summarize") for name in gmm)
    assert strategies.names() == [
        *gmm,
        *strategies.names("summarize"),
        *strategies.names("pairwise"),
    ]
    assert strategies.get_info("summarize-python").available


def test_fit_refuses_a_micro_strategy(capsys) -> None:
    from harness import cli

    assert cli.main(["fit", "--strategy", "pairwise-cython", "--workload", "quinn"]) == 2
    assert "solves problem 'pairwise', not 'gmm'" in capsys.readouterr().err


def test_gmm_lookup_refuses_a_micro_strategy() -> None:
    with pytest.raises(InvalidParameterError, match="solves problem 'summarize'"):
        strategies.get_strategy("summarize-python", problem="gmm")
    with pytest.raises(InvalidParameterError, match="valid problems"):
        strategies.names("nope")


# ---- every micro-strategy against its oracle -----------------------------------------------


@pytest.mark.parametrize(
    ("strategy_spec", "n"), _cases("summarize", [0, 1, 2, 7, 1000, 100_003], [0, 1, 100_003])
)
def test_summarize_is_exact_on_integers(strategy_spec, n) -> None:
    name, workers = strategy_spec
    x = _integers(n)
    count, total = _run(name, workers, x)
    assert count == n
    assert total == math.fsum(x.tolist())  # exact: integer partial sums below 2^53


@pytest.mark.parametrize("strategy_spec", SUMMARIZE)
def test_summarize_within_tolerance_on_floats(strategy_spec) -> None:
    name, workers = strategy_spec
    x = get_problem("summarize").generate("summarize-normal", 54_321, seed=5)
    answer = _run(name, workers, x)
    assert get_problem("summarize").verify(x, answer) is None


@pytest.mark.parametrize(
    ("strategy_spec", "n"), _cases("pairwise", [0, 1, 2, 5, 317, 1000], [0, 1, 1000])
)
def test_pairwise_matches_closed_form(strategy_spec, n) -> None:
    name, workers = strategy_spec
    x = _normal(n)
    answer = _run(name, workers, x)
    expected = math.fsum(x.tolist()) ** 2
    if n == 0:
        assert answer == 0.0
    assert abs(answer - expected) <= RTOL * math.fsum(np.abs(x).tolist()) ** 2
    assert get_problem("pairwise").verify(x, answer) is None


@pytest.mark.parametrize("strategy_spec", [p for p in PAIRWISE if "process" not in p.id])
def test_pairwise_is_exact_on_small_integers(strategy_spec) -> None:
    name, workers = strategy_spec
    x = np.arange(-20, 41, dtype=np.float64)
    assert _run(name, workers, x) == float(x.sum()) ** 2


@pytest.mark.parametrize("name", strategies.names("summarize") + strategies.names("pairwise"))
def test_bad_input_is_a_clear_error(name) -> None:
    cls = strategies.registry()[name].cls
    if cls is None:
        pytest.skip(strategies.registry()[name].reason)
    with cls() as strategy:
        with pytest.raises(InvalidParameterError, match="prepare"):
            strategy.run()
        with pytest.raises(InvalidDataError):
            strategy.prepare(np.ones((3, 2)))
        with pytest.raises(InvalidDataError):
            strategy.prepare(np.array([1.0, np.nan]))


def test_task_bounds_cover_the_range() -> None:
    assert task_bounds(0, 2) == []
    assert task_bounds(1, 2) == [(0, 1)]
    assert task_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]


def test_process_strategies_leave_nothing_behind(tmp_path) -> None:
    import glob
    import os

    for name in ("summarize-multiprocessing", "summarize-joblib-processes"):
        info = strategies.get_info(name)
        if not info.available:
            continue
        with strategies.create(name, workers=2) as strategy:
            strategy.prepare(_integers(10_000))
            pids = strategy.runtime_info()["worker_pids"]
            assert glob.glob(f"/dev/shm/microh_*{os.getpid()}_*")
        assert not glob.glob(f"/dev/shm/microh_*{os.getpid()}_*")
        for pid in pids:
            if pid != os.getpid():
                _wait_gone(pid)


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} still running after close()")


# ---- kernels and the race demo ---------------------------------------------------------


def _micro_kernels():
    import kernels

    reason = kernels.micro_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return kernels.load_micro()


def test_kernels_check_ranges() -> None:
    module = _micro_kernels()
    x = np.arange(10.0)
    with pytest.raises(ValueError, match="range"):
        module.summarize_range(x, 0, 11)
    with pytest.raises(ValueError, match="range"):
        module.pairwise_rows(x, 5, 4)
    assert module.summarize_range(x, 2, 5) == 2 + 3 + 4
    assert module.pairwise_rows(x, 1, 3) == (1 + 2) * 45


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_protected_counters_are_exact(threads) -> None:
    module = _micro_kernels()
    n = 200_003
    assert module.race_atomic(n, threads) == n
    assert module.race_reduction(n, threads) == n
    # The racy one can only lose updates, never invent them.
    assert 0 < module.race_unprotected(n, threads) <= n
    if threads == 1 or not module.openmp_enabled():
        assert module.race_unprotected(n, threads) == n


def test_race_demo_reports_expected_and_returned(capsys) -> None:
    from harness import cli

    module = _micro_kernels()
    status = cli.main(["demo", "race", "--n", "100000", "--repeat", "3", "--threads", "2"])
    out, err = capsys.readouterr()
    if module.openmp_unavailable_reason():
        assert status == 2 and "cannot show the race" in err
        return
    assert status == 0, err
    for version in ("unprotected", "atomic", "reduction"):
        line = next(line for line in out.splitlines() if line.startswith(version + " "))
        fields = line.split()
        assert fields[1] == "100,000"  # expected
        assert int(fields[2].replace(",", "")) <= 100_000  # returned
        assert f"{version}: wrong in " in out
    assert "atomic: wrong in 0 of 3 runs" in out
    assert "reduction: wrong in 0 of 3 runs" in out


def test_race_demo_single_run_names_the_wrong_ones(capsys) -> None:
    from harness import cli

    _micro_kernels()
    status = cli.main(["demo", "race", "--n", "50000"])
    out, _ = capsys.readouterr()
    if status == 2:
        return
    assert "wrong on this run:" in out
    verdict = next(line for line in out.splitlines() if line.startswith("wrong on this run"))
    assert "atomic" not in verdict and "reduction" not in verdict


def test_race_demo_without_openmp_says_why(monkeypatch, capsys) -> None:
    import kernels
    from harness import cli

    module = _micro_kernels()
    monkeypatch.setattr(module, "openmp_unavailable_reason", lambda: "built without OpenMP")
    monkeypatch.setattr(kernels, "load_micro", lambda: module)
    assert cli.main(["demo", "race"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: cannot show the race: built without OpenMP")
    assert len(err.strip().splitlines()) == 1


def test_race_demo_rejects_bad_arguments(capsys) -> None:
    from harness import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "race", "--repeat", "0"])
    assert exc.value.code == 2
