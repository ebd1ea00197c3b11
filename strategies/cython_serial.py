"""``cython``: the typed nogil kernels on one thread, the compiled baseline.

The seed notebook's cythonised E-step and M-step, done properly: log densities through
the precision Cholesky factor, a max-shifted log-sum-exp, centred statistics. The
kernels (``kernels/gmm_kernels.pyx``) run without the GIL on points in cache-sized
blocks, with a vectorised ``exp``; this strategy calls them with one thread and no
OpenMP region, so every compiled strategy's speed-up is measured against it.

The adapter it shares with the other compiled strategies is
:class:`strategies.compiled.CompiledStrategy`.
"""

from __future__ import annotations

from strategies.compiled import CompiledStrategy


class CythonStrategy(CompiledStrategy):
    name = "cython"
    kind = "serial"
    description = "typed nogil Cython kernels on one thread (the compiled baseline)"
