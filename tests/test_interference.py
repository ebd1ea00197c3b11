"""Interference measurement and the stopping rule: arithmetic, decisions, columns, a real hog."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from harness.sweep import interference
from harness.sweep.interference import (
    InterferenceHook,
    Sample,
    busy_seconds,
    descendants,
    run_interference,
    shares,
)
from harness.sweep.results import COLUMN_TYPES, as_table, load_table
from harness.sweep.rounds import (
    CI_TARGET,
    FOREIGN_LIMIT,
    UNSTABLE_LIMIT,
    ProcessRecord,
    decide,
    median_ci,
    process_disturbance,
)

ROOT = Path(__file__).resolve().parents[1]

# ---- /proc/stat arithmetic -------------------------------------------------------------

_STAT_BEFORE = """cpu  1000 50 300 9000 20 10 5 7 0 0
cpu0 600 25 150 4500 10 5 3 4 0 0
cpu1 400 25 150 4500 10 5 2 3 0 0
intr 12345
ctxt 999
"""
_STAT_AFTER = """cpu  1100 50 330 9070 25 12 6 9 100 0
cpu0 650 25 165 4540 12 6 3 5 50 0
cpu1 450 25 165 4530 13 6 3 4 50 0
intr 12399
"""


def test_busy_seconds_sums_user_nice_system_irq_softirq_steal_only() -> None:
    ticks = interference._TICKS
    # user + nice + system + irq + softirq + steal; idle, iowait and guest left out
    assert busy_seconds(_STAT_BEFORE) == pytest.approx((1000 + 50 + 300 + 10 + 5 + 7) / ticks)
    assert busy_seconds(_STAT_BEFORE, cpus=[1]) == pytest.approx(
        (400 + 25 + 150 + 5 + 2 + 3) / ticks
    )
    delta = busy_seconds(_STAT_AFTER) - busy_seconds(_STAT_BEFORE)
    assert delta == pytest.approx((100 + 30 + 2 + 1 + 2) / ticks)


def test_shares_subtract_the_measured_tree_and_clip() -> None:
    before = Sample(wall=10.0, busy=100.0, tree=5.0)
    after = Sample(wall=11.0, busy=101.5, tree=5.9)  # 1.5 CPU-s busy, 0.9 of them ours
    foreign, tree, window = shares(before, after, cpus=2, workers=1)
    assert foreign == pytest.approx(0.3) and tree == pytest.approx(0.9) and window == 1.0
    _, tree2, _ = shares(before, after, cpus=2, workers=2)
    assert tree2 == pytest.approx(0.45)  # per worker
    # tick rounding can make the tree look busier than the machine: never negative
    low, _, _ = shares(before, Sample(11.0, 100.5, 5.9), cpus=2, workers=1)
    assert low == 0.0
    high, _, _ = shares(before, Sample(11.0, 110.0, 5.0), cpus=2, workers=1)
    assert high == 1.0
    empty = shares(before, before, cpus=2, workers=1)
    assert math.isnan(empty[0]) and empty[2] == 0.0


def test_the_hook_records_one_entry_per_value_in_pyperf_metadata() -> None:
    hook = InterferenceHook()
    for _ in range(3):
        with hook:
            sum(range(20_000))
    metadata: dict[str, object] = {}
    hook.teardown(metadata)
    records = run_interference(metadata, 3)
    assert len(records) == 3
    for record in records:
        assert 0.0 <= record["foreign_cpu"] <= 1.0
        assert record["tree_cpu"] >= 0.0 and record["window"] > 0.0
    # a run without (or with a mismatched) record gives NaN, not a wrong pairing
    assert all(math.isnan(r["foreign_cpu"]) for r in run_interference(metadata, 2))
    assert all(math.isnan(r["tree_cpu"]) for r in run_interference({}, 2))


def test_the_measured_tree_includes_live_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in descendants(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert child.pid not in descendants(os.getpid())


# ---- the stopping rule ----------------------------------------------------------------


def _records(medians: list[float], disturbed: tuple[int, ...] = ()) -> list[ProcessRecord]:
    return [
        ProcessRecord(i, m, "other programs took 50% of the CPUs" if i in disturbed else "")
        for i, m in enumerate(medians)
    ]


def test_median_ci_over_three_processes_is_their_range() -> None:
    assert median_ci([1.0, 1.2, 1.1]) == (1.0, 1.2)
    assert median_ci([2.0]) == (2.0, 2.0)


def test_settles_once_enough_processes_agree() -> None:
    agree = decide(_records([1.00, 1.01, 0.995]), min_processes=3, max_processes=6)
    assert not agree.more and agree.stopped == "converged" and not agree.disturbed
    assert agree.half_width <= CI_TARGET
    # two processes are too few however close they are
    assert decide(_records([1.0, 1.0]), min_processes=3, max_processes=6).more


def test_wide_ci_asks_for_more_then_flags_unstable() -> None:
    wide = [1.0, 1.3, 1.15]
    more = decide(_records(wide), min_processes=3, max_processes=6)
    assert more.more and "CI of the median" in more.why_more
    final = decide(_records([1.0, 1.8, 1.15, 0.7, 1.9, 1.2]), min_processes=3, max_processes=6)
    assert not final.more and final.stopped == "6 attempts"
    assert final.half_width > UNSTABLE_LIMIT
    assert final.disturbed and final.reason.startswith("unstable")
    # wider than the target but within the unstable limit (the machine's own drift
    # between processes): stops with its wide interval, not flagged
    modest = decide(_records([1.0, 1.3, 1.15, 0.9, 1.4, 1.2]), min_processes=3, max_processes=6)
    assert CI_TARGET < modest.half_width <= UNSTABLE_LIMIT
    assert not modest.more and not modest.disturbed


def test_disturbed_processes_are_replaced_and_flagged_when_they_persist() -> None:
    one_bad = decide(_records([1.0, 1.0, 1.0], disturbed=(1,)), min_processes=3, max_processes=6)
    assert one_bad.more and one_bad.why_more.startswith("re-measure: other programs")
    replaced = decide(
        _records([1.0, 5.0, 1.0, 1.01], disturbed=(1,)), min_processes=3, max_processes=6
    )
    assert replaced.stopped == "converged" and not replaced.disturbed  # the outlier left out
    persistent = decide(
        _records([1.0] * 6, disturbed=(0, 1, 2, 3, 4)), min_processes=3, max_processes=6
    )
    assert persistent.disturbed and "1 of 6 processes undisturbed" in persistent.reason


def test_one_process_suffices_when_no_replication_is_asked_for() -> None:
    quick = decide(_records([1.0]), min_processes=1, max_processes=2)
    assert not quick.more and quick.stopped == "converged"
    replace = decide(_records([1.0], disturbed=(0,)), min_processes=1, max_processes=2)
    assert replace.more and replace.why_more.startswith("re-measure")


def test_the_budget_stops_sampling_as_it_stands() -> None:
    stopped = decide(_records([1.0, 1.8, 1.4]), min_processes=3, max_processes=6, budget_left=False)
    assert not stopped.more and stopped.stopped == "time budget used"
    assert stopped.disturbed  # +-29%: unstable


def test_process_disturbance_reasons() -> None:
    assert process_disturbance([1.0, 1.01], [0.01, 0.02, 0.0]) == ""
    assert "other programs took" in process_disturbance([1.0, 1.0], [FOREIGN_LIMIT + 0.1] * 3)
    assert "unsteady" in process_disturbance([1.0, 1.5], [0.0, 0.0])
    # one slow value among three leaves the median where it was: not judged unsteady
    assert process_disturbance([1.0, 1.01, 1.6], [0.0, 0.0, 0.0]) == ""
    assert "unsteady" in process_disturbance([1.0, 1.3, 1.6], [0.0, 0.0, 0.0])
    assert process_disturbance([1.0], [math.nan]) == ""  # no record: not judged


# ---- the columns ----------------------------------------------------------------------


def test_new_columns_have_their_declared_types() -> None:
    for column, kind in {
        "process": "int",
        "foreign_cpu": "float",
        "tree_cpu": "float",
        "process_disturbed": "bool",
        "attempts": "int",
        "disturbed": "bool",
        "disturbed_reason": "str",
        "stopped": "str",
        "kernel": "str",
        "inline": "bool",
    }.items():
        assert COLUMN_TYPES[column] == kind, column
    table = as_table(
        [
            {
                "config_id": "a",
                "process": 1,
                "foreign_cpu": 0.25,
                "tree_cpu": 0.9,
                "process_disturbed": True,
                "attempts": 4,
                "disturbed": False,
                "disturbed_reason": "",
                "stopped": "converged",
                "kernel": "cython",
                "inline": False,
            },
            {"config_id": "b", "attempts": 0},  # a skipped configuration: NA, not 0/False
        ]
    )
    assert str(table["process"].dtype) == "Int64" and str(table["attempts"].dtype) == "Int64"
    assert table["foreign_cpu"].dtype == "float64" and table["tree_cpu"].dtype == "float64"
    for column in ("process_disturbed", "disturbed", "inline"):
        assert str(table[column].dtype) == "boolean", column
    assert table["kernel"].tolist() == ["cython", ""]
    assert pd.isna(table["process"].iloc[1]) and pd.isna(table["inline"].iloc[1])


# ---- a real CPU hog during a tiny sweep ---------------------------------------------------

_BURNER = """
import sys, time
deadline = time.monotonic() + float(sys.argv[1])
print("burning", flush=True)
while time.monotonic() < deadline:
    pass
