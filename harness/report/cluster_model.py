"""A model of the ``dask`` strategy past this machine: time per iteration at W workers.

Pure functions, no I/O. The inputs come from a measured run: the scheduler overhead per
iteration and the per-point compute cost of one task (both in the ``dask`` strategy's
``runtime_info``), and the per-point cost of one in-process ``openmp`` run. The model::

    t_cluster(n, W) = overhead + n * cost_per_point / W
    t_openmp(n)     = n * openmp_cost_per_point

It assumes perfectly balanced blocks, an overhead that does not grow with W and a network
that adds nothing (the blocks never move). Each of those is optimistic, so the
crossover it gives is a lower bound on the n at which a cluster starts to pay. Whatever
shows it must label it a model and name these inputs.

May not touch: files, timing, strategies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

#: Worker (or machine) counts the report models.
MODEL_WORKERS = (4, 16, 64)


@dataclass(frozen=True)
class ClusterModelRow:
    """One modelled cluster size.

    Attributes
    ----------
    workers : int
    n : int
        Problem size the time is modelled at.
    seconds_per_iteration : float
        ``overhead + n * cost_per_point / workers``.
    openmp_seconds_per_iteration : float
        ``n * openmp_cost_per_point`` (the measured in-process run, scaled to n).
    crossover_n : float
        Smallest n at which this cluster beats the openmp run; ``inf`` if never.
    """

    workers: int
    n: int
    seconds_per_iteration: float
    openmp_seconds_per_iteration: float
    crossover_n: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _check(name: str, value: float, *, positive: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}; got {value!r}")
    return value


def iteration_seconds(n: float, workers: int, cost_per_point: float, overhead: float) -> float:
    """Modelled seconds per iteration of ``n`` points on ``workers`` workers."""
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1; got {workers!r}")
    n = _check("n", n)
    cost_per_point = _check("cost_per_point", cost_per_point)
    overhead = _check("overhead", overhead)
    return overhead + n * cost_per_point / int(workers)


def crossover_n(
    workers: int, cost_per_point: float, overhead: float, openmp_cost_per_point: float
) -> float:
    """Smallest n with ``overhead + n c / W < n a`` (a: openmp's cost per point).

    ``inf`` when the cluster's per-point cost divided over W workers is not below
    openmp's: then no size makes the cluster faster.
    """
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1; got {workers!r}")
    cost_per_point = _check("cost_per_point", cost_per_point)
    overhead = _check("overhead", overhead)
    openmp = _check("openmp_cost_per_point", openmp_cost_per_point, positive=True)
    margin = openmp - cost_per_point / int(workers)
    if margin <= 0:
        return math.inf
    return overhead / margin


def model_table(
    n: int,
    cost_per_point: float,
    overhead: float,
    openmp_cost_per_point: float,
    workers: Iterable[int] = MODEL_WORKERS,
) -> list[ClusterModelRow]:
    """The modelled rows for each worker count in ``workers``, at problem size ``n``."""
    openmp_seconds = _check("n", n) * _check(
        "openmp_cost_per_point", openmp_cost_per_point, positive=True
    )
    return [
        ClusterModelRow(
            int(w),
            int(n),
            iteration_seconds(n, w, cost_per_point, overhead),
            openmp_seconds,
            crossover_n(w, cost_per_point, overhead, openmp_cost_per_point),
        )
        for w in workers
    ]


def median_of(values: Iterable[float | None]) -> float:
    """Median of the finite values, NaN when there are none."""
    finite = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not finite:
        return math.nan
    middle = len(finite) // 2
    return finite[middle] if len(finite) % 2 else (finite[middle - 1] + finite[middle]) / 2
