"""bench-compiled's printed tables: times per configuration, floors, peer ratios.

Turns one workload's measured configurations (:class:`harness.bench.compiled.Config`)
into the lines the command prints. May not measure anything, judge a target or import a
strategy; the targets are :mod:`harness.bench.compiled_targets`.
"""

from __future__ import annotations

from harness.bench.compiled_targets import REFERENCE


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def print_table(
    result: dict[str, object], workers: tuple[int, ...], peer_pairs: list[tuple[str, str]]
) -> None:
    """The workload's table, fixed costs, kernel-only times, agreement, ratios, floors."""
    configs: list = result["configs"]
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
    _print_peer_ratios(configs, workers, peer_pairs)
    _print_floor(result)
    for reason in result["skipped"]:
        print(f"  skipped {reason}")


def _by(configs: list, name: str) -> dict[int, object]:
    return {c.workers: c for c in configs if c.name == name}


def _print_peer_ratios(
    configs: list, workers: tuple[int, ...], pairs: list[tuple[str, str]]
) -> None:
    for library, strategy in pairs:
        ours, theirs = _by(configs, strategy), _by(configs, library)
        cells = [
            f"w{count} {theirs[count].median_ms / ours[count].median_ms:.2f}x"
            for count in workers
            if count in ours and count in theirs
        ]
        if cells:
            print(
                f"  {library} / {strategy} (time ratio, > 1: {strategy} faster): {', '.join(cells)}"
            )


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
    configs: list = result["configs"]
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


def print_fastest(result: dict[str, object], workers: int) -> None:
    """The fastest compiled strategy at ``workers`` against scikit-learn and the floor."""
    configs: list = result["configs"]
    compiled = [
        c for c in configs if c.name != REFERENCE and c.library is None and c.workers == workers
    ]
    reference = [c for c in configs if c.name == REFERENCE]
    if not compiled or not reference:
        return
    best = min(compiled, key=lambda c: c.median_ms)
    sklearn_best = min(reference, key=lambda c: c.median_ms)
    ratio = sklearn_best.median_ms / best.median_ms
    floor, _ = floor_ms(result, workers)
    print(
        f"  fastest compiled at {workers} workers: {best.name} "
        f"{best.median_ms:.1f} ms = {ratio:.1f}x faster than scikit-learn "
        f"({sklearn_best.median_ms:,.0f} ms at {sklearn_best.workers} BLAS threads); "
        f"{100 * floor / best.median_ms:.0f}% of the floor ({floor:.1f} ms on "
        f"{workers} cores)"
    )
