"""``summarize-openmp`` and ``pairwise-openmp``: ``prange`` with an OpenMP reduction.

``workers`` OpenMP threads (the ``num_threads`` clause), a static schedule with one
contiguous block per thread (one task per worker, as every parallel micro-strategy),
and ``reduction(+)`` over the blocks' results; each block runs the serial kernel's
code. Unavailable, with the reason, when the kernels were built without OpenMP.
"""

from __future__ import annotations

from strategies.micro.base import CompiledMicroStrategy, per_problem


class _OpenMPMicro(CompiledMicroStrategy):
    family = "openmp"
    kind = "openmp"
    parallel = True
    uses_openmp = True

    def run(self) -> object:
        threads = self.kernels.effective_threads(self.workers)
        if self.problem == "summarize":
            return self.x.shape[0], float(self.kernels.summarize_openmp(self.x, threads))
        return float(self.kernels.pairwise_openmp(self.x, threads))

    def runtime_info(self) -> dict[str, object]:
        info = super().runtime_info()
        if info:
            info["openmp_threads"] = self.kernels.effective_threads(self.workers)
        return info


SummarizeOpenMP, PairwiseOpenMP = per_problem(_OpenMPMicro)
