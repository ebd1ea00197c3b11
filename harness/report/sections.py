"""The tables and per-workload sections of ``report.md``, as Markdown text.

:mod:`harness.report.markdown` assembles the report from these; every number comes from
:mod:`harness.report.analysis`, every interval from the same bootstrap as the findings.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.report.analysis import (
    MODEL_CORES,
    NUMPY_BASELINE,
    PYTHON_BASELINE,
    SKLEARN_BASELINE,
    Analysis,
    group_not_measured,
    phase_breakdown,
)
from harness.report.text import fmt_bytes, fmt_fraction, fmt_ms, fmt_n, fmt_times
from harness.report.uncertainty import CONFIDENCE


def md_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one of ``l``/``r`` per column."""
    align = align or "l" * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]

    def clean(cell: object) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(clean(h) for h in headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(analysis: Analysis, workload: str) -> str:
    best = analysis.best[analysis.best["workload"] == workload]
    scal = analysis.scaling[analysis.scaling["workload"] == workload]
    if best.empty:
        return "*No iteration time was measured for this workload.*"
    with_sklearn = (scal["strategy"] == SKLEARN_BASELINE).any()
    headers = [
        "n",
        "workers",
        "fastest",
        f"time per iteration (median [{CONFIDENCE:.0%} CI])",
        f"runner-up (margin [{CONFIDENCE:.0%} CI])",
        f"× sequential Python (`{PYTHON_BASELINE}`)",
        f"× NumPy (`{NUMPY_BASELINE}`, 1 worker)",
    ]
    if with_sklearn:
        headers.append(f"× scikit-learn (`{SKLEARN_BASELINE}`)")
    references = {}
    for label, name in (
        ("python", PYTHON_BASELINE),
        ("numpy", NUMPY_BASELINE),
        ("sklearn", SKLEARN_BASELINE),
    ):
        rows = scal[(scal["strategy"] == name) & (scal["workers"] == 1)]
        references[label] = dict(zip(rows["n"], rows["seconds"], strict=True))
    rows = []
    for _, row in best.sort_values(["n", "workers"]).iterrows():
        winner = " ≈ ".join(f"`{name}`" for name in [row["best"], *row["tied"]])
        if row["tied"]:
            winner += " (tie: within noise)"
        if row["best_workers"] != row["workers"]:
            winner += f" ({row['best_workers']} worker{'s' if row['best_workers'] != 1 else ''})"
        runner = (
            f"`{row['runner_up']}` "
            f"({_times_ci(row['margin'], row['margin_low'], row['margin_high'])})"
            if isinstance(row["runner_up"], str)
            else "—"
        )
        cells = [
            fmt_n(row["n"]),
            str(row["workers"]),
            winner,
            _ms_ci(row["best_seconds"], row["best_ci_low"], row["best_ci_high"]),
            runner,
        ]
        for label in ("python", "numpy", "sklearn") if with_sklearn else ("python", "numpy"):
            reference = references[label].get(row["n"], math.nan)
            cells.append(fmt_times(reference / row["best_seconds"]))
        rows.append(cells)
    align = "rrllr" + "r" * (len(headers) - 5)
    return md_table(headers, rows, align)


def _ms_ci(value: float, low: float, high: float) -> str:
    """``"600 ms [500 ms – 770 ms]"``."""
    return f"{fmt_ms(value)} [{fmt_ms(low)} – {fmt_ms(high)}]"


def _times_ci(value: float, low: float, high: float) -> str:
    """``"1.50× [1.2–1.9]"``; the ratio alone when the interval is unknown."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return fmt_times(value)
    return f"{fmt_times(value)} [{low:.2f}–{high:.2f}]"


def _efficiency_cell(row: pd.Series) -> str:
    value, low = row["efficiency"], row["efficiency_low"]
    if not math.isfinite(value):
        return "—"
    if value > 1 and not (math.isfinite(low) and low > 1):
        return "≈100% (within noise)"
    return f"{value:.0%}"


def _karp_flatt_cell(row: pd.Series) -> str:
    """The serial fraction; outside [0, 1] only where the interval is too."""
    value, low, high = row["karp_flatt"], row["karp_flatt_low"], row["karp_flatt_high"]
    if not math.isfinite(value):
        return "—"
    if value < 0 and not (math.isfinite(high) and high < 0):
        return "≈0 (within noise)"
    if value < 0:
        return f"{fmt_fraction(value)} (superlinear)"
    if value > 1 and not (math.isfinite(low) and low > 1):
        return "≈1 (within noise)"
    if value > 1:
        return f"{fmt_fraction(value)} (slower with more workers)"
    return fmt_fraction(value)


def _scaling_rows(frame: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, row in frame.iterrows():
        over = " (oversubscribed)" if row["oversubscribed"] else ""
        if row["disturbed"]:
            over += " (disturbed)"
        # Scaling with workers means nothing for a strategy that uses one core.
        sequential = bool(row["sequential"])
        rows.append(
            [
                f"`{row['strategy']}`",
                row["kind"] + (" (sequential)" if sequential else ""),
                f"{row['workers']}{over}",
                _ms_ci(row["seconds"], row["ci_low"], row["ci_high"]),
                "—"
                if sequential
                else _times_ci(
                    row["speedup_self"], row["speedup_self_low"], row["speedup_self_high"]
                ),
                _times_ci(
                    row["speedup_best_1w"], row["speedup_best_1w_low"], row["speedup_best_1w_high"]
                )
                + (
                    f" (`{row['best_1w_strategy']}`)"
                    if isinstance(row["best_1w_strategy"], str)
                    else ""
                ),
                "—" if sequential else _efficiency_cell(row),
                _karp_flatt_cell(row),
                "yes" if row["used_fused"] else "",
            ]
        )
    return rows


_SCALING_HEADERS = [
    "strategy",
    "kind",
    "workers",
    f"time per iteration (median [{CONFIDENCE:.0%} CI])",
    "speedup vs itself at 1 worker",
    "speedup vs fastest 1-worker",
    "efficiency",
    "Karp-Flatt serial fraction",
    "fused iteration",
]


def scaling_section(analysis: Analysis, workload: str) -> str:
    n = analysis.headline_n[workload]
    scal = analysis.scaling
    here = scal[(scal["workload"] == workload) & (scal["n"] == n)]
    if here.empty:
        return ""
    here = here.sort_values(
        ["sequential", "kind", "strategy", "workers"], ascending=[False, True, True, True]
    )
    lines = [
        f"### Scaling at n = {fmt_n(n)}",
        "",
        md_table(_SCALING_HEADERS, _scaling_rows(here), "lllrrrrrl"),
        "",
    ]
    fits = analysis.amdahl[(analysis.amdahl["workload"] == workload) & (analysis.amdahl["n"] == n)]
    if not fits.empty:
        lines += [
            f"### Amdahl model at n = {fmt_n(n)} (extrapolated, not measured)",
            "",
            "Serial fraction *f* fitted to the measured speedups "
            "(S(p) = 1 / (f + (1 − f) / p)); the columns beyond the machine's "
            f"{analysis.usable_cores or 'usable'} cores are the model's prediction. The "
            "brackets are the band propagated from the speedups' intervals (the fit "
            "repeated on their ends); a prediction whose band is wider than the "
            "prediction itself is not given, because the measurement then allows almost "
            "any value.",
            "",
        ]
        headers = [
            "strategy",
            "fitted on workers",
            "serial fraction f",
            *(f"model speedup on {p} cores" for p in MODEL_CORES),
            "limit 1/f",
        ]
        rows = [_amdahl_row(row) for _, row in fits.sort_values("strategy").iterrows()]
        lines += [md_table(headers, rows, "llr" + "r" * (len(MODEL_CORES) + 1)), ""]
    others = scal[
        (scal["workload"] == workload) & (scal["n"] != n) & ~scal["sequential"].astype(bool)
    ].sort_values(["n", "strategy", "workers"])
    if not others.empty:
        lines += [
            "<details><summary>Scaling of the parallel strategies at every other n</summary>",
            "",
        ]
        rows = [
            [fmt_n(row_n), *cells]
            for row_n, cells in zip(others["n"], _scaling_rows(others), strict=True)
        ]
        lines += [md_table(["n", *_SCALING_HEADERS], rows, "rlllrrrrrl"), "", "</details>", ""]
    return "\n".join(lines)


def _amdahl_row(row: pd.Series) -> list[str]:
    """One row of the Amdahl table: the fit with its band, and each model value with its
    band where that band is narrower than the value (``—`` with the reason otherwise)."""
    raw, clipped = row["serial_fraction_raw"], row["serial_fraction"]
    f_low, f_high = row["serial_fraction_low"], row["serial_fraction_high"]
    cells = [f"`{row['strategy']}`", row["fitted_workers"]]
    if raw >= 1:
        return [
            *cells,
            f"{fmt_fraction(raw)}: no gain from more workers, no model",
            *("—" for _ in MODEL_CORES),
            "—",
        ]
    band = (
        f" [{fmt_fraction(f_low)} – {fmt_fraction(f_high)}]"
        if math.isfinite(f_low) and math.isfinite(f_high)
        else ""
    )
    if raw < 0 and math.isfinite(f_high) and f_high < 0:
        fraction = f"0 (raw {fmt_fraction(raw)}{band}: superlinear, the model is an upper bound)"
    elif raw < 0:
        fraction = f"0 within noise (raw {fmt_fraction(raw)}{band})"
    else:
        fraction = fmt_fraction(clipped) + band
    models = []
    for p in MODEL_CORES:
        if row[f"model_{p}_shown"]:
            models.append(
                f"{fmt_times(row[f'model_{p}'])} "
                f"[{row[f'model_{p}_low']:.3g}–{row[f'model_{p}_high']:.3g}]"
            )
        else:
            models.append("— (band wider than the value)")
    limit = row["limit"]
    limit_known = (
        math.isfinite(f_low) and f_low > 0 and math.isfinite(limit) and 1 / f_low - limit <= limit
    )
    return [*cells, fraction, *models, fmt_times(limit) if limit_known else "—"]


def phase_section(analysis: Analysis, workload: str) -> str:
    n = analysis.headline_n[workload]
    table = phase_breakdown(analysis.summary, workload, n)
    if table.empty:
        return ""
    headers = ["strategy", "workers", "prepare (once)", "E-step", "M-step", "iteration"]
    transfer = table[["bytes_to_workers", "bytes_from_workers"]].notna().any().any()
    memory = table["peak_pss_bytes"].notna().any()
    if transfer:
        headers += ["to workers / iteration", "from workers / iteration"]
    if memory:
        headers += ["peak PSS"]
    rows = []
    for (strategy, workers), row in table.iterrows():
        cells = [
            f"`{strategy}`",
            str(workers) + (" (disturbed)" if row["disturbed"] else ""),
            fmt_ms(row["prepare"]),
            fmt_ms(row["e_step"]),
            fmt_ms(row["m_step"]),
            fmt_ms(row["iteration"]),
        ]
        if transfer:
            cells += [fmt_bytes(row["bytes_to_workers"]), fmt_bytes(row["bytes_from_workers"])]
        if memory:
            cells += [fmt_bytes(row["peak_pss_bytes"])]
        rows.append(cells)
    return "\n".join(
        [
            f"### Phases at n = {fmt_n(n)} (medians)",
            "",
            md_table(headers, rows, "lr" + "r" * (len(headers) - 2)),
            "",
        ]
    )


def disturbed_section(analysis: Analysis) -> str:
    """The configurations left disturbed, with their reasons (empty when none)."""
    bad = analysis.disturbed
    if bad.empty:
        return ""
    rows = [
        [
            row["workload"],
            fmt_n(row["n"]),
            f"`{row['strategy']}`",
            str(row["workers"]),
            "—" if pd.isna(row["attempts"]) else str(int(row["attempts"])),
            row["reason"],
        ]
        for _, row in bad.iterrows()
    ]
    return "\n".join(
        [
            "## Disturbed configurations",
            "",
            "Still disturbed or unstable after the sweep's last attempt: their times are "
            "shown (hollow, grey) but take part in no finding and no winner.",
            "",
            md_table(
                ["workload", "n", "strategy", "workers", "attempts", "reason"], rows, "lrlrrl"
            ),
            "",
        ]
    )


def not_measured_section(analysis: Analysis) -> str:
    missing = analysis.not_measured
    lines = ["## Not measured", ""]
    if missing.empty:
        return "\n".join([*lines, "Every configuration in the table was measured.", ""])
    by_design = missing[missing["by_design"].astype(bool)]
    problems = missing[~missing["by_design"].astype(bool)]
    if not problems.empty:
        rows = [
            [
                row["status"],
                f"`{row['strategy']}`",
                row["workers"],
                (row["reason"] or "(no reason recorded)")
                + (f" (phases: {row['phases']})" if row["phases"] != "all" else ""),
                row["where"],
            ]
            for _, row in group_not_measured(problems).iterrows()
        ]
        lines += [
            md_table(["status", "strategy", "workers", "reason", "where"], rows, "llrll"),
            "",
        ]
    if not by_design.empty:
        names = ", ".join(f"`{name}`" for name in sorted(set(by_design["strategy"])))
        lines += [
            f"By design, the sequential strategies ({names}) were measured at 1 worker "
            f"only: {len(by_design)} configurations with more workers were skipped.",
            "",
        ]
    return "\n".join(lines)


def _fixed_cost(seconds: float) -> str:
    """A library's fixed cost; at the floor a differenced estimate is recorded at, noise."""
    from harness.sweep.library_timing import FIXED_FLOOR_SECONDS

    if not math.isfinite(seconds):
        return "—"
    if seconds <= 2 * FIXED_FLOOR_SECONDS:
        return "within the noise"
    return fmt_ms(seconds)


def peers_section(analysis: Analysis) -> str:
    """The project's fastest strategy against the fastest library (kind ``library``).

    At each (workload, n, workers) as a budget: each side's best median iteration on at
    most that many workers. A library's iteration is
    differenced from whole fits; its fixed cost (set-up, own initialisation, final
    E-step) is shown apart. Where the two medians' intervals overlap it is a tie, never
    a lead; where either side stayed disturbed the row gives no verdict.
    """
    summary = analysis.summary
    iteration = summary[summary["phase"] == "iteration"]
    if iteration.empty or not (iteration["kind"] == "library").any():
        return ""
    fixed = summary[summary["phase"] == "fixed"].set_index(
        ["workload", "n", "strategy", "workers"]
    )["median"]
    rows = []
    for (workload, n), group in iteration.groupby(["workload", "n"], sort=True):
        for budget in sorted(group["workers"].unique()):
            within = group[group["workers"] <= budget]
            ours = within[within["kind"] != "library"]
            peers = within[within["kind"] == "library"]
            if ours.empty or peers.empty:
                continue
            a = ours.loc[ours["median"].idxmin()]
            b = peers.loc[peers["median"].idxmin()]
            tie = a["ci_high"] >= b["ci_low"] and b["ci_high"] >= a["ci_low"]
            if bool(a.get("disturbed", False)) or bool(b.get("disturbed", False)):
                lead = "no verdict (disturbed)"
            elif tie:
                lead = "tie (inside the noise)"
            else:
                lead = fmt_times(b["median"] / a["median"])
            key = (workload, n, b["strategy"], b["workers"])
            rows.append(
                [
                    f"`{workload}`",
                    fmt_n(n),
                    str(budget),
                    f"`{a['strategy']}` w{a['workers']} {fmt_ms(a['median'])}",
                    f"`{b['strategy']}` w{b['workers']} {fmt_ms(b['median'])}",
                    _fixed_cost(float(fixed.get(key, math.nan))),
                    lead,
                ]
            )
    if not rows:
        return ""
    headers = [
        "workload",
        "n",
        "workers",
        "fastest of this project",
        "fastest library",
        "library fixed cost",
        "library / project",
    ]
    return "\n".join(
        [
            "## Against the libraries",
            "",
            "The fastest strategy of this project against the fastest peer library (kind "
            "`library`: the library's own whole EM fit from the same start, per-iteration "
            "time differenced from fits of different lengths, fixed cost apart), median "
            "time per iteration with at most that many workers.",
            "",
            md_table(headers, rows, "lrrllrr"),
            "",
        ]
    )


def floor_section(analysis: Analysis) -> str:
    """How far the fastest strategy is from the measured floor of an iteration.

    At each (workload, n, workers) measured with a floor in the run's metadata
    (:mod:`harness.sweep.floors`): the fastest undisturbed strategy of this project at
    exactly that many workers, and the floor on that many cores as a share of its
    median time (100% is at the floor; above it, faster than the floor's own code).
    """
    if not analysis.floors:
        return ""
    from harness.sweep.floors import floor_key

    summary = analysis.summary
    iteration = summary[(summary["phase"] == "iteration") & (summary["kind"] != "library")]
    if "disturbed" in iteration:
        iteration = iteration[~iteration["disturbed"].fillna(False).astype(bool)]
    rows, bases = [], {}
    for (workload, n, workers), group in iteration.groupby(["workload", "n", "workers"]):
        floor = analysis.floors.get(floor_key(workload, n))
        if not floor or group.empty:
            continue
        best = group.loc[group["median"].idxmin()]
        floor_seconds = float(floor["one_core_ms"]) / 1e3 / int(workers)
        bases[(workload, n)] = f"{floor['kind']} floor: {floor['basis']}"
        rows.append(
            [
                f"`{workload}`",
                fmt_n(n),
                str(int(workers)),
                f"`{best['strategy']}` {fmt_ms(best['median'])}",
                fmt_ms(floor_seconds),
                f"{100 * floor_seconds / best['median']:.0f}%",
            ]
        )
    if not rows:
        return ""
    headers = ["workload", "n", "workers", "fastest", "floor", "floor / fastest"]
    notes = [f"- `{w}` n = {fmt_n(n)}: {basis}" for (w, n), basis in sorted(bases.items())]
    return "\n".join(
        [
            "## Distance from the floor",
            "",
            "The least time an iteration's work could take here, measured at the start of "
            "the sweep: for d = 2 one `np.exp` per point and component (NumPy's SIMD exp "
            "on one core), for d > 2 the iteration's useful FLOPs at the one-thread DGEMM "
            "rate; divided by the workers. 100% is at the floor; above 100% is faster than "
            "the floor's own code.",
            "",
            md_table(headers, rows, "lrrlrr"),
            "",
            *notes,
            "",
        ]
    )
