"""The problem axis through the sweep: a tiny run over both micro-problems, its chart and
report section, and results folders from before the axis (GMM only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main as cli_main
from harness.report import overhead
from harness.sweep.results import load_table

ROOT = Path(__file__).resolve().parents[1]
#: A quick sweep written before the problem axis existed (schema 1, no ``problem`` column).
BEFORE_PROBLEMS = ROOT / "tests" / "data" / "run-before-problem-axis"


def _harness(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    # These sweeps test plumbing: their findings must not depend on the machine's quiet.
    env = {**os.environ, "GMM_HARNESS_IGNORE_DISTURBANCE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Session scope: under xdist a worker may run other modules' tests between this
# module's, which would tear a module-scoped sweep down and run it again.
@pytest.fixture(scope="session")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("micro") / "run"
    strategies = "summarize-cython,summarize-openmp,pairwise-python,pairwise-joblib-threads"
    result = _harness(
        "run",
        "--quick",
        "--problems",
        "summarize,pairwise",
        "--sizes",
        "256,1024",
        "--workers",
        "1,2",
        "--strategies",
        strategies,
        # One process per configuration, however busy the machine: nothing here looks
        # at the replication (tested in test_runner.py and test_interference.py).
        "--rounds",
        "1,1",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_micro_sweep_writes_the_problem_column_and_timed_runs(micro_run: Path) -> None:
    table = load_table(micro_run)
    assert set(table["problem"]) == {"summarize", "pairwise"}
    by_workload = table.groupby("workload")["problem"].unique().to_dict()
    assert list(by_workload["summarize-normal"]) == ["summarize"]
    assert list(by_workload["pairwise-normal"]) == ["pairwise"]
    # Each workload ran only its own problem's strategies.
    pairs = set(table[["workload", "strategy"]].itertuples(index=False, name=None))
    assert all(strategy.split("-")[0] == workload.split("-")[0] for workload, strategy in pairs)
    ok = table[table["status"] == "ok"]
    assert set(ok["phase"]) == {"prepare", "iteration"}
    assert (ok["seconds"] > 0).all()
    assert not (table["status"] == "failed").any(), table[table["status"] == "failed"]["error"]


def test_micro_sweep_produces_the_overhead_chart_and_section(micro_run: Path) -> None:
    # In this process: `harness plot` as a process is run in test_library.py.
    assert cli_main(["plot", str(micro_run), "--no-fitted-model"]) == 0
    assert (micro_run / "charts" / "overhead.png").is_file()
    report = (micro_run / "report.md").read_text()
    assert "## Overhead against work (micro-problems)" in report
    assert "charts/overhead.png" in report
    frame = overhead.overhead_frame(load_table(micro_run))
    assert set(frame["strategy"]) == {"summarize-openmp", "pairwise-joblib-threads"}
    pairwise = frame[frame["problem"] == "pairwise"]
    # two tasks at 2 workers: n^2 / 2 pair operations each
    assert sorted(pairwise["work_per_task"]) == [256 * 256 / 2, 1024 * 1024 / 2]
    assert "`summarize-openmp`" in report and "`pairwise-joblib-threads`" in report


def test_unknown_problem_is_one_clear_error(tmp_path: Path) -> None:
    result = _harness("run", "--quick", "--problems", "nope", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown problem 'nope'; valid problems: gmm, summarize, pairwise"
    ]


def test_micro_workload_needs_its_problem(tmp_path: Path) -> None:
    result = _harness(
        "run", "--quick", "--workloads", "pairwise-normal", "--out", str(tmp_path / "x")
    )
    assert result.returncode == 2
    assert "unknown workload(s) 'pairwise-normal' for problem(s) gmm" in result.stderr


# ---- crossings ---------------------------------------------------------------------------


def _frame(work: list[float], speedup: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"work_per_task": work, "speedup": speedup})


def test_crossing_is_interpolated_between_measured_sizes() -> None:
    found = overhead.crossing(_frame([1e3, 1e5, 1e7], [0.5, 0.5, 1.5]), 1.0)
    assert found.work == pytest.approx(1e6) and not found.already
    assert overhead.crossing(_frame([1e3, 1e5], [0.5, 0.9]), 1.0).work is None
    already = overhead.crossing(_frame([1e3, 1e5], [1.9, 1.95]), 1.8)
    assert already.already and already.work == 1e3


# ---- results from before the problem axis --------------------------------------------------


def test_gmm_only_results_folder_still_loads_plots_and_compares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = pd.read_csv(BEFORE_PROBLEMS / "results.csv")
    assert "problem" not in before.columns  # written before the problem axis
    table = load_table(BEFORE_PROBLEMS)
    assert set(table["problem"]) == {"gmm"}
    run = tmp_path / "before"
    shutil.copytree(BEFORE_PROBLEMS, run)
    shutil.rmtree(run / "charts", ignore_errors=True)
    # Both in this process: `harness plot` and `harness compare` as processes are run in
    # test_library.py and test_compare.py.
    assert cli_main(["plot", str(run), "--no-fitted-model"]) == 0
    report = (run / "report.md").read_text()
    assert "Overhead against work" not in report  # no micro-problem in it
    assert (run / "charts" / "speedup.png").is_file()
    capsys.readouterr()
    code = cli_main(["compare", "--phase", "iteration", str(BEFORE_PROBLEMS), str(BEFORE_PROBLEMS)])
    compared = capsys.readouterr()
    assert code in (0, 1), compared.out + compared.err
    assert "error:" not in compared.err
    assert np.isfinite(pd.to_numeric(table["seconds"], errors="coerce")).any()


def test_crossing_interval_comes_from_the_speedup_bounds() -> None:
    frame = _frame([1e3, 1e5, 1e7], [0.5, 0.9, 1.5])
    frame["speedup_low"] = [0.4, 0.7, 1.2]
    frame["speedup_high"] = [0.6, 1.1, 1.8]
    found = overhead.crossing(frame, 1.0)
    # the upper bound crosses between 1e3 and 1e5, the lower one between 1e5 and 1e7
    assert 1e3 < found.earliest < 1e5 < found.work < found.latest < 1e7
    frame["speedup_low"] = [0.4, 0.7, 0.95]
    unsupported = overhead.crossing(frame, 1.0)
    assert unsupported.latest is None
    assert "not established beyond the noise" in overhead._describe(unsupported, "elements")
