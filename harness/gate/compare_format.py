"""Comparison reports as aligned text (the terminal) and markdown (a CI job summary)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from harness.sweep.formats import format_seconds

if TYPE_CHECKING:  # the report types live with the comparison that builds them
    from harness.gate.compare import Comparison, ComparisonReport

_HEADER = (
    "verdict",
    "workload",
    "n",
    "strategy",
    "workers",
    "phase",
    "BASE median",
    "NEW median",
    "ratio",
    "CI",
    "p",
    "note",
)


def _cells(c: Comparison, markdown: bool) -> list[str]:
    ratio = f"{c.ratio:.3f}x" if math.isfinite(c.ratio) else "-"
    ci = (
        f"[{c.ci_low:.3f}, {c.ci_high:.3f}]"
        if math.isfinite(c.ci_low) and math.isfinite(c.ci_high)
        else "-"
    )
    p_value = f"{c.p_value:.2g}" if math.isfinite(c.p_value) else "-"
    verdict = c.verdict.upper() if c.regression else c.verdict
    if markdown and c.regression:
        verdict = f"**{verdict}**"
    note = c.note.replace("|", "\\|") if markdown else c.note
    return [
        verdict,
        c.workload,
        f"{c.n:,}",
        c.strategy,
        str(c.workers),
        c.phase,
        f"{format_seconds(c.base_median)} ({c.base_values})",
        f"{format_seconds(c.new_median)} ({c.new_values})",
        ratio,
        ci,
        p_value,
        note,
    ]


def format_text(report: ComparisonReport) -> str:
    """A fixed-width table for the terminal, regressions first."""
    rows = [list(_HEADER)] + [_cells(c, markdown=False) for c in report.comparisons]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
    lines = [
        f"BASE {report.base_dir} ({report.base_commit or 'commit unknown'})",
        f"NEW  {report.new_dir} ({report.new_commit or 'commit unknown'})",
    ]
    lines += [f"warning: {w}" for w in report.warnings]
    lines.append("")
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
        )
    lines += [
        "",
        "medians with (number of values); ratio = NEW / BASE, above 1 is slower",
        report.summary(),
    ]
    return "\n".join(lines)


def format_markdown(report: ComparisonReport) -> str:
    """The same table in GitHub-flavoured Markdown (for a CI job summary)."""
    lines = ["## Benchmark comparison", ""]
    headline = report.summary()
    lines.append(f"**{headline}**" if report.regressions else headline)
    lines += [
        "",
        f"- BASE: `{report.base_dir}` ({report.base_commit or 'commit unknown'})",
        f"- NEW: `{report.new_dir}` ({report.new_commit or 'commit unknown'})",
    ]
    lines += [f"- :warning: {w}" for w in report.warnings]
    lines += ["", "| " + " | ".join(_HEADER) + " |", "|" + "|".join(" --- " for _ in _HEADER) + "|"]
    lines += ["| " + " | ".join(_cells(c, markdown=True)) + " |" for c in report.comparisons]
    lines += [
        "",
        "Medians with the number of values in brackets; ratio = NEW / BASE (above 1 "
        f"is slower); CI: {1 - report.alpha:.0%} percentile bootstrap of the ratio; "
        "p: two-sided Mann-Whitney U.",
        "",
    ]
    return "\n".join(lines)


# ---- command line -----------------------------------------------------------------------
