"""``python -m harness compare`` on synthetic result folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main as cli_main
from harness.gate.compare import (
    IncompatibleRunsError,
    compare_runs,
    format_markdown,
    parse_threshold,
)
from harness.gate.verdicts import min_p_value
from harness.model.errors import DataFileError, InvalidParameterError
from harness.sweep.results import SCHEMA_VERSION, TABLE_FILE, config_id
from tests.conftest import blank_row, write_run_folder

pytestmark = pytest.mark.timeout(60)

SHAPES = {"quinn": (2, 50), "schreiber": (2, 4), "highdim": (32, 8)}
HOST = {"cpu_model": "Test CPU 9000", "usable_cores": 2}


def write_run(
    path: Path,
    samples: dict[tuple, object],
    *,
    meta: dict | None = None,
    host: dict | None = None,
    shapes: dict | None = None,
) -> Path:
    """Write a results folder the way the runner does: meta.json and a tidy table.

    ``samples`` maps ``(workload, n, strategy, workers, phase)`` to a list of seconds (or
    to a list of such lists, one per measurement process), or
    to ``("failed", "reason")`` / ``("skipped", "reason")`` for a configuration that did
    not run.
    """
    path.mkdir(parents=True, exist_ok=True)
    host = {**HOST, **(host or {})}
    shapes = {**SHAPES, **(shapes or {})}
    rows = []
    for (workload, n, strategy, workers, phase), values in samples.items():
        d, k = shapes[workload]
        base = blank_row(
            workload=workload,
            n=n,
            d=d,
            k=k,
            strategy=strategy,
            kind="serial",
            workers=workers,
            phase=phase,
            config_id=config_id(workload, n, strategy, workers),
            effective_workers=workers,
            oversubscribed=False,
            final_loglik=-3.0,
            run_id=path.name,
            python_version="3.11.7",
            numpy_version="2.0",
            git_commit="abc123",
            **host,
        )
        if isinstance(values, tuple):
            rows.append(
                {
                    **base,
                    "seconds": math.nan,
                    "value_index": 0,
                    "status": values[0],
                    "error": values[1],
                }
            )
        elif values and isinstance(values[0], list):  # one list of values per process
            rows.extend(
                {**base, "seconds": s, "value_index": i, "status": "ok", "process": p}
                for p, process in enumerate(values)
                for i, s in enumerate(process)
            )
        else:
            rows.extend(
                {**base, "seconds": s, "value_index": i, "status": "ok"}
                for i, s in enumerate(values)
            )
    return write_run_folder(path, rows, meta)


def noisy(median: float, spread: float, count: int = 10, seed: int = 0) -> list[float]:
    """Positive timings around ``median`` with relative noise ``spread``."""
    rng = np.random.default_rng(seed)
    return list(median * (1 + spread * rng.standard_normal(count)).clip(0.05))


KEY = ("quinn", 10_000, "scipy", 1, "iteration")


def test_identical_results_give_no_change(tmp_path):
    values = noisy(0.02, 0.05, seed=1)
    samples = {KEY: values, ("quinn", 10_000, "einsum", 2, "iteration"): noisy(0.01, 0.05)}
    base = write_run(tmp_path / "base", samples)
    new = write_run(tmp_path / "new", samples)
    report = compare_runs(base, new)
    assert [c.verdict for c in report.comparisons] == ["unchanged", "unchanged"]
    assert not report.regressions
    for c in report.comparisons:
        assert c.ratio == pytest.approx(1.0)
        assert c.p_value == pytest.approx(1.0)
        assert c.ci_low <= 1.0 <= c.ci_high
    assert cli_main(["compare", str(base), str(new)]) == 0


def test_two_fold_slowdown_with_low_noise_is_a_regression(tmp_path, capsys):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.02, seed=1)})
    new = write_run(tmp_path / "new", {KEY: noisy(0.04, 0.02, seed=2)})
    report = compare_runs(base, new)
    (c,) = report.comparisons
    assert c.verdict == "slower" and c.regression
    assert c.ratio == pytest.approx(2.0, rel=0.05)
    assert c.ci_low > 1.1 and c.p_value < 0.01
    markdown_file = tmp_path / "compare.md"
    assert cli_main(["compare", str(base), str(new), "--markdown", str(markdown_file)]) == 1
    out = capsys.readouterr().out
    assert "SLOWER" in out and "1 regression(s)" in out
    markdown = markdown_file.read_text()
    assert "| **SLOWER** | quinn | 10,000 | scipy |" in markdown


def test_two_fold_speedup_is_faster_not_a_regression(tmp_path):
    base = write_run(tmp_path / "base", {KEY: noisy(0.04, 0.02, seed=1)})
    new = write_run(tmp_path / "new", {KEY: noisy(0.02, 0.02, seed=2)})
    (c,) = compare_runs(base, new).comparisons
    assert c.verdict == "faster" and not c.regression
    assert cli_main(["compare", str(base), str(new)]) == 0


def test_small_shift_with_lots_of_noise_is_not_significant(tmp_path):
    base = write_run(tmp_path / "base", {KEY: noisy(0.020, 0.40, seed=3)})
    new = write_run(tmp_path / "new", {KEY: noisy(0.023, 0.40, seed=4)})
    (c,) = compare_runs(base, new).comparisons
    assert c.verdict == "unchanged" and not c.regression
    assert c.p_value >= 0.01
    assert c.ci_low < 1.0 < c.ci_high  # the interval is wide enough to contain "no change"


def test_large_shift_beyond_threshold_but_not_significant_is_unchanged(tmp_path):
    base = write_run(tmp_path / "base", {KEY: [0.010, 0.030, 0.012, 0.029, 0.011]})
    new = write_run(tmp_path / "new", {KEY: [0.013, 0.031, 0.016, 0.028, 0.030]})
    (c,) = compare_runs(base, new).comparisons
    assert c.ratio > 1.1
    assert c.verdict == "unchanged" and "not significant" in c.note


def test_significant_change_within_threshold_is_unchanged(tmp_path):
    base = write_run(tmp_path / "base", {KEY: noisy(0.0200, 0.001, seed=1)})
    new = write_run(tmp_path / "new", {KEY: noisy(0.0210, 0.001, seed=2)})  # +5%
    (c,) = compare_runs(base, new).comparisons
    assert c.p_value < 0.01
    assert c.verdict == "unchanged" and "within the threshold" in c.note
    # the same data is a regression with a 2% threshold
    (c,) = compare_runs(base, new, threshold=0.02).comparisons
    assert c.verdict == "slower"


def test_too_few_values_are_never_significant_and_say_so(tmp_path):
    base = write_run(tmp_path / "base", {KEY: [0.010, 0.011, 0.012]})
    new = write_run(tmp_path / "new", {KEY: [0.030, 0.031, 0.032]})
    (c,) = compare_runs(base, new).comparisons
    assert c.ratio == pytest.approx(31 / 11)
    assert c.verdict == "unchanged" and "too few values" in c.note
    assert min_p_value(3, 3) == pytest.approx(0.1)
    assert min_p_value(5, 5) < 0.01


def test_missing_configurations_are_listed(tmp_path, capsys):
    only_base = ("quinn", 10_000, "einsum", 2, "iteration")
    only_new = ("quinn", 10_000, "python", 1, "iteration")
    skipped = ("quinn", 10_000, "openmp", 2, "iteration")
    base = write_run(
        tmp_path / "base",
        {KEY: noisy(0.02, 0.01), only_base: noisy(0.01, 0.01), skipped: noisy(0.005, 0.01)},
    )
    new = write_run(
        tmp_path / "new",
        {
            KEY: noisy(0.02, 0.01),
            only_new: noisy(0.5, 0.01),
            skipped: ("skipped", "kernels not compiled"),
        },
    )
    report = compare_runs(base, new)
    missing = {c.strategy: c.note for c in report.by_verdict("missing")}
    assert set(missing) == {"einsum", "python", "openmp"}
    assert missing["einsum"].startswith("only in BASE")
    assert missing["python"].startswith("only in NEW")
    assert "skipped: kernels not compiled" in missing["openmp"]
    assert not report.regressions  # skipped/absent is not a regression
    assert cli_main(["compare", str(base), str(new)]) == 0
    out = capsys.readouterr().out
    assert "3 missing" in out and "kernels not compiled" in out


def test_configuration_that_starts_failing_is_a_regression(tmp_path):
    key = ("quinn", 10_000, "openmp", 2, "iteration")
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01), key: noisy(0.005, 0.01)})
    new = write_run(
        tmp_path / "new", {KEY: noisy(0.02, 0.01), key: ("failed", "WorkerError: worker died")}
    )
    report = compare_runs(base, new)
    (c,) = report.regressions
    assert c.verdict == "missing" and "failed: WorkerError" in c.note
    assert cli_main(["compare", str(base), str(new)]) == 1


def test_phases_are_compared_separately_and_on_request(tmp_path):
    prepare = ("quinn", 10_000, "scipy", 1, "prepare")
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01), prepare: noisy(0.1, 0.01)})
    new = write_run(
        tmp_path / "new", {KEY: noisy(0.02, 0.01, seed=5), prepare: noisy(0.3, 0.01, seed=5)}
    )
    assert not compare_runs(base, new).regressions  # default: iteration only
    report = compare_runs(base, new, phases=["iteration", "prepare"])
    assert [(c.phase, c.verdict) for c in report.comparisons] == [
        ("prepare", "slower"),
        ("iteration", "unchanged"),
    ]
    assert cli_main(["compare", str(base), str(new), "--phase", "all"]) == 1


def test_bootstrap_interval_is_deterministic(tmp_path):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.2, seed=1)})
    new = write_run(tmp_path / "new", {KEY: noisy(0.02, 0.2, seed=2)})
    first = compare_runs(base, new).comparisons[0]
    second = compare_runs(base, new).comparisons[0]
    assert (first.ci_low, first.ci_high) == (second.ci_low, second.ci_high)


# ---- unusable input: exit status 2 ------------------------------------------------------


def test_missing_folder_exits_2(tmp_path, capsys):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    assert cli_main(["compare", str(base), str(tmp_path / "nope")]) == 2
    assert "NEW folder does not exist" in capsys.readouterr().err


def test_folder_without_results_exits_2(tmp_path, capsys):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    (tmp_path / "empty").mkdir()
    assert cli_main(["compare", str(base), str(tmp_path / "empty")]) == 2
    assert "not a results folder" in capsys.readouterr().err


def test_malformed_table_exits_2(tmp_path, capsys):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    new = write_run(tmp_path / "new", {KEY: noisy(0.02, 0.01)})
    (new / TABLE_FILE).write_text("workload,n,seconds\nquinn,10,0.1\n")
    assert cli_main(["compare", str(base), str(new)]) == 2
    assert "lacks the columns" in capsys.readouterr().err

    table = pd.read_csv(base / TABLE_FILE)
    table["seconds"] = table["seconds"].astype(object)
    table.loc[0, "seconds"] = "oops"
    table.to_csv(new / TABLE_FILE, index=False)
    with pytest.raises(DataFileError, match="without a positive number of seconds"):
        compare_runs(base, new)


def test_different_workloads_exit_2_and_say_what_each_run_has(tmp_path, capsys):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    new = write_run(
        tmp_path / "new", {("schreiber", 40_000, "scipy", 1, "iteration"): noisy(0.02, 0.01)}
    )
    assert cli_main(["compare", str(base), str(new)]) == 2
    err = capsys.readouterr().err
    assert "no configuration measured in both runs" in err
    assert "BASE has quinn n=10000" in err and "NEW has schreiber n=40000" in err


def test_same_workload_with_different_data_shape_is_refused(tmp_path):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    new = write_run(tmp_path / "new", {KEY: noisy(0.02, 0.01)}, shapes={"quinn": (2, 20)})
    with pytest.raises(
        IncompatibleRunsError,
        match=r"quinn n=10000: BASE has d=2 k=50, NEW "
        r"has d=2 k=20",
    ):
        compare_runs(base, new)


def test_different_machines_are_refused_unless_allowed(tmp_path, capsys):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    new = write_run(
        tmp_path / "new",
        {KEY: noisy(0.02, 0.01)},
        host={"cpu_model": "Other CPU", "usable_cores": 8},
    )
    assert cli_main(["compare", str(base), str(new)]) == 2
    err = capsys.readouterr().err
    assert "different machines" in err and "cpu_model" in err and "usable_cores" in err
    report = compare_runs(base, new, allow_different_hosts=True)
    assert any("DIFFERENT MACHINES" in w for w in report.warnings)
    assert "DIFFERENT MACHINES" in format_markdown(report)
    assert cli_main(["compare", str(base), str(new), "--allow-different-hosts"]) == 0


def test_different_schema_is_refused(tmp_path):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    new = write_run(
        tmp_path / "new", {KEY: noisy(0.02, 0.01)}, meta={"schema_version": SCHEMA_VERSION + 1}
    )
    with pytest.raises(IncompatibleRunsError, match="schema_version"):
        compare_runs(base, new)


def test_different_data_seed_is_refused_and_protocol_differences_warned(tmp_path):
    def protocol(**changes):
        base = {"mode": "quick", "values": 10, "processes": 0, "min_time": 0.02, "seed": 0}
        return {"sweep": {"protocol": {**base, **changes}}}

    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)}, meta=protocol())
    new = write_run(tmp_path / "new", {KEY: noisy(0.02, 0.01)}, meta=protocol(seed=1))
    with pytest.raises(IncompatibleRunsError, match=r"sweep seed: BASE 0, NEW 1"):
        compare_runs(base, new)
    new = write_run(
        tmp_path / "new",
        {KEY: noisy(0.02, 0.01)},
        meta=protocol(values=20, mode="default", min_time=0.1),
    )
    assert compare_runs(base, new).warnings == [
        "timing protocol min_time differs: BASE 0.02, NEW 0.1",
        "timing protocol mode differs: BASE 'quick', NEW 'default'",
    ]


def test_runs_with_too_few_values_are_warned_about(tmp_path):
    base = write_run(tmp_path / "base", {KEY: [0.010, 0.011, 0.012]})
    (warning,) = compare_runs(base, base).warnings
    assert "1 of 1 comparisons have too few values (as few as 3 per side)" in warning
    assert "--iterations 5" in warning


def test_software_differences_are_warnings(tmp_path):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    new = write_run(tmp_path / "new", {KEY: noisy(0.02, 0.01)})
    table = pd.read_csv(new / TABLE_FILE)
    table["numpy_version"] = "2.1"
    table.to_csv(new / TABLE_FILE, index=False)
    report = compare_runs(base, new)
    assert report.warnings == ["numpy_version differs: BASE '2.0', NEW '2.1'"]


@pytest.mark.parametrize("text, expected", [("10%", 0.10), ("2.5%", 0.025), ("0.2", 0.2)])
def test_threshold_parsing(text, expected):
    assert parse_threshold(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["10", "-5%", "ten", "0", "nan%"])
def test_bad_thresholds_are_refused(text):
    with pytest.raises(InvalidParameterError):
        parse_threshold(text)


def test_bad_threshold_on_the_command_line_exits_2(tmp_path, capsys):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    assert cli_main(["compare", str(base), str(base), "--threshold", "10"]) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert cli_main(["compare", str(base), str(base), "--alpha", "1.5"]) == 2


@pytest.mark.parametrize("chained", [False, True])
def test_selftest_meets_both_targets_on_synthetic_sweeps(tmp_path, monkeypatch, chained):
    """The self-test's bookkeeping, with sweeps replaced by synthetic result folders."""
    from harness.gate import selftest as compare_selftest

    calls = []

    def fake_sweep(out, runner_args, env_extra=None):
        slowdown = (env_extra or {}).get(compare_selftest.SLOWDOWN_ENV, "")
        strategy, _, factor = slowdown.partition(":")
        samples = {}
        for name, seconds in (("scipy", 0.02), ("cython", 0.01)):
            scale = float(factor) if name == strategy else 1.0
            values = noisy(seconds * scale, 0.01, seed=len(calls) * 10 + len(samples))
            samples[("quinn", 10_000, name, 1, "iteration")] = values
        write_run(out, samples)
        calls.append((out.name, tuple(runner_args), slowdown))
        return 0.0

    monkeypatch.setattr(compare_selftest, "sweep", fake_sweep)
    argv = ["--trials", "2", "--replicates", "2", "--out", str(tmp_path / "st")] + (
        ["--chained"] if chained else []
    )
    assert compare_selftest.main(argv) == 0
    aa = ["aa0", "aa1", "aa2", "aa3", "aa4", "aa5"] + ([] if chained else ["aa6", "aa7"])
    slow = ["slowdown-plain0", "slowdown-slowed0", "slowdown-plain1", "slowdown-slowed1"]
    assert [c[0] for c in calls] == aa + slow
    assert all(c[1][:2] == ("--iterations", "10") for c in calls)
    assert [c[2] for c in calls][-4:] == ["", "cython:1.2", "", "cython:1.2"]
    figures = json.loads((tmp_path / "st" / "selftest.json").read_text())
    second = figures["aa"][1]
    assert (second["base"], second["new"]) == (
        (["aa2", "aa4"], ["aa3", "aa5"]) if chained else (["aa4", "aa6"], ["aa5", "aa7"])
    )
    assert figures["aa_clean_trials"] == 2
    assert all(entry["same_commit"] for entry in figures["aa"])
    assert [s["folder"] for s in figures["sweeps"]] == aa + slow
    assert figures["slowdown"]["flagged"] == 1 and figures["slowdown"]["configurations"] == 1
    assert figures["slowdown"]["ratios"][0] == pytest.approx(1.2, rel=0.05)
    assert "A/A: no regression in 2 of 2 trials" in (tmp_path / "st" / "selftest.md").read_text()


