"""Start one measurement process and read what it measured.

:func:`measure_in_process` runs ``python -m harness.sweep.measure`` for one
:class:`~harness.sweep.spec.MeasureSpec` in a process group of its own, with the
thread variables of its worker count set before any numeric library loads, under a
time limit (:func:`time_limit`), and always returns a result: a process that timed
out, died or left no result file is ``failed`` with the reason. :func:`process_rows`
turns its pyperf values, with the interference recorded around each, into table rows.
It never runs a strategy itself and writes only inside the work folder it is given.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.model.threads import thread_env
from harness.sweep.faults import stop_grace, time_limit_for
from harness.sweep.interference import run_interference
from harness.sweep.plan import Configuration
from harness.sweep.processes import STOP_GRACE_SECONDS, death_reason, run_in_own_group
from harness.sweep.results import phases_for
from harness.sweep.rows import median
from harness.sweep.spec import MeasureSpec, benchmark_name

#: Seconds a configuration process may take beyond ``TIMEOUT_FACTOR`` x budget: process
#: start, imports, loading the data, the check iterations.
TIMEOUT_SLACK = 10.0
TIMEOUT_FACTOR = 3.0
#: Time limit when the budget is infinite and nothing is known about the configuration.
UNBOUNDED_TIMEOUT = 3600.0


def time_limit(strategy: str, time_budget: float, estimate: float | None) -> float:
    """Seconds a configuration process may run before its process group is stopped."""
    limit = time_limit_for(strategy)  # test hook
    if limit is not None:
        return limit
    budget = time_budget
    if math.isfinite(budget):
        return TIMEOUT_SLACK + TIMEOUT_FACTOR * budget
    if estimate is not None:
        return TIMEOUT_SLACK + TIMEOUT_FACTOR * estimate
    return UNBOUNDED_TIMEOUT


def measure_in_process(
    spec: MeasureSpec, work_dir: Path, timeout: float
) -> tuple[dict[str, Any], Path, Path]:
    """Run one measurement process (:mod:`harness.sweep.measure`) in a group of its own.

    Parameters
    ----------
    spec : MeasureSpec
    work_dir : Path
        Where the spec, the result and the process's output are written
        (``<work_dir>/<config_id>/``).
    timeout : float
        Seconds before the process group is stopped (:func:`time_limit`).

    Returns
    -------
    result : dict
        The process's result file, or ``status`` ``failed`` with the reason (timed out,
        died, left no result); never raises for a process that went wrong.
    pyperf_file, log_file : Path
        Its pyperf suite (when ``ok``) and its output.
    """
    cid = spec.config_id
    directory = work_dir / cid
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
    return result, pyperf_file, log_file


def process_rows(
    configuration: Configuration,
    spec: MeasureSpec,
    result: dict,
    pyperf_file: Path,
    make_row: Callable[..., dict[str, Any]],
) -> tuple[list[dict], dict[str, float], Any]:
    """Rows of one process's values (with their interference), medians, its suite.

    ``make_row(configuration, **fields)`` builds one table row.
    """
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
                    make_row(
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


__all__ = [
    "TIMEOUT_FACTOR",
    "TIMEOUT_SLACK",
    "UNBOUNDED_TIMEOUT",
    "measure_in_process",
    "process_rows",
    "time_limit",
]
