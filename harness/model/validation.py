"""Input checks, done once on the Python side so that kernels never have to raise.

Policy (documented in the README):

* ``float64`` C-contiguous arrays are used as they are, read-only ones included
  (memmaps opened with ``mmap_mode="r"`` work everywhere).
* Other real dtypes (``float32``, integers) and non-contiguous arrays are converted
  to a C-contiguous ``float64`` copy. EM accumulates sums over millions of points,
  where float32 loses digits the reference tolerances (1e-8) depend on.
* Complex, object, boolean or string data, NaN/inf, arrays that are not 2-D, and
  empty arrays are rejected with :class:`~harness.model.errors.InvalidDataError`.
* Values so large that a covariance overflows are rejected too (see
  :func:`max_abs_value`): the squared deviations summed over ``n`` points must stay
  below the largest float64, or the covariance becomes inf and its Cholesky factor
  cannot be taken. Rescaling the data (dividing by a constant) fits the same mixture
  up to that scale, and is the user's choice to make, not a silent one here.

Names typed by a user (problems, strategies) are looked up by :func:`look_up`, which
fails with the list of valid names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import numpy as np

from harness.model.errors import InvalidDataError, InvalidParameterError

_T = TypeVar("_T")


def check_data(X: object, *, name: str = "X") -> np.ndarray:
    """Validate data for fitting and return it as C-contiguous float64.

    Parameters
    ----------
    X : array_like, shape (n, d)
        Data points, one per row.
    name : str
        Name used in error messages.

    Returns
    -------
    ndarray of float64, shape (n, d), C-contiguous
        ``X`` itself when it already qualifies (no copy, read-only kept),
        otherwise a converted copy.

    Raises
    ------
    InvalidDataError
        If ``X`` is not a finite, non-empty, 2-D array of real numbers.
    """
    try:
        array = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise InvalidDataError(f"{name} cannot be read as an array: {exc}") from exc
    if array.dtype == object or array.dtype.kind not in "fiu":
        raise InvalidDataError(f"{name} must hold real numbers; got dtype {array.dtype}")
    if array.ndim != 2:
        raise InvalidDataError(
            f"{name} must be 2-D with shape (n_points, n_features); got {array.ndim}-D "
            f"array of shape {array.shape}"
            + (" (use X.reshape(-1, 1) for one feature)" if array.ndim == 1 else "")
        )
    n, d = array.shape
    if n == 0 or d == 0:
        raise InvalidDataError(f"{name} is empty: shape {array.shape}")
    if array.dtype != np.float64 or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))
        row, col = bad[0]
        raise InvalidDataError(
            f"{name} contains {len(bad)} non-finite value(s) (NaN or inf); "
            f"first at row {row}, column {col}"
        )
    limit = max_abs_value(n)
    # from the column extremes: np.abs(array) would be a full copy of the data
    column_max = np.maximum(np.abs(array.max(axis=0)), np.abs(array.min(axis=0)))
    worst = int(np.argmax(column_max))
    if column_max[worst] > limit:
        raise InvalidDataError(
            f"{name} has values too large to fit: up to {column_max[worst]:.3g} in column "
            f"{worst}; with n = {n:,} points, |values| must be at most {limit:.3g} or the "
            "covariance overflows float64. Divide the data by a constant (e.g. each "
            "column by its standard deviation) and fit again"
        )
    return array


#: The largest float64, and the factor kept free under it: the sums of a few strategies
#: pass through intermediates a few times larger than the covariance itself.
_FLOAT_MAX = float(np.finfo(np.float64).max)
_HEADROOM = 4.0


def max_abs_value(n_points: int) -> float:
    """Largest ``|x|`` whose covariance over ``n_points`` points stays finite.

    ``n * (2 * max|x|)**2 * headroom <= float64 max`` (a deviation from a mean can be
    twice the largest value): about 3e150 for a million points, 2e152 for a few
    hundred.

    Parameters
    ----------
    n_points : int

    Returns
    -------
    float
    """
    return float(np.sqrt(_FLOAT_MAX / (4.0 * _HEADROOM * max(int(n_points), 1))))


def check_n_components(k: object, n_points: int) -> int:
    """Validate the number of mixture components against the number of points.

    Parameters
    ----------
    k : int
        Requested number of components.
    n_points : int
        Number of data points ``n``.

    Returns
    -------
    int
        ``k`` as a Python int.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidParameterError(f"k (number of components) must be an integer; got {k!r}")
    k = int(k)
    if k < 1:
        raise InvalidParameterError(f"k (number of components) must be >= 1; got {k}")
    if k > n_points:
        raise InvalidParameterError(
            f"k = {k} components is more than the {n_points} data points; "
            "every component needs at least one point"
        )
    return k


def check_workers(workers: object) -> int:
    """Validate a worker count (threads or processes) and return it as int."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise InvalidParameterError(f"workers must be an integer >= 1; got {workers!r}")
    workers = int(workers)
    if workers < 1:
        raise InvalidParameterError(f"workers must be >= 1; got {workers}")
    return workers


def look_up(
    table: Mapping[str, _T],
    name: object,
    what: str,
    *,
    valid: Iterable[str] | None = None,
    label: str = "valid names",
    error: type[Exception] = InvalidParameterError,
) -> _T:
    """``table``'s entry for a name a user gave (case and surrounding spaces ignored).

    Raises
    ------
    error
        ``unknown <what> <name>; <label>: <valid>`` (``valid``: the table's keys unless
        given).
    """
    found = table.get(str(name).strip().lower())
    if found is None:
        names = ", ".join(table if valid is None else valid)
        raise error(f"unknown {what} {name!r}; {label}: {names}")
    return found
