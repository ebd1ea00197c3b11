"""The sweep runner as a user runs it: `python -m harness run ...` in a subprocess.

Tiny sizes and fast strategies keep the whole file well under a minute and a half;
what is checked is behaviour (files, statuses, reasons, consistency), never timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyperf
import pytest

from harness.cli import build_parser
from harness.model.errors import DataFileError, InvalidParameterError, UnknownStrategyError
from harness.model.problems import micro_workloads
from harness.model.threads import usable_cores
from harness.sweep.faults import fault_for, slowdown_for, stop_grace, time_limit_for
from harness.sweep.metadata import collect_metadata
from harness.sweep.plan import MODES, resolve_sweep
from harness.sweep.results import (
    COLUMNS,
    PYPERF_DIR,
    RUN_METADATA_COLUMNS,
    SCHEMA_VERSION,
    load_meta,
    load_table,
    phases_for,
)
from harness.sweep.rounds import DECIDING_PHASE
from harness.sweep.spec import (
    MeasureSpec,
    configuration_seconds,
    iteration_seconds_at,
    max_iteration_seconds,
)

ROOT = Path(__file__).resolve().parents[1]
VALUES = 3  # the quick protocol's values per phase and process
#: Processes per configuration in these sweeps: exactly two, however busy the machine
#: (the stopping rule itself is tested in test_interference.py).
ROUNDS = ("--rounds", "2,2")


def run_harness(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    rounds = () if "--rounds" in args else ROUNDS
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "--quick", *rounds, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


#: Time limit and SIGTERM grace for a configuration that hangs on purpose: long enough
#: for a loaded machine to start the process and its pool, short enough that the test
#: does not wait out the runner's real limit.
HANG_LIMIT, HANG_GRACE = "8", "0.5"


def run_with_faults(
    out: Path, strategies: str, faults: str, workers: int = 1
) -> subprocess.CompletedProcess:
    """A tiny schreiber sweep (n = 500, 1 s budget) with ``GMM_HARNESS_FAULT=faults``.

    A strategy made to hang is stopped after ``HANG_LIMIT`` seconds.
    """
    hung = [entry.split(":")[0] for entry in faults.split(",") if entry.endswith(":hang")]
    return run_harness(
        "--workloads",
        "schreiber",
        "--sizes",
        "500",
        "--workers",
        str(workers),
        "--strategies",
        strategies,
        "--time-budget",
        "1",
        "--out",
        str(out),
        env={
            "GMM_HARNESS_FAULT": faults,
            "GMM_HARNESS_TIME_LIMIT": ",".join(f"{name}:{HANG_LIMIT}" for name in hung),
            "GMM_HARNESS_STOP_GRACE": HANG_GRACE,
        },
    )


def statuses(table: pd.DataFrame) -> dict[str, str]:
    """config_id -> status (one per configuration)."""
    per_config = table.groupby("config_id")["status"].agg(lambda s: set(s))
    assert all(len(seen) == 1 for seen in per_config), per_config
    return {cid: next(iter(seen)) for cid, seen in per_config.items()}


def assert_consistent(run_dir: Path) -> pd.DataFrame:
    """Every configuration in the table is whole and matches its pyperf file."""
    table = load_table(run_dir)
    assert list(table.columns) == list(COLUMNS)
    pyperf_files = {path.stem for path in (run_dir / PYPERF_DIR).glob("*.json")}
    for cid, status in statuses(table).items():
        rows = table[table["config_id"] == cid]
        if status == "ok":
            phases = phases_for(rows["kind"].iloc[0])  # library strategies: no E/M split
            assert sorted(rows["phase"].unique()) == sorted(phases), cid
            processes = sorted(rows["process"].unique())
            assert processes == list(range(len(processes))), cid  # none lost, none doubled
            per_process = rows.groupby(["phase", "process"]).size()
            assert (per_process == VALUES).all(), cid
            # the first process times every phase, later ones the deciding phase only
            timed = rows.groupby("process")["phase"].agg(lambda p: tuple(sorted(set(p))))
            assert timed.iloc[0] == tuple(sorted(phases)), cid
            assert all(later == (DECIDING_PHASE,) for later in timed.iloc[1:]), cid
            assert np.isfinite(rows["seconds"]).all() and (rows["seconds"] > 0).all()
            # every value carries its interference, within its documented range
            assert rows["foreign_cpu"].between(0, 1).all(), cid
            assert (rows["tree_cpu"] >= 0).all(), cid
            for column in ("attempts", "disturbed", "disturbed_reason", "stopped"):
                assert rows[column].nunique(dropna=False) == 1, (cid, column)
            assert rows["attempts"].iloc[0] >= len(processes)
            assert bool(rows["disturbed"].iloc[0]) == bool(rows["disturbed_reason"].iloc[0])
            assert cid in pyperf_files
            assert (run_dir / "configs" / f"{cid}.json").is_file()
            suite = pyperf.BenchmarkSuite.load(str(run_dir / PYPERF_DIR / f"{cid}.json"))
            assert len(suite.get_benchmarks()) == len(phases)
            for bench in suite.get_benchmarks():  # one pyperf run per process timing it
                runs = [run for run in bench.get_runs() if run.values]
                deciding = bench.get_name().endswith(f"/{DECIDING_PHASE}")
                assert len(runs) == (len(processes) if deciding else 1), bench.get_name()
        else:
            assert len(rows) == 1 and rows["error"].iloc[0], cid
            assert math.isnan(rows["seconds"].iloc[0])
    ok = {cid for cid, status in statuses(table).items() if status == "ok"}
    assert pyperf_files == ok  # no file of an unfinished configuration is left
    if ok:
        merged = pyperf.BenchmarkSuite.load(str(run_dir / "pyperf.json"))
        assert {name.rsplit("/", 1)[0] for name in merged.get_benchmark_names()} == ok
    assert not (run_dir / ".work").exists()
    assert not list(run_dir.rglob("*.tmp"))
    return table


# ---- the tiny sweep, end to end -------------------------------------------------------


# Session scope: under xdist a worker may run other modules' tests between this
# module's, which would tear a module-scoped sweep down and run it again.
@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = run_harness(
        "--workloads",
        "schreiber",
        "--sizes",
        "1000,2000",
        "--strategies",
        "einsum,scipy",
        "--workers",
        "1,2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.slow
# The tiny sweep measures every configuration twice: 240 s for a loaded shared machine.
@pytest.mark.timeout(240)
def test_tiny_sweep_writes_pyperf_json_and_the_documented_table(tiny_run: Path) -> None:
    table = assert_consistent(tiny_run)
    status = statuses(table)
    assert status == {
        "schreiber-n1000-einsum-w1": "ok",
        "schreiber-n1000-einsum-w2": "ok",
        "schreiber-n1000-scipy-w1": "ok",
        "schreiber-n1000-scipy-w2": "skipped",
        "schreiber-n2000-einsum-w1": "ok",
        "schreiber-n2000-einsum-w2": "ok",
        "schreiber-n2000-scipy-w1": "ok",
        "schreiber-n2000-scipy-w2": "skipped",
    }
    skipped = table[table["status"] == "skipped"]
    assert skipped["error"].str.contains("serial strategy").all()
    floors = load_meta(tiny_run)["floors"]  # measured once per size, for the report
    assert set(floors) == {"schreiber-n1000", "schreiber-n2000"}
    assert all(floor["kind"] == "exp" and floor["one_core_ms"] > 0 for floor in floors.values())

    ok = table[table["status"] == "ok"]
    assert set(ok["d"]) == {2} and set(ok["k"]) == {4}
    assert set(ok.loc[ok["strategy"] == "einsum", "kind"]) == {"threads"}
    # The worker count reached the measurement process: einsum's BLAS ran at that count.
    einsum = ok[ok["strategy"] == "einsum"]
    assert (einsum["blas_threads"] == einsum["workers"]).all()
    assert (ok["iterations_checked"] == 3).all()  # the first process's check, on every row
    assert (ok["process"].groupby(ok["config_id"]).nunique() == 2).all()
    assert set(ok["kernel"]) == {"numpy", "scipy"} and not ok["inline"].any()
    assert not ok["oversubscribed"].any()
    for metadata_column in (
        "run_id",
        "cpu_model",
        "python_version",
        "numpy_version",
        "blas",
        "git_commit",
        "date",
    ):
        assert (ok[metadata_column].astype(str) != "").all(), metadata_column
    # Correctness cross-check material: every strategy ends at the same log-likelihood.
    for _, group in ok.groupby("n"):
        logliks = group["final_loglik"].to_numpy()
        assert np.isfinite(logliks).all()
        assert logliks.max() - logliks.min() < 1e-8

    parquet = pd.read_parquet(tiny_run / "results.parquet")
    assert list(parquet.columns) == list(COLUMNS) and len(parquet) == len(table)

    meta = load_meta(tiny_run)
    assert meta["status"] == "complete" and meta["run_id"] == "tiny"
    assert meta["host"]["usable_cores"] >= 1 and meta["versions"]["numpy"] == np.__version__
    assert meta["sweep"]["strategies"] == ["einsum", "scipy"]

    stats = subprocess.run(
        [sys.executable, "-m", "pyperf", "stats", str(tiny_run / "pyperf.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stats.returncode == 0, stats.stderr
    assert "schreiber-n2000-einsum-w2/iteration" in stats.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_resume_skips_finished_configurations(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "resumed"
    shutil.copytree(tiny_run, run_dir)
    # Simulate a sweep stopped before one configuration finished.
    table = load_table(run_dir)
    missing = "schreiber-n2000-einsum-w2"
    table[table["config_id"] != missing].to_csv(run_dir / "results.csv", index=False)
    (run_dir / PYPERF_DIR / f"{missing}.json").unlink()
    before = {path.name: path.read_bytes() for path in (run_dir / PYPERF_DIR).glob("*.json")}

    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--resume", "--out", str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(5 already done)" in result.stdout
    assert "1 ok" in result.stdout  # only the missing one was measured
    after = assert_consistent(run_dir)
    assert statuses(after)[missing] == "ok"
    for name, content in before.items():  # finished configurations were not touched
        assert (run_dir / PYPERF_DIR / name).read_bytes() == content
    old = table[table["config_id"] != missing].sort_values(["config_id", "phase", "value_index"])
    new = after[after["config_id"] != missing].sort_values(["config_id", "phase", "value_index"])
    np.testing.assert_array_equal(old["seconds"].to_numpy(), new["seconds"].to_numpy())
    assert len(load_meta(run_dir)["sessions"]) == 2


@pytest.mark.timeout(240)
def test_resume_continues_a_configuration_between_rounds(tiny_run: Path, tmp_path: Path) -> None:
    """A configuration measured in round 1 but not round 2 gets just its second process."""
    run_dir = tmp_path / "between-rounds"
    shutil.copytree(tiny_run, run_dir)
    table = load_table(run_dir)
    cut = "schreiber-n1000-einsum-w2"
    # As a sweep stopped after this configuration's first process: its second
    # process's rows and pyperf runs are gone, and its sampling had not stopped.
    table = table[~((table["config_id"] == cut) & (table["process"] == 1))].copy()
    table.loc[table["config_id"] == cut, ["stopped", "attempts"]] = ("", 1)
    table.to_csv(run_dir / "results.csv", index=False)
    path = run_dir / PYPERF_DIR / f"{cut}.json"
    suite = pyperf.BenchmarkSuite.load(str(path))
    first = [
        pyperf.Benchmark([next(run for run in bench.get_runs() if run.values)])
        for bench in suite.get_benchmarks()
    ]
    pyperf.BenchmarkSuite(first).dump(str(path), replace=True)
    kept = table[table["config_id"] == cut].sort_values(["phase", "value_index"])
    others = {p.name: p.read_bytes() for p in (run_dir / PYPERF_DIR).glob("*.json") if p != path}

    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--resume", "--out", str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(5 already done)" in result.stdout
    assert result.stdout.count(" p1: ") == 1 and " p0: " not in result.stdout
    after = assert_consistent(run_dir)
    rows = after[after["config_id"] == cut]
    assert sorted(rows["process"].unique()) == [0, 1]
    assert rows["stopped"].iloc[0] and rows["attempts"].iloc[0] == 2
    again = rows[rows["process"] == 0].sort_values(["phase", "value_index"])
    np.testing.assert_array_equal(again["seconds"].to_numpy(), kept["seconds"].to_numpy())
    for name, content in others.items():  # other configurations untouched
        assert (run_dir / PYPERF_DIR / name).read_bytes() == content


# ---- failures, budget, interruption ---------------------------------------------------


def _processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line mentions ``text`` (e.g. a run folder)."""
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(text in part for part in process.info.get("cmdline") or ())
    ]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_failing_strategies_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "faults"
    result = run_with_faults(
        out, "einsum,sklearn,scipy,python", "einsum:raise,sklearn:crash,scipy:hang"
    )
    assert result.returncode == 1, result.stdout + result.stderr  # some failed
    assert "3 configuration(s) failed:" in result.stderr
    for name in ("einsum", "sklearn", "scipy"):
        assert f"schreiber-n500-{name}-w1: " in result.stderr
    table = assert_consistent(out)
    errors = table.set_index("strategy")["error"].groupby(level=0).first()
    status = table.groupby("strategy")["status"].first()
    assert status.to_dict() == {
        "einsum": "failed",
        "sklearn": "failed",
        "scipy": "failed",
        "python": "ok",
    }
    assert "RuntimeError: injected fault" in errors["einsum"]
    assert "exited with status 70" in errors["sklearn"]
    assert f"timed out after {HANG_LIMIT} s" in errors["scipy"]
    assert (out / "logs" / "schreiber-n500-einsum-w1.log").is_file()
    assert not _processes_mentioning(str(out))  # the hung process group was killed


