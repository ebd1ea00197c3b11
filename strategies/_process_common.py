"""Code shared by the process strategies: per-chunk maths, shared memory, worker state.

Three layers, all used by :mod:`strategies.multiprocessing_pool` and
:mod:`strategies.joblib_processes`:

* **Per-chunk maths** (:func:`fused_statistics`, :func:`e_step_rows`,
  :func:`m_step_rows`, and the per-component functions of the model-parallel
  variant). They run the compiled kernels of :mod:`kernels.gmm_kernels` when those are
  built and NumPy otherwise; both paths compute the same quantities, so a chunk's
  result does not depend on which one ran. Statistics are *shifted sums*
  (``sum r``, ``sum r (x - c)``, ``sum r (x - c)(x - c)^T`` with ``c`` the previous
  means), turned into centred statistics by
  :meth:`harness.model.gmm.SufficientStats.from_shifted_sums` in the parent.
* **Shared memory** (:class:`SharedArray`, :func:`attach`): arrays in
  :mod:`multiprocessing.shared_memory` segments, named so that a leak is easy to spot
  (``gmmh_<parent pid>_<random>`` in ``/dev/shm``).
* **Worker state and tasks**: the initializer and the task functions a
  ``ProcessPoolExecutor`` runs (``*_task``), and the joblib task functions
  (``joblib_*``), which receive their arrays as memmaps instead.

Parent-side helpers for pools (start method, worker thread environment, traffic
counters, stopping processes) are at the end. Nothing here times anything or writes
files.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import secrets
import signal
import struct
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory
from types import ModuleType
from typing import NamedTuple

import numpy as np
import psutil

from harness.model.errors import InvalidParameterError
from harness.model.gmm import DerivedParams
from harness.model.threads import THREAD_ENV_VARS

#: Rows processed at a time inside one task by the NumPy path. The (rows, k)
#: scratch arrays of a block stay at a few MB even for k = 50 (16384 * 50 * 8 B =
#: 6.5 MB), so a worker's memory does not grow with n, while each block is large
#: enough that the per-component Python loop (k small NumPy calls) costs under a
#: tenth of the arithmetic.
BLOCK_ROWS = 16_384

#: Start methods the strategies accept, and the default. ``forkserver`` (Python
#: 3.14's default on Linux) forks workers from a small server process that has
#: preloaded this module (and so NumPy): starting a worker costs a fork, not an
#: interpreter start as with ``spawn``, and unlike ``fork`` it never copies a parent
#: that may hold threads (the memory sampler, BLAS pools) or locks.
START_METHODS = ("fork", "spawn", "forkserver")
DEFAULT_START_METHOD = "forkserver"

#: Environment variable the runner sets to choose the start method for a whole sweep.
START_METHOD_ENV = "GMM_HARNESS_START_METHOD"

#: Prefix of every shared-memory segment this module creates.
SEGMENT_PREFIX = "gmmh_"

#: Seconds a worker waits at the start-up barrier for the others.
STARTUP_TIMEOUT = 120.0

#: Seconds workers get to exit after their pool is shut down before being killed.
EXIT_GRACE_SECONDS = 5.0


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------

_KERNEL_FUNCTIONS = ("fused", "e_step", "m_step")


def load_kernels() -> tuple[ModuleType | None, str]:
    """The compiled kernel module, or None with the reason it cannot be used.

    Returns
    -------
    module : module or None
        :mod:`kernels.gmm_kernels` when it is built and has the functions of the
        kernel contract (``fused``, ``e_step``, ``m_step``).
    reason : str
        Empty when the module is usable.
    """
    try:
        from kernels import gmm_kernels
    except ImportError as exc:
        return None, f"kernels.gmm_kernels is not built ({exc})"
    missing = [name for name in _KERNEL_FUNCTIONS if not hasattr(gmm_kernels, name)]
    if missing:
        return None, f"kernels.gmm_kernels lacks {', '.join(missing)}"
    return gmm_kernels, ""


def kernel_path(kernel: ModuleType | None) -> str:
    """``"cython"`` when the compiled kernels run, ``"numpy"`` otherwise."""
    return "numpy" if kernel is None else "cython"


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
# Per-chunk maths (NumPy path mirrors harness.model.gmm.log_weighted_density exactly)
# --------------------------------------------------------------------------------------


class _Scratch:
    """Block-sized work arrays, allocated once per task and reused for every block.

    Allocating them per block would cost more than the arithmetic in a fresh worker
    process: glibc serves these 0.1-1 MB requests with ``mmap`` (its threshold starts
    at 128 kB) or returns them to the kernel on ``free``, so every block would pay
    page faults. A process forked from a long-running parent inherits thresholds
    that have already grown, which is why this showed as ``forkserver`` and
    ``spawn`` workers running the NumPy path about 40% slower than ``fork`` ones.

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
        self.log_prob = np.empty((rows, k))


