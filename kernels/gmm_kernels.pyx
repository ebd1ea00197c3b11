# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""nogil Cython kernels for full-covariance Gaussian-mixture EM.

Numeric code only: no policy, no timing, no I/O. The ``def`` functions check shapes
(so that a wrong argument is a ``ValueError``, never an out-of-bounds write), release
the GIL and run ``cdef ... noexcept nogil`` code that never raises and never touches a
Python object.

Kernels
-------
``e_step``
    Log densities through the precision Cholesky factor, max-shifted log-sum-exp,
    log responsibilities written to an ``(n, k)`` output.
``m_step``
    Responsibility-weighted sums, relative to a shift ``c`` (the previous means):
    ``N_k = sum r``, ``S1_k = sum r (x - c_k)``, ``S2_k = sum r (x - c_k)(x - c_k)^T``.
``fused``
    Both in one pass over ``X``: the ``(n, k)`` responsibilities never exist.
``e_step_components``, ``m_step_components``
    The model-parallel variants: one component per thread (see their docstrings).

How the data-parallel kernels are organised (after scikit-learn's k-means Lloyd kernels)
---------------------------------------------------------------------------------------
* Points are processed in blocks of B rows, transposed into per-thread scratch (one
  row per feature) so that every inner loop runs over contiguous points and the
  compiler vectorises it, ``exp`` and ``log`` included (see ``_exp``/``_log``). B is
  chosen from (d, k) so that a block's working set stays in the L1 cache
  (:func:`block_rows`).
* Blocks are grouped into chunks; ``prange`` hands chunks to threads one at a time
  (dynamic schedule), so a thread that wakes late or is descheduled for a moment
  takes fewer chunks instead of holding up the others. Against a static schedule on
  a 2-core machine it scaled better from 1 to 2 threads on short iterations and no
  worse on long ones. The chunk grid depends only on ``(n, d, k)``, never on the
  thread count.
* Each chunk writes its partial sums into its own row of a partials array; after the
  parallel loop the rows are added in chunk order. Results are therefore *bitwise*
  identical for any thread count and any schedule.
* Per-thread scratch is allocated inside the parallel block and freed there.
* Within a chunk, sums over points accumulate in ``LANES`` independent lanes, summed
  in a fixed order at the end of the chunk: this vectorises without letting the
  compiler reassociate floating-point arithmetic.
* Three register-blocked inner loops (the quadratic form for d > 2, the statistics
  for d = 2 and for d > 2) are small C functions in the ``cdef extern`` block below,
  written with explicit SIMD vectors: gcc does not keep several accumulator arrays
  in registers from Cython's output, and those loops ran several times slower.
* With ``num_threads == 1`` no OpenMP region is opened at all (same chunk grid, same
  results), so forked worker processes can call the kernels safely.

The thread count is decided in one place, :func:`effective_threads`. BLAS is not used
by these kernels; the callers still hold BLAS to one thread while they run.
"""

import os
import shlex

import numpy as np

from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memset

cdef extern from *:
    """
    #ifdef _OPENMP
    #define GMM_OPENMP_COMPILED 1
    #else
    #define GMM_OPENMP_COMPILED 0
    #endif
    #ifndef GMM_BUILD_COMPILER
    #define GMM_BUILD_COMPILER "unknown (not built by kernels/_build.py)"
    #endif
    #ifndef GMM_BUILD_COMPILE_ARGS
    #define GMM_BUILD_COMPILE_ARGS ""
    #endif
    #ifndef GMM_BUILD_LINK_ARGS
    #define GMM_BUILD_LINK_ARGS ""
    #endif
    #ifndef GMM_BUILD_CYTHON_VERSION
    #define GMM_BUILD_CYTHON_VERSION "unknown"
    #endif
    #ifndef GMM_BUILD_OPENMP_NOTE
    #define GMM_BUILD_OPENMP_NOTE ""
    #endif
    #include <stdlib.h>
    /* n doubles on a cache-line (64-byte) boundary, or NULL; release with free().
       With malloc's 16-byte alignment, where the scratch rows fell relative to cache
       lines varied with the heap state of each process, and so did the speed of the
       same build's iteration from one process to the next; aligned, every process
       runs alike. */
    static double *gmm_aligned_doubles(Py_ssize_t n) {
        void *p = NULL;
        if (n < 1 || posix_memalign(&p, 64, (size_t)n * sizeof(double)) != 0) return NULL;
        return (double *)p;
    }
    /* ---- Register-blocked micro-kernels for d > 2, in C because they need explicit
       SIMD vectors: gcc does not vectorise these loop nests reliably from Cython's
       output (several times slower when measured). GCC/Clang vector extensions at the native
       width (AVX-512: 8 doubles, AVX: 4, else 2); a wider-than-native vector type
       is lowered badly, so the width follows the target. Plain C elsewhere. ---- */
    #if defined(__AVX512F__)
    #define GMM_VEC_DOUBLES 8
    #elif defined(__AVX__)
    #define GMM_VEC_DOUBLES 4
    #else
    #define GMM_VEC_DOUBLES 2
    #endif
    #if defined(__GNUC__)
    #define GMM_EXPLICIT_SIMD 1
    typedef double gmm_vec __attribute__((vector_size(GMM_VEC_DOUBLES * sizeof(double)),
                                          aligned(sizeof(double)), may_alias));
    #define GMM_LOAD(ptr) (*(const gmm_vec *)(ptr))
    #else
    #define GMM_EXPLICIT_SIMD 0
    #endif

    /* out[i] = constant - ||xc[:, i]^T P||^2 / 2 for i < B, one component.
       xc (in): (d, B), centred points, one row per feature; B a multiple of 8.
       P (in): (d, d4), upper-triangular, zero below the diagonal and in the padding
       columns up to d4 (a multiple of 4). out (out): (B,).
       For a vector of points, four outputs y_e..y_e+3 accumulate in registers and
       each x is loaded once for all four. */
    static void gmm_quad_form(const double *xc, Py_ssize_t B, Py_ssize_t d, Py_ssize_t d4,
                              const double *P, double constant, double *out)
    {
        Py_ssize_t s, e0, c;
    #if GMM_EXPLICIT_SIMD
        for (s = 0; s < B; s += GMM_VEC_DOUBLES) {
            gmm_vec m = {0};
            for (e0 = 0; e0 < d4; e0 += 4) {
                const Py_ssize_t c_end = e0 + 4 < d ? e0 + 4 : d;
                gmm_vec y0 = {0}, y1 = {0}, y2 = {0}, y3 = {0};
                for (c = 0; c < c_end; c++) {
                    const gmm_vec x = GMM_LOAD(xc + c * B + s);
                    const double *p = P + c * d4 + e0;
                    y0 += x * p[0];
                    y1 += x * p[1];
                    y2 += x * p[2];
                    y3 += x * p[3];
                }
                m += (y0 * y0 + y1 * y1) + (y2 * y2 + y3 * y3);
            }
            *(gmm_vec *)(out + s) = constant - 0.5 * m;
        }
    #else
        for (s = 0; s < B; s++) {
            double m = 0.0;
            for (e0 = 0; e0 < d; e0++) {
                double y = 0.0;
                for (c = 0; c <= e0; c++) y += xc[c * B + s] * P[c * d4 + e0];
                m += y * y;
            }
            out[s] = constant - 0.5 * m;
        }
    #endif
    }

    /* The d = 2 case of the sums below in one pass, all six in registers: mass,
       S1 (2) and the upper S2 (3) of one component, relative to (c0, c1).
       xt (in): (2, B). r (in): (B,), 0 on padding rows. acc (in/out): 6 x 8 lanes. */
    static void gmm_accumulate_2d(const double *xt, Py_ssize_t B, const double *r,
                                  double c0, double c1, double *acc)
    {
        Py_ssize_t i;
    #if GMM_EXPLICIT_SIMD
        gmm_vec m = {0}, s0 = {0}, s1 = {0}, s00 = {0}, s01 = {0}, s11 = {0};
        for (i = 0; i < B; i += GMM_VEC_DOUBLES) {
            const gmm_vec rr = GMM_LOAD(r + i);
            const gmm_vec x0 = GMM_LOAD(xt + i) - c0;
            const gmm_vec x1 = GMM_LOAD(xt + B + i) - c1;
            const gmm_vec w0 = rr * x0, w1 = rr * x1;
            m += rr;
            s0 += w0;
            s1 += w1;
            s00 += w0 * x0;
            s01 += w0 * x1;
            s11 += w1 * x1;
        }
        *(gmm_vec *)acc += m;
        *(gmm_vec *)(acc + 8) += s0;
        *(gmm_vec *)(acc + 16) += s1;
        *(gmm_vec *)(acc + 24) += s00;
        *(gmm_vec *)(acc + 32) += s01;
        *(gmm_vec *)(acc + 40) += s11;
    #else
        double m = 0.0, s0 = 0.0, s1 = 0.0, s00 = 0.0, s01 = 0.0, s11 = 0.0;
        for (i = 0; i < B; i++) {
            const double x0 = xt[i] - c0, x1 = xt[B + i] - c1;
            const double w0 = r[i] * x0, w1 = r[i] * x1;
            m += r[i];
            s0 += w0;
            s1 += w1;
            s00 += w0 * x0;
            s01 += w0 * x1;
            s11 += w1 * x1;
        }
        acc[0] += m;
        acc[8] += s0;
        acc[16] += s1;
        acc[24] += s00;
        acc[32] += s01;
        acc[40] += s11;
    #endif
    }

    /* acc[(a, b)] += sum_i r_i z[a, i] z[b, i] for 0 <= a <= b <= d, one component.
       z (in): (d + 4, B); row 0 all ones (the homogeneous coordinate: (0, 0) is the
       mass, (0, 1 + c) the first moments, (1 + a, 1 + b) the second moments), rows
       1..d the shifted points, rows d + 1..d + 3 zero (they pad the four-wide
       blocks). r (in): (B,), 0 on padding rows. w: scratch (B,). acc (in/out): the
       packed upper triangle of the (d + 1) x (d + 1) matrix, 8 lanes per entry
       (lanes beyond the vector width stay untouched). Four entries at a time share
       each load of w and run as four independent dependency chains. */
    static void gmm_accumulate_augmented(const double *z, const double *r, Py_ssize_t B,
                                         Py_ssize_t d, double *w, double *acc)
    {
        const Py_ssize_t dim = d + 1;
        Py_ssize_t a, b0, i;
        for (a = 0; a < dim; a++) {
            const Py_ssize_t packed_aa = a * dim - a * (a - 1) / 2;
            for (i = 0; i < B; i++) w[i] = r[i] * z[a * B + i];
            for (b0 = a; b0 < dim; b0 += 4) {
                const double *z0 = z + b0 * B, *z1 = z0 + B, *z2 = z1 + B, *z3 = z2 + B;
                double *target = acc + (packed_aa + b0 - a) * 8;
                const Py_ssize_t n_out = dim - b0 < 4 ? dim - b0 : 4;
    #if GMM_EXPLICIT_SIMD
                gmm_vec s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
                for (i = 0; i < B; i += GMM_VEC_DOUBLES) {
                    const gmm_vec wv = GMM_LOAD(w + i);
                    s0 += wv * GMM_LOAD(z0 + i);
                    s1 += wv * GMM_LOAD(z1 + i);
                    s2 += wv * GMM_LOAD(z2 + i);
                    s3 += wv * GMM_LOAD(z3 + i);
                }
                *(gmm_vec *)target += s0;
                if (n_out > 1) *(gmm_vec *)(target + 8) += s1;
                if (n_out > 2) *(gmm_vec *)(target + 16) += s2;
                if (n_out > 3) *(gmm_vec *)(target + 24) += s3;
    #else
                double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
                for (i = 0; i < B; i++) {
                    s0 += w[i] * z0[i];
                    s1 += w[i] * z1[i];
                    s2 += w[i] * z2[i];
                    s3 += w[i] * z3[i];
                }
                target[0] += s0;
                if (n_out > 1) target[8] += s1;
                if (n_out > 2) target[16] += s2;
                if (n_out > 3) target[24] += s3;
    #endif
            }
        }
    }
    #if defined(__AVX512F__)
    #define GMM_SIMD "avx512f"
    #elif defined(__AVX2__)
    #define GMM_SIMD "avx2"
    #elif defined(__AVX__)
    #define GMM_SIMD "avx"
    #elif defined(__SSE2__) || defined(_M_X64)
    #define GMM_SIMD "sse2"
    #elif defined(__ARM_NEON)
    #define GMM_SIMD "neon"
    #else
    #define GMM_SIMD "none"
    #endif
    """
    int GMM_OPENMP_COMPILED
    const char* GMM_BUILD_COMPILER
    const char* GMM_BUILD_COMPILE_ARGS
    const char* GMM_BUILD_LINK_ARGS
    const char* GMM_BUILD_CYTHON_VERSION
    const char* GMM_BUILD_OPENMP_NOTE
    const char* GMM_SIMD
    int GMM_VEC_DOUBLES
    double* gmm_aligned_doubles(Py_ssize_t n) noexcept nogil
    void gmm_quad_form(const double* xc, Py_ssize_t B, Py_ssize_t d, Py_ssize_t d4,
                       const double* P, double constant, double* out) noexcept nogil
    void gmm_accumulate_augmented(const double* z, const double* r, Py_ssize_t B,
                                  Py_ssize_t d, double* w, double* acc) noexcept nogil
    void gmm_accumulate_2d(const double* xt, Py_ssize_t B, const double* r, double c0,
                           double c1, double* acc) noexcept nogil


cdef enum:
    # Independent accumulators per sum: a multiple of the widest vector (8 doubles in
    # AVX-512), so that lane-wise sums vectorise without reassociation.
    LANES = 8
    # Bounds on the rows per block. Above 256 the per-block loop overhead is already
    # negligible; below 32 it is not.
    MIN_BLOCK_ROWS = 32
    MAX_BLOCK_ROWS = 256
    # At most this many chunks: enough to balance a few dozen threads, few enough
    # that the partials array stays small ...
    MAX_CHUNKS = 256

# ... and at most this many doubles (8 MiB) of partial sums in all.
cdef Py_ssize_t PARTIALS_BUDGET = 1 << 20
# A block's working set (2 d + k + 4 rows of B doubles) is kept within this: the L1
# data cache of x86 cores of the last decade (32-48 KiB). Blocks that fit ran the
# d = 32 quadratic form clearly faster than 256-row blocks, whose centred points
# (64 KiB) spill to L2 on every pass; quinn's E-step (k = 50) gained likewise.
cdef Py_ssize_t L1_BUDGET_BYTES = 32 * 1024

# Environment variable that makes openmp_enabled() false, read once at import, as a
# build without OpenMP would be: kernels then run on one thread whatever is asked.
DISABLE_OPENMP_ENV = "GMM_HARNESS_DISABLE_OPENMP"
cdef bint _OPENMP_DISABLED = os.environ.get(DISABLE_OPENMP_ENV, "").strip() == "1"

# Operations run by the data-parallel chunk loop.
cdef enum:
    OP_E_STEP = 0
    OP_M_STEP = 1
    OP_FUSED = 2


# --------------------------------------------------------------------------------------
# Vectorisable exp and log
# --------------------------------------------------------------------------------------
# libm's exp/log are opaque calls, so a loop calling them runs one point at a time and
# the exponentials alone would cost several times the n*k floor. These versions are
# branch-free straight-line code the compiler vectorises. Both are accurate to a few
# units in the last place (the reference tolerance is 1e-8 relative).

cdef union _DoubleBits:
    double value
    uint64_t bits

cdef double _LOG2E = 1.4426950408889634
# ln 2 split so that k * _LN2_HI is exact for |k| < 2^20 (fdlibm's constants).
cdef double _LN2_HI = 6.93147180369123816490e-01
cdef double _LN2_LO = 1.90821492927058770002e-10
# 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits.
cdef double _ROUND_MAGIC = 6755399441055744.0
# Below this exp underflows to subnormals; the result is flushed to 0 (absolute error
# < 1e-307, irrelevant next to the largest term of a log-sum-exp, which is 1).
cdef double _EXP_MIN_ARG = -708.0
cdef double _SQRT2 = 1.4142135623730951
# 2^52 + 1023: subtracted from a double whose low bits hold a biased exponent.
cdef double _EXPONENT_MAGIC = 4503599627370496.0 + 1023.0


cdef inline double _exp(double x) noexcept nogil:
    """exp(x) for x <= 709; 0 below -708; NaN propagates."""
    cdef double clamped = _EXP_MIN_ARG if x < _EXP_MIN_ARG else x
    # x = k ln2 + r, |r| <= ln2 / 2 (Cody-Waite reduction, k by round-to-nearest).
    cdef double shifted = clamped * _LOG2E + _ROUND_MAGIC
    cdef double k = shifted - _ROUND_MAGIC
    cdef double r = (clamped - k * _LN2_HI) - k * _LN2_LO
    # Taylor polynomial of degree 13: truncation error < 2e-17 for |r| <= 0.347.
    cdef double p = 1.0 / 6227020800.0
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
    # 2^k built directly in the exponent field (the magic's own bits shift out).
    cdef _DoubleBits scale
    scale.value = shifted
    scale.bits = (scale.bits + 1023) << 52
    return 0.0 if x < _EXP_MIN_ARG else p * scale.value


cdef inline double _log(double x) noexcept nogil:
    """log(x) for positive normal x (here always >= 1: a sum of exps whose max is 1)."""
    cdef _DoubleBits value, exponent
    value.value = x
    # The biased exponent, converted to double without an int64 -> double instruction.
    exponent.bits = (value.bits >> 52) | <uint64_t> 0x4330000000000000
    cdef double e = exponent.value - _EXPONENT_MAGIC
    # Mantissa m in [1, 2), moved to [sqrt(2)/2, sqrt(2)) so that |log m| <= ln2 / 2.
    value.bits = (value.bits & <uint64_t> 0x000FFFFFFFFFFFFF) | <uint64_t> 0x3FF0000000000000
    cdef double m = value.value
    cdef bint high = m > _SQRT2
    m = 0.5 * m if high else m
    e = e + 1.0 if high else e
    # log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172: series to s^21
    # (truncation error < 3e-17 relative).
    cdef double f = m - 1.0
    cdef double s = f / (2.0 + f)
    cdef double z = s * s
    cdef double p = 2.0 / 21.0
    p = p * z + 2.0 / 19.0
    p = p * z + 2.0 / 17.0
    p = p * z + 2.0 / 15.0
    p = p * z + 2.0 / 13.0
    p = p * z + 2.0 / 11.0
    p = p * z + 2.0 / 9.0
    p = p * z + 2.0 / 7.0
    p = p * z + 2.0 / 5.0
    p = p * z + 2.0 / 3.0
    cdef double log_m = s * 2.0 + s * (z * p)
    return e * _LN2_HI + (log_m + e * _LN2_LO)


def vector_exp(const double[::1] x, double[::1] out):
    """The kernels' ``exp`` over an array (for tests and the exp-floor benchmark).

    Parameters
    ----------
    x : ndarray of float64, shape (m,)
        Input, values <= 709.
    out : ndarray of float64, shape (m,)
        Output, overwritten.
    """
    if x.shape[0] != out.shape[0]:
        raise ValueError(f"x and out differ in length: {x.shape[0]} != {out.shape[0]}")
    cdef Py_ssize_t i, m = x.shape[0]
    with nogil:
        for i in range(m):
            out[i] = _exp(x[i])


def vector_log(const double[::1] x, double[::1] out):
    """The kernels' ``log`` over an array (for tests): positive normal inputs only."""
    if x.shape[0] != out.shape[0]:
        raise ValueError(f"x and out differ in length: {x.shape[0]} != {out.shape[0]}")
    cdef Py_ssize_t i, m = x.shape[0]
    with nogil:
        for i in range(m):
            out[i] = _log(x[i])


# --------------------------------------------------------------------------------------
# Block-level building blocks: B points (a multiple of LANES), features transposed
# --------------------------------------------------------------------------------------


cdef inline void _load_block(const double* X, Py_ssize_t row0, Py_ssize_t rows, Py_ssize_t d,
                             Py_ssize_t B, double* xt) noexcept nogil:
    """xt[c, i] = X[row0 + i, c] for i < rows; rows up to B are zero.

    X (in): (n, d) row-major. xt (out): (d, B).
    """
    cdef Py_ssize_t i, c
    cdef const double* source = X + row0 * d
    if d == 2:
        for i in range(rows):
            xt[i] = source[2 * i]
            xt[B + i] = source[2 * i + 1]
    else:
        for i in range(rows):
            for c in range(d):
                xt[c * B + i] = source[i * d + c]
    if rows < B:
        for c in range(d):
            memset(xt + c * B + rows, 0, (B - rows) * sizeof(double))


cdef inline void _centre(const double* xt, Py_ssize_t d, Py_ssize_t B, const double* centre,
                         double* xc) noexcept nogil:
    """xc[c, i] = xt[c, i] - centre[c]. xt (in), xc (out): (d, B)."""
    cdef Py_ssize_t c, i
    cdef double m
    for c in range(d):
        m = centre[c]
        for i in range(B):
            xc[c * B + i] = xt[c * B + i] - m


cdef inline void _log_prob_block(const double* xt, Py_ssize_t d, Py_ssize_t d4, Py_ssize_t k,
                                 Py_ssize_t B, const double* log_norm, const double* means,
                                 const double* prec, double* xc, double* lp) noexcept nogil:
    """lp[j, i] = log_norm[j] - ||(x_i - mu_j) P_j||^2 / 2 for a block.

    xt (in): (d, B). log_norm (in): (k,). means (in): (k, d). prec (in): (k, d, d4),
    upper-triangular P_j zero-padded to d4 columns. xc: scratch (d, B).
    lp (out): (k, B).
    """
    cdef Py_ssize_t i, j
    cdef const double* mu
    cdef const double* P
    cdef double* out
    cdef double p00, p01, p11, m0, m1, x0, x1, y0, y1, constant
    for j in range(k):
        mu = means + j * d
        P = prec + j * d * d4
        out = lp + j * B
        constant = log_norm[j]
        if d == 2:
            # The 2-D workloads (schreiber, quinn) in one pass, everything in registers.
            p00 = P[0]
            p01 = P[1]
            p11 = P[d4 + 1]
            m0 = mu[0]
            m1 = mu[1]
            for i in range(B):
                x0 = xt[i] - m0
                x1 = xt[B + i] - m1
                y0 = x0 * p00
                y1 = x0 * p01 + x1 * p11
                out[i] = constant - 0.5 * (y0 * y0 + y1 * y1)
        else:
            _centre(xt, d, B, mu, xc)
            gmm_quad_form(xc, B, d, d4, P, constant, out)


cdef inline void _row_max(Py_ssize_t k, Py_ssize_t B, const double* lp,
                          double* mx) noexcept nogil:
    """mx[i] = max_j lp[j, i]. lp (in): (k, B); mx (out): (B,)."""
    cdef Py_ssize_t i, j
    cdef double v
    for i in range(B):
        mx[i] = lp[i]
    for j in range(1, k):
        for i in range(B):
            v = lp[j * B + i]
            mx[i] = v if v > mx[i] else mx[i]


cdef inline void _exp_sum(Py_ssize_t k, Py_ssize_t B, double* lp, const double* mx,
                          double* sm, bint store) noexcept nogil:
    """sm[i] = sum_j exp(lp[j, i] - mx[i]); with ``store`` the exps replace lp.

    lp (in, or in/out with store): (k, B). mx (in), sm (out): (B,).
    """
    cdef Py_ssize_t i, j
    cdef double v
    for i in range(B):
        sm[i] = 0.0
    for j in range(k):
        if store:
            for i in range(B):
                v = _exp(lp[j * B + i] - mx[i])
                lp[j * B + i] = v
                sm[i] = sm[i] + v
        else:
            for i in range(B):
                sm[i] = sm[i] + _exp(lp[j * B + i] - mx[i])


cdef inline void _log_sum_exp(Py_ssize_t rows, Py_ssize_t B, double* mx,
                              const double* sm) noexcept nogil:
    """mx[i] += log(sm[i]) for i < rows, 0 beyond (padding must not count)."""
    cdef Py_ssize_t i
    for i in range(B):
        mx[i] = mx[i] + _log(sm[i])
    for i in range(rows, B):
        mx[i] = 0.0


cdef inline void _lane_sum(const double* v, Py_ssize_t B, double* acc) noexcept nogil:
    """acc[l] += sum of v[i] over i = l (mod LANES). v (in): (B,); acc (in/out): (LANES,)."""
    cdef double lanes[LANES]
    cdef Py_ssize_t group, l
    for l in range(LANES):
        lanes[l] = acc[l]
    for group in range(B // LANES):
        for l in range(LANES):
            lanes[l] = lanes[l] + v[group * LANES + l]
    for l in range(LANES):
        acc[l] = lanes[l]


cdef inline void _accumulate_block(const double* xt, const double* resp, Py_ssize_t d,
                                   Py_ssize_t k, Py_ssize_t B, const double* shift,
                                   double* z, double* w, double* acc) noexcept nogil:
    """Add a block's shifted sums to the lane accumulators.

    xt (in): (d, B). resp (in): (k, B), 0 on padding rows. shift (in): (k, d).
    z: scratch (d + 4, B) whose row 0 is all ones (see :func:`_init_z`): with this
    homogeneous coordinate the mass and the first moments are products like the second
    moments, ``sum r z_a z_b``. w: scratch (B,). acc (in/out): per component the packed
    upper triangle of that (d + 1) x (d + 1) matrix, ``1 + d + d(d+1)/2`` sums (mass,
    S1, S2) in the layout of :func:`_unpack_sums`, each LANES wide.
    """
    cdef Py_ssize_t j
    cdef Py_ssize_t dim = d + 1
    cdef const double* r
    for j in range(k):
        r = resp + j * B
        if d == 2:
            gmm_accumulate_2d(xt, B, r, shift[j * 2], shift[j * 2 + 1], acc + j * 6 * LANES)
            continue
        _centre(xt, d, B, shift + j * d, z + B)
        gmm_accumulate_augmented(z, r, B, d, w, acc + j * (dim * (dim + 1) // 2) * LANES)


cdef inline void _init_z(double* z, Py_ssize_t d, Py_ssize_t B) noexcept nogil:
    """The fixed rows of z (d + 4, B): row 0 ones, rows d + 1 .. d + 3 zero."""
    cdef Py_ssize_t i
    for i in range(B):
        z[i] = 1.0
    memset(z + (d + 1) * B, 0, 3 * B * sizeof(double))


cdef inline void _reduce_lanes(const double* acc, Py_ssize_t n_sums,
                               double* out) noexcept nogil:
    """out[s] = acc[s, 0] + ... + acc[s, LANES - 1], always in that order."""
    cdef Py_ssize_t s, l
    cdef double total
    for s in range(n_sums):
        total = 0.0
        for l in range(LANES):
            total = total + acc[s * LANES + l]
        out[s] = total


# --------------------------------------------------------------------------------------
# Data-parallel chunk loop
# --------------------------------------------------------------------------------------

ctypedef struct KernelArgs:
    const double* X              # (n, d) in
    const double* log_norm       # (k,) in
    const double* means          # (k, d) in
    const double* prec           # (k, d, d4) in: P_j zero-padded, see _padded_precision
    const double* shift          # (k, d) in
    const double* log_resp_in    # (n, k) in (m-step)
    double* log_resp_out         # (n, k) out (e-step)
    double* columns              # (k, n) scratch of the model-parallel e-step
    double* partials             # (n_chunks, row_size) out: per-chunk partial sums
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t d4                # d rounded up to a multiple of 4
    Py_ssize_t k
    Py_ssize_t n_sums            # 1 + d + d(d+1)/2 per component
    Py_ssize_t row_size          # 1 (log-likelihood) + k * n_sums
    Py_ssize_t block_rows        # B
    Py_ssize_t rows_per_chunk    # a multiple of B
    Py_ssize_t n_chunks
    Py_ssize_t scratch_size      # doubles of scratch per thread


cdef inline Py_ssize_t _data_parallel_scratch(Py_ssize_t d, Py_ssize_t k, Py_ssize_t n_sums,
                                              Py_ssize_t B) noexcept nogil:
    # xt: d rows; z: d + 4 rows; w, mx, sm: one row each; lp: k rows; lanes.
    return (2 * d + 7 + k) * B + (1 + k * n_sums) * LANES


cdef void _chunk(int op, const KernelArgs* a, Py_ssize_t chunk, double* scratch) noexcept nogil:
    """Run ``op`` on the rows of one chunk and write its partial row."""
    cdef Py_ssize_t d = a.d, k = a.k, B = a.block_rows
    cdef Py_ssize_t row0 = chunk * a.rows_per_chunk
    cdef Py_ssize_t row1 = min(row0 + a.rows_per_chunk, a.n)
    cdef Py_ssize_t n_acc = 1 + (k * a.n_sums if op != OP_E_STEP else 0)
    cdef double* xt = scratch
    cdef double* z = xt + d * B
    cdef double* w = z + (d + 4) * B
    cdef double* mx = w + B
    cdef double* sm = mx + B
    cdef double* lp = sm + B
    cdef double* acc = lp + k * B
    cdef Py_ssize_t b, block, rows, i, j
    cdef double* out_row
    cdef const double* in_row
    memset(acc, 0, n_acc * LANES * sizeof(double))
    _init_z(z, d, B)
    for b in range((row1 - row0 + B - 1) // B):
        block = row0 + b * B
        rows = min(B, row1 - block)
        _load_block(a.X, block, rows, d, B, xt)
        if op == OP_M_STEP:
            for i in range(rows):
                in_row = a.log_resp_in + (block + i) * k
                for j in range(k):
                    lp[j * B + i] = in_row[j]
            for j in range(k):
                for i in range(rows):
                    lp[j * B + i] = _exp(lp[j * B + i])
                for i in range(rows, B):
                    lp[j * B + i] = 0.0
            _accumulate_block(xt, lp, d, k, B, a.shift, z, w, acc + LANES)
            continue
        _log_prob_block(xt, d, a.d4, k, B, a.log_norm, a.means, a.prec, z + B, lp)
        _row_max(k, B, lp, mx)
        if op == OP_E_STEP:
            _exp_sum(k, B, lp, mx, sm, False)
            _log_sum_exp(rows, B, mx, sm)
            _lane_sum(mx, B, acc)
            for i in range(rows):
                out_row = a.log_resp_out + (block + i) * k
                for j in range(k):
                    out_row[j] = lp[j * B + i] - mx[i]
            continue
        # OP_FUSED: responsibilities r = exp(lp - max) / sum, kept in the block only.
        _exp_sum(k, B, lp, mx, sm, True)
        _log_sum_exp(rows, B, mx, sm)
        _lane_sum(mx, B, acc)
        for i in range(B):
            sm[i] = 1.0 / sm[i]
        for i in range(rows, B):
            sm[i] = 0.0
        for j in range(k):
            for i in range(B):
                lp[j * B + i] = lp[j * B + i] * sm[i]
        _accumulate_block(xt, lp, d, k, B, a.shift, z, w, acc + LANES)
    _reduce_lanes(acc, n_acc, a.partials + chunk * a.row_size)


cdef int _run_chunks(int op, const KernelArgs* a, int n_threads, int* seen) noexcept nogil:
    """Every chunk once, on ``n_threads`` OpenMP threads (dynamic schedule).

    seen (out): (n_threads,), set to 1 by each thread that ran, -1 if its scratch
    allocation failed. Returns -1 on allocation failure, else 0.
    """
    cdef Py_ssize_t chunk
    cdef int thread
    cdef double* scratch = NULL
    cdef int status = 0
    if n_threads == 1:
        # No OpenMP region at all: identical results, and safe in forked processes.
        scratch = gmm_aligned_doubles(a.scratch_size)
        if scratch == NULL:
            return -1
        seen[0] = 1
        for chunk in range(a.n_chunks):
            _chunk(op, a, chunk, scratch)
        free(scratch)
        return 0
    with parallel(num_threads=n_threads):
        # Per-thread scratch, allocated by the thread that uses it.
        scratch = gmm_aligned_doubles(a.scratch_size)
        seen[threadid()] = 1 if scratch != NULL else -1
        for chunk in prange(a.n_chunks, schedule="dynamic", chunksize=1):
            if scratch != NULL:
                _chunk(op, a, chunk, scratch)
        free(scratch)
    for thread in range(n_threads):
        if seen[thread] < 0:
            status = -1
    return status


cdef void _sum_rows(const double* partials, Py_ssize_t n_rows, Py_ssize_t row_size,
                    double* total) noexcept nogil:
    """total = partials[0] + partials[1] + ..., rows added in order. total: (row_size,)."""
    cdef Py_ssize_t r, s
    for s in range(row_size):
        total[s] = 0.0
    for r in range(n_rows):
        for s in range(row_size):
            total[s] = total[s] + partials[r * row_size + s]


cdef void _unpack_sums(const double* sums, Py_ssize_t d, double* mass, double* shifted_sum,
                       double* shifted_outer) noexcept nogil:
    """One component's packed sums into mass (1,), S1 (d,) and a full symmetric S2 (d, d).

    sums (in): the packed upper triangle of the (d + 1) x (d + 1) matrix of
    ``sum r z z^T`` with z = (1, x - c): mass, S1, then the rows of S2's upper part.
    """
    cdef Py_ssize_t a, b, packed = 1 + d
    mass[0] = sums[0]
    for a in range(d):
        shifted_sum[a] = sums[1 + a]
    for a in range(d):
        for b in range(a, d):
            shifted_outer[a * d + b] = sums[packed]
            shifted_outer[b * d + a] = sums[packed]
            packed += 1


# --------------------------------------------------------------------------------------
# Python-facing helpers
# --------------------------------------------------------------------------------------


def openmp_compiled():
    """True when the extension was compiled with OpenMP."""
    return bool(GMM_OPENMP_COMPILED)


def openmp_enabled():
    """Compiled with OpenMP and not disabled by ``GMM_HARNESS_DISABLE_OPENMP=1``.

    The variable is read once, when this module is imported, as a build flag would be;
    it lets the tests simulate a build without OpenMP.
    """
    return bool(GMM_OPENMP_COMPILED) and not _OPENMP_DISABLED


def openmp_unavailable_reason():
    """Why the kernels cannot run on several threads here, or None when they can."""
    if not GMM_OPENMP_COMPILED:
        note = GMM_BUILD_OPENMP_NOTE.decode() or "no -fopenmp"
        return f"kernels built without OpenMP ({note})"
    if _OPENMP_DISABLED:
        return f"OpenMP disabled at run time by {DISABLE_OPENMP_ENV}=1"
    return None


def build_info():
    """How the loaded binary was built, for every result's metadata.

    Returns
    -------
    dict
        ``openmp_compiled`` (bool), ``openmp_enabled`` (bool), ``openmp_note`` (str),
        ``compiler`` (str), ``compile_args`` (list of str), ``link_args`` (list of str),
        ``cython_version`` (str), ``simd`` (widest vector extension enabled at compile
        time), ``lanes`` (int).
    """
    return {
        "openmp_compiled": bool(GMM_OPENMP_COMPILED),
        "openmp_enabled": openmp_enabled(),
        "openmp_note": GMM_BUILD_OPENMP_NOTE.decode(),
        "compiler": GMM_BUILD_COMPILER.decode(),
        "compile_args": shlex.split(GMM_BUILD_COMPILE_ARGS.decode()),
        "link_args": shlex.split(GMM_BUILD_LINK_ARGS.decode()),
        "cython_version": GMM_BUILD_CYTHON_VERSION.decode(),
        "simd": GMM_SIMD.decode(),
        "lanes": LANES,
    }


def effective_threads(num_threads):
    """The OpenMP thread count a kernel call uses: the one place that decides it.

    Exactly ``num_threads`` when OpenMP is enabled (the ``num_threads`` clause overrides
    ``OMP_NUM_THREADS``), 1 otherwise.

    Raises
    ------
    ValueError
        If ``num_threads`` is not an integer >= 1.
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise ValueError(f"num_threads must be an integer >= 1; got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1; got {num_threads}")
    return int(num_threads) if openmp_enabled() else 1


cdef inline Py_ssize_t _block_rows(Py_ssize_t d, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t working_rows = 2 * d + k + 4
    cdef Py_ssize_t rows = L1_BUDGET_BYTES // (<Py_ssize_t> sizeof(double) * working_rows)
    rows = rows // LANES * LANES
    return min(<Py_ssize_t> MAX_BLOCK_ROWS, max(<Py_ssize_t> MIN_BLOCK_ROWS, rows))


cdef inline Py_ssize_t _chunk_rows(Py_ssize_t n, Py_ssize_t d, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t B = _block_rows(d, k)
    cdef Py_ssize_t row_size = 1 + k * (1 + d + d * (d + 1) // 2)
    cdef Py_ssize_t max_chunks = max(<Py_ssize_t> 1,
                                     min(<Py_ssize_t> MAX_CHUNKS, PARTIALS_BUDGET // row_size))
    cdef Py_ssize_t n_blocks = (n + B - 1) // B
    cdef Py_ssize_t blocks_per_chunk = (n_blocks + max_chunks - 1) // max_chunks
    return max(<Py_ssize_t> 1, blocks_per_chunk) * B


def block_rows(Py_ssize_t d, Py_ssize_t k):
    """Points per block for d features and k components (working set within L1)."""
    return _block_rows(d, k)


def chunk_rows(Py_ssize_t n, Py_ssize_t d, Py_ssize_t k):
    """Points per chunk (the unit of work handed to a thread) of the data-parallel kernels.

    A function of ``(n, d, k)`` only: the chunk grid, and so every result, is the same
    for every thread count.
    """
    return _chunk_rows(n, d, k)


cdef _check_model(const double[:, ::1] X, const double[::1] log_norm,
                  const double[:, ::1] means, const double[:, :, ::1] prec_chol):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = means.shape[0]
    if n < 1 or d < 1 or k < 1:
        raise ValueError(f"need n, d, k >= 1; got X {(n, d)} and {k} component(s)")
    if means.shape[1] != d:
        raise ValueError(f"means has {means.shape[1]} features, X has {d}")
    if log_norm.shape[0] != k:
        raise ValueError(f"log_norm has length {log_norm.shape[0]}, expected k = {k}")
    if prec_chol.shape[0] != k or prec_chol.shape[1] != d or prec_chol.shape[2] != d:
        raise ValueError(f"prec_chol has shape "
                         f"{prec_chol.shape[0], prec_chol.shape[1], prec_chol.shape[2]}, "
                         f"expected {(k, d, d)}")
    return n, d, k


cdef _check_stats_args(const double[:, ::1] X, Py_ssize_t k, const double[:, ::1] shift,
                       double[::1] mass_out, double[:, ::1] sum_out,
                       double[:, :, ::1] outer_out):
    cdef Py_ssize_t d = X.shape[1]
    if shift.shape[0] != k or shift.shape[1] != d:
        raise ValueError(f"shift has shape {shift.shape[0], shift.shape[1]}, expected {(k, d)}")
    if mass_out.shape[0] != k:
        raise ValueError(f"mass_out has length {mass_out.shape[0]}, expected {k}")
    if sum_out.shape[0] != k or sum_out.shape[1] != d:
        raise ValueError(f"sum_out has shape {sum_out.shape[0], sum_out.shape[1]}, "
                         f"expected {(k, d)}")
    if outer_out.shape[0] != k or outer_out.shape[1] != d or outer_out.shape[2] != d:
        raise ValueError(f"outer_out has shape "
                         f"{outer_out.shape[0], outer_out.shape[1], outer_out.shape[2]}, "
                         f"expected {(k, d, d)}")


cdef _check_log_resp(const double[:, ::1] X, log_resp):
    """(n, k) of a log-responsibility argument, checked against X."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = log_resp.shape[1]
    if n < 1 or d < 1 or k < 1:
        raise ValueError(f"need n, d, k >= 1; got X {(n, d)} and {k} component(s)")
    if log_resp.shape[0] != n:
        raise ValueError(f"log responsibilities have {log_resp.shape[0]} rows, X has {n}")
    return n, d, k


cdef Py_ssize_t _prepare_args(KernelArgs* a, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k,
                              int op) noexcept:
    """Fill sizes and the chunk grid (pointers NULL); returns the partials size in doubles."""
    memset(a, 0, sizeof(KernelArgs))
    a.n = n
    a.d = d
    a.d4 = (d + 3) // 4 * 4
    a.k = k
    a.n_sums = 1 + d + d * (d + 1) // 2
    a.row_size = 1 if op == OP_E_STEP else 1 + k * a.n_sums
    a.block_rows = _block_rows(d, k)
    a.rows_per_chunk = _chunk_rows(n, d, k)
    a.n_chunks = (n + a.rows_per_chunk - 1) // a.rows_per_chunk
    a.scratch_size = _data_parallel_scratch(d, k, a.n_sums, a.block_rows)
    return a.n_chunks * a.row_size


def _padded_precision(prec_chol, Py_ssize_t d4):
    """P_j with the strictly lower part zeroed and columns padded with zeros to d4.

    Returns an ndarray of float64, shape (k, d, d4): the four-wide register blocks of
    the quadratic form then need no edge cases, and a P with rounding noise below the
    diagonal is read exactly as the upper-triangular factor it stands for.
    """
    upper = np.triu(np.asarray(prec_chol))
    k, d = upper.shape[0], upper.shape[1]
    padded = _aligned_zeros(k * d * d4).reshape(k, d, d4)
    padded[:, :, :d] = upper
    return padded


def _aligned_zeros(Py_ssize_t size):
    """Zeros, float64, shape (size,), starting on a 64-byte boundary (SIMD row loads
    then never straddle cache lines because of where NumPy's allocator put them)."""
    buffer = np.zeros(size + 8)
    offset = (-buffer.ctypes.data % 64) // 8
    return buffer[offset:offset + size]


cdef bint _any_failed(int[::1] seen):
    cdef Py_ssize_t t
    for t in range(seen.shape[0]):
        if seen[t] < 0:
            return True
    return False


cdef int _threads_used(int[::1] seen):
    cdef Py_ssize_t t
    cdef int used = 0
    for t in range(seen.shape[0]):
        used += seen[t] > 0
    return used


def e_step(const double[:, ::1] X, const double[::1] log_norm, const double[:, ::1] means,
           const double[:, :, ::1] prec_chol, double[:, ::1] log_resp_out, num_threads):
    """Log responsibilities and the summed log-likelihood (data-parallel).

    Parameters
    ----------
    X : ndarray of float64, shape (n, d), C-contiguous (read-only is fine)
    log_norm : ndarray of float64, shape (k,)
        ``log w_j + log det P_j - d/2 log 2 pi``.
    means : ndarray of float64, shape (k, d)
    prec_chol : ndarray of float64, shape (k, d, d)
        Upper-triangular ``P_j`` (precision = P P^T); the part below the diagonal is
        ignored.
    log_resp_out : ndarray of float64, shape (n, k), writable
        Output: log responsibilities, each row log-sum-exps to 0.
    num_threads : int

    Returns
    -------
    loglik_sum : float
        Sum over points of ``log sum_j w_j N(x | mu_j, Sigma_j)``.
    threads_used : int
        OpenMP threads that actually ran.
    """
    cdef Py_ssize_t n, d, k
    n, d, k = _check_model(X, log_norm, means, prec_chol)
    if log_resp_out.shape[0] != n or log_resp_out.shape[1] != k:
        raise ValueError(f"log_resp_out has shape {log_resp_out.shape[0], log_resp_out.shape[1]}, "
                         f"expected {(n, k)}")
    cdef int n_threads = effective_threads(num_threads)
    cdef KernelArgs a
    partials = np.empty(_prepare_args(&a, n, d, k, OP_E_STEP))
    cdef double[::1] partials_view = partials
    padded = _padded_precision(prec_chol, a.d4)
    cdef const double[:, :, ::1] padded_view = padded
    cdef int[::1] seen = np.zeros(n_threads, dtype=np.intc)
    a.X = &X[0, 0]
    a.log_norm = &log_norm[0]
    a.means = &means[0, 0]
    a.prec = &padded_view[0, 0, 0]
    a.shift = NULL
    a.log_resp_in = NULL
    a.log_resp_out = &log_resp_out[0, 0]
    a.partials = &partials_view[0]
    cdef int status
    cdef double total
    with nogil:
        status = _run_chunks(OP_E_STEP, &a, n_threads, &seen[0])
        _sum_rows(a.partials, a.n_chunks, 1, &total)
    if status != 0:
        raise MemoryError("e_step: could not allocate per-thread scratch")
    return float(total), _threads_used(seen)


def m_step(const double[:, ::1] X, const double[:, ::1] log_resp, const double[:, ::1] shift,
           double[::1] mass_out, double[:, ::1] sum_out, double[:, :, ::1] outer_out,
           num_threads):
    """Responsibility-weighted sums relative to ``shift`` (data-parallel).

    Parameters
    ----------
    X : ndarray of float64, shape (n, d)
    log_resp : ndarray of float64, shape (n, k)
        Log responsibilities (as written by :func:`e_step`).
    shift : ndarray of float64, shape (k, d)
        Centre ``c_j`` of each component's sums (pass the previous means).
    mass_out : ndarray of float64, shape (k,)
        Output: ``sum_i r_ij``.
    sum_out : ndarray of float64, shape (k, d)
        Output: ``sum_i r_ij (x_i - c_j)``.
    outer_out : ndarray of float64, shape (k, d, d)
        Output: ``sum_i r_ij (x_i - c_j)(x_i - c_j)^T`` (symmetric).
    num_threads : int

    Returns
    -------
    threads_used : int

    Notes
    -----
    Outputs are overwritten, not accumulated.
    """
    cdef Py_ssize_t n, d, k
    n, d, k = _check_log_resp(X, log_resp)
    _check_stats_args(X, k, shift, mass_out, sum_out, outer_out)
    cdef int n_threads = effective_threads(num_threads)
    cdef KernelArgs a
    partials = np.empty(_prepare_args(&a, n, d, k, OP_M_STEP))
    cdef double[::1] partials_view = partials
    cdef double[::1] total = np.empty(a.row_size)
    cdef int[::1] seen = np.zeros(n_threads, dtype=np.intc)
    a.X = &X[0, 0]
    a.log_norm = NULL
    a.means = NULL
    a.prec = NULL
    a.shift = &shift[0, 0]
    a.log_resp_in = &log_resp[0, 0]
    a.log_resp_out = NULL
    a.partials = &partials_view[0]
    cdef int status
    cdef Py_ssize_t j
    with nogil:
        status = _run_chunks(OP_M_STEP, &a, n_threads, &seen[0])
        _sum_rows(a.partials, a.n_chunks, a.row_size, &total[0])
        for j in range(k):
            _unpack_sums(&total[1 + j * a.n_sums], d, &mass_out[j], &sum_out[j, 0],
                         &outer_out[j, 0, 0])
    if status != 0:
        raise MemoryError("m_step: could not allocate per-thread scratch")
    return _threads_used(seen)


def fused(const double[:, ::1] X, const double[::1] log_norm, const double[:, ::1] means,
          const double[:, :, ::1] prec_chol, const double[:, ::1] shift,
          double[::1] mass_out, double[:, ::1] sum_out, double[:, :, ::1] outer_out,
          num_threads):
    """E-step and M-step sums in one pass; the (n, k) responsibilities never exist.

    Parameters are those of :func:`e_step` (without ``log_resp_out``) and of
    :func:`m_step` (without ``log_resp``).

    Returns
    -------
    loglik_sum : float
    threads_used : int
    """
    cdef Py_ssize_t n, d, k
    n, d, k = _check_model(X, log_norm, means, prec_chol)
    _check_stats_args(X, k, shift, mass_out, sum_out, outer_out)
    cdef int n_threads = effective_threads(num_threads)
    cdef KernelArgs a
    partials = np.empty(_prepare_args(&a, n, d, k, OP_FUSED))
    cdef double[::1] partials_view = partials
    cdef double[::1] total = np.empty(a.row_size)
    padded = _padded_precision(prec_chol, a.d4)
    cdef const double[:, :, ::1] padded_view = padded
    cdef int[::1] seen = np.zeros(n_threads, dtype=np.intc)
    a.X = &X[0, 0]
    a.log_norm = &log_norm[0]
    a.means = &means[0, 0]
    a.prec = &padded_view[0, 0, 0]
    a.shift = &shift[0, 0]
    a.log_resp_in = NULL
    a.log_resp_out = NULL
    a.partials = &partials_view[0]
    cdef int status
    cdef Py_ssize_t j
    with nogil:
        status = _run_chunks(OP_FUSED, &a, n_threads, &seen[0])
        _sum_rows(a.partials, a.n_chunks, a.row_size, &total[0])
        for j in range(k):
            _unpack_sums(&total[1 + j * a.n_sums], d, &mass_out[j], &sum_out[j, 0],
                         &outer_out[j, 0, 0])
    if status != 0:
        raise MemoryError("fused: could not allocate per-thread scratch")
    return float(total[0]), _threads_used(seen)


# --------------------------------------------------------------------------------------
# Model-parallel kernels: one component per thread
# --------------------------------------------------------------------------------------


cdef void _component_log_prob(const KernelArgs* a, Py_ssize_t j, double* scratch) noexcept nogil:
    """Component j's weighted log densities over all points, into row j of ``columns``.

    Component-major, as in the seed (its r had shape (k, n)): each thread writes a
    contiguous row of its own, never a cache line another thread writes.
    scratch: xt, xc (d rows each) and lp (one row), of B points.
    """
    cdef Py_ssize_t d = a.d, k = a.k, B = a.block_rows, b, block, rows, i
    cdef double* xt = scratch
    cdef double* xc = xt + d * B
    cdef double* lp = xc + d * B
    for b in range((a.n + B - 1) // B):
        block = b * B
        rows = min(B, a.n - block)
        _load_block(a.X, block, rows, d, B, xt)
        _log_prob_block(xt, d, a.d4, 1, B, a.log_norm + j, a.means + j * d,
                        a.prec + j * d * a.d4, xc, lp)
        memcpy(a.columns + j * a.n + block, lp, rows * sizeof(double))


cdef void _normalise_chunk(const KernelArgs* a, Py_ssize_t chunk, double* scratch) noexcept nogil:
    """One chunk of rows: log densities from ``columns`` to log responsibilities.

    scratch: mx, sm (one row each), LANES, lp (k rows), of B points.
    """
    cdef Py_ssize_t k = a.k, B = a.block_rows, b, block, rows, i, j
    cdef Py_ssize_t row0 = chunk * a.rows_per_chunk
    cdef Py_ssize_t row1 = min(row0 + a.rows_per_chunk, a.n)
    cdef double* mx = scratch
    cdef double* sm = mx + B
    cdef double* acc = sm + B
    cdef double* lp = acc + LANES
    cdef double* row
    memset(acc, 0, LANES * sizeof(double))
    for b in range((row1 - row0 + B - 1) // B):
        block = row0 + b * B
        rows = min(B, row1 - block)
        for j in range(k):
            memcpy(lp + j * B, a.columns + j * a.n + block, rows * sizeof(double))
            for i in range(rows, B):
                lp[j * B + i] = 0.0
        _row_max(k, B, lp, mx)
        _exp_sum(k, B, lp, mx, sm, False)
        _log_sum_exp(rows, B, mx, sm)
        _lane_sum(mx, B, acc)
        for i in range(rows):
            row = a.log_resp_out + (block + i) * k
            for j in range(k):
                row[j] = lp[j * B + i] - mx[i]
    _reduce_lanes(acc, 1, a.partials + chunk)


cdef void _component_sums(const KernelArgs* a, Py_ssize_t j, double* scratch) noexcept nogil:
    """Shifted sums of component j over all points, into partials row j.

    scratch: xt (d rows), z (d + 4 rows), w, r (one row each) of B points, then the
    lanes of one component's sums.
    """
    cdef Py_ssize_t d = a.d, k = a.k, B = a.block_rows, b, block, rows, i
    cdef double* xt = scratch
    cdef double* z = xt + d * B
    cdef double* w = z + (d + 4) * B
    cdef double* r = w + B
    cdef double* acc = r + B
    memset(acc, 0, a.n_sums * LANES * sizeof(double))
    _init_z(z, d, B)
    for b in range((a.n + B - 1) // B):
        block = b * B
        rows = min(B, a.n - block)
        _load_block(a.X, block, rows, d, B, xt)
        for i in range(rows):
            r[i] = a.log_resp_in[(block + i) * k + j]
        for i in range(rows):
            r[i] = _exp(r[i])
        for i in range(rows, B):
            r[i] = 0.0
        _accumulate_block(xt, r, d, 1, B, a.shift + j * d, z, w, acc)
    _reduce_lanes(acc, a.n_sums, a.partials + j * a.n_sums)


def e_step_components(const double[:, ::1] X, const double[::1] log_norm,
                      const double[:, ::1] means, const double[:, :, ::1] prec_chol,
                      double[:, ::1] log_resp_out, num_threads):
    """:func:`e_step`, model-parallel: thread t computes whole components t, t + T, ...

    Each thread scans all of ``X`` for its components and writes their log densities
    to a component-major (k, n) scratch array (as the seed did). The log-sum-exp needs
    every component of a point, so it cannot be split by component: a second parallel
    loop normalises chunks of rows into ``log_resp_out``. With ``k < num_threads`` the
    surplus threads idle during the first phase.

    Returns
    -------
    loglik_sum : float
    threads_used : int
        OpenMP threads in the team (including idle ones).
    """
    cdef Py_ssize_t n, d, k
    n, d, k = _check_model(X, log_norm, means, prec_chol)
    if log_resp_out.shape[0] != n or log_resp_out.shape[1] != k:
        raise ValueError(f"log_resp_out has shape {log_resp_out.shape[0], log_resp_out.shape[1]}, "
                         f"expected {(n, k)}")
    cdef int n_threads = effective_threads(num_threads)
    cdef KernelArgs a
    partials = np.empty(_prepare_args(&a, n, d, k, OP_E_STEP))
    cdef double[::1] partials_view = partials
    padded = _padded_precision(prec_chol, a.d4)
    cdef const double[:, :, ::1] padded_view = padded
    cdef int[::1] seen = np.zeros(n_threads, dtype=np.intc)
    a.X = &X[0, 0]
    a.log_norm = &log_norm[0]
    a.means = &means[0, 0]
    a.prec = &padded_view[0, 0, 0]
    a.log_resp_out = &log_resp_out[0, 0]
    a.partials = &partials_view[0]
    columns = np.empty((k, n))
    cdef double[:, ::1] columns_view = columns
    a.columns = &columns_view[0, 0]
    cdef Py_ssize_t B = a.block_rows
    cdef Py_ssize_t scratch_size = max((2 * d + 1) * B, (k + 2) * B + LANES)
    cdef Py_ssize_t j, chunk
    cdef double* scratch = NULL
    cdef double total
    with nogil:
        with parallel(num_threads=n_threads):
            scratch = gmm_aligned_doubles(scratch_size)
            seen[threadid()] = 1 if scratch != NULL else -1
            for j in prange(k, schedule="static", chunksize=1):
                if scratch != NULL:
                    _component_log_prob(&a, j, scratch)
            free(scratch)
        # A second region: its start is the barrier between the two phases.
        with parallel(num_threads=n_threads):
            scratch = gmm_aligned_doubles(scratch_size)
            if scratch == NULL:
                seen[threadid()] = -1
            for chunk in prange(a.n_chunks, schedule="dynamic", chunksize=1):
                if scratch != NULL:
                    _normalise_chunk(&a, chunk, scratch)
            free(scratch)
        _sum_rows(a.partials, a.n_chunks, 1, &total)
    if _any_failed(seen):
        raise MemoryError("e_step_components: could not allocate per-thread scratch")
    return float(total), _threads_used(seen)


def m_step_components(const double[:, ::1] X, const double[:, ::1] log_resp,
                      const double[:, ::1] shift, double[::1] mass_out,
                      double[:, ::1] sum_out, double[:, :, ::1] outer_out, num_threads):
    """:func:`m_step`, model-parallel: each component's sums on one thread.

    Thread t sums components t, t + T, ... over all points, so no partial sums are
    merged and the result does not depend on the thread count. With
    ``k < num_threads`` the surplus threads have nothing to do.

    Returns
    -------
    threads_used : int
        OpenMP threads in the team (including idle ones).
    """
    cdef Py_ssize_t n, d, k
    n, d, k = _check_log_resp(X, log_resp)
    _check_stats_args(X, k, shift, mass_out, sum_out, outer_out)
    cdef int n_threads = effective_threads(num_threads)
    cdef KernelArgs a
    _prepare_args(&a, n, d, k, OP_M_STEP)
    partials = np.empty(k * a.n_sums)
    cdef double[::1] partials_view = partials
    cdef int[::1] seen = np.zeros(n_threads, dtype=np.intc)
    a.X = &X[0, 0]
    a.shift = &shift[0, 0]
    a.log_resp_in = &log_resp[0, 0]
    a.partials = &partials_view[0]
    cdef Py_ssize_t scratch_size = (2 * d + 6) * a.block_rows + a.n_sums * LANES
    cdef Py_ssize_t j
    cdef double* scratch = NULL
    with nogil:
        with parallel(num_threads=n_threads):
            scratch = gmm_aligned_doubles(scratch_size)
            seen[threadid()] = 1 if scratch != NULL else -1
            for j in prange(k, schedule="static", chunksize=1):
                if scratch != NULL:
                    _component_sums(&a, j, scratch)
            free(scratch)
        for j in range(k):
            _unpack_sums(a.partials + j * a.n_sums, d, &mass_out[j], &sum_out[j, 0],
                         &outer_out[j, 0, 0])
    if _any_failed(seen):
        raise MemoryError("m_step_components: could not allocate per-thread scratch")
    return _threads_used(seen)
