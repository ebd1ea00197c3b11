# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""nogil Cython kernels for the micro-problems (summarize, pairwise) and the race demo.

Numeric code only: no policy, no timing, no I/O. The ``def`` functions check their
range arguments (a bad range is a ``ValueError``, never an out-of-bounds read), release
the GIL and run ``cdef ... noexcept nogil`` code.

Kernels
-------
``summarize_range(x, start, stop)``
    Sum of ``x[start:stop]``, one thread. Four independent accumulators (lanes) added
    in a fixed order at the end: the compiler may vectorise it without reassociating.
``pairwise_rows(x, start, stop)``
    ``sum_{i in [start, stop)} sum_{j < n} x_i * x_j``, one thread. O(n * rows) by
    construction: the product is taken per pair, never factored out. Each row's inner
    sum runs in four lanes; row totals are added with Neumaier's compensated
    summation, so the order of rows costs nothing in accuracy.
``summarize_openmp(x, num_threads)``, ``pairwise_openmp(x, num_threads)``
    ``prange`` (static schedule, one contiguous block per thread) with an OpenMP
    ``reduction(+)`` over the blocks' results; each block runs the serial code above,
    so the per-element work is the same as on one thread.
``race_unprotected``, ``race_atomic``, ``race_reduction``
    A counter incremented ``n`` times under ``prange``: with no protection (it is meant
    to lose updates), with ``#pragma omp atomic``, and as a ``reduction(+)``. Each
    opens a parallel region whose threads meet at a barrier before the loop, so they
    run it at the same time.

The thread count is decided by :func:`effective_threads` (exactly ``num_threads`` when
OpenMP is enabled, 1 otherwise), as in :mod:`kernels.gmm_kernels`.
"""

import os

from cython.parallel cimport parallel, prange

cdef extern from *:
    """
    #ifdef _OPENMP
    #define MICRO_OPENMP_COMPILED 1
    #else
    #define MICRO_OPENMP_COMPILED 0
    #endif
    #ifndef GMM_BUILD_OPENMP_NOTE
    #define GMM_BUILD_OPENMP_NOTE ""
    #endif

    /* The racy update. The counter is read and written through a volatile pointer to
       one shared location: the compiler must load and store it on every call, so it
       can neither keep it in a register nor turn the loop into a reduction, and two
       threads that read the same value both write value + 1 (one update lost). */
    static void micro_racy_increment(long long *counter) {
        volatile long long *shared = counter;
        long long seen = *shared;
        *shared = seen + 1;
    }

    /* The protected update: an OpenMP atomic read-modify-write (ignored, like every
       OpenMP pragma, in a build without OpenMP, where the loop runs on one thread). */
    static void micro_atomic_increment(long long *counter) {
        #pragma omp atomic
        *counter += 1;
    }

    /* All threads of the enclosing parallel region wait here for each other, so that
       their loops start together instead of one after the other (thread wake-up can
       take longer than a short loop). A no-op without OpenMP. */
    static void micro_barrier(void) {
        #pragma omp barrier
    }
    """
    int MICRO_OPENMP_COMPILED
    const char* GMM_BUILD_OPENMP_NOTE
    void micro_racy_increment(long long *counter) noexcept nogil
    void micro_atomic_increment(long long *counter) noexcept nogil
    void micro_barrier() noexcept nogil

# Same variable and meaning as in kernels.gmm_kernels (read once, at import).
DISABLE_OPENMP_ENV = "GMM_HARNESS_DISABLE_OPENMP"
cdef bint _OPENMP_DISABLED = os.environ.get(DISABLE_OPENMP_ENV, "").strip() == "1"


def openmp_enabled():
    """Compiled with OpenMP and not disabled by ``GMM_HARNESS_DISABLE_OPENMP=1``."""
    return bool(MICRO_OPENMP_COMPILED) and not _OPENMP_DISABLED


def openmp_unavailable_reason():
    """Why these kernels cannot run on several threads here, or None when they can."""
    if not MICRO_OPENMP_COMPILED:
        note = GMM_BUILD_OPENMP_NOTE.decode() or "no -fopenmp"
        return f"micro kernels built without OpenMP ({note})"
    if _OPENMP_DISABLED:
        return f"OpenMP disabled at run time by {DISABLE_OPENMP_ENV}=1"
    return None


def effective_threads(num_threads):
    """The OpenMP thread count a kernel call uses: ``num_threads`` with OpenMP, else 1.

    Raises
    ------
    ValueError
        If ``num_threads`` is not an integer >= 1.
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, int):
        raise ValueError(f"num_threads must be an integer >= 1; got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1; got {num_threads}")
    return int(num_threads) if openmp_enabled() else 1


# ---- serial building blocks ---------------------------------------------------------


