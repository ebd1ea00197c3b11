"""The numbers behind the charts and the report, derived from a run's tidy table.

Nothing here draws, writes files or words sentences: :mod:`harness.report.findings`
turns these frames into finding records, :mod:`harness.report.charts` draws them and
:mod:`harness.report.markdown` writes them out, so tests can check every number directly.

Definitions (``T(s, p)`` is the median wall time of one EM iteration of strategy
``s`` with ``p`` workers, at one workload and ``n``):

* **point estimate and uncertainty**: the median of the repeated values of
  ``seconds`` per ``(workload, n, strategy, workers, phase)``, with its
  :data:`~harness.report.uncertainty.CONFIDENCE` bootstrap interval
  (:mod:`harness.report.uncertainty`: processes are the unit of replication where the
  table records them). Every ratio below carries the interval of the ratio of the two
  medians, from the same bootstrap draws; the interquartile range is kept in the
  frames but no verdict uses it;
* **speedup over itself**: ``S(s, p) = T(s, 1) / T(s, p)``;
* **speedup over the fastest 1-worker strategy**: ``T(b, 1) / T(s, p)`` where ``b``
  is the strategy with the smallest ``T(., 1)`` at that workload and ``n``;
* **parallel efficiency**: ``E = S / p``;
* **Karp-Flatt serial fraction** (the experimentally determined serial fraction):
  ``e = (1/S - 1/p) / (1 - 1/p)`` for ``p > 1``. Constant ``e`` as ``p`` grows
  means Amdahl-style serial work; growing ``e`` means overhead that grows with ``p``;
  negative ``e`` means superlinear speedup (usually cache effects);
* **Amdahl fit**: ``S(p) = 1 / (f + (1 - f) / p)``. Rewritten as
  ``1/S - 1/p = f (1 - 1/p)`` it is linear in ``f``, so ``f`` is the least-squares
  slope through the origin over the measured ``p > 1`` (oversubscribed runs left
  out: they measure time slicing, not cores). With one measured ``p`` it equals the
  Karp-Flatt fraction. ``f`` is clipped to ``[0, 1]`` for the extrapolation to
  :data:`MODEL_CORES`, which is a model, not a measurement. The fit is repeated on
  every bootstrap draw of the speedups, so each extrapolated speedup carries the band
  propagated from the speedup's interval; a model value whose band is wider than the
  value itself says nothing and is marked not shown (``model_<p>_shown``). With two
  cores measured this usually keeps the nearest extrapolation and drops the far ones:
  two speedups at 2 cores that one interval cannot tell apart extrapolate to 64 cores
  values about a factor of two apart.

**Disturbed configurations** (the table's ``disturbed`` column, when the sweep
recorded one: still disturbed by other programs or unstable after the last attempt)
keep their medians in :func:`summarise` and the charts, flagged, but take part in no
comparison: :func:`scaling` marks every ratio that rests on one, and the
best-strategy map and the fastest 1-worker reference use undisturbed
configurations only.

"Sequential" strategies are those whose class says ``parallel = False`` (for a
strategy not registered here, those of a kind in :data:`SEQUENTIAL_KINDS`); they have
no scaling numbers.
The best-strategy map reads a worker count as a budget: every strategy competes with
its fastest time on at most that many workers; strategies whose ratio to the winner
has an interval reaching 1 are tied with it (``tied``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.report import uncertainty as unc
from harness.report.amdahl import MODEL_CORES, amdahl, amdahl_speedup, fit_amdahl, karp_flatt
from harness.report.draws import MEASUREMENT as _MEASUREMENT
from harness.report.draws import Draws, bootstrap
from harness.report.draws import draw_key as _key
from harness.report.tables import (
    SEQUENTIAL_KINDS,
    disturbed_configurations,
    group_not_measured,
    is_sequential,
    normalise_table,
    not_measured,
)
from harness.sweep.results import PHASES

# Re-exported: the report's callers and tests use the analysis module as the one entry.
__all__ = [
    "MODEL_CORES",
    "SEQUENTIAL_KINDS",
    "Analysis",
    "Draws",
    "amdahl",
    "amdahl_speedup",
    "analyse",
    "best_label",
    "best_strategies",
    "bootstrap",
    "disturbed_configurations",
    "fit_amdahl",
    "group_not_measured",
    "headline_n",
    "is_sequential",
    "karp_flatt",
    "normalise_table",
    "not_measured",
    "phase_breakdown",
    "scaling",
    "summarise",
]

#: Reference strategies of the summary table (speedup over Python, NumPy, scikit-learn).
PYTHON_BASELINE = "python"
NUMPY_BASELINE = "einsum"
SKLEARN_BASELINE = "sklearn"
#: The headline phase: one full EM iteration.
HEADLINE_PHASE = "iteration"
#: A 2-worker speedup over itself below this counts as "does not scale".
NO_SCALING_BELOW = 1.1

_CONFIG = ["workload", "n", "strategy", "workers"]


def summarise(table: pd.DataFrame, draws: Draws | None = None) -> pd.DataFrame:
    """Median, interval and IQR of ``seconds`` per (workload, n, strategy, workers, phase).

    Parameters
    ----------
    table : DataFrame
        A :func:`normalise_table` table.
    draws : Draws, optional
        :func:`bootstrap` of ``table`` (computed when not given).

    Returns
    -------
    DataFrame
        One row per measured (workload, n, strategy, workers, phase) with columns
        ``d, k, kind, sequential, median, ci_low, ci_high, single_process, q1, q3, iqr,
        values, oversubscribed, used_fused, inline, disturbed, disturbed_reason,
        effective_workers, bytes_to_workers, bytes_from_workers, peak_pss_bytes`` (the
        last three: median of the recorded values, NaN if none; ``inline``: the work ran
        in the calling thread, with no pool).
    """
    ok = table[table["status"] == "ok"]
    columns = [
        *_MEASUREMENT,
        "d",
        "k",
        "kind",
        "sequential",
        "median",
        "ci_low",
        "ci_high",
        "single_process",
        "q1",
        "q3",
        "iqr",
        "values",
        "oversubscribed",
        "used_fused",
        "inline",
        "disturbed",
        "disturbed_reason",
        "effective_workers",
        "bytes_to_workers",
        "bytes_from_workers",
        "peak_pss_bytes",
    ]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    draws = draws if draws is not None else bootstrap(table)
    grouped = ok.groupby(_MEASUREMENT, sort=True)
    quantiles = grouped["seconds"].quantile([0.25, 0.5, 0.75]).unstack()
    quantiles.columns = ["q1", "median", "q3"]
    summary = quantiles.join(
        grouped.agg(
            d=("d", "first"),
            k=("k", "first"),
            kind=("kind", "first"),
            sequential=("sequential", "first"),
            values=("seconds", "count"),
            oversubscribed=("oversubscribed", "any"),
            used_fused=("used_fused", "any"),
            inline=("inline", lambda flags: bool(flags.dropna().astype(bool).any())),
            disturbed=("disturbed", "any"),
            disturbed_reason=("disturbed_reason", lambda r: "; ".join(sorted(set(r) - {""}))),
            effective_workers=("effective_workers", "median"),
            bytes_to_workers=("bytes_to_workers", "median"),
            bytes_from_workers=("bytes_from_workers", "median"),
            peak_pss_bytes=("peak_pss_bytes", "median"),
        )
    )
    summary["iqr"] = summary["q3"] - summary["q1"]
    summary = summary.reset_index()
    summary["n"] = summary["n"].astype(int)
    summary["workers"] = summary["workers"].astype(int)
    keys = [_key(*row) for row in summary[_MEASUREMENT].itertuples(index=False)]
    bounds = [
        unc.interval(draws.medians[key], unc.allowance_factor(int(draws.single[key])))
        for key in keys
    ]
    summary["ci_low"] = [low for low, _ in bounds]
    summary["ci_high"] = [high for _, high in bounds]
    summary["single_process"] = [draws.single[key] for key in keys]
    return summary[columns]


def _config_extras(summary: pd.DataFrame) -> pd.DataFrame:
    """Transfer and memory per configuration, whichever phase recorded them."""
    extras = summary.groupby(_CONFIG)[
        ["bytes_to_workers", "bytes_from_workers", "peak_pss_bytes"]
    ].max()
    return extras


_SCALING_COLUMNS = [
    *_CONFIG,
    "d",
    "k",
    "kind",
    "sequential",
    "seconds",
    "ci_low",
    "ci_high",
    "q1",
    "q3",
    "values",
    "oversubscribed",
    "used_fused",
    "disturbed",
    "disturbed_reason",
    "rests_on_disturbed",
    "inline_1w",
    "speedup_self",
    "speedup_self_low",
    "speedup_self_high",
    "best_1w_strategy",
    "best_1w_seconds",
    "speedup_best_1w",
    "speedup_best_1w_low",
    "speedup_best_1w_high",
    "efficiency",
    "efficiency_low",
    "efficiency_high",
    "karp_flatt",
    "karp_flatt_low",
    "karp_flatt_high",
    "speedup_python",
    "speedup_numpy",
    "speedup_sklearn",
]


def scaling(summary: pd.DataFrame, draws: Draws | None = None) -> pd.DataFrame:
    """Iteration time, speedups, efficiency and Karp-Flatt fraction per configuration.

    Parameters
    ----------
    summary : DataFrame
        :func:`summarise`.
    draws : Draws, optional
        The bootstrap draws behind ``summary``; without them the ``*_low`` and
        ``*_high`` interval columns are NaN.

    Returns
    -------
    DataFrame
        One row per (workload, n, strategy, workers) with an iteration time, columns
        :data:`_SCALING_COLUMNS`: ``seconds`` with its interval ``ci_low, ci_high``;
        ``speedup_self``, ``speedup_best_1w``, ``efficiency`` and ``karp_flatt`` each
        with ``_low`` / ``_high`` interval columns (NaN where the reference was not
        measured); ``best_1w_strategy`` is the fastest *undisturbed* 1-worker strategy;
        ``rests_on_disturbed`` marks a row whose own configuration, own 1-worker
        configuration or 1-worker reference is disturbed; ``inline_1w`` marks a row
        whose own 1-worker run had no pool (its ``speedup_self`` compares a pool with
        no pool).
    """
    iteration = summary[summary["phase"] == HEADLINE_PHASE].copy()
    if iteration.empty:
        return pd.DataFrame(columns=_SCALING_COLUMNS)
    draws = draws or Draws()
    iteration = iteration.rename(columns={"median": "seconds"}).drop(columns=["phase", "iqr"])
    one = iteration[iteration["workers"] == 1]
    own_1w = one.set_index(["workload", "n", "strategy"])[["seconds", "disturbed", "inline"]]
    own_1w.columns = ["seconds_1w", "disturbed_1w", "inline_1w"]
    iteration = iteration.join(own_1w, on=["workload", "n", "strategy"])
    iteration["inline_1w"] = iteration["inline_1w"].astype("boolean").fillna(False).astype(bool)
    iteration["speedup_self"] = iteration["seconds_1w"] / iteration["seconds"]

    clean_one = one[~one["disturbed"].astype(bool)]
    best_rows = clean_one.loc[clean_one.groupby(["workload", "n"])["seconds"].idxmin()]
    best = best_rows.set_index(["workload", "n"])[["strategy", "seconds"]]
    best.columns = ["best_1w_strategy", "best_1w_seconds"]
    iteration = iteration.join(best, on=["workload", "n"])
    iteration["speedup_best_1w"] = iteration["best_1w_seconds"] / iteration["seconds"]
    iteration["rests_on_disturbed"] = iteration["disturbed"].astype(bool) | iteration[
        "disturbed_1w"
    ].fillna(False).astype(bool)

    def interval(reference: str) -> list[tuple[float, float]]:
        out = []
        for row in iteration.itertuples(index=False):
            name = getattr(row, reference) if reference != "own" else row.strategy
            if not isinstance(name, str):
                out.append((math.nan, math.nan))
                continue
            own = _key(row.workload, row.n, row.strategy, row.workers, HEADLINE_PHASE)
            ref = _key(row.workload, row.n, name, 1, HEADLINE_PHASE)
            out.append(draws.ratio(ref, own))
        return out

    for column, reference in (("speedup_self", "own"), ("speedup_best_1w", "best_1w_strategy")):
        bounds = interval(reference)
        iteration[f"{column}_low"] = [low for low, _ in bounds]
        iteration[f"{column}_high"] = [high for _, high in bounds]
        # a ratio with its own 1-worker time is exactly 1: no interval to speak of
        same = iteration["workers"] == 1
        if reference == "own":
            iteration.loc[same, [f"{column}_low", f"{column}_high"]] = 1.0
    p = iteration["workers"].astype(float)
    for suffix in ("", "_low", "_high"):
        iteration[f"efficiency{suffix}"] = iteration[f"speedup_self{suffix}"] / p
    # e falls as S rises: the interval's ends swap.
    for suffix, source in (("", ""), ("_low", "_high"), ("_high", "_low")):
        iteration[f"karp_flatt{suffix}"] = karp_flatt(
            iteration[f"speedup_self{source}"].to_numpy(dtype=float), p.to_numpy()
        )
    for label, name in (
        ("python", PYTHON_BASELINE),
        ("numpy", NUMPY_BASELINE),
        ("sklearn", SKLEARN_BASELINE),
    ):
        reference = one[one["strategy"] == name].set_index(["workload", "n"])["seconds"]
        iteration[f"speedup_{label}"] = (
            iteration.join(reference.rename("_ref"), on=["workload", "n"])["_ref"]
            / iteration["seconds"]
        )
    return iteration[_SCALING_COLUMNS].reset_index(drop=True)


def best_strategies(scaling_table: pd.DataFrame, draws: Draws | None = None) -> pd.DataFrame:
    """The fastest strategy for each (workload, n) and budget of ``p`` workers, its margin,
    and the strategies the noise does not separate from it.

    ``p`` is a budget, as a user with ``p`` cores would read it: each strategy
    competes with its fastest measurement on at most ``p`` workers, so a strategy that
    gets slower with more workers (or a sequential one, measured at 1 worker only)
    still competes with its 1-worker time, and ``best_workers`` says which count won.
    Disturbed configurations do not compete.

    Returns
    -------
    DataFrame
        Columns ``workload, n, workers, best, best_workers`` (the worker count the
        winner was measured with), ``best_seconds, best_ci_low, best_ci_high,
        runner_up, runner_up_workers, runner_up_seconds, margin`` (runner-up time over
        the winner's, NaN when there was only one candidate), ``margin_low,
        margin_high`` (its interval), ``tied`` (tuple of the strategies whose ratio to
        the winner has an interval reaching 1, fastest first; empty when the winner
        stands alone), ``candidates`` and ``configurations`` (the config ids of the
        winner and of every tied strategy, winner first).
    """
    from harness.sweep.results import config_id

    columns = [
        "workload",
        "n",
        "workers",
        "best",
        "best_workers",
        "best_seconds",
        "best_ci_low",
        "best_ci_high",
        "runner_up",
        "runner_up_workers",
        "runner_up_seconds",
        "margin",
        "margin_low",
        "margin_high",
        "tied",
        "candidates",
        "configurations",
    ]
    draws = draws or Draws()
    clean = scaling_table[~scaling_table["disturbed"].astype(bool)]
    rows = []
    for (workload, n), group in clean.groupby(["workload", "n"], sort=True):
        for p in sorted(group["workers"].unique()):
            within = group[group["workers"] <= p].sort_values(["seconds", "workers"])
            # each strategy once, at its fastest worker count within the budget
            candidates = within.drop_duplicates("strategy").sort_values(["seconds", "strategy"])
            winner = candidates.iloc[0]
            win_key = _key(workload, n, winner["strategy"], winner["workers"], HEADLINE_PHASE)
            tied, ids = [], [config_id(workload, n, winner["strategy"], winner["workers"])]
            bounds = []
            for _, other in candidates.iloc[1:].iterrows():
                key = _key(workload, n, other["strategy"], other["workers"], HEADLINE_PHASE)
                low, high = draws.ratio(key, win_key)
                bounds.append((low, high))
                if math.isfinite(low) and low <= 1.0:
                    tied.append(other["strategy"])
                    ids.append(config_id(workload, n, other["strategy"], other["workers"]))
            second = candidates.iloc[1] if len(candidates) > 1 else None
            rows.append(
                (
                    workload,
                    int(n),
                    int(p),
                    winner["strategy"],
                    int(winner["workers"]),
                    winner["seconds"],
                    winner["ci_low"],
                    winner["ci_high"],
                    None if second is None else second["strategy"],
                    None if second is None else int(second["workers"]),
                    math.nan if second is None else second["seconds"],
                    math.nan if second is None else second["seconds"] / winner["seconds"],
                    bounds[0][0] if bounds else math.nan,
                    bounds[0][1] if bounds else math.nan,
                    tuple(tied),
                    len(candidates),
                    tuple(ids),
                )
            )
    return pd.DataFrame(rows, columns=columns)


def best_label(row: pd.Series, limit: int = 2) -> str:
    """``"openmp"``, or ``"openmp ≈ cython"`` for a tie (at most ``limit`` names, then
    ``"+k"``)."""
    names = [row["best"], *row["tied"]]
    text = " ≈ ".join(names[:limit])
    if len(names) > limit:
        text += f" ≈ +{len(names) - limit}"
    return text


def headline_n(scaling_table: pd.DataFrame) -> dict[str, int]:
    """Per workload, the n the scaling charts and tables show.

    The largest n at which some parallel strategy was measured with 1 worker and with
    more (so a speedup exists); the largest measured n when there is none.
    """
    chosen: dict[str, int] = {}
    for workload, group in scaling_table.groupby("workload", sort=True):
        scalable = group[
            ~group["sequential"].astype(bool)
            & np.isfinite(group["speedup_self"].astype(float))
            & (group["workers"] > 1)
        ]
        pool = scalable if not scalable.empty else group
        chosen[workload] = int(pool["n"].max())
    return chosen


def phase_breakdown(summary: pd.DataFrame, workload: str, n: int) -> pd.DataFrame:
    """Phase medians and transfer/memory per (strategy, workers) at one workload and n.

    Returns
    -------
    DataFrame
        Index ``(strategy, workers)``; columns ``kind``, ``disturbed`` and one per phase in
        :data:`~harness.sweep.results.PHASES` (median seconds, NaN if not measured), plus
        ``bytes_to_workers, bytes_from_workers, peak_pss_bytes``. Sequential
        strategies first, then by kind and name.
    """
    rows = summary[(summary["workload"] == workload) & (summary["n"] == n)]
    if rows.empty:
        return pd.DataFrame(
            columns=["kind", *PHASES, "bytes_to_workers", "bytes_from_workers", "peak_pss_bytes"]
        )
    wide = rows.pivot_table(
        index=["strategy", "workers"], columns="phase", values="median", aggfunc="first"
    )
    for phase in PHASES:
        if phase not in wide.columns:
            wide[phase] = np.nan
    extras = _config_extras(rows).droplevel(["workload", "n"])
    kinds = rows.groupby(["strategy", "workers"]).agg(
        kind=("kind", "first"), sequential=("sequential", "first"), disturbed=("disturbed", "any")
    )
    table = kinds.join(wide[list(PHASES)]).join(extras)
    order = sorted(
        table.index,
        key=lambda key: (not table.loc[key, "sequential"], table.loc[key, "kind"], key[0], key[1]),
    )
    return table.loc[order].drop(columns=["sequential"])


def _with_unscaled(chosen: dict[str, int], summary: pd.DataFrame) -> dict[str, int]:
    """Add workloads measured in some phase but never for a full iteration (largest n)."""
    chosen = dict(chosen)
    for workload, group in summary.groupby("workload", sort=True):
        chosen.setdefault(workload, int(group["n"].max()))
    return dict(sorted(chosen.items()))


# --------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------


@dataclass
class Analysis:
    """Every derived frame of one run (see the module docstring for definitions).

    Attributes
    ----------
    table : DataFrame
        The normalised tidy table.
    summary : DataFrame
        :func:`summarise`.
    scaling : DataFrame
        :func:`scaling`.
    amdahl : DataFrame
        :func:`amdahl`.
    best : DataFrame
        :func:`best_strategies`.
    not_measured : DataFrame
        :func:`not_measured`.
    headline_n : dict of str to int
        :func:`headline_n`.
    workloads : DataFrame
        Index workload; columns ``d, k, n_values`` (sorted list of measured n).
    usable_cores : int or None
        From the run's metadata, for labelling oversubscription.
    draws : Draws
        :func:`bootstrap`, behind every interval.
    disturbed : DataFrame
        :func:`disturbed_configurations`.
    findings : list of Finding
        :func:`harness.report.findings.findings`.
    floors : dict
        The run's measured iteration floors (``meta.json`` ``floors``, by
        :func:`harness.sweep.floors.floor_key`); empty for runs that did not measure them.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    scaling: pd.DataFrame
    amdahl: pd.DataFrame
    best: pd.DataFrame
    not_measured: pd.DataFrame
    headline_n: dict[str, int]
    workloads: pd.DataFrame
    usable_cores: int | None = None
    draws: Draws = field(default_factory=Draws)
    disturbed: pd.DataFrame = field(default_factory=pd.DataFrame)
    findings: list = field(default_factory=list)
    floors: dict = field(default_factory=dict)