# ---- replicate pairs --------------------------------------------------------------------


def _pairs(tmp_path, base_values, new_values):
    """Write replicate runs base1, new1, base2, new2 ...; return the two comma lists."""
    bases, news = [], []
    for i, (b, n) in enumerate(zip(base_values, new_values, strict=True)):
        bases.append(str(write_run(tmp_path / f"base{i + 1}", {KEY: b})))
        news.append(str(write_run(tmp_path / f"new{i + 1}", {KEY: n})))
    return ",".join(bases), ",".join(news)


def test_replicated_slowdown_is_a_regression(tmp_path, capsys):
    base, new = _pairs(
        tmp_path,
        [noisy(0.020, 0.01, seed=1), noisy(0.021, 0.01, seed=2)],
        [noisy(0.040, 0.01, seed=3), noisy(0.041, 0.01, seed=4)],
    )
    report = compare_runs(base, new)
    (c,) = report.comparisons
    assert report.replicates == 2
    assert c.verdict == "slower" and c.regression
    assert c.base_values == 20 and c.new_values == 20
    assert c.ratio == pytest.approx(2.0, rel=0.05)
    assert "significant in each of 2 of 2 pairs" in c.note
    assert cli_main(["compare", base, new]) == 1
    assert "2 replicate pairs" in capsys.readouterr().out


