"""``python -m harness bench-compiled``: the compiled strategies against the libraries.

For each workload (``schreiber`` at n = 4,000,000, ``quinn``, ``highdim`` by default),
in one run, on the same data and from the same initial parameters:

* every compiled strategy (``cython``, ``openmp``, ``openmp-components``,
  ``joblib-threads``) at 1 and 2 workers, per full EM iteration through the driver's
  own :func:`harness.sweep.em.em_iteration` (the fused one-pass iteration where the
  strategy has one, as the driver uses it);
* scikit-learn's E-step + M-step per iteration: the registered ``sklearn`` strategy,
  which calls ``GaussianMixture``'s own private steps, through the same driver, at 1
  and 2 BLAS threads;
* the peer libraries (kind ``library``: ``onedal``, ``sklearn-fit``) at the same worker
  counts, each a whole fit from the same start, per iteration by differencing a fit of
  1 and of 1 + m iterations (:class:`harness.sweep.library_timing.LibraryTimer`, m so
  that the m iterations last :data:`LIBRARY_SPAN`); their fixed cost is printed apart,
  and each library's final parameters are checked once against the reference under its
  own regularisation;
* the floors, measured here: for d = 2 the *exp floor*, NumPy's (SIMD) ``np.exp`` over
  n * k values on one core, divided by the workers (one exp per point and component is
  the least an E-step does); for d > 2 the *FLOP floor*, :func:`flops_per_iteration`
  FLOPs at a measured one-thread DGEMM rate (:func:`dgemm_rate`) times the workers.
  Each workload's fastest compiled strategy is printed as "x% of the floor": the floor's
  time over its time (100% is at the floor);
* the kernel-only time of each fused strategy (its one-pass statistics alone, without
  the serial ``derive`` and ``params_from_stats`` around it), next to the full iteration.

Timing: every configuration is prepared once (not timed), then the configurations
take turns, one iteration each per round, for ``--warmup`` discarded and ``--rounds``
kept rounds. Interleaving makes a neighbour's load fall on every configuration alike,
so the ratios printed (medians over rounds, taken side by side) are the figures to
quote; absolute times on a shared machine are indicative.

The targets live here (never in tests); a PASS/FAIL line is printed for each
and the exit status is 1 when any fails:

* schreiber: fastest compiled strategy at 2 workers <= 60 ms per iteration, and at
  least 30x faster than scikit-learn;
* quinn: <= 25 ms and at least 20x faster than scikit-learn;
* highdim: at least 3x faster than scikit-learn;
* strong scaling: ``openmp`` from 1 to 2 workers >= 1.8x on schreiber;
* against the fastest library: ``onedal`` / ``openmp`` >= 2.0 at 2 workers on every
  workload (:data:`PEER_TARGET`).

The targets stay in this module until a shared targets file exists for the benchmark
commands.

"Faster than scikit-learn" is measured against scikit-learn's faster worker count (its
best time), the stricter comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.model import args as types
from harness.model.errors import DataFileError, InvalidParameterError

COMPILED = ("cython", "openmp", "openmp-components", "joblib-threads")
REFERENCE = "sklearn"
#: Peer libraries timed alongside by default (kind ``library``).
PEERS = ("onedal", "sklearn-fit")
DEFAULT_WORKLOADS = ("schreiber", "quinn", "highdim")
#: Seconds the differenced iterations of one library pair last at least: well above
#: the run-to-run noise of a whole fit's fixed cost.
LIBRARY_SPAN = 0.2
#: Square size of the DGEMM whose one-thread rate sets the FLOP floor: large enough to
#: run at BLAS's peak (packed, cache-blocked), small enough to time in milliseconds.
DGEMM_SIZE = 512


@dataclass(frozen=True)
class Target:
    """A per-workload target: fastest compiled at ``workers`` within ``max_ms`` and at
    least ``min_ratio`` times faster than scikit-learn."""

    max_ms: float | None
    min_ratio: float
    workers: int = 2


TARGETS: dict[str, Target] = {
    "schreiber": Target(max_ms=60.0, min_ratio=30.0),
    "quinn": Target(max_ms=25.0, min_ratio=20.0),
    "highdim": Target(max_ms=None, min_ratio=3.0),
}

#: (workload, strategy, minimum speed-up from 1 to 2 workers)
SCALING_TARGET = ("schreiber", "openmp", 1.8)
#: (library, strategy, minimum library / strategy time ratio, workers): on every workload.
PEER_TARGET = ("onedal", "openmp", 2.0, 2)


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


def flops_per_iteration(n: int, d: int, k: int) -> float:
    """Useful FLOPs of one EM iteration with full covariances: ``2 n k d (d + 1)``.

    Per point and component, the E-step's product with the triangular precision
    factor, ``(x - mu) @ P``, is ``d (d + 1) / 2`` multiply-adds, and the M-step's
    weighted symmetric scatter ``r (x - m)(x - m)^T`` as many again; each multiply-add
    is two FLOPs. Terms linear in d (norms, means, the exp) are left out: the floor is
    a lower bound.
    """
    return 2.0 * n * k * d * (d + 1)


def dgemm_rate(size: int = DGEMM_SIZE, min_seconds: float = 0.2) -> float:
    """FLOP/s of NumPy's DGEMM on one thread (best of repeated ``size`` x ``size`` products)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    out = np.empty((size, size))
    best = np.inf
    with threadpool_limits(limits=1, user_api="blas"):
        np.matmul(a, b, out=out)  # warm-up: BLAS start, pages
        spent = 0.0
        while spent < min_seconds:
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            elapsed = time.perf_counter() - start
            best, spent = min(best, elapsed), spent + elapsed
    return 2.0 * size**3 / best


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list; got {text!r}")
    return names


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workloads",
        type=_names,
        default=",".join(DEFAULT_WORKLOADS),
        help="comma-separated workloads",
    )
    parser.add_argument(
        "--n",
        type=types.size,
        default=None,
        help="points for every workload; omitted: each workload's own (schreiber 4e6)",
    )
    parser.add_argument(
        "--strategies",
        type=_names,
        default=",".join(COMPILED),
        help="compiled strategies to time (scikit-learn is always timed alongside)",
    )
    parser.add_argument(
        "--peers",
        type=_names,
        default=",".join(PEERS),
        help="library strategies timed alongside (differenced whole fits); 'none' for none",
    )
    parser.add_argument("--workers", type=types.worker_list, default="1,2", help="worker counts")
    parser.add_argument(
        "--rounds", type=types.positive_int, default=5, help="timed rounds (one iteration each)"
    )
    parser.add_argument(
        "--warmup", type=types.nonnegative_int, default=1, help="discarded rounds first"
    )
    parser.add_argument("--seed", type=types.seed, default=0, help="data and initialisation seed")
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=types.output_file,
        default=None,
        help="also write the figures here (its folder is checked before the benchmark)",
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
    exp_seconds = []
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
        start = time.perf_counter()
        np.exp(exp_input, out=exp_output)
        elapsed = time.perf_counter() - start
        if round_index >= warmup:
            exp_seconds.append(elapsed)
    for config in configs:
        config.threads_used = config.strategy.runtime_info().get("threads_used")
    return exp_seconds


