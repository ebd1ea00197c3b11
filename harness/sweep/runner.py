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

This module runs a sweep: the rounds, the stopping rule's decisions
(:mod:`harness.sweep.rounds`), the budget and the progress. What to run is decided in
:mod:`harness.sweep.plan` (options, resume, budget estimates); the run folder is kept
by :mod:`harness.sweep.folder`; measurement processes are started by
:mod:`harness.sweep.launch` (process groups: :mod:`harness.sweep.processes`) and each
configuration is timed by :mod:`harness.sweep.measure`. It never runs a strategy (the
measurement process does) and writes nothing outside the run folder.

The protocols, the rounds and the stopping rule, the budget, resume, the exit status,
the rows and ``meta.json`` are described in ``harness/sweep/README.md``: what a user of
the sweep must know, kept next to the code that implements it.
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
from harness.model.threads import OversubscriptionWarning, usable_cores
from harness.sweep.faults import disturbance_ignored
from harness.sweep.floors import FLOORS_KEY, floor_key, measure_floor
from harness.sweep.folder import WORK_DIR, RunFolder
from harness.sweep.formats import format_seconds, write_text_atomic
from harness.sweep.launch import measure_in_process, process_rows, time_limit
from harness.sweep.lock import LOCK_FILE, run_folder_lock
from harness.sweep.metadata import now_iso
from harness.sweep.plan import (
    Configuration,
    Estimator,
    Sweep,
    build_configurations,
    configure_parser,
    resolve_sweep,
)
from harness.sweep.processes import (
    interrupts_deferred,
    terminate_as_interrupt,
)
from harness.sweep.results import (
    CONFIGS_DIR,
)
from harness.sweep.rounds import (
    DECIDING_PHASE,
    ProcessRecord,
    decide,
    process_disturbance,
)
from harness.sweep.rows import as_float, as_text, median, table_row
from harness.sweep.spec import (
    MeasureSpec,
    configuration_seconds,
    save_inputs,
)

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


