"""Formatting of numbers for the findings and the report (no computation, no I/O)."""

from __future__ import annotations

import math

from harness.report.uncertainty import CONFIDENCE


def _number(value: float | None, whole_from: float, spec: str, unit: str) -> str:
    """``value`` with ``spec`` below ``whole_from``, as a whole number with thousands
    separators from it; an em dash when unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.0f}{unit}" if value >= whole_from else f"{value:{spec}}{unit}"


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds with three significant figures (``"12.3 ms"``)."""
    return _number(None if seconds is None else seconds * 1e3, 1000, ".3g", " ms")


def fmt_times(ratio: float) -> str:
    """A speedup or ratio, ``"1.67×"``; an em dash when unknown."""
    return _number(ratio, 100, ".2f", "×")


def fmt_fraction(value: float) -> str:
    """A serial fraction with three decimals; an em dash when unknown."""
    return _number(value, math.inf, ".3f", "")


def fmt_n(n: int) -> str:
    """``130,000``."""
    return f"{int(n):,}"


def fmt_bytes(value: float) -> str:
    """Bytes in binary units (``"1.5 MiB"``)."""
    if value is None or not math.isfinite(value):
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def round_significant(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant figures (``123456 -> 120000``)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def code(name: str) -> str:
    return f"`{name}`"


def workers_text(p: int) -> str:
    return f"{p} worker{'s' if p != 1 else ''}"


def fmt_ratio_ci(ratio: float, low: float, high: float) -> str:
    """``"1.52× (95% CI 1.31–1.77×)"``; just the ratio when the interval is unknown."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return fmt_times(ratio)
    return f"{fmt_times(ratio)} ({CONFIDENCE:.0%} CI {low:.3g}–{high:.3g}×)"
