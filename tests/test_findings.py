"""Noise-aware verdicts: ties inside the noise, disturbed configurations, no meaningless
numbers, findings as data. Synthetic tables with known noise, so each verdict is known.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.report import analysis as an
from harness.report import uncertainty as unc
from harness.report.findings import FINDINGS_FILE, KINDS
from harness.report.markdown import plot_run
from harness.sweep.results import COLUMNS, REPORT_FILE
from tests.test_report import _row, write_run

pytestmark = pytest.mark.timeout(120)

_KINDS = {
    "cython": "serial",
    "openmp": "openmp",
    "einsum": "threads",
    "multiprocessing": "processes",
}


def _table(
    medians: dict, *, spread: float, values: int = 8, seed: int = 0, **extra
) -> pd.DataFrame:
    """``medians``: ``(strategy, workers, n) -> seconds``; values lognormal around them.

    ``extra`` maps ``(strategy, workers, n)`` to extra row columns (e.g. disturbed).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for (strategy, workers, n), seconds in medians.items():
        noise = rng.lognormal(0.0, spread, size=values)
        more = extra.get("rows", {}).get((strategy, workers, n), {})
        for i in range(values):
            for phase, scale in (("iteration", 1.0), ("e_step", 0.6), ("m_step", 0.3)):
                rows.append(
                    _row(
                        "quinn",
                        n,
                        strategy,
                        _KINDS[strategy],
                        workers,
                        phase,
                        seconds * scale * noise[i],
                        i,
                        **more,
                    )
                )
    return pd.DataFrame(rows)


def _kinds(result: an.Analysis) -> list[str]:
    return [finding.kind for finding in result.findings]


def test_difference_inside_the_noise_is_a_tie() -> None:
    """3% apart with 20% noise: no winner is named, the map says a ≈ b."""
    table = _table(
        {("openmp", 1, 10_000): 0.0100, ("cython", 1, 10_000): 0.0103}, spread=0.2, seed=1
    )
    result = an.analyse(table)
    best = result.best.iloc[0]
    assert best["tied"] == ("cython",) or (best["best"] == "cython" and best["tied"] == ("openmp",))
    assert best["margin_low"] <= 1 <= best["margin_high"]
    assert an.best_label(best) in {"openmp ≈ cython", "cython ≈ openmp"}
    assert "fastest" not in _kinds(result)
    tie = next(f for f in result.findings if f.kind == "tie")
    assert set(tie.strategies) == {"openmp", "cython"}
    assert tie.ci_low <= 1 <= tie.ci_high
    assert "tied for fastest" in tie.text and "the fastest is" not in tie.text


def test_clean_two_fold_difference_is_named() -> None:
    table = _table(
        {("openmp", 1, 10_000): 0.010, ("cython", 1, 10_000): 0.020}, spread=0.02, seed=2
    )
    result = an.analyse(table)
    fastest = [f for f in result.findings if f.kind == "fastest"]
    assert len(fastest) == 1
    finding = fastest[0]
    assert finding.strategies == ["openmp", "cython"]
    assert finding.ratio == pytest.approx(2.0, rel=0.05)
    assert 1 < finding.ci_low < 2 < finding.ci_high
    assert "the fastest is `openmp`" in finding.text and "ahead of `cython`" in finding.text
    assert result.best.iloc[0]["tied"] == ()


def test_one_process_cannot_claim_a_difference_smaller_than_the_allowance() -> None:
    """Values that agree to 0.1% inside one process still leave a 5% gap a tie: the
    process-to-process noise they cannot show is allowed for."""
    table = _table(
        {("openmp", 1, 10_000): 0.0100, ("cython", 1, 10_000): 0.0105}, spread=0.001, seed=3
    )
    assert "tie" in _kinds(an.analyse(table))


def test_processes_are_the_unit_of_replication() -> None:
    """With a process column, values that agree within processes but not across them give
    an interval as wide as the processes' spread; the resampling is deterministic."""
    values = np.concatenate([np.full(10, 1.0), np.full(10, 1.3), np.full(10, 0.8)])
    units = np.repeat([0, 1, 2], 10)
    draws = unc.median_draws(values, units, rng=unc.seeded_rng(("k",)))
    again = unc.median_draws(values, units, rng=unc.seeded_rng(("k",)))
    assert np.array_equal(draws, again)
    low, high = unc.interval(draws)
    assert low <= 0.85 and high >= 1.25
    flat = unc.median_draws(values, None, rng=unc.seeded_rng(("k",)))
    assert np.ptp(unc.interval(flat)) < high - low


