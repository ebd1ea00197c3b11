"""``python -m harness run``: pyperf-timed sweeps of strategies x sizes x workers.

::

    python -m harness run [--workloads W ...] [--sizes N1,N2,...] [--workers 1,2]
                          [--strategies a,b,...] [--iterations N] [--quick | --rigorous]
                          [--out results/<run-id>] [--resume] [--time-budget SECONDS]
                          [--rounds MIN[,MAX]] [--sweep-budget SECONDS]

A *configuration* is one ``(workload, n, strategy, workers)``. Each runs in a fresh
process (:mod:`harness.sweep.measure`) started in a process group of its own, with
``OMP_NUM_THREADS`` and the BLAS thread variables set to that configuration's worker
count before any numeric library loads; the process reads the thread pools back
with threadpoolctl and reports what it saw. Results go to ``results/<run-id>/`` in the
layout of :mod:`harness.sweep.results` (``meta.json``, ``results.csv`` and
``results.parquet``, ``pyperf/<config-id>.json`` and the merged ``pyperf.json``,
``configs/<config-id>.json`` with every process's report and ``runtime_info``).

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

Processes, rounds and interference
----------------------------------
Processes are the unit of replication: two processes of one configuration differ far
more than two values of one process. Every configuration is therefore measured in
several fresh processes, interleaved in *rounds*: round r starts one process for each
configuration still sampling, in run order, so a slow spell of the machine falls on
many strategies alike instead of on all the processes of one. Every value records
the CPU share other programs took while it was timed (``foreign_cpu``) and the
measured tree's own use (``tree_cpu``), read by a pyperf hook around each value
(:mod:`harness.sweep.interference`). After each process the stopping rule of
:mod:`harness.sweep.rounds` decides: a disturbed process is replaced, a configuration
whose median is known to +-3% (95% bootstrap CI over its processes) stops, one that
runs out of attempts (``--rounds MIN,MAX``) or of sweep budget stops as it stands and
is flagged ``disturbed`` with the reason when its processes were disturbed or its CI
is too wide for any verdict. The progress bar counts processes and says when a
configuration is re-measured and why.

How the default sweep stays inside its 15 minutes with three processes per
configuration instead of one:

* two values per phase and process instead of three (values inside one process
  agree closely; the information is in the processes), and no separate warm-up:
  the check iterations and pyperf's calibration calls precede the values in the same
  process;
* a configuration's later processes reuse the first process's loop counts (no
  calibration: one warm-up value instead) and run one check iteration instead of
  three (the first process's check is the correctness check; later ones only warm
  up), so a later process costs its start-up and its own values;
* each workload size is generated once per sweep and kept on disk until the end, so
  rounds never regenerate data;
* the measurement process imports only its own strategy's module;
* extra rounds (beyond MIN) start only while the sweep's wall time is within
  ``--sweep-budget`` (600 s by default): a configuration gets its next process only
  if its previous process's duration still fits. The budget is per session: a
  resumed sweep starts a new one. The mandatory rounds always run.

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
  of the timed work of one configuration's first process
  (:func:`harness.sweep.spec.configuration_seconds`).
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
* **joblib at one worker runs inline**: ``joblib-threads`` and ``joblib-processes``
  at ``workers=1`` follow joblib's own rule for ``n_jobs=1`` and run every task in the
  calling thread, with no pool. That is what a joblib user gets, so it is what is
  measured, and its rows say so (``inline`` True, from ``runtime_info``). Their
  "speedup over one worker" therefore compares a pool with no pool; the verdict
  side must label it so (or compare the pool against the same kernel's serial
  strategy, ``cython``), never present it as the pool's own scaling. A real
  one-worker joblib pool would need joblib's fallback to be overridden through its
  private backend API, and would measure something no joblib user runs.
* **Oversubscription**: more workers than usable cores is measured when asked for,
  with a warning, and those rows have ``oversubscribed`` True.
* **Interruption and resume**: each finished process is written at once,
  atomically (temporary file + ``os.replace``; Ctrl-C is held back while the files
  are replaced; its pyperf runs are written before its rows), so Ctrl-C keeps every
  finished process. ``--resume`` (the latest run, or ``--out DIR``) keeps every
  ``ok`` configuration whose pyperf file holds one run per process in the table;
  those that had stopped sampling stay as they are, those still sampling get their
  next process in the first round. Every other configuration runs again from its
  first process, ``failed`` and ``skipped`` included: a failure may have been
  transient and a skip depends on the budget and on what is built, both of which may have
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
  calibration excluded) of each phase and process (``process`` 0, 1, ...; in the
  rigorous mode each pyperf worker process of a round gets its own index, and the
  stopping rule groups a round's workers as one attempt); ``attempts``,
  ``disturbed``, ``disturbed_reason`` and ``stopped`` describe the configuration and
  repeat on its rows; ``process_disturbed`` marks the rows of a process that was
  replaced (verdicts leave those rows out); ``final_loglik`` and
  ``iterations_checked`` come from the first process's full check;
  ``kernel`` names the code path that ran (``runtime_info()["kernel"]`` where the
  strategy reports one, else derived: ``cython`` for compiled strategies, ``numpy``,
  ``scipy``, ``sklearn``, ``python``); ``effective_workers``, ``start_method``,
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.model.errors import InvalidParameterError
from harness.model.threads import OversubscriptionWarning, thread_env, usable_cores
from harness.sweep.faults import disturbance_ignored, stop_grace, time_limit_for
from harness.sweep.formats import format_seconds, to_json, write_atomic, write_text_atomic
from harness.sweep.interference import run_interference
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
    CONFIGS_DIR,
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
from harness.sweep.rounds import (
    DECIDING_PHASE,
    ProcessRecord,
    decide,
    process_disturbance,
)
from harness.sweep.rows import as_float, as_text, median, plain, table_row
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
        spec = WORKLOADS.get(workload)
        # a micro-problem's data is one float64 vector: d = 1, no components
        d, k = (spec.d, spec.k) if spec is not None else (1, 0)
        check_fits(max(sweep.sizes[workload]), d, k, kind=kind, what=workload)


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
        self.states: dict[str, _State] = {}
        self._started = time.monotonic()
        self._pending: tuple[MeasureSpec, dict, Path] | None = None
        self._parquet_warned = False
        self.counts = {"ok": 0, "skipped": 0, "failed": 0, "kept": 0}
        self.failed: dict[str, str] = {}  # config_id -> error, this session

    # -- folder --

    def _open_folder(self) -> None:
        """Create or reopen the folder; a resumed folder's rows are read into ``rows``."""
        (self.run_dir / PYPERF_DIR).mkdir(parents=True, exist_ok=True)
        (self.run_dir / CONFIGS_DIR).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)  # leftovers of an interrupted run
        self.metadata = collect_metadata()
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
            kept = self._consistent_configurations()
            self._learn_from_rows(kept)
            # Files of configurations measured again (or cut short between two writes) go.
            for directory in (PYPERF_DIR, CONFIGS_DIR):
                for path in (self.run_dir / directory).glob("*.json"):
                    if path.stem not in kept:
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

    def _consistent_configurations(self) -> set[str]:
        """Configurations of a resumed table kept as they are (``ok``, files whole).

        An ``ok`` configuration is kept (finished or still sampling) when its pyperf file
        holds one run per process in the table and, phase by phase, the table's values
        are exactly the pyperf values: a row deleted, cut short or edited (a
        ``seconds`` of ``fast``) makes the configuration unfinished. Anything else
        (skipped, failed, cut short between two writes) is measured again from its
        first process, with a warning naming why.
        """
        by_config: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            by_config.setdefault(str(row.get("config_id")), []).append(row)
        kept = set()
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
            kept.add(cid)
        return kept

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
        processes = {int(row["process"]) for row in rows if row.get("phase") == DECIDING_PHASE}
        for phase in phases:
            bench = benchmarks.get(benchmark_name(cid, phase))
            if bench is None:
                return f"its pyperf file has no {phase} values"
            runs = [run for run in bench.get_runs() if run.values]
            if phase == DECIDING_PHASE and len(runs) != len(processes):
                return f"{len(processes)} process(es) in the table for {len(runs)} pyperf runs"
            values = sorted(float(v) for run in runs for v in run.values)
            stored = sorted(float(row["seconds"]) for row in rows if row.get("phase") == phase)
            if len(stored) != len(values):
                return (
                    f"{len(stored)} {phase} row(s) in the table for the {len(values)} pyperf values"
                )
            pairs = zip(stored, values, strict=True)
            if any(not math.isclose(s, v, rel_tol=1e-9) for s, v in pairs):
                return f"its {phase} rows differ from the pyperf values"
        return ""

    def _learn_from_rows(self, kept: set[str]) -> None:
        by_config: dict[str, list[float]] = {}
        keys: dict[str, tuple[str, str, int, int]] = {}
        for row in self.rows:
            cid = str(row.get("config_id"))
            if cid in kept and row.get("phase") == "iteration":
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
        self.rows = [row for row in self.rows if str(row.get("config_id")) in kept]

    def _count(self) -> None:
        """Configurations by status: this session's, and those kept from before."""
        counts = dict.fromkeys(("ok", "skipped", "failed", "kept"), 0)
        for state in self.states.values():
            if state.kept:
                counts["kept"] += 1
            elif state.status in counts:
                counts[state.status] += 1
        self.counts = counts

    def _write_meta(self) -> None:
        self._count()
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
        self._open_folder()
        self.states = states = {c.config_id: self._restore(c) for c in configurations}
        self._count()
        print(
            f"run {sweep.run_id}: {len(configurations)} configurations "
            f"({self.counts['kept']} already done), {sweep.protocol.mode} protocol, "
            f"{sweep.min_processes}-{sweep.max_processes} processes per configuration, "
            f"time budget {sweep.time_budget:g} s per configuration and "
            f"{sweep.sweep_budget:g} s for extra rounds -> {self.run_dir}",
            flush=True,
        )
        self._started = started = time.monotonic()
        # The bar counts processes: the mandatory ones up front, extra ones as they come.
        bar = tqdm(
            total=sum(self._expected_processes(state) for state in states.values()),
            unit="process",
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0.1,
            disable=None,
        )
        try:
            round_index = 0
            while True:
                pending = [c for c in configurations if states[c.config_id].wants_process]
                if not pending:
                    break
                round_index += 1
                for position, configuration in enumerate(pending, start=1):
                    state = states[configuration.config_id]
                    expected = self._expected_processes(state)
                    if state.attempts >= self.sweep.min_processes and not self._budget_allows(
                        state
                    ):
                        self._stop_for_budget(state)
                        bar.total -= 1
                        bar.refresh()
                        continue
                    bar.set_description_str(f"round {round_index}: {state.label}")
                    if state.why_more:
                        tqdm.write(f"    re-measuring {state.label}: {state.why_more}")
                    summary = self._next_process(state)
                    bar.total += self._expected_processes(state) - expected + 1
                    bar.update(1)
                    tqdm.write(
                        f"[round {round_index} {position}/{len(pending)}] {summary}",
                        file=sys.stdout,
                    )
                    sys.stdout.flush()
        except KeyboardInterrupt:
            bar.close()
            self._finish("interrupted", started)
            raise
        bar.close()
        self._finish("complete", started)
        counts = self.counts
        disturbed = sum(1 for state in states.values() if state.disturbed)
        print(
            f"done in {time.monotonic() - started:.0f} s: {counts['ok']} ok, "
            f"{counts['skipped']} skipped, {counts['failed']} failed"
            + (f", {counts['kept']} kept from before" if counts["kept"] else "")
            + (f"; {disturbed} flagged disturbed" if disturbed else "")
            + f" -> {self.run_dir}",
            flush=True,
        )
        if self.failed:
            print(f"{len(self.failed)} configuration(s) failed:", file=sys.stderr)
            for cid, error in self.failed.items():
                print(f"  {cid}: {error}", file=sys.stderr)
            return 1
        return 0

    def _expected_processes(self, state: _State) -> int:
        """Processes still to come for ``state`` as far as is known now (for the bar)."""
        if state.finished or state.status in ("skipped", "failed"):
            return 0
        if state.configuration.skip_reason:
            return 1
        return max(self.sweep.min_processes - state.good, 1)

    def _budget_allows(self, state: _State) -> bool:
        """An extra process fits the sweep budget (its last process's time from now)."""
        elapsed = time.monotonic() - self._started
        return elapsed + state.last_seconds <= self.sweep.sweep_budget

    def _stop_for_budget(self, state: _State) -> None:
        self._decide(state, budget_left=False)
        from tqdm import tqdm

        tqdm.write(f"    {state.label}: stopped, {state.stopped}" + _disturbed_note(state))
        with interrupts_deferred():
            self._stamp(state)
            self._write_table()
            self._write_config(state)
            self._write_meta()

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
        # Every size stays on disk until the sweep ends: rounds come back to each size.
        key = (workload, n)
        if key not in self._inputs:
            self._inputs[key] = save_inputs(
                workload, n, self.sweep.protocol.seed, self.work_dir / "inputs"
            )
        return self._inputs[key]

    # -- one configuration's processes --

    def _restore(self, configuration: Configuration) -> _State:
        """A configuration's state: fresh, or rebuilt from a resumed run's rows."""
        state = _State(configuration)
        rows = [row for row in self.rows if row["config_id"] == configuration.config_id]
        if not rows:
            return state
        state.status, state.restored = "ok", True
        stored = as_text(rows[0].get("stopped"))
        state.loops = self._loops_of(configuration.config_id)
        first = min(rows, key=lambda row: int(row["process"]))
        state.check = {
            "final_loglik": first.get("final_loglik"),
            "iterations_checked": first.get("iterations_checked"),
        }
        self._decide(state)
        if stored:  # decided in an earlier session (maybe by its budget): kept as it was
            state.stopped, state.why_more = stored, ""
            state.disturbed = bool(rows[0].get("disturbed"))
            state.reason = as_text(rows[0].get("disturbed_reason"))
            attempts = rows[0].get("attempts")
            if isinstance(attempts, (int, float)) and math.isfinite(attempts):
                state.attempts_failed = max(int(attempts) - state.attempts, 0)
        state.kept = bool(state.stopped)  # still sampling: counted when it finishes
        return state

    def _loops_of(self, cid: str) -> dict[str, int] | None:
        if self.sweep.protocol.processes:
            return None
        loops = {}
        for bench in self._pyperf_benchmarks(cid):
            phase = bench.get_name().rsplit("/", 1)[-1]
            runs = [run for run in bench.get_runs() if run.values]
            if runs:
                loops[phase] = int(runs[0].get_metadata()["loops"])
        return loops

    def _spec(self, state: _State) -> MeasureSpec:
        sweep, protocol = self.sweep, self.sweep.protocol
        later = state.status == "ok"
        return MeasureSpec(
            workload=state.configuration.workload,
            n=state.configuration.n,
            strategy=state.configuration.strategy,
            workers=state.configuration.workers,
            seed=protocol.seed,
            warmups=protocol.warmups,
            values=protocol.values,
            processes=protocol.processes,
            min_time=protocol.min_time,
            # a later process's check is only a warm-up: the first one checked the result
            check_iterations=1 if later else protocol.check_iterations,
            time_budget=sweep.time_budget if math.isfinite(sweep.time_budget) else None,
            problem=state.configuration.problem,
            loops=state.loops if later else None,
            process=state.attempts,
        )

    def _next_process(self, state: _State) -> str:
        """Measure one more process of a configuration; returns the summary line."""
        configuration, label = state.configuration, state.label
        if state.status is None:
            outcome = self._first_process(state)
            if outcome is not None:  # skipped or failed: the configuration is done
                status, rows, reason = outcome
                state.status = status
                if status == "failed":
                    self.failed[configuration.config_id] = reason
                with interrupts_deferred():
                    self._replace_rows(configuration.config_id, rows)
                    self._write_table()
                    self._write_meta()
                word = "skipped" if status == "skipped" else "FAILED"
                return f"{label}: {word} ({reason})"
            return self._finish_process(state)
        spec = replace(self._spec(state), **self._input_files(configuration))
        began = time.monotonic()
        result, pyperf_file = self._measure(spec, state.last_seconds or None)
        state.last_seconds = time.monotonic() - began
        state.results.append(_process_report(spec, result, state.last_seconds))
        if result.get("status") != "ok":
            # A later process that fails stops the sampling; what was measured stays.
            error = result.get("error") or "no result"
            state.attempts_failed += 1
            self._decide(state, budget_left=False)
            state.stopped = f"process {spec.process} failed: {error}"
            with interrupts_deferred():
                self._stamp(state)
                self._write_table()
                self._write_config(state)
                self._write_meta()
            return f"{label}: process {spec.process} FAILED ({error}); sampling stopped"
        self._pending = (spec, result, pyperf_file)
        return self._finish_process(state)

    def _input_files(self, configuration: Configuration) -> dict[str, str]:
        data_file, init_file = self._inputs_for(configuration.workload, configuration.n)
        return {"data_file": data_file, "init_file": init_file}

    def _first_process(self, state: _State) -> tuple[str, list[dict], str] | None:
        """The configuration's first process, with the budget decisions; None when ok.

        Returns ``(status, rows, reason)`` for a configuration skipped or failed.
        """
        configuration = state.configuration
        sweep = self.sweep
        if configuration.skip_reason:
            reason = configuration.skip_reason
            return "skipped", [self._row(configuration, status="skipped", error=reason)], reason
        spec = self._spec(state)
        known = self.estimator.iteration_seconds(configuration)
        estimate = None
        if known is not None:
            per_iteration, source = known
            estimate = configuration_seconds(per_iteration, spec)
            if estimate > PROBE_MARGIN * sweep.time_budget:
                reason = (
                    f"estimated {estimate:.0f} s > time budget {sweep.time_budget:g} s ({source})"
                )
                return "skipped", [self._row(configuration, status="skipped", error=reason)], reason
        if spec.time_budget is not None and (estimate is None or estimate > spec.time_budget):
            # Nothing to extrapolate from, or an extrapolation too uncertain to skip on:
            # let the first check iteration at the real size decide.
            spec = replace(spec, probe=True)
        spec = replace(spec, **self._input_files(configuration))
        began = time.monotonic()
        result, pyperf_file = self._measure(spec, estimate)
        state.last_seconds = time.monotonic() - began
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
            row = self._row(configuration, status="skipped", error=result["error"], result=result)
            return "skipped", [row], result["error"]
        if status != "ok":
            row = self._row(configuration, status="failed", error=result["error"], result=result)
            return "failed", [row], result["error"]
        state.status = "ok"
        state.check = {
            "final_loglik": as_float(result.get("final_loglik")),
            "iterations_checked": result.get("iterations_checked"),
        }
        state.results.append(_process_report(spec, result, state.last_seconds))
        self._pending = (spec, result, pyperf_file)
        return None

    def _finish_process(self, state: _State) -> str:
        """Install the pending process's values, decide, and write everything."""
        spec, result, pyperf_file = self._pending
        configuration = state.configuration
        cid = configuration.config_id
        rows, medians, suite = self._process_rows(configuration, spec, result, pyperf_file)
        if state.loops is None and not self.sweep.protocol.processes:
            state.loops = {
                bench.get_name().rsplit("/", 1)[-1]: int(
                    next(run for run in bench.get_runs() if run.values).get_metadata()["loops"]
                )
                for bench in suite.get_benchmarks()
            }
        if spec.process == 0:
            self.estimator.add(
                configuration.workload,
                configuration.strategy,
                configuration.workers,
                configuration.n,
                medians["iteration"],
            )
        with interrupts_deferred():
            self._merge_pyperf(cid, suite)  # first: a table row never lacks its pyperf run
            self.rows.extend(rows)
            self._decide(state)
            self._stamp(state)
            self._write_table()
            self._write_config(state)
            self._write_suite()
            self._write_meta()
        with contextlib.suppress(OSError):
            os.unlink(pyperf_file)
        note = _thread_note(configuration, result.get("env_blas_threads"))
        fused = " (fused)" if result.get("used_fused") else ""
        foreign = [row["foreign_cpu"] for row in rows if math.isfinite(row["foreign_cpu"])]
        record = state.records[-1] if state.records else None
        disturbance = f"; disturbed: {record.disturbance}" if record and record.disturbance else ""
        progress = (
            f"; stopped ({state.stopped}){_disturbed_note(state)}"
            if state.stopped
            else f"; CI +-{state.half_width:.1%}"
            if math.isfinite(state.half_width)
            else ""
        )
        others = ", ".join(
            f"{phase} {format_seconds(medians[phase])}"
            for phase in ("e_step", "m_step", "fixed", "prepare")
            if phase in medians
        )
        what = "run" if state.configuration.problem != "gmm" else "iteration"
        return (
            f"{state.label} p{spec.process}: {what} {format_seconds(medians['iteration'])}"
            f"{fused} median, {others}, foreign CPU "
            f"{(median(foreign) if foreign else math.nan):.0%}{disturbance}{progress}{note}"
        )

    def _decide(self, state: _State, *, budget_left: bool = True) -> None:
        """Apply the stopping rule to the configuration's rows; update ``state``."""
        cid = state.configuration.config_id
        per_process: dict[int, dict[str, list[float]]] = {}
        group = max(self.sweep.protocol.processes, 1)  # pyperf workers of one attempt
        for row in self.rows:
            if row["config_id"] != cid or row["status"] != "ok":
                continue
            entry = per_process.setdefault(int(row["process"]) // group, {"it": [], "fc": []})
            entry["fc"].append(float(row["foreign_cpu"]))
            if row["phase"] == DECIDING_PHASE:
                entry["it"].append(float(row["seconds"]))
        ignore = disturbance_ignored()  # test hook
        state.records = [
            ProcessRecord(
                index,
                median(entry["it"]),
                "" if ignore else process_disturbance(entry["it"], entry["fc"]),
            )
            for index, entry in sorted(per_process.items())
        ]
        decision = decide(
            state.records,
            min_processes=self.sweep.min_processes,
            max_processes=self.sweep.max_processes,
            budget_left=budget_left,
        )
        state.stopped, state.disturbed = decision.stopped, decision.disturbed
        state.reason, state.why_more = decision.reason, decision.why_more
        state.half_width = decision.half_width

    def _stamp(self, state: _State) -> None:
        """Write the configuration-level columns (and process flags) into its rows."""
        cid = state.configuration.config_id
        group = max(self.sweep.protocol.processes, 1)
        flagged = {record.index for record in state.records if record.disturbance}
        for row in self.rows:
            if row["config_id"] != cid:
                continue
            row.update(
                attempts=state.attempts + state.attempts_failed,
                disturbed=state.disturbed,
                disturbed_reason=state.reason,
                stopped=state.stopped,
                process_disturbed=int(row["process"]) // group in flagged,
                final_loglik=as_float(state.check.get("final_loglik")),
                iterations_checked=state.check.get("iterations_checked"),
            )

    def _replace_rows(self, cid: str, rows: list[dict]) -> None:
        self.rows = [row for row in self.rows if row["config_id"] != cid] + rows

    def _write_config(self, state: _State) -> None:
        """``configs/<config_id>.json``: every process's report, and the decision."""
        cid = state.configuration.config_id
        path = self.run_dir / CONFIGS_DIR / f"{cid}.json"
        previous: list[dict] = []
        if state.restored and path.is_file() and not state.results_loaded:
            with contextlib.suppress(OSError, ValueError):
                previous = list(json.loads(path.read_text()).get("processes") or [])
            state.results[:0] = previous
            state.results_loaded = True
        payload = {
            "config_id": cid,
            "attempts": state.attempts + state.attempts_failed,
            "stopped": state.stopped,
            "disturbed": state.disturbed,
            "disturbed_reason": state.reason,
            "ci_half_width": state.half_width if math.isfinite(state.half_width) else None,
            "processes": state.results,
        }
        write_text_atomic(path, json.dumps(payload, indent=1, default=str, allow_nan=True))

    def _merge_pyperf(self, cid: str, suite: Any) -> None:
        """Add one process's runs to the configuration's pyperf file."""
        import pyperf

        target = self.run_dir / PYPERF_DIR / f"{cid}.json"
        if target.is_file():
            merged = pyperf.BenchmarkSuite.load(str(target))
            for bench in suite.get_benchmarks():
                merged.add_runs(bench)
        else:
            merged = suite
        write_atomic(target, lambda path: merged.dump(str(path), replace=True))
        self._benchmarks[cid] = merged.get_benchmarks()

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

    def _process_rows(
        self, configuration: Configuration, spec: MeasureSpec, result: dict, pyperf_file: Path
    ) -> tuple[list[dict], dict[str, float], Any]:
        """Rows of one process's values (with their interference), medians, its suite."""
        import pyperf

        suite = pyperf.BenchmarkSuite.load(str(pyperf_file))
        group = max(spec.processes, 1)
        rows, medians = [], {}
        timed = set(suite.get_benchmark_names())
        for phase in phases_for(result.get("kind")):
            if benchmark_name(configuration.config_id, phase) not in timed:
                continue  # micro-problems time prepare and iteration only
            bench = suite.get_benchmark(benchmark_name(configuration.config_id, phase))
            medians[phase] = median(bench.get_values())
            runs = [run for run in bench.get_runs() if run.values]
            for worker, run in enumerate(runs):
                shares = run_interference(run.get_metadata(), len(run.values))
                for index, seconds in enumerate(run.values):
                    rows.append(
                        self._row(
                            configuration,
                            status="ok",
                            result=result,
                            phase=phase,
                            seconds=seconds,
                            value_index=index,
                            process=spec.process * group + worker,
                            interference=shares[index],
                        )
                    )
        return rows, medians, suite

    def _row(self, configuration: Configuration, **fields: Any) -> dict[str, Any]:
        return table_row(configuration, run_id=self.sweep.run_id, metadata=self.metadata, **fields)


@dataclass
class _State:
    """Where one configuration stands in the sweep's rounds."""

    configuration: Configuration
    status: str | None = None  # None until its first process; then ok / skipped / failed
    records: list[ProcessRecord] = field(default_factory=list)
    stopped: str = ""  # why sampling stopped; "" while it goes on
    disturbed: bool = False
    reason: str = ""
    why_more: str = ""
    half_width: float = math.inf
    loops: dict[str, int] | None = None
    check: dict[str, Any] = field(default_factory=dict)
    last_seconds: float = 0.0  # wall time of its latest process
    attempts_failed: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)  # configs/<id>.json
    kept: bool = False  # finished in an earlier session
    restored: bool = False  # had rows when the sweep (re)started
    results_loaded: bool = False

    @property
    def label(self) -> str:
        c = self.configuration
        return f"{c.workload} n={c.n:,} {c.strategy} w{c.workers}"

    @property
    def attempts(self) -> int:
        return len(self.records)

    @property
    def good(self) -> int:
        return sum(1 for record in self.records if not record.disturbance)

    @property
    def wants_process(self) -> bool:
        return self.status is None or (self.status == "ok" and not self.stopped)

    @property
    def finished(self) -> bool:
        return not self.wants_process


def _process_report(spec: MeasureSpec, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One process's entry of ``configs/<config_id>.json``."""
    described = {k: v for k, v in asdict(spec).items() if k not in ("data_file", "init_file")}
    return {"process": spec.process, "spec": described, "wall_seconds": seconds, **result}


def _disturbed_note(state: _State) -> str:
    return f"; DISTURBED: {state.reason}" if state.disturbed else ""


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
