"""``openmp-components``: model-parallel, one mixture component per OpenMP thread.

The seed notebook's last OpenMP version, kept because comparing it with the
data-parallel ``openmp`` strategy is one of the seed's lessons. Thread ``t`` owns
components ``t, t + T, t + 2T, ...`` (static schedule, one at a time):

* E-step: each thread scans the whole data set for its component and writes that
  column of the log densities. The log-sum-exp needs all components of a point, so the
  normalisation cannot be split by component; it runs as a second, data-parallel loop
  over chunks of rows.
* M-step: each thread computes its component's sums over all points. No partial sums
  are merged, so the result does not depend on the thread count.

There is no fused iteration: without every component of a point at hand the
responsibilities cannot be normalised, so the n x k matrix has to exist.

**When k < threads** (e.g. k = 1 on 2 threads), the surplus threads have no component
and sit idle through the density pass and the M-step; only the normalisation uses
them. Work is also uneven whenever k is not a multiple of the thread count (k = 5 on
2 threads: 3 components against 2). ``runtime_info()`` reports ``idle_threads``
(``max(0, threads - k)``) and ``components_per_thread``. The data-parallel strategy has
neither limitation, which is the point of the comparison; what this one avoids is
merging partial sums.
"""

from __future__ import annotations

from typing import ClassVar

from harness.model.gmm import DerivedParams
from strategies.compiled import CompiledStrategy


class OpenMPComponentsStrategy(CompiledStrategy):
    name = "openmp-components"
    kind = "openmp"
    parallel = True
    uses_openmp = True
    has_fused_iteration = False
    description = "OpenMP, one mixture component per thread (model-parallel, seed's version)"
    kernel_names: ClassVar[dict[str, str]] = {
        "e_step": "e_step_components",
        "m_step": "m_step_components",
    }

    def fused_iteration(self, derived: DerivedParams):
        raise NotImplementedError(
            "openmp-components has no fused iteration: normalising a point's "
            "responsibilities needs every component, which no single thread holds"
        )

    def runtime_info(self) -> dict[str, object]:
        info = super().runtime_info()
        if not info:
            return info
        k = self._shift.shape[0] if self._shift is not None else None
        # chunk_size is that of the normalisation loop; the component loop scans all n.
        if k is not None:
            info["components_per_thread"] = int(-(-k // self._threads))
            info["idle_threads"] = max(0, self._threads - k)
        return info