class SweepRunner:
    """Runs a resolved :class:`Sweep` and keeps its results folder consistent."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self.run_dir = sweep.run_dir
        self.work_dir = self.run_dir / WORK_DIR
        self.folder = RunFolder(self.run_dir)
        self.estimator = Estimator()
        self._inputs: dict[tuple[str, int], tuple[str, str]] = {}
        self.states: dict[str, _State] = {}
        self._started = time.monotonic()
        self._pending: tuple[MeasureSpec, dict, Path] | None = None
        self.counts = {"ok": 0, "skipped": 0, "failed": 0, "kept": 0}
        self.failed: dict[str, str] = {}  # config_id -> error, this session

    # -- folder --

    def _learn_from_rows(self, kept: set[str]) -> None:
        """Feed the budget estimator with the iteration medians of kept configurations."""
        by_config: dict[str, list[float]] = {}
        keys: dict[str, tuple[str, str, int, int]] = {}
        for row in self.folder.rows:
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
        self.folder.write_meta(self.counts)

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
        self._learn_from_rows(self.folder.open(sweep))
        self.states = states = {c.config_id: self._restore(c) for c in configurations}
        self._count()
        print(
            f"run {sweep.run_id}: {len(configurations)} configurations "
            f"({self.counts['kept']} already done), {sweep.protocol.mode} protocol, "
            f"{_rounds_text(sweep)}, time budget {sweep.time_budget:g} s per configuration "
            f"and {sweep.sweep_budget:g} s for extra rounds -> {self.run_dir}",
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
                # Replacing a disturbed process comes before narrowing an interval: once
                # the sweep budget runs short, what is left undone should be the
                # refinements, not the configurations still short of MIN undisturbed
                # processes (stable: the run order holds within each group).
                pending.sort(
                    key=lambda c: states[c.config_id].good >= sweep.rounds_for(c.problem)[0]
                )
                round_index += 1
                for position, configuration in enumerate(pending, start=1):
                    state = states[configuration.config_id]
                    expected = self._expected_processes(state)
                    mandatory = self.sweep.rounds_for(configuration.problem)[0]
                    if state.attempts >= mandatory and not self._budget_allows(state):
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
        return max(self.sweep.rounds_for(state.configuration.problem)[0] - state.good, 1)

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
            self.folder.write_table()
            self._write_config(state)
            self._write_meta()

    def _finish(self, status: str, started: float) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.folder.meta["status"] = status
        session = self.folder.meta["sessions"][-1]
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
        rows = [row for row in self.folder.rows if row["config_id"] == configuration.config_id]
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
        for bench in self.folder.pyperf_benchmarks(cid):
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
            time_budget=sweep.process_budget_for(state.configuration.problem)
            if math.isfinite(sweep.time_budget)
            else None,
            problem=state.configuration.problem,
            loops=state.loops if later else None,
            process=state.attempts,
            # Later processes replicate the iteration time; pyperf's own worker processes
            # (rigorous) have no time pressure and keep every phase.
            deciding_only=later and protocol.processes == 0,
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
                    self.folder.replace_rows(configuration.config_id, rows)
                    self.folder.write_table()
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
                self.folder.write_table()
                self._write_config(state)
                self._write_meta()
            return f"{label}: process {spec.process} FAILED ({error}); sampling stopped"
        self._pending = (spec, result, pyperf_file)
        return self._finish_process(state)

    def _input_files(self, configuration: Configuration) -> dict[str, str]:
        data_file, init_file = self._inputs_for(configuration.workload, configuration.n)
        if configuration.problem == "gmm":
            self._measure_floor(configuration)
        return {"data_file": data_file, "init_file": init_file}

    def _measure_floor(self, configuration: Configuration) -> None:
        """The iteration's floor at this workload size, once per run folder (``meta.json``
        ``floors``), measured here in the parent while no measurement process runs."""
        floors = self.folder.meta.setdefault(FLOORS_KEY, {})
        key = floor_key(configuration.workload, configuration.n)
        if key not in floors:
            floors[key] = measure_floor(configuration.n, configuration.d, configuration.k)

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
            process_budget = sweep.process_budget_for(configuration.problem)
            if estimate > PROBE_MARGIN * process_budget:
                reason = (
                    f"estimated {estimate:.0f} s per process > time budget "
                    f"{process_budget:.3g} s per process ({source})"
                )
                return "skipped", [self._row(configuration, status="skipped", error=reason)], reason
        # A library's timed work is pairs of whole fits, which the extrapolation (EM
        # phases) undercounts: its own check always estimates it, from a fit at n.
        uncertain = estimate is None or estimate > (spec.time_budget or math.inf)
        if spec.time_budget is not None and (uncertain or configuration.kind == "library"):
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
        rows, medians, suite = process_rows(configuration, spec, result, pyperf_file, self._row)
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
            self.folder.merge_pyperf(cid, suite)  # first: a table row never lacks its pyperf run
            self.folder.rows.extend(rows)
            self._decide(state)
            self._stamp(state)
            self.folder.write_table()
            self._write_config(state)
            self.folder.write_suite()
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
        others = "".join(
            f", {phase} {format_seconds(medians[phase])}"
            for phase in ("e_step", "m_step", "fixed", "prepare")
            if phase in medians
        )
        what = "run" if state.configuration.problem != "gmm" else "iteration"
        return (
            f"{state.label} p{spec.process}: {what} {format_seconds(medians['iteration'])}"
            f"{fused} median{others}, foreign CPU "
            f"{(median(foreign) if foreign else math.nan):.0%}{disturbance}{progress}{note}"
        )

    def _decide(self, state: _State, *, budget_left: bool = True) -> None:
        """Apply the stopping rule to the configuration's rows; update ``state``."""
        cid = state.configuration.config_id
        per_process: dict[int, dict[str, list[float]]] = {}
        group = max(self.sweep.protocol.processes, 1)  # pyperf workers of one attempt
        for row in self.folder.rows:
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
        min_processes, max_processes = self.sweep.rounds_for(state.configuration.problem)
        decision = decide(
            state.records,
            min_processes=min_processes,
            max_processes=max_processes,
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
        for row in self.folder.rows:
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

    def _measure(self, spec: MeasureSpec, estimate: float | None) -> tuple[dict, Path]:
        """Run one measurement process; always returns a result dict."""
        limit = time_limit(spec.strategy, self.sweep.process_budget_for(spec.problem), estimate)
        result, pyperf_file, log_file = measure_in_process(spec, self.work_dir, limit)
        if result.get("status") == "failed":
            self.folder.keep_log(spec.config_id, log_file)
        return result, pyperf_file

    def _row(self, configuration: Configuration, **fields: Any) -> dict[str, Any]:
        return table_row(
            configuration, run_id=self.sweep.run_id, metadata=self.folder.metadata, **fields
        )


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


def _rounds_text(sweep: Sweep) -> str:
    """Processes per configuration and each one's budget share, per rule in use."""
    rules: dict[tuple[int, int], list[str]] = {}
    for problem in sweep.problems:
        rules.setdefault(sweep.rounds_for(problem), []).append(problem)
    parts = []
    for (least, most), problems in rules.items():
        budget = sweep.process_budget_for(problems[0])
        whose = f" for {', '.join(problems)}" if len(rules) > 1 else ""
        parts.append(f"{least}-{most} processes per configuration{whose} ({budget:.3g} s each)")
    return "; ".join(parts)


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
