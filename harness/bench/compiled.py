"""``python -m harness bench-compiled``: the compiled strategies against the libraries.

For each workload (``schreiber`` at n = 4,000,000, ``quinn``, ``highdim`` by default),
in one run, on the same data and from the same initial parameters:

* every compiled strategy (``cython``, ``openmp``, ``openmp-components``,
  ``joblib-threads``, and ``numba``'s JIT-compiled kernels) at 1 and 2 workers, per
  full EM iteration through the driver's own :func:`harness.sweep.em.em_iteration`
  (the fused one-pass iteration where the strategy has one, as the driver uses it);
* scikit-learn's E-step + M-step per iteration: the registered ``sklearn`` strategy,
  which calls ``GaussianMixture``'s own private steps, through the same driver, at 1
  and 2 BLAS threads;
* the peer libraries (kind ``library``: ``onedal``, ``sklearn-fit``) at the same worker
  counts, each a whole fit from the same start, per iteration by differencing a fit of
  1 and of 1 + m iterations (:class:`harness.sweep.library_timing.LibraryTimer`, m so
  that the m iterations last :data:`LIBRARY_SPAN`); their fixed cost is printed apart,
  and each library's final parameters are checked once against the reference under its
  own regularisation;
* the floors (:mod:`harness.sweep.floors`), measured here: for d = 2 the *exp floor*,
  NumPy's (SIMD) ``np.exp`` over n * k values on one core, divided by the workers (one
  exp per point and component is the least an E-step does); for d > 2 the *FLOP floor*,
  the iteration's FLOPs at a measured one-thread DGEMM rate times the workers.
  Each workload's fastest compiled strategy is printed as "x% of the floor": the floor's
  time over its time (100% is at the floor);
* the kernel-only time of each fused strategy (its one-pass statistics alone, without
  the serial ``derive`` and ``params_from_stats`` around it), next to the full iteration.

Timing: every configuration is prepared once (not timed), then the configurations
take turns, one iteration each per round, for ``--warmup`` discarded and ``--rounds``
kept rounds. Interleaving makes a neighbour's load fall on every configuration alike,
so the ratios printed (medians over rounds, taken side by side) are the figures to
quote; absolute times on a shared machine are indicative.

The targets are data: section ``[bench-compiled]`` of ``results/targets.toml``
(:mod:`harness.bench.compiled_targets` says what a metric may name; ``--targets`` reads
another file). A PASS/FAIL line is printed for each, and the exit status is 1 when any
fails. The tables are printed by :mod:`harness.bench.compiled_report`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.bench import compiled_targets
from harness.bench.compiled_report import print_fastest, print_table
from harness.bench.compiled_targets import REFERENCE
from harness.bench.options import add_bench_options
from harness.model import args as types
from harness.model.errors import DataFileError, InvalidParameterError
from harness.sweep.floors import (
    DGEMM_SIZE,
    dgemm_rate,
    exp_seconds,
    exp_values,
    flops_per_iteration,
)

COMPILED = ("cython", "openmp", "openmp-components", "joblib-threads", "numba")
#: Peer libraries timed alongside by default (kind ``library``).
PEERS = ("onedal", "sklearn-fit")
DEFAULT_WORKLOADS = ("schreiber", "quinn", "highdim")
#: Seconds the differenced iterations of one library pair last at least: well above
#: the run-to-run noise of a whole fit's fixed cost.
LIBRARY_SPAN = 0.2


@dataclass
class Config:
    """One (strategy, workers) pair being timed."""

    name: str
    workers: int
    strategy: object
    params: object
    fused: bool
    seconds: list[float] = field(default_factory=list)
    threads_used: int | None = None
    #: library strategies: the differencing timer and the fixed cost of each pair
    library: object = None
    fixed_seconds: list[float] = field(default_factory=list)
    #: fused strategies: the one-pass statistics alone, per round
    kernel_seconds: list[float] = field(default_factory=list)
    agreement: str = ""

    @property
    def median_ms(self) -> float:
        return float(np.median(self.seconds)) * 1e3

    @property
    def min_ms(self) -> float:
        return float(np.min(self.seconds)) * 1e3

    @property
    def fixed_ms(self) -> float | None:
        return float(np.median(self.fixed_seconds)) * 1e3 if self.fixed_seconds else None

    @property
    def kernel_ms(self) -> float | None:
        return float(np.median(self.kernel_seconds)) * 1e3 if self.kernel_seconds else None


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list; got {text!r}")
    return names


def configure_parser(parser: argparse.ArgumentParser) -> None:
    lists = (
        ("--workloads", DEFAULT_WORKLOADS, "comma-separated workloads"),
        (
            "--strategies",
            COMPILED,
            "compiled strategies to time (scikit-learn is always timed alongside)",
        ),
        (
            "--peers",
            PEERS,
            "library strategies timed alongside (differenced whole fits); 'none' for none",
        ),
    )
    for flag, default, help_text in lists:
        parser.add_argument(flag, type=_names, default=",".join(default), help=help_text)
    parser.add_argument("--workers", type=types.worker_list, default="1,2", help="worker counts")
    parser.add_argument(
        "--rounds", type=types.positive_int, default=5, help="timed rounds (one iteration each)"
    )
    parser.add_argument(
        "--warmup", type=types.nonnegative_int, default=1, help="discarded rounds first"
    )
    parser.add_argument("--seed", type=types.seed, default=0, help="data and initialisation seed")
    add_bench_options(
        parser,
        compiled_targets.SECTION,
        "points for every workload; omitted: each workload's own (schreiber 4e6)",
    )


# --------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------


def _prepare_configs(names, workers, X, init) -> tuple[list[Config], list[str]]:
    import strategies
    from harness.model.threads import limit_blas

    configs, skipped = [], []
    for name in names:
        info = strategies.get_info(name)
        if not info.available:
            skipped.append(f"{name}: {info.reason}")
            continue
        for count in workers:
            strategy = strategies.create(name, count)
            config = Config(name, count, strategy, init, strategy.has_fused_iteration)
            with limit_blas(strategy.blas_threads()):
                strategy.prepare(X)
                if strategy.whole_fit:
                    config.library = _library_timer(strategy, init)
            configs.append(config)
    return configs, skipped


def _library_timer(strategy, init):
    from harness.sweep.library_timing import LibraryTimer

    def timed(call) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    return LibraryTimer(strategy, init, timed, LIBRARY_SPAN)


def _measure(configs: list[Config], exp_input: np.ndarray, rounds: int, warmup: int) -> list[float]:
    """Round-robin: one iteration of every configuration per round, then the exp floor."""
    from harness.model.gmm import derive
    from harness.model.threads import limit_blas
    from harness.sweep.em import em_iteration

    exp_output = np.empty_like(exp_input)
    exp_times = []
    for round_index in range(warmup + rounds):
        kept = round_index >= warmup
        for config in configs:
            with limit_blas(config.strategy.blas_threads()):
                if config.library is not None:
                    pair = config.library.pair()
                    if kept:
                        config.seconds.append(pair.per_iteration)
                        config.fixed_seconds.append(pair.fixed)
                    continue
                start = time.perf_counter()
                config.params, _ = em_iteration(config.strategy, config.params, fused=config.fused)
                elapsed = time.perf_counter() - start
                if config.fused:  # the kernel alone, from the same parameters
                    derived = derive(config.params)
                    start = time.perf_counter()
                    config.strategy.fused_iteration(derived)
                    kernel = time.perf_counter() - start
            if kept:
                config.seconds.append(elapsed)
                if config.fused:
                    config.kernel_seconds.append(kernel)
        elapsed = exp_seconds(exp_input, exp_output)
        if round_index >= warmup:
            exp_times.append(elapsed)
    for config in configs:
        config.threads_used = config.strategy.runtime_info().get("threads_used")
    return exp_times


def _bench_workload(name: str, args: argparse.Namespace) -> dict[str, object]:
    import warnings

    from harness.model.gmm import CollapsedComponentWarning, initial_params
    from harness.model.workloads import make_workload

    dataset = make_workload(name, n=args.n, seed=args.seed)
    X, k = dataset.X, dataset.k
    init = initial_params(X, k, seed=args.seed)
    exp_input = exp_values(dataset.n * k, args.seed)
    configs, skipped = _prepare_configs(
        [*args.strategies, REFERENCE, *args.peers], args.workers, X, init
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CollapsedComponentWarning)
            exp_times = _measure(configs, exp_input, args.rounds, args.warmup)
        _check_libraries(configs, init)
    finally:
        for config in configs:
            config.strategy.close()
    return {
        "workload": name,
        "n": dataset.n,
        "d": dataset.d,
        "k": k,
        "configs": configs,
        "skipped": skipped,
        "exp_floor_ms": float(np.median(exp_times)) * 1e3,
        "flops": flops_per_iteration(dataset.n, dataset.d, k),
    }


#: Iterations of each library's fit checked against the reference (as a sweep's check).
CHECK_ITERATIONS = 3


def _check_libraries(configs: list[Config], init) -> None:
    """Each library's fit against the reference once (its first worker count), untimed."""
    seen = set()
    for config in configs:
        if config.library is None or config.name in seen:
            continue
        seen.add(config.name)
        fitted = config.strategy.fit(init, CHECK_ITERATIONS)
        agreement = config.strategy.agreement(fitted, init)
        config.agreement = agreement.describe()


