"""``python -m harness bench-processes``: the process strategies' targets, side by side.

Four measurements, in one run, each printed as a table:

1. **Memory**: peak PSS of the whole process tree (parent, workers, helper
   processes such as the forkserver) during ``prepare`` plus a few EM iterations on
   ``schreiber`` at 4M points, for ``multiprocessing`` at 2 workers (and the other
   process strategies, for comparison) against the single-process ``einsum``
   strategy. Every configuration runs in a fresh Python process started by this
   command, so each starts from the same baseline (data generated, nothing else).
   Target: ``peak_pss_ratio`` (``multiprocessing`` / ``einsum``).
2. **Time**: per-iteration time across sizes of the process strategies against the
   *same per-chunk code* run over all of X in this process, single-threaded (the
   compiled kernel, as in the workers). Iterations are
   :func:`harness.sweep.em.em_iteration` calls, the driver's own,
   timed alternately (one of each in turn, repeated) so that a neighbour's load
   affects all columns alike. Targets: ``fused_time_ratio`` (pool / in-process at
   the memory measurement's n) and ``crossover_n``, the smallest n from which the pool
   is faster at every larger n measured.
3. **Prepare**: ``prepare`` (pool start plus data placement, split) for each start
   method of ``multiprocessing`` and for joblib's loky, cold (first pool of a fresh
   process: for forkserver, the server starts too) and warm (a second pool in the
   same process), each in a fresh process. Target: ``prepare_failures``.
4. **Traffic**: bytes the workers read (tasks) and wrote (results) per iteration,
   measured from their I/O counters, against the n x k x 8 bytes that pickling the
   responsibilities back (as the seed did) would move.

The targets' thresholds are data: section ``[bench-processes]`` of
``results/targets.toml`` (:mod:`harness.bench.targets`; ``--targets`` reads another
file). Exit status 0 when every target passes, 1 otherwise. Timings on a shared machine
are indicative; ratios taken in one run are the figures to quote.

It measures in child processes it starts; :mod:`harness.bench.processes_report` prints
the tables; it writes no results
folder (only the ``--json`` file asked for) and changes no strategy.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.bench.options import add_bench_options
from harness.bench.processes_report import (
    report_memory,
    report_prepare,
    report_time,
    report_traffic,
)
from harness.bench.targets import judge, load_targets, print_verdicts
from harness.model import args as types
from harness.model.errors import HarnessError, InvalidParameterError
from harness.sweep.formats import to_json, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]

#: The figures this command computes, which targets may name (see the module docstring).
METRICS = ("peak_pss_ratio", "fused_time_ratio", "crossover_n", "prepare_failures")

DEFAULT_SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000, 4_000_000)
QUICK_SIZES = (10_000, 100_000, 1_000_000)

#: Seconds a child measurement may take before it is killed and reported as failed.
CHILD_TIMEOUT = 900


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


#: Smallest n of the time table: below it a chunk per worker is a handful of points.
MIN_TIME_SIZE = 10


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=types.workers, default=2, help="worker processes")
    parser.add_argument(
        "--sizes",
        type=types.sizes_at_least(MIN_TIME_SIZE),
        default=None,
        help="comma-separated n for the time/crossover table "
        f"(default {','.join(map(str, DEFAULT_SIZES))})",
    )
    counts = (
        ("--iterations", 3, "EM iterations in each memory measurement"),
        ("--repeats", 5, "timed iterations per strategy and size (after one warm-up)"),
    )
    for flag, default, help_text in counts:
        parser.add_argument(flag, type=types.positive_int, default=default, help=help_text)
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer repeats (about a minute)"
    )
    parser.add_argument(
        "--only",
        default="memory,time,prepare",
        help="comma-separated subset of memory,time,prepare (traffic comes with time)",
    )
    add_bench_options(
        parser,
        "bench-processes",
        "points for the memory and prepare measurements "
        "(default: schreiber's 4,000,000; 1,000,000 with --quick)",
    )


# --------------------------------------------------------------------------------------
# the same per-chunk code, in this process
# --------------------------------------------------------------------------------------


def _in_process_kernel(use_kernels: bool) -> object:
    """A strategy running the workers' per-chunk functions over all of X, here, 1 thread."""
    import strategies.pool.chunks as pc
    from harness.model.gmm import DerivedParams, SufficientStats
    from strategies.base import Strategy

    class SameKernelInProcess(Strategy):
        name = "same-kernel-in-process"
        has_fused_iteration = True

        def __init__(self) -> None:
            super().__init__(1)
            self.kernel = pc.load_kernels()
            self._shift: np.ndarray | None = None

        def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
            model = pc.unpack_model(pc.pack_model(derived))
            loglik, mass, s1, s2 = pc.fused_statistics(self.X, model, self.kernel)
            n = self.X.shape[0]
            return SufficientStats.from_shifted_sums(mass, s1, s2, model.means, n), loglik / n

        def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
            model = pc.unpack_model(pc.pack_model(derived))
            out = np.empty((self.X.shape[0], derived.n_components))
            loglik = pc.e_step_rows(self.X, model, out, self.kernel)
            self._shift = model.means
            return out, loglik / self.X.shape[0]

        def m_step(self, log_resp: np.ndarray) -> SufficientStats:
            assert self._shift is not None
            mass, s1, s2 = pc.m_step_rows(self.X, log_resp, self._shift, self.kernel)
            return SufficientStats.from_shifted_sums(mass, s1, s2, self._shift, self.X.shape[0])

    return SameKernelInProcess()


