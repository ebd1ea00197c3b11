"""``python -m harness run``: pyperf-timed sweeps of strategies x sizes x workers.

::

    python -m harness run [--workloads W ...] [--sizes N1,N2,...] [--workers 1,2]
                          [--strategies a,b,...] [--iterations N] [--quick | --rigorous]
                          [--out results/<run-id>] [--resume] [--time-budget SECONDS]

A *configuration* is one ``(workload, n, strategy, workers)``. Each runs in a fresh
process (:mod:`harness.sweep.measure`) started in a process group of its own, with
``OMP_NUM_THREADS`` and the BLAS thread variables set to that configuration's worker
count before any numeric library loads; the process reads the thread pools back
with threadpoolctl and reports what it saw. Results go to ``results/<run-id>/`` in the
layout of :mod:`harness.sweep.results` (``meta.json``, ``results.csv`` and
``results.parquet``, ``pyperf/<config-id>.json`` and the merged ``pyperf.json``).

This module runs a sweep and keeps its results folder consistent; what to run is
decided in :mod:`harness.sweep.plan` (options, resume, budget estimates), processes
are started and stopped by :mod:`harness.sweep.processes`, and each configuration is
timed by :mod:`harness.sweep.measure`. It never runs a strategy (the measurement
process does) and writes nothing outside the run folder.

Protocols (``--quick`` / default / ``--rigorous``)
--------------------------------------------------
See :data:`harness.sweep.plan.MODES`. Every protocol runs pyperf: loop calibration,
warm-ups and several values per phase. Quick and default time in-process (the
configuration's own fresh process is the pyperf worker); rigorous lets pyperf spawn
its own worker processes for every phase (see :mod:`harness.sweep.measure` for why).
Quick is what CI runs (``make bench-ci``): one size per workload, shorter values,
<= 3 minutes on two cores; the default sweep (``make bench``) is every strategy on
the three workloads at two or three sizes each, workers 1 and 2, <= 15 minutes.

Decisions a user should know
----------------------------
* **Serial strategies** (class attribute ``parallel`` False: python, scipy,
  sklearn, cython) run only at the smallest requested worker count; at the others
  they get one ``skipped`` row saying so. More workers cannot make them use more
  cores; all they would change is the BLAS thread count of a few library calls,
  which is not the comparison a worker sweep is for, and it would cost a quarter of
  the sweep.
* **Unavailable strategies** (not built here, optional package missing) get one
  ``skipped`` row per configuration with the registry's reason.
* **Time budget** (``--time-budget``, default per protocol): the estimated seconds
  of one configuration's timed work (:func:`harness.sweep.spec.configuration_seconds`).
  The per-iteration time is extrapolated from the same strategy, workload and
  worker count measured at smaller sizes in this run
  (:func:`harness.sweep.spec.iteration_seconds_at`: linear from one size, affine from
  two). An estimate over ``PROBE_MARGIN`` x budget skips the configuration
  outright; when there is no estimate, or it is over budget by less than that, the
  measurement process uses the first check iteration at the real size as a probe,
  under a deadline. A configuration over budget is recorded ``skipped`` with the
  estimate and where it came from. This is how pure Python at millions of points
  is left out: nothing is hard-coded. ``--time-budget inf`` disables it. The
  budget judges estimates, so on a busy machine a configuration near it may be
  skipped that an idle one would run.
* **Time limit**: a configuration process that runs longer than
  ``TIMEOUT_SLACK + TIMEOUT_FACTOR * budget`` seconds is stopped with its whole
  process group (SIGTERM, so it closes its pools; SIGKILL when it does not exit;
  its resource trackers are given time to delete shared memory and memmap folders)
  and recorded ``failed: timed out after N s``. (Tests shorten the limit and the
  grace periods through the hooks of :mod:`harness.sweep.faults`.) A strategy that
  raises or a process that dies is recorded ``failed`` with its error; the sweep
  goes on. Any process a configuration leaves behind is killed with its group.
* **Oversubscription**: more workers than usable cores is measured when asked for,
  with a warning, and those rows have ``oversubscribed`` True.
* **Interruption and resume**: each finished configuration is written at once,
  atomically (temporary file + ``os.replace``; Ctrl-C is held back while the files
  are replaced), so Ctrl-C keeps everything finished. ``--resume`` (the latest run,
  or ``--out DIR``) skips configurations whose status is ``ok`` and runs the others
  again, ``failed`` and ``skipped`` included: a failure may have been transient and
  a skip depends on the budget and on what is built, both of which may have
  changed. Options not given again are taken from the run's ``meta.json``. A
  folder written by another results schema, or with another timing protocol, is
  refused rather than mixed; another machine or commit is allowed with a warning
  (the rows record what each configuration ran on). SIGTERM stops a sweep as
  Ctrl-C does (exit 143 "terminated" rather than 130 "interrupted").
* **A damaged table is not trusted**: on resume, a configuration counts as done only
  when its rows are exactly its pyperf file's values, phase by phase and index by
  index; a row cut short, a ``seconds`` that does not parse, a deleted phase or a
  damaged pyperf file makes it run again (with a warning naming it). Duplicate rows
  and repeated header lines are dropped with a warning
  (:func:`harness.sweep.results.read_table`). A resume with narrower options leaves
  ``meta.json``'s ``sweep`` fields describing everything the table holds (the union,
  :func:`merge_sweep_arguments`); each session records its own ``arguments``.
* **One writer per folder**: the runner holds an exclusive lock on ``<run>/.lock``
  (:mod:`harness.sweep.lock`) while it writes; a second sweep on the same folder is
  refused with the holder's pid. The kernel releases it when the holder dies.
* **Exit status**: 0 when every configuration was measured or skipped, 1 when any
  failed (listed on stderr at the end), 2 for bad options, before anything is
  written (a size that cannot fit in memory included: :func:`check_sweep_memory`).
* **Rows**: an ``ok`` configuration has one row per pyperf value (warm-ups and
  calibration excluded) of each phase; ``effective_workers``, ``start_method``,
  ``bytes_to_workers``/``bytes_from_workers`` (as the strategy reports them, per
  iteration) come from ``Strategy.runtime_info()`` of the check fit, falling back to
  the requested count for parallel strategies and 1 for serial ones;
  ``blas_threads``/``omp_threads`` are the workers' own counts where the strategy
  reports them (process pools), else what threadpoolctl saw in the measurement
  process under the driver's limit; ``date`` is when the configuration finished.

``meta.json`` holds ``schema_version``, ``run_id``, ``created``, ``updated``,
``status`` (running / interrupted / complete), ``sessions`` (one per invocation:
start, end, commit, host, status), ``sweep`` (the resolved options and the timing
``protocol``), ``host``, ``versions``, ``build`` (compiler, flags, OpenMP, kernel build
info), ``git_commit``, ``git_dirty``, ``metadata`` (everything
:func:`harness.sweep.metadata.collect_metadata` returned), ``strategies`` (kind,
availability and reason of every registered strategy) and ``configurations``
(counts by status in the latest session).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.model.errors import InvalidParameterError
from harness.model.threads import OversubscriptionWarning, thread_env, usable_cores
from harness.sweep.faults import stop_grace, time_limit_for
from harness.sweep.formats import format_seconds, to_json, write_atomic, write_text_atomic
from harness.sweep.lock import LOCK_FILE, run_folder_lock
from harness.sweep.metadata import collect_metadata, now_iso
from harness.sweep.plan import (
    Configuration,
    Estimator,
    Sweep,
    build_configurations,
    configure_parser,
    resolve_sweep,
)
from harness.sweep.processes import (
    STOP_GRACE_SECONDS,
    death_reason,
    interrupts_deferred,
    run_in_own_group,
    terminate_as_interrupt,
)
from harness.sweep.results import (
    META_FILE,
    PARQUET_FILE,
    PYPERF_DIR,
    PYPERF_SUITE,
    SCHEMA_VERSION,
    TABLE_FILE,
    as_table,
    load_meta,
    phases_for,
    read_table,
)
from harness.sweep.rows import as_float, median, plain, table_row
from harness.sweep.spec import (
    MeasureSpec,
    benchmark_name,
    configuration_seconds,
    save_inputs,
)

WORK_DIR = ".work"  # inside the run folder: inputs, specs, logs in flight; removed at the end
LOG_DIR = "logs"  # inside the run folder: the output of configurations that failed

#: Seconds a configuration process may take beyond ``TIMEOUT_FACTOR`` x budget: process
#: start, imports, loading the data, the check iterations.
TIMEOUT_SLACK = 10.0
TIMEOUT_FACTOR = 3.0
#: Time limit when the budget is infinite and nothing is known about the configuration.
UNBOUNDED_TIMEOUT = 3600.0
#: An extrapolated estimate this many times over budget skips a configuration without
#: starting it; between 1x and this, the configuration's own first iteration decides
#: (one size's time scaled linearly to ten times the points can overestimate up to
#: ten-fold when a fixed per-iteration cost dominates).
PROBE_MARGIN = 4.0


def main(args: argparse.Namespace) -> int:
    """Run the sweep ``args`` describe (see :func:`configure_parser`).

    Returns 0 when every configuration was measured or skipped, 1 when any failed.
    """
    if getattr(args, "scheduler", None) is not None:
        os.environ["GMM_HARNESS_DASK_SCHEDULER"] = args.scheduler
    sweep = resolve_sweep(args)
    check_sweep_memory(sweep)  # before the folder or any data exists
    with terminate_as_interrupt(), run_folder_lock(sweep.run_dir):
        if not sweep.resume:
            # Checked again under the lock: another sweep may have started in this
            # folder, and finished, since the options were resolved.
            others = [path.name for path in sweep.run_dir.iterdir() if path.name != LOCK_FILE]
            if others:
                raise InvalidParameterError(
                    f"{sweep.run_dir} is no longer empty (another sweep wrote it); add "
                    "--resume to continue that run or choose another --out"
                )
        return SweepRunner(sweep).run()


def check_sweep_memory(sweep: Sweep) -> None:
    """Refuse a sweep whose largest size of a workload cannot fit in memory now.

    Estimated for the most memory-hungry kind of strategy in the sweep (process
    strategies keep a second copy of the data for their workers).
    """
    import strategies
    from harness.model.footprint import check_fits
    from harness.model.workloads import WORKLOADS

    kinds = {strategies.get_info(name).kind for name in sweep.strategies}
    kind = "processes" if kinds & {"processes", "distributed"} else "serial"
    for workload in sweep.workloads:
        spec = WORKLOADS[workload]
        check_fits(max(sweep.sizes[workload]), spec.d, spec.k, kind=kind, what=workload)


def merge_sweep_arguments(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The sweep fields of a resumed run: what the table holds, not the last request.

    A resume may ask for fewer workloads, sizes, workers or strategies than the run
    already holds; the table keeps those configurations, so ``meta.json`` keeps
    describing them: list fields become the union (in order of first appearance),
    ``resolved_sizes`` the union per workload. The protocol and the rest come from
    ``new`` (a resume must keep the protocol, and the runner refuses one that does
    not).
    """

    def union(*lists: Any) -> list[Any]:
        return list(dict.fromkeys(item for items in lists if items for item in items))

    merged = dict(new)
    for key in ("workloads", "workers", "strategies"):
        merged[key] = union(stored.get(key), new.get(key))
    resolved: dict[str, list[int]] = {}
    for sizes in (stored.get("resolved_sizes") or {}, new.get("resolved_sizes") or {}):
        for workload, values in sizes.items():
            resolved[workload] = sorted(set(resolved.get(workload, [])) | set(values))
    merged["resolved_sizes"] = resolved
    if stored.get("sizes") is None and new.get("sizes") is None:
        merged["sizes"] = None
    else:
        # One list for every workload: the union of what any workload was measured at.
        merged["sizes"] = sorted({n for values in resolved.values() for n in values})
    if "workers" in merged:
        merged["workers"] = sorted(merged["workers"])
    return merged


