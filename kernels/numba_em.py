"""Numba kernels for GMM EM: the same chunked, fixed-order computation as the Cython ones.

Numeric code only: no policy (thread counts, availability, timing) and no I/O beyond
Numba's own on-disk cache. Used by :mod:`strategies.numba_chunks`. Importing this module
does not import Numba; :func:`build` does.

How the kernels are organised (after ``kernels/gmm_kernels.pyx``)
----------------------------------------------------------------
* The work is split on the chunk grid of :mod:`kernels.gmm_kernels` (:func:`chunk_rows`
  mirrors ``gmm_kernels.chunk_rows``; a test checks they agree). :func:`run_chunks`, the
  one ``@njit(parallel=True)`` function, runs a chunk kernel per thread in a ``prange``
  loop; each kernel takes chunks one at a time from a shared counter (as openmp's
  dynamic schedule) and writes each chunk's partial sums to that chunk's own row of
  ``partials``; after the loop the rows are added in chunk order. No thread ever adds
  into shared state, and a chunk's code is the same whichever thread runs it, so the
  results are bitwise identical for every thread count and schedule.
* The chunk kernel (:func:`_chunk_kernel`) is compiled as a C-callable ``cfunc`` and
  handed to :func:`run_chunks` as a first-class function. Called as an ordinary jitted
  function, its code would be linked into, re-optimised in and compiled to machine
  code for each of the four modules Numba builds for a ``prange`` loop (the loop body,
  two wrappers and the caller), where most of the compile time went. It allocates its
  scratch once per call, so once per thread, as the Cython kernels do.
* There is a kernel for d = 2 and one for any d, compiled from the same source with
  the block helpers of their variant (``<helper>_2d`` or ``<helper>_nd``), each on
  first use: a d = 2 workload never waits for the general code to compile, nor the
  others for d = 2's.
* Inside a chunk, points are processed in blocks of :func:`block_rows` rows, transposed
  to ``(d, B)`` so that every loop runs over points.
* The loops are written with an explicit SIMD vector type of :data:`LANES` float64
  (:func:`_extensions`), the counterpart of the C vector extensions of the Cython kernels.
  Left to LLVM's auto-vectoriser, the accumulations stay in memory (Numba does not tell
  LLVM that arrays do not alias) or do not vectorise at all (a floating-point sum needs
  reassociation), and the quadratic form for d > 2 cannot keep its four outputs in
  registers. Every sum runs in ``LANES`` independent lanes, reduced in a fixed order at
  the end of the chunk: nothing is compiled with reassociation.
* ``exp`` and ``log`` are the branch-free polynomial versions of the Cython kernels
  (:func:`_exp`, :func:`_log`; libm's are opaque scalar calls), one source compiled for
  float64 and for vectors. The ``exp`` relies on exact rounding (a magic-number add and
  subtract), which reassociation would fold away (``(x + M) - M`` to ``x``): the
  fast-math flags of :class:`Options` never include ``reassoc``.

Compilation (:func:`build`): one set of functions per :class:`Options` value, all with
``error_model="numpy"`` (the default ``"python"`` model adds a zero check to every
division) and, by default, floating-point contraction (``a * b + c`` as one FMA, as gcc
compiles the Cython kernels). The helpers have no Python wrapper and no disk cache: they
are compiled into the chunk kernels, which are cached, as are :func:`run_chunks` and the
test entry points. Numba's cache key is the function's bytecode and signature, not its
compile flags, so two option sets would share (and serve each other) cached machine
code; each option set therefore gets its own cache directory, named after the option
values.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# ---- the chunk grid (the same constants as kernels/gmm_kernels.pyx) -----------------

#: Independent accumulators per sum and doubles per SIMD vector: the widest vector
#: (AVX-512). On narrower targets LLVM splits each vector operation into several.
LANES = 8
MIN_BLOCK_ROWS = 32
MAX_BLOCK_ROWS = 256
MAX_CHUNKS = 256
#: At most this many doubles of per-chunk partial sums in all.
PARTIALS_BUDGET = 1 << 20
#: A block's working set is kept within an L1 data cache.
L1_BUDGET_BYTES = 32 * 1024

#: Operations of :func:`run_chunks`.
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


def padded_precision(prec_chol: np.ndarray) -> np.ndarray:
    """P_j with the strictly lower part zeroed and columns zero-padded to a multiple of 4.

    As ``gmm_kernels._padded_precision``: the four-wide register blocks of the quadratic
    form then need no edge cases.

    Parameters
    ----------
    prec_chol : ndarray of float64, shape (k, d, d)
        Upper-triangular precision Cholesky factors.

    Returns
    -------
    ndarray of float64, shape (k, d, d4), C-contiguous and writable; ``d4`` is ``d``
    rounded up to a multiple of 4.
    """
    upper = np.triu(np.asarray(prec_chol, dtype=np.float64))
    k, d = upper.shape[0], upper.shape[1]
    padded = np.zeros((k, d, (d + 3) // 4 * 4))
    padded[:, :, :d] = upper
    return padded


# ---- SIMD vectors and other Numba extensions (registered once per process) -----------

_EXTENSIONS: dict[str, object] = {}
_LOCK = threading.RLock()


def _extensions() -> dict[str, object]:
    """The Numba extensions the kernels use, by name (made on first use).

    A value of the vector type holds :data:`LANES` float64 in one LLVM vector
    register (``<LANES x double>``); ``+``, ``-``, ``*`` and ``/`` work on two vectors
    or a vector and a float64 (broadcast), lane by lane, with IEEE semantics.

    ``_vzero()`` makes a vector of zeros. ``_vload(a, i)`` and ``_vstore(a, i, v)``
    read and write ``LANES`` consecutive elements of a C-contiguous float64 array ``a``
    from flat element offset ``i``; ``_vload_pairs(a, i)`` reads ``2 * LANES`` and
    returns the even and the odd ones (the two columns of an ``(n, 2)`` array). No
    bounds checks: callers stay within the array.

    These work on float64 and on vectors alike, so that :func:`_exp` and :func:`_log`
    are one source for both: ``_select_less(a, b, t, f)`` is ``t if a < b else f``
    (``f`` when either is NaN), lane by lane; ``_pow2(shifted)`` is ``2**k`` for
    ``shifted = k + 1.5 * 2**52``; ``_exponent_bits(x) - (2**52 + 1023)`` is the
    exponent of a positive normal ``x`` and ``_mantissa(x)`` its mantissa in [1, 2).

    ``_optsize()`` and ``_alwaysinline()``, called first in a function, give the LLVM
    function compiled from it that attribute (see the block helpers for why).
    ``_fetch_add(a, i, v)`` adds ``v`` to the int64 ``a[i]`` atomically and returns the
    value before (see :func:`run_chunks` for why).

    The extension registers a type and operator implementations with Numba, which
    cannot be undone: done once per process, on first use.
    """
    with _LOCK:
        if _EXTENSIONS:
            return _EXTENSIONS
        import operator

        from llvmlite import ir
        from numba.core import types as nb_types
        from numba.core.imputils import lower_builtin
        from numba.core.typing.templates import AbstractTemplate, infer_global, signature
        from numba.extending import intrinsic, models, register_model

        f64 = ir.DoubleType()
        i64 = ir.IntType(64)
        vector_ir = ir.VectorType(f64, LANES)
        int_vector_ir = ir.VectorType(i64, LANES)

        class VectorType(nb_types.Type):
            def __init__(self) -> None:
                super().__init__(name=f"float64x{LANES}")

        @register_model(VectorType)
        class VectorModel(models.PrimitiveModel):
            def __init__(self, dmm, fe_type) -> None:
                super().__init__(dmm, fe_type, vector_ir)

        vector = VectorType()
        float64 = nb_types.float64

        def splat(builder, value):
            """``value`` (a double) in every lane."""
            one = builder.insert_element(
                ir.Constant(vector_ir, ir.Undefined), value, ir.Constant(ir.IntType(32), 0)
            )
            zeros = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            return builder.shuffle_vector(one, one, zeros)

        def as_vector(builder, value, numba_type):
            return value if isinstance(numba_type, VectorType) else splat(builder, value)

        # ---- arithmetic operators
        def is_operand(numba_type) -> bool:
            return isinstance(numba_type, VectorType) or numba_type == float64

        operations = {
            operator.add: "fadd",
            operator.iadd: "fadd",
            operator.sub: "fsub",
            operator.isub: "fsub",
            operator.mul: "fmul",
            operator.imul: "fmul",
            operator.truediv: "fdiv",
            operator.itruediv: "fdiv",
        }
        for function, instruction in operations.items():

            class Arithmetic(AbstractTemplate):
                def generic(self, args, kws):
                    if len(args) != 2 or kws or not all(map(is_operand, args)):
                        return None
                    if any(isinstance(a, VectorType) for a in args):
                        return signature(vector, *args)
                    return None

            infer_global(function)(Arithmetic)

            def lower(context, builder, sig, args, instruction=instruction):
                a = as_vector(builder, args[0], sig.args[0])
                b = as_vector(builder, args[1], sig.args[1])
                return getattr(builder, instruction)(a, b)

            for types_ in ((vector, vector), (vector, float64), (float64, vector)):
                lower_builtin(function, *types_)(lower)

        # ---- vectors from and to memory
        def address(context, builder, array_type, array, offset, width=1):
            data = context.make_array(array_type)(context, builder, array).data
            target = ir.VectorType(f64, LANES * width)
            return builder.bitcast(builder.gep(data, [offset]), target.as_pointer())

        @intrinsic
        def _vzero(typingctx):
            def codegen(context, builder, signature, args):
                return ir.Constant(vector_ir, [0.0] * LANES)

            return vector(), codegen

        @intrinsic
        def _vload(typingctx, array, offset):
            def codegen(context, builder, signature, args):
                where = address(context, builder, signature.args[0], args[0], args[1])
                return builder.load(where, align=8)

            return vector(array, nb_types.intp), codegen

        @intrinsic
        def _vload_pairs(typingctx, array, offset):
            pair = nb_types.UniTuple(vector, 2)

            def codegen(context, builder, signature, args):
                where = address(context, builder, signature.args[0], args[0], args[1], 2)
                both = builder.load(where, align=8)
                lanes = ir.VectorType(ir.IntType(32), LANES)
                even = builder.shuffle_vector(
                    both, both, ir.Constant(lanes, list(range(0, 2 * LANES, 2)))
                )
                odd = builder.shuffle_vector(
                    both, both, ir.Constant(lanes, list(range(1, 2 * LANES, 2)))
                )
                return context.make_tuple(builder, pair, [even, odd])

            return pair(array, nb_types.intp), codegen

        @intrinsic
        def _vstore(typingctx, array, offset, value):
            def codegen(context, builder, signature, args):
                where = address(context, builder, signature.args[0], args[0], args[1])
                builder.store(args[2], where, align=8)
                return context.get_dummy_value()

            return nb_types.void(array, nb_types.intp, vector), codegen

        # ---- lane-wise functions of float64 or vectors
        def result_type(*args):
            return vector if any(isinstance(a, VectorType) for a in args) else float64

        def constant(value, of_vector: bool, integer: bool = False):
            kind = i64 if integer else f64
            if of_vector:
                shape = int_vector_ir if integer else vector_ir
                return ir.Constant(shape, [value] * LANES)
            return ir.Constant(kind, value)

        @intrinsic
        def _select_less(typingctx, a, b, if_true, if_false):
            if not all(map(is_operand, (a, b, if_true, if_false))):
                return None
            result = result_type(a, b, if_true, if_false)

            def codegen(context, builder, signature, args):
                if isinstance(result, VectorType):
                    args = [
                        as_vector(builder, v, t) for v, t in zip(args, signature.args, strict=True)
                    ]
                less = builder.fcmp_ordered("<", args[0], args[1])
                return builder.select(less, args[2], args[3])

            return result(a, b, if_true, if_false), codegen

        def bit_function(body):
            """An intrinsic of one float64-or-vector argument that works on its bits."""

            def typer(typingctx, x):
                if not is_operand(x):
                    return None
                of_vector = isinstance(x, VectorType)

                def codegen(context, builder, signature, args):
                    as_int = int_vector_ir if of_vector else i64
                    as_float = vector_ir if of_vector else f64
                    bits = builder.bitcast(args[0], as_int)
                    return builder.bitcast(body(builder, bits, of_vector), as_float)

                return x(x), codegen

            typer.__name__ = body.__name__
            return intrinsic(typer)

        @bit_function
        def _pow2(builder, bits, of_vector):
            # k sits in the low bits of shifted = k + 1.5 * 2**52: move k + 1023 into the
            # exponent field; the magic number's own bits shift out.
            biased = builder.add(bits, constant(1023, of_vector, True))
            return builder.shl(biased, constant(52, of_vector, True))

        @bit_function
        def _exponent_bits(builder, bits, of_vector):
            # 2**52 + the biased exponent: subtracting 2**52 + 1023 (as float64) leaves
            # the exponent, with no int64 -> float64 conversion instruction.
            biased = builder.lshr(bits, constant(52, of_vector, True))
            return builder.or_(biased, constant(_EXPONENT_BITS, of_vector, True))

        @bit_function
        def _mantissa(builder, bits, of_vector):
            fraction = builder.and_(bits, constant(_MANTISSA_MASK, of_vector, True))
            return builder.or_(fraction, constant(_ONE_BITS, of_vector, True))

        # ---- LLVM attributes of the function being compiled
        def function_attribute(attribute: str):
            def typer(typingctx):
                def codegen(context, builder, signature, args):
                    builder.function.attributes.add(attribute)
                    return context.get_dummy_value()

                return nb_types.void(), codegen

            typer.__name__ = f"_{attribute}"
            return intrinsic(typer)

        # ---- atomics
        @intrinsic
        def _fetch_add(typingctx, array, index, value):
            def codegen(context, builder, signature, args):
                data = context.make_array(signature.args[0])(context, builder, args[0]).data
                where = builder.gep(data, [args[1]])
                return builder.atomic_rmw("add", where, args[2], "monotonic")

            return nb_types.int64(array, nb_types.intp, nb_types.int64), codegen

        _EXTENSIONS.update(
            _fetch_add=_fetch_add,
            _optsize=function_attribute("optsize"),
            _alwaysinline=function_attribute("alwaysinline"),
            _vzero=_vzero,
            _vload=_vload,
            _vload_pairs=_vload_pairs,
            _vstore=_vstore,
            _select_less=_select_less,
            _pow2=_pow2,
            _exponent_bits=_exponent_bits,
            _mantissa=_mantissa,
        )
        return _EXTENSIONS


# ---- names bound by build() ------------------------------------------------------------
# The intrinsics of _extensions(), Numba's prange and carray, and the helpers that differ
# between the d = 2 and the general kernel are put in each compiled function's globals
# by build(); these placeholders only make the module importable without Numba.
_vzero = _vload = _vload_pairs = _vstore = None
_select_less = _pow2 = _exponent_bits = _mantissa = None
_optsize = _alwaysinline = _fetch_add = None
prange = carray = None
_load_block = _log_prob_block = _accumulate_block = None


# ---- exp and log (constants as the Cython kernels'), of float64 or of vectors --------

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer
_EXP_MIN_ARG = -708.0
_SQRT2 = 1.4142135623730951
_EXPONENT_MAGIC = 4503599627370496.0 + 1023.0  # 2^52 + 1023
_EXPONENT_BITS = 0x4330000000000000  # the bits of 2^52
_MANTISSA_MASK = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000  # the bits of 1.0


def _exp(x):
    """exp(x) for x <= 709; 0 below -708; NaN propagates. x: float64 or vector."""
    _alwaysinline()
    clamped = _select_less(x, _EXP_MIN_ARG, _EXP_MIN_ARG, x)
    # x = k ln2 + r, |r| <= ln2 / 2 (Cody-Waite reduction, k by round-to-nearest).
    shifted = clamped * _LOG2E + _ROUND_MAGIC
    kf = shifted - _ROUND_MAGIC
    r = (clamped - kf * _LN2_HI) - kf * _LN2_LO
    # Taylor polynomial of degree 13: truncation error < 2e-17 for |r| <= 0.347.
    p = r * (1.0 / 6227020800.0) + 1.0 / 479001600.0
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
    return _select_less(x, _EXP_MIN_ARG, 0.0, p * _pow2(shifted))


def _log(x):
    """log(x) for positive normal x (here a sum of exps whose largest is 1, so >= 1).

    x: float64 or vector.
    """
    _alwaysinline()
    e = _exponent_bits(x) - _EXPONENT_MAGIC
    # Mantissa m in [1, 2), moved to [sqrt(2)/2, sqrt(2)) so that |log m| <= ln2 / 2.
    m = _mantissa(x)
    e = _select_less(_SQRT2, m, e + 1.0, e)
    m = _select_less(_SQRT2, m, m * 0.5, m)
    # log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172: series to s^21.
    f = m - 1.0
    s = f / (f + 2.0)
    z = s * s
    p = z * (2.0 / 21.0) + 2.0 / 19.0
    p = p * z + 2.0 / 17.0
    p = p * z + 2.0 / 15.0
    p = p * z + 2.0 / 13.0
    p = p * z + 2.0 / 11.0
    p = p * z + 2.0 / 9.0
    p = p * z + 2.0 / 7.0
    p = p * z + 2.0 / 5.0
    p = p * z + 2.0 / 3.0
    log_m = s * 2.0 + s * (z * p)
    return e * _LN2_HI + (log_m + e * _LN2_LO)


def vector_exp(x, out):
    """The kernels' ``exp`` over an array (for tests): vectors, then one by one.

    x (in), out (out): float64 (m,).
    """
    m = x.shape[0]
    full = m // LANES * LANES
    for s in range(0, full, LANES):
        _vstore(out, s, _exp(_vload(x, s)))
    for i in range(full, m):
        out[i] = _exp(x[i])


def vector_log(x, out):
    """The kernels' ``log`` over an array (for tests): positive normal inputs only.

    x (in), out (out): float64 (m,). Vectors, then one by one.
    """
    m = x.shape[0]
    full = m // LANES * LANES
    for s in range(0, full, LANES):
        _vstore(out, s, _log(_vload(x, s)))
    for i in range(full, m):
        out[i] = _log(x[i])


# ---- block helpers: B points (a multiple of LANES), features transposed -------------
# Loops over points step by one vector: ``s`` is the first point of a vector.
#
# Every function below starts with _optsize(): its loops are written with explicit
# vectors and independent accumulators already, and LLVM would otherwise also unroll
# them at run time (the loops over components too, each copy with its own inlined exp
# and log), which made the kernels slower to compile and no faster to run. _exp and
# _log start with _alwaysinline(): a call per vector would cost more than their body,
# and the inlining limits of optsize code would keep them out of line.


def _load_block_2d(X, block, rows, B, xt):
    """xt[c, i] = X[block + i, c] for i < rows; 0 for rows <= i < B.

    X (in): (n, 2). xt (out): (2, B).
    """
    _optsize()
    full = rows // LANES * LANES
    for s in range(0, full, LANES):
        x0, x1 = _vload_pairs(X, 2 * (block + s))
        _vstore(xt, s, x0)
        _vstore(xt, B + s, x1)
    for i in range(full, rows):
        xt[0, i] = X[block + i, 0]
        xt[1, i] = X[block + i, 1]
    for i in range(rows, B):
        xt[0, i] = 0.0
        xt[1, i] = 0.0


def _load_block_nd(X, block, rows, B, xt):
    """xt[c, i] = X[block + i, c] for i < rows; 0 for rows <= i < B.

    X (in): (n, d). xt (out): (d, B).
    """
    _optsize()
    d = X.shape[1]
    for i in range(rows):
        for c in range(d):
            xt[c, i] = X[block + i, c]
    for c in range(d):
        for i in range(rows, B):
            xt[c, i] = 0.0


def _log_prob_block_2d(xt, log_norm, means, prec, B, z, lp):
    """lp[j, i] = log_norm[j] - ||(x_i - mu_j) P_j||^2 / 2 for a block of 2-D points.

    The 2-D workloads (schreiber, quinn) in one pass per component, all in registers.
    xt (in): (2, B). log_norm (in): (k,). means (in): (k, 2). prec (in): (k, 2, 4),
    padded. z: unused. lp (out): (k, B).
    """
    _optsize()
    for j in range(means.shape[0]):
        constant = log_norm[j]
        p00, p01, p11 = prec[j, 0, 0], prec[j, 0, 1], prec[j, 1, 1]
        m0, m1 = means[j, 0], means[j, 1]
        for s in range(0, B, LANES):
            x0 = _vload(xt, s) - m0
            x1 = _vload(xt, B + s) - m1
            y0 = x0 * p00
            y1 = x0 * p01 + x1 * p11
            _vstore(lp, j * B + s, constant - (y0 * y0 + y1 * y1) * 0.5)


def _log_prob_block_nd(xt, log_norm, means, prec, B, z, lp):
    """lp[j, i] = log_norm[j] - ||(x_i - mu_j) P_j||^2 / 2 for a block.

    xt (in): (d, B). log_norm (in): (k,). means (in): (k, d). prec (in): (k, d, d4),
    padded as :func:`padded_precision`. z: scratch (d + 4, B), rows 1..d overwritten
    with the centred points. lp (out): (k, B). For a vector of points, four outputs of
    ``(x - mu_j) P_j`` accumulate in registers and each point is loaded once for all
    four; the padding of P_j makes the last four-wide block need no edge case.
    """
    _optsize()
    d = xt.shape[0]
    for j in range(means.shape[0]):
        for c in range(d):
            mu = means[j, c]
            for s in range(0, B, LANES):
                _vstore(z, (1 + c) * B + s, _vload(xt, c * B + s) - mu)
        constant = log_norm[j]
        for s in range(0, B, LANES):
            m = _vzero()
            for e0 in range(0, prec.shape[2], 4):
                y0 = _vzero()
                y1 = _vzero()
                y2 = _vzero()
                y3 = _vzero()
                for c in range(min(e0 + 4, d)):
                    x = _vload(z, (1 + c) * B + s)
                    y0 += x * prec[j, c, e0]
                    y1 += x * prec[j, c, e0 + 1]
                    y2 += x * prec[j, c, e0 + 2]
                    y3 += x * prec[j, c, e0 + 3]
                m += (y0 * y0 + y1 * y1) + (y2 * y2 + y3 * y3)
            _vstore(lp, j * B + s, constant - m * 0.5)


def _log_sum_exp_block(lp, rows, B, mx, resp):
    """Log-sum-exp and responsibilities of a block, 0 on padding rows (i >= rows).

    mx[i] = log sum_j exp(lp[j, i]) and resp[j, i] = exp(lp[j, i]) / sum_j' exp(lp[j', i]),
    through the max over j so that nothing overflows. lp (in): (k, B) log densities.
    mx (out): (B,). resp (out): (k, B), may be ``lp``.
    """
    _optsize()
    k = lp.shape[0]
    for s in range(0, B, LANES):
        top = _vload(lp, s)
        for j in range(1, k):
            v = _vload(lp, j * B + s)
            top = _select_less(top, v, v, top)
        total = _vzero()
        for j in range(k):
            e = _exp(_vload(lp, j * B + s) - top)
            _vstore(resp, j * B + s, e)
            total += e
        _vstore(mx, s, top + _log(total))
        scale = 1.0 / total
        for j in range(k):
            _vstore(resp, j * B + s, _vload(resp, j * B + s) * scale)
    for i in range(rows, B):
        mx[i] = 0.0
        for j in range(k):
            resp[j, i] = 0.0


def _accumulate_block_2d(xt, lp, shift, B, z, w, acc):
    """Add a block's d = 2 shifted sums of every component to acc rows 1 onwards.

    Per component, mass, S1 (2) and the upper S2 (3) relative to shift[j], in one pass
    with all six in registers. xt (in): (2, B). lp (in): (k, B) responsibilities, 0 on
    padding rows. shift (in): (k, 2). z, w: unused. acc (in/out): (n_acc, LANES).
    """
    _optsize()
    for j in range(shift.shape[0]):
        c0, c1 = shift[j, 0], shift[j, 1]
        m = _vzero()
        s0 = _vzero()
        s1 = _vzero()
        s00 = _vzero()
        s01 = _vzero()
        s11 = _vzero()
        for s in range(0, B, LANES):
            r = _vload(lp, j * B + s)
            x0 = _vload(xt, s) - c0
            x1 = _vload(xt, B + s) - c1
            w0 = r * x0
            w1 = r * x1
            m += r
            s0 += w0
            s1 += w1
            s00 += w0 * x0
            s01 += w0 * x1
            s11 += w1 * x1
        row = (1 + 6 * j) * LANES
        _vstore(acc, row, _vload(acc, row) + m)
        _vstore(acc, row + LANES, _vload(acc, row + LANES) + s0)
        _vstore(acc, row + 2 * LANES, _vload(acc, row + 2 * LANES) + s1)
        _vstore(acc, row + 3 * LANES, _vload(acc, row + 3 * LANES) + s00)
        _vstore(acc, row + 4 * LANES, _vload(acc, row + 4 * LANES) + s01)
        _vstore(acc, row + 5 * LANES, _vload(acc, row + 5 * LANES) + s11)


def _accumulate_block_nd(xt, lp, shift, B, z, w, acc):
    """Add a block's shifted sums of every component to acc rows 1 onwards.

    For component j, ``sum_i r_i z[a, i] z[b, i]`` for 0 <= a <= b <= d, with z (scratch,
    (d + 4, B)) holding in row 0 ones (the homogeneous coordinate: with it the mass,
    (0, 0), and the first moments, (0, 1 + c), are products like the second moments),
    in rows 1..d the points minus shift[j], in its last 3 rows zeros (they pad the
    four-wide blocks). The packed upper triangle of that (d + 1) x (d + 1) matrix is
    mass, S1 and the upper S2 in the layout of :func:`unpack_sums`.

    xt (in): (d, B). lp (in): (k, B) responsibilities, 0 on padding rows. shift (in):
    (k, d). w: scratch (B,). acc (in/out): (n_acc, LANES). Four sums at a time share
    each load of w and run as four independent dependency chains.
    """
    _optsize()
    d = xt.shape[0]
    dim = d + 1
    for j in range(shift.shape[0]):
        for c in range(d):
            centre = shift[j, c]
            for s in range(0, B, LANES):
                _vstore(z, (1 + c) * B + s, _vload(xt, c * B + s) - centre)
        row = 1 + j * (dim * (dim + 1) // 2)
        for a in range(dim):
            packed_aa = a * dim - a * (a - 1) // 2
            for s in range(0, B, LANES):
                _vstore(w, s, _vload(lp, j * B + s) * _vload(z, a * B + s))
            for b0 in range(a, dim, 4):
                s0 = _vzero()
                s1 = _vzero()
                s2 = _vzero()
                s3 = _vzero()
                for s in range(0, B, LANES):
                    wv = _vload(w, s)
                    s0 += wv * _vload(z, b0 * B + s)
                    s1 += wv * _vload(z, (b0 + 1) * B + s)
                    s2 += wv * _vload(z, (b0 + 2) * B + s)
                    s3 += wv * _vload(z, (b0 + 3) * B + s)
                target = (row + packed_aa + b0 - a) * LANES
                n_out = min(dim - b0, 4)
                _vstore(acc, target, _vload(acc, target) + s0)
                if n_out > 1:
                    _vstore(acc, target + LANES, _vload(acc, target + LANES) + s1)
                if n_out > 2:
                    _vstore(acc, target + 2 * LANES, _vload(acc, target + 2 * LANES) + s2)
                if n_out > 3:
                    _vstore(acc, target + 3 * LANES, _vload(acc, target + 3 * LANES) + s3)


def _aligned(n):
    """n float64 (uninitialised) from a 64-byte (cache-line) boundary: a view into a
    slightly larger new array.

    Numba aligns arrays to 32 bytes only, and vector loads that cross a cache line are
    slower: whether scratch rows did varied with the heap state of each process, and so
    did the speed of the same kernel from one process to the next.
    """
    buffer = np.empty(n + LANES)
    skip = (LANES - np.int64(buffer.ctypes.data) // 8 % LANES) % LANES
    return buffer[skip : skip + n]


def _exp_block(log_resp, block, rows, B, lp):
    """lp[j, i] = exp(log_resp[block + i, j]) for i < rows; 0 for rows <= i < B.

    log_resp (in): (n, k). lp (out): (k, B).
    """
    _optsize()
    k = lp.shape[0]
    for i in range(rows):
        for j in range(k):
            lp[j, i] = log_resp[block + i, j]
    for j in range(k):
        for s in range(0, B, LANES):
            _vstore(lp, j * B + s, _exp(_vload(lp, j * B + s)))
        for i in range(rows, B):
            lp[j, i] = 0.0


def _store_log_resp(lp, mx, block, rows, log_resp):
    """log_resp[block + i, j] = lp[j, i] - mx[i] for i < rows.

    lp (in): (k, B). mx (in): (B,). log_resp (out): (n, k).
    """
    _optsize()
    for i in range(rows):
        for j in range(lp.shape[0]):
            log_resp[block + i, j] = lp[j, i] - mx[i]


# ---- the entry points -------------------------------------------------------------------


#: The integer parameters of the chunk kernels, in the order of their ``dims`` array.
_DIMS = ("n", "d", "k", "d4", "resp_rows", "resp_cols", "B", "rows_per_chunk", "n_chunks", "n_acc")


def _chunk_kernel(op, dims, X, log_norm, means, prec, shift, log_resp, partials, queue):
    """Run ``op`` on chunks taken one at a time from ``queue`` until none is left,
    writing each chunk's partial row (a C-callable kernel, called once per thread).

    Compiled as a ``cfunc`` per variant (d = 2 or any d): arrays come as pointers and
    their shapes in ``dims`` (int64, the order of :data:`_DIMS`); see :func:`run_chunks`
    for what each array holds. queue (in/out): one int64, the next chunk to take.
    """
    _optsize()
    n, d, k, d4 = dims[0], dims[1], dims[2], dims[3]
    B, rows_per_chunk, n_chunks, n_acc = dims[6], dims[7], dims[8], dims[9]
    X = carray(X, (n, d))
    log_norm = carray(log_norm, (k,))
    means = carray(means, (k, d))
    prec = carray(prec, (k, d, d4))
    shift = carray(shift, (k, d))
    log_resp = carray(log_resp, (dims[4], dims[5]))
    partials = carray(partials, (n_chunks, n_acc))
    queue = carray(queue, (1,))
    # The thread's scratch, for all its chunks; B is a multiple of LANES, so every row
    # starts on a cache line.
    xt = _aligned(d * B).reshape((d, B))
    w = _aligned(B)
    mx = _aligned(B)
    lp = _aligned(k * B).reshape((k, B))
    resp = lp if op == OP_FUSED else _aligned(k * B).reshape((k, B))
    acc = _aligned(n_acc * LANES).reshape((n_acc, LANES))
    # z: see _accumulate_block_nd. Row 0 ones, the rest zeros to start with.
    z = _aligned((d + 4) * B)
    for s in range(0, (d + 4) * B, LANES):
        _vstore(z, s, _vzero())
    z = z.reshape((d + 4, B))
    for i in range(B):
        z[0, i] = 1.0
    chunk = _fetch_add(queue, 0, 1)
    while chunk < n_chunks:
        for r in range(n_acc):
            _vstore(acc, r * LANES, _vzero())
        row0 = chunk * rows_per_chunk
        row1 = min(row0 + rows_per_chunk, n)
        for block in range(row0, row1, B):
            rows = min(B, row1 - block)
            _load_block(X, block, rows, B, xt)
            if op == OP_M_STEP:
                _exp_block(log_resp, block, rows, B, lp)
            else:
                _log_prob_block(xt, log_norm, means, prec, B, z, lp)
                _log_sum_exp_block(lp, rows, B, mx, resp)
                # The log-likelihood sum, lane by lane.
                for s in range(0, B, LANES):
                    _vstore(acc, 0, _vload(acc, 0) + _vload(mx, s))
                if op == OP_E_STEP:
                    _store_log_resp(lp, mx, block, rows, log_resp)
                    continue
            _accumulate_block(xt, lp, shift, B, z, w, acc)
        # The lanes of each sum, added in a fixed order, into the chunk's own row.
        for r in range(n_acc):
            lanes = 0.0
            for lane in range(LANES):
                lanes += acc[r, lane]
            partials[chunk, r] = lanes
        chunk = _fetch_add(queue, 0, 1)


def run_chunks(
    kernel, op, X, log_norm, means, prec, shift, log_resp, rows_per_chunk, B, partials, total,
    threads,
):  # fmt: skip
    """Run ``op`` over every chunk in parallel, then sum the chunks' rows in order.

    Parameters
    ----------
    kernel : cfunc
        The chunk kernel of the data's variant (:meth:`Compiled.kernel`).
    op : int
        :data:`OP_FUSED`, :data:`OP_E_STEP` or :data:`OP_M_STEP`.
    X : ndarray of float64, shape (n, d)
        In.
    log_norm : ndarray of float64, shape (k,)
        In (the M-step reads only the shapes of log_norm, means and prec).
    means : ndarray of float64, shape (k, d)
        In.
    prec : ndarray of float64, shape (k, d, d4)
        In, as :func:`padded_precision`.
    shift : ndarray of float64, shape (k, d)
        In: the centre of the sums (unused by the E-step).
    log_resp : ndarray of float64, shape (n, k)
        Out for the E-step, in for the M-step; unused by the fused pass (any shape).
    rows_per_chunk, B : int
        :func:`chunk_rows` and :func:`block_rows` of ``(n, d, k)``.
    partials : ndarray of float64, shape (n_chunks, row_size)
        Out: one row per chunk; ``row_size`` is 1 for the E-step (log-likelihood sum),
        else ``1 + k * n_sums(d)`` (log-likelihood sum, 0 for the M-step, then per
        component mass, S1 and the packed upper triangle of S2).
    total : ndarray of float64, shape (row_size,)
        Out: the sum of the rows of ``partials``, in chunk order.
    threads : int
        Numba's thread count for this call (``numba.get_num_threads()``; called inside
        the function, it would keep the function out of the disk cache).
    """
    dims = np.empty(len(_DIMS), dtype=np.int64)
    dims[0], dims[1] = X.shape
    dims[2], dims[3] = means.shape[0], prec.shape[2]
    dims[4], dims[5] = log_resp.shape
    dims[6], dims[7] = B, rows_per_chunk
    dims[8], dims[9] = partials.shape
    # One kernel call per thread, each taking the next chunk from a shared counter until
    # none is left (openmp's dynamic schedule): a thread that starts late or is
    # descheduled for a moment takes fewer chunks instead of holding up the others,
    # whereas prange over the chunks would split them into one share per thread up
    # front with Numba's omp threading layer. Which thread runs a chunk changes nothing
    # in its row.
    queue = np.empty(1, dtype=np.int64)  # np.zeros would be a parallel loop of its own
    queue[0] = 0
    for _ in prange(min(threads, partials.shape[0])):
        kernel(
            op, dims.ctypes, X.ctypes, log_norm.ctypes, means.ctypes, prec.ctypes,
            shift.ctypes, log_resp.ctypes, partials.ctypes, queue.ctypes,
        )  # fmt: skip
    # The chunks' rows, added in chunk order.
    for s in range(total.shape[0]):
        total[s] = 0.0
    for r in range(partials.shape[0]):
        for s in range(total.shape[0]):
            total[s] += partials[r, s]


# ---- compilation --------------------------------------------------------------------------

#: Helpers compiled into the chunk kernels (no disk cache, no Python wrapper).
_HELPERS = (
    "_aligned",
    "_exp",
    "_log",
    "_log_sum_exp_block",
    "_exp_block",
    "_store_log_resp",
)
#: Helpers with a d = 2 and a general version (``<name>_2d``, ``<name>_nd``).
_VARIANT_HELPERS = ("_load_block", "_log_prob_block", "_accumulate_block")
_VARIANTS = ("2d", "nd")
#: Called from Python (the tests' entry points only when a test calls them).
_ENTRY_POINTS = ("vector_exp", "vector_log")

#: LLVM fast-math flags allowed by ``Options(fastmath=True)``: everything except
#: ``reassoc`` (and ``afn``, approximate functions), which would fold the rounding
#: step of :func:`_exp`.
SAFE_FASTMATH = frozenset({"nnan", "ninf", "nsz", "arcp", "contract"})

#: Environment variable naming the root of the per-option-set cache directories.
CACHE_ENV = "GMM_HARNESS_NUMBA_CACHE_DIR"


@dataclass(frozen=True)
class Options:
    """Compile options; every value is part of the cache directory's name.

    Attributes
    ----------
    fastmath : bool
        Compile with :data:`SAFE_FASTMATH` instead of IEEE semantics.
    contract : bool
        Let LLVM fuse ``a * b + c`` into one FMA instruction (one rounding instead of
        two), as gcc does by default for the Cython kernels. The same code runs on every
        thread, so results stay independent of the thread count.
    error_model : {"numpy", "python"}
        ``"numpy"``: no zero check before divisions (inf/NaN as NumPy).
    boundscheck : bool
        Check every array index (slow; for debugging; the vector loads and stores of
        :func:`_extensions` are never checked).
    """

    fastmath: bool = False
    contract: bool = True
    error_model: str = "numpy"
    boundscheck: bool = False

    def fastmath_flags(self) -> set[str]:
        """The LLVM fast-math flags every function of this option set is compiled with."""
        flags = set(SAFE_FASTMATH) if self.fastmath else set()
        if self.contract:
            flags.add("contract")
        return flags

    def jit_flags(self) -> dict[str, object]:
        return {
            "cache": True,
            "nogil": True,
            "error_model": self.error_model,
            "fastmath": self.fastmath_flags() or False,
            "boundscheck": self.boundscheck,
        }

    def key(self) -> str:
        """Short stable name of the option set (part of the cache path)."""
        import numba

        text = repr(sorted(asdict(self).items())) + numba.__version__
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        flags = (
            f"fm{int(self.fastmath)}-fma{int(self.contract)}-{self.error_model}"
            f"-bc{int(self.boundscheck)}"
        )
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


class Compiled:
    """The compiled functions of one option set.

    Attributes
    ----------
    options : Options
    cache_dir : pathlib.Path
        Where Numba caches this option set's machine code.
    run_chunks, vector_exp, vector_log : numba dispatcher
        The functions of the same names above; each compiles (or loads from the
        cache) on its first call.
    """

    def __init__(self, options: Options, cache_dir: Path, namespaces: dict[str, dict]) -> None:
        self.options = options
        self.cache_dir = cache_dir
        self._namespaces = namespaces
        shared = namespaces[_VARIANTS[0]]
        self.run_chunks = shared["run_chunks"]
        self.vector_exp = shared["vector_exp"]
        self.vector_log = shared["vector_log"]
        self._kernels: dict[str, object] = {}

    def kernel(self, d: int) -> object:
        """The chunk kernel for data with ``d`` features, to pass to :func:`run_chunks`.

        A ``cfunc``, compiled (or loaded from the cache) on the first request for its
        variant: a ``cfunc`` compiles as soon as it is made.
        """
        import numba
        from numba.core import types as nb_types

        variant = "2d" if d == 2 else "nd"
        with _LOCK:
            found = self._kernels.get(variant)
            if found is None:
                pointer = nb_types.CPointer(nb_types.float64)
                integers = nb_types.CPointer(nb_types.int64)
                signature = nb_types.void(nb_types.int64, integers, *[pointer] * 7, integers)
                with _numba_cache_dir(self.cache_dir):
                    found = numba.cfunc(signature, **self.options.jit_flags())(
                        self._namespaces[variant]["_chunk_kernel"]
                    )
                self._kernels[variant] = found
            return found

    def cache_use(self) -> tuple[int, int]:
        """(hits, misses) of Numba's disk cache over :func:`run_chunks` and the kernels
        made so far (the test entry points apart)."""
        stats = self.run_chunks.stats
        hits = sum(stats.cache_hits.values())
        misses = sum(stats.cache_misses.values())
        for kernel in self._kernels.values():
            hits += kernel.cache_hits
            misses += 1 - min(1, kernel.cache_hits)
        return hits, misses


_BUILT: dict[tuple[Options, str], Compiled] = {}


@contextlib.contextmanager
def _numba_cache_dir(path: Path) -> Iterator[None]:
    """Numba picks a function's cache locator when it is created: point it at ``path``."""
    from numba.core import config

    saved = config.CACHE_DIR
    config.CACHE_DIR = str(path)
    try:
        yield
    finally:
        config.CACHE_DIR = saved