def test_shift_in_one_pair_only_is_not_replicated(tmp_path):
    # the same build, one process landing in a slower memory layout: one pair says
    # "slower", the other does not, so nothing is reported
    base, new = _pairs(
        tmp_path,
        [noisy(0.020, 0.01, seed=1), noisy(0.020, 0.01, seed=2)],
        [noisy(0.026, 0.01, seed=3), noisy(0.020, 0.01, seed=4)],
    )
    (c,) = compare_runs(base, new).comparisons
    assert c.verdict == "unchanged" and not c.regression
    assert "not slower and significant in each of 2 of 2 pairs" in c.note
    assert c.p_value >= 0.01  # intersection-union p-value: the largest of the pairs'


@pytest.mark.parametrize(
    ("base_medians", "new_medians", "spread", "verdict", "said"),
    [
        # a real 10% slowdown, measured +8%, +12%, +11% in three pairs of quiet processes
        ((0.0200, 0.0201, 0.0199), (0.0216, 0.0225, 0.0221), 0.005, "slower",
         "every NEW process slower than every BASE one"),
        # each pair says "slower", but one BASE process is slower than one NEW process:
        # the difference is inside the process-to-process noise
        ((0.0200, 0.0240, 0.0200), (0.0230, 0.0260, 0.0230), 0.003, "unchanged",
         "processes overlap"),
    ],
    ids=["near-threshold-slowdown-seen", "overlapping-processes-not-a-change"],
)  # fmt: skip
def test_replicate_pairs_judge_processes(
    tmp_path, base_medians, new_medians, spread, verdict, said
):
    base, new = _pairs(
        tmp_path,
        [noisy(m, spread, seed=i) for i, m in enumerate(base_medians, start=1)],
        [noisy(m, spread, seed=i) for i, m in enumerate(new_medians, start=4)],
    )
    (c,) = compare_runs(base, new, threshold=0.05).comparisons
    assert c.verdict == verdict and c.regression == (verdict == "slower")
    assert said in c.note


