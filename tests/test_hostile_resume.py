"""Hostile resumes and concurrent writers: a corrupted table, a second sweep, signals.

One tiny real sweep is run once for the module (in-process through
``harness.cli.main``; its configurations run in their own processes as always); each
test corrupts a copy of its folder the way a hand edit, a copy cut short or a second
writer would, then resumes it. Expected: a configuration whose rows are incomplete,
unparsable or missing is measured again, duplicates are dropped with a warning (by
plot, compare and check too), ``meta.json`` describes what the table holds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import cli
from harness.model.errors import Terminated
from harness.sweep import folder, processes, runner
from harness.sweep.lock import LOCK_FILE, RunFolderBusyError, run_folder_lock
from harness.sweep.results import META_FILE, PYPERF_DIR, TABLE_FILE, load_meta, read_table
from tests.test_runner import assert_consistent, statuses

SIZES = "500,1000"
STRATEGIES = "einsum,scipy"
CONFIGS = {f"schreiber-n{n}-{name}-w1" for n in (500, 1000) for name in ("einsum", "scipy")}
#: The configuration each corruption damages.
VICTIM = "schreiber-n1000-einsum-w1"


def sweep_args(out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--quick",
        "--workloads",
        "schreiber",
        "--sizes",
        SIZES,
        "--strategies",
        STRATEGIES,
        "--workers",
        "1",
        "--out",
        str(out),
        *extra,
    ]


# Session scope: under xdist a worker may run other modules' tests between this
# module's, which would tear a module-scoped sweep down and run it again.
@pytest.fixture(scope="session")
def complete_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile-runs") / "complete"
    assert cli.main(sweep_args(out)) == 0
    assert set(statuses(assert_consistent(out))) == CONFIGS
    return out


@pytest.fixture
def run_copy(complete_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(complete_run, copy)
    return copy


def resume(
    run_dir: Path, capsys: pytest.CaptureFixture[str], *extra: str, warns: bool = True
) -> str:
    """Resume ``run_dir``; returns stdout, after checking the folder is consistent.

    ``warns``: the resume must say (a RuntimeWarning) what it found damaged.
    """
    argv = ["run", "--resume", "--out", str(run_dir), *extra]
    if warns:
        with pytest.warns(RuntimeWarning, match="measured again|dropped"):
            code = cli.main(argv)
    else:
        code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert_consistent(run_dir)
    return captured.out


def measured_again(stdout: str) -> int:
    """How many configurations this session measured (the 'N ok' of the summary)."""
    line = next(line for line in stdout.splitlines() if line.startswith("done in"))
    return int(line.split(": ", 1)[1].split(" ok")[0])


def table_lines(run_dir: Path) -> list[str]:
    return (run_dir / TABLE_FILE).read_text().splitlines(keepends=True)


def write_lines(run_dir: Path, lines: list[str]) -> None:
    (run_dir / TABLE_FILE).write_text("".join(lines))


# --------------------------------------------------------------------------------------
# each corruption, then --resume
# --------------------------------------------------------------------------------------


def test_last_row_cut_in_half_is_measured_again(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = table_lines(run_copy)
    last = lines[-1]
    cut_cid = last.split(",")[lines[0].split(",").index("config_id")]
    write_lines(run_copy, [*lines[:-1], last[: len(last) // 2]])  # no newline either
    out = resume(run_copy, capsys)
    assert measured_again(out) == 1
    assert f"({len(CONFIGS) - 1} already done)" in out
    assert statuses(read_table(run_copy)[0])[cut_cid] == "ok"


@pytest.mark.parametrize("value", ["fast", "", "-1", "inf", "nan"])
def test_unparsable_seconds_is_measured_again(
    value: str, run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = pd.read_csv(run_copy / TABLE_FILE)
    table["seconds"] = table["seconds"].astype(object)
    row = table.index[(table["config_id"] == VICTIM) & (table["phase"] == "e_step")][1]
    table.loc[row, "seconds"] = value
    table.to_csv(run_copy / TABLE_FILE, index=False)
    out = resume(run_copy, capsys)
    assert measured_again(out) == 1
    after = read_table(run_copy)[0]
    assert after["seconds"].dtype == float and (after["seconds"].dropna() > 0).all()


def test_config_id_that_does_not_match_its_row_is_measured_again(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = pd.read_csv(run_copy / TABLE_FILE)
    table.loc[table["config_id"] == VICTIM, "n"] = 999  # a neighbour of the cut row
    table.to_csv(run_copy / TABLE_FILE, index=False)
    assert measured_again(resume(run_copy, capsys)) == 1


def test_duplicated_header_and_rows_are_dropped_with_a_warning(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = table_lines(run_copy)
    write_lines(run_copy, lines + lines[:1] + lines[1:5])  # header plus 4 rows again
    with pytest.warns(RuntimeWarning, match=r"repeated header.*4 duplicate row\(s\) dropped"):
        table, damage = read_table(run_copy)
        assert damage.duplicates == 4 and damage.unidentified == 1
        from harness.sweep.results import load_table

        load_table(run_copy)
    assert len(table) == len(lines) - 1
    assert table["seconds"].dtype == float  # the header line did not make it text
    out = resume(run_copy, capsys)
    assert measured_again(out) == 0
    assert len(table_lines(run_copy)) == len(lines)  # rewritten without the copies


@pytest.mark.parametrize("command", ["plot", "check", "compare"])
def test_plot_compare_and_check_drop_duplicates_with_a_warning(
    command: str, run_copy: Path, complete_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = table_lines(run_copy)
    write_lines(run_copy, lines + lines[1:5])
    argv = {
        "plot": ["plot", str(run_copy), "--no-fitted-model"],
        "check": ["check", str(run_copy)],
        "compare": ["compare", str(complete_run), str(run_copy)],
    }[command]
    with pytest.warns(RuntimeWarning, match=r"4 duplicate row\(s\) dropped"):
        code = cli.main(argv)
    assert code in (0, 1), capsys.readouterr().err  # a verdict, not a refusal


@pytest.mark.parametrize("phase", ["iteration", "prepare"])
def test_missing_phase_rows_are_measured_again(
    phase: str, run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = pd.read_csv(run_copy / TABLE_FILE)
    keep = ~((table["config_id"] == VICTIM) & (table["phase"] == phase))
    table[keep].to_csv(run_copy / TABLE_FILE, index=False)
    out = resume(run_copy, capsys)
    assert measured_again(out) == 1


def test_one_missing_value_row_is_measured_again(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = pd.read_csv(run_copy / TABLE_FILE)
    victim = table.index[(table["config_id"] == VICTIM) & (table["phase"] == "m_step")][-1]
    table.drop(index=victim).to_csv(run_copy / TABLE_FILE, index=False)
    assert measured_again(resume(run_copy, capsys)) == 1


def test_damaged_pyperf_file_is_measured_again(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run_copy / PYPERF_DIR / f"{VICTIM}.json"
    path.write_text(path.read_text()[:100])
    assert measured_again(resume(run_copy, capsys)) == 1


def test_narrower_resume_keeps_meta_describing_the_table(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = load_meta(run_copy)["sweep"]
    out = resume(run_copy, capsys, "--sizes", "500", "--strategies", "einsum", warns=False)
    assert measured_again(out) == 0
    meta = load_meta(run_copy)
    assert meta["sweep"]["strategies"] == before["strategies"] == ["einsum", "scipy"]
    assert meta["sweep"]["sizes"] == [500, 1000]
    assert meta["sweep"]["resolved_sizes"] == {"schreiber": [500, 1000]}
    assert set(statuses(read_table(run_copy)[0])) == CONFIGS  # the table kept them all
    session = meta["sessions"][-1]["arguments"]  # what this invocation asked for
    assert session["strategies"] == ["einsum"] and session["sizes"] == [500]
    # and a plain resume afterwards still covers everything
    out = resume(run_copy, capsys, warns=False)
    assert f"({len(CONFIGS)} already done)" in out


def test_merge_sweep_arguments_unions_lists() -> None:
    stored = {
        "workloads": ["quinn"],
        "workers": [1, 2],
        "strategies": ["a", "b"],
        "sizes": None,
        "resolved_sizes": {"quinn": [1000, 2000]},
    }
    new = {
        "workloads": ["highdim"],
        "workers": [4],
        "strategies": ["c"],
        "sizes": [500],
        "resolved_sizes": {"highdim": [500]},
        "mode": "quick",
    }
    merged = folder.merge_sweep_arguments(stored, new)
    assert merged["workloads"] == ["quinn", "highdim"]
    assert merged["workers"] == [1, 2, 4]
    assert merged["strategies"] == ["a", "b", "c"]
    assert merged["resolved_sizes"] == {"quinn": [1000, 2000], "highdim": [500]}
    assert merged["sizes"] == [500, 1000, 2000] and merged["mode"] == "quick"
    both_default = folder.merge_sweep_arguments(stored, {**new, "sizes": None})
    assert both_default["sizes"] is None


# --------------------------------------------------------------------------------------
# one writer per folder
# --------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_with_the_holders_pid(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (run_copy / TABLE_FILE).read_bytes()
    with run_folder_lock(run_copy):
        code = cli.main(["run", "--resume", "--out", str(run_copy)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert err[-1].startswith("error: ") and f"(pid {os.getpid()})" in err[-1]
        assert "another sweep" in err[-1]
        # neighbour: the lock itself, directly
        with pytest.raises(RunFolderBusyError), run_folder_lock(run_copy):
            pass
    assert (run_copy / TABLE_FILE).read_bytes() == before  # nothing was touched
    with run_folder_lock(run_copy):  # released on exit
        pass


def test_a_new_run_into_a_locked_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "racing"
    with run_folder_lock(out):  # the first sweep has only just created its folder
        code = cli.main(sweep_args(out))
    assert code == 2
    assert "being written by another sweep" in capsys.readouterr().err
    assert [path.name for path in out.iterdir()] == [LOCK_FILE]


_HOLDER = """
import sys, time
from harness.sweep.lock import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    out = tmp_path / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusyError, match=f"pid {holder.pid}"), run_folder_lock(out):
            pass
        holder.kill()  # SIGKILL: no cleanup code runs, the kernel drops the lock
        holder.wait(timeout=30)
        with run_folder_lock(out):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        holder.stdout.close()


