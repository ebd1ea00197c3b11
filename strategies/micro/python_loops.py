"""``summarize-python`` and ``pairwise-python``: the seed notebook's pure-Python code.

The data becomes a list of Python floats in ``prepare`` (untimed), so ``run`` is the
interpreter's work only: ``len`` and ``sum`` for summarize, and for pairwise a Python
loop over rows with ``sum(xi * xj for xj in xs)`` per row, O(n^2) multiplications,
the row totals added with ``math.fsum`` (correctly rounded, so only the in-row sums
carry rounding error).
"""

from __future__ import annotations

import math

import numpy as np

from strategies.micro.base import MicroStrategy


class _PythonMicro(MicroStrategy):
    kind = "serial"

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._values: list[float] = []

    def _setup(self, x: np.ndarray) -> None:
        self._values = x.tolist()

    def _teardown(self) -> None:
        self._values = []


class SummarizePython(_PythonMicro):
    name = "summarize-python"
    problem = "summarize"
    description = "len(x), sum(x) over a list of Python floats"

    def run(self) -> tuple[int, float]:
        values = self._values
        self.x  # noqa: B018 (raises before prepare)
        return len(values), float(sum(values))


class PairwisePython(_PythonMicro):
    name = "pairwise-python"
    problem = "pairwise"
    description = "sum(xi * xj for xj in x) per row, rows added with math.fsum"

    def run(self) -> float:
        values = self._values
        self.x  # noqa: B018 (raises before prepare)
        return math.fsum(sum(xi * xj for xj in values) for xi in values)
