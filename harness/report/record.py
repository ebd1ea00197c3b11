"""The finding record and the helpers every family of findings shares.

A :class:`Finding` is one verdict of a run as data; :mod:`harness.report.findings`
assembles them (see there for the rules they follow). No I/O.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from harness.report.analysis import HEADLINE_PHASE, Analysis

#: File written next to ``report.md``.
FINDINGS_FILE = "findings.json"
#: Kinds a finding can have.
KINDS = (
    "fastest",
    "tie",
    "crossover",
    "beats_best_1w",
    "loses_to_best_1w",
    "mixed_versus_best_1w",
    "slower_with_more_workers",
    "no_gain",
    "scaling",
    "serial_fraction_trend",
    "phase",
    "memory",
    "oversubscribed",
    "disturbed",
    "not_measured",
    "note",
)


@dataclass
class Finding:
    """One verdict of a run.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    text : str
        The sentence (Markdown).
    workload : str or None
    n : int or None
    workers : int or None
    strategies : list of str
        For ``fastest`` the winner first; for ``tie`` every tied strategy.
    ratio, ci_low, ci_high : float or None
        The ratio of medians the finding rests on and its interval, where one applies.
    configurations : list of str
        The config ids (:func:`harness.sweep.results.config_id`) it rests on.
    not_judged : list of str
        Config ids that the verdict's comparison would have included but that stayed
        disturbed: a ``fastest`` or ``tie`` holds among the others only.
    """

    kind: str
    text: str
    workload: str | None = None
    n: int | None = None
    workers: int | None = None
    strategies: list[str] = field(default_factory=list)
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    configurations: list[str] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready: non-finite numbers become ``None``."""
        data = asdict(self)
        for name in ("ratio", "ci_low", "ci_high"):
            value = data[name]
            data[name] = float(value) if value is not None and math.isfinite(value) else None
        for name in ("n", "workers"):
            data[name] = int(data[name]) if data[name] is not None else None
        return data


def iteration_key(workload: str, n: int, strategy: str, workers: int) -> tuple:
    return (str(workload), int(n), str(strategy), int(workers), HEADLINE_PHASE)


def ratio_of(
    analysis: Analysis, numerator: tuple, denominator: tuple
) -> tuple[float, float, float]:
    """Ratio of the two medians and its interval (``NaN`` where unknown)."""
    point = analysis.draws.point
    if numerator not in point or denominator not in point:
        return math.nan, math.nan, math.nan
    value = point[numerator] / point[denominator]
    low, high = analysis.draws.ratio(numerator, denominator)
    return float(value), low, high


def fair_max_workers(scaling_rows: pd.DataFrame) -> int:
    """The largest worker count that did not oversubscribe (the largest at all if none)."""
    fair = scaling_rows[~scaling_rows["oversubscribed"].astype(bool)]
    return int((fair if not fair.empty else scaling_rows)["workers"].max())


def headline_best(analysis: Analysis, workload: str) -> pd.Series | None:
    """The best-map row at the headline n and the largest non-oversubscribed workers."""
    n = analysis.headline_n[workload]
    best = analysis.best[(analysis.best["workload"] == workload) & (analysis.best["n"] == n)]
    if best.empty:
        return None
    scal = analysis.scaling
    p = fair_max_workers(scal[(scal["workload"] == workload) & (scal["n"] == n)])
    at_p = best[best["workers"] == p]
    return (at_p if not at_p.empty else best).sort_values("workers").iloc[-1]


def clean_rows(scaling_rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ratios rest on no disturbed configuration."""
    return scaling_rows[~scaling_rows["rests_on_disturbed"].astype(bool)]