# --------------------------------------------------------------------------------------
# children: one measurement in a fresh process
# --------------------------------------------------------------------------------------


def _child_memory(spec: dict) -> dict:
    """Peak PSS of this process tree over prepare + iterations of one strategy."""
    import strategies
    from harness.model.gmm import initial_params
    from harness.model.workloads import make_workload
    from harness.sweep.em import fit
    from harness.sweep.memory import PeakMemorySampler

    dataset = make_workload("schreiber", n=spec["n"], seed=0)
    init = initial_params(dataset.X, dataset.k, seed=0)
    cls = strategies.get_strategy(spec["strategy"])
    strategy = cls(workers=spec["workers"], **spec.get("kwargs", {}))
    gc.collect()
    with PeakMemorySampler() as sampler, strategy:
        result = fit(
            strategy, dataset.X, init, max_iter=spec["iterations"], use_fused=spec.get("fused")
        )
    return {
        "peak_bytes": sampler.peak_bytes,
        "start_bytes": sampler.start_bytes,
        "samples": sampler.samples,
        "data_bytes": int(dataset.X.nbytes),
        "used_fused": result.used_fused,
        "iteration_seconds": float(np.median(result.iteration_seconds)),
        "prepare_seconds": result.prepare_seconds,
        "runtime_info": result.runtime_info,
    }


def _child_prepare(spec: dict) -> dict:
    """``prepare`` twice in a fresh process: cold (first pool here), then warm."""
    import strategies
    from harness.model.threads import limit_blas
    from harness.model.workloads import make_workload

    X = make_workload("schreiber", n=spec["n"], seed=0).X
    cls = strategies.get_strategy(spec["strategy"])
    runs = []
    for _ in range(2):
        with cls(workers=spec["workers"], **spec.get("kwargs", {})) as strategy, limit_blas(1):
            start = time.perf_counter()
            strategy.prepare(X)
            seconds = time.perf_counter() - start
            info = strategy.runtime_info()
        runs.append(
            {
                "seconds": seconds,
                "data_seconds": info.get("prepare_data_seconds"),
                "pool_seconds": info.get("prepare_pool_seconds"),
                "start_method": info.get("start_method"),
                "workers_started": info.get("workers_started"),
            }
        )
    return {"cold": runs[0], "warm": runs[1]}


