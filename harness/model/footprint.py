"""Memory a problem size needs, estimated before anything is allocated.

A size that does not fit must be refused with one line saying so, not discovered as a
``MemoryError`` half-way through generating the data, or as minutes of swapping. The
estimate counts what the harness itself allocates, per point (float64 everywhere):

* the data: ``n * d`` values;
* generating a workload: one more copy of the data while the components are
  concatenated and shuffled, plus the permutation (``n`` indices);
* one EM iteration: up to six ``n x k`` arrays alive at once (the log-densities,
  log-sum-exp's shifted copy and its exponential in the E-step; the
  log-responsibilities, the responsibilities and the contiguous copy an ``einsum``
  contraction makes in the M-step; fused strategies need none of them, the estimate
  keeps them so it holds for every strategy), and four ``n x d`` temporaries (the
  points centred on one component, their projection through its precision factor,
  its square, and the weighted copy of the scatter);
* process and distributed strategies: one more copy of the data, placed where the
  workers read it (shared memory, a memmap or a cluster's store).

The peak is the data plus the larger of the generation and the iteration overheads
(generation's copies are gone before the fit starts). Small fixed costs (the
interpreter, libraries, ``k x d x d`` parameters) are left out: they do not grow with
``n``, and the refusal is for sizes off by orders of magnitude, not for a near miss.

Model layer: imports only the harness's errors and psutil; no NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.model.errors import InvalidParameterError

#: Bytes per stored value (float64; int64 for the permutation).
_ITEM = 8

#: Strategy kinds that hold a second copy of the data for their workers.
_COPYING_KINDS = frozenset({"processes", "distributed"})


@dataclass(frozen=True)
class Footprint:
    """Estimated peak bytes of one fit, split into its parts.

    Attributes
    ----------
    data : int
        The ``(n, d)`` float64 array.
    generation : int
        Extra bytes while a workload is generated (0 for a user's file).
    working : int
        Extra bytes during one EM iteration (responsibilities, scratch, workers' copy).
    """

    data: int
    generation: int
    working: int

    @property
    def total(self) -> int:
        """Peak bytes: the data plus the larger of the two overheads."""
        return self.data + max(self.generation, self.working)


def estimate(n: int, d: int, k: int, *, kind: str = "serial", generated: bool = True) -> Footprint:
    """Estimate the peak memory of generating (optionally) and fitting ``n x d`` data.

    Parameters
    ----------
    n, d, k : int
        Points, features and mixture components.
    kind : str
        The strategy's kind (``serial``, ``threads``, ``processes``, ...); process
        and distributed kinds add a copy of the data for their workers.
    generated : bool
        Whether the data is generated here (a workload) rather than read from a file.

    Returns
    -------
    Footprint
    """
    n, d, k = int(n), int(d), int(k)
    data = n * d * _ITEM
    generation = (n * d + n) * _ITEM if generated else 0
    working = (6 * n * k + 4 * n * d) * _ITEM
    if kind in _COPYING_KINDS:
        working += data
    return Footprint(data, generation, working)


def available_bytes() -> int:
    """Memory the operating system can give this process now without swapping."""
    import psutil

    return int(psutil.virtual_memory().available)


def format_bytes(value: float) -> str:
    """``3.2e11`` -> ``"298 GiB"``; powers of 1024, three significant figures."""
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            break
        value /= 1024
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:.3g} {unit}" if value < 1e4 else f"{value:,.0f} {unit}"


def check_fits(
    n: int,
    d: int,
    k: int,
    *,
    kind: str = "serial",
    generated: bool = True,
    what: str = "",
    available: int | None = None,
) -> Footprint:
    """Refuse a size whose estimated peak exceeds the memory available now.

    Parameters
    ----------
    n, d, k, kind, generated
        As :func:`estimate`.
    what : str
        Names the data in the message (a workload, a file).
    available : int, optional
        Bytes available; :func:`available_bytes` when None.

    Returns
    -------
    Footprint
        The estimate, when it fits.

    Raises
    ------
    InvalidParameterError
        With the estimate, its parts and the memory available.
    """
    footprint = estimate(n, d, k, kind=kind, generated=generated)
    available = available_bytes() if available is None else int(available)
    if footprint.total > available:
        overhead = max(footprint.generation, footprint.working)
        label = f"{what}: " if what else ""
        raise InvalidParameterError(
            f"{label}n = {n:,} points (d = {d}, k = {k}) need about "
            f"{format_bytes(footprint.total)} (data {format_bytes(footprint.data)} + "
            f"working memory {format_bytes(overhead)}), more than the "
            f"{format_bytes(available)} available; at most n = "
            f"{largest_fitting_n(d, k, kind=kind, generated=generated, available=available):,} "
            "fits now"
        )
    return footprint


def largest_fitting_n(
    d: int, k: int, *, kind: str = "serial", generated: bool = True, available: int | None = None
) -> int:
    """The largest ``n`` whose estimate fits in ``available`` bytes (the estimate is linear)."""
    available = available_bytes() if available is None else int(available)
    per_point = estimate(1, d, k, kind=kind, generated=generated).total
    return max(0, available // per_point)
