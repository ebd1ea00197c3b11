"""One configuration measured in a fresh process: ``python -m harness.sweep.measure``.

The sweep runner (:mod:`harness.sweep.runner`) starts this module once per configuration
``(workload, n, strategy, workers)``, in a process group of its own, with the OpenMP
and BLAS thread variables already set to the worker count
(:func:`harness.model.threads.thread_env`) so they apply before NumPy loads. Command line::

    python -m harness.sweep.measure --spec SPEC.json --result RESULT.json --pyperf-out OUT.json

``SPEC.json`` is a :class:`MeasureSpec`. The process then

1. imports only this strategy's module (:func:`strategies.load_one`), loads the
   workload and its common start (:func:`save_inputs` wrote them once per size; they
   are generated here when the spec names no files), and reads back the thread pools
   the environment gave it (threadpoolctl);
2. runs the *check*: ``prepare`` plus :data:`CHECK_ITERATIONS` EM iterations from the
   common start (:func:`harness.model.gmm.initial_params`) with the
   driver's :func:`harness.sweep.em.em_iteration`, recording the final mean log-likelihood
   (for the cross-strategy correctness check), whether the fused path ran, the
   strategy's :meth:`~strategies.base.Strategy.runtime_info`, the BLAS/OpenMP thread
   counts seen while it ran and the peak PSS of the process and its workers
   (``harness.sweep.memory.PeakMemorySampler`` when available; sampled here rather than
   during the timings, whose sampling thread would disturb). The check also warms
   everything the timings then use;
3. when ``spec.probe`` is set (the runner has no smaller size of this strategy to
   extrapolate from), the check's first iteration is the budget probe: it runs under
   a deadline (:func:`max_iteration_seconds`) and the configuration stops with status
   ``skipped`` when it overruns or when :func:`configuration_seconds` of its time
   exceeds ``spec.time_budget``. A probe at the real size needs no extrapolation and
   wastes at most a thirteenth or so of the budget;
4. times the phases of :data:`harness.sweep.results.PHASES` with pyperf, one pyperf
   benchmark per phase named :func:`benchmark_name`:

   ``prepare``  ``Strategy.prepare(X)`` (the previous preparation is closed untimed);
   ``e_step``   ``Strategy.e_step(derive(init))``;
   ``m_step``   ``Strategy.m_step(log_resp)`` on that E-step's responsibilities;
   ``iteration`` :func:`harness.sweep.em.em_iteration` from ``init`` (the fused one-pass
   iteration where the strategy has one), as the driver runs it;

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

A later process of the same configuration (``spec.loops`` given) skips the
calibration: it takes the first process's loop count and one warm-up value, so every
process's values are sums of the same number of calls.

``P >= 1``: *pyperf worker processes*. This process is pyperf's manager: it spawns
``P`` worker processes per phase (plus pyperf's calibration process), each a fresh
``python -m harness.sweep.measure --worker ...`` that rebuilds the data and the strategy
before pyperf times it. The thread variables and the fault hooks below reach the
workers through ``--inherit-environ``. ``--rigorous`` uses this mode.

Interference
------------
In both modes pyperf runs the hook of :mod:`harness.sweep.interference`
(``--hook gmm-interference``) around every value: it reads the machine's and the
measured tree's CPU counters just before and just after each call of the timed
function, outside the function's own clock, and leaves ``foreign_cpu`` and
``tree_cpu`` per value in the pyperf run's metadata, where the runner reads them. In
the rigorous mode the hook runs inside each pyperf worker process, so every worker's
values carry their own interference.

Test-only fault hooks
---------------------
Read from the environment of this process (never set them in normal use):

``GMM_HARNESS_FAULT="<strategy>:raise|crash|hang"``
    The named strategy's E-step (and fused iteration) raises ``RuntimeError``, kills
    the process with ``os._exit`` (:data:`CRASH_EXIT_STATUS`), or blocks forever with
    every signal blocked (as a deadlock in C code would), so tests can see the runner
    record a failure and carry on. Several entries may be separated by commas.
``GMM_HARNESS_SLOWDOWN="<strategy>:<factor>"``
    Every timed call of the named strategy takes ``factor`` times as long: after the
    real call, the remaining time is spent busy-waiting inside the timed window.
    Lets the CI comparison prove that a real slowdown (e.g. ``1.2``) is detected.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from harness.model.errors import HarnessError, InvalidParameterError, StrategyUnavailableError
from harness.sweep.interference import HOOK, HOOK_NAME, InterferenceHook
from harness.sweep.processes import terminate_as_interrupt
from harness.sweep.results import PHASES, config_id

#: EM iterations from the common start behind ``final_loglik`` (the correctness
#: cross-check). Three iterations exercise two M-steps and three E-steps, enough for
#: a wrong statistic to move the log-likelihood far beyond rounding.
CHECK_ITERATIONS = 3

ENV_FAULT = "GMM_HARNESS_FAULT"
ENV_SLOWDOWN = "GMM_HARNESS_SLOWDOWN"
FAULT_ACTIONS = ("raise", "crash", "hang")
#: Exit status of a process killed by the ``crash`` fault hook.
CRASH_EXIT_STATUS = 70

#: Environment variables pyperf's worker processes must inherit (pyperf passes only
#: a short whitelist by default); every ``GMM_HARNESS_*`` variable set is added.
INHERITED_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    ENV_FAULT,
    ENV_SLOWDOWN,
    "VIRTUAL_ENV",
    "TMPDIR",
)


@dataclass(frozen=True)
class MeasureSpec:
    """Everything the measurement process needs to know (JSON in, JSON out).

    Attributes
    ----------
    workload : str
    n : int
    strategy : str
    workers : int
    seed : int
        Data and initialisation seed.
    warmups, values : int
        pyperf warm-up and kept values per phase (per process).
    processes : int
        0 for the in-process mode, else pyperf worker processes per phase.
    min_time : float
        pyperf's minimum duration of one value (seconds), which sets the loop count.
    check_iterations : int
    time_budget : float or None
        Seconds one configuration may be estimated to take (used with ``probe``).
    probe : bool
        Use the first check iteration as the budget probe (see the module docstring).
    data_file, init_file : str or None
        The workload and its common start saved by :func:`save_inputs` (the runner
        generates each ``(workload, n)`` once for all its configurations); generated
        here when None.
    loops : dict or None
        Loop count per phase, taken from the configuration's first process (in-process
        mode): later processes skip pyperf's calibration and take one warm-up value
        instead, so every process's values use the same loop count.
    process : int
        Index of this process among the configuration's processes (0 for the first).
    """

    workload: str
    n: int
    strategy: str
    workers: int
    seed: int = 0
    warmups: int = 1
    values: int = 3
    processes: int = 0
    min_time: float = 0.1
    check_iterations: int = CHECK_ITERATIONS
    time_budget: float | None = None
    probe: bool = False
    data_file: str | None = None
    init_file: str | None = None
    loops: dict[str, int] | None = None
    process: int = 0

    @property
    def config_id(self) -> str:
        return config_id(self.workload, self.n, self.strategy, self.workers)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MeasureSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def benchmark_name(config: str, phase: str) -> str:
    """pyperf benchmark name of one phase, e.g. ``quinn-n130000-einsum-w2/e_step``.

    The same configuration gets the same name in every run, so
    ``python -m pyperf compare_to`` pairs them up across runs.
    """
    return f"{config}/{phase}"


# ---- inputs --------------------------------------------------------------------------


def save_inputs(workload: str, n: int, seed: int, directory: Path) -> tuple[str, str]:
    """Generate a workload and its common start once, for every configuration using them.

    Saves ``X`` as ``.npy`` and the initial parameters as ``.npz`` in ``directory``,
    so measurement processes neither regenerate the data nor import scikit-learn
    (k-means++ seeding) at every start.

    Returns
    -------
    data_file, init_file : str
    """
    import numpy as np

    from harness.model.gmm import initial_params
    from harness.model.workloads import make_workload

    dataset = make_workload(workload, n, seed=seed)
    init = initial_params(dataset.X, dataset.k, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{dataset.name}-n{dataset.n}-s{seed}"
    data_file, init_file = stem.with_suffix(".npy"), stem.with_suffix(".init.npz")
    np.save(data_file, dataset.X, allow_pickle=False)
    np.savez(init_file, weights=init.weights, means=init.means, covariances=init.covariances)
    return str(data_file), str(init_file)


def load_inputs(spec: MeasureSpec) -> tuple[Any, Any]:
    """The spec's dataset and common start: from its files when given, else generated."""
    import numpy as np

    from harness.model.gmm import GMMParams, initial_params
    from harness.model.workloads import Dataset, make_workload

    if spec.data_file is None or spec.init_file is None:
        dataset = make_workload(spec.workload, spec.n, seed=spec.seed)
        return dataset, initial_params(dataset.X, dataset.k, seed=spec.seed)
    X = np.load(spec.data_file, allow_pickle=False)
    with np.load(spec.init_file, allow_pickle=False) as saved:
        init = GMMParams(saved["weights"], saved["means"], saved["covariances"])
    if X.shape != (spec.n, init.n_features):
        raise InvalidParameterError(
            f"{spec.data_file} holds {X.shape}, expected ({spec.n}, {init.n_features})"
        )
    return Dataset(spec.workload, X, init.n_components, spec.seed), init


