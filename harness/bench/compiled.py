"""``python -m harness bench-compiled``: the compiled strategies against scikit-learn.

For each workload (``schreiber`` at n = 4,000,000, ``quinn``, ``highdim`` by default),
in one run, on the same data and from the same initial parameters:

* every compiled strategy (``cython``, ``openmp``, ``openmp-components``,
  ``joblib-threads``) at 1 and 2 workers, per full EM iteration through the driver's
  own :func:`harness.sweep.em.em_iteration` (the fused one-pass iteration where the
  strategy has one, as the driver uses it);
* scikit-learn's E-step + M-step per iteration: the registered ``sklearn`` strategy,
  which calls ``GaussianMixture``'s own private steps, through the same driver, at 1
  and 2 BLAS threads;
* the exp floor: NumPy's (SIMD) ``np.exp`` over n * k values, one core.

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
* strong scaling: ``openmp`` from 1 to 2 workers >= 1.8x on schreiber.

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
DEFAULT_WORKLOADS = ("schreiber", "quinn", "highdim")


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

    @property
    def median_ms(self) -> float:
        return float(np.median(self.seconds)) * 1e3

    @property
    def min_ms(self) -> float:
        return float(np.min(self.seconds)) * 1e3


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
            with limit_blas(strategy.blas_threads()):
                strategy.prepare(X)
            configs.append(Config(name, count, strategy, init, strategy.has_fused_iteration))
    return configs, skipped


def _measure(configs: list[Config], exp_input: np.ndarray, rounds: int, warmup: int) -> list[float]:
    """Round-robin: one iteration of every configuration per round, then the exp floor."""
    from harness.model.threads import limit_blas
    from harness.sweep.em import em_iteration

    exp_output = np.empty_like(exp_input)
    exp_seconds = []
    for round_index in range(warmup + rounds):
        for config in configs:
            with limit_blas(config.strategy.blas_threads()):
                start = time.perf_counter()
                config.params, _ = em_iteration(config.strategy, config.params, fused=config.fused)
                elapsed = time.perf_counter() - start
            if round_index >= warmup:
                config.seconds.append(elapsed)
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
    configs, skipped = _prepare_configs([*args.strategies, REFERENCE], args.workers, X, init)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CollapsedComponentWarning)
            exp_seconds = _measure(configs, exp_input, args.rounds, args.warmup)
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
    }


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
    floor = result["exp_floor_ms"]
    print(
        f"  exp floor: np.exp over n*k = {result['n'] * result['k']:,} values takes "
        f"{floor:.1f} ms on one core ({floor / 2:.1f} ms spread over 2)"
    )
    for reason in result["skipped"]:
        print(f"  skipped {reason}")


def _evaluate(result: dict[str, object], workers: tuple[int, ...]) -> list[dict[str, object]]:
    """PASS/FAIL lines for one workload's targets."""
    name = result["workload"]
    configs: list[Config] = result["configs"]
    checks: list[dict[str, object]] = []
    reference = [c for c in configs if c.name == REFERENCE]
    target = TARGETS.get(name)
    if target is not None:
        compiled = [c for c in configs if c.name != REFERENCE and c.workers == target.workers]
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
            floor_share = result["exp_floor_ms"] / target.workers
            print(
                f"  fastest compiled at {target.workers} workers: {best.name} "
                f"{best.median_ms:.1f} ms = {ratio:.1f}x faster than scikit-learn "
                f"({sklearn_best.median_ms:,.0f} ms at {sklearn_best.workers} BLAS threads); "
                f"{best.median_ms / floor_share:.1f}x the exp floor of "
                f"{floor_share:.1f} ms on {target.workers} cores"
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
    for name in args.workloads:
        result = _bench_workload(name, args)
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
