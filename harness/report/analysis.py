"""The numbers behind the charts and the report, derived from a run's tidy table.

Nothing here draws or writes files: :mod:`harness.report.charts` draws these frames and
:mod:`harness.report.markdown` writes them out, so tests can check every number directly.

Definitions (``T(s, p)`` is the median wall time of one EM iteration of strategy
``s`` with ``p`` workers, at one workload and ``n``):

* **point estimate and uncertainty**: the median of the repeated values of
  ``seconds`` per ``(workload, n, strategy, workers, phase)``, with the
  interquartile range (25th to 75th percentile, linear interpolation) as the band;
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
  :data:`MODEL_CORES`, which is a model, not a measurement.

"Sequential" strategies are those whose class says ``parallel = False`` (for a
strategy not registered here, those of a kind in :data:`SEQUENTIAL_KINDS`); they have
no scaling numbers.
The best-strategy map reads a worker count as a budget: every strategy competes with
its fastest time on at most that many workers.

It measures nothing, reads and writes no file: it turns a results table into
numbers and findings.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.model.errors import DataFileError
from harness.sweep.results import COLUMNS, PHASES

#: Worker counts the Amdahl model extrapolates to (the machine has fewer cores).
MODEL_CORES: tuple[int, ...] = (4, 8, 16, 64)
#: Kinds taken as sequential for a strategy the registry here does not know.
SEQUENTIAL_KINDS: frozenset[str] = frozenset({"serial"})
#: Reference strategies of the summary table (speedup over Python, NumPy, scikit-learn).
PYTHON_BASELINE = "python"
NUMPY_BASELINE = "einsum"
SKLEARN_BASELINE = "sklearn"
#: The headline phase: one full EM iteration.
HEADLINE_PHASE = "iteration"
#: A 2-worker speedup over itself below this counts as "does not scale".
NO_SCALING_BELOW = 1.1

_MEASUREMENT = ["workload", "n", "strategy", "workers", "phase"]
_CONFIG = ["workload", "n", "strategy", "workers"]
_BOOL_TRUE = {"true", "1", "yes", "t", "y"}


# --------------------------------------------------------------------------------------
# Table hygiene
# --------------------------------------------------------------------------------------


def _as_bool(series: pd.Series) -> pd.Series:
    """CSV booleans (True/False, "true", 1, NaN) as a plain bool column, NaN -> False."""
    if series.dtype == bool:
        return series
    return series.map(
        lambda value: str(value).strip().lower() in _BOOL_TRUE if not pd.isna(value) else False
    ).astype(bool)


def _text(series: pd.Series) -> pd.Series:
    """A text column with missing values as ``""``."""
    return series.astype(object).where(series.notna(), "").astype(str)


def is_sequential(strategy: str, kind: str) -> bool:
    """A strategy that uses one core whatever the worker count (see module docstring)."""
    parallel = _parallel_flags().get(strategy)
    return not parallel if parallel is not None else kind in SEQUENTIAL_KINDS


@functools.cache
def _parallel_flags() -> dict[str, bool]:
    """Each registered strategy's ``parallel`` class flag."""
    try:
        import strategies

        return {
            name: bool(info.cls.parallel)
            for name, info in strategies.registry().items()
            if info.cls is not None
        }
    except Exception:  # a broken registry must not stop a report
        return {}


def normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of the tidy table with the types the analysis relies on.

    Missing optional columns are added (NaN / empty), ``status`` defaults to ``ok``
    where ``seconds`` is finite, ``kind`` is taken from the registry where the table
    lacks it, and an ``ok`` row without a finite value becomes ``failed``.

    Raises
    ------
    DataFileError
        If a measurement column is missing or a column cannot be read as numbers.
    """
    missing = [column for column in COLUMNS[:9] if column not in table.columns]
    if missing:
        raise DataFileError(f"results table lacks the columns {missing}")
    table = table.copy()
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = np.nan
    try:
        for column in ("n", "workers", "d", "k"):
            table[column] = pd.to_numeric(table[column]).astype("Int64")
        table["seconds"] = pd.to_numeric(table["seconds"], errors="raise").astype(float)
        for column in (
            "bytes_to_workers",
            "bytes_from_workers",
            "peak_pss_bytes",
            "effective_workers",
            "final_loglik",
        ):
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    except (ValueError, TypeError) as exc:
        raise DataFileError(f"results table has a non-numeric value: {exc}") from exc
    if table[["n", "workers"]].isna().any().any():
        raise DataFileError("results table has rows without n or workers")
    if table[["workload", "strategy"]].isna().any().any():
        raise DataFileError("results table has rows without a workload or strategy name")
    for column in ("workload", "strategy", "phase", "error"):
        # Skipped configurations have no phase; pandas >= 3 keeps NaN through astype(str).
        table[column] = _text(table[column])
    finite = np.isfinite(table["seconds"])
    status = table["status"].where(table["status"].notna(), np.where(finite, "ok", "failed"))
    status = status.astype(str).str.strip().str.lower()
    bad_ok = (status == "ok") & ~finite
    status = status.where(~bad_ok, "failed")
    table.loc[bad_ok & (table["error"] == ""), "error"] = "no finite time recorded"
    table["status"] = status
    table["kind"] = _fill_kind(table)
    for column in ("oversubscribed", "used_fused"):
        table[column] = _as_bool(table[column])
    table["sequential"] = [
        is_sequential(s, k) for s, k in zip(table["strategy"], table["kind"], strict=True)
    ]
    return table


def _fill_kind(table: pd.DataFrame) -> pd.Series:
    kind = table["kind"].astype(object)
    if kind.notna().all():
        return kind.astype(str)
    try:  # the registry knows the kind of every registered name
        import strategies

        known = {name: info.kind for name, info in strategies.registry().items()}
    except Exception:  # a broken registry must not stop a report
        known = {}
    filled = [
        k if not pd.isna(k) else known.get(s, "unknown")
        for s, k in zip(table["strategy"], kind, strict=True)
    ]
    return pd.Series(filled, index=table.index, dtype=object).astype(str)


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------


def not_measured(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (and status, reason) that has no usable measurement.

    A configuration whose every phase failed or was skipped is listed once; a
    configuration where only some phases failed is listed with those phases.

    Returns
    -------
    DataFrame
        Columns ``workload, n, strategy, workers, status, phases, reason, by_design``,
        sorted. ``by_design`` marks a sequential strategy skipped at more than one
        worker: a decision of the sweep, not a problem.
    """
    bad = table[table["status"] != "ok"]
    columns = ["workload", "n", "strategy", "workers", "status", "phases", "reason", "by_design"]
    if bad.empty:
        return pd.DataFrame(columns=columns)
    reasons_1w = (
        bad[bad["workers"] == 1].groupby(["workload", "n", "strategy"])["error"].agg(set).to_dict()
    )
    rows = []
    for (workload, n, strategy, workers, status, reason), group in bad.groupby(
        [*_CONFIG, "status", "error"], sort=True
    ):
        phases = sorted(set(group["phase"]), key=lambda p: PHASES.index(p) if p in PHASES else 99)
        # Skipped at more workers for another reason than at 1 worker (e.g. not
        # "unavailable" at both): the sweep chose not to repeat a sequential strategy.
        by_design = (
            bool(group["sequential"].iloc[0])
            and workers > 1
            and status == "skipped"
            and reason not in reasons_1w.get((workload, n, strategy), set())
        )
        phase_text = ", ".join(p for p in phases if p) or "all"
        rows.append(
            (workload, int(n), strategy, int(workers), status, phase_text, reason, by_design)
        )
    return pd.DataFrame(rows, columns=columns)


