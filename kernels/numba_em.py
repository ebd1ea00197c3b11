"""Numba kernels for GMM EM: the same chunked, fixed-order computation as the Cython ones.

Numeric code only: no policy (thread counts, availability, timing) and no I/O beyond
Numba's own on-disk cache. Used by :mod:`strategies.numba_chunks`.

The work is split on the chunk grid of :mod:`kernels.gmm_kernels` (:func:`chunk_rows`
mirrors ``gmm_kernels.chunk_rows``; a test checks they agree): a ``prange`` runs the
chunks, each chunk writes its partial sums to its own row of ``partials``, and the rows
are added in chunk order afterwards (:func:`sum_rows`). No thread ever adds into shared
state, so the results are bitwise identical for every thread count and schedule.

Inside a chunk, points are processed in blocks of :func:`block_rows` rows, transposed
to ``(d, B)`` so that every inner loop runs over points and vectorises. The
exponentials use the branch-free Cody-Waite ``exp`` of the Cython kernels
(:func:`_exp_into`): libm's ``exp`` is an opaque scalar call that stops the loop from
vectorising. That ``exp`` relies on exact rounding (a magic-number add and subtract),
so nothing here is compiled with reassociation: under ``fastmath=True`` Numba lets LLVM
fold ``(x + M) - M`` to ``x`` and the rounding step disappears. :class:`Options` offers a
``fastmath`` flag for experiments, restricted to the flags that keep rounding steps.

Compilation (:func:`build`): one set of dispatchers per :class:`Options` value, each
with ``cache=True`` and ``error_model="numpy"`` (the default ``"python"`` model puts a
zero-check branch in front of every division, which stops vectorisation). Numba's
cache key is the function's bytecode and signature, not its compile flags, so two
option sets would share (and serve each other) cached machine code; each option set
therefore gets its own cache directory, named after the option values.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# ---- the chunk grid (the same constants as kernels/gmm_kernels.pyx) -----------------

#: Independent accumulators per sum (a multiple of the widest vector, 8 doubles).
LANES = 8
MIN_BLOCK_ROWS = 32
MAX_BLOCK_ROWS = 256
MAX_CHUNKS = 256
#: At most this many doubles of per-chunk partial sums in all.
PARTIALS_BUDGET = 1 << 20
#: A block's working set is kept within an L1 data cache.
L1_BUDGET_BYTES = 32 * 1024

OP_E_STEP = 0
OP_M_STEP = 1
OP_FUSED = 2


def block_rows(d: int, k: int) -> int:
    """Points per block for d features and k components (as ``gmm_kernels.block_rows``)."""
    working_rows = 2 * d + k + 4
    rows = L1_BUDGET_BYTES // (8 * working_rows)
    rows = rows // LANES * LANES
    return min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, rows))


def n_sums(d: int) -> int:
    """Sums per component: mass, ``d`` first moments, ``d(d+1)/2`` second moments."""
    return 1 + d + d * (d + 1) // 2


def chunk_rows(n: int, d: int, k: int) -> int:
    """Points per chunk (as ``gmm_kernels.chunk_rows``): a function of ``(n, d, k)`` only."""
    B = block_rows(d, k)
    row_size = 1 + k * n_sums(d)
    max_chunks = max(1, min(MAX_CHUNKS, PARTIALS_BUDGET // row_size))
    n_blocks = (n + B - 1) // B
    blocks_per_chunk = (n_blocks + max_chunks - 1) // max_chunks
    return max(1, blocks_per_chunk) * B


def n_chunks(n: int, rows_per_chunk: int) -> int:
    return (n + rows_per_chunk - 1) // rows_per_chunk


# ---- exp (constants as the Cython kernels') -------------------------------------------

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer
_EXP_MIN_ARG = -708.0


def _exp_into(x, out, bits):
    """out[i] = exp(x[i]) for x <= 709, 0 below -708, NaN propagates.

    x (in), out (out), bits (scratch): float64 (B,). ``out`` may be ``x``.
    """
    m = x.shape[0]
    for i in range(m):
        v = x[i]
        c = _EXP_MIN_ARG if v < _EXP_MIN_ARG else v
        shifted = c * _LOG2E + _ROUND_MAGIC
        kf = shifted - _ROUND_MAGIC
        r = (c - kf * _LN2_HI) - kf * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        bits[i] = shifted
        out[i] = 0.0 if v < _EXP_MIN_ARG else p
    # 2^k in the exponent field: the integer k sits in the low bits of `shifted`.
    ints = bits.view(np.uint64)
    for i in range(m):
        ints[i] = (ints[i] + np.uint64(1023)) << np.uint64(52)
    for i in range(m):
        out[i] = out[i] * bits[i]


def vector_exp(x, out):
    """The kernels' ``exp`` over an array (for tests). x (in), out (out): float64 (m,)."""
    bits = np.empty(x.shape[0])
    _exp_into(x, out, bits)