def _weighted_log_density_into(
    X: np.ndarray, model: ModelArrays, out: np.ndarray, scratch: _Scratch
) -> None:
    """``log w_k + log N(x | mu_k, Sigma_k)`` for a block of rows, into ``out``.

    Same arithmetic, in the same order, as :func:`harness.model.gmm.log_weighted_density`.

    Parameters
    ----------
    X : ndarray of float64, shape (b, d)
    model : ModelArrays
    out : ndarray of float64, shape (b, k)
        Overwritten.
    scratch : _Scratch
    """
    b = X.shape[0]
    projected, squared = scratch.points[:b], scratch.per_row[:b]
    for j in range(model.means.shape[0]):
        P = model.precision_cholesky[j]
        np.matmul(X, P, out=projected)
        projected -= model.means[j] @ P
        np.einsum("nd,nd->n", projected, projected, out=squared)
        out[:, j] = squared
    out *= -0.5
    out += model.log_norm


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


def _accumulate_shifted(
    X: np.ndarray,
    resp: np.ndarray,
    shift: np.ndarray,
    mass: np.ndarray,
    shifted_sum: np.ndarray,
    shifted_outer: np.ndarray,
    scratch: _Scratch,
) -> None:
    """Add one block's ``sum r``, ``sum r (x - c)`` and ``sum r (x - c)(x - c)^T``.

    Parameters
    ----------
    X : ndarray of float64, shape (b, d)
    resp : ndarray of float64, shape (b, k)
        Responsibilities (not logs).
    shift : ndarray of float64, shape (k, d)
    mass, shifted_sum, shifted_outer : ndarray of float64, shapes (k,), (k, d), (k, d, d)
        Accumulated in place.
    scratch : _Scratch
    """
    b = X.shape[0]
    diff, weighted = scratch.points[:b], scratch.weighted[:b]
    mass += resp.sum(axis=0)
    for j in range(shift.shape[0]):
        np.subtract(X, shift[j], out=diff)
        np.multiply(diff, resp[:, j : j + 1], out=weighted)
        shifted_sum[j] += weighted.sum(axis=0)
        shifted_outer[j] += weighted.T @ diff


def _zero_sums(k: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))


def _blocks(n: int) -> Iterator[slice]:
    for start in range(0, n, BLOCK_ROWS):
        yield slice(start, min(start + BLOCK_ROWS, n))