def main(args: argparse.Namespace) -> int:
    import kernels
    from harness.model.threads import usable_cores
    from harness.model.workloads import WORKLOADS

    targets = compiled_targets.load(args.targets)  # a bad file fails before measuring

    unknown = [name for name in args.workloads if name not in WORKLOADS]
    if unknown:
        raise InvalidParameterError(
            f"unknown workload(s) {unknown}; valid names: {', '.join(WORKLOADS)}"
        )
    bad = [name for name in args.strategies if name not in COMPILED]
    if bad:
        raise InvalidParameterError(
            f"--strategies takes compiled strategies ({', '.join(COMPILED)}); got {bad}"
        )
    args.peers = () if args.peers == ("none",) else args.peers
    bad = [name for name in args.peers if name not in PEERS]
    if bad:
        raise InvalidParameterError(
            f"--peers takes library strategies ({', '.join(PEERS)}) or 'none'; got {bad}"
        )
    from harness.model.footprint import check_fits

    for name in args.workloads:
        spec = WORKLOADS[name]
        check_fits(args.n or spec.n, spec.d, spec.k, what=f"workload {name}")

    build = kernels.build_info()
    cores = usable_cores()
    load = os.getloadavg()[0]
    print(
        f"bench-compiled: workers {', '.join(map(str, args.workers))}; {args.rounds} rounds "
        f"(+{args.warmup} warm-up), configurations interleaved; {cores} usable cores, "
        f"load average {load:.2f}"
    )
    if build.get("built"):
        print(
            f"kernels: {build.get('compiler')} {' '.join(build.get('compile_args', [])[-6:])}; "
            f"OpenMP {'on' if build.get('openmp_enabled') else 'off'}; SIMD {build.get('simd')}"
        )
    else:
        print(f"kernels not built: {build.get('reason')}")
    if max(args.workers) > cores:
        print(f"warning: {max(args.workers)} workers on {cores} usable cores (oversubscribed)")

    figures: dict[str, object] = {
        "build": build,
        "cores": cores,
        "load_before": load,
        "workloads": {},
    }
    checks: list[dict[str, object]] = []
    rate = None
    if any(WORKLOADS[name].d > 2 for name in args.workloads):
        rate = dgemm_rate()
        figures["dgemm_flops_one_thread"] = rate
        print(f"one-thread DGEMM ({DGEMM_SIZE}x{DGEMM_SIZE}): {rate / 1e9:.1f} GFLOP/s")
    for name in args.workloads:
        result = _bench_workload(name, args)
        result["dgemm_flops"] = rate
        print_table(result, args.workers, compiled_targets.peer_pairs(targets))
        for count in compiled_targets.speed_workers(name, targets):
            print_fastest(result, count)
        workload_checks = compiled_targets.evaluate(name, result["configs"], targets)
        checks += workload_checks
        figures["workloads"][name] = {
            **{key: value for key, value in result.items() if key != "configs"},
            "configs": [
                {
                    "strategy": c.name,
                    "workers": c.workers,
                    "fused": c.fused,
                    "median_ms": c.median_ms,
                    "min_ms": c.min_ms,
                    "seconds": c.seconds,
                    "threads_used": c.threads_used,
                    "fixed_ms": c.fixed_ms,
                    "kernel_ms": c.kernel_ms,
                    "agreement": c.agreement,
                }
                for c in result["configs"]
            ],
            "checks": workload_checks,
        }
    figures["load_after"] = os.getloadavg()[0]
    figures["checks"] = checks

    print("\ntargets (per full EM iteration; timings on a shared machine are indicative)")
    for check in checks:
        print(f"  {check['status']:<4}  {check['target']}: {check['detail']}")
    print(f"load average after: {figures['load_after']:.2f}")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
        except OSError as exc:
            raise DataFileError(f"cannot write {args.json}: {exc}") from exc
        print(f"figures written to {args.json}")
    return 1 if any(check["status"] == "FAIL" for check in checks) else 0
