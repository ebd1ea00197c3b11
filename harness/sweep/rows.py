"""Rows of the tidy table: a configuration and its measurement result as table rows.

The columns are :data:`harness.sweep.results.COLUMNS`; this module fills them from what
the runner knows (:class:`~harness.sweep.plan.Configuration`, the run's metadata) and
what the measurement process reported. It writes nothing and starts nothing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from harness.sweep.metadata import now_iso, row_metadata
from harness.sweep.plan import Configuration
from harness.sweep.results import COLUMNS

#: Keys of ``Strategy.runtime_info()`` that say how many workers actually ran, in order
#: of preference.
_EFFECTIVE_WORKER_KEYS = (
    "effective_workers",
    "threads_used",
    "processes_used",
    "workers_used",
    "workers_started",
    "n_workers",
)


def table_row(
    configuration: Configuration,
    *,
    run_id: str,
    metadata: dict[str, Any],
    status: str,
    error: str = "",
    result: dict | None = None,
    phase: str = "",
    seconds: float = math.nan,
    value_index: int | None = None,
    process: int | None = None,
    interference: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One row of the tidy table for ``configuration``.

    ``result`` is the measurement process's summary (its ``runtime_info`` says what the
    strategy ran with); ``phase``, ``seconds`` and ``value_index`` identify one value
    of an ``ok`` configuration, ``process`` the fresh process it came from (the unit of
    replication) and ``interference`` its ``foreign_cpu`` and ``tree_cpu`` shares (see
    :mod:`harness.sweep.interference`). A skipped or failed configuration has one row with
    ``error`` saying why. ``metadata`` is :func:`harness.sweep.metadata.collect_metadata`.
    """
    result = result or {}
    interference = interference or {}
    info = result.get("runtime_info") or {}
    row: dict[str, Any] = dict.fromkeys(COLUMNS, math.nan)
    row.update(
        workload=configuration.workload,
        n=configuration.n,
        d=int(result.get("d", configuration.d)),
        k=int(result.get("k", configuration.k)),
        strategy=configuration.strategy,
        kind=result.get("kind", configuration.kind),
        workers=configuration.workers,
        phase=phase,
        seconds=float(seconds),
        value_index=value_index,
        process=process,
        foreign_cpu=as_float(interference.get("foreign_cpu")),
        tree_cpu=as_float(interference.get("tree_cpu")),
        process_disturbed=False if status == "ok" else None,
        status=status,
        error=error,
        config_id=configuration.config_id,
        problem=configuration.problem,
        attempts=1 if status == "failed" else 0 if status == "skipped" else None,
        disturbed=False,
        disturbed_reason="",
        stopped="",
        oversubscribed=configuration.oversubscribed,
        start_method=str(info.get("start_method") or ""),
        run_id=run_id,
        date=now_iso(),
        **row_metadata(metadata),
    )
    if status == "ok":
        row.update(
            effective_workers=_effective_workers(info, configuration, result),
            blas_threads=_first_int(info, ("worker_blas_threads", "blas_threads"))
            or result.get("blas_threads"),
            omp_threads=_first_int(info, ("omp_threads", "openmp_threads"))
            or result.get("omp_threads"),
            used_fused=bool(result.get("used_fused")),
            kernel=str(result.get("kernel") or ""),
            inline=bool(result.get("inline")),
            bytes_to_workers=as_float(info.get("bytes_to_workers")),
            bytes_from_workers=as_float(info.get("bytes_from_workers")),
            peak_pss_bytes=as_float(result.get("peak_pss_bytes")),
            final_loglik=as_float(result.get("final_loglik")),
            iterations_checked=result.get("iterations_checked"),
        )
    return row


def _effective_workers(info: dict, configuration: Configuration, result: dict) -> int:
    reported = _first_int(info, _EFFECTIVE_WORKER_KEYS)
    if reported is not None:
        return reported
    return configuration.workers if result.get("parallel", True) else 1


def _first_int(info: dict, keys: Sequence[str]) -> int | None:
    for key in keys:
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return int(value)
    return None


def as_float(value: Any) -> float:
    """``value`` as a float; NaN when it is missing or not a number."""
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def median(values: Sequence[float]) -> float:
    """The median of ``values``; NaN when there are none."""
    numbers = [float(v) for v in values]
    return statistics.median(numbers) if numbers else math.nan


def plain(value: Any) -> Any:
    """A NumPy scalar (as pandas hands them out) as the Python value."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def as_text(value: Any) -> str:
    """A text cell as read back from CSV (empty cells come back as NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


__all__ = ["as_float", "as_text", "median", "plain", "table_row"]