def _child_capacity(spec: dict) -> dict:
    """Median seconds of the per-chunk code over all of X, repeated for ``seconds``."""
    import strategies.pool.chunks as pc
    from harness.model.gmm import derive, initial_params
    from harness.model.threads import limit_blas
    from harness.model.workloads import make_workload

    X = make_workload("schreiber", n=spec["n"], seed=0).X
    model = pc.unpack_model(pc.pack_model(derive(initial_params(X, 4, seed=0))))
    kernel = pc.load_kernels()
    with limit_blas(1):
        pc.fused_statistics(X, model, kernel)
        # Start together: every process waits for the same wall-clock instant.
        time.sleep(max(0.0, spec["start_at"] - time.time()))
        values = []
        end = time.perf_counter() + spec["seconds"]
        while time.perf_counter() < end:
            start = time.perf_counter()
            pc.fused_statistics(X, model, kernel)
            values.append(time.perf_counter() - start)
    return {"median_seconds": float(np.median(values)), "values": len(values)}


_CHILDREN: dict[str, Callable[[dict], dict]] = {
    "capacity": _child_capacity,
    "memory": _child_memory,
    "prepare": _child_prepare,
}


def _run_child(kind: str, spec: dict) -> dict:
    """Run one measurement in a fresh interpreter; returns its JSON or ``{"error": ...}``."""
    command = [sys.executable, "-m", "harness.bench.processes", "--child", kind, json.dumps(spec)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT} s"}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main(kind: str, spec_json: str) -> int:
    result = _CHILDREN[kind](json.loads(spec_json))
    print(to_json(result))
    return 0


# --------------------------------------------------------------------------------------
# the four measurements
# --------------------------------------------------------------------------------------


def _memory_configs(workers: int) -> list[tuple[str, dict]]:
    """(label, child spec) for the memory table; the first is the baseline."""
    return [
        ("einsum (1 process)", {"strategy": "einsum", "workers": 1}),
        (
            f"multiprocessing w{workers} fused",
            {"strategy": "multiprocessing", "workers": workers, "fused": True},
        ),
        (
            f"multiprocessing w{workers} e+m",
            {"strategy": "multiprocessing", "workers": workers, "fused": False},
        ),
        (
            f"joblib-processes w{workers} fused",
            {"strategy": "joblib-processes", "workers": workers, "fused": True},
        ),
        (
            f"multiprocessing-components w{workers}",
            {"strategy": "multiprocessing-components", "workers": workers},
        ),
    ]


def measure_memory(n: int, workers: int, iterations: int) -> list[dict]:
    rows = []
    for label, spec in _memory_configs(workers):
        print(f"  memory: {label} ...", flush=True)
        result = _run_child("memory", {**spec, "n": n, "iterations": iterations})
        rows.append({"label": label, **spec, **result})
    return rows


def _time_pair(strategy: object, params: object, fused: bool, repeats: int) -> list[float]:
    from harness.sweep.em import em_iteration

    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        em_iteration(strategy, params, fused=fused)
        seconds.append(time.perf_counter() - start)
    return seconds


def measure_time(sizes: tuple[int, ...], workers: int, repeats: int) -> list[dict]:
    """Per-iteration medians at each n: pool strategies vs the same code in-process."""
    from harness.model.gmm import initial_params
    from harness.model.threads import limit_blas
    from harness.model.workloads import make_workload
    from strategies.joblib_processes import JoblibProcessesStrategy
    from strategies.multiprocessing_pool import MultiprocessingStrategy

    use_kernels = True  # the pool strategies need the compiled kernels
    rows = []
    for n in sizes:
        print(f"  time: n = {n:,} ...", flush=True)
        dataset = make_workload("schreiber", n=n, seed=0)
        init = initial_params(dataset.X, dataset.k, seed=0)
        contenders: dict[str, tuple[object, bool]] = {}
        with contextlib.ExitStack() as stack, limit_blas(1):
            serial = stack.enter_context(_in_process_kernel(use_kernels))
            pool = stack.enter_context(MultiprocessingStrategy(workers))
            joblib_pool = stack.enter_context(JoblibProcessesStrategy(workers))
            for strategy in (serial, pool, joblib_pool):
                strategy.prepare(dataset.X)
            contenders = {
                "in-process fused": (serial, True),
                "multiprocessing fused": (pool, True),
                "joblib-processes fused": (joblib_pool, True),
                "in-process e+m": (serial, False),
                "multiprocessing e+m": (pool, False),
            }
            times: dict[str, list[float]] = {label: [] for label in contenders}
            for strategy, fused in contenders.values():  # warm-up
                _time_pair(strategy, init, fused, 1)
            for _ in range(repeats):  # alternate, so background load hits all alike
                for label, (strategy, fused) in contenders.items():
                    times[label] += _time_pair(strategy, init, fused, 1)
        medians = {label: float(np.median(values)) for label, values in times.items()}
        rows.append(
            {
                "n": n,
                "k": dataset.k,
                "kernel": "cython",
                "medians": medians,
                "ratio_fused": medians["multiprocessing fused"] / medians["in-process fused"],
                "ratio_joblib": medians["joblib-processes fused"] / medians["in-process fused"],
                "ratio_em": medians["multiprocessing e+m"] / medians["in-process e+m"],
            }
        )
    return rows