def fused_statistics(
    X: np.ndarray, model: ModelArrays, kernel: ModuleType | None
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """E-step and M-step sums over a chunk of rows, without keeping its responsibilities.

    Parameters
    ----------
    X : ndarray of float64, shape (m, d), C-contiguous
        The chunk's rows.
    model : ModelArrays
        Current parameters; their means are also the shift of the sums.
    kernel : module or None
        :mod:`kernels.gmm_kernels`, or None for the NumPy path.

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
    if kernel is not None:
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
    loglik = 0.0
    scratch = _Scratch(min(BLOCK_ROWS, X.shape[0]), d, k)
    for rows in _blocks(X.shape[0]):
        block = X[rows]
        log_prob = scratch.log_prob[: block.shape[0]]
        _weighted_log_density_into(block, model, log_prob, scratch)
        loglik += _normalise_rows_in_place(log_prob, scratch)
        resp = np.exp(log_prob, out=scratch.resp[: block.shape[0]])
        _accumulate_shifted(block, resp, model.means, mass, shifted_sum, shifted_outer, scratch)
    return loglik, mass, shifted_sum, shifted_outer


def e_step_rows(
    X: np.ndarray, model: ModelArrays, out: np.ndarray, kernel: ModuleType | None
) -> float:
    """Log responsibilities of a chunk of rows, written into ``out``.

    Parameters
    ----------
    X : ndarray of float64, shape (m, d)
    model : ModelArrays
    out : ndarray of float64, shape (m, k), C-contiguous
        Overwritten with log responsibilities (a slice of a shared buffer).
    kernel : module or None

    Returns
    -------
    float
        Sum over the chunk's rows of the log-likelihood.
    """
    if kernel is not None:
        loglik, _ = kernel.e_step(X, model.log_norm, model.means, model.precision_cholesky, out, 1)
        return float(loglik)
    k, d = model.means.shape
    scratch = _Scratch(min(BLOCK_ROWS, X.shape[0]), d, k)
    loglik = 0.0
    for rows in _blocks(X.shape[0]):
        _weighted_log_density_into(X[rows], model, out[rows], scratch)
        loglik += _normalise_rows_in_place(out[rows], scratch)
    return loglik


def m_step_rows(
    X: np.ndarray, log_resp: np.ndarray, shift: np.ndarray, kernel: ModuleType | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shifted sums of a chunk of rows from its log responsibilities.

    Parameters
    ----------
    X : ndarray of float64, shape (m, d)
    log_resp : ndarray of float64, shape (m, k), C-contiguous
    shift : ndarray of float64, shape (k, d)
    kernel : module or None

    Returns
    -------
    mass, shifted_sum, shifted_outer : ndarrays of shapes (k,), (k, d), (k, d, d)
    """
    k, d = shift.shape
    mass, shifted_sum, shifted_outer = _zero_sums(k, d)
    if kernel is not None:
        kernel.m_step(X, log_resp, shift, mass, shifted_sum, shifted_outer, 1)
        return mass, shifted_sum, shifted_outer
    scratch = _Scratch(min(BLOCK_ROWS, X.shape[0]), d, k)
    for rows in _blocks(X.shape[0]):
        resp = np.exp(log_resp[rows], out=scratch.resp[: rows.stop - rows.start])
        _accumulate_shifted(X[rows], resp, shift, mass, shifted_sum, shifted_outer, scratch)
    return mass, shifted_sum, shifted_outer


def component_log_density(X: np.ndarray, model: ModelArrays, j: int, out: np.ndarray) -> None:
    """Weighted log density of component ``j`` for every row, into column ``j`` of ``out``.

    The model-parallel split: one task per component. The compiled kernels take all
    components of a row at once, so this split always runs NumPy.

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


def chunk_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous row ranges covering ``range(n)``, sizes differing by at most 1."""
    parts = max(1, min(int(parts), n))
    edges = np.linspace(0, n, parts + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


# --------------------------------------------------------------------------------------
# Shared memory
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedArrayHandle:
    """What a worker needs to map a shared array: segment name, shape, dtype string."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


class _Mapping:
    """Owns the parent's mapping of a segment; closes it when nothing references it.

    The mapping is reached through :class:`Lease` objects only, never through
    ``segment.buf``: an array built on ``buf`` makes ``SharedMemory.close`` fail with
    ``BufferError`` while it exists, whereas here :meth:`SharedArray.release` can
    unlink the segment at once (the name leaves ``/dev/shm``) while a caller still
    holds an array returned by ``e_step`` (the pages go when that array does).
    """

    def __init__(self, segment: shared_memory.SharedMemory) -> None:
        probe = np.frombuffer(segment.buf, dtype=np.uint8, count=1)
        self.address = int(probe.ctypes.data)
        del probe  # release the buffer export at once; the address stays valid
        finalizer = weakref.finalize(self, segment.close)
        # At interpreter exit the OS unmaps everything; closing earlier could pull
        # the pages from under arrays that other exit handlers still read.
        finalizer.atexit = False


class Lease:
    """Presents memory owned by ``owner`` as an array, keeping ``owner`` alive.

    Every array built on a lease, and every view of such an array, has the lease as
    its ``base`` (NumPy collapses view chains down to the first non-array base), so a
    weak reference to the lease tells whether *anything* still refers to that
    memory. The strategies use this to reuse their (n, k) output buffer only when
    the caller has let go of the previous result.

    Parameters
    ----------
    owner : object
        Whatever keeps the memory valid (a :class:`_Mapping`, an ``np.memmap``).
    address : int
    shape : tuple of int
    dtype : dtype
    """

    def __init__(
        self, owner: object, address: int, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        self.owner = owner
        self.__array_interface__ = {
            "shape": tuple(shape),
            "typestr": np.dtype(dtype).str,
            "data": (int(address), False),
            "strides": None,
            "version": 3,
        }

    def array(self) -> np.ndarray:
        return np.asarray(self)


class SharedArray:
    """An ndarray in a new shared-memory segment (parent side).

    Parameters
    ----------
    shape : tuple of int
    dtype : dtype, default float64

    Attributes
    ----------
    handle : SharedArrayHandle
        Picklable; workers map the segment with :func:`attach`.
    address : int
        Where the parent has it mapped.
    """

    def __init__(self, shape: Sequence[int], dtype: np.dtype | type = np.float64) -> None:
        dtype = np.dtype(dtype)
        shape = tuple(int(size) for size in shape)
        nbytes = max(1, math.prod(shape) * dtype.itemsize)
        name = f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
        self._segment = shared_memory.SharedMemory(name=name, create=True, size=nbytes)
        self.handle = SharedArrayHandle(self._segment.name, shape, dtype.str)
        self._mapping: _Mapping | None = _Mapping(self._segment)
        self.address = self._mapping.address
        self._unlinked = False

    @classmethod
    def copy_of(cls, array: np.ndarray) -> SharedArray:
        """A shared copy of ``array``; the parent unmaps it afterwards (workers map it)."""
        shared = cls(array.shape, array.dtype)
        shared.lease().array()[...] = array
        shared._mapping = None
        return shared

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def nbytes(self) -> int:
        return self.handle.nbytes

    def lease(self) -> Lease:
        """A new lease on the parent's mapping (see :class:`Lease`)."""
        if self._mapping is None:
            raise InvalidParameterError(f"shared array {self.name} is not mapped here")
        return Lease(self._mapping, self.address, self.handle.shape, np.dtype(self.handle.dtype))

    def holds(self, array: object) -> bool:
        """``array`` is exactly this buffer: same memory, shape, dtype and C order."""
        return self._mapping is not None and same_buffer(
            array, self.address, self.handle.shape, np.dtype(self.handle.dtype)
        )

    def release(self) -> None:
        """Unlink the segment; safe to call twice.

        The name is removed from ``/dev/shm`` now; the memory is returned when every
        process and every array mapping it is gone.
        """
        self._mapping = None
        if self._unlinked:
            return
        self._unlinked = True
        with contextlib.suppress(FileNotFoundError):
            self._segment.unlink()


def same_buffer(array: object, address: int, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """``array`` covers exactly the C-ordered buffer at ``address`` with that shape/dtype."""
    return (
        isinstance(array, np.ndarray)
        and array.__array_interface__["data"][0] == address
        and array.shape == tuple(shape)
        and array.dtype == dtype
        and array.flags.c_contiguous
    )


#: Worker side: segments this process has mapped, by name.
_ATTACHED: dict[str, tuple[shared_memory.SharedMemory, np.ndarray]] = {}


def attach(handle: SharedArrayHandle) -> np.ndarray:
    """Map a shared array in a worker (cached: a segment is mapped once per process)."""
    cached = _ATTACHED.get(handle.name)
    if cached is not None:
        return cached[1]
    segment = shared_memory.SharedMemory(name=handle.name)
    array = np.ndarray(handle.shape, dtype=np.dtype(handle.dtype), buffer=segment.buf)
    _ATTACHED[handle.name] = (segment, array)
    return array


def detach(keep: Sequence[str] = ()) -> None:
    """Unmap every segment this worker mapped except those named in ``keep``."""
    for name in [name for name in _ATTACHED if name not in keep]:
        segment, array = _ATTACHED.pop(name)
        del array
        with contextlib.suppress(BufferError):
            segment.close()


# --------------------------------------------------------------------------------------
# Worker processes of the ProcessPoolExecutor strategies
# --------------------------------------------------------------------------------------


class _WorkerState:
    data: SharedArrayHandle | None = None
    kernel: ModuleType | None = None
    barrier: threading.Barrier | None = None


_WORKER = _WorkerState()


def limit_worker_threads() -> None:
    """Hold this process's BLAS and OpenMP pools to one thread (threadpoolctl).

    The environment variables set at start-up (:func:`worker_thread_env`) already do
    this for libraries loaded after them; this covers libraries a ``fork`` or
    ``forkserver`` child inherited already loaded.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def worker_report(kernel: ModuleType | None) -> dict[str, object]:
    """What a worker runs with: pid, kernel path, BLAS and OpenMP threads (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    pools = threadpool_info()
    blas = [pool["num_threads"] for pool in pools if pool["user_api"] == "blas"]
    openmp = [pool["num_threads"] for pool in pools if pool["user_api"] == "openmp"]
    return {
        "pid": os.getpid(),
        "kernel": kernel_path(kernel),
        "blas_threads": max(blas, default=1),
        "openmp_threads": max(openmp, default=1),
    }


#: Seconds between a worker's checks that the process that started the pool lives.
PARENT_CHECK_SECONDS = 1.0


_PARENT_WATCH: list[threading.Thread] = []


def _exit_when_parent_dies(parent: psutil.Process) -> None:
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        try:
            running = parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            running = False
        if not running:
            os._exit(1)


def watch_parent(parent_pid: int) -> None:
    """In a worker: end this process within a second once ``parent_pid`` is gone.

    A parent that crashes or is killed with SIGKILL runs no clean-up, and neither
    ``ProcessPoolExecutor`` nor loky workers notice: they would wait on their task
    queue forever (loky's only until its idle timeout). Once they exit, the
    resource trackers (multiprocessing's and loky's, which outlive the parent until
    the last process holding their pipe exits) unlink the shared-memory segments
    and delete the memmap folder. Started once per process; does nothing when
    called in the parent itself (joblib runs ``n_jobs=1`` in the calling process).
    """
    if _PARENT_WATCH or parent_pid == os.getpid():
        return
    # psutil.Process remembers the creation time: a recycled pid is not mistaken for it.
    parent = psutil.Process(parent_pid)
    thread = threading.Thread(
        target=_exit_when_parent_dies, args=(parent,), name="parent-watch", daemon=True
    )
    thread.start()
    _PARENT_WATCH.append(thread)


def init_worker(
    data: SharedArrayHandle, use_kernels: bool, barrier: object, parent_pid: int
) -> None:
    """ProcessPoolExecutor initializer: signals, parent watch, kernels, thread limits, map X.

    Ctrl-C reaches every process of the terminal's process group; workers ignore it
    so that only the parent reacts (its ``close()`` stops them), instead of every
    worker printing a traceback and the pool breaking half-way.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(parent_pid)
    _WORKER.kernel = load_kernels()[0] if use_kernels else None
    limit_worker_threads()
    _WORKER.data = data
    _WORKER.barrier = barrier  # type: ignore[assignment]
    attach(data)


def warmup_task() -> dict[str, object]:
    """First task of every worker: wait until all have started, then report.

    The barrier makes each worker run exactly one warm-up task, so ``prepare``
    returns only once every worker has started, mapped X and limited its threads.
    """
    if _WORKER.barrier is not None:
        _WORKER.barrier.wait(timeout=STARTUP_TIMEOUT)
    return worker_report(_WORKER.kernel)


def _data() -> np.ndarray:
    if _WORKER.data is None:
        raise RuntimeError("worker was not initialised with the data")
    return attach(_WORKER.data)


def _output(handle: SharedArrayHandle) -> np.ndarray:
    if _WORKER.data is not None:
        detach(keep=(_WORKER.data.name, handle.name))  # buffers of earlier k
    return attach(handle)


def fused_task(start: int, stop: int, model_blob: bytes) -> tuple:
    """One chunk of the fused iteration; returns ``(loglik_sum, mass, sum, outer)``."""
    return fused_statistics(_data()[start:stop], unpack_model(model_blob), _WORKER.kernel)


def e_step_task(start: int, stop: int, model_blob: bytes, out: SharedArrayHandle) -> float:
    """One chunk of the E-step, written into the shared output; returns its loglik sum."""
    log_resp = _output(out)
    return e_step_rows(
        _data()[start:stop], unpack_model(model_blob), log_resp[start:stop], _WORKER.kernel
    )


def m_step_task(start: int, stop: int, shift_blob: bytes, log_resp: SharedArrayHandle) -> tuple:
    """One chunk of the M-step from the shared responsibilities; returns shifted sums."""
    resp = _output(log_resp)
    return m_step_rows(
        _data()[start:stop], resp[start:stop], unpack_array(shift_blob), _WORKER.kernel
    )


def component_density_task(j: int, model_blob: bytes, out: SharedArrayHandle) -> None:
    """Model-parallel E-step, first phase: column ``j`` of the weighted log densities."""
    component_log_density(_data(), unpack_model(model_blob), j, _output(out))


def normalise_task(start: int, stop: int, out: SharedArrayHandle) -> float:
    """Model-parallel E-step, second phase: normalise a chunk of rows in place."""
    return normalise_rows(_output(out)[start:stop])


def component_stats_task(j: int, log_resp: SharedArrayHandle) -> tuple:
    """Model-parallel M-step: mass, mean and centred scatter of component ``j``."""
    return component_statistics(_data(), _output(log_resp), j)


# --------------------------------------------------------------------------------------
# joblib (loky) worker tasks: arrays arrive as memmaps, passed by file reference
# --------------------------------------------------------------------------------------

_JOBLIB_KERNEL: dict[bool, ModuleType | None] = {}


class JoblibTaskContext(NamedTuple):
    """What every joblib task carries besides its data: kernel choice, parent pid."""

    use_kernels: bool
    parent_pid: int


def _joblib_kernel(context: JoblibTaskContext) -> ModuleType | None:
    """The kernel module (loaded once per worker); starts the parent watch on first use."""
    watch_parent(context.parent_pid)
    if context.use_kernels not in _JOBLIB_KERNEL:
        _JOBLIB_KERNEL[context.use_kernels] = load_kernels()[0] if context.use_kernels else None
    return _JOBLIB_KERNEL[context.use_kernels]


def joblib_warmup(
    X: np.ndarray | None, context: JoblibTaskContext, pause: float
) -> dict[str, object]:
    """Start-up task: load kernels, touch X (so its memmap is in place), report threads."""
    kernel = _joblib_kernel(context)
    if X is not None:
        float(X[0, 0])
    time.sleep(pause)  # keeps a worker busy, so the batch reaches every worker
    return worker_report(kernel)


def joblib_fused(
    X: np.ndarray, start: int, stop: int, model_blob: bytes, context: JoblibTaskContext
) -> tuple:
    """:func:`fused_task` for joblib: ``X`` is the memmap joblib passed by reference."""
    return fused_statistics(X[start:stop], unpack_model(model_blob), _joblib_kernel(context))


def joblib_e_step(
    X: np.ndarray,
    start: int,
    stop: int,
    model_blob: bytes,
    out: np.ndarray,
    context: JoblibTaskContext,
) -> float:
    """:func:`e_step_task` for joblib: ``out`` is a writable memmap of shape (n, k)."""
    return e_step_rows(
        X[start:stop], unpack_model(model_blob), out[start:stop], _joblib_kernel(context)
    )


def joblib_m_step(
    X: np.ndarray,
    start: int,
    stop: int,
    shift_blob: bytes,
    log_resp: np.ndarray,
    context: JoblibTaskContext,
) -> tuple:
    """:func:`m_step_task` for joblib."""
    return m_step_rows(
        X[start:stop], log_resp[start:stop], unpack_array(shift_blob), _joblib_kernel(context)
    )


# --------------------------------------------------------------------------------------
# Parent side: start method, worker environment, traffic, stopping processes
# --------------------------------------------------------------------------------------


def resolve_start_method(start_method: str | None) -> str:
    """The start method to use: the argument, else ``$GMM_HARNESS_START_METHOD``, else
    :data:`DEFAULT_START_METHOD`.

    Raises
    ------
    InvalidParameterError
        For a name that is not one of :data:`START_METHODS` or not supported here.
    """
    source = "start_method"
    if start_method is None:
        start_method = os.environ.get(START_METHOD_ENV) or None
        source = f"${START_METHOD_ENV}"
    if start_method is None:
        return DEFAULT_START_METHOD
    value = str(start_method).strip().lower()
    import multiprocessing

    supported = [m for m in START_METHODS if m in multiprocessing.get_all_start_methods()]
    if value not in supported:
        raise InvalidParameterError(
            f"{source} must be one of {', '.join(supported)}; got {start_method!r}"
        )
    return value


@contextlib.contextmanager
def worker_thread_env() -> Iterator[None]:
    """Set the thread variables to 1 while workers start, so that they inherit them.

    Numeric libraries read these once, when they load; a spawned worker (or the
    forkserver, if it starts now) loads NumPy after inheriting them. The parent's
    own libraries are already loaded and unaffected.
    """
    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    os.environ.update(dict.fromkeys(THREAD_ENV_VARS, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _io_chars(process: psutil.Process) -> tuple[int, int] | None:
    try:
        counters = process.io_counters()
    except (psutil.Error, AttributeError, NotImplementedError):
        return None
    read = getattr(counters, "read_chars", None)
    written = getattr(counters, "write_chars", None)
    if read is None or written is None:
        return None
    return int(read), int(written)


class WorkerTraffic:
    """Bytes the workers read (tasks) and wrote (results) per iteration.

    Measured, not estimated: Linux counts every byte a process moves through
    ``read``/``write`` calls (``/proc/<pid>/io`` ``rchar``/``wchar``, via psutil). Workers
    do no other I/O while they compute (data and outputs are memory-mapped, which
    these counters do not see), so the counts are the pickled tasks and results plus
    the pipes' framing. ``None`` where the platform has no such counters.

    Parameters
    ----------
    processes : list of psutil.Process
    """

    def __init__(self, processes: Sequence[psutil.Process]) -> None:
        self._processes = list(processes)
        self._last: tuple[int, int] | None = None
        self.per_iteration: list[tuple[int, int]] = []
        self._open = False

    def _totals(self) -> tuple[int, int] | None:
        read = written = 0
        for process in self._processes:
            chars = _io_chars(process)
            if chars is None:
                return None
            read += chars[0]
            written += chars[1]
        return read, written

    def begin_iteration(self) -> None:
        """Close the running iteration (if any) and start counting a new one."""
        totals = self._totals()
        if totals is None:
            return
        if self._open and self._last is not None:
            self.per_iteration.append((totals[0] - self._last[0], totals[1] - self._last[1]))
        self._last = totals
        self._open = True

    def summary(self) -> dict[str, object]:
        """Median bytes to / from workers per iteration, including the running one."""
        samples = list(self.per_iteration)
        totals = self._totals()
        if self._open and totals is not None and self._last is not None:
            current = (totals[0] - self._last[0], totals[1] - self._last[1])
            if current != (0, 0):
                samples.append(current)
        if not samples:
            return {"bytes_to_workers": None, "bytes_from_workers": None, "iterations_measured": 0}
        to_workers, from_workers = np.median(np.array(samples, dtype=float), axis=0)
        return {
            "bytes_to_workers": float(to_workers),
            "bytes_from_workers": float(from_workers),
            "iterations_measured": len(samples),
        }


def alive(process: psutil.Process) -> bool:
    """Running (not exited, not a zombie waiting to be reaped)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_processes(
    processes: Sequence[psutil.Process], *, terminate_first: bool, grace: float = EXIT_GRACE_SECONDS
) -> None:
    """Make sure worker processes end: optionally SIGTERM at once, then wait, then SIGKILL.

    Processes are only signalled, never waited for with ``waitpid``: their pool
    reaps them, and reaping here would leave the pool waiting for a status it can no
    longer collect. psutil refuses to signal a pid that was reused by another process.
    """
    if terminate_first:
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.terminate()
    deadline = time.monotonic() + grace
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.02)
    for process in processes:
        if alive(process):
            with contextlib.suppress(psutil.Error):
                process.kill()
    deadline = time.monotonic() + grace
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.02)