# --------------------------------------------------------------------------------------
# exit status: failures, SIGTERM, Ctrl-C
# --------------------------------------------------------------------------------------


def test_a_run_with_a_failed_configuration_exits_1_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GMM_HARNESS_FAULT", "einsum:raise")
    out = tmp_path / "failing"
    argv = ["run", "--quick", "--workloads", "schreiber", "--sizes", "500"]
    argv += ["--strategies", "einsum,scipy", "--workers", "1", "--out", str(out)]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "1 ok, 0 skipped, 1 failed" in captured.out
    assert "1 configuration(s) failed:" in captured.err
    assert "schreiber-n500-einsum-w1: RuntimeError: injected fault" in captured.err
    assert json.loads((out / META_FILE).read_text())["status"] == "complete"


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_signals_on_run_exit_with_the_shell_convention(
    signum: int,
    code: int,
    word: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def signalled(self: runner.SweepRunner) -> int:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(runner.SweepRunner, "run", signalled)
    out = tmp_path / "signalled"
    assert cli.main(sweep_args(out)) == code
    assert capsys.readouterr().err.strip().splitlines()[-1] == word
    with run_folder_lock(out):  # the lock went with the run
        pass


def test_deferred_sigterm_is_raised_as_terminated() -> None:
    with pytest.raises(Terminated), processes.interrupts_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # held back until the block ends
    with pytest.raises(KeyboardInterrupt) as raised, processes.interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert not isinstance(raised.value, Terminated)
