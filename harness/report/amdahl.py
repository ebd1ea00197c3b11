"""Scaling models: the Karp-Flatt serial fraction and Amdahl's law, fitted and
extrapolated with the band their measured speedups allow.

Pure functions of the scaling frame of :mod:`harness.report.analysis`; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Worker counts the Amdahl model extrapolates to (the machine has fewer cores).
MODEL_CORES: tuple[int, ...] = (4, 8, 16, 64)


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
    """Amdahl fit and extrapolation per (workload, n, parallel strategy), with bands.

    The band is propagated from the speedups' intervals (``speedup_self_low`` and
    ``_high`` of :func:`scaling`): ``f`` falls as every speedup rises and the model
    speedup rises as ``f`` falls, so fitting the upper ends gives the lower ``f`` and
    the upper model, and the reverse. A model value whose band is wider than the value
    itself carries no information and is marked not shown: a reader would take the
    number for a prediction when the measurement allows anything in a range larger than
    it.

    Returns
    -------
    DataFrame
        Columns ``workload, n, strategy, kind, fitted_workers`` (the worker counts
        used), ``serial_fraction_raw``, ``serial_fraction`` (clipped to [0, 1]),
        ``serial_fraction_low``, ``serial_fraction_high`` (raw fits to the speedups'
        upper and lower ends), ``limit`` (``1/f``, inf for ``f = 0``),
        ``rests_on_disturbed`` and, for each core count ``p``, ``model_<p>``,
        ``model_<p>_low``, ``model_<p>_high``, ``model_<p>_shown``.
    """
    columns = [
        "workload",
        "n",
        "strategy",
        "kind",
        "fitted_workers",
        "serial_fraction_raw",
        "serial_fraction",
        "serial_fraction_low",
        "serial_fraction_high",
        "limit",
        "rests_on_disturbed",
    ]
    for p in cores:
        columns += [f"model_{p}", f"model_{p}_low", f"model_{p}_high", f"model_{p}_shown"]
    parallel = scaling_table[
        ~scaling_table["sequential"].astype(bool)
        & (scaling_table["workers"] > 1)
        & ~scaling_table["oversubscribed"].astype(bool)
        & np.isfinite(scaling_table["speedup_self"].astype(float))
    ]
    rows = []
    p_model = np.asarray(cores, dtype=float)
    for (workload, n, strategy), group in parallel.groupby(["workload", "n", "strategy"]):
        raw = fit_amdahl(group["workers"], group["speedup_self"])
        if not math.isfinite(raw):
            continue
        f_low = fit_amdahl(group["workers"], group["speedup_self_high"])
        f_high = fit_amdahl(group["workers"], group["speedup_self_low"])

        def clip(value: float) -> float:
            return min(max(value, 0.0), 1.0) if math.isfinite(value) else math.nan

        f = clip(raw)
        model = amdahl_speedup(f, p_model)
        upper = amdahl_speedup(clip(f_low), p_model) if math.isfinite(f_low) else p_model * np.nan
        lower = amdahl_speedup(clip(f_high), p_model) if math.isfinite(f_high) else p_model * np.nan
        shown = np.isfinite(upper) & np.isfinite(lower) & (upper - lower <= model)
        row = [
            workload,
            int(n),
            strategy,
            group["kind"].iloc[0],
            ",".join(str(int(p)) for p in sorted(group["workers"])),
            raw,
            f,
            f_low,
            f_high,
            math.inf if f == 0 else 1.0 / f,
            bool(group["rests_on_disturbed"].astype(bool).any()),
        ]
        for i in range(len(cores)):
            row += [float(model[i]), float(lower[i]), float(upper[i]), bool(shown[i])]
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
