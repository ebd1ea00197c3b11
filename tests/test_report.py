"""``python -m harness plot``: charts and report.md from a tidy results table.

Tables are synthetic, built with exactly the columns of :data:`harness.sweep.results.COLUMNS`,
so the numbers in the report can be checked against values computed by hand.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main as cli_main
from harness.model.errors import DataFileError
from harness.report import analysis as an
from harness.report.markdown import plot_run
from harness.sweep.results import CHARTS_DIR, COLUMNS, META_FILE, REPORT_FILE, TABLE_FILE, config_id
from tests.conftest import write_run_folder

pytestmark = pytest.mark.timeout(120)

# name -> (kind, fixed seconds per iteration, seconds per point, serial fraction or None)
_MODELS = {
    "python": ("serial", 1e-4, 3e-5, None),
    "scipy": ("serial", 3e-4, 5e-7, None),
    "sklearn": ("serial", 3e-4, 3e-7, None),
    "cython": ("serial", 2e-5, 1.2e-7, None),
    "einsum": ("threads", 1e-4, 2e-7, 0.6),
    "openmp": ("openmp", 4e-5, 1.2e-7, 0.05),
    "multiprocessing": ("processes", 3e-3, 1.25e-7, 0.02),
}
_WORKLOAD_SHAPES = {"quinn": (2, 50), "highdim": (32, 8), "schreiber": (2, 4)}


def _row(
    workload: str,
    n: int,
    strategy: str,
    kind: str,
    workers: int,
    phase: str,
    seconds: float,
    index: int,
    status: str = "ok",
    error: str = "",
    **extra,
) -> dict:
    d, k = _WORKLOAD_SHAPES[workload]
    row = dict.fromkeys(COLUMNS, np.nan)
    row.update(
        workload=workload,
        n=n,
        d=d,
        k=k,
        strategy=strategy,
        kind=kind,
        workers=workers,
        phase=phase,
        seconds=seconds,
        value_index=index,
        status=status,
        error=error,
        config_id=config_id(workload, n, strategy, workers),
        effective_workers=workers,
        oversubscribed=workers > 2,
        blas_threads=1,
        omp_threads=workers,
        used_fused=strategy == "openmp",
        start_method="",
        run_id="synthetic",
        cpu_model="Test CPU",
        usable_cores=2,
        python_version="3.11",
        numpy_version=np.__version__,
        blas="openblas",
        cython_version="3.0",
        compiler_flags="-O3",
        openmp=True,
        git_commit="abc123",
        date="2026-01-01",
    )
    row.update(extra)
    return row


def synthetic_table(
    workloads=("quinn", "highdim"),
    ns=(1_000, 10_000, 100_000),
    workers=(1, 2),
    values=5,
    seed=0,
    with_problems=False,
) -> pd.DataFrame:
    """A plausible sweep: fixed cost + cost per point, split by an Amdahl fraction."""
    rng = np.random.default_rng(seed)
    rows = []
    for workload in workloads:
        for n in ns:
            for strategy, (kind, fixed, per_point, serial) in _MODELS.items():
                for p in workers:
                    if serial is None and p > 1:
                        if with_problems:  # the runner records why it did not repeat them
                            rows.append(
                                _row(
                                    workload,
                                    n,
                                    strategy,
                                    kind,
                                    p,
                                    np.nan,
                                    np.nan,
                                    np.nan,
                                    "skipped",
                                    "serial strategy: measured at workers=1 only",
                                )
                            )
                        continue
                    if with_problems and strategy == "python" and n == max(ns):
                        # as the runner writes a skipped configuration: no phase, no value
                        rows.append(
                            _row(
                                workload,
                                n,
                                strategy,
                                kind,
                                p,
                                np.nan,
                                np.nan,
                                np.nan,
                                "skipped",
                                "estimated 300 s per iteration",
                            )
                        )
                        continue
                    if with_problems and strategy == "multiprocessing" and n == min(ns) and p > 1:
                        rows.append(
                            _row(
                                workload,
                                n,
                                strategy,
                                kind,
                                p,
                                "iteration",
                                np.nan,
                                0,
                                "failed",
                                "WorkerError: worker 1 died",
                            )
                        )
                        continue
                    share = 1.0 if serial is None else serial + (1 - serial) / p
                    iteration = fixed + per_point * n * share
                    extra = {}
                    if kind == "processes":
                        extra = dict(
                            bytes_to_workers=2_000.0 * p,
                            bytes_from_workers=800.0 * p,
                            peak_pss_bytes=40e6 + 30.0 * n * p,
                            start_method="fork",
                        )
                    else:
                        extra = dict(peak_pss_bytes=30e6 + 20.0 * n)
                    for phase, scale in (
                        ("prepare", None),
                        ("e_step", 0.6),
                        ("m_step", 0.35),
                        ("iteration", 1.0),
                    ):
                        base = (
                            (0.1 if kind == "processes" else 1e-4) + 1e-8 * n
                            if scale is None
                            else iteration * scale
                        )
                        noise = rng.lognormal(0.0, 0.03, size=values)
                        rows += [
                            _row(workload, n, strategy, kind, p, phase, base * noise[i], i, **extra)
                            for i in range(values)
                        ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_run(folder: Path, table: pd.DataFrame, seed: int = 0) -> Path:
    """A results folder as the runner writes it (meta.json shaped like its output)."""
    meta = {
        "schema_version": 1,
        "created": "2026-01-01T00:00:00",
        "status": "finished",
        "host": {"cpu_model": "Test CPU", "usable_cores": 2, "machine": "x86_64"},
        "versions": {"python": "3.11", "numpy": np.__version__},
        "metadata": {"cpu_model": "Test CPU", "hostname": "repeated-so-hidden"},
        "sweep": {"mode": "quick", "workers": [1, 2], "protocol": {"seed": seed}},
        "strategies": {
            "openmp": {"kind": "openmp", "available": True, "reason": ""},
            "dask": {"kind": "distributed", "available": False, "reason": "dask not installed"},
        },
    }
    return write_run_folder(folder, table, meta)


def _expected_stems(workloads, two_d) -> set[str]:
    stems = {"speedup", "best_strategy", "efficiency", "amdahl"}
    for workload in workloads:
        stems |= {f"time_vs_n_{workload}", f"phases_{workload}"}
    stems |= {f"fitted_{workload}" for workload in two_d}
    return stems


# --------------------------------------------------------------------------------------
# Every file
# --------------------------------------------------------------------------------------


def test_plot_writes_every_chart_and_the_report(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run-a", synthetic_table(("quinn",), ns=(1_000, 3_000)), seed=3)
    result = plot_run(run, fit_points=600, fit_iterations=3)
    stems = _expected_stems(["quinn"], ["quinn"])
    assert result.skipped == {}
    assert set(result.charts) == stems
    report = (run / REPORT_FILE).read_text()
    for stem in stems:
        for fmt in ("png", "svg"):
            path = run / CHARTS_DIR / f"{stem}.{fmt}"
            assert path.is_file() and path.stat().st_size > 1000, path
        assert f"]({CHARTS_DIR}/{stem}.png)" in report
    assert (run / CHARTS_DIR / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (run / CHARTS_DIR / "amdahl.svg").read_text()[:2000]
    # metadata, summary tables, findings
    assert "# Benchmark report: run-a" in report
    assert "Test CPU" in report
    assert "repeated-so-hidden" not in report  # meta["metadata"] duplicates host/versions
    assert "`dask` (dask not installed)" in report
    assert "`mode=quick`" in report
    assert "EM re-fit of `quinn` on 600 of the run's 3,000 points (data seed 3" in report
    assert report.count("### Fastest strategy at each size and worker count") == 1
    findings = report.split("## Findings")[1].split("## Overview")[0]
    assert findings.count("\n- ") >= 4
    assert "Every configuration in the table was measured." in report


def only_format(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Draw the charts in one format: a test that reads only the report need not pay for
    two renderings of every chart (the test above checks both formats)."""
    from harness.report import chart_kit

    monkeypatch.setattr(chart_kit, "FORMATS", (fmt,))