def _bench_workload(name: str, args: argparse.Namespace) -> dict[str, object]:
    import warnings

    from harness.model.gmm import CollapsedComponentWarning, initial_params
    from harness.model.workloads import make_workload

    dataset = make_workload(name, n=args.n, seed=args.seed)
    X, k = dataset.X, dataset.k
    init = initial_params(X, k, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    # Values like those the kernels exponentiate (log-densities minus their row max).
    exp_input = rng.uniform(-30.0, 0.0, size=dataset.n * k)
    configs, skipped = _prepare_configs(
        [*args.strategies, REFERENCE, *args.peers], args.workers, X, init
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CollapsedComponentWarning)
            exp_seconds = _measure(configs, exp_input, args.rounds, args.warmup)
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
        "exp_floor_ms": float(np.median(exp_seconds)) * 1e3,
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


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _print_table(result: dict[str, object], workers: tuple[int, ...]) -> None:
    configs: list[Config] = result["configs"]
    print(
        f"\n{result['workload']}: n={result['n']:,} d={result['d']} k={result['k']} "
        "(ms per EM iteration, median over rounds [min])"
    )
    header = f"  {'strategy':<20}" + "".join(
        f"{f'{w} worker' + ('s' if w > 1 else ''):>22}" for w in workers
    )
    if len(workers) > 1:
        header += f"{'speed-up':>10}"
    print(header)
    names = list(dict.fromkeys(config.name for config in configs))
    for name in names:
        by_workers = {c.workers: c for c in configs if c.name == name}
        label = name + (" (E+M)" if name == REFERENCE else "")
        label += " fused" if any(c.fused for c in by_workers.values()) else ""
        label += " (fit)" if any(c.library is not None for c in by_workers.values()) else ""
        cells = []
        for count in workers:
            config = by_workers.get(count)
            if config is None:
                cells.append(f"{'-':>22}")
                continue
            threads = f" t{config.threads_used}" if config.threads_used is not None else ""
            cells.append(
                f"{_fmt_ms(config.median_ms) + ' [' + _fmt_ms(config.min_ms) + ']' + threads:>22}"
            )
        line = f"  {label:<20}" + "".join(cells)
        if len(workers) > 1 and workers[0] in by_workers and workers[-1] in by_workers:
            speedup = by_workers[workers[0]].median_ms / by_workers[workers[-1]].median_ms
            line += f"{speedup:>9.2f}x"
        print(line)
    for name in names:
        for config in (c for c in configs if c.name == name):
            if config.library is not None:
                # a differenced cost at or below zero is noise, not a negative time
                fixed = (
                    f"{_fmt_ms(config.fixed_ms)} ms"
                    if config.fixed_ms > 0
                    else "within the noise (differenced to <= 0)"
                )
                print(
                    f"  {name} w{config.workers}: fixed cost {fixed} per fit "
                    f"(differenced: fits of 1 and {1 + config.library.extra} iterations)"
                )
            elif config.kernel_ms is not None:
                # kernel and iteration are timed in separate rounds: a kernel median above
                # the iteration's says the rest is inside the noise
                rest = (
                    "the rest: derive, params_from_stats"
                    if config.kernel_ms < config.median_ms
                    else "the rest is inside the noise"
                )
                print(
                    f"  {name} w{config.workers}: kernel only {_fmt_ms(config.kernel_ms)} ms of "
                    f"the {_fmt_ms(config.median_ms)} ms iteration ({rest})"
                )
    for config in configs:
        if config.agreement:
            print(f"  {config.name}: {config.agreement}")
    _print_peer_ratios(configs, workers)
    _print_floor(result)
    for reason in result["skipped"]:
        print(f"  skipped {reason}")


def _by(configs: list[Config], name: str) -> dict[int, Config]:
    return {c.workers: c for c in configs if c.name == name}


def _print_peer_ratios(configs: list[Config], workers: tuple[int, ...]) -> None:
    library, strategy, _, _ = PEER_TARGET
    ours, theirs = _by(configs, strategy), _by(configs, library)
    cells = [
        f"w{count} {theirs[count].median_ms / ours[count].median_ms:.2f}x"
        for count in workers
        if count in ours and count in theirs
    ]
    if cells:
        print(f"  {library} / {strategy} (time ratio, > 1: {strategy} faster): {', '.join(cells)}")


def floor_ms(result: dict[str, object], workers: int) -> tuple[float, str]:
    """The workload's floor at ``workers`` cores (ms) and what it is."""
    if result["d"] <= 2:
        return result["exp_floor_ms"] / workers, (
            f"exp floor: np.exp over n*k = {result['n'] * result['k']:,} values, "
            f"{result['exp_floor_ms']:.1f} ms on one core / {workers}"
        )
    rate = result["dgemm_flops"]
    return result["flops"] / (rate * workers) * 1e3, (
        f"FLOP floor: 2 n k d (d+1) = {result['flops'] / 1e9:.2f} GFLOP at one-thread DGEMM "
        f"{rate / 1e9:.1f} GFLOP/s x {workers}"
    )


def _print_floor(result: dict[str, object]) -> None:
    configs: list[Config] = result["configs"]
    for count in sorted({c.workers for c in configs}):
        compiled = [
            c for c in configs if c.workers == count and c.name != REFERENCE and c.library is None
        ]
        if not compiled:
            continue
        best = min(compiled, key=lambda c: c.median_ms)
        floor, what = floor_ms(result, count)
        share = 100 * floor / best.median_ms
        print(
            f"  w{count}: {best.name} {best.median_ms:.1f} ms is {share:.0f}% of the floor "
            f"({floor:.1f} ms; {what})"
        )


def _evaluate(result: dict[str, object], workers: tuple[int, ...]) -> list[dict[str, object]]:
    """PASS/FAIL lines for one workload's targets."""
    name = result["workload"]
    configs: list[Config] = result["configs"]
    checks: list[dict[str, object]] = []
    reference = [c for c in configs if c.name == REFERENCE]
    target = TARGETS.get(name)
    if target is not None:
        compiled = [
            c
            for c in configs
            if c.name != REFERENCE and c.library is None and c.workers == target.workers
        ]
        if not compiled or not reference:
            checks.append(
                {
                    "target": f"{name}: targets at {target.workers} workers",
                    "status": "SKIP",
                    "detail": "not measured",
                }
            )
        else:
            best = min(compiled, key=lambda c: c.median_ms)
            sklearn_best = min(reference, key=lambda c: c.median_ms)
            ratio = sklearn_best.median_ms / best.median_ms
            floor, _ = floor_ms(result, target.workers)
            print(
                f"  fastest compiled at {target.workers} workers: {best.name} "
                f"{best.median_ms:.1f} ms = {ratio:.1f}x faster than scikit-learn "
                f"({sklearn_best.median_ms:,.0f} ms at {sklearn_best.workers} BLAS threads); "
                f"{100 * floor / best.median_ms:.0f}% of the floor ({floor:.1f} ms on "
                f"{target.workers} cores)"
            )
            if target.max_ms is not None:
                checks.append(
                    {
                        "target": f"{name}: fastest compiled at {target.workers} workers "
                        f"<= {target.max_ms:g} ms",
                        "status": "PASS" if best.median_ms <= target.max_ms else "FAIL",
                        "detail": f"{best.name} {best.median_ms:.1f} ms",
                    }
                )
            checks.append(
                {
                    "target": f"{name}: >= {target.min_ratio:g}x faster than scikit-learn",
                    "status": "PASS" if ratio >= target.min_ratio else "FAIL",
                    "detail": f"{ratio:.1f}x ({best.name} vs sklearn)",
                }
            )
    library, strategy, at_least, count = PEER_TARGET
    ours, theirs = _by(configs, strategy).get(count), _by(configs, library).get(count)
    if ours is None or theirs is None:
        checks.append(
            {
                "target": f"{name}: {library} / {strategy} at {count} workers",
                "status": "SKIP",
                "detail": "not measured (is scikit-learn-intelex installed? "
                "pip install -e .[peers])",
            }
        )
    else:
        ratio = theirs.median_ms / ours.median_ms
        checks.append(
            {
                "target": f"{name}: {library} / {strategy} >= {at_least:g} at {count} workers",
                "status": "PASS" if ratio >= at_least else "FAIL",
                "detail": f"{ratio:.2f}x ({library} {theirs.median_ms:.1f} ms, {strategy} "
                f"{ours.median_ms:.1f} ms)",
            }
        )
    scaling_workload, scaling_strategy, minimum = SCALING_TARGET
    if name == scaling_workload:
        by_workers = {c.workers: c for c in configs if c.name == scaling_strategy}
        if 1 in by_workers and 2 in by_workers:
            speedup = by_workers[1].median_ms / by_workers[2].median_ms
            checks.append(
                {
                    "target": f"{name}: {scaling_strategy} 1 -> 2 workers >= {minimum:g}x",
                    "status": "PASS" if speedup >= minimum else "FAIL",
                    "detail": f"{speedup:.2f}x",
                }
            )
        else:
            checks.append(
                {
                    "target": f"{name}: {scaling_strategy} 1 -> 2 workers",
                    "status": "SKIP",
                    "detail": "needs --workers 1,2",
                }
            )
    return checks


def main(args: argparse.Namespace) -> int:
    import kernels
    from harness.model.threads import usable_cores
    from harness.model.workloads import WORKLOADS

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
        _print_table(result, args.workers)
        workload_checks = _evaluate(result, args.workers)
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
