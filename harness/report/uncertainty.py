"""Uncertainty of medians and of ratios of medians, by a seeded hierarchical bootstrap.

Every comparison the report states (fastest strategy, margin, speedup, crossover,
"slower with more workers") is a ratio of two medians, and every one carries the
percentile interval computed here. Nothing here reads files or formats text.

Replication units
-----------------
Process-to-process variation is the larger noise of a sweep: values timed inside one
process agree much better than two processes of the same configuration do. So the
unit of replication is the *process*: when the tidy table says which process a value
came from (a column in :data:`UNIT_COLUMNS`, combined with ``attempt`` when present), the
bootstrap resamples processes, then values within each resampled process (a
hierarchical, two-stage bootstrap). Without such a column every value is its own unit.

A configuration whose values all come from one process cannot show the between-process
noise at all, however many values it has. Its interval is widened by
:data:`SINGLE_PROCESS_ALLOWANCE` (a factor applied in log space, combined in quadrature
when both sides of a ratio lack it): the between-process difference that, without
several processes to estimate it, the harness refuses to call real.

Determinism: each configuration's resamples come from a generator seeded by its key
(:func:`seeded_rng`), so an interval does not depend on which other configurations a
table holds or in which order they are processed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

#: Level of every interval the report states.
CONFIDENCE = 0.95
#: Bootstrap resamples per configuration: the percentile ends are stable to about a
#: percent, and one configuration costs well under a millisecond.
RESAMPLES = 2000
#: Columns that name the process a value was timed in, in order of preference.
UNIT_COLUMNS: tuple[str, ...] = ("process", "process_index", "run_index")
#: Column that names a re-measurement attempt; with a unit column, (attempt, process)
#: is the unit.
ATTEMPT_COLUMN = "attempt"
#: Relative between-process allowance for a configuration measured in one process only
#: (see the module docstring). Two quiet back-to-back sweeps of this project differ by
#: this much on a sizeable share of configurations, so a smaller difference from a single
#: process is never stated as a result.
SINGLE_PROCESS_ALLOWANCE = 0.10


def seeded_rng(key: Sequence[object], seed: int = 0) -> np.random.Generator:
    """A generator seeded by ``key`` (any sequence of printable parts) and ``seed``."""
    digest = zlib.crc32("|".join(map(str, key)).encode())
    return np.random.default_rng([seed, digest])


def median_draws(
    values: np.ndarray,
    units: np.ndarray | None = None,
    *,
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
) -> np.ndarray:
    """Bootstrap distribution of the median, resampling units then values within them.

    Parameters
    ----------
    values : ndarray of float64, shape (m,)
        The measured values (finite, positive).
    units : ndarray, shape (m,), optional
        Unit label of each value (the process it was timed in). ``None``: each value is
        its own unit (a plain bootstrap).
    rng : numpy.random.Generator
    resamples : int

    Returns
    -------
    ndarray of float64, shape (resamples,)
        Medians of the resamples; empty when ``values`` is.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.empty(0)
    if units is None:
        picks = rng.integers(0, values.size, size=(resamples, values.size))
        return np.median(values[picks], axis=1)
    labels, inverse = np.unique(np.asarray(units).astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(labels))
    width = int(counts.max())
    # Ragged units padded with NaN into a (units, width) matrix; nanmedian ignores padding.
    order = np.argsort(inverse, kind="stable")
    matrix = np.full((len(labels), width), np.nan)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(values.size) - np.repeat(starts, counts)
    matrix[inverse[order], position] = values[order]
    chosen = rng.integers(0, len(labels), size=(resamples, len(labels)))  # stage 1
    within = rng.random((resamples, len(labels), width))  # stage 2: values in each unit
    index = np.minimum((within * counts[chosen][..., None]).astype(int), width - 1)
    valid = np.arange(width)[None, None, :] < counts[chosen][..., None]
    drawn = np.where(valid, matrix[chosen[..., None], index], np.nan)
    return np.nanmedian(drawn.reshape(resamples, -1), axis=1)


def unit_column(columns: Sequence[str]) -> str | None:
    """The first of :data:`UNIT_COLUMNS` present in ``columns``, or ``None``."""
    return next((c for c in UNIT_COLUMNS if c in columns), None)


def allowance_factor(single_sides: int) -> float:
    """Multiplicative widening for an interval with ``single_sides`` single-process sides."""
    if single_sides <= 0:
        return 1.0
    return math.exp(math.log1p(SINGLE_PROCESS_ALLOWANCE) * math.sqrt(single_sides))


def interval(draws: np.ndarray, widen: float = 1.0) -> tuple[float, float]:
    """Percentile interval at :data:`CONFIDENCE` of ``draws``, widened by a factor.

    Returns
    -------
    (low, high) : tuple of float
        NaN when there are no finite draws.
    """
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low) / widen, float(high) * widen


def ratio_interval(
    numerator: np.ndarray, denominator: np.ndarray, single_sides: int = 0
) -> tuple[float, float]:
    """Interval of ``median(num) / median(den)`` from two independent draw vectors.

    Parameters
    ----------
    numerator, denominator : ndarray of float64, shape (B,)
        :func:`median_draws` of the two configurations.
    single_sides : int
        How many of the two were measured in a single process (0, 1 or 2).
    """
    if len(numerator) == 0 or len(denominator) == 0:
        return math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return interval(numerator / denominator, allowance_factor(single_sides))


def verdict(low: float, high: float) -> str:
    """``"above"`` (the ratio is above 1 beyond the noise), ``"below"``, or ``"tie"``."""
    if math.isfinite(low) and low > 1.0:
        return "above"
    if math.isfinite(high) and high < 1.0:
        return "below"
    return "tie"
