"""Charts of one workload at a time: the best-strategy map, the phase breakdown and the
fitted-model picture (drawn with :mod:`harness.report.chart_kit`'s helpers).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch

from harness.report.analysis import (
    Analysis,
    best_label,
    phase_breakdown,
)
from harness.report.chart_kit import (
    _PHASE_COLOURS,
    _PHASE_LABELS,
    DISTURBED_COLOUR,
    TIE_COLOUR,
    StrategyStyle,
    _figure,
    _plain_log_axis,
    _subplots,
    _workload_title,
)
from harness.report.text import fmt_n
from harness.report.uncertainty import CONFIDENCE

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
            tie = bool(row["tied"])
            # A tie names no winner: a neutral cell listing the tied strategies.
            axis.add_patch(_cell(x, y, TIE_COLOUR if tie else style.colour))
            if tie:
                label = best_label(row).replace(" ≈ ", " ≈\n")
            else:
                label = row["best"].replace("-", "-\n", 1) if len(row["best"]) > 12 else row["best"]
            if row["best_workers"] != row["workers"]:
                label += f" ({row['best_workers']}w)"
            interval = (
                f" [{row['margin_low']:.2f}–{row['margin_high']:.2f}]"
                if pd.notna(row["margin_low"]) and pd.notna(row["margin_high"])
                else ""
            )
            if pd.isna(row["margin"]):
                margin = "only candidate"
            elif tie:
                margin = f"tie: ×{row['margin']:.2f}{interval}"
            else:
                margin = f"×{row['margin']:.2f}{interval}\nvs {row['runner_up']}"
            axis.text(x, y + 0.08, label, ha="center", va="center", fontsize=8, fontweight="bold")
            axis.text(x, y - 0.26, margin, ha="center", va="center", fontsize=6.5, color="#333333")
            if not tie:
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
    if any(bool(t) for t in best["tied"]):
        patches.append(
            Patch(
                facecolor=_tint(TIE_COLOUR),
                edgecolor=TIE_COLOUR,
                label="tie (a ≈ b):\nwithin noise",
            )
        )
    figure.legend(
        handles=patches,
        loc="outside right center",
        frameon=False,
        title="winner\n(workers = budget: each\nstrategy competes with its\nfastest time on at "
        'most\nthat many workers; "(1w)"\nmarks a winner that was\nfastest with fewer)',
    )
    figure.suptitle(
        "Fastest strategy per (n, worker budget), margin over the runner-up\n"
        f"[{CONFIDENCE:.0%} interval]; ties in grey; disturbed configurations do not compete"
    )
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
    disturbed = table["disturbed"].astype(bool).to_numpy()
    labels = [
        f"{strategy} · {workers}w" + (" (disturbed)" if bad else "")
        for (strategy, workers), bad in zip(table.index, disturbed, strict=True)
    ]
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
    ticks = zip(times.get_yticklabels(), table.index, disturbed, strict=True)
    for tick, (strategy, _workers), bad in ticks:
        colour = styles[strategy].colour if strategy in styles else "black"
        tick.set_color(DISTURBED_COLOUR if bad else colour)
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
