"""Acceptance targets of the bench commands, read from a committed TOML file.

The targets of ``bench-processes`` and ``bench-compiled`` live in
``results/targets.toml``, one section per command, one line per target::

    [bench-processes]
    targets = [
      { name = "memory", metric = "peak_pss_ratio", comparison = "<=", threshold = 1.5 },
    ]

``metric`` names a figure the command computes (each command lists its metrics and
refuses others), ``comparison`` is one of :data:`COMPARISONS`, and a target passes
when ``figure <comparison> threshold``. A figure the command did not measure fails its
target. Adding or changing a target is an edit of that file, not of code.

May not measure anything or import a strategy: it reads the file and judges figures
it is handed.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.model.errors import DataFileError
from harness.sweep.formats import read_toml

#: The committed targets file.
DEFAULT_TARGETS = Path(__file__).resolve().parents[2] / "results" / "targets.toml"

#: Comparisons a target may use: ``figure <comparison> threshold``.
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}

_KEYS = ("name", "metric", "comparison", "threshold")


@dataclass(frozen=True)
class Target:
    """One acceptance target: ``metric <comparison> threshold``."""

    name: str
    metric: str
    comparison: str
    threshold: float

    def passes(self, figure: float | None) -> bool:
        """Whether ``figure`` meets the target (a missing or NaN figure never does)."""
        if figure is None or not math.isfinite(figure):
            return False
        return COMPARISONS[self.comparison](figure, self.threshold)

    @property
    def claim(self) -> str:
        """The target as text, e.g. ``peak_pss_ratio <= 1.5``."""
        return f"{self.metric} {self.comparison} {self.threshold:g}"


def load_targets(
    section: str, path: str | Path | None = None, metrics: Collection[str] | None = None
) -> list[Target]:
    """The targets of one section of a targets file.

    Parameters
    ----------
    section : str
        The command's section, e.g. ``"bench-processes"``.
    path : str or Path, optional
        The file; :data:`DEFAULT_TARGETS` when None.
    metrics : collection of str, optional
        The metrics the command computes; a target naming another one is refused.

    Raises
    ------
    DataFileError
        One message saying what is wrong and where: a missing or unreadable file,
        invalid TOML, a missing section, a target without one of the four keys, an
        unknown metric or comparison, a threshold that is not a number.
    """
    path = Path(path) if path is not None else DEFAULT_TARGETS
    document = read_toml(path, f"targets file not found: {path}")
    table = document.get(section)
    if not isinstance(table, dict) or not isinstance(table.get("targets"), list):
        raise DataFileError(f"{path} has no [{section}] section with a 'targets' list")
    return [
        _target(entry, f"{path} [{section}] target {index}", metrics)
        for index, entry in enumerate(table["targets"], start=1)
    ]


def _target(entry: object, where: str, metrics: Collection[str] | None) -> Target:
    if not isinstance(entry, dict):
        raise DataFileError(f"{where}: expected a table {{name, metric, comparison, threshold}}")
    missing = [key for key in _KEYS if key not in entry]
    unknown = sorted(set(entry) - set(_KEYS))
    if missing or unknown:
        raise DataFileError(
            f"{where}: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unknown key(s) {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
            + f" (a target has exactly {', '.join(_KEYS)})"
        )
    name, metric, comparison, threshold = (entry[key] for key in _KEYS)
    if not isinstance(name, str) or not name.strip():
        raise DataFileError(f"{where}: name must be a non-empty string, got {name!r}")
    if metrics is not None and metric not in metrics:
        raise DataFileError(
            f"{where} ({name!r}): unknown metric {metric!r}; valid: {', '.join(sorted(metrics))}"
        )
    if comparison not in COMPARISONS:
        raise DataFileError(
            f"{where} ({name!r}): unknown comparison {comparison!r}; "
            f"valid: {', '.join(COMPARISONS)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise DataFileError(f"{where} ({name!r}): threshold must be a number, got {threshold!r}")
    if not math.isfinite(threshold):
        raise DataFileError(f"{where} ({name!r}): threshold must be finite, got {threshold!r}")
    return Target(name.strip(), str(metric), comparison, float(threshold))


def judge(
    targets: list[Target], figures: Mapping[str, tuple[float | None, str]]
) -> list[tuple[str, bool, str]]:
    """``(name, passed, detail)`` for each target whose metric this run computed.

    ``figures`` maps a metric to its value (None: it was to be measured and was not)
    and a detail for the report line. Targets whose metric is absent (a section the
    user left out) are not judged.
    """
    verdicts = []
    for target in targets:
        if target.metric not in figures:
            continue
        value, detail = figures[target.metric]
        shown = detail if value is not None else "not measured"
        verdicts.append((target.name, target.passes(value), f"{shown} (target {target.claim})"))
    return verdicts


def print_verdicts(verdicts: list[tuple[str, bool, str]]) -> None:
    """The ``Targets`` block: one ``PASS``/``FAIL`` line per judged target."""
    print("\nTargets")
    for name, ok, detail in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")


__all__ = [
    "COMPARISONS",
    "DEFAULT_TARGETS",
    "Target",
    "judge",
    "load_targets",
    "print_verdicts",
]
