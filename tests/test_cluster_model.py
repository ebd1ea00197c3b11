"""The cluster model: time per iteration at W workers and the crossover with openmp."""

from __future__ import annotations

import math
import re

import pytest

from harness.report.cluster_model import crossover_n, iteration_seconds, model_table


def test_iteration_time_is_overhead_plus_divided_work() -> None:
    assert iteration_seconds(1_000_000, 4, 2e-8, 0.01) == pytest.approx(0.01 + 0.005)
    assert iteration_seconds(0, 64, 2e-8, 0.01) == pytest.approx(0.01)


def test_crossover_is_where_the_cluster_first_wins() -> None:
    c, o, a = 3e-8, 0.012, 1e-8
    n = crossover_n(16, c, o, a)
    assert n == pytest.approx(o / (a - c / 16))
    assert iteration_seconds(n * 1.01, 16, c, o) < n * 1.01 * a
    assert iteration_seconds(n * 0.99, 16, c, o) > n * 0.99 * a


def test_no_crossover_when_the_divided_cost_is_not_below_openmp() -> None:
    assert crossover_n(2, 4e-8, 0.01, 2e-8) == math.inf
    assert crossover_n(4, 4e-8, 0.0, 1e-8) == math.inf


def test_table_has_one_row_per_worker_count_and_more_workers_win_sooner() -> None:
    rows = model_table(4_000_000, 3e-8, 0.012, 1e-8)
    assert [row.workers for row in rows] == [4, 16, 64]
    crossovers = [row.crossover_n for row in rows]
    assert crossovers == sorted(crossovers, reverse=True)
    assert all(row.openmp_seconds_per_iteration == pytest.approx(0.04) for row in rows)
    assert rows[0].to_dict()["workers"] == 4


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_inputs_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="overhead"):
        iteration_seconds(10, 2, 1e-8, bad)
    with pytest.raises(ValueError, match="workers"):
        crossover_n(0, 1e-8, 0.01, 1e-8)


def test_report_section_shows_measured_inputs_and_labels_the_model(tmp_path) -> None:
    """The dask section reads configs/<config_id>.json and models 4/16/64 workers."""
    import json

    from harness.report import analysis as an
    from harness.report.cluster_section import cluster_section
    from harness.sweep.results import CONFIGS_DIR
    from tests.test_findings import _table

    n = 10_000
    table = _table({("openmp", 1, n): 0.010, ("cython", 1, n): 0.02}, spread=0.01)
    info = {
        "scheduler_overhead_seconds": 0.011,
        "task_seconds_per_point": 2e-6,
        "startup_seconds": 0.6,
    }
    process = {
        "status": "ok",
        "spec": {"workload": "quinn", "n": n, "workers": 2},
        "runtime_info": info,
    }
    (tmp_path / CONFIGS_DIR).mkdir()
    (tmp_path / CONFIGS_DIR / "quinn-dask.json").write_text(
        json.dumps({"processes": [process, process]})
    )
    text = cluster_section(an.analyse(table), tmp_path)
    assert "| `quinn` | 10,000 | 2 | 11 ms | 2,000.0 ns | 600 ms |" in text
    assert "A model, not a measurement" in text
    # openmp about 1 us per point; dask 11 ms + 2 us * n / W: W = 4 wins from about
    # n = 22,000, more workers sooner
    crossovers = {}
    for line in text.splitlines():
        match = re.match(r"\| `quinn` \| 10,000 \| 2 → (\d+) \|.*\| ([\d,]+) \|$", line)
        if match:
            crossovers[int(match[1])] = int(match[2].replace(",", ""))
    assert set(crossovers) == {4, 16, 64}
    assert 20_000 < crossovers[4] < 24_000
    assert crossovers[4] > crossovers[16] > crossovers[64] > 11_000
    assert cluster_section(an.analyse(table), tmp_path / "nothing") == ""
