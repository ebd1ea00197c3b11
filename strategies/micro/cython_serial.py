"""``summarize-cython`` and ``pairwise-cython``: the typed nogil kernels on one thread.

The compiled baseline of the micro-problems: :func:`kernels.micro_kernels.summarize_range`
and :func:`~kernels.micro_kernels.pairwise_rows` over the whole vector, no OpenMP
region. Every parallel micro-strategy runs the same per-element code on its tasks.
"""

from __future__ import annotations

from strategies.micro.base import CompiledMicroStrategy, combine, per_problem, serial_kernel


class _CythonMicro(CompiledMicroStrategy):
    family = "cython"
    kind = "serial"

    def run(self) -> object:
        n = self.x.shape[0]
        return combine(self.problem, n, [serial_kernel(self.kernels, self.problem)(self.x, 0, n)])


SummarizeCython, PairwiseCython = per_problem(_CythonMicro)