def group_not_measured(missing: pd.DataFrame) -> pd.DataFrame:
    """:func:`not_measured` rows sharing a strategy, status and reason, merged.

    Returns
    -------
    DataFrame
        Columns ``status, strategy, workers`` (sorted, comma-separated), ``reason``,
        ``phases``, ``where`` (``"quinn n = 10,000, 130,000; highdim n = 5,000"``) and
        ``configurations`` (count); failures first.
    """
    columns = ["status", "strategy", "workers", "reason", "phases", "where", "configurations"]
    if missing.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    keys = ["status", "strategy", "reason", "phases"]
    for (status, strategy, reason, phases), group in missing.groupby(keys, sort=True):
        where = "; ".join(
            f"{workload} n = {', '.join(fmt_n(v) for v in sorted(set(part['n'])))}"
            for workload, part in group.groupby("workload", sort=True)
        )
        workers = ", ".join(str(p) for p in sorted(set(group["workers"])))
        rows.append(
            (status, strategy, workers, reason, phases, where, len(group.drop_duplicates(_CONFIG)))
        )
    grouped = pd.DataFrame(rows, columns=columns)
    order = {"failed": 0, "skipped": 1}
    return grouped.sort_values(
        ["status", "strategy", "reason"],
        key=lambda c: c.map(order).fillna(2) if c.name == "status" else c,
    ).reset_index(drop=True)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Median and IQR of ``seconds`` per (workload, n, strategy, workers, phase).

    Parameters
    ----------
    table : DataFrame
        A :func:`normalise_table` table.

    Returns
    -------
    DataFrame
        One row per measured (workload, n, strategy, workers, phase) with columns
        ``d, k, kind, sequential, median, q1, q3, iqr, values, oversubscribed,
        used_fused, effective_workers, bytes_to_workers, bytes_from_workers,
        peak_pss_bytes`` (the last three: median of the recorded values, NaN if none).
    """
    ok = table[table["status"] == "ok"]
    columns = [
        *_MEASUREMENT,
        "d",
        "k",
        "kind",
        "sequential",
        "median",
        "q1",
        "q3",
        "iqr",
        "values",
        "oversubscribed",
        "used_fused",
        "effective_workers",
        "bytes_to_workers",
        "bytes_from_workers",
        "peak_pss_bytes",
    ]
    if ok.empty:
        return pd.DataFrame(columns=columns)
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
    return summary[columns]


def _config_extras(summary: pd.DataFrame) -> pd.DataFrame:
    """Transfer and memory per configuration, whichever phase recorded them."""
    extras = summary.groupby(_CONFIG)[
        ["bytes_to_workers", "bytes_from_workers", "peak_pss_bytes"]
    ].max()
    return extras


def scaling(summary: pd.DataFrame) -> pd.DataFrame:
    """Iteration time, speedups, efficiency and Karp-Flatt fraction per configuration.

    Returns
    -------
    DataFrame
        One row per (workload, n, strategy, workers) with an iteration time, columns
        ``d, k, kind, sequential, seconds, q1, q3, values, oversubscribed, used_fused,
        speedup_self, best_1w_strategy, best_1w_seconds, speedup_best_1w, efficiency,
        karp_flatt, speedup_python, speedup_numpy, speedup_sklearn`` (NaN where the
        reference was not measured).
    """
    iteration = summary[summary["phase"] == HEADLINE_PHASE].copy()
    if iteration.empty:
        return pd.DataFrame(
            columns=[
                *_CONFIG,
                "d",
                "k",
                "kind",
                "sequential",
                "seconds",
                "q1",
                "q3",
                "values",
                "oversubscribed",
                "used_fused",
                "speedup_self",
                "best_1w_strategy",
                "best_1w_seconds",
                "speedup_best_1w",
                "efficiency",
                "karp_flatt",
                "speedup_python",
                "speedup_numpy",
                "speedup_sklearn",
            ]
        )
    iteration = iteration.rename(columns={"median": "seconds"}).drop(columns=["phase", "iqr"])
    one = iteration[iteration["workers"] == 1]
    own_1w = one.set_index(["workload", "n", "strategy"])["seconds"].rename("seconds_1w")
    iteration = iteration.join(own_1w, on=["workload", "n", "strategy"])
    iteration["speedup_self"] = iteration["seconds_1w"] / iteration["seconds"]

    best_rows = one.loc[one.groupby(["workload", "n"])["seconds"].idxmin()]
    best = best_rows.set_index(["workload", "n"])[["strategy", "seconds"]]
    best.columns = ["best_1w_strategy", "best_1w_seconds"]
    iteration = iteration.join(best, on=["workload", "n"])
    iteration["speedup_best_1w"] = iteration["best_1w_seconds"] / iteration["seconds"]

    p = iteration["workers"].astype(float)
    iteration["efficiency"] = iteration["speedup_self"] / p
    iteration["karp_flatt"] = karp_flatt(iteration["speedup_self"].to_numpy(), p.to_numpy())
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
    return iteration.drop(columns=["seconds_1w"]).reset_index(drop=True)


def karp_flatt(speedup: np.ndarray | float, workers: np.ndarray | float) -> np.ndarray:
    """Karp-Flatt experimentally determined serial fraction.

    Parameters
    ----------
    speedup : array_like of float
        ``T(1) / T(p)``.
    workers : array_like of float
        ``p``.

    Returns
    -------
    ndarray of float64
        ``(1/S - 1/p) / (1 - 1/p)``; NaN where ``p <= 1`` or ``S`` is not finite/positive.
    """
    speedup = np.asarray(speedup, dtype=float)
    workers = np.asarray(workers, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (1.0 / speedup - 1.0 / workers) / (1.0 - 1.0 / workers)
    valid = (workers > 1) & np.isfinite(speedup) & (speedup > 0)
    return np.where(valid, value, np.nan)


def amdahl_speedup(serial_fraction: float, workers: np.ndarray | float) -> np.ndarray:
    """Amdahl's law ``1 / (f + (1 - f) / p)``.

    Parameters
    ----------
    serial_fraction : float
        ``f`` in [0, 1].
    workers : array_like of float
        ``p``.

    Returns
    -------
    ndarray of float64
    """
    workers = np.asarray(workers, dtype=float)
    return 1.0 / (serial_fraction + (1.0 - serial_fraction) / workers)


def fit_amdahl(workers: Iterable[float], speedups: Iterable[float]) -> float:
    """Least-squares serial fraction of Amdahl's law (unclipped).

    Parameters
    ----------
    workers, speedups : iterable of float
        Measured ``p`` and ``S(p)``; points with ``p <= 1`` carry no information and
        are ignored, as are non-finite speedups.

    Returns
    -------
    float
        ``f`` minimising ``sum((1/S - 1/p - f (1 - 1/p))^2)``; NaN without a usable point.
    """
    p = np.asarray(list(workers), dtype=float)
    s = np.asarray(list(speedups), dtype=float)
    use = (p > 1) & np.isfinite(s) & (s > 0)
    if not use.any():
        return math.nan
    x = 1.0 - 1.0 / p[use]
    y = 1.0 / s[use] - 1.0 / p[use]
    return float(np.dot(x, y) / np.dot(x, x))


def amdahl(scaling_table: pd.DataFrame, cores: tuple[int, ...] = MODEL_CORES) -> pd.DataFrame:
    """Amdahl fit and extrapolation per (workload, n, parallel strategy).

    Returns
    -------
    DataFrame
        Columns ``workload, n, strategy, kind, fitted_workers`` (the worker counts
        used), ``serial_fraction_raw``, ``serial_fraction`` (clipped to [0, 1]),
        ``limit`` (``1/f``, inf for ``f = 0``) and ``model_<p>`` for each core count.
    """
    columns = [
        "workload",
        "n",
        "strategy",
        "kind",
        "fitted_workers",
        "serial_fraction_raw",
        "serial_fraction",
        "limit",
        *(f"model_{p}" for p in cores),
    ]
    parallel = scaling_table[
        ~scaling_table["sequential"].astype(bool)
        & (scaling_table["workers"] > 1)
        & ~scaling_table["oversubscribed"].astype(bool)
        & np.isfinite(scaling_table["speedup_self"].astype(float))
    ]
    rows = []
    for (workload, n, strategy), group in parallel.groupby(["workload", "n", "strategy"]):
        raw = fit_amdahl(group["workers"], group["speedup_self"])
        if not math.isfinite(raw):
            continue
        f = min(max(raw, 0.0), 1.0)
        model = amdahl_speedup(f, np.asarray(cores, dtype=float))
        rows.append(
            (
                workload,
                int(n),
                strategy,
                group["kind"].iloc[0],
                ",".join(str(int(p)) for p in sorted(group["workers"])),
                raw,
                f,
                math.inf if f == 0 else 1.0 / f,
                *model,
            )
        )
    return pd.DataFrame(rows, columns=columns)


def best_strategies(scaling_table: pd.DataFrame) -> pd.DataFrame:
    """The fastest strategy for each (workload, n) and budget of ``p`` workers, and its margin.

    ``p`` is a budget, as a user with ``p`` cores would read it: each strategy
    competes with its fastest measurement on at most ``p`` workers, so a strategy that
    gets slower with more workers (or a sequential one, measured at 1 worker only)
    still competes with its 1-worker time, and ``best_workers`` says which count won.

    Returns
    -------
    DataFrame
        Columns ``workload, n, workers, best, best_workers`` (the worker count the
        winner was measured with), ``best_seconds, best_q1, best_q3, runner_up,
        runner_up_seconds, margin`` (runner-up time over the winner's, NaN when
        there was only one candidate) and ``candidates``.
    """
    columns = [
        "workload",
        "n",
        "workers",
        "best",
        "best_workers",
        "best_seconds",
        "best_q1",
        "best_q3",
        "runner_up",
        "runner_up_seconds",
        "margin",
        "candidates",
    ]
    rows = []
    for (workload, n), group in scaling_table.groupby(["workload", "n"], sort=True):
        for p in sorted(group["workers"].unique()):
            within = group[group["workers"] <= p].sort_values(["seconds", "workers"])
            # each strategy once, at its fastest worker count within the budget
            candidates = within.drop_duplicates("strategy").sort_values(["seconds", "strategy"])
            winner = candidates.iloc[0]
            second = candidates.iloc[1] if len(candidates) > 1 else None
            rows.append(
                (
                    workload,
                    int(n),
                    int(p),
                    winner["strategy"],
                    int(winner["workers"]),
                    winner["seconds"],
                    winner["q1"],
                    winner["q3"],
                    None if second is None else second["strategy"],
                    math.nan if second is None else second["seconds"],
                    math.nan if second is None else second["seconds"] / winner["seconds"],
                    len(candidates),
                )
            )
    return pd.DataFrame(rows, columns=columns)


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
        Index ``(strategy, workers)``; columns ``kind`` and one per phase in
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
    kinds = rows.groupby(["strategy", "workers"])[["kind", "sequential"]].first()
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
    findings: list[str] = field(default_factory=list)


def analyse(table: pd.DataFrame, usable_cores: int | None = None) -> Analysis:
    """Derive every number of the report from a tidy results table.

    Parameters
    ----------
    table : DataFrame
        Columns :data:`~harness.sweep.results.COLUMNS` (at least the first nine).
    usable_cores : int, optional
        Cores of the machine that ran the sweep (``meta.json`` host).

    Returns
    -------
    Analysis
    """
    table = normalise_table(table)
    summary = summarise(table)
    scaling_table = scaling(summary)
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
        best=best_strategies(scaling_table),
        not_measured=not_measured(table),
        headline_n=_with_unscaled(headline_n(scaling_table), summary),
        workloads=workloads,
        usable_cores=usable_cores,
    )
    result.findings = findings(result)
    return result


# --------------------------------------------------------------------------------------
# Formatting shared by findings and the report
# --------------------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds with three significant figures (``"12.3 ms"``)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    ms = seconds * 1e3
    if ms >= 1000:
        return f"{ms:,.0f} ms"
    return f"{ms:.3g} ms"


def fmt_times(ratio: float) -> str:
    """A speedup or ratio, ``"1.67×"``; an em dash when unknown."""
    if ratio is None or not math.isfinite(ratio):
        return "—"
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    return f"{ratio:.2f}×"


def fmt_fraction(value: float) -> str:
    """A serial fraction with three decimals; an em dash when unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3f}"