cdef double _sum_range(const double *x, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef Py_ssize_t i = start
    while i + 4 <= stop:
        a0 += x[i]
        a1 += x[i + 1]
        a2 += x[i + 2]
        a3 += x[i + 3]
        i += 4
    while i < stop:
        a0 += x[i]
        i += 1
    return (a0 + a1) + (a2 + a3)


cdef double _row_sum(const double *x, Py_ssize_t n, double xi) noexcept nogil:
    """sum_j xi * x[j]: one multiplication per pair (the work being measured)."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef Py_ssize_t j = 0
    while j + 4 <= n:
        a0 += xi * x[j]
        a1 += xi * x[j + 1]
        a2 += xi * x[j + 2]
        a3 += xi * x[j + 3]
        j += 4
    while j < n:
        a0 += xi * x[j]
        j += 1
    return (a0 + a1) + (a2 + a3)


cdef double _pairwise_rows(const double *x, Py_ssize_t n, Py_ssize_t start,
                           Py_ssize_t stop) noexcept nogil:
    # Neumaier's compensated sum of the row totals.
    cdef double total = 0.0, compensation = 0.0, value, t
    cdef Py_ssize_t i
    for i in range(start, stop):
        value = _row_sum(x, n, x[i])
        t = total + value
        if (total if total >= 0 else -total) >= (value if value >= 0 else -value):
            compensation += (total - t) + value
        else:
            compensation += (value - t) + total
        total = t
    return total + compensation


def _check_range(Py_ssize_t n, Py_ssize_t start, Py_ssize_t stop):
    if not (0 <= start <= stop <= n):
        raise ValueError(f"range [{start}, {stop}) is not within [0, {n})")


# ---- kernels ------------------------------------------------------------------------


def summarize_range(const double[::1] x, Py_ssize_t start, Py_ssize_t stop):
    """Sum of ``x[start:stop]`` on one thread (lanes, fixed order).

    Parameters
    ----------
    x : ndarray of float64, shape (n,), C-contiguous (in)
    start, stop : int
        ``0 <= start <= stop <= n``.

    Returns
    -------
    float
    """
    _check_range(x.shape[0], start, stop)
    cdef double total
    cdef const double *data = &x[0] if x.shape[0] > 0 else NULL
    with nogil:
        total = _sum_range(data, start, stop) if stop > start else 0.0
    return total


def pairwise_rows(const double[::1] x, Py_ssize_t start, Py_ssize_t stop):
    """``sum_{start <= i < stop} sum_{0 <= j < n} x_i x_j`` on one thread.

    Parameters
    ----------
    x : ndarray of float64, shape (n,), C-contiguous (in)
    start, stop : int
        Rows ``i`` to cover, ``0 <= start <= stop <= n``.

    Returns
    -------
    float
    """
    _check_range(x.shape[0], start, stop)
    cdef double total
    cdef const double *data = &x[0] if x.shape[0] > 0 else NULL
    cdef Py_ssize_t n = x.shape[0]
    with nogil:
        total = _pairwise_rows(data, n, start, stop) if stop > start else 0.0
    return total


def summarize_openmp(const double[::1] x, int num_threads):
    """Sum of ``x``: ``prange`` over one block per thread with a ``reduction(+)``.

    Parameters
    ----------
    x : ndarray of float64, shape (n,), C-contiguous (in)
    num_threads : int
        OpenMP threads (see :func:`effective_threads`).

    Returns
    -------
    float
    """
    cdef int threads = effective_threads(num_threads)
    cdef Py_ssize_t n = x.shape[0]
    cdef const double *data = &x[0] if x.shape[0] > 0 else NULL
    cdef double total = 0.0
    cdef Py_ssize_t block
    cdef Py_ssize_t blocks = min(<Py_ssize_t> threads, n)
    if n == 0:
        return 0.0
    for block in prange(blocks, nogil=True, schedule="static", num_threads=threads):
        total += _sum_range(data, block * n // blocks, (block + 1) * n // blocks)
    return total


def pairwise_openmp(const double[::1] x, int num_threads):
    """``sum_{i,j} x_i x_j``: ``prange`` over one block of rows per thread, ``reduction(+)``.

    Parameters
    ----------
    x : ndarray of float64, shape (n,), C-contiguous (in)
    num_threads : int

    Returns
    -------
    float
    """
    cdef int threads = effective_threads(num_threads)
    cdef Py_ssize_t n = x.shape[0]
    cdef const double *data = &x[0] if x.shape[0] > 0 else NULL
    cdef double total = 0.0
    cdef Py_ssize_t block
    cdef Py_ssize_t blocks = min(<Py_ssize_t> threads, n)
    if n == 0:
        return 0.0
    for block in prange(blocks, nogil=True, schedule="static", num_threads=threads):
        total += _pairwise_rows(data, n, block * n // blocks, (block + 1) * n // blocks)
    return total


# ---- the race demo ------------------------------------------------------------------


def race_unprotected(Py_ssize_t n, int num_threads):
    """Increment one shared counter ``n`` times under ``prange`` with no protection.

    Meant to be wrong with more than one thread: concurrent read-modify-writes lose
    updates. Returns the final count (``n`` when no update was lost).
    """
    cdef int threads = effective_threads(num_threads)
    cdef long long counter = 0
    cdef long long *shared = &counter
    cdef Py_ssize_t i
    with nogil, parallel(num_threads=threads):
        micro_barrier()
        for i in prange(n, schedule="static"):
            micro_racy_increment(shared)
    return counter


def race_atomic(Py_ssize_t n, int num_threads):
    """The same counter, each increment an OpenMP atomic (``#pragma omp atomic``)."""
    cdef int threads = effective_threads(num_threads)
    cdef long long counter = 0
    cdef long long *shared = &counter
    cdef Py_ssize_t i
    with nogil, parallel(num_threads=threads):
        micro_barrier()
        for i in prange(n, schedule="static"):
            micro_atomic_increment(shared)
    return counter


def race_reduction(Py_ssize_t n, int num_threads):
    """The same count as an OpenMP ``reduction(+)``: per-thread copies added at the end."""
    cdef int threads = effective_threads(num_threads)
    cdef long long counter = 0
    cdef Py_ssize_t i
    with nogil, parallel(num_threads=threads):
        micro_barrier()
        for i in prange(n, schedule="static"):
            counter += 1
    return counter
