"""``openmp``: data-parallel ``prange`` over chunks of points.

The same kernels as ``cython``, with ``workers`` OpenMP threads (the ``num_threads``
clause, so ``OMP_NUM_THREADS`` cannot change it). Points are split into chunks whose
size depends only on the data and model shape; threads take them one at a time (a
dynamic schedule, so a thread that starts late does less); each thread allocates its
own scratch; every chunk writes its partial sums to its own row, and the rows are
added in chunk order after the parallel loop. The results are therefore identical,
bit for bit, for any number of threads and any schedule. The fused
iteration (statistics in one pass, no n x k matrix) is available and is what the
driver uses.

Unavailable, with the reason, when the kernels were built without OpenMP (or OpenMP is
disabled with ``GMM_HARNESS_DISABLE_OPENMP=1``).
"""

from __future__ import annotations

from strategies.compiled import CompiledStrategy


class OpenMPStrategy(CompiledStrategy):
    name = "openmp"
    kind = "openmp"
    parallel = True
    uses_openmp = True
    description = "OpenMP prange over chunks of points, fixed-order reduction, fused pass"
