"""Producing a run: the EM driver, the runner, the measurement process, memory, metadata
and the results model.

Above ``strategies`` (it drives them) and ``harness.model``; it never imports the report or
the gate.
"""
