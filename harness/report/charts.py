"""Charts of a run, drawn with Matplotlib's Agg canvas from the frames of
:mod:`harness.report.analysis`.

Every function takes an :class:`~harness.report.analysis.Analysis` (and the per-strategy
styles from :func:`strategy_styles`) and returns a :class:`matplotlib.figure.Figure`,
or ``None`` when the run has nothing to draw for it; :func:`save` writes PNG and SVG.
Figures are built with the object-oriented API on an explicit Agg canvas, never
through ``pyplot``, so no GUI backend or global figure state is involved.

A strategy keeps one colour and one marker (by kind) in every chart of a run, so a
reader who learnt "orange triangles" once can read the rest at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
    PercentFormatter,
)

from harness.report.analysis import MODEL_CORES, Analysis, amdahl_speedup, fmt_n, phase_breakdown

#: Output formats, in the order they are written.
FORMATS = ("png", "svg")
#: Raster resolution: sharp on a laptop screen, small enough for a repository.
PNG_DPI = 130
#: Colours for strategies, distinct in colour and in lightness (tab10 + 4 darker hues).
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#8c6d31",
    "#843c39",
    "#7b4173",
)
#: Marker per strategy kind: the shape says how a strategy parallelises.
KIND_MARKERS = {
    "serial": "o",
    "threads": "s",
    "processes": "^",
    "openmp": "D",
    "distributed": "v",
    "library": "*",  # a peer library's whole fit (differenced)
}
#: rc settings for every chart: readable sizes, light grids, reproducible SVG ids.
_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "gmm-harness",
    "svg.fonttype": "none",
}
_PHASE_COLOURS = {
    "prepare": "#7f7f7f",
    "e_step": "#1f77b4",
    "m_step": "#ff7f0e",
    "iteration": "#2ca02c",
}
_PHASE_LABELS = {
    "prepare": "prepare (once per data set)",
    "e_step": "E-step",
    "m_step": "M-step",
    "iteration": "full iteration",
}


@dataclass(frozen=True)
class StrategyStyle:
    """How one strategy is drawn everywhere."""

    colour: str
    marker: str


def strategy_styles(strategies_and_kinds: Iterable[tuple[str, str]]) -> dict[str, StrategyStyle]:
    """A colour per strategy (registry order first, so colours are stable across runs).

    Parameters
    ----------
    strategies_and_kinds : iterable of (str, str)
        Strategy names and their kinds.

    Returns
    -------
    dict of str to StrategyStyle
    """
    try:
        import strategies

        order = list(strategies.names())
    except Exception:  # the report must not depend on the registry importing
        order = []
    pairs = dict(strategies_and_kinds)
    names = [name for name in order if name in pairs]
    names += sorted(name for name in pairs if name not in order)
    positions = {
        name: order.index(name) if name in order else len(order) + i for i, name in enumerate(names)
    }
    return {
        name: StrategyStyle(
            _PALETTE[positions[name] % len(_PALETTE)], KIND_MARKERS.get(pairs[name], "X")
        )
        for name in names
    }


def styles_for(analysis: Analysis) -> dict[str, StrategyStyle]:
    """:func:`strategy_styles` for every strategy in a run's table."""
    pairs = analysis.table.groupby("strategy")["kind"].first()
    return strategy_styles(pairs.items())