def measure_traffic(sizes: tuple[int, ...], workers: int) -> list[dict]:
    """Bytes per iteration of each path on its own (3 iterations each, median)."""
    from harness.model.gmm import initial_params
    from harness.model.workloads import make_workload
    from harness.sweep.em import em_iteration
    from strategies.joblib_processes import JoblibProcessesStrategy
    from strategies.multiprocessing_pool import MultiprocessingStrategy

    paths = (
        ("multiprocessing fused", MultiprocessingStrategy, True),
        ("multiprocessing e+m", MultiprocessingStrategy, False),
        ("joblib-processes fused", JoblibProcessesStrategy, True),
    )
    rows = []
    for n in sizes:
        print(f"  traffic: n = {n:,} ...", flush=True)
        dataset = make_workload("schreiber", n=n, seed=0)
        init = initial_params(dataset.X, dataset.k, seed=0)
        row: dict[str, object] = {
            "n": n,
            "k": dataset.k,
            "pickled_log_resp_bytes": n * dataset.k * 8,
        }
        for label, cls, fused in paths:
            with cls(workers) as strategy:
                strategy.prepare(dataset.X)
                for _ in range(3):
                    em_iteration(strategy, init, fused=fused)
                info = strategy.runtime_info()
            row[label] = {"to": info["bytes_to_workers"], "from": info["bytes_from_workers"]}
        rows.append(row)
    return rows


