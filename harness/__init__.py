"""Benchmark harness for parallel strategies of Gaussian-mixture EM.

Everything that is not a strategy lives here: workloads and data, the reference
GMM maths, the EM driver, thread control, timing, results, charts, comparison
and the command line (``python -m harness``).

Layers, lowest first: ``harness.model`` <- ``kernels``, ``strategies`` <-
``harness.sweep`` <- ``harness.report``, ``harness.gate``, ``harness.bench`` <-
``harness.cli``. A module imports only from its own layer or below.
"""

__version__ = "0.1.0"