def save(figure: Figure, directory: str | Path, stem: str) -> list[Path]:
    """Write ``figure`` as ``directory/stem.png`` and ``.svg``.

    Returns
    -------
    list of Path
        The files written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with rc_context(_RC):
        for fmt in FORMATS:
            path = directory / f"{stem}.{fmt}"
            # No timestamps in the files, so re-plotting an unchanged run changes nothing.
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            figure.savefig(path, format=fmt, dpi=PNG_DPI, metadata=metadata)
            written.append(path)
    return written


def _figure(width: float, height: float) -> Figure:
    with rc_context(_RC):
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(figure)
    return figure


def _subplots(figure: Figure, rows: int, cols: int, **kwargs) -> np.ndarray:
    with rc_context(_RC):
        return np.atleast_2d(figure.subplots(rows, cols, squeeze=False, **kwargs))


def _workload_title(analysis: Analysis, workload: str, n: int | None = None) -> str:
    """``"quinn (d = 2, k = 50)"`` with ``"\nn = 130,000"`` when ``n`` is given."""
    info = analysis.workloads.loc[workload] if workload in analysis.workloads.index else None
    title = workload
    if info is not None and pd.notna(info.get("d")):
        title += f" (d = {int(info['d'])}, k = {int(info['k'])})"
    if n is not None:
        title += f"\nn = {fmt_n(n)}"
    return title


def _plain_log_axis(axis, which: str = "y") -> None:
    """Log-axis ticks as plain numbers (0.5, 1, 2) instead of powers of ten.

    Call after plotting: over more than three decades only the decades are labelled,
    so the labels never run into each other.
    """
    low, high = axis.get_ylim() if which == "y" else axis.get_xlim()
    decades = math.log10(high / low) if low > 0 and high > low else 1.0
    subs = (1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 1.5 else (1.0, 2.0, 3.0, 5.0)
    target = axis.yaxis if which == "y" else axis.xaxis
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def _compact_n(value: float, _position: object = None) -> str:
    """``1000 -> 1k``, ``4000000 -> 4M`` for log axes and map columns."""
    for suffix, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            scaled = value / scale
            return f"{scaled:.3g}{suffix}"
    return f"{value:.3g}"


def _strategy_legend(
    figure: Figure,
    styles: dict[str, StrategyStyle],
    names: Iterable[str],
    extra: list | None = None,
    title: str = "strategy (marker = kind)",
) -> None:
    handles = [
        Line2D([], [], color=styles[name].colour, marker=styles[name].marker, label=name)
        for name in styles
        if name in set(names)
    ]
    handles += extra or []
    if handles:
        figure.legend(handles=handles, loc="outside right center", title=title, frameon=False)


def _integer_ticks(axis, values: Iterable[int]) -> None:
    ticks = sorted({int(v) for v in values})
    axis.set_xticks(ticks)
    axis.set_xticklabels([str(t) for t in ticks])


def _empty_panel(axis, message: str) -> None:
    axis.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        transform=axis.transAxes,
        fontsize=9,
        color="#555555",
        wrap=True,
    )
    axis.set_xticks([])
    axis.set_yticks([])
    axis.grid(False)


def _mark_oversubscribed(
    axis, x: np.ndarray, y: np.ndarray, over: np.ndarray, colour: str, marker: str
) -> None:
    """Hollow markers on points measured with more workers than cores."""
    if over.any():
        axis.scatter(
            x[over],
            y[over],
            s=70,
            facecolors="white",
            edgecolors=colour,
            marker=marker,
            zorder=4,
            linewidths=1.5,
        )


# --------------------------------------------------------------------------------------
# 1. Speedup against workers
# --------------------------------------------------------------------------------------


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
    for col, workload in enumerate(workloads):
        n = analysis.headline_n[workload]
        data = analysis.scaling[
            (analysis.scaling["workload"] == workload) & (analysis.scaling["n"] == n)
        ]
        worker_counts = sorted(data["workers"].unique())
        top, bottom = axes[0, col], axes[1, col]
        p_line = np.array([1, max(worker_counts)], dtype=float)
        parallel = data[~data["sequential"].astype(bool)]
        for strategy, group in parallel.groupby("strategy", sort=True):
            group = group.sort_values("workers").dropna(subset=["speedup_self"])
            if group.empty:
                continue
            style = styles[strategy]
            x = group["workers"].to_numpy()
            y = group["speedup_self"].to_numpy(dtype=float)
            over = group["oversubscribed"].to_numpy(dtype=bool)
            top.plot(x, y, color=style.colour, marker=style.marker, lw=1.6)
            _mark_oversubscribed(top, x, y, over, style.colour, style.marker)
            any_over |= bool(over.any())
            shown.add(strategy)
        drawn = len(top.lines)
        top.plot(p_line, p_line, color="black", ls=":", lw=1, zorder=1)
        top.set_title(_workload_title(analysis, workload, n))
        top.set_xlabel("workers (threads or processes)")
        top.set_ylabel("speedup over itself at 1 worker (×)")
        _integer_ticks(top, worker_counts)
        if drawn == 0:
            _empty_panel(top, "no parallel strategy measured\nat 1 and more workers")

        for strategy, group in data.groupby("strategy", sort=True):
            group = group.sort_values("workers").dropna(subset=["speedup_best_1w"])
            if group.empty:
                continue
            style = styles[strategy]
            x = group["workers"].to_numpy()
            y = group["speedup_best_1w"].to_numpy(dtype=float)
            bottom.plot(x, y, color=style.colour, marker=style.marker, lw=1.6)
            _mark_oversubscribed(
                bottom,
                x,
                y,
                group["oversubscribed"].to_numpy(dtype=bool),
                style.colour,
                style.marker,
            )
            shown.add(strategy)
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
                group["q1"].to_numpy(dtype=float),
                group["q3"].to_numpy(dtype=float),
                color=style.colour,
                alpha=0.2,
                lw=0,
            )
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
    extra = [Patch(color="#999999", alpha=0.35, label="interquartile range\nof repeated values")]
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
            lowest = min(lowest, float(points["speedup_self"].min()))
            raw = fit["serial_fraction_raw"]
            # f >= 1 means "slower with more workers": a flat model line at 1x says nothing.
            if raw < 1:
                axis.plot(
                    p_model,
                    amdahl_speedup(fit["serial_fraction"], p_model),
                    color=style.colour,
                    ls="--",
                    lw=1.2,
                    zorder=2,
                )
            if raw < 0:
                label = f"{workload} f=0 (raw {raw:.3f}: superlinear)"
            elif raw >= 1:
                label = f"{workload}: no gain, no model"
            else:
                label = f"{workload} f={raw:.3f}"
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


# --------------------------------------------------------------------------------------
# 4. Best-strategy map
# --------------------------------------------------------------------------------------


def best_map_chart(analysis: Analysis, styles: dict[str, StrategyStyle]) -> Figure | None:
    """For each workload, the winner at each (n, workers) and its margin over the runner-up."""
    best = analysis.best
    if best.empty:
        return None
    workloads = sorted(best["workload"].unique())
    widths = [best[best["workload"] == w]["n"].nunique() for w in workloads]
    heights = [best[best["workload"] == w]["workers"].nunique() for w in workloads]
    figure = _figure(max(7.0, 1.25 * max(widths) + 2.8), 1.3 + sum(0.75 * h + 0.9 for h in heights))
    axes = _subplots(figure, len(workloads), 1, height_ratios=[h + 1.2 for h in heights])[:, 0]
    shown: set[str] = set()
    for axis, workload in zip(axes, workloads, strict=True):
        data = best[best["workload"] == workload]
        ns = sorted(data["n"].unique())
        ps = sorted(data["workers"].unique())
        axis.set_xlim(-0.5, len(ns) - 0.5)
        axis.set_ylim(-0.5, len(ps) - 0.5)
        for _, row in data.iterrows():
            x, y = ns.index(row["n"]), ps.index(row["workers"])
            style = styles[row["best"]]
            axis.add_patch(_cell(x, y, style.colour))
            label = row["best"].replace("-", "-\n", 1) if len(row["best"]) > 12 else row["best"]
            if row["best_workers"] != row["workers"]:
                label += f" ({row['best_workers']}w)"
            margin = (
                f"×{row['margin']:.2f} vs {row['runner_up']}"
                if pd.notna(row["margin"])
                else "only candidate"
            )
            axis.text(x, y + 0.08, label, ha="center", va="center", fontsize=8, fontweight="bold")
            axis.text(x, y - 0.28, margin, ha="center", va="center", fontsize=6.5, color="#333333")
            shown.add(row["best"])
        axis.set_xticks(range(len(ns)))
        axis.set_xticklabels([fmt_n(v) for v in ns])
        axis.set_yticks(range(len(ps)))
        axis.set_yticklabels([str(p) for p in ps])
        axis.grid(False)
        axis.set_xlabel("points n")
        axis.set_ylabel("workers")
        axis.set_title(_workload_title(analysis, workload))
    patches = [
        Patch(facecolor=_tint(styles[name].colour), edgecolor=styles[name].colour, label=name)
        for name in styles
        if name in shown
    ]
    figure.legend(
        handles=patches,
        loc="outside right center",
        frameon=False,
        title="winner\n(workers = budget: each\nstrategy competes with its\nfastest time on at "
        'most\nthat many workers; "(1w)"\nmarks a winner that was\nfastest with fewer)',
    )
    figure.suptitle("Fastest strategy per (n, worker budget)\nand its margin over the runner-up")
    return figure


def _tint(colour: str, amount: float = 0.55) -> tuple[float, float, float]:
    """``colour`` mixed with white, so black text on it stays legible."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _cell(x: float, y: float, colour: str):
    from matplotlib.patches import Rectangle

    return Rectangle(
        (x - 0.48, y - 0.46), 0.96, 0.92, facecolor=_tint(colour), edgecolor=colour, lw=1.2
    )


