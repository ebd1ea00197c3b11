"""One configuration measured in a fresh process: ``python -m harness.sweep.measure``.

The sweep runner (:mod:`harness.sweep.runner`) starts this module once per configuration
``(workload, n, strategy, workers)``, in a process group of its own, with the OpenMP
and BLAS thread variables already set to the worker count
(:func:`harness.model.threads.thread_env`) so they apply before NumPy loads. Command line::

    python -m harness.sweep.measure --spec SPEC.json --result RESULT.json --pyperf-out OUT.json

``SPEC.json`` is a :class:`MeasureSpec`. The process then

1. imports only this strategy's module (:func:`strategies.load_one`), loads the
   workload and its common start (:func:`~harness.sweep.spec.save_inputs` wrote them
   once per size; they are generated here when the spec names no files), and reads
   back the thread pools the environment gave it (threadpoolctl);
2. runs the *check* (:func:`harness.sweep.check.run_check`): ``prepare`` plus
   :data:`~harness.sweep.spec.CHECK_ITERATIONS` EM iterations from the common start
   (:func:`harness.model.gmm.initial_params`) with the driver's
   :func:`harness.sweep.em.em_iteration`, recording the final mean log-likelihood
   (for the cross-strategy correctness check), whether the fused path ran, the
   strategy's :meth:`~strategies.base.Strategy.runtime_info`, the BLAS/OpenMP thread
   counts seen while it ran and the peak PSS of the process and its workers
   (``harness.sweep.memory.PeakMemorySampler`` when available; sampled here rather
   than during the timings, whose sampling thread would disturb). The check also
   warms everything the timings then use;
3. when ``spec.probe`` is set (the runner has no smaller size of this strategy to
   extrapolate from), the check's first iteration is the budget probe: it runs under
   a deadline (:func:`~harness.sweep.spec.max_iteration_seconds`) and the
   configuration stops with status ``skipped`` when it overruns or when
   :func:`~harness.sweep.spec.configuration_seconds` of its time exceeds
   ``spec.time_budget``. A probe at the real size needs no extrapolation and wastes
   at most a thirteenth or so of the budget;
4. times the phases of :data:`harness.sweep.results.PHASES` with pyperf, one pyperf
   benchmark per phase named :func:`benchmark_name`:

   ``prepare``  ``Strategy.prepare(X)`` (the previous preparation is closed untimed);
   ``e_step``   ``Strategy.e_step(derive(init))``;
   ``m_step``   ``Strategy.m_step(log_resp)`` on that E-step's responsibilities;
   ``iteration`` :func:`harness.sweep.em.em_iteration` from ``init`` (the fused one-pass
   iteration where the strategy has one), as the driver runs it;

   A whole-fit (``library``) strategy is checked and timed by differencing fits of
   different lengths instead (:mod:`harness.sweep.library_timing`), in the phases
   :data:`harness.sweep.results.LIBRARY_PHASES` (``prepare``, ``iteration``, ``fixed``);

5. writes the pyperf suite to ``--pyperf-out`` and a JSON summary to ``--result``
   (both atomically); the exit status is 0 whenever the result file says what
   happened, including a strategy that raised.

Timing modes (``spec.processes``)
---------------------------------
``0``: *in-process*. This fresh process is itself a pyperf worker (``--worker``): per
phase, pyperf first calibrates the loop count (``--calibrate-loops`` with one value:
it doubles the loops until a value lasts ``min_time``; one call for phases longer
than that), then takes ``warmups`` discarded and ``values`` kept values. pyperf's
manager would spend one extra process per phase for calibration and at least one per
phase for values; at one to three seconds of start-up, imports, data generation and
pool start per process that would triple a sweep on two cores, for macro-benchmarks
whose run-to-run spread is dominated by other things than hash seeds and address
layout. The quick and default sweeps use this mode.

``P >= 1``: *pyperf worker processes*. This process is pyperf's manager: it spawns
``P`` worker processes per phase (plus pyperf's calibration process), each a fresh
``python -m harness.sweep.measure --worker ...`` that rebuilds the data and the strategy
before pyperf times it. The thread variables and the fault hooks reach the
workers through ``--inherit-environ``. ``--rigorous`` uses this mode.

A later process of the same configuration (``spec.loops`` given) skips the
calibration: it takes the first process's loop count and one warm-up value, so every
process's values are sums of the same number of calls.

Interference
------------
In both modes pyperf runs the hook of :mod:`harness.sweep.interference`
(``--hook gmm-interference``) around every value: it reads the machine's and the
measured tree's CPU counters just before and just after each call of the timed
function, outside the function's own clock, and leaves ``foreign_cpu`` and
``tree_cpu`` per value in the pyperf run's metadata, where the runner reads them. In
the rigorous mode the hook runs inside each pyperf worker process, so every worker's
values carry their own interference.

Test-only fault hooks (``GMM_HARNESS_FAULT``, ``GMM_HARNESS_SLOWDOWN``) are described in
:mod:`harness.sweep.faults`. This module times one configuration and reports it; it
writes only the two files it is given and decides nothing about which configurations
run (:mod:`harness.sweep.plan`) or how results are stored (:mod:`harness.sweep.runner`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.model.errors import (
    HarnessError,
    InvalidParameterError,
    StrategyUnavailableError,
)
from harness.model.threads import THREAD_ENV_VARS
from harness.sweep.check import OverBudget, code_path, pool_threads, run_check
from harness.sweep.faults import ENV_FAULT, ENV_SLOWDOWN, install_fault, slowdown_for
from harness.sweep.formats import to_json, write_atomic, write_text_atomic
from harness.sweep.interference import HOOK, HOOK_NAME, InterferenceHook
from harness.sweep.processes import terminate_as_interrupt
from harness.sweep.spec import (
    MeasureSpec,
    benchmark_name,
    load_inputs,
    phases_of,
)

#: Environment variables pyperf's worker processes must inherit (pyperf passes only
#: a short whitelist by default); every ``GMM_HARNESS_*`` variable set is added.
INHERITED_ENV = (
    *THREAD_ENV_VARS,
    "OMP_PROC_BIND",
    "OMP_PLACES",
    ENV_FAULT,
    ENV_SLOWDOWN,
    "VIRTUAL_ENV",
    "TMPDIR",
)


# ---- the measured objects ------------------------------------------------------------


class Measurement:
    """The data, strategy and inputs of one configuration's timed calls.

    Built once per process; :meth:`setup` is idempotent so pyperf's worker processes
    can call it lazily from the one phase they time (outside the timed window).
    """

    def __init__(self, spec: MeasureSpec) -> None:
        self.spec = spec
        self.slowdown = slowdown_for(spec.strategy)
        self.strategy: Any = None
        self.dataset: Any = None
        self._ready = False
        self._blas_limit: Any = None
        #: How long the check's ``prepare`` took (NaN before the check).
        self.check_prepare_seconds = math.nan

    # -- data and strategy --

    def load(self) -> None:
        """Strategy class, data and common start (no strategy instance yet)."""
        if self.dataset is not None:
            return
        import strategies

        info = strategies.load_one(self.spec.strategy)
        if not info.available or info.cls is None:
            raise StrategyUnavailableError(f"strategy {info.name!r} is unavailable: {info.reason}")
        self.info = info
        self.dataset, self.init = load_inputs(self.spec)

    def new_strategy(self) -> Any:
        strategy = self.info.cls(workers=self.spec.workers)
        install_fault(strategy)
        return strategy

    def setup(self, strategy: Any = None) -> None:
        """Prepare a strategy and the phases' inputs; BLAS held as the driver holds it.

        Parameters
        ----------
        strategy : Strategy, optional
            An already prepared instance (the check's) to reuse; a new one otherwise.
        """
        if self._ready:
            return
        from threadpoolctl import threadpool_limits

        from harness.model.gmm import derive

        self.load()
        if strategy is None:
            strategy = self.new_strategy()
            self._blas_limit = threadpool_limits(limits=strategy.blas_threads(), user_api="blas")
            strategy.prepare(self.dataset.X)
        else:
            self._blas_limit = threadpool_limits(limits=strategy.blas_threads(), user_api="blas")
        self.strategy = strategy
        if strategy.whole_fit:  # a library's whole fit: timed by differencing
            from harness.sweep.library_timing import LibraryTimer

            self.library = LibraryTimer(strategy, self.init, self._timed, self.spec.min_time)
            self._ready = True
            return
        if self.spec.problem != "gmm":
            self.fused = False
            self._ready = True
            return
        self.fused = bool(strategy.has_fused_iteration)
        self.derived = derive(self.init)
        self.log_resp, _ = strategy.e_step(self.derived)
        self._ready = True

    def release(self) -> None:
        if self.strategy is not None:
            self.strategy.close()
        if self._blas_limit is not None:
            self._blas_limit.restore_original_limits()
            self._blas_limit = None

    # -- timing --

    def _timed(self, call: Callable[[], object]) -> float:
        """Wall time of one call, stretched by the slowdown hook when set."""
        perf_counter = time.perf_counter
        start = perf_counter()
        call()
        elapsed = perf_counter() - start
        if self.slowdown > 1.0:
            deadline = start + self.slowdown * elapsed
            while perf_counter() < deadline:  # busy-wait: a real slowdown, not a sleep
                pass
            elapsed = perf_counter() - start
        return elapsed

    def time_func(self, phase: str) -> Callable[[int], float]:
        """pyperf ``time_func(loops) -> seconds`` for one phase."""

        def run(loops: int) -> float:
            self.setup()  # no-op once ready; in pyperf workers, the untimed first setup
            strategy = self.strategy
            if phase == "prepare":
                total = 0.0
                for _ in range(loops):
                    strategy.close()  # release the previous pools untimed
                    total += self._timed(lambda: strategy.prepare(self.dataset.X))
                return total
            if self.spec.problem != "gmm":
                if phase != "iteration":
                    raise InvalidParameterError(f"no phase {phase!r} for {self.spec.problem}")
                call = strategy.run
            elif strategy.whole_fit:
                return self.library.time(phase, loops)
            elif phase == "e_step":
                call = lambda: strategy.e_step(self.derived)  # noqa: E731
            elif phase == "m_step":
                call = lambda: strategy.m_step(self.log_resp)  # noqa: E731
            elif phase == "iteration":
                from harness.sweep.em import em_iteration

                call = lambda: em_iteration(strategy, self.init, fused=self.fused)  # noqa: E731
            else:
                raise InvalidParameterError(f"unknown phase {phase!r}")
            return sum(self._timed(call) for _ in range(loops))

        return run


# ---- pyperf --------------------------------------------------------------------------


def _pyperf_argv(spec: MeasureSpec, own_args: list[str]) -> list[str]:
    """pyperf options of the configuration process for the spec's timing mode."""
    common = [
        "--values",
        str(spec.values),
        "--warmups",
        str(spec.warmups),
        "--min-time",
        repr(spec.min_time),
        "--quiet",
        "--hook",
        HOOK_NAME,
    ]
    if spec.processes == 0:
        return [*own_args, "--worker", "--loops", "1", *common]
    # Every GMM_HARNESS_* variable too (e.g. the process strategies' start method).
    inherited = list(INHERITED_ENV) + sorted(
        name for name in os.environ if name.startswith("GMM_HARNESS_") and name not in INHERITED_ENV
    )
    return [
        *own_args,
        "--processes",
        str(spec.processes),
        *common,
        "--inherit-environ",
        ",".join(inherited),
    ]


def _calibrated_loops(runner: Any, name: str, time_func: Callable[[int], float]) -> int:
    """Let pyperf calibrate the loop count in this process (in-process mode).

    pyperf's loop calibration (``--calibrate-loops``) doubles the loops until one
    value lasts ``min_time``; asked for one value and no warm-up, it costs a single
    call for phases longer than ``min_time``.
    """
    args = runner.args
    saved = (args.values, args.warmups)
    args.calibrate_loops, args.loops, args.values, args.warmups = True, 0, 1, 0
    try:
        bench = runner.bench_time_func(f"{name} (calibration)", time_func)
    finally:
        args.calibrate_loops = False
        args.values, args.warmups = saved
    return int(bench.get_runs()[0].get_metadata()["calibrate_loops"])


def time_phases(runner: Any, measurement: Measurement, *, in_process: bool) -> list[Any]:
    """One pyperf benchmark per phase (None entries skipped in pyperf worker processes)."""
    spec = measurement.spec
    measurement.load()
    whole_fit = measurement.info.cls.whole_fit
    benchmarks = []
    for phase in phases_of(spec, measurement.info.kind):
        name = benchmark_name(spec.config_id, phase)
        time_func = measurement.time_func(phase)
        metadata = {
            "description": f"{spec.strategy} {phase}, {spec.workload} n={spec.n}, "
            f"{spec.workers} worker(s)"
        }
        if in_process:
            # A library's timed call is a pair of whole fits, whatever the loop count.
            differenced = whole_fit and phase != "prepare"
            known = (spec.loops or {}).get(phase)
            one_off = phase == "prepare" and measurement.check_prepare_seconds >= spec.min_time
            if differenced:
                runner.args.loops = 1
            elif one_off:
                # A long prepare (a pool or a cluster started) is a one-off cost: one
                # call per value, no calibration or warm-up (the check's prepare warmed
                # the imports), and one value per process, whose replication is the
                # configuration's processes.
                runner.args.loops, runner.args.warmups, runner.args.values = 1, 0, 1
            elif known:  # a later process: the first one's loop count, one warm-up value
                runner.args.loops, runner.args.warmups = int(known), max(spec.warmups, 1)
            else:  # the calibration's calls warm the phase up
                runner.args.loops = _calibrated_loops(runner, name, time_func)
                runner.args.warmups = spec.warmups
        try:
            bench = runner.bench_time_func(name, time_func, metadata=metadata)
        finally:  # a one-off prepare's settings must not leak into the next phase
            runner.args.values, runner.args.warmups = spec.values, spec.warmups
        if bench is not None:
            benchmarks.append(bench)
    return benchmarks


# ---- entry point ---------------------------------------------------------------------


def _configuration_process(runner: Any, spec: MeasureSpec, args: argparse.Namespace) -> int:
    """Probe, check, time; always leaves a result file saying what happened."""
    result: dict[str, Any] = {"status": "failed", "error": "", "config_id": spec.config_id}
    result_path = Path(args.result)
    try:
        from threadpoolctl import threadpool_info

        measurement = Measurement(spec)
        measurement.load()
        result.update(
            kind=measurement.info.kind,
            d=measurement.dataset.d,
            k=measurement.dataset.k,
            parallel=bool(measurement.info.cls.parallel),
        )
        # The environment's thread counts as the libraries picked them up at import.
        result["env_blas_threads"] = pool_threads(threadpool_info(), "blas")
        try:
            strategy, check = run_check(measurement)
        except OverBudget as exc:
            reason, iteration_seconds, overran = exc.args
            result.update(
                status="skipped",
                error=reason,
                probe_iteration_seconds=iteration_seconds,
                probe_overran=overran,
            )
            write_text_atomic(result_path, to_json(result, indent=1))
            return 0
        result.update(check)
        result.update(code_path(measurement.info.cls, check["runtime_info"]))
        if spec.processes == 0:
            measurement.setup(strategy)
            try:
                benchmarks = time_phases(runner, measurement, in_process=True)
            finally:
                measurement.release()
        else:
            strategy.close()  # pyperf's workers build their own
            benchmarks = time_phases(runner, measurement, in_process=False)
        import pyperf

        suite = pyperf.BenchmarkSuite(benchmarks)
        write_atomic(args.pyperf_out, lambda path: suite.dump(str(path), replace=True))
        result["status"] = "ok"
    except Exception as exc:
        result["status"] = "failed"
        result["error"] = f"{type(exc).__name__}: {exc}".strip()
        traceback.print_exc()
    write_text_atomic(result_path, to_json(result, indent=1))
    return 0


def _parser(runner: Any) -> argparse.ArgumentParser:
    parser = runner.argparser
    parser.add_argument("--spec", required=True, help="MeasureSpec as a JSON file")
    parser.add_argument("--result", help="where the configuration process writes its summary")
    parser.add_argument(
        "--pyperf-out", help="where the configuration process writes the pyperf suite"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m harness.sweep.measure`` (see the module docstring)."""
    with terminate_as_interrupt():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    import pyperf

    argv = list(sys.argv[1:] if argv is None else argv)

    def forward_spec(cmd: list[str], args: argparse.Namespace) -> None:
        cmd.extend(("--spec", args.spec))

    runner = pyperf.Runner(
        program_args=("-m", "harness.sweep.measure"),
        add_cmdline_args=forward_spec,
        hooks=[HOOK],
    )
    _parser(runner)
    # Only --spec is needed to know the mode: read it before pyperf parses its options.
    spec_path = argv[argv.index("--spec") + 1] if "--spec" in argv else None
    if spec_path is None:
        runner.argparser.error("--spec is required")
    spec = MeasureSpec.from_json(Path(spec_path).read_text())
    InterferenceHook.workers = spec.workers
    pyperf_worker = spec.processes > 0 and "--worker" in argv
    if pyperf_worker:  # spawned by pyperf's manager: time the one phase it asks for
        runner.parse_args(argv)
        measurement = Measurement(spec)
        try:
            time_phases(runner, measurement, in_process=False)
        finally:
            measurement.release()
        return 0
    args = runner.parse_args(_pyperf_argv(spec, argv))
    if not args.result or not args.pyperf_out:
        runner.argparser.error("--result and --pyperf-out are required")
    try:
        return _configuration_process(runner, spec, args)
    except HarnessError as exc:  # e.g. a malformed hook variable: still one clear line
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