def measure_capacity(workers: int, seconds: float = 3.0, n: int = 1_000_000) -> dict:
    """How many cores' worth of this code can run at once right now.

    The same single-threaded per-chunk code runs alone in one fresh process, then in
    ``workers`` fresh processes at the same time; capacity = ``workers x alone /
    together``. On an idle machine with ``workers`` cores it is ``workers``; other
    programs' load lowers it, and no pool can beat one process by more than it.
    """

    def run_together(count: int) -> list[dict]:
        spec = {"n": n, "seconds": seconds, "start_at": time.time() + 8.0}
        command = [
            sys.executable,
            "-m",
            "harness.bench.processes",
            "--child",
            "capacity",
            json.dumps(spec),
        ]
        children = [
            subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(count)
        ]
        results = []
        for child in children:
            out, err = child.communicate(timeout=CHILD_TIMEOUT)
            if child.returncode != 0:
                raise HarnessError(f"capacity probe failed: {err.strip().splitlines()[-1:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results

    print("  capacity: the same code alone, then in parallel ...", flush=True)
    alone = run_together(1)[0]["median_seconds"]
    together = [r["median_seconds"] for r in run_together(workers)]
    return {
        "alone_seconds": alone,
        "together_seconds": together,
        "capacity": workers * alone / float(np.mean(together)),
    }


def measure_prepare(n: int, workers: int) -> list[dict]:
    from strategies.pool.control import START_METHODS

    rows = []
    for method in START_METHODS:
        print(f"  prepare: multiprocessing, {method} ...", flush=True)
        spec = {
            "strategy": "multiprocessing",
            "workers": workers,
            "n": n,
            "kwargs": {"start_method": method},
        }
        rows.append({"label": f"multiprocessing {method}", **_run_child("prepare", spec)})
    print("  prepare: joblib-processes (loky) ...", flush=True)
    spec = {"strategy": "joblib-processes", "workers": workers, "n": n}
    rows.append({"label": "joblib-processes loky", **_run_child("prepare", spec)})
    return rows


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    from harness.model.footprint import check_fits
    from harness.model.threads import usable_cores
    from harness.model.workloads import WORKLOADS

    sections = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = sections - {"memory", "time", "prepare"}
    if unknown:
        raise InvalidParameterError(f"--only accepts memory, time, prepare; got {sorted(unknown)}")
    n = args.n if args.n is not None else (1_000_000 if args.quick else WORKLOADS["schreiber"].n)
    targets = load_targets("bench-processes", args.targets, METRICS)  # bad file: fail first
    time_limit = next((t.threshold for t in targets if t.metric == "fused_time_ratio"), 1.5)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    spec = WORKLOADS["schreiber"]
    if n < max(spec.k, MIN_TIME_SIZE):
        raise InvalidParameterError(
            f"--n {n} is too small: the memory and prepare measurements split schreiber's "
            f"{spec.k} components over {args.workers} workers; give --n >= {MIN_TIME_SIZE}"
        )
    for size in {n, max(sizes)}:
        check_fits(size, spec.d, spec.k, kind="processes", what="schreiber")
    repeats = min(args.repeats, 3) if args.quick else args.repeats
    iterations = min(args.iterations, 2) if args.quick else args.iterations

    print(
        f"bench-processes: workers {args.workers}, schreiber n = {n:,} for memory and "
        f"prepare, sizes {', '.join(f'{s:,}' for s in sizes)} for time"
    )
    # Other programs' load changes what parallel workers can gain; say what it was.
    load_before = os.getloadavg()
    print(f"load average (1 min) {load_before[0]:.2f} on {usable_cores()} usable cores")
    figures: dict[str, object] = {
        "workers": args.workers,
        "n": n,
        "sizes": list(sizes),
        "load_average_before": load_before[0],
    }
    measured: dict[str, tuple[float | None, str]] = {}
    if "memory" in sections:
        figures["memory"] = rows = measure_memory(n, args.workers, iterations)
        measured.update(report_memory(rows))
    if "time" in sections:
        figures["capacity"] = capacity = measure_capacity(args.workers)
        figures["time"] = rows = measure_time(sizes, args.workers, repeats)
        print(
            f"\nParallel capacity right now: {capacity['capacity']:.2f} of {args.workers} "
            f"(the same code: {capacity['alone_seconds'] * 1e3:.1f} ms alone, "
            + ", ".join(f"{t * 1e3:.1f}" for t in capacity["together_seconds"])
            + f" ms in {args.workers} processes at once); a pool cannot beat one process "
            "by more than this"
        )
        measured.update(report_time(rows, n, time_limit))
        figures["traffic"] = traffic = measure_traffic(sizes, args.workers)
        report_traffic(traffic)
    if "prepare" in sections:
        figures["prepare"] = rows = measure_prepare(n, args.workers)
        measured.update(report_prepare(rows))

    figures["load_average_after"] = os.getloadavg()[0]
    print(f"\nload average (1 min) {figures['load_average_after']:.2f} at the end")
    verdicts = judge(targets, measured)
    print_verdicts(verdicts)
    figures["verdicts"] = [
        {"target": name, "pass": ok, "detail": detail} for name, ok, detail in verdicts
    ]
    if args.json:
        write_text_atomic(args.json, to_json(figures, indent=2))
        print(f"\nfigures written to {args.json}")
    return 0 if all(ok for _, ok, _ in verdicts) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        try:
            sys.exit(_child_main(sys.argv[2], sys.argv[3]))
        except HarnessError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    print("usage: python -m harness bench-processes [options]", file=sys.stderr)
    sys.exit(2)