# --------------------------------------------------------------------------------------
# 5. Phase breakdown
# --------------------------------------------------------------------------------------


def phase_chart(
    analysis: Analysis, styles: dict[str, StrategyStyle], workload: str
) -> Figure | None:
    """Prepare, E-step, M-step (and full iteration) per strategy and worker count at the
    headline n, plus data moved to/from workers and peak memory where recorded."""
    if workload not in analysis.headline_n:
        return None
    n = analysis.headline_n[workload]
    table = phase_breakdown(analysis.summary, workload, n)
    if table.empty:
        return None
    has_transfer = table[["bytes_to_workers", "bytes_from_workers"]].notna().any().any()
    has_memory = table["peak_pss_bytes"].notna().any()
    panels = 1 + int(has_transfer) + int(has_memory)
    rows = len(table)
    figure = _figure(5.5 + 2.6 * (panels - 1) + 1.8, 1.6 + 0.42 * rows)
    axes = _subplots(figure, 1, panels, sharey=True, width_ratios=[2.2] + [1.0] * (panels - 1))[0]
    labels = [f"{strategy} · {workers}w" for strategy, workers in table.index]
    y = np.arange(rows)
    phases = ("prepare", "e_step", "m_step", "iteration")
    height = 0.8 / len(phases)
    times = axes[0]
    for i, phase in enumerate(phases):
        values = table[phase].to_numpy(dtype=float) * 1e3
        offsets = y - 0.4 + height * (i + 0.5)
        times.barh(
            offsets,
            np.where(np.isfinite(values), values, np.nan),
            height=height,
            color=_PHASE_COLOURS[phase],
            label=_PHASE_LABELS[phase],
        )
    times.set_xscale("log")
    _plain_log_axis(times, "x")
    times.set_yticks(y)
    times.set_yticklabels(labels)
    for tick, (strategy, _workers) in zip(times.get_yticklabels(), table.index, strict=True):
        tick.set_color(styles[strategy].colour if strategy in styles else "black")
    times.invert_yaxis()
    times.set_xlabel("median time (ms, log scale)")
    times.set_title("time per phase (E/M/iteration: per iteration)")
    times.grid(True, axis="x", which="both", alpha=0.2)
    times.grid(False, axis="y")
    axis_index = 1
    if has_transfer:
        transfer = axes[axis_index]
        axis_index += 1
        to = table["bytes_to_workers"].to_numpy(dtype=float) / 1024
        back = table["bytes_from_workers"].to_numpy(dtype=float) / 1024
        transfer.barh(y - 0.2, to, height=0.4, color="#9467bd", label="to workers")
        transfer.barh(y + 0.2, back, height=0.4, color="#17becf", label="from workers")
        transfer.set_xlabel("KiB per iteration")
        transfer.set_title("data moved per iteration")
        transfer.grid(False, axis="y")
        _note_missing(transfer, y, np.isnan(to) & np.isnan(back))
    if has_memory:
        memory = axes[axis_index]
        pss = table["peak_pss_bytes"].to_numpy(dtype=float) / 2**20
        memory.barh(y, pss, height=0.6, color="#8c564b")
        memory.set_xlabel("peak PSS, parent + workers (MiB)")
        memory.set_title("peak memory")
        memory.grid(False, axis="y")
        _note_missing(memory, y, np.isnan(pss))
    handles, labels = times.get_legend_handles_labels()
    if has_transfer:
        more_handles, more_labels = axes[1].get_legend_handles_labels()
        handles, labels = (
            handles + more_handles,
            labels + [f"data {label}" for label in more_labels],
        )
    figure.legend(handles, labels, loc="outside right center", frameon=False, title="bars")
    figure.suptitle(f"Phase breakdown — {_workload_title(analysis, workload, n)}")
    return figure