def test_configuration_in_one_pair_only_is_not_flagged(tmp_path):
    base1 = write_run(tmp_path / "base1", {KEY: noisy(0.02, 0.01, seed=1)})
    new1 = write_run(tmp_path / "new1", {KEY: noisy(0.04, 0.01, seed=2)})
    other = ("quinn", 10_000, "einsum", 1, "iteration")
    base2 = write_run(tmp_path / "base2", {other: noisy(0.02, 0.01, seed=3)})
    new2 = write_run(tmp_path / "new2", {other: noisy(0.02, 0.01, seed=4)})
    report = compare_runs([base1, base2], [new1, new2])
    c = next(c for c in report.comparisons if c.strategy == "scipy")
    assert c.verdict == "unchanged" and "in 1 of 2 pairs only" in c.note


def test_replicate_lists_must_pair_up(tmp_path, capsys):
    base = write_run(tmp_path / "base", {KEY: noisy(0.02, 0.01)})
    assert cli_main(["compare", f"{base},{base}", str(base)]) == 2
    assert "2 BASE folder(s) but 1 NEW" in capsys.readouterr().err


def test_replicates_from_another_machine_are_refused(tmp_path):
    base1 = write_run(tmp_path / "base1", {KEY: noisy(0.02, 0.01)})
    new1 = write_run(tmp_path / "new1", {KEY: noisy(0.02, 0.01)})
    base2 = write_run(tmp_path / "base2", {KEY: noisy(0.02, 0.01)}, host={"usable_cores": 4})
    with pytest.raises(IncompatibleRunsError, match="usable_cores: BASE1 '2', BASE2 '4'"):
        compare_runs([base1, base2], [new1, new1])


