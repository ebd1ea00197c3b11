"""bench-compiled's targets: read from ``results/targets.toml``, judged on one workload.

The thresholds are data, section ``[bench-compiled]`` of ``results/targets.toml``, read
by :func:`harness.bench.targets.load_targets` as bench-processes' are. The command's
figures depend on a workload, a strategy and a worker count, so a metric names them
after a figure, separated by colons (``*`` as the workload: on every workload)::

    fastest_compiled_ms:<workload>:w<N>   median ms of the fastest compiled strategy at N
    sklearn_ratio:<workload>:w<N>         scikit-learn's best time / that strategy's time
    scaling:<workload>:<strategy>         the strategy's 1-worker / 2-worker time
    peer_ratio:<workload>:<other>/<strategy>:w<N>   the other's time / the strategy's at N
                                                    (a library, or another strategy timed)

A new target is a new line of that file. "Faster than scikit-learn" compares with
scikit-learn's faster worker count (its best time), the stricter comparison.

May read the targets file and the measured configurations it is handed; never
measures, prints tables or imports a strategy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.bench.targets import Target, load_targets

SECTION = "bench-compiled"
#: The strategy scikit-learn's E-step + M-step is registered as.
REFERENCE = "sklearn"

_NAME = r"[a-z0-9][a-z0-9_-]*"
_WORKLOAD = rf"(?P<workload>{_NAME}|\*)"
_WORKERS = r"w(?P<workers>[1-9][0-9]*)"
#: The metric grammar: figure -> (pattern, how it is shown in an error message).
_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    figure: (re.compile(pattern), shown)
    for figure, pattern, shown in (
        (
            "fastest_compiled_ms",
            rf"fastest_compiled_ms:{_WORKLOAD}:{_WORKERS}",
            "fastest_compiled_ms:<workload>:w<N>",
        ),
        (
            "sklearn_ratio",
            rf"sklearn_ratio:{_WORKLOAD}:{_WORKERS}",
            "sklearn_ratio:<workload>:w<N>",
        ),
        (
            "scaling",
            rf"scaling:{_WORKLOAD}:(?P<strategy>{_NAME})",
            "scaling:<workload>:<strategy>",
        ),
        (
            "peer_ratio",
            rf"peer_ratio:{_WORKLOAD}:(?P<library>{_NAME})/(?P<strategy>{_NAME}):{_WORKERS}",
            "peer_ratio:<workload>:<library>/<strategy>:w<N>",
        ),
    )
}


class MetricGrammar:
    """The metrics bench-compiled computes, as a collection :func:`load_targets` checks.

    ``in`` matches a metric against the grammar; iterating gives the forms, which is
    what an error message lists as valid.
    """

    def __contains__(self, metric: object) -> bool:
        return isinstance(metric, str) and parse(metric) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(shown for _, shown in _PATTERNS.values())

    def __len__(self) -> int:
        return len(_PATTERNS)


@dataclass(frozen=True)
class Metric:
    """A parsed metric: the figure and what it is of (unused parts are empty or 0)."""

    figure: str
    workload: str
    strategy: str = ""
    library: str = ""
    workers: int = 0

    def applies_to(self, workload: str) -> bool:
        return self.workload in ("*", workload)


def parse(metric: str) -> Metric | None:
    """The metric's parts, or None when it is not of the grammar."""
    for figure, (pattern, _) in _PATTERNS.items():
        match = pattern.fullmatch(metric)
        if match:
            parts = match.groupdict()
            return Metric(
                figure,
                parts["workload"],
                parts.get("strategy") or "",
                parts.get("library") or "",
                int(parts.get("workers") or 0),
            )
    return None


def load(path: str | Path | None = None) -> list[tuple[Target, Metric]]:
    """The ``[bench-compiled]`` targets with their parsed metrics (a bad file fails here)."""
    return [
        (target, parse(target.metric))  # type: ignore[misc]
        for target in load_targets(SECTION, path, MetricGrammar())
    ]