SHM = Path("/dev/shm")


def _shm_entries() -> set[str]:
    """Shared-memory segments, memmap folders and loky semaphores in /dev/shm."""
    if not SHM.is_dir():
        return set()
    return {p.name for pattern in ("gmmh_*", "sem.loky-*") for p in SHM.glob(pattern)}


def _left_by_dead_processes(entries: set[str]) -> set[str]:
    """Those of ``entries`` whose creator (the pid in the name) is gone: leaks.

    Entries of live processes belong to other programs using /dev/shm meanwhile (on a
    shared machine, other test runs); the measurement process of a test is dead by
    the time the test looks.
    """
    leaked = set()
    for name in entries:  # gmmh_<pid>_..., gmmh_joblib_<pid>_..., sem.loky-<pid>-...
        pids = [int(part) for part in re.split(r"[_-]", name) if part.isdigit()]
        if not pids or not psutil.pid_exists(pids[0]):
            leaked.add(name)
    return leaked


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_hung_process_strategy_leaves_no_processes_or_shared_memory(tmp_path: Path) -> None:
    out = tmp_path / "hung-pool"
    before = _shm_entries()
    result = run_with_faults(out, "joblib-processes", "joblib-processes:hang", workers=2)
    assert result.returncode == 1, result.stdout + result.stderr  # it failed: timed out
    table = assert_consistent(out)
    assert set(table["status"]) == {"failed"}
    assert f"timed out after {HANG_LIMIT} s" in table["error"].iloc[0]
    assert not _processes_mentioning(str(out))
    # the resource trackers get the time to delete the dead process's memmap folder
    deadline = time.monotonic() + 15
    while _left_by_dead_processes(_shm_entries() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _left_by_dead_processes(_shm_entries() - before)


_HUNG_OWNER = """
import signal, sys, time
from multiprocessing import shared_memory
segment = shared_memory.SharedMemory(create=True, size=4096, name=sys.argv[1])
print("ready", flush=True)
signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
while True:
    time.sleep(3600)
"""


@pytest.mark.timeout(60)
@pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm")
def test_kill_group_lets_the_resource_tracker_unlink_a_dead_owners_segment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.sweep import processes

    monkeypatch.setattr(processes, "STOP_GRACE_SECONDS", 0.5)
    name = f"gmmh_test_{os.getpid()}"
    process = subprocess.Popen(
        [sys.executable, "-c", _HUNG_OWNER, name],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        assert (SHM / name).exists()
        assert processes.kill_group(process) is True  # deaf to SIGTERM: killed
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not processes.group_alive(process.pid)
    assert not (SHM / name).exists()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_time_budget_skips_configurations_with_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "budget"
    result = run_harness(
        "--workloads",
        "schreiber,highdim",
        "--sizes",
        "1000,200000",
        "--workers",
        "1",
        "--strategies",
        "python",
        "--time-budget",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = assert_consistent(out).set_index("config_id")
    status = statuses(table.reset_index())
    assert status == {
        "schreiber-n1000-python-w1": "ok",
        "schreiber-n200000-python-w1": "skipped",  # extrapolated from n=1000
        "highdim-n1000-python-w1": "skipped",  # its own first iteration overran
        "highdim-n200000-python-w1": "skipped",  # extrapolated from that lower bound
    }
    assert "scaled from n=1,000" in table.loc["schreiber-n200000-python-w1", "error"]
    assert "> time budget 1 s per process" in table.loc["schreiber-n200000-python-w1", "error"]
    assert "one iteration at n takes over" in table.loc["highdim-n1000-python-w1", "error"]
    assert "estimated" in table.loc["highdim-n200000-python-w1", "error"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_budget_deadline_inside_a_pool_call_skips_rather_than_fails(tmp_path: Path) -> None:
    """The probe's deadline fires while the pool works: over budget, not a worker failure."""
    out = tmp_path / "pool-budget"
    result = run_harness(
        "--rounds",
        "1,1",
        "--workloads",
        "highdim",
        "--sizes",
        "100000",
        "--workers",
        "1",
        "--strategies",
        "multiprocessing-components",
        "--time-budget",
        "0.05",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = (
        assert_consistent(out)
        .set_index("config_id")
        .loc["highdim-n100000-multiprocessing-components-w1"]
    )
    assert row["status"] == "skipped", row["error"]
    assert "time budget" in row["error"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_interrupted_run_leaves_a_consistent_folder_that_resumes(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    command = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--quick",
        "--rounds",
        "1,1",  # one process each: the interruption, not the rounds, is tested here
        "--workloads",
        "quinn",
        "--sizes",
        "500",
        "--strategies",
        "einsum,scipy",
        "--workers",
        "1,2",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the first finished configuration
        if (out / "results.csv").is_file() and (out / "pyperf.json").is_file():
            break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("no configuration finished within 60 s")
    time.sleep(0.5)  # most likely mid-way through a measurement now
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr

    table = assert_consistent(out)
    done = set(statuses(table))
    assert 0 < len(done) < 4
    assert load_meta(out)["status"] == "interrupted"
    assert not _processes_mentioning(str(out))

    resumed = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--resume", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = assert_consistent(out)
    assert len(statuses(final)) == 4
    assert load_meta(out)["status"] == "complete"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_more_workers_than_cores_warns_and_flags_the_rows(tmp_path: Path) -> None:
    out = tmp_path / "oversubscribed"
    too_many = usable_cores() + 1
    result = run_harness(
        "--workloads",
        "quinn",
        "--sizes",
        "500",
        "--strategies",
        "einsum",
        "--workers",
        str(too_many),
        "--time-budget",
        "60",  # oversubscribed BLAS threads on a loaded machine must not be budget-skipped
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OversubscriptionWarning" in result.stderr
    table = assert_consistent(out)
    assert (table["status"] == "ok").all() and table["oversubscribed"].all()
    assert (table["workers"] == too_many).all()


# ---- options and helpers (no sweep) ---------------------------------------------------


def _run_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_default_sweep_workloads_budget_share_and_an_asked_for_workload(tmp_path: Path) -> None:
    default = MODES["default"]
    sweep = resolve_sweep(_run_args("--out", str(tmp_path / "d")))
    micro = {name: spec for name, spec in micro_workloads().items() if spec.swept}
    assert sweep.problems == ["gmm", "summarize", "pairwise"]
    assert sweep.workloads == [*default.workloads, *micro]
    assert sweep.sizes == {
        **{name: list(default.sizes[name]) for name in default.workloads},
        **{name: list(spec.default_sizes) for name, spec in micro.items()},
    }
    gmm_only = resolve_sweep(_run_args("--problems", "gmm", "--out", str(tmp_path / "g")))
    assert gmm_only.workloads == list(default.workloads)
    # the micro-problems' configurations have rounds (and so budget shares) of their own
    assert sweep.rounds_for("gmm") == default.rounds
    assert sweep.rounds_for("pairwise") == default.micro_rounds
    assert sweep.process_budget_for("pairwise") == pytest.approx(
        sweep.time_budget / default.micro_rounds[0]
    )
    # an explicit --rounds applies to every problem
    explicit = resolve_sweep(_run_args("--rounds", "3,4", "--out", str(tmp_path / "r")))
    assert explicit.rounds_for("summarize") == explicit.rounds_for("gmm") == (3, 4)
    # the per-configuration budget is shared among the mandatory processes
    assert sweep.process_budget_for("gmm") == pytest.approx(sweep.time_budget / sweep.min_processes)
    # a workload the default leaves out still has its sizes when asked for
    left_out = [name for name in default.sizes if name not in default.workloads]
    asked = resolve_sweep(
        _run_args("--workloads", ",".join(left_out), "--out", str(tmp_path / "h"))
    )
    assert asked.sizes == {name: list(default.sizes[name]) for name in left_out}


def test_unknown_names_fail_with_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownStrategyError, match="valid names: python, scipy, einsum"):
        resolve_sweep(_run_args("--strategies", "einsum,nope", "--out", str(tmp_path / "a")))
    with pytest.raises(InvalidParameterError, match="valid names: schreiber, quinn, highdim"):
        resolve_sweep(_run_args("--workloads", "mnist", "--out", str(tmp_path / "b")))
    with pytest.raises(InvalidParameterError, match="at least k"):
        resolve_sweep(
            _run_args("--workloads", "quinn", "--sizes", "20", "--out", str(tmp_path / "c"))
        )


def test_resume_refuses_another_schema_or_protocol(tmp_path: Path) -> None:
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text(json.dumps({"schema_version": 999, "sweep": {}}))
    with pytest.raises(DataFileError, match="schema"):
        resolve_sweep(_run_args("--resume", "--out", str(run_dir)))
    (run_dir / "meta.json").write_text(
        json.dumps(
            {"schema_version": SCHEMA_VERSION, "sweep": {"mode": "default", "iterations": 2}}
        )
    )
    with pytest.raises(InvalidParameterError, match="protocol"):
        resolve_sweep(_run_args("--resume", "--quick", "--out", str(run_dir)))
    sweep = resolve_sweep(_run_args("--resume", "--out", str(run_dir)))  # stored options
    assert sweep.protocol.mode == "default" and sweep.workers == [1, 2]


def test_existing_folder_needs_resume(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "something").write_text("")
    with pytest.raises(InvalidParameterError, match="--resume"):
        resolve_sweep(_run_args("--out", str(tmp_path / "x")))


def test_extrapolation_rules() -> None:
    assert iteration_seconds_at([(1000, 0.01)], 10_000) == pytest.approx(0.1)
    # Two sizes: a fixed cost plus a per-point cost.
    assert iteration_seconds_at([(1000, 0.011), (2000, 0.012)], 10_000) == pytest.approx(0.02)
    # Noise giving a negative slope falls back to linear from the largest size.
    assert iteration_seconds_at([(1000, 0.02), (2000, 0.01)], 4000) == pytest.approx(0.02)
    spec = MeasureSpec("quinn", 10_000, "einsum", 1, time_budget=10.0, min_time=0.02)
    assert configuration_seconds(0.5, spec) > configuration_seconds(0.1, spec)
    allowance = max_iteration_seconds(spec)
    assert configuration_seconds(allowance, spec) == pytest.approx(10.0, rel=1e-6)


def test_fault_hooks_parse_and_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GMM_HARNESS_FAULT", "einsum:raise, scipy:hang")
    monkeypatch.setenv("GMM_HARNESS_SLOWDOWN", "einsum:1.2")
    assert fault_for("einsum") == "raise" and fault_for("scipy") == "hang"
    assert fault_for("python") is None
    assert slowdown_for("einsum") == 1.2 and slowdown_for("scipy") == 1.0
    monkeypatch.setenv("GMM_HARNESS_FAULT", "einsum:explode")
    with pytest.raises(InvalidParameterError, match="unknown action"):
        fault_for("einsum")
    monkeypatch.setenv("GMM_HARNESS_SLOWDOWN", "einsum:0.5")
    with pytest.raises(InvalidParameterError, match=">= 1"):
        slowdown_for("einsum")
    monkeypatch.setenv("GMM_HARNESS_TIME_LIMIT", "scipy:2.5")
    assert time_limit_for("scipy") == 2.5 and time_limit_for("einsum") is None
    monkeypatch.setenv("GMM_HARNESS_TIME_LIMIT", "scipy:0")
    with pytest.raises(InvalidParameterError, match="> 0"):
        time_limit_for("scipy")
    monkeypatch.delenv("GMM_HARNESS_STOP_GRACE", raising=False)
    assert stop_grace(5.0) == 5.0
    monkeypatch.setenv("GMM_HARNESS_STOP_GRACE", "0.5")
    assert stop_grace(5.0) == 0.5
    monkeypatch.setenv("GMM_HARNESS_STOP_GRACE", "soon")
    with pytest.raises(InvalidParameterError, match="expected seconds"):
        stop_grace(5.0)


def test_metadata_has_what_the_table_repeats() -> None:
    metadata = collect_metadata()
    for key in RUN_METADATA_COLUMNS:
        if key != "run_id":  # the runner's, not the machine's
            assert key in metadata, key
    assert metadata["usable_cores"] >= 1
    assert len(metadata["git_commit"]) == 40 or metadata["git_commit"] == "unknown"