# --------------------------------------------------------------------------------------
# make compare: choosing what to compare with (--auto)
# --------------------------------------------------------------------------------------


def _sweep_meta(mode: str, sizes: dict, created: str) -> dict:
    return {
        "created": created,
        "sweep": {"mode": mode, "resolved_sizes": sizes, "protocol": {"mode": mode, "seed": 0}},
    }


QUICK = {"quinn": [10_000]}
DEFAULT = {"quinn": [20_000, 200_000]}


def _default_samples(scale: float = 1.0) -> dict:
    return {
        ("quinn", n, "scipy", 1, "iteration"): noisy(0.02 * scale * n / 20_000, 0.01)
        for n in (20_000, 200_000)
    }


def test_auto_compares_a_quick_run_with_the_committed_baseline(tmp_path, capsys):
    root = tmp_path / "results"
    write_run(root / "baseline", {KEY: noisy(0.02, 0.01)}, meta=_sweep_meta("quick", QUICK, "1"))
    write_run(root / "older-default", _default_samples(), meta=_sweep_meta("default", DEFAULT, "2"))
    quick = write_run(
        root / "quick", {KEY: noisy(0.02, 0.01, seed=3)}, meta=_sweep_meta("quick", QUICK, "3")
    )
    assert cli_main(["compare", "--auto", str(quick)]) == 0
    out = capsys.readouterr().out
    assert f"BASE {root / 'baseline'}: the committed baseline swept like NEW" in out
    assert "1 unchanged" in out