# ---- time estimates (shared with the runner) -------------------------------------------


def iteration_seconds_at(points: Sequence[tuple[int, float]], n: int) -> float:
    """Per-iteration seconds at ``n`` points, extrapolated from measured points.

    Parameters
    ----------
    points : sequence of (n_points, seconds)
        Measured (or probed) seconds of one EM iteration of the same strategy, workload
        and worker count at other sizes.
    n : int

    Returns
    -------
    float
        With one point, linear through the origin (every cost taken as per-point:
        errs on the slow side). With more, affine through the two largest sizes not
        above ``n`` (a fixed cost plus a per-point cost), never below the largest
        measured time and falling back to the linear rule when noise makes the slope
        negative.
    """
    if not points:
        raise ValueError("no measured points to extrapolate from")
    ordered = sorted((int(size), float(seconds)) for size, seconds in points)
    below = [point for point in ordered if point[0] <= n] or ordered[:1]
    n2, t2 = below[-1]
    linear = t2 * n / n2
    if len(below) < 2:
        return linear
    n1, t1 = below[-2]
    if n1 == n2:
        return linear
    slope = (t2 - t1) / (n2 - n1)
    if slope <= 0:
        return linear
    return max(t2 + slope * (n - n2), t2 if n >= n2 else 0.0)


