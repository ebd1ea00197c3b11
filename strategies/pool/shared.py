"""Shared memory of the process strategies: arrays workers map instead of receiving.

* :class:`SharedArray` (parent side) and :func:`attach` (worker side):
  :mod:`multiprocessing.shared_memory` segments, named so that a leak is easy to spot
  (``gmmh_<parent pid>_<random>`` in ``/dev/shm``).
* :class:`MemmapArray`: a file-backed ``np.memmap`` in joblib's temporary folder,
  for the loky dispatcher (joblib passes memmaps to workers by reference).
* :class:`Lease`: how a result array handed to the caller keeps its memory alive,
  and how a strategy knows whether the caller still holds it.

No processes are started or stopped here, and nothing is timed.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from harness.model.errors import InvalidParameterError

#: Prefix of every shared-memory segment and temporary folder the strategies create.
SEGMENT_PREFIX = "gmmh_"


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

    @property
    def shape(self) -> tuple[int, ...]:
        return self.handle.shape

    @property
    def ref(self) -> SharedArrayHandle:
        """What a task receives to map this array (:func:`attach`)."""
        return self.handle

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


class MemmapArray:
    """An (n, k) float64 ``np.memmap`` opened ``w+`` in ``folder`` (parent side).

    The interface of :class:`SharedArray` that the strategies use (``lease``,
    ``holds``, ``release``, ``ref``), so one base class serves both dispatchers.
    ``ref`` is the memmap itself: joblib passes memmap arguments to its workers by
    file reference, whatever its ``max_nbytes``.
    """

    def __init__(self, folder: str, shape: Sequence[int]) -> None:
        self.path = os.path.join(folder, f"log_resp_{secrets.token_hex(6)}.mmap")
        self.ref = np.memmap(self.path, dtype=np.float64, mode="w+", shape=tuple(shape))
        self.shape = tuple(self.ref.shape)

    @property
    def nbytes(self) -> int:
        return int(self.ref.nbytes)

    def lease(self) -> Lease:
        return Lease(self.ref, self.ref.ctypes.data, self.shape, self.ref.dtype)

    def holds(self, array: object) -> bool:
        return same_buffer(array, self.ref.ctypes.data, self.shape, self.ref.dtype)

    def release(self) -> None:
        """Unlink the file; its pages live on while an array maps them."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
