"""The cluster model: time per iteration at W workers and the crossover with openmp."""

from __future__ import annotations

import math

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