def test_auto_compares_a_default_run_with_the_previous_default_run(tmp_path, capsys):
    root = tmp_path / "results"
    write_run(root / "baseline", {KEY: noisy(0.02, 0.01)}, meta=_sweep_meta("quick", QUICK, "1"))
    write_run(root / "first", _default_samples(), meta=_sweep_meta("default", DEFAULT, "2"))
    write_run(root / "quick", {KEY: noisy(0.02, 0.01)}, meta=_sweep_meta("quick", QUICK, "3"))
    write_run(root / "second", _default_samples(1.5), meta=_sweep_meta("default", DEFAULT, "4"))
    # NEW defaults to the newest run that is not a baseline
    from harness.gate.pick import choose_runs

    base, new, reason = choose_runs(root=root)
    assert (base.name, new.name) == ("first", "second")
    assert "most recent earlier run swept like NEW" in reason
    assert cli_main(["compare", "--auto", str(root / "second")]) == 1  # 50% slower
    assert "2 regression(s)" in capsys.readouterr().out


def test_auto_without_anything_comparable_says_what_to_run(tmp_path, capsys):
    root = tmp_path / "results"
    write_run(root / "baseline", {KEY: noisy(0.02, 0.01)}, meta=_sweep_meta("quick", QUICK, "1"))
    new = write_run(root / "only", _default_samples(), meta=_sweep_meta("default", DEFAULT, "2"))
    assert cli_main(["compare", "--auto", str(new)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nothing comparable with")
    assert "no configuration in common" in err and "`make bench` twice" in err
    assert cli_main(["compare", "--auto", str(new), str(new)]) == 2
    assert cli_main(["compare", str(new)]) == 2


def test_a_small_unchanged_difference_says_when_it_could_never_be_flagged(tmp_path):
    base = write_run(tmp_path / "base", {KEY: [0.010, 0.011, 0.012]})
    new = write_run(tmp_path / "new", {KEY: [0.0101, 0.0111, 0.0121]})
    (c,) = compare_runs(base, new).comparisons
    assert c.verdict == "unchanged"
    assert "too few values (3 vs 3) for the test to ever reach alpha=0.01" in c.note
    (c,) = compare_runs(base, write_run(tmp_path / "more", {KEY: noisy(0.011, 0.01)})).comparisons
    assert "too few values" not in c.note  # 3 against 10 can reach 0.01


@pytest.mark.timeout(600)
def test_make_compare_after_a_quick_sweep_reaches_a_verdict(tmp_path):
    """Two tiny real quick sweeps, then the command `make compare` runs (exit 0 or 1)."""
    import subprocess
    import sys

    root = tmp_path / "results"
    sweep = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--quick",
        "--workloads",
        "quinn",
        "--strategies",
        "einsum",
        "--workers",
        "1",
    ]
    for name in ("baseline", "20990101-000000"):
        done = subprocess.run([*sweep, "--out", str(root / name)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    run = max((p for p in root.iterdir() if p.name != "baseline"), key=lambda p: p.stat().st_mtime)
    # the Makefile: $(PY) -m harness compare $(if $(BASE),$(BASE),--auto) $(RUN)
    done = subprocess.run(
        [sys.executable, "-m", "harness", "compare", "--auto", str(run)],
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert f"BASE {root / 'baseline'}: the committed baseline swept like NEW" in done.stdout


def test_one_run_with_several_processes_needs_them_separated(tmp_path):
    """The default protocol's runs: several processes per configuration in one run."""

    def processes(*medians: float, seed: int) -> list[list[float]]:
        return [noisy(m, 0.003, count=4, seed=seed + i) for i, m in enumerate(medians)]

    base = write_run(tmp_path / "base", {KEY: processes(0.020, 0.0212, 0.020, seed=1)})
    overlapping = write_run(tmp_path / "new", {KEY: processes(0.0235, 0.0236, 0.0205, seed=9)})
    (c,) = compare_runs(base, overlapping).comparisons
    assert c.verdict == "unchanged" and "processes overlap" in c.note
    separated = write_run(tmp_path / "new2", {KEY: processes(0.027, 0.028, 0.027, seed=9)})
    (c,) = compare_runs(base, separated).comparisons
    assert c.verdict == "slower" and "every NEW process slower" in c.note
