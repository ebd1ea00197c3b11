"""Problems: what a strategy solves, its data, its sizes and its reference answer.

The harness measures strategies for more than one problem. A :class:`Problem` says

* which **interface** its strategies implement: ``"em"`` (the Gaussian-mixture E-step /
  M-step interface of :class:`strategies.base.Strategy`) or ``"array"`` (the smaller
  ``prepare(x)`` / ``run()`` / ``close()`` interface of
  :class:`strategies.micro.base.MicroStrategy`);
* its **workloads** (deterministic generators of ``(n, seed)``) and default **sizes**;
* its **work** per input size, in a named unit, so that charts can put work per task
  on an axis;
* its **reference answer** (the oracle every strategy is tested against) and the
  tolerance a result must meet.

The registry entries that implement a problem are the strategies whose class declares
``problem = <name>`` (``strategies.names(problem=...)``); this module does not import
strategies (layering: model <- strategies).

Problems
--------
``gmm``
    Full-covariance Gaussian-mixture EM, the main problem. Workloads and reference are
    those of :mod:`harness.model.workloads` and :mod:`harness.model.gmm`; its sizes
    are the sweep modes' (:mod:`harness.sweep.runner`).
``summarize``
    The length and the sum of a float64 vector (the seed notebook's first example),
    n from 10^3 to 10^8. Answer: ``(n, sum)``.
``pairwise``
    ``sum_i sum_j x_i * x_j`` (the seed's second example). O(n^2) by definition, and
    kept O(n^2) in every strategy: it is a work-per-task benchmark. Oracle: the
    closed form ``(sum x)^2``. Sizes give 10^5 to 10^10 pair operations.

Empty input (n = 0) is valid for the micro-problems and has the defined answer: a
length of 0 and sums of 0.0 (empty sums). Tolerances: ``summarize`` is exact on
integer-valued data (every partial sum is an integer below 2^53); otherwise a sum
must be within :data:`RTOL` of the reference sum, relative to ``sum |x|``. ``pairwise``
must be within :data:`RTOL` of ``(sum x)^2``, relative to ``(sum |x|)^2`` (a relative
error wherever the data's mean is away from 0, as in the generated workloads).

The reference sums are NumPy's pairwise sums in extended precision (``np.longdouble``),
computed once per input (:meth:`Problem.verifier`): at n = 10^8 that takes about a
second, where ``math.fsum`` over a Python list takes ten and gigabytes more memory. Their error
bound, a few units of the last place of the extended type (or of float64 where
``longdouble`` is float64), lies orders of magnitude below :data:`RTOL`, and on
integer-valued data they are exact, like every other order of summation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harness.model.errors import InvalidDataError, InvalidParameterError
from harness.model.validation import look_up

#: Interfaces a problem's strategies implement.
INTERFACES: tuple[str, ...] = ("em", "array")

#: Relative tolerance of a micro-problem's answer (see the module docstring). The
#: kernels sum in four lanes with compensated row totals, Python sums in order: their
#: rounding errors stay orders of magnitude below this at every size in the sweep.
RTOL = 1e-10

#: Mean of the generated "normal" data: the seed notebook's ``randn(n) + 8.342``. A
#: mean away from 0 keeps (sum x)^2 of the same order as sum |x_i x_j|, so a relative
#: tolerance on the pairwise answer is meaningful.
NORMAL_MEAN = 8.342

#: Range of the integer-valued workload: sums stay exact in float64 up to n = 10^8.
INTEGER_BOUND = 1000


@dataclass(frozen=True)
class MicroWorkload:
    """A generator of micro-problem data.

    Attributes
    ----------
    name : str
        Unique across problems (the sweep keys sizes by workload name).
    description : str
    generate : callable ``(n, rng) -> ndarray of float64, shape (n,)``
    sizes : tuple of int
        The whole size axis: the sizes of ``--rigorous`` sweeps.
    quick_sizes : tuple of int
        Sizes of ``--quick`` sweeps.
    default_sizes : tuple of int
        Sizes of the default sweep (``python -m harness run``, ``make bench``): a
        few sizes spread over the axis, as many as the default sweep's time budget
        leaves room for next to the GMM workloads.
    swept : bool
        Part of a sweep of its problem by default (False: named with --workloads only).
    """

    name: str
    description: str
    generate: Callable[[int, np.random.Generator], np.ndarray]
    sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...]
    default_sizes: tuple[int, ...] = ()
    swept: bool = True


@dataclass(frozen=True)
class Problem:
    """One problem the harness measures strategies on.

    Attributes
    ----------
    name : str
    interface : {"em", "array"}
    description : str
    work_unit : str
        What :meth:`work` counts ("points", "elements", "pair operations").
    workloads : dict of str to MicroWorkload
        Empty for ``gmm`` (its workloads live in :mod:`harness.model.workloads`).
    """

    name: str
    interface: str
    description: str
    work_unit: str
    work_per_size: Callable[[int], int]
    workloads: dict[str, MicroWorkload] = field(default_factory=dict)
    reference: Callable[[np.ndarray], object] | None = None
    make_verifier: Callable[[np.ndarray], Callable[[object], str | None]] | None = None

    def work(self, n: int) -> int:
        """Work units (``work_unit``) of one run at input size ``n``."""
        return int(self.work_per_size(int(n)))

    def verifier(self, x: np.ndarray) -> Callable[[object], str | None]:
        """A check of answers for input ``x``, its reference computed once.

        The returned callable gives None for an answer within tolerance, else a
        sentence saying what is wrong.
        """
        if self.make_verifier is None:
            raise InvalidParameterError(f"problem {self.name!r} has no answer check")
        return self.make_verifier(x)

    def verify(self, x: np.ndarray, answer: object) -> str | None:
        """None when ``answer`` is right for ``x`` within tolerance, else what is wrong."""
        return self.verifier(x)(answer)

    def generate(self, workload: str, n: int, seed: int = 0) -> np.ndarray:
        """Data for ``workload`` at size ``n``: a function of ``(workload, n, seed)`` only.

        Returns
        -------
        ndarray of float64, shape (n,)

        Raises
        ------
        InvalidParameterError
            For a workload this problem does not have, or a negative ``n``.
        """
        spec = self.workloads.get(workload)
        if spec is None:
            valid = ", ".join(self.workloads) or "(its workloads are in harness.model.workloads)"
            raise InvalidParameterError(
                f"problem {self.name!r} has no workload {workload!r}; valid: {valid}"
            )
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise InvalidParameterError(f"n must be a whole number >= 0; got {n!r}")
        x = spec.generate(int(n), np.random.default_rng(seed))
        return np.ascontiguousarray(x, dtype=np.float64)


def check_vector(x: object, *, name: str = "x") -> np.ndarray:
    """Validate micro-problem input and return it as a C-contiguous float64 vector.

    Empty vectors are valid (their answers are defined, see the module docstring).

    Returns
    -------
    ndarray of float64, shape (n,), C-contiguous
        ``x`` itself when it already qualifies (no copy), otherwise a converted copy.

    Raises
    ------
    InvalidDataError
        If ``x`` is not a 1-D array of finite real numbers.
    """
    try:
        array = np.asarray(x)
    except Exception as exc:
        raise InvalidDataError(f"{name} cannot be read as an array: {exc}") from exc
    if array.dtype == object or array.dtype.kind not in "fiu":
        raise InvalidDataError(f"{name} must hold real numbers; got dtype {array.dtype}")
    if array.ndim != 1:
        raise InvalidDataError(f"{name} must be 1-D; got shape {array.shape}")
    if array.dtype != np.float64 or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise InvalidDataError(f"{name} holds NaN or infinite values")
    return array


# ---- the micro-problems' data, oracles and checks -----------------------------------


def _normal(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n) + NORMAL_MEAN


def _integers(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(-INTEGER_BOUND, INTEGER_BOUND + 1, size=n).astype(np.float64)


def _is_integer_valued(x: np.ndarray, abs_sum: float) -> bool:
    """Every value an integer and ``abs_sum`` (``sum |x|``) below 2^53: sums are exact."""
    return abs_sum < 2.0**53 and bool(np.all(x == np.round(x)))


def _accurate_sum(x: np.ndarray) -> float:
    """``sum x`` by a pairwise sum in extended precision, rounded to float64."""
    return float(np.sum(x, dtype=np.longdouble))


def summarize_reference(x: np.ndarray) -> tuple[int, float]:
    """``(n, sum)``, the sum accurate far beyond :data:`RTOL` (see the module docstring)."""
    return int(x.shape[0]), _accurate_sum(x)


def pairwise_reference(x: np.ndarray) -> float:
    """``sum_{i,j} x_i x_j`` by its closed form ``(sum x)^2`` (the test oracle only)."""
    return _accurate_sum(x) ** 2


def summarize_verifier(x: np.ndarray) -> Callable[[object], str | None]:
    """A check of answers for ``x``: None when an answer is ``(n, sum)`` within tolerance."""
    n, expected = summarize_reference(x)
    scale = float(np.abs(x).sum())  # a tolerance's scale needs no extra precision
    exact = _is_integer_valued(x, scale)

    def verify(answer: object) -> str | None:
        try:
            count, total = answer  # type: ignore[misc]
        except (TypeError, ValueError):
            return f"expected (length, sum), got {answer!r}"
        if int(count) != n:
            return f"length {count} != {n}"
        if exact:
            return None if float(total) == expected else f"sum {total!r} != {expected!r} (exact)"
        if abs(float(total) - expected) <= RTOL * scale:
            return None
        return f"sum {total!r} differs from {expected!r} by more than {RTOL:g} x {scale:g}"

    return verify


def pairwise_verifier(x: np.ndarray) -> Callable[[object], str | None]:
    """A check of answers for ``x``: None when within :data:`RTOL` of ``(sum x)^2``."""
    expected = pairwise_reference(x)
    scale = float(np.abs(x).sum()) ** 2

    def verify(answer: object) -> str | None:
        try:
            value = float(answer)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return f"expected a number, got {answer!r}"
        if abs(value - expected) <= RTOL * scale:
            return None
        return f"pairwise sum {value!r} differs from {expected!r} by more than {RTOL:g} x {scale:g}"

    return verify


def _decades(low: float, high: float, step: float = 1.0) -> tuple[int, ...]:
    count = round((high - low) / step) + 1
    return tuple(round(10 ** (low + i * step)) for i in range(count))


def _gmm_work(n: int) -> int:
    return n


PROBLEMS: dict[str, Problem] = {
    "gmm": Problem(
        name="gmm",
        interface="em",
        description="Gaussian-mixture EM, full covariances (the main problem)",
        work_unit="points",
        work_per_size=_gmm_work,
    ),
    "summarize": Problem(
        name="summarize",
        interface="array",
        description="length and sum of a float64 vector",
        work_unit="elements",
        work_per_size=lambda n: n,
        workloads={
            "summarize-normal": MicroWorkload(
                "summarize-normal",
                f"N({NORMAL_MEAN}, 1) samples, as the seed notebook's summarize",
                _normal,
                sizes=_decades(3, 8),
                quick_sizes=(10_000, 1_000_000),
                default_sizes=_decades(4, 8, 2.0),
            ),
            "summarize-integers": MicroWorkload(
                "summarize-integers",
                f"integers in [-{INTEGER_BOUND}, {INTEGER_BOUND}] as float64 (exact sums)",
                _integers,
                sizes=_decades(3, 8),
                quick_sizes=(10_000, 1_000_000),
                swept=False,
            ),
        },
        reference=summarize_reference,
        make_verifier=summarize_verifier,
    ),
    "pairwise": Problem(
        name="pairwise",
        interface="array",
        description="sum over i, j of x_i * x_j, O(n^2) in every strategy",
        work_unit="pair operations",
        work_per_size=lambda n: n * n,
        workloads={
            "pairwise-normal": MicroWorkload(
                "pairwise-normal",
                f"N({NORMAL_MEAN}, 1) samples; n from 10^2.5 to 10^5 (10^5 to 10^10 pairs)",
                _normal,
                sizes=_decades(2.5, 5.0, 0.5),
                quick_sizes=(1_000, 10_000),
                default_sizes=(1_000, 10_000, 31_623),
            ),
        },
        reference=pairwise_reference,
        make_verifier=pairwise_verifier,
    ),
}

#: The problem a sweep, a result row or a strategy has when none is named.
DEFAULT_PROBLEM = "gmm"


def get_problem(name: str) -> Problem:
    """Look a problem up by name.

    Raises
    ------
    InvalidParameterError
        With the list of valid names.
    """
    return look_up(PROBLEMS, name, "problem", label="valid problems")


def micro_workloads() -> dict[str, MicroWorkload]:
    """Every micro-problem workload by name (names are unique across problems)."""
    return {name: spec for problem in PROBLEMS.values() for name, spec in problem.workloads.items()}


def problem_of_workload(workload: str) -> Problem:
    """The micro-problem a workload name belongs to (``gmm`` for any other name)."""
    for problem in PROBLEMS.values():
        if workload in problem.workloads:
            return problem
    return PROBLEMS[DEFAULT_PROBLEM]


__all__ = [
    "DEFAULT_PROBLEM",
    "INTERFACES",
    "PROBLEMS",
    "RTOL",
    "MicroWorkload",
    "Problem",
    "check_vector",
    "get_problem",
    "micro_workloads",
    "pairwise_reference",
    "problem_of_workload",
    "summarize_reference",
]
