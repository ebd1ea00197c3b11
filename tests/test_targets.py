"""Targets as data: results/targets.toml and its loader (harness.bench.targets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bench import processes
from harness.bench.targets import DEFAULT_TARGETS, Target, judge, load_targets
from harness.cli import main as cli_main
from harness.model.errors import DataFileError

GOOD = """
[bench-x]
targets = [
  { name = "small enough", metric = "ratio", comparison = "<=", threshold = 1.5 },
  { name = "found", metric = "count", comparison = ">", threshold = 0 },
]
"""


def one(fields: str) -> str:
    """A [bench-x] section holding one target written as ``{ fields }``."""
    return f"[bench-x]\ntargets = [{{ {fields} }}]\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


def test_the_committed_file_holds_every_bench_processes_target() -> None:
    targets = load_targets("bench-processes", metrics=processes.METRICS)
    assert DEFAULT_TARGETS.name == "targets.toml"
    assert {t.metric for t in targets} == set(processes.METRICS)


def test_a_target_is_one_line_and_is_judged_by_its_comparison(tmp_path: Path) -> None:
    targets = load_targets("bench-x", write(tmp_path, GOOD), metrics={"ratio", "count"})
    assert targets == [
        Target("small enough", "ratio", "<=", 1.5),
        Target("found", "count", ">", 0.0),
    ]
    verdicts = judge(targets, {"ratio": (1.6, "1.60x"), "count": (3, "3 found")})
    assert verdicts == [
        ("small enough", False, "1.60x (target ratio <= 1.5)"),
        ("found", True, "3 found (target count > 0)"),
    ]
    assert judge(targets, {"ratio": (1.5, "1.50x")}) == [
        ("small enough", True, "1.50x (target ratio <= 1.5)")  # count not measured: not judged
    ]
    assert judge(targets, {"count": (None, "")}) == [
        ("found", False, "not measured (target count > 0)")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[bench-x\n", "not valid TOML"),
        ("[other]\ntargets = []\n", r"no \[bench-x\] section"),
        (
            one('name = "a", metric = "ratio", comparison = "<="'),
            "missing threshold",
        ),
        (
            one('name = "a", metric = "speed", comparison = "<=", threshold = 1'),
            "unknown metric 'speed'; valid: count, ratio",
        ),
        (
            one('name = "a", metric = "ratio", comparison = "=<", threshold = 1'),
            "unknown comparison '=<'",
        ),
        (
            one('name = "a", metric = "ratio", comparison = "<=", threshold = "1"'),
            "threshold must be a number",
        ),
        (
            one('name = "a", metric = "ratio", comparison = "<=", threshold = 1, x = 2'),
            "unknown key",
        ),
    ],
)
def test_a_malformed_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataFileError, match=message):
        load_targets("bench-x", write(tmp_path, text), metrics={"ratio", "count"})


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="targets file not found"):
        load_targets("bench-x", tmp_path / "nope.toml")


def test_bench_processes_refuses_a_bad_targets_file_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[bench-processes]\ntargets = 3\n")
    assert cli_main(["bench-processes", "--targets", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "[bench-processes]" in err[0]


# ---- bench-compiled: metrics that name a workload, strategy and worker count -----------


def test_the_committed_file_holds_the_bench_compiled_targets() -> None:
    from harness.bench import compiled_targets

    targets = compiled_targets.load()
    figures = {metric.figure for _, metric in targets}
    assert figures == {"fastest_compiled_ms", "sklearn_ratio", "scaling", "peer_ratio"}
    assert compiled_targets.peer_pairs(targets) == [("onedal", "openmp"), ("numba", "openmp")]


def test_a_bench_compiled_target_is_one_line_and_judged_per_workload(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from harness.bench import compiled_targets

    path = write(
        tmp_path,
        "[bench-compiled]\ntargets = [\n"
        '  { name = "a", metric = "sklearn_ratio:quinn:w2", comparison = ">=", threshold = 4 },\n'
        '  { name = "b", metric = "scaling:*:openmp", comparison = ">=", threshold = 1.5 },\n'
        "]\n",
    )
    targets = compiled_targets.load(path)

    def config(name: str, workers: int, ms: float) -> SimpleNamespace:
        return SimpleNamespace(name=name, workers=workers, median_ms=ms, library=None)

    configs = [config("sklearn", 1, 40.0), config("openmp", 1, 20.0), config("openmp", 2, 10.0)]
    quinn = compiled_targets.evaluate("quinn", configs, targets)
    assert [check["status"] for check in quinn] == ["PASS", "PASS"]  # 4x; 2x
    highdim = compiled_targets.evaluate("highdim", configs[:2], targets)
    assert [check["status"] for check in highdim] == ["SKIP"]  # no 2-worker time
    assert "needs --workers 1,2" in highdim[0]["detail"]


def test_bench_compiled_refuses_a_metric_outside_its_grammar(tmp_path: Path) -> None:
    from harness.bench import compiled_targets

    path = write(
        tmp_path,
        '[bench-compiled]\ntargets = [{ name = "x", metric = "speed:quinn", '
        'comparison = ">=", threshold = 1 }]\n',
    )
    with pytest.raises(DataFileError, match=r"unknown metric 'speed:quinn'.*sklearn_ratio"):
        compiled_targets.load(path)