def calls_per_phase(spec: MeasureSpec) -> int:
    """Timed calls (counting calibration and warm-ups) of each phase of a configuration."""
    if spec.processes == 0:
        return 1 + spec.warmups + spec.values  # one calibration value, then warm-ups + values
    return (spec.processes + 1) * (spec.warmups + spec.values)  # + pyperf's calibration run


def configuration_seconds(iteration_seconds: float, spec: MeasureSpec) -> float:
    """Estimated seconds of a configuration's timed work, given one iteration's time.

    E-step and M-step are taken as half an iteration each; pyperf raises any call
    shorter than ``min_time`` to ``min_time`` through its loop count; ``prepare`` is
    counted at ``min_time`` per call (it is usually far cheaper than an iteration).
    Process start-up, imports and data generation are not included.
    """
    t = float(iteration_seconds)
    floor = spec.min_time
    per_round = max(t, floor) + 2 * max(t / 2, floor) + floor
    return spec.check_iterations * t + calls_per_phase(spec) * per_round


# ---- fault hooks ---------------------------------------------------------------------


def _hook_entries(variable: str) -> dict[str, str]:
    """``{"strategy": "value"}`` from ``"a:x,b:y"`` in an environment variable."""
    text = os.environ.get(variable, "").strip()
    entries = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise InvalidParameterError(
                f"{variable} entries must look like '<strategy>:<value>'; got {item!r}"
            )
        entries[name.strip().lower()] = value.strip().lower()
    return entries


def fault_for(strategy_name: str) -> str | None:
    """The fault action ``GMM_HARNESS_FAULT`` asks for on this strategy, if any."""
    action = _hook_entries(ENV_FAULT).get(strategy_name)
    if action is not None and action not in FAULT_ACTIONS:
        raise InvalidParameterError(
            f"{ENV_FAULT}: unknown action {action!r}; valid: {', '.join(FAULT_ACTIONS)}"
        )
    return action


def slowdown_for(strategy_name: str) -> float:
    """The factor ``GMM_HARNESS_SLOWDOWN`` applies to this strategy's timed calls (1.0: none)."""
    text = _hook_entries(ENV_SLOWDOWN).get(strategy_name)
    if text is None:
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        raise InvalidParameterError(
            f"{ENV_SLOWDOWN}: factor must be a number; got {text!r}"
        ) from None
    if not (math.isfinite(factor) and factor >= 1.0):
        raise InvalidParameterError(f"{ENV_SLOWDOWN}: factor must be >= 1; got {text!r}")
    return factor


