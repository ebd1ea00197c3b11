"""Hygiene of the tidy table and the lists of what was not measured or stayed disturbed.

:func:`normalise_table` gives every later step the types it relies on (tables from older
sweeps lack columns; CSV booleans arrive as text); :func:`not_measured`,
:func:`group_not_measured` and :func:`disturbed_configurations` list the configurations
the report must account for without a timing verdict. No statistics, no drawing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.model.errors import DataFileError
from harness.report.text import fmt_n
from harness.sweep.results import COLUMNS, PHASES, config_id

#: Strategies that are sequential whatever their kind says.
SEQUENTIAL_STRATEGIES: frozenset[str] = frozenset({"cython"})
SEQUENTIAL_KINDS: frozenset[str] = frozenset({"serial"})

_CONFIG = ["workload", "n", "strategy", "workers"]
_BOOL_TRUE = {"true", "1", "yes", "t", "y"}


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
    return strategy in SEQUENTIAL_STRATEGIES or kind in SEQUENTIAL_KINDS


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
    # Tables from sweeps that did not watch for interference: every row undisturbed.
    table["disturbed"] = _as_bool(table["disturbed"]) if "disturbed" in table.columns else False
    table["disturbed_reason"] = (
        _text(table["disturbed_reason"]) if "disturbed_reason" in table.columns else ""
    )
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


def disturbed_configurations(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration the sweep left flagged ``disturbed``.

    Returns
    -------
    DataFrame
        Columns ``workload, n, strategy, workers, config_id, attempts, reason``
        (``attempts`` NaN when the table does not record it), sorted.
    """
    columns = ["workload", "n", "strategy", "workers", "config_id", "attempts", "reason"]
    bad = table[table["disturbed"].astype(bool)]
    if bad.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (workload, n, strategy, workers), group in bad.groupby(_CONFIG, sort=True):
        attempts = (
            pd.to_numeric(group["attempts"], errors="coerce").max()
            if "attempts" in group.columns
            else math.nan
        )
        reason = "; ".join(sorted(set(group["disturbed_reason"]) - {""})) or "no reason recorded"
        rows.append(
            (
                workload,
                int(n),
                strategy,
                int(workers),
                config_id(workload, n, strategy, workers),
                attempts,
                reason,
            )
        )
    return pd.DataFrame(rows, columns=columns)
