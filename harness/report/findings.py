"""Findings: the verdicts of a run as data, each with the sentence that states it.

:func:`findings` turns the frames of :mod:`harness.report.analysis` into
:class:`Finding` records; :mod:`harness.report.markdown` writes them to
``findings.json`` (:data:`FINDINGS_FILE`) next to ``report.md`` and renders their
``text`` as the report's findings. Nothing here computes timings or draws.

Rules every finding follows:

* a comparison (fastest, margin, speedup, crossover, slower with more workers) is
  stated with the interval of its ratio, and only where the interval excludes 1;
  otherwise it is a ``tie`` and says so;
* disturbed configurations take part in no finding (one ``disturbed`` finding lists
  them);
* no physically meaningless number is stated: a fitted fixed cost or cost per point is
  given only where its interval is above zero, an efficiency above 100% or a serial
  fraction outside [0, 1] only where the noise cannot explain it, and an Amdahl model
  value only where its band is narrower than the value.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.report import uncertainty as unc
from harness.report.analysis import (
    HEADLINE_PHASE,
    NUMPY_BASELINE,
    PYTHON_BASELINE,
    SKLEARN_BASELINE,
    Analysis,
    phase_breakdown,
)
from harness.report.record import (
    FINDINGS_FILE,
    KINDS,
    Finding,
    headline_best,
    iteration_key,
    ratio_of,
)
from harness.report.scaling_findings import scaling_findings, versus_best_1w_findings
from harness.report.text import code, fmt_bytes, fmt_ms, fmt_n, fmt_ratio_ci, workers_text
from harness.sweep.results import config_id

__all__ = ["FINDINGS_FILE", "KINDS", "Finding", "findings"]


def findings(analysis: Analysis) -> list[Finding]:
    """Every finding of a run, in report order (per workload, then run-wide ones)."""
    out: list[Finding] = []
    if analysis.scaling.empty:
        if not analysis.summary.empty:
            out.append(
                Finding(
                    "note",
                    "No full EM iteration was measured, so there are no speedups; the "
                    "phases that were measured are tabulated per workload.",
                )
            )
        elif not analysis.not_measured.empty:
            out.append(
                Finding(
                    "note",
                    "Nothing was measured: every configuration was skipped or failed "
                    "(see *Not measured*).",
                )
            )
        out += _disturbed_findings(analysis)
        return out
    for workload in sorted(analysis.headline_n):
        out += _winner_findings(analysis, workload)
        out += versus_best_1w_findings(analysis, workload)
        out += scaling_findings(analysis, workload)
        out += _phase_findings(analysis, workload)
    out += _oversubscription_findings(analysis)
    out += _disturbed_findings(analysis)
    out += _not_measured_findings(analysis)
    return out


# --------------------------------------------------------------------------------------
# Fastest strategy (or a tie) at the headline size
# --------------------------------------------------------------------------------------


def _winner_findings(analysis: Analysis, workload: str) -> list[Finding]:
    n = analysis.headline_n[workload]
    row = headline_best(analysis, workload)
    if row is None:
        return []
    dims = analysis.workloads.loc[workload]
    shape = f"n = {fmt_n(n)}" + (
        f", d = {int(dims['d'])}, k = {int(dims['k'])}" if pd.notna(dims["d"]) else ""
    )
    best, best_p, budget = row["best"], int(row["best_workers"]), int(row["workers"])
    who = code(best) + (f" ({workers_text(best_p)})" if best_p != budget else "")
    win_key = iteration_key(workload, n, best, best_p)
    configurations = list(row["configurations"])
    left_out = _disturbed_in_cell(analysis, workload, n, budget)
    qualifier = (
        " Left out as disturbed, so not judged: "
        + ", ".join(f"{code(name)} ({workers_text(workers)})" for name, workers in left_out)
        + "."
        if left_out
        else ""
    )
    not_judged = [config_id(workload, n, name, workers) for name, workers in left_out]
    tied = list(row["tied"])
    if tied:
        names = [best, *tied]
        listed = ", ".join(code(name) for name in names[:-1]) + f" and {code(names[-1])}"
        margin = fmt_ratio_ci(row["margin"], row["margin_low"], row["margin_high"])
        text = (
            f"**{workload}** ({shape}): with {workers_text(budget)} {listed} are tied for "
            f"fastest ({fmt_ms(row['best_seconds'])} per iteration for {code(best)}; "
            f"{code(row['runner_up'])} takes {margin} its time, an interval that reaches 1, "
            "so the noise does not separate them)."
        )
        return [
            Finding(
                "tie",
                text + qualifier,
                workload,
                n,
                budget,
                names,
                row["margin"],
                row["margin_low"],
                row["margin_high"],
                configurations,
                not_judged,
            )
        ]
    text = (
        f"**{workload}** ({shape}): with {workers_text(budget)} the fastest is {who} at "
        f"{fmt_ms(row['best_seconds'])} per iteration"
    )
    strategies = [best]
    if isinstance(row["runner_up"], str):
        strategies.append(row["runner_up"])
        configurations.append(config_id(workload, n, row["runner_up"], row["runner_up_workers"]))
        text += (
            f", {fmt_ratio_ci(row['margin'], row['margin_low'], row['margin_high'])} ahead of "
            f"{code(row['runner_up'])}"
        )
    versus = []
    scal = analysis.scaling
    mine = scal[(scal["workload"] == workload) & (scal["n"] == n) & (scal["strategy"] == best)]
    reference_1w = mine["best_1w_strategy"].iloc[0] if not mine.empty else None
    labels = {PYTHON_BASELINE: "sequential Python", NUMPY_BASELINE: "NumPy einsum on 1 worker"}
    labels[SKLEARN_BASELINE] = "scikit-learn"
    if isinstance(reference_1w, str):
        labels = {reference_1w: f"the fastest 1-worker strategy ({code(reference_1w)})", **labels}
    for name, label in labels.items():
        if name == best and best_p == 1:
            continue
        value, low, high = ratio_of(analysis, iteration_key(workload, n, name, 1), win_key)
        if unc.verdict(low, high) != "above":
            continue  # "as fast as" is no headline; the tables show it
        versus.append(f"{fmt_ratio_ci(value, low, high)} as fast as {label}")
    if versus:
        text += "; that is " + ", ".join(versus)
    return [
        Finding(
            "fastest",
            text + "." + qualifier,
            workload,
            n,
            budget,
            strategies,
            row["margin"],
            row["margin_low"],
            row["margin_high"],
            configurations,
            not_judged,
        )
    ]


def _disturbed_in_cell(
    analysis: Analysis, workload: str, n: int, budget: int
) -> list[tuple[str, int]]:
    """``(strategy, workers)`` of the disturbed configurations a winner is chosen among."""
    summary = analysis.summary
    cell = summary[
        (summary["workload"] == workload)
        & (summary["n"] == n)
        & (summary["workers"] <= budget)
        & (summary["phase"] == HEADLINE_PHASE)
        & summary["disturbed"].astype(bool)
    ]
    pairs = zip(cell["strategy"], cell["workers"], strict=True)
    return sorted({(str(name), int(workers)) for name, workers in pairs})


# --------------------------------------------------------------------------------------
# Phases and memory
# --------------------------------------------------------------------------------------


def _phase_findings(analysis: Analysis, workload: str) -> list[Finding]:
    n = analysis.headline_n[workload]
    summary = analysis.summary
    clean = summary[~summary["disturbed"].astype(bool)]
    phases = phase_breakdown(clean, workload, n)
    if phases.empty:
        return []
    out = []
    row = headline_best(analysis, workload)
    if row is not None:
        key = (row["best"], int(row["best_workers"]))
        if key in phases.index:
            e, m = phases.loc[key, "e_step"], phases.loc[key, "m_step"]
            if math.isfinite(e) and math.isfinite(m) and e + m > 0:
                e_key = (workload, int(n), key[0], key[1], "e_step")
                m_key = (workload, int(n), key[0], key[1], "m_step")
                low, high = analysis.draws.ratio(e_key, m_key)
                who = f"{code(key[0])}, {workers_text(key[1])}"
                verdict = unc.verdict(low, high)
                if verdict == "tie":
                    text = (
                        f"**{workload}**: in the fastest configuration ({who}) the E-step and "
                        f"the M-step take about the same time at n = {fmt_n(n)} "
                        f"({fmt_ms(e)} E, {fmt_ms(m)} M; within noise)."
                    )
                else:
                    bigger, share = ("E-step", e / (e + m)) if e >= m else ("M-step", m / (e + m))
                    text = (
                        f"**{workload}**: in the fastest configuration ({who}) the {bigger} "
                        f"takes {share:.0%} of the E+M time at n = {fmt_n(n)} ({fmt_ms(e)} E, "
                        f"{fmt_ms(m)} M; E/M {fmt_ratio_ci(e / m, low, high)})."
                    )
                out.append(
                    Finding(
                        "phase",
                        text,
                        workload,
                        n,
                        key[1],
                        [key[0]],
                        e / m,
                        low,
                        high,
                        [config_id(workload, n, key[0], key[1])],
                    )
                )
    memory = phases["peak_pss_bytes"].dropna()
    if len(memory) >= 2 and memory.min() > 0 and memory.max() / memory.min() >= 1.5:
        high, low = memory.idxmax(), memory.idxmin()
        out.append(
            Finding(
                "memory",
                f"**{workload}**: peak memory (PSS, parent + workers) at n = {fmt_n(n)} ranges "
                f"from {fmt_bytes(memory[low])} ({code(low[0])}, {workers_text(low[1])}) to "
                f"{fmt_bytes(memory[high])} ({code(high[0])}, {workers_text(high[1])}), "
                f"{memory[high] / memory[low]:.2g}× as much.",
                workload,
                n,
                None,
                [high[0], low[0]],
                memory[high] / memory[low],
                configurations=[
                    config_id(workload, n, high[0], high[1]),
                    config_id(workload, n, low[0], low[1]),
                ],
            )
        )
    return out


# --------------------------------------------------------------------------------------
# Run-wide notes
# --------------------------------------------------------------------------------------


def _oversubscription_findings(analysis: Analysis) -> list[Finding]:
    over = analysis.scaling[analysis.scaling["oversubscribed"].astype(bool)]
    if over.empty:
        return []
    counts = sorted(over["workers"].unique())
    cores = f"the {analysis.usable_cores} usable cores" if analysis.usable_cores else "the cores"
    return [
        Finding(
            "oversubscribed",
            f"{len(over)} configuration(s) ran with more workers "
            f"({', '.join(map(str, counts))}) than {cores}; they measure time slicing, not "
            "parallel hardware, and are left out of the Amdahl fit.",
            configurations=[
                config_id(r.workload, r.n, r.strategy, r.workers) for r in over.itertuples()
            ],
        )
    ]


def _disturbed_findings(analysis: Analysis) -> list[Finding]:
    bad = analysis.disturbed
    if bad.empty:
        return []
    return [
        Finding(
            "disturbed",
            f"{len(bad)} configuration(s) stayed disturbed (other programs took the CPU, or "
            "their values were unstable) after the sweep's last attempt; they are drawn "
            "hollow and grey, take part in no finding, and are listed with their reasons "
            "under *Disturbed configurations*.",
            configurations=list(bad["config_id"]),
        )
    ]


def _not_measured_findings(analysis: Analysis) -> list[Finding]:
    missing = analysis.not_measured
    if missing.empty:
        return []
    missing = missing[~missing["by_design"].astype(bool)]
    if missing.empty:
        return []
    unique = missing.drop_duplicates(["workload", "n", "strategy", "workers", "status"])
    counts = unique["status"].value_counts()
    parts = ", ".join(f"{count} {status}" for status, count in counts.items())
    return [
        Finding(
            "not_measured",
            f"Not every configuration was measured ({parts}); the reasons are listed under "
            "*Not measured*.",
            configurations=[
                config_id(r.workload, r.n, r.strategy, r.workers) for r in unique.itertuples()
            ],
        )
    ]
