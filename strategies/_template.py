"""Template: how to add a strategy (this module is not registered).

1. Copy this file to ``strategies/<your_name>.py`` and rename the class.
2. Set the capability flags truthfully: the registry, the runner and the report
   read them (``kind`` decides how results are grouped; ``parallel`` whether a
   worker sweep makes sense; ``blas_threads`` protects against oversubscription).
3. Implement ``e_step`` and ``m_step`` (and ``fused_iteration`` if you can compute
   the statistics in one pass). Return *statistics*, never parameters:
   ``harness.model.gmm.params_from_stats`` does the shared closing part.
4. Put expensive one-off work (pools, shared memory, data copies) in ``_setup``
   and release all of it in ``_teardown``. ``prepare`` is timed apart from the
   iterations, so start-up cost stays visible.
5. If the strategy needs something optional, return the reason from
   ``unavailable_reason`` instead of raising at import time. Keep that check cheap
   (``strategies.base.find_reason`` looks a package up without importing it) and
   import heavy packages in ``_setup``, not at module level: listing the strategies
   imports every strategy module.
6. Add ``("your-name", "strategies.your_module:YourStrategy")`` to
   ``strategies/__init__.py``. The test suite now checks it against the reference.
"""

from __future__ import annotations

import numpy as np

from harness.model.gmm import DerivedParams, SufficientStats, reference_e_step, reference_m_step
from strategies.base import Strategy


class TemplateStrategy(Strategy):
    name = "template"  # short, lowercase, unique; the registry key
    kind = "serial"  # serial / threads / processes / openmp / distributed
    # (a library's whole fit, kind "library": subclass strategies.library.LibraryStrategy)
    releases_gil = False  # do the hot loops run without the GIL?
    needs_compiled = False  # does it need the Cython kernels in kernels/?
    has_fused_iteration = False  # does it implement fused_iteration()?
    parallel = False  # does workers > 1 use more than one core?
    description = "one line shown by `python -m harness strategies`"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None  # or e.g. "package foo is not installed"

    def _setup(self, X: np.ndarray) -> None:
        pass  # start pools, share X; X is validated float64 (n, d)

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        return reference_e_step(self.X, derived)  # replace with your own computation

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        return reference_m_step(self.X, log_resp)  # replace with your own computation

    def _teardown(self) -> None:
        pass  # stop pools, unlink shared memory; must be safe to call twice