def test_process_column_removes_the_single_process_allowance() -> None:
    rows = []
    rng = np.random.default_rng(4)
    for strategy, seconds in (("openmp", 0.0100), ("cython", 0.0106)):
        for process in range(6):
            for i in range(5):
                value = seconds * rng.lognormal(0.0, 0.002)
                rows.append(
                    _row("quinn", 1_000, strategy, _KINDS[strategy], 1, "iteration", value, i)
                    | {"process": process}
                )
    result = an.analyse(pd.DataFrame(rows))
    assert not any(result.draws.single.values())
    assert result.best.iloc[0]["tied"] == ()  # 6% apart, six tight processes each
    assert "fastest" in _kinds(result)


def test_disturbed_configuration_produces_no_finding(tmp_path: Path) -> None:
    """The would-be winner is disturbed: it wins nothing, appears in no finding but the
    disturbed one, and is listed with its reason."""
    medians = {
        ("openmp", 1, 10_000): 0.020,
        ("openmp", 2, 10_000): 0.005,  # disturbed: would win by far
        ("einsum", 1, 10_000): 0.030,
        ("einsum", 2, 10_000): 0.016,
    }
    reason = "foreign_cpu 0.42 above 0.10"
    flag = {"disturbed": True, "disturbed_reason": reason, "attempts": 3}
    table = _table(medians, spread=0.02, rows={("openmp", 2, 10_000): flag})
    result = an.analyse(table)
    assert not result.best["best"].eq("openmp").all()
    at_2 = result.best[result.best["workers"] == 2].iloc[0]
    assert at_2["best_workers"] == 1 or at_2["best"] != "openmp"
    bad_id = "quinn-n10000-openmp-w2"
    for finding in result.findings:
        if finding.kind == "disturbed":
            assert finding.configurations == [bad_id]
        else:
            assert bad_id not in finding.configurations, finding
    # the verdict at 2 workers holds among the others only, and says so
    (winner,) = [f for f in result.findings if f.kind in ("fastest", "tie") and f.workers == 2]
    assert winner.not_judged == [bad_id]
    assert "not judged: `openmp` (2 workers)" in winner.text
    run = write_run(tmp_path / "run", table)
    plot_run(run, fitted_model=False)
    report = (run / REPORT_FILE).read_text()
    section = report.split("## Disturbed configurations")[1].split("## ")[0]
    assert "| quinn | 10,000 | `openmp` | 2 | 3 | foreign_cpu 0.42 above 0.10 |" in section
    assert "| `openmp` | openmp | 2 (disturbed) |" in report


def test_table_without_disturbed_column_is_all_undisturbed() -> None:
    table = _table({("openmp", 1, 1_000): 0.01, ("openmp", 2, 1_000): 0.006}, spread=0.02)
    # a table written before the sweep recorded disturbance
    table = table.drop(columns=["disturbed", "disturbed_reason"], errors="ignore")
    assert "disturbed" not in table.columns
    result = an.analyse(table)
    assert result.disturbed.empty and "disturbed" not in _kinds(result)


def test_negative_fitted_cost_is_never_printed(tmp_path: Path) -> None:
    """A losing parallel strategy whose time falls with n (a negative cost per point) and
    a rival whose time grows faster than linearly (a negative fixed cost)."""
    medians = {}
    for n in (1_000, 10_000, 100_000):
        medians[("cython", 1, n)] = 1e-9 * n**1.5 + 1e-6  # convex: negative intercept
        medians[("multiprocessing", 1, n)] = 5.0 - 1e-6 * n  # falls with n
        medians[("multiprocessing", 2, n)] = 4.0 - 1e-6 * n
    table = _table(medians, spread=0.01)
    run = write_run(tmp_path / "run", table)
    plot_run(run, fitted_model=False)
    report = (run / REPORT_FILE).read_text()
    records = json.loads((run / FINDINGS_FILE).read_text())
    texts = [report] + [record["text"] for record in records]
    negative = re.compile(r"-\d[\d.,]*\s*(ns|ms|µs|s)\b")
    for text in texts:
        assert not negative.search(text), negative.search(text)
    loses = [r for r in records if r["kind"] in {"loses_to_best_1w", "crossover"}]
    assert loses and all("cost per point (-" not in r["text"] for r in loses)


