"""Hostile input: what a user who tries to break the harness types, and what they get.

The promise (README): bad input gives one ``error:`` line and exit status 2 (argparse
adds one usage line), never a traceback; nothing is lost and nothing is left behind.
Every case runs in-process through ``harness.cli.main`` (a subprocess start-up costs
seconds here), and each fix is tested with the neighbouring cases it also covers.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness import cli
from harness.model import args as types
from harness.model import footprint
from harness.model.errors import DataFileError, InvalidDataError, InvalidParameterError
from harness.model.validation import check_data, max_abs_value
from harness.model.workloads import dataset_from_file, load_data
from harness.sweep.results import META_FILE, SCHEMA_VERSION, TABLE_FILE

BUILTIN_COMMANDS = ("fit", "strategies")
COMMANDS = BUILTIN_COMMANDS + tuple(cli._COMMAND_MODULES)


def parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI on arguments argparse must refuse; returns the error line."""
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2, captured.err
    assert lines[0].startswith("usage: python -m harness"), captured.err
    assert lines[1].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[1]


def user_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI on input the command refuses after parsing; returns the error line."""
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    assert not any("Traceback" in line for line in lines)
    return errors[0]


# --------------------------------------------------------------------------------------
# argparse errors: usage plus one error line, exit 2, for every command
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_commands_parse_error_is_usage_plus_one_line(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = parse_error([command, "--no-such-option"], capsys)
    assert "--no-such-option" in line or "required" in line


@pytest.mark.parametrize(
    "argv",
    [[], ["no-such-command"], ["fit"], ["fit", "--strategy", "einsum"], ["check"]],
    ids=["nothing", "unknown-command", "fit-bare", "fit-no-source", "check-bare"],
)
def test_missing_arguments_are_usage_plus_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    parse_error(argv, capsys)


# --------------------------------------------------------------------------------------
# the shared argument types
# --------------------------------------------------------------------------------------

THIRTY_DIGITS = "1" * 30


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (types.size, "inf", "infinite"),
        (types.size, "-inf", "infinite"),
        (types.size, "nan", "not a number"),
        (types.size, "0", ">= 1"),
        (types.size, "-5", ">= 1"),
        (types.size, "1.5", "whole number"),
        (types.size, "1e13", "too large"),
        (types.size, "1e19", "too large"),
        (types.size, "1e300", "too large"),
        (types.size, "1e400", "infinite"),
        (types.size, THIRTY_DIGITS, "too large"),
        (types.size, "ten", "expected a size"),
        (types.size, "", "expected a size"),
        (types.size, "0x10", "expected a size"),
        (types.workers, "0", ">= 1"),
        (types.workers, "-1", ">= 1"),
        (types.workers, "2.5", "whole number"),
        (types.workers, THIRTY_DIGITS, "at most 1,024"),
        (types.workers, "1025", "at most 1,024"),
        (types.workers, "inf", "infinite"),
        (types.seed, "-1", ">= 0"),
        (types.seed, "4294967296", "32-bit"),
        (types.seed, THIRTY_DIGITS, "32-bit"),
        (types.seed, "nan", "not a number"),
        (types.positive_int, "0", ">= 1"),
        (types.positive_int, "2147483648", "too large"),
        (types.nonnegative_int, "-1", ">= 0"),
        (types.size_list, "1e4,inf", "infinite"),
        (types.size_list, ",", "comma-separated"),
        (types.size_list, "1e4,0", ">= 1"),
        (types.sizes_at_least(10), "5,100", ">= 10"),
        (types.worker_list, "1," + THIRTY_DIGITS, "at most 1,024"),
        (types.worker_list, "1,0", ">= 1"),
        (types.seconds, "0", "> 0"),
        (types.seconds, "inf", "> 0"),
        (types.seconds, "nan", "> 0"),
        (types.seconds_or_inf, "nan", "> 0"),
        (types.seconds_or_inf, "-1", "> 0"),
        (types.seconds_or_inf, "soon", "expected seconds"),
        (types.tolerance, "0", "> 0"),
        (types.tolerance, "-1e-6", "> 0"),
        (types.tolerance, "inf", "> 0"),
        (types.probability, "0", "between 0 and 1"),
        (types.probability, "1", "between 0 and 1"),
        (types.probability, "nan", "between 0 and 1"),
        (types.probability, "1.5", "between 0 and 1"),
    ],
)
def test_argument_types_refuse(parse, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (types.size, "4e6", 4_000_000),
        (types.size, "4_000_000", 4_000_000),
        (types.size, " 100 ", 100),
        (types.size, "1e12", 10**12),
        (types.positive_int, "2147483647", 2**31 - 1),
        (types.workers, "1024", 1024),
        (types.seed, "0", 0),
        (types.seed, "4294967295", 2**32 - 1),
        (types.size_list, "1e5,1e4,1e4", (10_000, 100_000)),
        (types.worker_list, "2,1", (1, 2)),
        (types.seconds_or_inf, "inf", float("inf")),
        (types.seconds, "1.5", 1.5),
        (types.probability, "0.05", 0.05),
    ],
)
def test_argument_types_accept(parse, text: str, value) -> None:
    assert parse(text) == value


def test_parameter_error_form_for_values_read_from_files() -> None:
    with pytest.raises(InvalidParameterError, match=r"^--sizes: .*infinite"):
        types.as_parameter_error(types.size, "inf", "--sizes")


# --------------------------------------------------------------------------------------
# sizes, seeds and workers on the command line
# --------------------------------------------------------------------------------------

FIT = ["fit", "--strategy", "einsum", "--iterations", "3"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "inf"], "infinite"),
        (["--n", "nan"], "not a number"),
        (["--n", "1e19"], "too large"),
        (["--n", "1e300"], "too large"),
        (["--n", "0"], ">= 1"),
        (["--seed", "-1"], ">= 0"),
        (["--seed", "4294967296"], "32-bit"),
        (["--workers", THIRTY_DIGITS], "at most 1,024"),
        (["--tol", "nan"], "tolerance"),
    ],
)
def test_fit_refuses_at_parse_time(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["fit", "--strategy", "einsum", "--workload", "quinn"]
    assert message in parse_error(base + extra, capsys)


@pytest.mark.parametrize("n", ["1e10", "1e11", "1e12"])
@pytest.mark.parametrize("workload", ["schreiber", "quinn", "highdim"])
def test_fit_refuses_sizes_that_do_not_fit_in_memory(
    n: str, workload: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = user_error([*FIT, "--workload", workload, "--n", n], capsys)
    assert "need about" in line and "available" in line and "at most n =" in line


def test_memory_estimate_counts_data_and_working_memory() -> None:
    n, d, k = 1_000_000, 2, 4
    estimate = footprint.estimate(n, d, k)
    assert estimate.data == n * d * 8
    assert estimate.working == (6 * n * k + 4 * n * d) * 8  # responsibilities + scratch
    assert estimate.total == estimate.data + max(estimate.generation, estimate.working)
    processes = footprint.estimate(n, d, k, kind="processes")
    assert processes.working == estimate.working + estimate.data  # the workers' copy
    assert footprint.estimate(n, d, k, generated=False).generation == 0


def test_memory_refusal_threshold_and_message() -> None:
    need = footprint.estimate(1000, 2, 4).total
    assert footprint.check_fits(1000, 2, 4, available=need).total == need
    with pytest.raises(InvalidParameterError, match=r"need about 266 KiB.*at most n = 999 "):
        footprint.check_fits(1000, 2, 4, available=need - 1)


def test_max_iter_without_tol_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    line = user_error([*FIT, "--workload", "quinn", "--n", "500", "--max-iter", "5"], capsys)
    assert "--max-iter" in line and "--tol" in line


def test_max_iter_with_tol_caps_the_fit(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", "--strategy", "einsum", "--workload", "quinn", "--n", "600"]
    assert cli.main([*argv, "--tol", "1e-30", "--max-iter", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["iterations"] == 2 and not payload["converged"]


def test_serial_strategy_with_workers_gets_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", "--strategy", "scipy", "--workload", "schreiber", "--n", "400"]
    assert cli.main([*argv, "--iterations", "1", "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "note: scipy is a serial strategy: --workers 2" in err
    assert cli.main([*argv, "--iterations", "1"]) == 0  # neighbour: 1 worker, no note
    assert "serial strategy" not in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# bench-compiled and bench-processes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["bench-compiled", "bench-processes"])
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "inf"], "infinite"),
        (["--n", "0"], ">= 1"),
        (["--seed", "-1"], ">= 0"),
        (["--sizes", "inf"], "infinite"),
        (["--workers", THIRTY_DIGITS], "at most 1,024"),
        (["--json", "/nonexistent/x.json"], "does not exist"),
        (["--json", "/proc/x.json"], "cannot write in /proc"),
        (["--json", "/"], "is a folder"),
    ],
)
def test_bench_commands_refuse_at_parse_time(
    command: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if command == "bench-processes" and extra[0] == "--seed":
        extra, message = ["--repeats", "0"], ">= 1"  # it has no --seed: a neighbour instead
    if command == "bench-compiled" and extra[0] == "--sizes":
        extra, message = ["--rounds", "0"], ">= 1"  # its neighbour there
    assert message in parse_error([command, *extra], capsys)


@pytest.mark.parametrize("command", ["bench-compiled", "bench-processes"])
def test_bench_commands_refuse_sizes_that_do_not_fit(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = user_error([command, "--n", "1e11"], capsys)
    assert "need about" in line


# --------------------------------------------------------------------------------------
# run: output folder and sizes checked before anything is written
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", ["1e11", "1e12"])
def test_run_refuses_huge_sizes_before_making_a_folder(
    n: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["run", "--workloads", "quinn", "--strategies", "einsum", "--sizes", f"1000,{n}"]
    line = user_error([*argv, "--out", str(out)], capsys)
    assert "need about" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("FILE", "exists and is not a folder"),
        ("FILE/sub", "is a file, not a folder"),
        ("/proc/nope", "cannot write in /proc"),
    ],
)
def test_run_out_that_cannot_be_a_folder(
    out: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain"
    plain.write_text("not a folder")
    out = out.replace("FILE", str(plain))
    assert message in parse_error(["run", "--out", out], capsys)
    assert plain.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sizes", "inf"], "infinite"),
        (["--sizes", "1e4,0"], ">= 1"),
        (["--workers", "1," + THIRTY_DIGITS], "at most 1,024"),
    ],
)
def test_run_refuses_bad_sizes_and_workers(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in user_error(["run", "--out", str(tmp_path / "r"), *extra], capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("budget", ["nan", "-1", "0", "soon"])
def test_run_refuses_bad_time_budgets(budget: str, capsys: pytest.CaptureFixture[str]) -> None:
    parse_error(["run", "--time-budget", budget], capsys)


# --------------------------------------------------------------------------------------
# CSV and other data files
# --------------------------------------------------------------------------------------

BOM = "\ufeff"


def _rows(n: int = 200) -> str:
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (n // 2, 2)), rng.normal(6, 1, (n - n // 2, 2))])
    return "".join(f"{a!r},{b!r}\n" for a, b in X.tolist())


@pytest.mark.parametrize(
    ("prefix", "expected_n", "header"),
    [
        (BOM, 200, None),  # the BOM used to make the first row a "header"
        (BOM + "x,y\n", 200, "x,y"),
        ("x,y\n", 200, "x,y"),
        ("", 200, None),
        (" \n\n", 200, None),  # blank lines before the data
    ],
    ids=["bom-no-header", "bom-header", "header", "plain", "blank-lines-first"],
)
def test_csv_rows_are_never_lost(
    tmp_path: Path, prefix: str, expected_n: int, header: str | None
) -> None:
    path = tmp_path / "points.csv"
    path.write_text(prefix + _rows(), encoding="utf-8")
    dataset = dataset_from_file(path, 2)
    assert dataset.n == expected_n
    if header is None:
        assert dataset.notes == ()
    else:
        assert len(dataset.notes) == 1 and repr(header) in dataset.notes[0]


def test_first_row_with_spaces_is_data(tmp_path: Path) -> None:
    path = tmp_path / "spaced.csv"
    path.write_text(BOM + " 1.5 ,\t2.5 \n3,4\n5,6\n", encoding="utf-8")
    np.testing.assert_array_equal(load_data(path), [[1.5, 2.5], [3, 4], [5, 6]])


def test_fit_says_when_a_header_was_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "points.csv"
    path.write_text(BOM + "x,y\n" + _rows(), encoding="utf-8")
    argv = ["fit", "--strategy", "einsum", "--data", str(path), "--k", "2", "--iterations", "1"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "note: points.csv: first line taken as a header and skipped: 'x,y'" in captured.err
    assert "n=200 " in captured.out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty: no data rows"),
        ("\n\n  \n", "is empty: no data rows"),
        (BOM, "is empty: no data rows"),
        ("x,y\n", "header line ('x,y') but no data rows"),
        (BOM + "x,y\n\n", "header line ('x,y') but no data rows"),
    ],
    ids=["empty", "blank", "bom-only", "header-only", "bom-header-only"],
)
def test_empty_csv_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy "input contained no data" warning
        with pytest.raises(DataFileError) as raised:
            load_data(path)
    assert message in str(raised.value)
    assert "shape" not in str(raised.value)


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev-null", "missing"])
def test_data_that_is_not_a_file_says_what_it_is(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "folder":
        path, message = tmp_path / "data.csv", "is a folder, not a data file"
        path.mkdir()
    elif kind == "fifo":
        path, message = tmp_path / "pipe.csv", "is a named pipe (FIFO), not a data file"
        os.mkfifo(path)  # opening it would block until someone writes: it is never opened
    elif kind == "dev-null":
        path, message = Path(os.devnull), "is a character device, not a data file"
    else:
        path, message = tmp_path / "absent.csv", "data file not found"
    argv = ["fit", "--strategy", "einsum", "--data", str(path), "--k", "2"]
    assert message in user_error(argv, capsys)


# --------------------------------------------------------------------------------------
# huge values
# --------------------------------------------------------------------------------------


def _two_blobs(scale: float, n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (n // 2, 2)), rng.normal(6, 1, (n - n // 2, 2))])
    X[:, 1] *= scale
    return X


@pytest.mark.parametrize("scale", [1e154, 1e200, 1e300, -1e160])
def test_values_whose_covariance_overflows_are_refused(scale: float) -> None:
    with pytest.raises(InvalidDataError, match=r"too large to fit.*column 1.*at most"):
        check_data(_two_blobs(scale))


def test_huge_values_from_a_file_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.npy"
    np.save(path, _two_blobs(1e154))
    argv = ["fit", "--strategy", "einsum", "--data", str(path), "--k", "2", "--iterations", "3"]
    line = user_error(argv, capsys)
    assert "too large to fit" in line and "Divide the data" in line


def test_the_limit_depends_on_n() -> None:
    assert 1e152 < max_abs_value(200) < 1e153
    assert 1e150 < max_abs_value(10**6) < 1e151
    assert max_abs_value(10**8) < max_abs_value(10**6)


@pytest.mark.parametrize("strategy", ["einsum", "scipy", "python", "cython", "openmp"])
@pytest.mark.parametrize("scale", [1e150, "limit"])
def test_values_just_inside_the_limit_fit(strategy: str, scale) -> None:
    import strategies
    from harness.model.gmm import initial_params
    from harness.sweep.em import fit

    info = strategies.get_info(strategy)
    if not info.available:
        pytest.skip(info.reason)
    X = _two_blobs(1.0)
    X[:, 1] *= (
        (max_abs_value(len(X)) * 0.999 / np.abs(X[:, 1]).max()) if scale == "limit" else scale
    )
    with info.cls(workers=1) as model:
        result = fit(model, X, initial_params(X, 2, seed=0), max_iter=4, tol=None)
    assert np.all(np.isfinite(result.loglik))
    assert np.all(np.isfinite(result.final.covariances))
    np.testing.assert_allclose(np.sort(result.final.weights), [0.5, 0.5], atol=0.02)


# --------------------------------------------------------------------------------------
# compare, check and plot on things that are not run folders
# --------------------------------------------------------------------------------------


def _write_meta_only(folder: Path, text: str | None) -> Path:
    """A folder with a one-row table and the given meta.json text (None: no file)."""
    from harness.sweep.results import COLUMNS

    folder.mkdir(parents=True, exist_ok=True)
    row = dict.fromkeys(COLUMNS, "")
    row.update(workload="quinn", n=1000, d=2, k=50, strategy="einsum", kind="threads")
    row.update(workers=1, phase="iteration", seconds=0.01, value_index=0, status="ok")
    import pandas as pd

    pd.DataFrame([row], columns=list(COLUMNS)).to_csv(folder / TABLE_FILE, index=False)
    if text is not None:
        (folder / META_FILE).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (None, "no meta.json"),
        ("", "not valid JSON"),
        ('{"schema_version": 1, "run_id": "x", "sw', "not valid JSON"),
        ("{}", "empty object without a schema_version"),
        ("[1, 2]", "a JSON list without a schema_version"),
        ('"text"', "a JSON str without a schema_version"),
    ],
    ids=["missing", "empty-file", "truncated", "empty-object", "list", "string"],
)
@pytest.mark.parametrize("command", ["plot", "check"])
def test_plot_and_check_say_what_is_wrong_with_meta(
    command: str, meta: str | None, message: str, tmp_path: Path, capsys
) -> None:
    run = _write_meta_only(tmp_path / "run", meta)
    extra = ["--no-fitted-model"] if command == "plot" else []
    assert message in user_error([command, str(run), *extra], capsys)


@pytest.mark.parametrize("command", ["plot", "check", "compare-base", "compare-new"])
def test_a_plain_file_is_not_a_folder(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("hello")
    good = _write_meta_only(tmp_path / "good", json.dumps({"schema_version": SCHEMA_VERSION}))
    if command == "compare-base":
        argv = ["compare", str(plain), str(good)]
    elif command == "compare-new":
        argv = ["compare", str(good), str(plain)]
    else:
        argv = [command, str(plain)]
    line = user_error(argv, capsys)
    assert "not a folder" in line and "does not exist" not in line


@pytest.mark.parametrize(("seed", "message"), [("-1", ">= 0"), ("4294967296", "32-bit")])
def test_compare_seed_is_range_checked(
    seed: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", str(tmp_path), str(tmp_path), "--seed", seed]
    assert message in parse_error(argv, capsys)