class SweepRunner:
    """Runs a resolved :class:`Sweep` and keeps its results folder consistent."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self.run_dir = sweep.run_dir
        self.work_dir = self.run_dir / WORK_DIR
        self.rows: list[dict[str, Any]] = []
        self.estimator = Estimator()
        self.metadata: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self._inputs: dict[tuple[str, int], tuple[str, str]] = {}
        self._benchmarks: dict[str, list[Any]] = {}  # config_id -> its pyperf benchmarks
        self._parquet_warned = False
        self.counts = {"ok": 0, "skipped": 0, "failed": 0, "kept": 0}
        self.failed: dict[str, str] = {}  # config_id -> error, this session

    # -- folder --

    def _open_folder(self) -> set[str]:
        """Create or reopen the folder; returns the configurations already done."""
        (self.run_dir / PYPERF_DIR).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)  # leftovers of an interrupted run
        self.metadata = collect_metadata()
        done: set[str] = set()
        session = {
            "started": now_iso(),
            "git_commit": self.metadata["git_commit"],
            "hostname": self.metadata["hostname"],
            "status": "running",
        }
        if self.sweep.resume:
            self.meta = load_meta(self.run_dir)
            if (self.run_dir / TABLE_FILE).is_file():
                table, damage = read_table(self.run_dir, drop_damaged=True)
                if damage:
                    warnings.warn(
                        damage.describe(self.run_dir / TABLE_FILE)
                        + "; configurations with damaged or missing rows are measured again",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                self.rows = [
                    {key: plain(value) for key, value in row.items()}
                    for row in table.to_dict("records")
                ]
            done = self._finished_configurations()
            self._learn_from_rows(done)
            # A pyperf file without its rows is from a configuration cut short between
            # the two writes: it is measured again, so its old file goes.
            for path in (self.run_dir / PYPERF_DIR).glob("*.json"):
                if path.stem not in done:
                    path.unlink()
            self._write_table()
            self._write_suite()
            # The session records what this invocation asked for; the sweep fields
            # describe everything the table holds, narrower resumes included.
            session["arguments"] = self.sweep.arguments
            self.meta.setdefault("sessions", []).append(session)
            self.meta["sweep"] = merge_sweep_arguments(
                self.meta.get("sweep") or {}, self.sweep.arguments
            )
        else:
            self.meta = {
                "schema_version": SCHEMA_VERSION,
                "run_id": self.sweep.run_id,
                "created": self.metadata["date"],
                "sessions": [session],
                "sweep": self.sweep.arguments,
            }
        self.meta.update(self._describe_environment())
        self.meta["status"] = "running"
        self._write_meta()
        return done

    def _describe_environment(self) -> dict[str, Any]:
        import strategies

        m = self.metadata
        return {
            "host": {
                key: m[key]
                for key in (
                    "cpu_model",
                    "usable_cores",
                    "logical_cpus",
                    "machine",
                    "hostname",
                    "platform",
                )
            },
            "versions": {
                "python": m["python_version"],
                "numpy": m["numpy_version"],
                "blas": m["blas"],
                "scipy": m["scipy_version"],
                "sklearn": m["sklearn_version"],
                "cython": m["cython_version"],
                "pyperf": m["pyperf_version"],
                "threadpoolctl": m["threadpoolctl_version"],
            },
            "build": {
                "compiler": m["compiler"],
                "compiler_flags": m["compiler_flags"],
                "openmp": m["openmp"],
                "kernels": m["kernels"],
            },
            "git_commit": m["git_commit"],
            "git_dirty": m["git_dirty"],
            "metadata": m,
            "strategies": {
                name: {
                    "kind": info.kind,
                    "available": info.available,
                    "reason": info.reason,
                    "parallel": bool(info.cls.parallel) if info.cls is not None else None,
                }
                for name, info in strategies.registry().items()
            },
        }

    def _finished_configurations(self) -> set[str]:
        """Configurations whose rows are all ok and agree with their pyperf file.

        Every phase's rows must be exactly the pyperf values, index for index: a row
        deleted, cut short or edited (a ``seconds`` of ``fast``) makes the
        configuration unfinished, so it is measured again.
        """
        by_config: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            by_config.setdefault(str(row.get("config_id")), []).append(row)
        done = set()
        for cid, rows in by_config.items():
            if {str(row.get("status")) for row in rows} != {"ok"}:
                continue
            problem = self._disagreement_with_pyperf(cid, rows)
            if problem:
                warnings.warn(
                    f"{self.run_dir / TABLE_FILE}: {cid} is measured again: {problem}",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            done.add(cid)
        return done

    def _disagreement_with_pyperf(self, cid: str, rows: list[dict[str, Any]]) -> str:
        """Why ``rows`` are not exactly the configuration's pyperf values, or ""."""
        path = self.run_dir / PYPERF_DIR / f"{cid}.json"
        if not path.is_file():
            return f"its pyperf file {path.name} is missing"
        try:
            benchmarks = {bench.get_name(): bench for bench in self._pyperf_benchmarks(cid)}
        except Exception as exc:  # any damage to the JSON
            self._benchmarks.pop(cid, None)
            return f"its pyperf file cannot be read ({type(exc).__name__}: {exc})"
        first = rows[0]
        phases = (
            phases_for(str(first.get("kind")))
            if str(first.get("problem") or "gmm") == "gmm"
            else ("prepare", "iteration")  # micro-problems: no E/M split
        )
        for phase in phases:
            bench = benchmarks.get(benchmark_name(cid, phase))
            if bench is None:
                return f"its pyperf file has no {phase} values"
            values = list(bench.get_values())
            stored = {
                int(row["value_index"]): float(row["seconds"])
                for row in rows
                if row.get("phase") == phase
            }
            if sorted(stored) != list(range(len(values))):
                return (
                    f"{len(stored)} {phase} row(s) in the table for the {len(values)} pyperf values"
                )
            if any(not math.isclose(stored[i], v, rel_tol=1e-9) for i, v in enumerate(values)):
                return f"its {phase} rows differ from the pyperf values"
        return ""

    def _learn_from_rows(self, done: set[str]) -> None:
        by_config: dict[str, list[float]] = {}
        keys: dict[str, tuple[str, str, int, int]] = {}
        for row in self.rows:
            cid = str(row.get("config_id"))
            if cid in done and row.get("phase") == "iteration":
                by_config.setdefault(cid, []).append(float(row["seconds"]))
                keys[cid] = (
                    str(row["workload"]),
                    str(row["strategy"]),
                    int(row["workers"]),
                    int(row["n"]),
                )
        for cid, seconds in by_config.items():
            workload, strategy, workers, n = keys[cid]
            self.estimator.add(workload, strategy, workers, n, median(seconds))
        # Configurations to run again lose their old rows now; new ones replace them.
        self.rows = [row for row in self.rows if str(row.get("config_id")) in done]

    def _write_meta(self) -> None:
        self.meta["updated"] = now_iso()
        self.meta["configurations"] = dict(self.counts)
        write_text_atomic(self.run_dir / META_FILE, to_json(self.meta, indent=1))

    def _write_table(self) -> None:
        table = as_table(self.rows)
        write_atomic(self.run_dir / TABLE_FILE, lambda path: table.to_csv(path, index=False))
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return
        try:
            write_atomic(
                self.run_dir / PARQUET_FILE, lambda path: table.to_parquet(path, index=False)
            )
        except Exception as exc:  # a convenience copy must never stop a sweep
            if not self._parquet_warned:
                warnings.warn(
                    f"cannot write {PARQUET_FILE} ({type(exc).__name__}: {exc}); the CSV "
                    "table is complete",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._parquet_warned = True

    def _pyperf_benchmarks(self, cid: str) -> list[Any]:
        """A finished configuration's pyperf benchmarks (read once, then cached)."""
        import pyperf

        if cid not in self._benchmarks:
            path = self.run_dir / PYPERF_DIR / f"{cid}.json"
            self._benchmarks[cid] = pyperf.BenchmarkSuite.load(str(path)).get_benchmarks()
        return self._benchmarks[cid]

    def _write_suite(self) -> None:
        """Merge the finished configurations' pyperf files into one suite."""
        import pyperf

        done = sorted({str(row["config_id"]) for row in self.rows if row["status"] == "ok"})
        benchmarks = [bench for cid in done for bench in self._pyperf_benchmarks(cid)]
        if not benchmarks:
            with contextlib.suppress(OSError):
                (self.run_dir / PYPERF_SUITE).unlink()
            return
        suite = pyperf.BenchmarkSuite(benchmarks)
        write_atomic(self.run_dir / PYPERF_SUITE, lambda path: suite.dump(str(path), replace=True))

    # -- running --

    def run(self) -> int:
        from tqdm import tqdm

        sweep = self.sweep
        configurations = build_configurations(sweep)
        oversubscribed = sorted({c.workers for c in configurations if c.oversubscribed})
        if oversubscribed:
            warnings.warn(
                f"workers {oversubscribed} exceed the {usable_cores()} usable core(s): those "
                "configurations run as asked and their rows are flagged oversubscribed",
                OversubscriptionWarning,
                stacklevel=2,
            )
        done = self._open_folder()
        self.counts["kept"] = sum(1 for c in configurations if c.config_id in done)
        print(
            f"run {sweep.run_id}: {len(configurations)} configurations "
            f"({self.counts['kept']} already done), {sweep.protocol.mode} protocol, "
            f"time budget {sweep.time_budget:g} s per configuration -> {self.run_dir}",
            flush=True,
        )
        started = time.monotonic()
        # The bar (with its ETA) on a terminal; in logs, the numbered summary lines.
        bar = tqdm(
            total=len(configurations),
            unit="config",
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0.1,
            disable=None,
        )
        width = len(str(len(configurations)))
        try:
            for position, configuration in enumerate(configurations, start=1):
                cid = configuration.config_id
                bar.set_description_str(
                    f"{configuration.workload} n={configuration.n:,} "
                    f"{configuration.strategy} w{configuration.workers}"
                )
                if cid in done:
                    bar.update(1)
                    continue
                rows, summary = self._run_configuration(configuration)
                with interrupts_deferred():
                    self.rows = [row for row in self.rows if row["config_id"] != cid] + rows
                    status = rows[0]["status"]
                    self.counts[status] += 1
                    if status == "failed":
                        self.failed[cid] = str(rows[0].get("error") or "failed")
                    self._write_table()
                    if status == "ok":
                        self._write_suite()
                    self._write_meta()
                bar.update(1)
                tqdm.write(
                    f"[{position:>{width}}/{len(configurations)}] {summary}", file=sys.stdout
                )
                sys.stdout.flush()
        except KeyboardInterrupt:
            bar.close()
            self._finish("interrupted", started)
            raise
        bar.close()
        self._finish("complete", started)
        counts = self.counts
        print(
            f"done in {time.monotonic() - started:.0f} s: {counts['ok']} ok, "
            f"{counts['skipped']} skipped, {counts['failed']} failed"
            + (f", {counts['kept']} kept from before" if counts["kept"] else "")
            + f" -> {self.run_dir}",
            flush=True,
        )
        if self.failed:
            print(f"{len(self.failed)} configuration(s) failed:", file=sys.stderr)
            for cid, error in self.failed.items():
                print(f"  {cid}: {error}", file=sys.stderr)
            return 1
        return 0

    def _finish(self, status: str, started: float) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.meta["status"] = status
        session = self.meta["sessions"][-1]
        session.update(
            status=status, finished=now_iso(), seconds=round(time.monotonic() - started, 1)
        )
        with contextlib.suppress(OSError):
            self._write_meta()

    def _inputs_for(self, workload: str, n: int) -> tuple[str, str]:
        key = (workload, n)
        if key not in self._inputs:
            # One workload size at a time on disk: the sweep runs sizes in order.
            for old in list(self._inputs):
                for path in self._inputs.pop(old):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            self._inputs[key] = save_inputs(
                workload, n, self.sweep.protocol.seed, self.work_dir / "inputs"
            )
        return self._inputs[key]

    def _run_configuration(self, configuration: Configuration) -> tuple[list[dict], str]:
        """Measure (or skip) one configuration; returns its rows and a summary line."""
        sweep = self.sweep
        label = (
            f"{configuration.workload} n={configuration.n:,} {configuration.strategy} "
            f"w{configuration.workers}"
        )
        if configuration.skip_reason:
            return (
                [self._row(configuration, status="skipped", error=configuration.skip_reason)],
                f"{label}: skipped ({configuration.skip_reason})",
            )
        protocol = sweep.protocol
        spec = MeasureSpec(
            workload=configuration.workload,
            n=configuration.n,
            strategy=configuration.strategy,
            workers=configuration.workers,
            seed=protocol.seed,
            warmups=protocol.warmups,
            values=protocol.values,
            processes=protocol.processes,
            min_time=protocol.min_time,
            check_iterations=protocol.check_iterations,
            time_budget=sweep.time_budget if math.isfinite(sweep.time_budget) else None,
            problem=configuration.problem,
        )
        known = self.estimator.iteration_seconds(configuration)
        estimate = None
        if known is not None:
            per_iteration, source = known
            estimate = configuration_seconds(per_iteration, spec)
            if estimate > PROBE_MARGIN * sweep.time_budget:
                reason = (
                    f"estimated {estimate:.0f} s > time budget {sweep.time_budget:g} s ({source})"
                )
                return (
                    [self._row(configuration, status="skipped", error=reason)],
                    f"{label}: skipped ({reason})",
                )
        if spec.time_budget is not None and (estimate is None or estimate > spec.time_budget):
            # Nothing to extrapolate from, or an extrapolation too uncertain to skip on:
            # let the first check iteration at the real size decide.
            spec = replace(spec, probe=True)
        data_file, init_file = self._inputs_for(configuration.workload, configuration.n)
        spec = replace(spec, data_file=data_file, init_file=init_file)
        result, pyperf_file = self._measure(spec, estimate)
        status = result.get("status", "failed")
        if status == "skipped":
            # The probe's iteration time (a lower bound when it overran) estimates the
            # larger sizes that follow, so they are skipped without starting a process.
            self.estimator.add(
                configuration.workload,
                configuration.strategy,
                configuration.workers,
                configuration.n,
                as_float(result.get("probe_iteration_seconds")),
                lower_bound=bool(result.get("probe_overran")),
            )
            return (
                [self._row(configuration, status="skipped", error=result["error"], result=result)],
                f"{label}: skipped ({result['error']})",
            )
        if status != "ok":
            return (
                [self._row(configuration, status="failed", error=result["error"], result=result)],
                f"{label}: FAILED ({result['error']})",
            )
        rows, medians = self._install_pyperf(configuration, result, pyperf_file)
        self.estimator.add(
            configuration.workload,
            configuration.strategy,
            configuration.workers,
            configuration.n,
            medians["iteration"],
        )
        summary_note = _thread_note(configuration, result.get("env_blas_threads"))
        fused = " (fused)" if result.get("used_fused") else ""
        if configuration.problem != "gmm":
            return rows, (
                f"{label}: run {format_seconds(medians['iteration'])} median, prepare "
                f"{format_seconds(medians['prepare'])}{summary_note}"
            )
        others = ", ".join(
            f"{phase} {format_seconds(medians[phase])}"
            for phase in ("e_step", "m_step", "fixed", "prepare")
            if phase in medians
        )
        return rows, (
            f"{label}: iteration {format_seconds(medians['iteration'])}{fused} "
            f"median, {others}{summary_note}"
        )

    def _timeout(self, strategy: str, estimate: float | None) -> float:
        limit = time_limit_for(strategy)  # test hook
        if limit is not None:
            return limit
        budget = self.sweep.time_budget
        if math.isfinite(budget):
            return TIMEOUT_SLACK + TIMEOUT_FACTOR * budget
        if estimate is not None:
            return TIMEOUT_SLACK + TIMEOUT_FACTOR * estimate
        return UNBOUNDED_TIMEOUT

    def _measure(self, spec: MeasureSpec, estimate: float | None) -> tuple[dict, Path]:
        """Run one measurement process; always returns a result dict."""
        cid = spec.config_id
        directory = self.work_dir / cid
        directory.mkdir(parents=True, exist_ok=True)
        spec_file, result_file = directory / "spec.json", directory / "result.json"
        pyperf_file, log_file = directory / "pyperf.json", directory / "output.log"
        spec_file.write_text(spec.to_json())
        env = dict(os.environ)
        env.update(thread_env(spec.workers))
        command = [
            sys.executable,
            "-m",
            "harness.sweep.measure",
            "--spec",
            str(spec_file),
            "--result",
            str(result_file),
            "--pyperf-out",
            str(pyperf_file),
        ]
        timeout = self._timeout(spec.strategy, estimate)
        returncode, leftovers = run_in_own_group(
            command,
            env=env,
            log_file=log_file,
            timeout=timeout,
            stop_grace=stop_grace(STOP_GRACE_SECONDS),
        )
        timed_out = returncode is None
        if timed_out:
            result = {"status": "failed", "error": f"timed out after {timeout:.0f} s"}
        elif result_file.is_file():
            result = json.loads(result_file.read_text())
        else:
            result = {"status": "failed", "error": death_reason(returncode, log_file)}
        if leftovers and not timed_out:
            tail = "left processes behind; they were killed"
            result["leftovers"] = tail
        if result.get("status") == "failed":
            self._keep_log(cid, log_file)
        return result, pyperf_file

    def _keep_log(self, cid: str, log_file: Path) -> None:
        logs = self.run_dir / LOG_DIR
        logs.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(log_file, logs / f"{cid}.log")

    def _install_pyperf(
        self, configuration: Configuration, result: dict, pyperf_file: Path
    ) -> tuple[list[dict], dict[str, float]]:
        """Move the configuration's pyperf file into place; rows from its values."""
        import pyperf

        target = self.run_dir / PYPERF_DIR / f"{configuration.config_id}.json"
        suite = pyperf.BenchmarkSuite.load(str(pyperf_file))
        rows, medians = [], {}
        timed = set(suite.get_benchmark_names())
        for phase in phases_for(result.get("kind")):
            if benchmark_name(configuration.config_id, phase) not in timed:
                continue  # micro-problems time prepare and iteration only
            bench = suite.get_benchmark(benchmark_name(configuration.config_id, phase))
            values = bench.get_values()
            medians[phase] = median(values)
            for index, seconds in enumerate(values):
                rows.append(
                    self._row(
                        configuration,
                        status="ok",
                        result=result,
                        phase=phase,
                        seconds=seconds,
                        value_index=index,
                    )
                )
        os.replace(pyperf_file, target)
        self._benchmarks[configuration.config_id] = suite.get_benchmarks()
        return rows, medians

    def _row(self, configuration: Configuration, **fields: Any) -> dict[str, Any]:
        return table_row(configuration, run_id=self.sweep.run_id, metadata=self.metadata, **fields)


def _thread_note(configuration: Configuration, started_with: int | None) -> str:
    """A note when BLAS did not start with the configuration's thread count.

    The environment asks for ``workers`` threads; OpenBLAS caps what it starts with
    at the core count, which is expected (and harmless: the driver's threadpoolctl
    limit still applies) when the configuration oversubscribes.
    """
    if started_with is None or started_with == configuration.workers:
        return ""
    if configuration.oversubscribed and usable_cores() <= started_with:
        return ""
    return (
        f" [note: BLAS started with {started_with} thread(s) for "
        f"{configuration.workers} worker(s): thread variables not honoured]"
    )


__all__ = [
    "SweepRunner",
    "configure_parser",
    "main",
    "resolve_sweep",
]