def test_efficiency_above_100_percent_inside_the_noise_is_not_stated(tmp_path: Path) -> None:
    medians = {("openmp", 1, 10_000): 0.0200, ("openmp", 2, 10_000): 0.0097}  # S = 2.06
    run = write_run(tmp_path / "run", _table(medians, spread=0.05))
    plot_run(run, fitted_model=False)
    report = (run / REPORT_FILE).read_text()
    assert "103%" not in report
    assert "≈100% (within noise)" in report
    assert "efficiency about 100%, within noise" in report
    assert "≈0 (within noise)" in report  # the negative Karp-Flatt fraction


def test_amdahl_band_keeps_near_and_drops_far_extrapolations() -> None:
    """Tight values: the 4-core model is given with its band, 64 cores is dropped."""
    medians = {("openmp", 1, 10_000): 0.0200, ("openmp", 2, 10_000): 0.0120}
    result = an.analyse(_table(medians, spread=0.001, values=10))
    fit = result.amdahl.set_index("strategy").loc["openmp"]
    assert fit["model_4_shown"] and not fit["model_64_shown"]
    assert fit["model_4_low"] < fit["model_4"] < fit["model_4_high"]
    assert fit["serial_fraction_low"] < fit["serial_fraction"] < fit["serial_fraction_high"]
    scaling = next(f for f in result.findings if f.kind == "scaling")
    assert "on 4 (" in scaling.text and "on 64" not in scaling.text


def test_slower_with_more_workers_needs_the_interval_below_one() -> None:
    clear = {("einsum", 1, 10_000): 0.010, ("einsum", 2, 10_000): 0.015}
    noisy = {("einsum", 1, 10_000): 0.010, ("einsum", 2, 10_000): 0.0104}
    assert "slower_with_more_workers" in _kinds(an.analyse(_table(clear, spread=0.02)))
    kinds = _kinds(an.analyse(_table(noisy, spread=0.2)))
    assert "slower_with_more_workers" not in kinds and "no_gain" in kinds


def test_a_speedup_over_an_inline_one_worker_run_says_it_compares_a_pool_with_none() -> None:
    medians = {("einsum", 1, 10_000): 0.010, ("einsum", 2, 10_000): 0.015}
    inline = _table(medians, spread=0.02, rows={("einsum", 1, 10_000): {"inline": True}})
    finding = next(f for f in an.analyse(inline).findings if f.kind == "slower_with_more_workers")
    assert "runs inline, with no pool" in finding.text
    pooled = an.analyse(_table(medians, spread=0.02)).findings
    assert not any("inline" in f.text for f in pooled)


def test_findings_json_has_the_fields(tmp_path: Path) -> None:
    medians = {
        ("cython", 1, 1_000): 0.010,
        ("openmp", 1, 1_000): 0.011,
        ("openmp", 2, 1_000): 0.006,
        ("multiprocessing", 1, 1_000): 0.030,
        ("multiprocessing", 2, 1_000): 0.020,
    }
    run = write_run(tmp_path / "run", _table(medians, spread=0.03))
    result = plot_run(run, fitted_model=False)
    records = json.loads((run / FINDINGS_FILE).read_text())
    assert result.findings_path == run / FINDINGS_FILE
    assert records, "no finding"
    fields = {"kind", "workload", "n", "workers", "strategies", "ratio", "ci_low", "ci_high"}
    for record in records:
        assert fields | {"configurations", "text"} <= set(record)
        assert record["kind"] in KINDS
        if record["ratio"] is not None and record["ci_low"] is not None:
            assert record["ci_low"] <= record["ratio"] <= record["ci_high"]
    fastest = next(r for r in records if r["kind"] in {"fastest", "tie"})
    assert fastest["workload"] == "quinn" and fastest["n"] == 1_000
    assert fastest["configurations"][0].startswith("quinn-n1000-")
    # the report's findings are the records' sentences, in order
    report = (run / REPORT_FILE).read_text()
    listed = report.split("## Findings")[1].split("## Overview")[0]
    assert [line[2:] for line in listed.strip().splitlines()] == [r["text"] for r in records]


def test_columns_of_a_synthetic_row_are_the_tables() -> None:
    """Guard: the helper builds rows with every column of the tidy table."""
    row = _row("quinn", 1_000, "openmp", "openmp", 1, "iteration", 0.1, 0)
    assert set(COLUMNS) <= set(row)