def build(options: Options | None = None, cache_root: Path | str | None = None) -> Compiled:
    """The functions for ``options``, cached on disk under ``cache_root/<options key>``.

    Building compiles nothing: each function compiles (or loads from the cache) on its
    first call, each chunk kernel on its first :meth:`Compiled.kernel` request. Fresh
    function objects are made per option set, whose globals name this option set's
    callees, so no function of one option set ever calls code compiled with another's
    flags. Repeated calls with the same arguments return the same object.
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
        flags = options.jit_flags()
        helper_flags = dict(flags, cache=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
        shared = dict(globals())
        shared.update(_extensions(), prange=numba.prange, carray=numba.carray)
        with _numba_cache_dir(cache_dir):
            for name in _HELPERS:
                shared[name] = numba.njit(**helper_flags)(_rebind(shared[name], shared))
            for name in _ENTRY_POINTS:
                shared[name] = numba.njit(**flags)(_rebind(shared[name], shared))
            shared["run_chunks"] = numba.njit(parallel=True, **flags)(
                _rebind(shared["run_chunks"], shared)
            )
        namespaces = {}
        for variant in _VARIANTS:
            namespace = namespaces[variant] = dict(shared)
            for name in _VARIANT_HELPERS:
                variant_name = f"{name}_{variant}"
                namespace[name] = numba.njit(**helper_flags)(
                    _rebind(shared[variant_name], namespace, variant_name)
                )
            namespace["_chunk_kernel"] = _rebind(
                shared["_chunk_kernel"], namespace, f"_chunk_kernel_{variant}"
            )
        compiled = Compiled(options, cache_dir, namespaces)
        _BUILT[(options, str(cache_dir))] = compiled
        return compiled


def initialise_numba() -> None:
    """Run Numba's one-time set-up of its compiler now.

    The first compile or cache load in a process triggers it (Numba then registers its
    NumPy support, and imports SciPy's BLAS when SciPy is installed); calling this
    first lets a caller time it apart from the kernels' own compile or load.
    """
    from numba.core.registry import cpu_target

    cpu_target.target_context.refresh()


def _rebind(function: types.FunctionType, namespace: dict, name: str | None = None):
    """A copy of ``function`` whose global names resolve in ``namespace``, named ``name``.

    Numba names the cache files after the function, so the two variants compiled from
    one source must have different names.
    """
    name = name or function.__name__
    copy = types.FunctionType(function.__code__, namespace, name, function.__defaults__, None)
    copy.__qualname__ = name
    copy.__doc__ = function.__doc__
    return copy


def unpack_sums(total: np.ndarray, k: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mass (k,), S1 (k, d) and a full symmetric S2 (k, d, d) from a summed partial row.

    total (in): ``1 + k * n_sums(d)`` doubles in the layout of :func:`run_chunks`.
    """
    sums = total[1:].reshape(k, n_sums(d))
    mass = sums[:, 0].copy()
    shifted_sum = sums[:, 1 : 1 + d].copy()
    upper_rows, upper_cols = np.triu_indices(d)
    shifted_outer = np.empty((k, d, d))
    shifted_outer[:, upper_rows, upper_cols] = sums[:, 1 + d :]
    shifted_outer[:, upper_cols, upper_rows] = sums[:, 1 + d :]
    return mass, shifted_sum, shifted_outer
