"""Per-chunk maths of the process strategies: what one task computes on its rows.

* The data-parallel tasks (:func:`fused_statistics`, :func:`e_step_rows`,
  :func:`m_step_rows`) run the compiled kernels of :mod:`kernels.gmm_kernels` on one
  thread; the kernels are a requirement of those strategies, which are listed
  unavailable (with the reason) where they are not built. Statistics are *shifted
  sums* (``sum r``, ``sum r (x - c)``, ``sum r (x - c)(x - c)^T`` with ``c`` the
  previous means), turned into centred statistics by
  :meth:`harness.model.gmm.SufficientStats.from_shifted_sums` in the parent.
* The model-parallel tasks (:func:`component_log_density`, :func:`normalise_rows`,
  :func:`component_statistics`) are NumPy: no compiled kernel computes one
  component's unnormalised densities, which is what the seed's split needs.
* Parameters travel as one small ``bytes`` message (:func:`pack_model`).

Pure functions of their arguments: no processes, no shared memory, no timing.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import NamedTuple

import numpy as np

import kernels
from harness.model.errors import InvalidParameterError
from harness.model.gmm import DerivedParams

#: Rows processed at a time inside one model-parallel (NumPy) task. The (rows, k)
#: scratch arrays of a block stay at a few MB even for k = 50 (16384 * 50 * 8 B =
#: 6.5 MB), so a worker's memory does not grow with n, while each block is large
#: enough that the per-component Python loop (k small NumPy calls) costs under a
#: tenth of the arithmetic.
BLOCK_ROWS = 16_384

_KERNEL_FUNCTIONS = ("fused", "e_step", "m_step")


def kernel_unavailable_reason() -> str | None:
    """Why the data-parallel tasks cannot run here (kernels not built), or None."""
    reason = kernels.unavailable_reason()
    if reason is not None:
        return reason
    missing = [name for name in _KERNEL_FUNCTIONS if not hasattr(kernels.load(), name)]
    return f"kernels.gmm_kernels lacks {', '.join(missing)}" if missing else None


def load_kernels() -> ModuleType:
    """The compiled kernel module (:func:`kernels.load`; raises ImportError if not built)."""
    return kernels.load()


# --------------------------------------------------------------------------------------
# Model parameters as one small message
# --------------------------------------------------------------------------------------


class ModelArrays(NamedTuple):
    """What a chunk needs from :class:`~harness.model.gmm.DerivedParams`.

    Attributes
    ----------
    log_norm : ndarray of float64, shape (k,)
    means : ndarray of float64, shape (k, d)
    precision_cholesky : ndarray of float64, shape (k, d, d)
    """

    log_norm: np.ndarray
    means: np.ndarray
    precision_cholesky: np.ndarray


_HEADER = struct.Struct("<qq")


def pack_model(derived: DerivedParams) -> bytes:
    """Serialise the E-step inputs into one ``bytes`` object.

    ``bytes`` pickle with a few bytes of overhead (three arrays would carry their
    dtype and shape each), and joblib never memmaps them, whatever ``max_nbytes``.

    Returns
    -------
    bytes
        ``k, d`` as two int64, then ``log_norm``, ``means``, ``precision_cholesky``.
    """
    k, d = derived.means.shape
    return b"".join(
        (
            _HEADER.pack(k, d),
            np.ascontiguousarray(derived.log_norm, dtype=np.float64).tobytes(),
            np.ascontiguousarray(derived.means, dtype=np.float64).tobytes(),
            np.ascontiguousarray(derived.precision_cholesky, dtype=np.float64).tobytes(),
        )
    )


def unpack_model(blob: bytes) -> ModelArrays:
    """Inverse of :func:`pack_model`; the arrays are fresh, writable and C-contiguous."""
    k, d = _HEADER.unpack_from(blob)
    values = np.frombuffer(blob, dtype=np.float64, offset=_HEADER.size).copy()
    if values.size != k + k * d + k * d * d:
        raise InvalidParameterError(
            f"model message of {len(blob)} bytes does not hold k={k}, d={d}"
        )
    log_norm = values[:k]
    means = values[k : k + k * d].reshape(k, d)
    precision_cholesky = values[k + k * d :].reshape(k, d, d)
    return ModelArrays(log_norm, means, precision_cholesky)


def pack_array(array: np.ndarray) -> bytes:
    """A float64 array of at most 3 dimensions as ``bytes`` (shape in the header)."""
    array = np.ascontiguousarray(array, dtype=np.float64)
    shape = (*array.shape, *(1,) * (3 - array.ndim))
    return struct.pack("<qqqq", array.ndim, *shape) + array.tobytes()


def unpack_array(blob: bytes) -> np.ndarray:
    """Inverse of :func:`pack_array`."""
    ndim, *shape = struct.unpack_from("<qqqq", blob)
    values = np.frombuffer(blob, dtype=np.float64, offset=32).copy()
    return values.reshape(shape[:ndim])


# --------------------------------------------------------------------------------------
# Data-parallel chunks: the compiled kernels on one thread
# --------------------------------------------------------------------------------------


def _zero_sums(k: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))


def fused_statistics(
    X: np.ndarray, model: ModelArrays, kernel: ModuleType
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """E-step and M-step sums over a chunk of rows, without keeping its responsibilities.

    Parameters
    ----------
    X : ndarray of float64, shape (m, d), C-contiguous
        The chunk's rows.
    model : ModelArrays
        Current parameters; their means are also the shift of the sums.
    kernel : module
        :mod:`kernels.gmm_kernels`.

    Returns
    -------
    loglik_sum : float
        Sum over the chunk's rows of ``log sum_k w_k N(x | k)``.
    mass : ndarray of float64, shape (k,)
    shifted_sum : ndarray of float64, shape (k, d)
    shifted_outer : ndarray of float64, shape (k, d, d)
    """
    k, d = model.means.shape
    mass, shifted_sum, shifted_outer = _zero_sums(k, d)
    loglik, _ = kernel.fused(
        X,
        model.log_norm,
        model.means,
        model.precision_cholesky,
        model.means,
        mass,
        shifted_sum,
        shifted_outer,
        1,
    )
    return float(loglik), mass, shifted_sum, shifted_outer


def e_step_rows(X: np.ndarray, model: ModelArrays, out: np.ndarray, kernel: ModuleType) -> float:
    """Log responsibilities of a chunk of rows, written into ``out``.

    Parameters
    ----------
    X : ndarray of float64, shape (m, d)
    model : ModelArrays
    out : ndarray of float64, shape (m, k), C-contiguous
        Overwritten with log responsibilities (a slice of a shared buffer).
    kernel : module

    Returns
    -------
    float
        Sum over the chunk's rows of the log-likelihood.
    """
    loglik, _ = kernel.e_step(X, model.log_norm, model.means, model.precision_cholesky, out, 1)
    return float(loglik)


def m_step_rows(
    X: np.ndarray, log_resp: np.ndarray, shift: np.ndarray, kernel: ModuleType
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shifted sums of a chunk of rows from its log responsibilities.

    Parameters
    ----------
    X : ndarray of float64, shape (m, d)
    log_resp : ndarray of float64, shape (m, k), C-contiguous
    shift : ndarray of float64, shape (k, d)
    kernel : module

    Returns
    -------
    mass, shifted_sum, shifted_outer : ndarrays of shapes (k,), (k, d), (k, d, d)
    """
    k, d = shift.shape
    mass, shifted_sum, shifted_outer = _zero_sums(k, d)
    kernel.m_step(X, log_resp, shift, mass, shifted_sum, shifted_outer, 1)
    return mass, shifted_sum, shifted_outer