# ---- one chunk --------------------------------------------------------------------------


def _lane_add(values, acc_row, B):
    """acc_row[l] += sum of values[i] over i = l (mod LANES). values: (B,); acc_row: (LANES,)."""
    for g in range(B // LANES):
        for lane in range(LANES):
            acc_row[lane] += values[g * LANES + lane]


def _chunk(op, X, log_norm, means, prec, shift, log_resp_in, log_resp_out, row0, row1, B, out):
    """Run ``op`` on rows ``row0:row1`` and write the chunk's partial row ``out``.

    X (in): (n, d). log_norm (in): (k,). means (in): (k, d). prec (in): (k, d, d),
    upper-triangular precision Cholesky factors. shift (in): (k, d), centre of the
    M-step sums. log_resp_in (in, M-step): (n, k). log_resp_out (out, E-step): (n, k).
    out (out): ``1 + k * n_sums(d)`` doubles for the M-step and fused ops (log-likelihood
    sum, then per component mass, S1 and the packed upper triangle of S2), 1 for the
    E-step.
    """
    d = X.shape[1]
    k = means.shape[0]
    ns = 1 + d + d * (d + 1) // 2
    n_acc = out.shape[0]
    xt = np.zeros((d, B))
    xc = np.empty((d, B))
    wz = np.empty((d, B))
    lp = np.empty((k, B))
    mx = np.empty(B)
    sm = np.empty(B)
    tmp = np.empty(B)
    bits = np.empty(B)
    acc = np.zeros((n_acc, LANES))
    for block in range(row0, row1, B):
        rows = min(B, row1 - block)
        for i in range(rows):
            for c in range(d):
                xt[c, i] = X[block + i, c]
        for c in range(d):
            for i in range(rows, B):
                xt[c, i] = 0.0
        if op == OP_M_STEP:
            for j in range(k):
                for i in range(rows):
                    tmp[i] = log_resp_in[block + i, j]
                for i in range(rows, B):
                    tmp[i] = 0.0
                _exp_into(tmp, tmp, bits)
                for i in range(rows):
                    lp[j, i] = tmp[i]
                for i in range(rows, B):
                    lp[j, i] = 0.0
        else:
            # lp[j, i] = log_norm[j] - ||(x_i - mu_j) P_j||^2 / 2
            for j in range(k):
                if d == 2:
                    # The 2-D workloads (schreiber, quinn) in one pass, all in registers.
                    p00, p01, p11 = prec[j, 0, 0], prec[j, 0, 1], prec[j, 1, 1]
                    m0, m1 = means[j, 0], means[j, 1]
                    constant = log_norm[j]
                    for i in range(B):
                        x0 = xt[0, i] - m0
                        x1 = xt[1, i] - m1
                        y0 = x0 * p00
                        y1 = x0 * p01 + x1 * p11
                        lp[j, i] = constant - 0.5 * (y0 * y0 + y1 * y1)
                    continue
                for c in range(d):
                    mu = means[j, c]
                    for i in range(B):
                        xc[c, i] = xt[c, i] - mu
                for i in range(B):
                    sm[i] = 0.0
                for b in range(d):
                    for i in range(B):
                        tmp[i] = 0.0
                    for a in range(b + 1):
                        p = prec[j, a, b]
                        for i in range(B):
                            tmp[i] += xc[a, i] * p
                    for i in range(B):
                        sm[i] += tmp[i] * tmp[i]
                constant = log_norm[j]
                for i in range(B):
                    lp[j, i] = constant - 0.5 * sm[i]
            for i in range(B):
                mx[i] = lp[0, i]
            for j in range(1, k):
                for i in range(B):
                    v = lp[j, i]
                    mx[i] = v if v > mx[i] else mx[i]
            for i in range(B):
                sm[i] = 0.0
            for j in range(k):
                for i in range(B):
                    tmp[i] = lp[j, i] - mx[i]
                _exp_into(tmp, tmp, bits)
                for i in range(B):
                    sm[i] += tmp[i]
                if op == OP_FUSED:
                    for i in range(B):
                        lp[j, i] = tmp[i]
            for i in range(rows):
                mx[i] = mx[i] + math.log(sm[i])
            for i in range(rows, B):
                mx[i] = 0.0
            _lane_add(mx, acc[0], B)
            if op == OP_E_STEP:
                for i in range(rows):
                    for j in range(k):
                        log_resp_out[block + i, j] = lp[j, i] - mx[i]
                continue
            # fused: responsibilities exp(lp - max) / sum, 0 on padding rows
            for i in range(rows):
                tmp[i] = 1.0 / sm[i]
            for i in range(rows, B):
                tmp[i] = 0.0
            for j in range(k):
                for i in range(B):
                    lp[j, i] = lp[j, i] * tmp[i]
        # shifted sums: mass, S1 = sum r z, S2 = sum r z z^T with z = x - shift_j
        for j in range(k):
            s = 1 + j * ns
            if d == 2:
                # mass, S1 (2) and S2's upper triangle (3) in one pass, lane by lane.
                c0, c1 = shift[j, 0], shift[j, 1]
                for g in range(B // LANES):
                    for lane in range(LANES):
                        i = g * LANES + lane
                        r = lp[j, i]
                        z0 = xt[0, i] - c0
                        z1 = xt[1, i] - c1
                        w0 = r * z0
                        w1 = r * z1
                        acc[s, lane] += r
                        acc[s + 1, lane] += w0
                        acc[s + 2, lane] += w1
                        acc[s + 3, lane] += w0 * z0
                        acc[s + 4, lane] += w0 * z1
                        acc[s + 5, lane] += w1 * z1
                continue
            for c in range(d):
                centre = shift[j, c]
                for i in range(B):
                    xc[c, i] = xt[c, i] - centre
                    wz[c, i] = xc[c, i] * lp[j, i]
            for g in range(B // LANES):
                for lane in range(LANES):
                    acc[s, lane] += lp[j, g * LANES + lane]
            s += 1
            for a in range(d):
                for g in range(B // LANES):
                    for lane in range(LANES):
                        acc[s, lane] += wz[a, g * LANES + lane]
                s += 1
            for a in range(d):
                for b in range(a, d):
                    for g in range(B // LANES):
                        for lane in range(LANES):
                            i = g * LANES + lane
                            acc[s, lane] += wz[a, i] * xc[b, i]
                    s += 1
    for s in range(n_acc):
        total = 0.0
        for lane in range(LANES):
            total += acc[s, lane]
        out[s] = total


# ---- entry points (compiled with parallel=True) -----------------------------------------


def fused_chunks(X, log_norm, means, prec, shift, rows_per_chunk, B, partials):
    """Per-chunk log-likelihood and shifted sums in one pass (no n x k matrix).

    partials (out): (n_chunks, 1 + k * n_sums(d)), one row per chunk.
    """
    n = X.shape[0]
    dummy = np.empty((1, 1))
    for chunk in prange(partials.shape[0]):  # noqa: F821 (bound by build())
        row0 = chunk * rows_per_chunk
        row1 = min(row0 + rows_per_chunk, n)
        _chunk(OP_FUSED, X, log_norm, means, prec, shift, dummy, dummy, row0, row1, B,
               partials[chunk])  # fmt: skip


def e_step_chunks(X, log_norm, means, prec, rows_per_chunk, B, log_resp, partials):
    """Log responsibilities into ``log_resp`` (n, k); per-chunk log-likelihood sums.

    partials (out): (n_chunks, 1).
    """
    n = X.shape[0]
    dummy = np.empty((1, 1))
    for chunk in prange(partials.shape[0]):  # noqa: F821 (bound by build())
        row0 = chunk * rows_per_chunk
        row1 = min(row0 + rows_per_chunk, n)
        _chunk(OP_E_STEP, X, log_norm, means, prec, means, dummy, log_resp, row0, row1, B,
               partials[chunk])  # fmt: skip


def m_step_chunks(X, log_resp, shift, rows_per_chunk, B, partials):
    """Per-chunk shifted sums from log responsibilities (n, k).

    partials (out): (n_chunks, 1 + k * n_sums(d)); column 0 is unused (0).
    """
    n = X.shape[0]
    k = shift.shape[0]
    empty_norm = np.zeros(k)
    dummy = np.empty((1, 1))
    dummy_prec = np.empty((1, 1, 1))
    for chunk in prange(partials.shape[0]):  # noqa: F821 (bound by build())
        row0 = chunk * rows_per_chunk
        row1 = min(row0 + rows_per_chunk, n)
        _chunk(OP_M_STEP, X, empty_norm, shift, dummy_prec, shift, log_resp, dummy, row0, row1,
               B, partials[chunk])  # fmt: skip


def sum_rows(partials, total):
    """total = partials[0] + partials[1] + ..., rows added in order. total: (row_size,)."""
    for s in range(total.shape[0]):
        total[s] = 0.0
    for r in range(partials.shape[0]):
        for s in range(total.shape[0]):
            total[s] += partials[r, s]


# ---- compilation --------------------------------------------------------------------------

_CALLEES = ("_exp_into", "_lane_add", "_chunk", "vector_exp", "sum_rows")
_PARALLEL = ("fused_chunks", "e_step_chunks", "m_step_chunks")

#: LLVM fast-math flags allowed by ``Options(fastmath=True)``: everything except
#: ``reassoc`` (and ``afn``, approximate functions), which would fold the rounding
#: step of :func:`_exp_into`.
SAFE_FASTMATH = frozenset({"nnan", "ninf", "nsz", "arcp", "contract"})

#: Environment variable naming the root of the per-option-set cache directories.
CACHE_ENV = "GMM_HARNESS_NUMBA_CACHE_DIR"


@dataclass(frozen=True)
class Options:
    """Compile options; every value is part of the cache directory's name.

    Attributes
    ----------
    fastmath : bool
        Compile with :data:`SAFE_FASTMATH` instead of strict IEEE semantics.
    error_model : {"numpy", "python"}
        ``"numpy"`` lets divisions vectorise (no zero check, inf/NaN as NumPy).
    boundscheck : bool
        Check every index (slow; for debugging).
    """

    fastmath: bool = False
    error_model: str = "numpy"
    boundscheck: bool = False

    def jit_flags(self) -> dict[str, object]:
        return {
            "cache": True,
            "nogil": True,
            "error_model": self.error_model,
            "fastmath": set(SAFE_FASTMATH) if self.fastmath else False,
            "boundscheck": self.boundscheck,
        }

    def key(self) -> str:
        """Short stable name of the option set (part of the cache path)."""
        import numba

        text = repr(sorted(asdict(self).items())) + numba.__version__
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        flags = f"fm{int(self.fastmath)}-{self.error_model}-bc{int(self.boundscheck)}"
        return f"{flags}-{digest}"


def default_cache_root() -> Path:
    """Where the per-option-set caches go: ``$GMM_HARNESS_NUMBA_CACHE_DIR``, else
    ``$NUMBA_CACHE_DIR/gmm-harness``, else ``kernels/__pycache__/numba`` when writable,
    else ``~/.cache/gmm-harness/numba``."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit)
    numba_dir = os.environ.get("NUMBA_CACHE_DIR", "").strip()
    if numba_dir:
        return Path(numba_dir) / "gmm-harness"
    local = Path(__file__).resolve().parent / "__pycache__" / "numba"
    with contextlib.suppress(OSError):
        local.mkdir(parents=True, exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    return Path.home() / ".cache" / "gmm-harness" / "numba"


@dataclass(frozen=True)
class Compiled:
    """The dispatchers of one option set (attributes named as the functions above)."""

    options: Options
    cache_dir: Path
    fused_chunks: object
    e_step_chunks: object
    m_step_chunks: object
    sum_rows: object
    vector_exp: object

    def dispatchers(self) -> list[object]:
        return [self.fused_chunks, self.e_step_chunks, self.m_step_chunks, self.sum_rows]


_BUILT: dict[tuple[Options, str], Compiled] = {}
_LOCK = threading.Lock()


@contextlib.contextmanager
def _numba_cache_dir(path: Path) -> Iterator[None]:
    """Numba picks a dispatcher's cache locator when it is created: point it at ``path``."""
    from numba.core import config

    saved = config.CACHE_DIR
    config.CACHE_DIR = str(path)
    try:
        yield
    finally:
        config.CACHE_DIR = saved


def build(options: Options | None = None, cache_root: Path | str | None = None) -> Compiled:
    """Dispatchers for ``options``, cached on disk under ``cache_root/<options key>``.

    Creating dispatchers compiles nothing: the first call of each compiles it (or loads
    it from the cache). Fresh function objects are made per option set, whose globals
    name this option set's callees, so no dispatcher of one option set ever calls code
    compiled with another's flags. Repeated calls with the same arguments return the
    same object.
    """
    import numba

    options = options or Options()
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    cache_dir = root / options.key()
    with _LOCK:
        found = _BUILT.get((options, str(cache_dir)))
        if found is not None:
            return found
        cache_dir.mkdir(parents=True, exist_ok=True)
        namespace = dict(globals())
        namespace["prange"] = numba.prange
        flags = options.jit_flags()
        with _numba_cache_dir(cache_dir):
            for name in _CALLEES:
                namespace[name] = numba.njit(**flags)(_rebind(globals()[name], namespace))
            for name in _PARALLEL:
                namespace[name] = numba.njit(parallel=True, **flags)(
                    _rebind(globals()[name], namespace)
                )
        compiled = Compiled(
            options,
            cache_dir,
            namespace["fused_chunks"],
            namespace["e_step_chunks"],
            namespace["m_step_chunks"],
            namespace["sum_rows"],
            namespace["vector_exp"],
        )
        _BUILT[(options, str(cache_dir))] = compiled
        return compiled


def _rebind(function: types.FunctionType, namespace: dict) -> types.FunctionType:
    """A copy of ``function`` whose global names resolve in ``namespace``."""
    copy = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, None
    )
    copy.__qualname__ = function.__qualname__
    copy.__doc__ = function.__doc__
    return copy


def cache_stats(compiled: Compiled) -> tuple[int, int]:
    """(hits, misses) of Numba's on-disk cache over the dispatchers of ``compiled``."""
    hits = misses = 0
    for dispatcher in compiled.dispatchers():
        stats = dispatcher.stats
        hits += sum(stats.cache_hits.values())
        misses += sum(stats.cache_misses.values())
    return hits, misses


def unpack_sums(total: np.ndarray, k: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mass (k,), S1 (k, d) and a full symmetric S2 (k, d, d) from a summed partial row.

    total (in): ``1 + k * n_sums(d)`` doubles in the layout of :func:`_chunk`.
    """
    sums = total[1:].reshape(k, n_sums(d))
    mass = sums[:, 0].copy()
    shifted_sum = sums[:, 1 : 1 + d].copy()
    upper_rows, upper_cols = np.triu_indices(d)
    shifted_outer = np.empty((k, d, d))
    shifted_outer[:, upper_rows, upper_cols] = sums[:, 1 + d :]
    shifted_outer[:, upper_cols, upper_rows] = sums[:, 1 + d :]
    return mass, shifted_sum, shifted_outer