def test_cli_plot_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command works end to end (without meta.json it refuses: tests/test_hostile.py)."""
    only_format(monkeypatch, "svg")
    run = write_run(
        tmp_path / "run-cli", synthetic_table(workloads=("highdim",), ns=(1_000, 2_000), values=3)
    )
    assert cli_main(["plot", str(run), "--no-fitted-model"]) == 0
    out = capsys.readouterr().out
    assert "report.md" in out
    assert (run / CHARTS_DIR / "phases_highdim.svg").is_file()
    report = (run / REPORT_FILE).read_text()
    assert "Test CPU" in report  # from meta.json


def test_cli_plot_missing_folder_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["plot", str(tmp_path / "nope")]) == 2
    assert "results folder not found" in capsys.readouterr().err


def test_table_without_measurement_columns_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    pd.DataFrame({"workload": ["quinn"], "n": [10]}).to_csv(folder / TABLE_FILE, index=False)
    (folder / META_FILE).write_text("{}")
    with pytest.raises(DataFileError, match="lacks the columns"):
        plot_run(folder)


# --------------------------------------------------------------------------------------
# Failed and skipped rows
# --------------------------------------------------------------------------------------


def test_failed_and_skipped_rows_still_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_format(monkeypatch, "png")
    table = synthetic_table(
        workloads=("quinn",), ns=(1_000, 2_000, 4_000), values=3, with_problems=True
    )
    run = write_run(tmp_path / "run-b", table)
    result = plot_run(run, fit_points=500, fit_iterations=2)
    assert set(result.charts) == _expected_stems(["quinn"], ["quinn"])
    report = (run / REPORT_FILE).read_text()
    not_measured = report.split("## Not measured")[1]
    lines = not_measured.splitlines()
    # failures first, then skips; by-design skips summarised, not listed
    assert lines[4] == (
        "| failed | `multiprocessing` | 2 | WorkerError: worker 1 died "
        "(phases: iteration) | quinn n = 1,000 |"
    )
    assert (
        lines[5] == "| skipped | `python` | 1 | estimated 300 s per iteration | quinn n = 4,000 |"
    )
    assert lines[6] == ""
    assert (
        "By design, the sequential strategies (`cython`, `python`, `scipy`, `sklearn`) "
        "were measured at 1 worker only: 12 configurations"
    ) in not_measured
    assert "(1 skipped, 1 failed)" in report or "(1 failed, 1 skipped)" in report
    assert "nan" not in report.lower().replace("nanosecond", "")


def test_everything_failed_still_writes_a_report(tmp_path: Path) -> None:
    rows = [
        _row(
            "highdim",
            1_000,
            "openmp",
            "openmp",
            p,
            "iteration",
            np.nan,
            0,
            "failed",
            "kernel not built",
        )
        for p in (1, 2)
    ]
    run = write_run(tmp_path / "run-c", pd.DataFrame(rows, columns=list(COLUMNS)))
    result = plot_run(run, fitted_model=False)
    assert result.charts == {}
    assert set(result.skipped) >= {"speedup", "best_strategy", "efficiency", "amdahl"}
    report = (run / REPORT_FILE).read_text()
    assert "kernel not built" in report
    assert "every configuration was skipped or failed" in report


# --------------------------------------------------------------------------------------
# Numbers checked by hand
# --------------------------------------------------------------------------------------


def _hand_table() -> pd.DataFrame:
    """One workload, one n; medians chosen so every derived number is easy by hand.

    Iteration medians (s): python 2.0, sklearn 1.6, einsum@1 0.5, einsum@2 0.4,
    openmp@1 1.0, openmp@2 0.6. Fastest 1-worker strategy: einsum (0.5 s).
    """
    values = {
        ("python", "serial", 1): [2.0, 1.9, 2.1],
        ("sklearn", "serial", 1): [1.6, 1.6, 1.6],
        ("einsum", "threads", 1): [0.5, 0.45, 0.7],
        ("einsum", "threads", 2): [0.4, 0.4, 0.4],
        ("openmp", "openmp", 1): [1.0, 1.1, 0.9, 1.0],  # median 1.0
        ("openmp", "openmp", 2): [0.6, 0.7, 0.55],  # median 0.6
    }
    rows = []
    for (strategy, kind, p), seconds in values.items():
        for i, value in enumerate(seconds):
            rows.append(_row("highdim", 5_000, strategy, kind, p, "iteration", value, i))
            rows.append(_row("highdim", 5_000, strategy, kind, p, "e_step", value * 0.7, i))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_derived_numbers_match_hand_computation() -> None:
    result = an.analyse(_hand_table(), usable_cores=2)
    scal = result.scaling.set_index(["strategy", "workers"])
    openmp2 = scal.loc[("openmp", 2)]
    assert openmp2["seconds"] == pytest.approx(0.6)
    assert openmp2["q1"] == pytest.approx(0.575) and openmp2["q3"] == pytest.approx(0.65)
    assert openmp2["speedup_self"] == pytest.approx(1.0 / 0.6)
    assert openmp2["best_1w_strategy"] == "einsum"
    assert openmp2["speedup_best_1w"] == pytest.approx(0.5 / 0.6)
    assert openmp2["efficiency"] == pytest.approx(1.0 / 0.6 / 2)
    # Karp-Flatt: (1/S - 1/p) / (1 - 1/p) = (0.6 - 0.5) / 0.5
    assert openmp2["karp_flatt"] == pytest.approx(0.2)
    assert openmp2["speedup_python"] == pytest.approx(2.0 / 0.6)
    assert openmp2["speedup_sklearn"] == pytest.approx(1.6 / 0.6)
    assert openmp2["speedup_numpy"] == pytest.approx(0.5 / 0.6)
    # einsum: S = 0.5 / 0.4 = 1.25, e = (0.8 - 0.5) / 0.5 = 0.6
    assert scal.loc[("einsum", 2), "karp_flatt"] == pytest.approx(0.6)
    assert math.isnan(scal.loc[("openmp", 1), "karp_flatt"])

    fit = result.amdahl.set_index("strategy").loc["openmp"]
    assert fit["serial_fraction"] == pytest.approx(0.2)
    for p, expected in ((4, 2.5), (8, 1 / 0.3), (16, 4.0), (64, 1 / (0.2 + 0.8 / 64))):
        assert fit[f"model_{p}"] == pytest.approx(expected)
    assert fit["limit"] == pytest.approx(5.0)

    best = result.best.set_index("workers")
    assert best.loc[1, "best"] == "einsum"
    assert best.loc[1, "runner_up"] == "openmp" and best.loc[1, "margin"] == pytest.approx(2.0)
    assert best.loc[2, "best"] == "einsum"  # 0.4 s beats openmp's 0.6 s
    assert best.loc[2, "margin"] == pytest.approx(1.5)


def test_report_shows_the_hand_computed_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_format(monkeypatch, "png")
    run = write_run(tmp_path / "run-hand", _hand_table())
    plot_run(run, fitted_model=False)
    report = (run / REPORT_FILE).read_text()
    scaling = report.split("### Scaling at n = 5,000")[1].split("###")[0]
    openmp_row = next(
        line for line in scaling.splitlines() if line.startswith("| `openmp` | openmp | 2 |")
    )
    cells = [cell.strip() for cell in openmp_row.strip("|").split("|")]
    # 95% interval of a median of 3 values from one process: the range of the values
    # (each end drawn with probability 7/27), widened by the single-process allowance
    assert cells[3] == "600 ms [500 ms – 770 ms]"  # [0.55 / 1.1, 0.70 * 1.1]
    speedup = re.fullmatch(r"1\.67× \[(\d\.\d\d)–(\d\.\d\d)\]", cells[4])  # 1.0 / 0.6
    assert speedup and float(speedup[1]) < 1.0 / 0.6 < float(speedup[2])
    assert cells[5].startswith("0.83× [") and cells[5].endswith("] (`einsum`)")  # 0.5 / 0.6
    assert cells[6] == "83%"
    assert cells[7] == "0.200"  # Karp-Flatt
    amdahl_block = report.split("### Amdahl model at n = 5,000")[1].split("###")[0]
    openmp_fit = next(line for line in amdahl_block.splitlines() if line.startswith("| `openmp` |"))
    cells = [cell.strip() for cell in openmp_fit.strip("|").split("|")]
    assert cells[:2] == ["`openmp`", "2"] and cells[2].startswith("0.200 [")
    # three values per side: the band at every core count is wider than the model value
    assert cells[3:7] == ["— (band wider than the value)"] * 4
    assert cells[7] == "—"
    summary = report.split("### Fastest strategy at each size and worker count")[1]
    row_2w = next(line for line in summary.splitlines() if line.startswith("| 5,000 | 2 |"))
    # einsum at 2 workers, 0.4 s: 5.00x python (2.0 s), 1.25x einsum@1, 4.00x sklearn (1.6 s)
    assert row_2w.split("|")[3].strip() == "`einsum`"
    assert [c.strip() for c in row_2w.strip("|").split("|")[5:]] == ["5.00×", "1.25×", "4.00×"]
    assert "`openmp` (1.50× [" in row_2w
    # a finding states the serial fraction and the model
    assert "(efficiency 83%, Karp-Flatt serial fraction 0.200)" in report
    # with three values per side the model band is wider than every prediction
    assert "No Amdahl extrapolation is given" in report


def test_floor_section_states_the_fastest_against_the_measured_floor() -> None:
    from harness.report.sections import floor_section
    from harness.sweep.floors import floor_key

    # highdim n = 5,000 (d > 2): a FLOP floor of 0.2 s on one core, 0.1 s on two
    floors = {floor_key("highdim", 5_000): {"kind": "flop", "one_core_ms": 200.0, "basis": "b"}}
    text = floor_section(an.analyse(_hand_table(), usable_cores=2, floors=floors))
    rows = {
        line.split("|")[3].strip(): line
        for line in text.splitlines()
        if line.startswith("| `highdim`")
    }
    # fastest at 1 worker: einsum 0.5 s (floor 0.2 s: 40%); at 2: einsum 0.4 s (0.1 s: 25%)
    assert "`einsum` 500 ms" in rows["1"] and rows["1"].rstrip(" |").endswith("40%")
    assert "`einsum` 400 ms" in rows["2"] and rows["2"].rstrip(" |").endswith("25%")
    assert "flop floor: b" in text
    assert floor_section(an.analyse(_hand_table(), usable_cores=2)) == ""  # none measured


def test_measured_floors_have_their_kind_and_a_positive_time() -> None:
    from harness.sweep.floors import measure_floor

    exp = measure_floor(10_000, 2, 4)
    assert exp["kind"] == "exp" and exp["one_core_ms"] > 0 and "40,000 values" in exp["basis"]
    flop = measure_floor(1_000, 8, 2)
    assert flop["kind"] == "flop" and flop["one_core_ms"] > 0 and "GFLOP" in flop["basis"]


def test_karp_flatt_and_amdahl_functions() -> None:
    assert an.karp_flatt(np.array([2.0]), np.array([2.0]))[0] == pytest.approx(0.0)
    assert an.karp_flatt(np.array([1.0]), np.array([4.0]))[0] == pytest.approx(1.0)
    assert math.isnan(an.karp_flatt(np.array([1.5]), np.array([1.0]))[0])
    # exact Amdahl data recovers its serial fraction from several worker counts
    p = np.array([1.0, 2.0, 4.0, 8.0])
    assert an.fit_amdahl(p, an.amdahl_speedup(0.1, p)) == pytest.approx(0.1)
    assert math.isnan(an.fit_amdahl([1.0], [1.0]))


def test_sequential_strategies_compete_at_every_worker_count() -> None:
    rows = []
    for p, seconds in ((1, 1.0), (2, 0.7)):
        rows.append(_row("quinn", 2_000, "openmp", "openmp", p, "iteration", seconds, 0))
    rows.append(_row("quinn", 2_000, "cython", "serial", 1, "iteration", 0.5, 0))
    result = an.analyse(pd.DataFrame(rows, columns=list(COLUMNS)))
    best = result.best.set_index("workers")
    assert best.loc[2, "best"] == "cython" and best.loc[2, "best_workers"] == 1
    assert best.loc[2, "margin"] == pytest.approx(1.4)


def test_crossover_finding_names_the_threshold() -> None:
    """A process strategy with a large fixed cost loses at small n and wins at large n."""
    result = an.analyse(
        synthetic_table(workloads=("highdim",), ns=(1_000, 10_000, 100_000, 1_000_000), values=3)
    )
    crossover = [f for f in result.findings if f.kind == "crossover"]
    assert len(crossover) == 1 and crossover[0].strategies[0] == "multiprocessing"
    text = crossover[0].text
    assert "`multiprocessing` (2 workers) loses to the fastest 1-worker strategy" in text
    assert "up to n = 10,000" in text and "wins from n = 100,000 on" in text
    assert "fixed cost of about" in text
    assert crossover[0].ci_high < 1  # the loss it rests on is beyond the noise


def test_skips_of_sequential_strategies_at_more_workers_are_by_design_only_if_new() -> None:
    """ "Unavailable" at 1 and 2 workers is a problem; "serial: 1 worker only" is a choice."""
    rows = [
        _row(
            "quinn",
            1_000,
            "cython",
            "serial",
            p,
            np.nan,
            np.nan,
            np.nan,
            "skipped",
            "unavailable: kernels not built",
        )
        for p in (1, 2)
    ]
    rows += [
        _row("quinn", 1_000, "scipy", "serial", 1, "iteration", 0.2, 0),
        _row(
            "quinn",
            1_000,
            "scipy",
            "serial",
            2,
            np.nan,
            np.nan,
            np.nan,
            "skipped",
            "serial strategy: measured at workers=1 only",
        ),
    ]
    missing = an.analyse(pd.DataFrame(rows, columns=list(COLUMNS))).not_measured
    flags = missing.set_index(["strategy", "workers"])["by_design"]
    assert not flags[("cython", 1)] and not flags[("cython", 2)]
    assert flags[("scipy", 2)]
    grouped = an.group_not_measured(missing[~missing["by_design"]])
    assert grouped[["strategy", "workers", "where"]].values.tolist() == [
        ["cython", "1, 2", "quinn n = 1,000"]
    ]
