"""The report's ``## Run`` section: what ran, where, with which build and arguments.

Turns a run's ``meta.json`` (and, where it lacks something, the metadata columns of the
table) into the metadata table, the sweep arguments, the unavailable strategies and a
sentence on what the table holds. Also the lookups of ``meta.json`` other report code
needs (:func:`find_key`, :func:`sweep_arguments`). Reads only what it is handed; writes
nothing and draws nothing.
"""

from __future__ import annotations

import json

from harness.report.analysis import Analysis
from harness.report.sections import md_table
from harness.sweep.results import RUN_METADATA_COLUMNS


def find_key(data: object, key: str) -> object:
    """First value stored under ``key`` anywhere in nested dicts."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            found = find_key(value, key)
            if found is not None:
                return found
    return None


def _flatten(data: object, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        items: list[tuple[str, str]] = []
        for key, value in data.items():
            items += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return items
    if isinstance(data, list | tuple):
        text = ", ".join(_short(v) if isinstance(v, dict | list) else str(v) for v in data)
    else:
        text = "" if data is None else str(data)
    if len(text) > 160:
        text = text[:157] + "..."
    return [(prefix, text)]


#: meta.json keys shown first, in this order; "metadata" repeats them and is left out,
#: "strategies" and the sweep arguments get their own lines.
_META_FIRST = (
    "run_id",
    "status",
    "created",
    "updated",
    "host",
    "versions",
    "build",
    "git_commit",
    "git_dirty",
    "configurations",
)
_META_HIDDEN = {"metadata", "strategies", "sweep", "args", "sessions", "schema_version"}
#: Table columns shown when meta.json is missing.
_ROW_META_COLUMNS = RUN_METADATA_COLUMNS


def sweep_arguments(meta: dict) -> dict:
    """The arguments the sweep ran with (``sweep``, or ``args`` of older runs)."""
    for key in ("sweep", "args"):
        if isinstance(meta.get(key), dict) and meta[key]:
            return meta[key]
    return {}


def run_section(analysis: Analysis, meta: dict) -> str:
    """The report's ``## Run`` section: metadata, sweep arguments, what the table holds."""
    lines = ["## Run", ""]
    ordered = {key: meta[key] for key in _META_FIRST if key in meta}
    build = ordered.get("build")
    if isinstance(build, dict) and isinstance(build.get("kernels"), dict):
        # The kernel build record repeats the compiler flags; keep only why it is missing.
        kernels = build["kernels"]
        ordered["build"] = {key: value for key, value in build.items() if key != "kernels"}
        if kernels.get("available") is False:
            ordered["build"]["kernels"] = f"not available: {kernels.get('reason', '')}"
    ordered.update(
        {
            key: value
            for key, value in meta.items()
            if key not in _META_FIRST and key not in _META_HIDDEN
        }
    )
    rows = [[f"`{key}`", value] for key, value in _flatten(ordered) if value != ""]
    if isinstance(meta.get("sessions"), list) and len(meta["sessions"]) > 1:
        rows.append(["`sessions`", f"{len(meta['sessions'])} (the sweep was resumed)"])
    if not rows:  # fall back on the metadata columns repeated on every row
        table = analysis.table
        for column in _ROW_META_COLUMNS:
            values = table[column].dropna().unique()
            if len(values):
                rows.append([f"`{column}`", ", ".join(str(v) for v in values[:3])])
    if rows:
        lines += [md_table(["field", "value"], rows), ""]
    arguments = sweep_arguments(meta)
    if arguments:
        lines += [
            "Sweep arguments: " + ", ".join(f"`{k}={_short(v)}`" for k, v in arguments.items()),
            "",
        ]
    registry = meta.get("strategies")
    if isinstance(registry, dict):
        unavailable = [
            (name, info.get("reason", ""))
            for name, info in registry.items()
            if isinstance(info, dict) and info.get("available") is False
        ]
        if unavailable:
            lines += [
                "Strategies unavailable on this machine: "
                + "; ".join(
                    f"`{name}` ({reason or 'no reason given'})" for name, reason in unavailable
                )
                + ".",
                "",
            ]
    table = analysis.table
    measured = int((table["status"] == "ok").sum())
    configs = table.drop_duplicates(["workload", "n", "strategy", "workers"])
    lines += [
        f"The table holds {len(table):,} rows: {measured:,} measured values over "
        f"{len(configs):,} configurations ({table['workload'].nunique()} workload(s), "
        f"{table['strategy'].nunique()} strategies, worker counts "
        f"{', '.join(str(p) for p in sorted(table['workers'].unique()))}).",
        "",
    ]
    return "\n".join(lines)


def _short(value: object) -> str:
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