"""


@pytest.fixture
def burners() -> list[subprocess.Popen]:
    """One CPU-burning process per usable CPU, each bounded in time and killed at the end."""
    started = [
        subprocess.Popen([sys.executable, "-c", _BURNER, "240"], stdout=subprocess.PIPE, text=True)
        for _ in range(len(os.sched_getaffinity(0)))
    ]
    try:
        for process in started:
            assert process.stdout.readline().strip() == "burning"
        yield started
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=10)
        for process in started:  # gone: reaped, no process left with its id and command
            assert process.poll() is not None
            assert not any(
                p.pid == process.pid for p in psutil.process_iter() if p.status() != "zombie"
            )


@pytest.mark.exclusive
@pytest.mark.timeout(300)
def test_a_cpu_hog_is_seen_and_the_configuration_re_measured_or_flagged(
    burners: list[subprocess.Popen], tmp_path: Path
) -> None:
    out = tmp_path / "hog"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--quick",
            "--rounds",
            "1,2",
            "--workloads",
            "schreiber",
            "--sizes",
            "1000",
            "--strategies",
            "einsum",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 240  # the burners outlived the sweep
    assert all(process.poll() is None for process in burners)
    table = load_table(out)
    assert set(table["status"]) == {"ok"}  # nothing lost
    # the hog took at least the CPUs' worth it could: far above the limit
    assert table["foreign_cpu"].median() > FOREIGN_LIMIT
    assert table["process_disturbed"].all()
    # re-measured once (the second attempt), still disturbed: flagged with the reason
    assert (table["attempts"] == 2).all() and sorted(table["process"].unique()) == [0, 1]
    assert table["disturbed"].all()
    assert table["disturbed_reason"].str.contains("other programs took").all()
    assert "re-measuring schreiber n=1,000 einsum w1: re-measure: other programs" in (
        result.stdout + result.stderr
    )