def chunk_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous row ranges covering ``range(n)``, sizes differing by at most 1."""
    parts = max(1, min(int(parts), n))
    edges = np.linspace(0, n, parts + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


# --------------------------------------------------------------------------------------
# Model-parallel tasks (NumPy, blocks of rows; same arithmetic as harness.model.gmm)
# --------------------------------------------------------------------------------------


class _Scratch:
    """Block-sized work arrays, allocated once per task and reused for every block.

    Allocating them per block would cost more than the arithmetic in a fresh worker
    process: glibc serves these 0.1-1 MB requests with ``mmap`` (its threshold starts
    at 128 kB) or returns them to the kernel on ``free``, so every block would pay
    page faults. A process forked from a long-running parent inherits thresholds
    that have already grown, so without reuse ``forkserver`` and ``spawn`` workers
    would be slower than ``fork`` ones.

    Parameters
    ----------
    rows : int
        Block size, ``min(BLOCK_ROWS, rows of the task)``.
    d, k : int
    """

    def __init__(self, rows: int, d: int, k: int) -> None:
        self.points = np.empty((rows, d))  # projected or centred points
        self.weighted = np.empty((rows, d))  # centred points times one responsibility
        self.per_row = np.empty(rows)  # one value per row
        self.row_max = np.empty(rows)
        self.resp = np.empty((rows, k))  # responsibilities, or exp() scratch


def _normalise_rows_in_place(log_prob: np.ndarray, scratch: _Scratch) -> float:
    """Max-shifted log-sum-exp over components, in place; returns the sum of row norms.

    The same steps as ``scipy.special.logsumexp`` (rows whose maximum is not finite
    are shifted by 0), on preallocated arrays.

    Parameters
    ----------
    log_prob : ndarray of float64, shape (b, k)
        Weighted log densities, overwritten with log responsibilities.
    scratch : _Scratch
    """
    b = log_prob.shape[0]
    top = np.max(log_prob, axis=1, out=scratch.row_max[:b])
    np.copyto(top, 0.0, where=~np.isfinite(top))
    shifted = scratch.resp[:b]
    np.subtract(log_prob, top[:, None], out=shifted)
    np.exp(shifted, out=shifted)
    norm = np.sum(shifted, axis=1, out=scratch.per_row[:b])
    with np.errstate(divide="ignore"):  # a row with no mass: log 0 = -inf, as logsumexp
        np.log(norm, out=norm)
    norm += top
    log_prob -= norm[:, None]
    return float(norm.sum())


def _blocks(n: int) -> Iterator[slice]:
    for start in range(0, n, BLOCK_ROWS):
        yield slice(start, min(start + BLOCK_ROWS, n))


def component_log_density(X: np.ndarray, model: ModelArrays, j: int, out: np.ndarray) -> None:
    """Weighted log density of component ``j`` for every row, into column ``j`` of ``out``.

    The model-parallel split: one task per component, in NumPy (no compiled kernel
    returns one component's densities before normalisation).

    Parameters
    ----------
    X : ndarray of float64, shape (n, d)
    model : ModelArrays
    j : int
    out : ndarray of float64, shape (n, k)
        Column ``j`` is overwritten.
    """
    P = model.precision_cholesky[j]
    centre = model.means[j] @ P
    scratch = _Scratch(min(BLOCK_ROWS, X.shape[0]), X.shape[1], 1)
    for rows in _blocks(X.shape[0]):
        b = rows.stop - rows.start
        projected, squared = scratch.points[:b], scratch.per_row[:b]
        np.matmul(X[rows], P, out=projected)
        projected -= centre
        np.einsum("nd,nd->n", projected, projected, out=squared)
        squared *= -0.5
        squared += model.log_norm[j]
        out[rows, j] = squared


def normalise_rows(log_prob: np.ndarray) -> float:
    """Normalise a chunk of rows of weighted log densities in place, block by block.

    Returns
    -------
    float
        Sum over the rows of the log-likelihood.
    """
    scratch = _Scratch(min(BLOCK_ROWS, log_prob.shape[0]), 1, log_prob.shape[1])
    return sum(
        _normalise_rows_in_place(log_prob[rows], scratch) for rows in _blocks(log_prob.shape[0])
    )


def component_statistics(
    X: np.ndarray, log_resp: np.ndarray, j: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mass, mean and centred scatter of component ``j`` over all rows (two passes).

    Parameters
    ----------
    X : ndarray of float64, shape (n, d)
    log_resp : ndarray of float64, shape (n, k)
    j : int

    Returns
    -------
    mass : float
    mean : ndarray of float64, shape (d,)
        0 when ``mass`` is 0, as the reference.
    scatter : ndarray of float64, shape (d, d)
    """
    d = X.shape[1]
    scratch = _Scratch(min(BLOCK_ROWS, X.shape[0]), d, 1)
    mass = 0.0
    weighted_sum = np.zeros(d)
    for rows in _blocks(X.shape[0]):
        resp = np.exp(log_resp[rows, j], out=scratch.per_row[: rows.stop - rows.start])
        mass += float(resp.sum())
        weighted_sum += resp @ X[rows]
    mean = weighted_sum / (mass if mass > 0 else 1.0)
    scatter = np.zeros((d, d))
    for rows in _blocks(X.shape[0]):
        b = rows.stop - rows.start
        resp = np.exp(log_resp[rows, j], out=scratch.per_row[:b])
        diff, weighted = scratch.points[:b], scratch.weighted[:b]
        np.subtract(X[rows], mean, out=diff)
        np.multiply(diff, resp[:, None], out=weighted)
        scatter += weighted.T @ diff
    return mass, mean, scatter
