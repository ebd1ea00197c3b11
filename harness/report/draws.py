"""Bootstrap draws of every measured median, and intervals of their ratios.

:func:`bootstrap` resamples, once per run, the values of every measured ``(workload, n,
strategy, workers, phase)`` (processes as the unit of replication where the table
records them, :mod:`harness.report.uncertainty`); :meth:`Draws.ratio` gives the
interval of the ratio of two medians from the same draws, which every verdict of
:mod:`harness.report.analysis` uses. Pure computation on a normalised table: it never
draws, writes or words anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.report import uncertainty as unc

#: The columns that identify one measurement (a draws key, in this order).
MEASUREMENT = ["workload", "n", "strategy", "workers", "phase"]


@dataclass
class Draws:
    """Bootstrap draws of the median of every measured (workload, n, strategy, workers,
    phase), and whether each came from a single process (see
    :mod:`harness.report.uncertainty`).

    Attributes
    ----------
    medians : dict of tuple to ndarray of float64, shape (RESAMPLES,)
    single : dict of tuple to bool
    point : dict of tuple to float
        The median itself.
    """

    medians: dict[tuple, np.ndarray] = field(default_factory=dict)
    single: dict[tuple, bool] = field(default_factory=dict)
    point: dict[tuple, float] = field(default_factory=dict)

    def ratio(self, numerator: tuple, denominator: tuple) -> tuple[float, float]:
        """Interval of ``T(numerator) / T(denominator)``; NaN when either is unknown."""
        if numerator not in self.medians or denominator not in self.medians:
            return math.nan, math.nan
        single = int(self.single[numerator]) + int(self.single[denominator])
        return unc.ratio_interval(self.medians[numerator], self.medians[denominator], single)


def bootstrap(table: pd.DataFrame, seed: int = 0) -> Draws:
    """:class:`Draws` of every measured key of a :func:`normalise_table` table."""
    ok = table[(table["status"] == "ok") & np.isfinite(table["seconds"])]
    draws = Draws()
    if ok.empty:
        return draws
    seconds = ok["seconds"].to_numpy(dtype=float)
    unit = unc.unit_column(list(ok.columns))
    labels = None
    if unit is not None:
        labels = ok[unit].astype(str)
        if unc.ATTEMPT_COLUMN in ok.columns:
            labels = ok[unc.ATTEMPT_COLUMN].astype(str) + "/" + labels
        labels = labels.to_numpy()
    for key, index in ok.groupby(MEASUREMENT, sort=True).indices.items():
        key = draw_key(*key)
        units = labels[index] if labels is not None else None
        values = seconds[index]
        draws.medians[key] = unc.median_draws(values, units, rng=unc.seeded_rng(key, seed))
        draws.single[key] = units is None or len(set(units)) < 2
        draws.point[key] = float(np.median(values))
    return draws


def draw_key(workload: str, n: int, strategy: str, workers: int, phase: str) -> tuple:
    """A draws key with plain Python types, so lookups do not depend on dtypes."""
    return (str(workload), int(n), str(strategy), int(workers), str(phase))