def analyse(
    table: pd.DataFrame, usable_cores: int | None = None, floors: dict | None = None
) -> Analysis:
    """Derive every number of the report from a tidy results table.

    Parameters
    ----------
    table : DataFrame
        Columns :data:`~harness.sweep.results.COLUMNS` (at least the first nine).
    usable_cores : int, optional
        Cores of the machine that ran the sweep (``meta.json`` host).
    floors : dict, optional
        ``meta.json`` ``floors``.

    Returns
    -------
    Analysis
    """
    from harness.report.findings import findings

    table = normalise_table(table)
    draws = bootstrap(table)
    summary = summarise(table, draws)
    scaling_table = scaling(summary, draws)
    if usable_cores is None and table["usable_cores"].notna().any():
        usable_cores = int(pd.to_numeric(table["usable_cores"], errors="coerce").max())
    known = table.dropna(subset=["d", "k"]).groupby("workload")[["d", "k"]].first()
    n_values = table.groupby("workload")["n"].apply(lambda s: sorted({int(v) for v in s}))
    workloads = pd.DataFrame({"n_values": n_values}).join(known)
    result = Analysis(
        table=table,
        summary=summary,
        scaling=scaling_table,
        amdahl=amdahl(scaling_table),
        best=best_strategies(scaling_table, draws),
        not_measured=not_measured(table),
        headline_n=_with_unscaled(headline_n(scaling_table), summary),
        workloads=workloads,
        usable_cores=usable_cores,
        draws=draws,
        disturbed=disturbed_configurations(table),
        floors=dict(floors or {}),
    )
    result.findings = findings(result)
    return result
