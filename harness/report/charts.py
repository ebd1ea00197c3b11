"""Charts of a run, drawn with Matplotlib's Agg canvas from the frames of
:mod:`harness.report.analysis`.

Every function takes an :class:`~harness.report.analysis.Analysis` (and the per-strategy
styles from :func:`strategy_styles`) and returns a :class:`matplotlib.figure.Figure`,
or ``None`` when the run has nothing to draw for it; :func:`save` writes PNG and SVG.
Figures are built with the object-oriented API on an explicit Agg canvas, never
through ``pyplot``, so no GUI backend or global figure state is involved.

The shared styles and helpers live in :mod:`harness.report.chart_kit`; the per-workload
map, phase and fitted-model charts in :mod:`harness.report.chart_maps` (re-exported here,
so the report draws every chart from this module).

A strategy keeps one colour and one marker (by kind) in every chart of a run, so a
reader who learnt "orange triangles" once can read the rest at a glance. Bands and
error bars are the bootstrap intervals the verdicts use (never an interquartile range
of a few values), and a configuration the sweep left disturbed is drawn hollow in
grey (:func:`_mark_disturbed`) on every chart that shows it.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FuncFormatter,
    NullLocator,
    PercentFormatter,
)

from harness.report.analysis import (
    MODEL_CORES,
    Analysis,
    amdahl_speedup,
)
from harness.report.chart_kit import (  # noqa: F401 (API)
    StrategyStyle,
    _compact_n,
    _disturbed_handle,
    _empty_panel,
    _error_bars,
    _figure,
    _integer_ticks,
    _interval_and_flags,
    _mark_disturbed,
    _mark_oversubscribed,
    _plain_log_axis,
    _strategy_legend,
    _subplots,
    _workload_title,
    save,
    strategy_styles,
    styles_for,
)
from harness.report.chart_maps import (  # noqa: F401 (the report draws every chart from here)
    best_map_chart,
    fitted_model_chart,
    phase_chart,
)
from harness.report.uncertainty import CONFIDENCE

# --------------------------------------------------------------------------------------
# 1. Speedup against workers
# --------------------------------------------------------------------------------------


def _speedup_lines(axis, frame, column: str, styles, shown: set) -> tuple[bool, bool]:
    """One line per strategy of ``column`` against workers, with its interval and the
    oversubscribed and disturbed marks; whether any point was oversubscribed, disturbed."""
    any_over = any_disturbed = False
    for strategy, group in frame.groupby("strategy", sort=True):
        group = group.sort_values("workers").dropna(subset=[column])
        if group.empty:
            continue
        style = styles[strategy]
        x = group["workers"].to_numpy()
        y = group[column].to_numpy(dtype=float)
        over = group["oversubscribed"].to_numpy(dtype=bool)
        axis.plot(x, y, color=style.colour, marker=style.marker, lw=1.6)
        disturbed = _interval_and_flags(axis, group, "workers", column, style.colour)
        _mark_oversubscribed(axis, x, y, over, style.colour, style.marker)
        any_over |= bool(over.any())
        any_disturbed |= bool(disturbed.any())
        shown.add(strategy)
    return any_over, any_disturbed


def speedup_chart(analysis: Analysis, styles: dict[str, StrategyStyle]) -> Figure | None:
    """Speedup against workers: (top) over itself at 1 worker, (bottom) over the fastest
    1-worker strategy; one column per workload, at its headline n."""
    if analysis.scaling.empty:
        return None
    workloads = sorted(analysis.headline_n)
    figure = _figure(3.6 * len(workloads) + 2.2, 7.2)
    axes = _subplots(figure, 2, len(workloads))
    shown: set[str] = set()
    any_over = False
    any_disturbed = False
    for col, workload in enumerate(workloads):
        n = analysis.headline_n[workload]
        data = analysis.scaling[
            (analysis.scaling["workload"] == workload) & (analysis.scaling["n"] == n)
        ]
        worker_counts = sorted(data["workers"].unique())
        top, bottom = axes[0, col], axes[1, col]
        p_line = np.array([1, max(worker_counts)], dtype=float)
        parallel = data[~data["sequential"].astype(bool)]
        over, disturbed = _speedup_lines(top, parallel, "speedup_self", styles, shown)
        any_over |= over
        any_disturbed |= disturbed
        drawn = len(top.lines)
        top.plot(p_line, p_line, color="black", ls=":", lw=1, zorder=1)
        top.set_title(_workload_title(analysis, workload, n))
        top.set_xlabel("workers (threads or processes)")
        top.set_ylabel("speedup over itself at 1 worker (×)")
        _integer_ticks(top, worker_counts)
        if drawn == 0:
            _empty_panel(top, "no parallel strategy measured\nat 1 and more workers")

        _speedup_lines(bottom, data, "speedup_best_1w", styles, shown)
        reference = data["best_1w_strategy"].dropna()
        bottom.plot(p_line, p_line, color="black", ls=":", lw=1, zorder=1)
        bottom.axhline(1.0, color="#d62728", ls="--", lw=1, zorder=1)
        bottom.set_yscale("log")
        _plain_log_axis(bottom)
        if not reference.empty:
            bottom.set_title("vs " + " / ".join(sorted(set(reference))) + " (1 worker)")
        bottom.set_xlabel("workers (threads or processes)")
        bottom.set_ylabel("speedup over fastest 1-worker strategy\n(×, log scale)")
        _integer_ticks(bottom, worker_counts)
    extra = [
        Line2D([], [], color="black", ls=":", label="ideal (linear)"),
        Line2D([], [], color="#d62728", ls="--", label="break-even with\nfastest 1-worker"),
    ]
    if any_over:
        extra.append(
            Line2D(
                [],
                [],
                color="black",
                marker="o",
                mfc="white",
                ls="",
                label="oversubscribed\n(more workers than cores)",
            )
        )
    if any_disturbed:
        extra.append(_disturbed_handle())
    extra.append(
        Line2D([], [], color="black", marker="|", ls="", label=f"{CONFIDENCE:.0%} interval")
    )
    _strategy_legend(figure, styles, shown, extra)
    figure.suptitle(
        "Speedup of one EM iteration against workers (medians): over the same "
        "strategy at 1 worker (top) and over the fastest 1-worker strategy (bottom)"
    )
    return figure


# --------------------------------------------------------------------------------------
# 2. Time per iteration against n
# --------------------------------------------------------------------------------------


def time_vs_n_chart(
    analysis: Analysis, styles: dict[str, StrategyStyle], workload: str
) -> Figure | None:
    """Median time per iteration against n (log-log) with the IQR band, one panel per
    worker count."""
    data = analysis.scaling[analysis.scaling["workload"] == workload]
    if data.empty:
        return None
    worker_counts = sorted(data["workers"].unique())
    figure = _figure(4.2 * len(worker_counts) + 2.2, 4.6)
    axes = _subplots(figure, 1, len(worker_counts), sharey=True)[0]
    shown: set[str] = set()
    sequential_1w = data[data["sequential"].astype(bool) & (data["workers"] == 1)]
    faint = False
    any_disturbed = False
    for axis, p in zip(axes, worker_counts, strict=True):
        at_p = data[data["workers"] == p]
        # Sequential strategies run the same on any worker budget: drawn faint in the
        # other panels so "does this beat the best 1-core code?" reads off one panel.
        for strategy, group in sequential_1w.groupby("strategy", sort=True):
            if p == 1 or strategy in set(at_p["strategy"]):
                continue
            group = group.sort_values("n")
            axis.plot(
                group["n"],
                group["seconds"],
                color=styles[strategy].colour,
                ls="--",
                lw=1.0,
                alpha=0.45,
            )
            faint = True
        for strategy, group in at_p.groupby("strategy", sort=True):
            group = group.sort_values("n")
            style = styles[strategy]
            x = group["n"].to_numpy(dtype=float)
            axis.plot(x, group["seconds"], color=style.colour, marker=style.marker, lw=1.5, ms=4)
            axis.fill_between(
                x,
                group["ci_low"].to_numpy(dtype=float),
                group["ci_high"].to_numpy(dtype=float),
                color=style.colour,
                alpha=0.2,
                lw=0,
            )
            disturbed = group["disturbed"].to_numpy(dtype=bool)
            _mark_disturbed(axis, x, group["seconds"].to_numpy(dtype=float), disturbed)
            any_disturbed |= bool(disturbed.any())
            shown.add(strategy)
        over = data[(data["workers"] == p) & data["oversubscribed"].astype(bool)]
        suffix = " (oversubscribed)" if not over.empty else ""
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.xaxis.set_major_formatter(FuncFormatter(_compact_n))
        axis.set_title(f"{_workers_label(p)}{suffix}")
        axis.set_xlabel("points n (log scale)")
        axis.set_ylabel("time per iteration (s, log scale)")
        axis.grid(True, which="both", alpha=0.2)
    extra = [
        Patch(
            color="#999999", alpha=0.35, label=f"{CONFIDENCE:.0%} bootstrap interval\nof the median"
        )
    ]
    if any_disturbed:
        extra.append(_disturbed_handle())
    if faint:
        extra.append(
            Line2D(
                [],
                [],
                color="#777777",
                ls="--",
                alpha=0.6,
                label="sequential strategy,\n1-worker time (reference)",
            )
        )
    _strategy_legend(figure, styles, shown | set(sequential_1w["strategy"]), extra)
    figure.suptitle(f"Time per EM iteration against n — {_workload_title(analysis, workload)}")
    return figure


def _workers_label(p: int) -> str:
    return f"{p} worker{'s' if p != 1 else ''}"


# --------------------------------------------------------------------------------------
# 3. Efficiency, Karp-Flatt serial fraction, Amdahl extrapolation
# --------------------------------------------------------------------------------------


def efficiency_chart(analysis: Analysis, styles: dict[str, StrategyStyle]) -> Figure | None:
    """(top) parallel efficiency against workers at the headline n; (bottom) Karp-Flatt
    serial fraction against n at the largest non-oversubscribed worker count."""
    scaling = analysis.scaling
    parallel = scaling[
        ~scaling["sequential"].astype(bool)
        & (scaling["workers"] > 1)
        & scaling["speedup_self"].notna()
    ]
    if parallel.empty:
        return None
    workloads = sorted(analysis.headline_n)
    figure = _figure(3.6 * len(workloads) + 2.2, 7.0)
    axes = _subplots(figure, 2, len(workloads))
    shown: set[str] = set()
    for col, workload in enumerate(workloads):
        n = analysis.headline_n[workload]
        here = scaling[(scaling["workload"] == workload) & ~scaling["sequential"].astype(bool)]
        top, bottom = axes[0, col], axes[1, col]
        at_n = here[here["n"] == n].dropna(subset=["efficiency"])
        for strategy, group in at_n.groupby("strategy", sort=True):
            group = group.sort_values("workers")
            style = styles[strategy]
            x = group["workers"].to_numpy()
            y = group["efficiency"].to_numpy(dtype=float)
            top.plot(x, y, color=style.colour, marker=style.marker, lw=1.6)
            _interval_and_flags(top, group, "workers", "efficiency", style.colour)
            _mark_oversubscribed(
                top, x, y, group["oversubscribed"].to_numpy(dtype=bool), style.colour, style.marker
            )
            shown.add(strategy)
        top.axhline(1.0, color="black", ls=":", lw=1)
        top.yaxis.set_major_formatter(PercentFormatter(1.0))
        top.set_title(_workload_title(analysis, workload, n))
        top.set_xlabel("workers (threads or processes)")
        top.set_ylabel("efficiency S(p) / p (%)")
        if not at_n.empty:
            _integer_ticks(top, at_n["workers"])
        else:
            _empty_panel(top, "no parallel strategy measured\nat 1 and more workers")

        fair = here[~here["oversubscribed"].astype(bool)].dropna(subset=["karp_flatt"])
        if fair.empty:
            _empty_panel(bottom, "no Karp-Flatt fraction:\nneeds 1 and >1 workers")
        else:
            p_top = int(fair["workers"].max())
            for strategy, group in fair[fair["workers"] == p_top].groupby("strategy"):
                group = group.sort_values("n")
                style = styles[strategy]
                bottom.plot(
                    group["n"], group["karp_flatt"], color=style.colour, marker=style.marker, lw=1.6
                )
                _interval_and_flags(bottom, group, "n", "karp_flatt", style.colour)
                shown.add(strategy)
            bottom.axhline(0.0, color="black", lw=0.8)
            bottom.set_xscale("log")
            bottom.xaxis.set_major_formatter(FuncFormatter(_compact_n))
            bottom.set_title(f"serial fraction at {_workers_label(p_top)}, every n")
            bottom.set_xlabel("points n (log scale)")
            bottom.set_ylabel("Karp-Flatt serial fraction e\n(0 = perfect scaling)")
    extra = [Line2D([], [], color="black", ls=":", label="ideal efficiency (100%)")]
    _strategy_legend(figure, styles, shown, extra)
    figure.suptitle(
        "Parallel efficiency at the largest n (top) and Karp-Flatt experimentally "
        "determined serial fraction against n (bottom)"
    )
    return figure


def amdahl_chart(analysis: Analysis, styles: dict[str, StrategyStyle]) -> Figure | None:
    """Measured speedup (solid) and the Amdahl model extrapolated to
    :data:`~harness.report.analysis.MODEL_CORES` (dashed, labelled "model")."""
    if analysis.amdahl.empty:
        return None
    workloads = sorted(analysis.headline_n)
    figure = _figure(3.9 * len(workloads) + 2.6, 4.8)
    axes = _subplots(figure, 1, len(workloads))[0]
    p_model = np.geomspace(1, max(MODEL_CORES), 200)
    cores = analysis.usable_cores
    entries = []
    for axis, workload in zip(axes, workloads, strict=True):
        n = analysis.headline_n[workload]
        fits = analysis.amdahl[
            (analysis.amdahl["workload"] == workload) & (analysis.amdahl["n"] == n)
        ]
        axis.plot(p_model, p_model, color="black", ls=":", lw=1)
        if fits.empty:
            _empty_panel(axis, "no parallel strategy measured\nat 1 and more workers")
            continue
        lowest = 1.0
        measured = analysis.scaling[
            (analysis.scaling["workload"] == workload) & (analysis.scaling["n"] == n)
        ]
        for _, fit in fits.iterrows():
            style = styles[fit["strategy"]]
            points = (
                measured[measured["strategy"] == fit["strategy"]]
                .dropna(subset=["speedup_self"])
                .sort_values("workers")
            )
            axis.plot(
                points["workers"],
                points["speedup_self"],
                color=style.colour,
                marker=style.marker,
                lw=1.8,
                zorder=3,
            )
            _mark_oversubscribed(
                axis,
                points["workers"].to_numpy(),
                points["speedup_self"].to_numpy(dtype=float),
                points["oversubscribed"].to_numpy(dtype=bool),
                style.colour,
                style.marker,
            )
            _interval_and_flags(axis, points, "workers", "speedup_self", style.colour)
            lowest = min(lowest, float(points["speedup_self"].min()))
            raw = fit["serial_fraction_raw"]
            shown = [p for p in MODEL_CORES if fit[f"model_{p}_shown"]]
            # f >= 1 means "slower with more workers": a flat model line at 1x says nothing.
            # The model is drawn only as far as its band stays narrower than its value.
            if raw < 1 and shown:
                reach = p_model[p_model <= max(shown)]
                axis.plot(
                    reach,
                    amdahl_speedup(fit["serial_fraction"], reach),
                    color=style.colour,
                    ls="--",
                    lw=1.2,
                    zorder=2,
                )
                f_low = min(max(fit["serial_fraction_low"], 0.0), 1.0)
                f_high = min(max(fit["serial_fraction_high"], 0.0), 1.0)
                axis.fill_between(
                    reach,
                    amdahl_speedup(f_high, reach),
                    amdahl_speedup(f_low, reach),
                    color=style.colour,
                    alpha=0.15,
                    lw=0,
                    zorder=1,
                )
            if raw >= 1:
                label = f"{workload}: no gain, no model"
            elif not shown:
                label = f"{workload}: band too wide, no model"
            elif raw < 0:
                label = f"{workload} f=0 (raw {raw:.3f}), to {max(shown)} cores"
            else:
                label = f"{workload} f={raw:.3f}, to {max(shown)} cores"
            entries.append((fit["strategy"], label))
        if cores:
            axis.axvspan(cores, max(MODEL_CORES), color="#eeeeee", zorder=0)
            axis.text(
                math.sqrt(cores * max(MODEL_CORES)),
                24,
                f"model only: beyond this\nmachine's {cores} cores",
                ha="center",
                va="top",
                fontsize=8,
                color="#555555",
            )
        axis.set_xscale("log", base=2)
        axis.set_yscale("log", base=2)
        bottom = 2.0 ** math.floor(math.log2(min(0.5, lowest / 1.2)))
        ticks = [2**i for i in range(int(math.log2(max(MODEL_CORES))) + 1)]
        axis.set_xticks(ticks, [str(t) for t in ticks])
        y_ticks = [2.0**i for i in range(int(math.log2(bottom)), len(ticks))]
        axis.set_yticks(y_ticks, [f"{t:g}" for t in y_ticks])
        axis.xaxis.set_minor_locator(NullLocator())
        axis.yaxis.set_minor_locator(NullLocator())
        axis.set_xlim(1, max(MODEL_CORES))
        axis.set_ylim(bottom, max(MODEL_CORES))
        axis.set_title(_workload_title(analysis, workload, n))
        axis.set_xlabel("cores p (log scale)")
        axis.set_ylabel("speedup over 1 worker (×, log scale)")
    shown = {name for name, _ in entries}
    fitted: dict[str, list[str]] = {}
    for name, label in entries:
        fitted.setdefault(name, []).append(label)
    handles = [
        Line2D(
            [],
            [],
            color=styles[name].colour,
            marker=styles[name].marker,
            label=f"{name}\n" + "\n".join(f"  {text}" for text in fitted[name]),
        )
        for name in styles
        if name in shown
    ]
    handles += [
        Line2D([], [], color="black", lw=1.8, label="measured"),
        Line2D([], [], color="black", ls="--", lw=1.2, label="Amdahl model\n1 / (f + (1 - f) / p)"),
        Patch(
            color="#999999",
            alpha=0.3,
            label="model band from the\nspeedup's interval; the model\nstops where the band\n"
            "grows wider than it",
        ),
        Line2D([], [], color="black", ls=":", lw=1, label="ideal (linear)"),
    ]
    figure.legend(
        handles=handles,
        loc="outside right center",
        frameon=False,
        title="strategy (fitted serial fraction)",
    )
    figure.suptitle(
        "Measured speedup (solid) and Amdahl model extrapolated to "
        f"{', '.join(map(str, MODEL_CORES))} cores (dashed: model, not measured)"
    )
    return figure
