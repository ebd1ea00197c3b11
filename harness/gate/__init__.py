"""Judging a run: compare two runs, check scale-free expectations, and the compare
self-test.

On top of ``harness.sweep``; nothing below imports it.
"""
