"""The process-pool strategies' shared code, in layers that only import downwards.

* :mod:`strategies.pool.chunks`: what one task computes on its rows (kernels, NumPy
  per-component maths, parameter messages, chunk bounds);
* :mod:`strategies.pool.shared`: arrays in shared memory or memmaps;
* :mod:`strategies.pool.workers`: worker start-up, the parent watch, the tasks;
* :mod:`strategies.pool.control`: parent side (start method, traffic, deadlines,
  Ctrl-C, stopping processes);
* :mod:`strategies.pool.base`: the strategy base class the dispatchers derive from.

Public: ``harness.bench.processes`` runs the per-chunk code in one process to compare
with the pools. Nothing here times anything for results or writes files.
"""