def _install_fault(strategy: Any) -> None:
    """Replace the strategy's E-step entry points by the requested fault (test hook)."""
    action = fault_for(strategy.name)
    if action is None:
        return

    def fault(*args: object, **kwargs: object) -> Any:
        if action == "raise":
            raise RuntimeError(f"injected fault ({ENV_FAULT}={strategy.name}:raise)")
        if action == "crash":
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(CRASH_EXIT_STATUS)
        # hang like a deadlock in C code: deaf to every signal but SIGKILL, so only the
        # runner's time limit (which kills the process group) ends it
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            time.sleep(3600)

    # Instance attributes shadow the class's methods for this object only.
    strategy.e_step = fault
    strategy.fused_iteration = fault


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
        _install_fault(strategy)
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
            if phase == "e_step":
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


# ---- check (with the budget probe) ---------------------------------------------------


class OverBudget(Exception):
    """The first check iteration outlasted what the time budget allows one iteration."""


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`OverBudget` in this (main) thread if the block outlasts ``seconds``.

    Pure-Python loops are interrupted on time; a long C call is interrupted when it
    returns (the runner's time limit covers anything that never returns).
    """
    if seconds is None or not math.isfinite(seconds):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def max_iteration_seconds(spec: MeasureSpec) -> float:
    """The longest iteration for which :func:`configuration_seconds` stays within budget."""
    budget = spec.time_budget
    if budget is None or not math.isfinite(budget):
        return math.inf
    low, high = 0.0, budget
    if configuration_seconds(0.0, spec) > budget:
        return 0.0
    for _ in range(60):  # bisection on a monotone function; 60 halvings reach 1e-18 s
        middle = (low + high) / 2
        if configuration_seconds(middle, spec) > budget:
            high = middle
        else:
            low = middle
    return low


def _pool_threads(pools: list[dict[str, Any]], user_api: str) -> int | None:
    counts = [
        int(pool["num_threads"])
        for pool in pools
        if pool.get("user_api") == user_api and pool.get("num_threads") is not None
    ]
    return max(counts) if counts else None


def run_check(measurement: Measurement) -> tuple[Any, dict[str, Any]]:
    """Prepare and run ``check_iterations`` EM iterations from the common start.

    The iterations are :func:`harness.sweep.em.em_iteration`, the driver's own, with BLAS
    held to :meth:`~strategies.base.Strategy.blas_threads` as :func:`harness.sweep.em.fit`
    holds it. With ``spec.probe``, the first iteration is also the budget probe: it
    runs under a deadline of :func:`max_iteration_seconds` and its time is
    extrapolated with :func:`configuration_seconds`.

    Returns
    -------
    strategy : Strategy
        Still prepared (open); the caller closes it.
    info : dict
        ``final_loglik``, ``iterations_checked``, ``used_fused``, ``runtime_info``,
        ``blas_threads``, ``omp_threads``, ``thread_pools``, ``peak_pss_bytes``,
        ``check_seconds``, ``iteration_seconds`` (median of the check iterations).

    Raises
    ------
    OverBudget
        With ``spec.probe``, when the first iteration overruns or its estimate
        exceeds the budget; ``args`` are the reason, the iteration's seconds and
        whether it overran (then the seconds are the deadline, a lower bound).
    """
    from harness.model.threads import limit_blas, thread_pools
    from harness.sweep.em import em_iteration

    measurement.load()
    spec = measurement.spec
    allowance = max_iteration_seconds(spec) if spec.probe else math.inf
    strategy = measurement.new_strategy()
    fused = bool(strategy.has_fused_iteration)
    seconds: list[float] = []
    logliks: list[float] = []
    sampler = _memory_sampler()
    try:
        start = time.perf_counter()
        with sampler or contextlib.nullcontext(), limit_blas(strategy.blas_threads()):
            strategy.prepare(measurement.dataset.X)
            params = measurement.init
            for iteration in range(spec.check_iterations):
                began = time.perf_counter()
                with _deadline(allowance if iteration == 0 else None):
                    params, loglik = em_iteration(strategy, params, fused=fused)
                seconds.append(time.perf_counter() - began)
                logliks.append(loglik)
                if iteration == 0 and spec.probe:
                    estimate = configuration_seconds(seconds[0], spec)
                    if estimate > spec.time_budget:
                        raise OverBudget(
                            f"estimated {estimate:.0f} s > time budget "
                            f"{spec.time_budget:g} s (first iteration at n: "
                            f"{seconds[0] * 1e3:.1f} ms)",
                            seconds[0],
                            False,
                        )
            runtime_info = dict(strategy.runtime_info())
            # What the driver holds BLAS to while the strategy runs, read back as it applies.
            pools = thread_pools()
        check_seconds = time.perf_counter() - start
    except OverBudget as exc:
        strategy.close()
        if not exc.args:  # the deadline fired: the iteration took at least the allowance
            raise OverBudget(
                f"one iteration at n takes over {allowance:.2f} s, the most a "
                f"configuration within the time budget of {spec.time_budget:g} s allows",
                allowance,
                True,
            ) from None
        raise
    except BaseException:
        strategy.close()
        raise
    peak = math.nan
    if sampler is not None:
        peak = float(getattr(sampler, "peak_bytes", math.nan) or math.nan)
    omp = _pool_threads(pools, "openmp")
    if omp is None:  # no OpenMP runtime loaded: what one would get is the environment's
        omp = _int_or_none(os.environ.get("OMP_NUM_THREADS"))
    info = {
        "final_loglik": float(logliks[-1]),
        "iterations_checked": len(logliks),
        "used_fused": fused,
        "runtime_info": _jsonable(runtime_info),
        "blas_threads": _pool_threads(pools, "blas"),
        "omp_threads": omp,
        "thread_pools": _jsonable(pools),
        "peak_pss_bytes": peak,
        "check_seconds": check_seconds,
        "iteration_seconds": sorted(seconds)[len(seconds) // 2],
    }
    return strategy, info


#: Registry names whose code path is named after them when they do not report one.
_NAMED_PATHS = {"python": "python", "scipy": "scipy", "sklearn": "sklearn"}


def code_path(cls: Any, runtime_info: dict[str, Any]) -> dict[str, Any]:
    """``kernel`` (the code path that ran) and ``inline`` (no pool) of a checked strategy.

    ``runtime_info()["kernel"]`` when the strategy reports it (the process strategies
    say whether their workers ran the compiled kernels or NumPy); else ``cython`` for a
    strategy that needs the compiled kernels, the library's name for the pure-Python,
    SciPy and scikit-learn strategies, ``numpy`` for the rest. ``inline`` is
    ``runtime_info()["inline"]``, or True when a joblib strategy ran joblib's
    sequential backend (its rule for one worker: no pool at all).
    """
    kernel = runtime_info.get("kernel")
    if not kernel:
        name = str(getattr(cls, "name", ""))
        if getattr(cls, "needs_compiled", False):
            kernel = "cython"
        else:
            kernel = _NAMED_PATHS.get(name, "numpy")
    inline = runtime_info.get("inline")
    if inline is None:
        inline = str(runtime_info.get("backend", "")).lower() == "sequential"
    return {"kernel": str(kernel), "inline": bool(inline)}


def _memory_sampler() -> Any:
    """``harness.sweep.memory.PeakMemorySampler()`` when it exists and works here, else None."""
    try:
        from harness.sweep.memory import PeakMemorySampler

        return PeakMemorySampler()
    except (ImportError, HarnessError):
        return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON (NumPy scalars and other objects become plain values)."""

    def default(obj: object) -> object:
        item = getattr(obj, "item", None)
        if callable(item):
            return item()
        tolist = getattr(obj, "tolist", None)
        if callable(tolist):
            return tolist()
        return str(obj)

    return json.loads(json.dumps(value, default=default))


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
    benchmarks = []
    for phase in PHASES:
        name = benchmark_name(spec.config_id, phase)
        time_func = measurement.time_func(phase)
        metadata = {
            "description": f"{spec.strategy} {phase}, {spec.workload} n={spec.n}, "
            f"{spec.workers} worker(s)"
        }
        if in_process:
            known = (spec.loops or {}).get(phase)
            if known:  # a later process: the first one's loop count, one warm-up value
                runner.args.loops, runner.args.warmups = int(known), max(spec.warmups, 1)
            else:  # the calibration's calls warm the phase up
                runner.args.loops = _calibrated_loops(runner, name, time_func)
                runner.args.warmups = spec.warmups
        bench = runner.bench_time_func(name, time_func, metadata=metadata)
        if bench is not None:
            benchmarks.append(bench)
    return benchmarks


# ---- entry point ---------------------------------------------------------------------


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(_jsonable(payload), indent=1, allow_nan=True))
    os.replace(temporary, path)


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
        result["env_blas_threads"] = _pool_threads(threadpool_info(), "blas")
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
            _write_json_atomic(result_path, result)
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

        pyperf_out = Path(args.pyperf_out)
        temporary = pyperf_out.with_name(pyperf_out.name + ".tmp")
        pyperf.BenchmarkSuite(benchmarks).dump(str(temporary), replace=True)
        os.replace(temporary, pyperf_out)
        result["status"] = "ok"
    except Exception as exc:
        result["status"] = "failed"
        result["error"] = f"{type(exc).__name__}: {exc}".strip()
        traceback.print_exc()
    _write_json_atomic(result_path, result)
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