def _median_ms(configs: list, name: str, workers: int) -> float | None:
    found = [c for c in configs if c.name == name and c.workers == workers]
    return found[0].median_ms if found else None


def _fastest_compiled(configs: list, workers: int) -> object | None:
    compiled = [
        c for c in configs if c.name != REFERENCE and c.library is None and c.workers == workers
    ]
    return min(compiled, key=lambda c: c.median_ms) if compiled else None


def _sklearn_best(configs: list) -> object | None:
    reference = [c for c in configs if c.name == REFERENCE]
    return min(reference, key=lambda c: c.median_ms) if reference else None


def _check(target: Target, text: str, figure: float | None, detail: str, why: str) -> dict:
    """One line of the targets block: SKIP (with ``why``) when the figure was not measured."""
    if figure is None:
        return {"target": text, "name": target.name, "status": "SKIP", "detail": why}
    status = "PASS" if target.passes(figure) else "FAIL"
    return {"target": text, "name": target.name, "status": status, "detail": detail}


def evaluate(
    workload: str, configs: list, targets: list[tuple[Target, Metric]]
) -> list[dict[str, object]]:
    """PASS/FAIL/SKIP lines for the targets that apply to ``workload``."""
    checks = []
    claim = "{c} {t:g}"
    for target, metric in targets:
        if not metric.applies_to(workload):
            continue
        c, t = target.comparison, target.threshold
        if metric.figure in ("fastest_compiled_ms", "sklearn_ratio"):
            best, sklearn = _fastest_compiled(configs, metric.workers), _sklearn_best(configs)
            measured = best is not None and sklearn is not None
            why = "not measured"
            if metric.figure == "fastest_compiled_ms":
                text = f"{workload}: fastest compiled at {metric.workers} workers {c} {t:g} ms"
                figure = best.median_ms if measured else None
                detail = f"{best.name} {best.median_ms:.1f} ms" if measured else ""
            else:
                text = f"{workload}: {claim.format(c=c, t=t)}x faster than scikit-learn"
                figure = sklearn.median_ms / best.median_ms if measured else None
                detail = f"{figure:.1f}x ({best.name} vs sklearn)" if measured else ""
        elif metric.figure == "scaling":
            one = _median_ms(configs, metric.strategy, 1)
            two = _median_ms(configs, metric.strategy, 2)
            text = f"{workload}: {metric.strategy} 1 -> 2 workers {claim.format(c=c, t=t)}x"
            figure = one / two if one is not None and two is not None else None
            detail, why = (f"{figure:.2f}x" if figure is not None else ""), "needs --workers 1,2"
        else:  # peer_ratio
            ours = _median_ms(configs, metric.strategy, metric.workers)
            theirs = _median_ms(configs, metric.library, metric.workers)
            text = (
                f"{workload}: {metric.library} / {metric.strategy} {claim.format(c=c, t=t)} "
                f"at {metric.workers} workers"
            )
            figure = theirs / ours if ours is not None and theirs is not None else None
            detail = (
                f"{figure:.2f}x ({metric.library} {theirs:.1f} ms, {metric.strategy} {ours:.1f} ms)"
                if figure is not None
                else ""
            )
            why = (
                f"not measured: {metric.library} and {metric.strategy} must both be timed "
                "(--strategies, --peers; onedal needs pip install -e .[peers])"
            )
        checks.append(_check(target, text, figure, detail, why))
    return checks


def speed_workers(workload: str, targets: list[tuple[Target, Metric]]) -> list[int]:
    """Worker counts at which ``workload`` has a fastest-compiled or scikit-learn target."""
    return sorted(
        {
            metric.workers
            for _, metric in targets
            if metric.applies_to(workload)
            and metric.figure in ("fastest_compiled_ms", "sklearn_ratio")
        }
    )


def peer_pairs(targets: list[tuple[Target, Metric]]) -> list[tuple[str, str]]:
    """The (other, strategy) pairs the ratio targets compare, in file order."""
    return list(
        dict.fromkeys(
            (metric.library, metric.strategy)
            for _, metric in targets
            if metric.figure == "peer_ratio"
        )
    )
