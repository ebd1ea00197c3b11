"""Loading two result folders for a comparison, and whether they may be compared.

Pyperf's rule: incompatible runs are refused, not mixed. A different results schema,
different data (``d``/``k`` of a workload, the data seed) or, unless asked for, a
different host is refused with :class:`IncompatibleRunsError`; different software and
timing protocols are warnings. Used by :mod:`harness.gate.compare` and
:mod:`harness.gate.pick`; reads folders, never writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from harness.model.errors import DataFileError, HarnessError
from harness.sweep.results import (
    HOST_COLUMNS,
    SOFTWARE_COLUMNS,
    load_meta,
    load_table,
    why_not_measured,
)

#: What identifies one compared sample of timings.
KEY_COLUMNS = ("workload", "n", "strategy", "workers", "phase")
# Metadata columns: HOST_COLUMNS must match unless ``--allow-different-hosts``;
# differences in SOFTWARE_COLUMNS are reported but allowed.
#: Protocol fields (``meta.json`` ``sweep.protocol``) that change the data: refused.
PROTOCOL_DATA = ("seed",)
#: Protocol fields that may differ freely: more values only sharpen the comparison.
PROTOCOL_FREE = ("values",)


class IncompatibleRunsError(HarnessError, ValueError):
    """Two result folders that cannot be compared (different data, host or schema)."""


def load_run(run_dir: str | Path, label: str) -> tuple[dict, pd.DataFrame]:
    """Meta and table of one run, with seconds numeric and the key columns typed."""
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise DataFileError(f"{label} is not a folder: {run_dir} (give a results folder)")
    if not path.is_dir():
        raise DataFileError(f"{label} folder does not exist: {run_dir}")
    meta = load_meta(path)
    table = load_table(path)
    if table.empty:
        raise DataFileError(f"{label} table is empty: {path}")
    table = table.copy()
    table["seconds"] = pd.to_numeric(table["seconds"], errors="coerce")
    for column in ("n", "d", "k", "workers"):
        numbers = pd.to_numeric(table[column], errors="coerce")
        if numbers.isna().any():
            raise DataFileError(f"{label} table {path} has non-numeric values in {column!r}")
        table[column] = numbers.astype("int64")
    for column in ("workload", "strategy", "phase"):
        table[column] = table[column].astype(str)
    if "status" not in table.columns:  # older tables: every row is a measurement
        table["status"] = "ok"
    table["status"] = table["status"].fillna("ok").astype(str)
    ok = table["status"] == "ok"
    bad = ok & ~(np.isfinite(table["seconds"]) & (table["seconds"] > 0))
    if bad.any():
        first = table.loc[bad].iloc[0]
        raise DataFileError(
            f"{label} table {path} has {int(bad.sum())} 'ok' row(s) without a positive "
            f"number of seconds (first: {first['strategy']} {first['workload']} "
            f"n={first['n']} phase {first['phase']}: {first['seconds']!r})"
        )
    return meta, table


def distinct(table: pd.DataFrame, column: str) -> str:
    """The value of a per-run metadata column, or all of them joined when it varies."""
    if column not in table.columns:
        return ""
    values = sorted({str(v) for v in table[column].dropna().unique()})
    return " / ".join(values)


def check_compatible(
    base_run: tuple[str, dict, pd.DataFrame],
    new_run: tuple[str, dict, pd.DataFrame],
    allow_different_hosts: bool,
) -> list[str]:
    """Refuse incompatible runs; return the warnings for allowed differences.

    Each run is ``(label, meta, table)``; the labels name the runs in the messages.
    """
    (b_label, base_meta, base), (n_label, new_meta, new) = base_run, new_run
    problems: list[str] = []
    warnings: list[str] = []
    base_schema, new_schema = base_meta.get("schema_version"), new_meta.get("schema_version")
    if base_schema != new_schema:
        problems.append(f"schema_version: {b_label} {base_schema!r}, {n_label} {new_schema!r}")
    base_protocol, new_protocol = _protocol(base_meta), _protocol(new_meta)
    for key in sorted(set(base_protocol) | set(new_protocol)):
        b, n = base_protocol.get(key), new_protocol.get(key)
        if b == n or key in PROTOCOL_FREE:
            continue
        if key in PROTOCOL_DATA:
            problems.append(f"sweep {key}: {b_label} {b!r}, {n_label} {n!r} (different data)")
        else:
            warnings.append(f"timing protocol {key} differs: {b_label} {b!r}, {n_label} {n!r}")

    shapes_base = base.groupby(["workload", "n"], as_index=False)[["d", "k"]].first()
    shapes_new = new.groupby(["workload", "n"], as_index=False)[["d", "k"]].first()
    both = shapes_base.merge(shapes_new, on=["workload", "n"], suffixes=("_base", "_new"))
    for _, row in both.iterrows():
        workload, n = row["workload"], row["n"]
        if (row["d_base"], row["k_base"]) != (row["d_new"], row["k_new"]):
            problems.append(
                f"{workload} n={n}: {b_label} has d={row['d_base']} k={row['k_base']}, "
                f"{n_label} has d={row['d_new']} k={row['k_new']} (different data)"
            )

    host_diffs = []
    for column in HOST_COLUMNS:
        b, n = distinct(base, column), distinct(new, column)
        if b != n:
            host_diffs.append(f"{column}: {b_label} {b!r}, {n_label} {n!r}")
    if host_diffs and not allow_different_hosts:
        problems.append(
            "different machines (" + "; ".join(host_diffs) + "); timings from "
            "two machines measure the machines, not the code. Sweep both on "
            "one machine, or pass --allow-different-hosts to compare anyway"
        )
    elif host_diffs:
        warnings.append(
            "DIFFERENT MACHINES, ratios mix hardware and code: " + "; ".join(host_diffs)
        )

    if problems:
        raise IncompatibleRunsError("cannot compare these runs: " + " | ".join(problems))

    for column in SOFTWARE_COLUMNS:
        b, n = distinct(base, column), distinct(new, column)
        if b != n:
            warnings.append(f"{column} differs: {b_label} {b!r}, {n_label} {n!r}")
    return warnings


def _protocol(meta: dict) -> dict:
    """The timing protocol the runner stored in ``meta.json`` (``sweep.protocol``)."""
    sweep = meta.get("sweep")
    protocol = sweep.get("protocol") if isinstance(sweep, dict) else None
    return protocol if isinstance(protocol, dict) else {}


def why_absent(table: pd.DataFrame, key: tuple) -> str:
    """Why one side has no values for a key: skipped/failed with the reason, or absent."""
    workload, n, strategy, workers, phase = key
    rows = table[
        (table["workload"] == workload)
        & (table["n"] == n)
        & (table["strategy"] == strategy)
        & (table["workers"] == workers)
    ]
    return why_not_measured(rows, phase)


def compatibility_problem(base_dir: str | Path, new_dir: str | Path) -> str:
    """Why two run folders cannot be compared (``""`` when they can), without raising."""
    try:
        base = ("BASE", *load_run(base_dir, "BASE"))
        new = ("NEW", *load_run(new_dir, "NEW"))
        check_compatible(base, new, allow_different_hosts=False)
    except HarnessError as exc:
        return str(exc)
    return ""


def common_keys(
    base_dir: str | Path, new_dir: str | Path, phases: Iterable[str] = ("iteration",)
) -> set[tuple]:
    """The configurations and phases measured (``ok``) in both run folders."""

    def keys(run_dir: str | Path) -> set[tuple]:
        _, table = load_run(run_dir, "run")
        ok = table[(table["status"] == "ok") & table["phase"].isin(list(phases))]
        return set(ok[list(KEY_COLUMNS)].itertuples(index=False, name=None))

    return keys(base_dir) & keys(new_dir)


def describe_coverage(table: pd.DataFrame) -> str:
    pairs = table.groupby("workload")["n"].unique()
    return "; ".join(
        f"{workload} n={','.join(str(v) for v in sorted(ns))}" for workload, ns in pairs.items()
    )
