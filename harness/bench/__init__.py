"""Target benchmarks: the compiled and process strategies measured side by side against
their targets.

On top of ``harness.sweep`` and ``strategies``; nothing below imports it.
"""
