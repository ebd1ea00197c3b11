"""Reading a run: analysis, findings, charts and the Markdown report.

On top of ``harness.sweep`` (it reads the results model); nothing below imports it.
"""