def _note_missing(axis, y: np.ndarray, missing: np.ndarray) -> None:
    for position in y[missing]:
        axis.text(
            0.02,
            position,
            "not recorded",
            transform=axis.get_yaxis_transform(),
            va="center",
            fontsize=7,
            color="#888888",
        )


# --------------------------------------------------------------------------------------
# 6. Fitted model picture
# --------------------------------------------------------------------------------------


def fitted_model_chart(
    X: np.ndarray, means: np.ndarray, covariances: np.ndarray, labels: np.ndarray, title: str
) -> Figure:
    """Points coloured by their most likely component, with 1- and 2-sigma ellipses.

    Parameters
    ----------
    X : ndarray of float64, shape (n, 2)
    means : ndarray of float64, shape (k, 2)
    covariances : ndarray of float64, shape (k, 2, 2)
    labels : ndarray of int, shape (n,)
        Most likely component of each point.
    title : str

    Returns
    -------
    Figure
    """
    from matplotlib import colormaps

    k = means.shape[0]
    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    colours = np.array([cmap(j % cmap.N) for j in range(k)])
    figure = _figure(8.6, 6.4)
    axis = _subplots(figure, 1, 1)[0, 0]
    # Rasterised points keep the SVG small; ellipses and text stay vector.
    axis.scatter(X[:, 0], X[:, 1], c=colours[labels], s=3, alpha=0.35, lw=0, rasterized=True)
    for j in range(k):
        eigenvalues, eigenvectors = np.linalg.eigh(covariances[j])
        # eigh sorts ascending: the last eigenvector is the major axis.
        angle = math.degrees(math.atan2(eigenvectors[1, 1], eigenvectors[0, 1]))
        edge = tuple(0.6 * c for c in colours[j][:3])  # darker than its points
        for sigmas, style, width in ((1, "-", 1.3), (2, "--", 0.9)):
            major, minor = 2 * sigmas * np.sqrt(np.maximum(eigenvalues[::-1], 0))
            axis.add_patch(
                Ellipse(
                    means[j],
                    major,
                    minor,
                    angle=angle,
                    fill=False,
                    edgecolor=edge,
                    lw=width,
                    ls=style,
                )
            )
    axis.scatter(means[:, 0], means[:, 1], marker="x", color="black", s=22, lw=1.1, zorder=3)
    axis.set_aspect("equal", adjustable="datalim")
    axis.set_xlabel("x₁ (data units)")
    axis.set_ylabel("x₂ (data units)")
    axis.set_title(title)
    handles = [
        Line2D([], [], color="#444444", lw=1.3, label="1σ ellipse"),
        Line2D([], [], color="#444444", lw=0.9, ls="--", label="2σ ellipse"),
        Line2D([], [], color="black", marker="x", ls="", label="component mean"),
        Line2D(
            [],
            [],
            color=colours[0],
            marker="o",
            ls="",
            ms=4,
            label="point, coloured by\nits most likely\ncomponent",
        ),
    ]
    figure.legend(handles=handles, loc="outside right center", frameon=False)
    return figure
