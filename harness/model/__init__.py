"""The model: reference maths, workloads, validation, errors, thread control and argument types.

The lowest layer: strategies may import it; it imports nothing of the harness above it and
nothing of ``strategies``.
"""