def fmt_n(n: int) -> str:
    """``130,000``."""
    return f"{int(n):,}"


def fmt_bytes(value: float) -> str:
    """Bytes in binary units (``"1.5 MiB"``)."""
    if value is None or not math.isfinite(value):
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def round_significant(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant figures (``123456 -> 120000``)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def _code(name: str) -> str:
    return f"`{name}`"


def _workers(p: int) -> str:
    return f"{p} worker{'s' if p != 1 else ''}"


# --------------------------------------------------------------------------------------
# Findings: plain-language sentences computed from the data
# --------------------------------------------------------------------------------------


def findings(analysis: Analysis) -> list[str]:
    """Plain-language findings, each computed from the run's numbers.

    Returns
    -------
    list of str
        Markdown sentences; empty when nothing was measured.
    """
    out: list[str] = []
    if analysis.scaling.empty:
        if not analysis.summary.empty:
            out.append(
                "No full EM iteration was measured, so there are no speedups; the "
                "phases that were measured are tabulated per workload."
            )
        elif not analysis.not_measured.empty:
            out.append(
                "Nothing was measured: every configuration was skipped or failed "
                "(see *Not measured*)."
            )
        return out
    for workload in sorted(analysis.headline_n):
        out.extend(_winner_finding(analysis, workload))
        out.extend(_crossover_findings(analysis, workload))
        out.extend(_scaling_findings(analysis, workload))
        out.extend(_phase_findings(analysis, workload))
    out.extend(_oversubscription_findings(analysis))
    out.extend(_not_measured_findings(analysis))
    return out


def _fair_max_workers(scaling_rows: pd.DataFrame) -> int:
    """The largest worker count that did not oversubscribe (the largest at all if none)."""
    fair = scaling_rows[~scaling_rows["oversubscribed"].astype(bool)]
    return int((fair if not fair.empty else scaling_rows)["workers"].max())


def _headline_best(analysis: Analysis, workload: str) -> pd.Series | None:
    """The best-map row at the headline n and the largest non-oversubscribed workers."""
    n = analysis.headline_n[workload]
    best = analysis.best[(analysis.best["workload"] == workload) & (analysis.best["n"] == n)]
    if best.empty:
        return None
    scal = analysis.scaling
    p = _fair_max_workers(scal[(scal["workload"] == workload) & (scal["n"] == n)])
    at_p = best[best["workers"] == p]
    return (at_p if not at_p.empty else best).sort_values("workers").iloc[-1]


def _winner_finding(analysis: Analysis, workload: str) -> list[str]:
    n = analysis.headline_n[workload]
    row = _headline_best(analysis, workload)
    if row is None:
        return []
    scal = analysis.scaling
    win = scal[
        (scal["workload"] == workload)
        & (scal["n"] == n)
        & (scal["strategy"] == row["best"])
        & (scal["workers"] == row["best_workers"])
    ]
    win = win.iloc[0]
    dims = analysis.workloads.loc[workload]
    shape = f"n = {fmt_n(n)}" + (
        f", d = {int(dims['d'])}, k = {int(dims['k'])}" if pd.notna(dims["d"]) else ""
    )
    text = (
        f"**{workload}** ({shape}): with {_workers(int(row['workers']))} the fastest is "
        f"{_code(row['best'])}"
        + (
            f" ({_workers(int(row['best_workers']))})"
            if row["best_workers"] != row["workers"]
            else ""
        )
        + f" at {fmt_ms(row['best_seconds'])} per iteration"
    )
    if isinstance(row["runner_up"], str):
        text += f", {fmt_times(row['margin'])} ahead of {_code(row['runner_up'])}"
    versus = []
    if win["strategy"] != win["best_1w_strategy"] or win["workers"] != 1:
        versus.append(
            f"{fmt_times(win['speedup_best_1w'])} the fastest 1-worker strategy "
            f"({_code(win['best_1w_strategy'])}, {fmt_ms(win['best_1w_seconds'])})"
        )
    for column, baseline, label in (
        ("speedup_python", PYTHON_BASELINE, "sequential Python"),
        ("speedup_numpy", NUMPY_BASELINE, "NumPy einsum on 1 worker"),
        ("speedup_sklearn", SKLEARN_BASELINE, "scikit-learn"),
    ):
        if math.isfinite(win[column]) and win["strategy"] != baseline:
            versus.append(f"{fmt_times(win[column])} {label}")
    if versus:
        text += "; that is " + ", ".join(versus)
    return [text + "."]


def _fit_line(n: np.ndarray, seconds: np.ndarray) -> tuple[float, float] | None:
    """Fixed cost and cost per point of ``seconds = a + b n`` (relative least squares)."""
    if len(n) < 2 or len(set(n)) < 2 or not np.all(seconds > 0):
        return None
    slope, intercept = np.polyfit(n.astype(float), seconds, 1, w=1.0 / seconds)
    return float(intercept), float(slope)


def _crossover_findings(analysis: Analysis, workload: str) -> list[str]:
    scal = analysis.scaling[analysis.scaling["workload"] == workload]
    p_max = _fair_max_workers(scal)
    if p_max < 2:
        return []
    out = []
    parallel = scal[~scal["sequential"].astype(bool) & (scal["workers"] == p_max)]
    for strategy, group in parallel.groupby("strategy", sort=True):
        group = group.sort_values("n")
        ratio = group["speedup_best_1w"].to_numpy(dtype=float)
        ns = group["n"].to_numpy()
        known = np.isfinite(ratio) & (group["best_1w_strategy"] != strategy).to_numpy()
        if known.sum() < 1:
            continue
        ratio, ns, group = ratio[known], ns[known], group[known]
        wins = ratio >= 1.0
        who = f"{_code(strategy)} ({_workers(p_max)})"
        rivals = sorted(set(group["best_1w_strategy"]))
        rival = " / ".join(_code(r) for r in rivals)
        if wins.all():
            span = (
                f"from {fmt_times(ratio[0])} at n = {fmt_n(ns[0])} to "
                f"{fmt_times(ratio[-1])} at n = {fmt_n(ns[-1])}"
                if len(ns) > 1
                else f"{fmt_times(ratio[0])} at n = {fmt_n(ns[0])}"
            )
            out.append(
                f"**{workload}**: {who} beats the fastest 1-worker strategy ({rival}) at "
                f"every measured n ({span})."
            )
            continue
        if not wins.any():
            best_i = int(np.argmax(ratio))
            head = (
                f"**{workload}**: {who} never beats the fastest 1-worker strategy ({rival}) "
                f"at the measured n (at best {fmt_times(ratio[best_i])} its speed, at "
                f"n = {fmt_n(ns[best_i])})"
            )
        else:
            last_loss = int(np.nonzero(~wins)[0].max())
            if last_loss == len(wins) - 1:
                losing = ", ".join(fmt_n(v) for v in ns[~wins])
                head = (
                    f"**{workload}**: {who} beats the fastest 1-worker strategy ({rival}) "
                    f"only at some sizes and loses at n = {losing}"
                )
            else:
                threshold = ns[last_loss + 1]
                head = (
                    f"**{workload}**: {who} loses to the fastest 1-worker strategy ({rival}) "
                    f"below n = {fmt_n(threshold)} ({fmt_times(ratio[last_loss])} its "
                    f"speed at n = {fmt_n(ns[last_loss])}) and wins from there on "
                    f"({fmt_times(ratio[-1])} at n = {fmt_n(ns[-1])})"
                )
        losing_n = int(ns[~wins].max())
        out.append(head + _overhead_reason(analysis, workload, strategy, p_max, group, losing_n))
    return out


def _overhead_reason(
    analysis: Analysis,
    workload: str,
    strategy: str,
    workers: int,
    group: pd.DataFrame,
    losing_n: int,
) -> str:
    """Why a parallel strategy loses at ``losing_n``, from its own numbers.

    Candidate reasons, each stated only when the data support it: a cost per point
    that is not below the rival's even with ``workers`` workers; a fixed cost per
    iteration (the intercept of a straight-line fit of time against n) well above the
    rival's, with the n at which the lower cost per point repays it; the bytes moved
    to and from workers. A prepare step longer than one of the rival's iterations is
    added as a separate sentence (a one-off cost, not why an iteration is slower).

    Returns
    -------
    str
        ``", because ...."`` (or just ``"."``) plus the optional prepare sentence.
    """
    reasons = []
    scal = analysis.scaling
    rival = group.loc[group["n"] == losing_n, "best_1w_strategy"].iloc[0]
    rival_rows = scal[
        (scal["workload"] == workload) & (scal["strategy"] == rival) & (scal["workers"] == 1)
    ].sort_values("n")
    line = _fit_line(group["n"].to_numpy(), group["seconds"].to_numpy(dtype=float))
    rival_line = _fit_line(rival_rows["n"].to_numpy(), rival_rows["seconds"].to_numpy(float))
    if line is not None and rival_line is not None and line[1] >= rival_line[1]:
        reasons.append(
            f"even with {_workers(workers)} its cost per point "
            f"({line[1] * 1e9:.3g} ns) is not below {_code(rival)}'s "
            f"({rival_line[1] * 1e9:.3g} ns)"
        )
    rival_fixed = max(rival_line[0], 0.0) if rival_line is not None else 0.0
    own_time = group.loc[group["n"] == losing_n, "seconds"].iloc[0]
    # A fixed cost is a reason only where it is a visible part of the time that lost.
    if line is not None and line[0] > 1.5 * rival_fixed and line[0] - rival_fixed >= 0.1 * own_time:
        text = (
            f"each iteration carries a fixed cost of about {fmt_ms(line[0])} (intercept "
            "of a straight-line fit of its time against n"
        )
        if rival_line is not None:
            text += f"; {fmt_ms(rival_fixed)} for {_code(rival)}"
        text += ")"
        if rival_line is not None and line[1] < rival_line[1]:
            break_even = (line[0] - rival_fixed) / (rival_line[1] - line[1])
            text += (
                f" that its lower cost per point ({line[1] * 1e9:.3g} ns against "
                f"{rival_line[1] * 1e9:.3g} ns) repays only above n ≈ "
                f"{fmt_n(round_significant(break_even, 2))}"
            )
        reasons.append(text)
    summary = analysis.summary
    config = summary[
        (summary["workload"] == workload)
        & (summary["strategy"] == strategy)
        & (summary["workers"] == workers)
        & (summary["n"] == losing_n)
    ]
    moved = config[["bytes_to_workers", "bytes_from_workers"]].max()
    if moved.notna().any() and moved.fillna(0).sum() > 0:
        reasons.append(
            f"it moves {fmt_bytes(moved.fillna(0).sum())} to and from its workers "
            f"per iteration at n = {fmt_n(losing_n)}"
        )
    prepare = config.loc[config["phase"] == "prepare", "median"]
    rival_time = rival_rows.loc[rival_rows["n"] == losing_n, "seconds"]
    text = ""
    if reasons:
        if len(reasons) > 1:
            reasons[-1] = "and " + reasons[-1]
        text = ", because " + "; ".join(reasons)
    text += "."
    # A one-off cost is not why an iteration is slower, but it adds to the bill.
    if not prepare.empty and not rival_time.empty and prepare.iloc[0] > rival_time.iloc[0]:
        text += (
            f" On top of that, its prepare step (once per data set) costs "
            f"{fmt_ms(prepare.iloc[0])} at n = {fmt_n(losing_n)}, as much as "
            f"{prepare.iloc[0] / rival_time.iloc[0]:.3g} {_code(rival)} iterations."
        )
    return text


def _scaling_findings(analysis: Analysis, workload: str) -> list[str]:
    n = analysis.headline_n[workload]
    fits = analysis.amdahl[(analysis.amdahl["workload"] == workload) & (analysis.amdahl["n"] == n)]
    scal = analysis.scaling
    here = scal[
        (scal["workload"] == workload)
        & (scal["n"] == n)
        & ~scal["sequential"].astype(bool)
        & (scal["workers"] > 1)
        & ~scal["oversubscribed"].astype(bool)
    ]
    if here.empty or fits.empty:
        return []
    out = []
    p_top = int(here["workers"].max())
    top = here[here["workers"] == p_top].dropna(subset=["speedup_self"]).set_index("strategy")
    if top.empty:
        return []
    best_name = top["speedup_self"].idxmax()
    fit = fits.set_index("strategy")
    best = top.loc[best_name]
    # A model fitted to "no gain" only repeats "no gain": state it for a real speedup.
    if best["speedup_self"] >= NO_SCALING_BELOW and best_name in fit.index:
        f_raw = fit.loc[best_name, "serial_fraction_raw"]
        model = ", ".join(
            f"{fmt_times(fit.loc[best_name, f'model_{p}'])} on {p}" for p in MODEL_CORES
        )
        limit = fit.loc[best_name, "limit"]
        text = (
            f"**{workload}**: {_code(best_name)} scales best at n = {fmt_n(n)}: "
            f"{fmt_times(best['speedup_self'])} from 1 to {p_top} workers "
            f"(efficiency {best['efficiency']:.0%}, Karp-Flatt serial fraction "
            f"{fmt_fraction(best['karp_flatt'])}). "
        )
        if f_raw < 0:
            text += (
                "The speedup is superlinear (a negative serial fraction: cache effects or "
                "noise), so the Amdahl model is clipped to f = 0, ideal scaling, and its "
                f"{model} cores are only an upper bound"
            )
        else:
            text += (
                f"Amdahl's law with the fitted serial fraction "
                f"{fmt_fraction(fit.loc[best_name, 'serial_fraction'])} predicts {model} cores"
                + (f" and never more than {fmt_times(limit)}" if math.isfinite(limit) else "")
            )
        text += f" (a model: this machine has {analysis.usable_cores or p_top} cores)."
        out.append(text)
    speedups = top["speedup_self"].sort_values()
    slower, flat = (
        speedups[speedups < 1.0],
        speedups[(speedups >= 1.0) & (speedups < NO_SCALING_BELOW)],
    )

    def listing(values: pd.Series) -> str:
        return ", ".join(f"{_code(name)} ({fmt_times(value)})" for name, value in values.items())

    if not slower.empty:
        out.append(
            f"**{workload}**: at n = {fmt_n(n)}, {listing(slower)} "
            f"{'is' if len(slower) == 1 else 'are'} slower with {p_top} workers than with 1: "
            "coordinating the extra worker costs more than the share of work it takes over."
        )
    if not flat.empty:
        out.append(
            f"**{workload}**: at n = {fmt_n(n)}, {listing(flat)} "
            f"gain{'s' if len(flat) == 1 else ''} less than {NO_SCALING_BELOW:.1f}× from "
            f"{p_top} workers: the extra worker buys almost nothing there."
        )
    trend = (
        scal[
            (scal["workload"] == workload)
            & (scal["strategy"] == best_name)
            & (scal["workers"] == p_top)
        ]
        .dropna(subset=["karp_flatt"])
        .sort_values("n")
    )
    if len(trend) >= 2:
        first, last = trend.iloc[0], trend.iloc[-1]
        a, b = first["karp_flatt"], last["karp_flatt"]
        if a > 0 and b > 0 and max(a, b) / min(a, b) >= 2:
            direction = "falls" if b < a else "rises"
            why = (
                "the parallel overhead is roughly fixed while the work grows with n"
                if b < a
                else "a part of the work that does not split grows with n"
            )
            out.append(
                f"**{workload}**: {_code(best_name)}'s serial fraction {direction} from "
                f"{fmt_fraction(a)} at n = {fmt_n(first['n'])} to {fmt_fraction(b)} at "
                f"n = {fmt_n(last['n'])}: {why}."
            )
    return out


def _phase_findings(analysis: Analysis, workload: str) -> list[str]:
    n = analysis.headline_n[workload]
    phases = phase_breakdown(analysis.summary, workload, n)
    if phases.empty:
        return []
    out = []
    row = _headline_best(analysis, workload)
    if row is not None:
        key = (row["best"], int(row["best_workers"]))
        if key in phases.index:
            e, m = phases.loc[key, "e_step"], phases.loc[key, "m_step"]
            if math.isfinite(e) and math.isfinite(m) and e + m > 0:
                bigger, share = ("E-step", e / (e + m)) if e >= m else ("M-step", m / (e + m))
                out.append(
                    f"**{workload}**: in the fastest configuration ({_code(key[0])}, "
                    f"{_workers(key[1])}) the {bigger} takes {share:.0%} of the E+M "
                    f"time at n = {fmt_n(n)} ({fmt_ms(e)} E, {fmt_ms(m)} M)."
                )
    memory = phases["peak_pss_bytes"].dropna()
    if len(memory) >= 2 and memory.min() > 0 and memory.max() / memory.min() >= 1.5:
        high, low = memory.idxmax(), memory.idxmin()
        out.append(
            f"**{workload}**: peak memory (PSS, parent + workers) at n = {fmt_n(n)} ranges "
            f"from {fmt_bytes(memory[low])} ({_code(low[0])}, {_workers(low[1])}) to "
            f"{fmt_bytes(memory[high])} ({_code(high[0])}, {_workers(high[1])}), "
            f"{memory[high] / memory[low]:.2g}× as much."
        )
    return out


def _oversubscription_findings(analysis: Analysis) -> list[str]:
    over = analysis.scaling[analysis.scaling["oversubscribed"].astype(bool)]
    if over.empty:
        return []
    counts = sorted(over["workers"].unique())
    cores = f"the {analysis.usable_cores} usable cores" if analysis.usable_cores else "the cores"
    return [
        f"{len(over)} configuration(s) ran with more workers ({', '.join(map(str, counts))}) "
        f"than {cores}; they measure time slicing, not parallel hardware, and are left "
        "out of the Amdahl fit."
    ]


def _not_measured_findings(analysis: Analysis) -> list[str]:
    missing = analysis.not_measured
    if missing.empty:
        return []
    missing = missing[~missing["by_design"].astype(bool)]
    if missing.empty:
        return []
    counts = missing.drop_duplicates([*_CONFIG, "status"])["status"].value_counts()
    parts = ", ".join(f"{count} {status}" for status, count in counts.items())
    return [
        f"Not every configuration was measured ({parts}); the reasons are listed under "
        "*Not measured*."
    ]
