"""What every chart of a run shares: styles per strategy, figure set-up, axes helpers,
and the marks for intervals, oversubscribed and disturbed points.

Used by :mod:`harness.report.charts` and :mod:`harness.report.chart_maps`; draws no chart
of its own.
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
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    NullFormatter,
)

from harness.report.analysis import (
    Analysis,
)
from harness.report.text import fmt_n

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
            # The layout is solved by the first save; later formats keep it rather than
            # solve it again (the solver is most of a chart's drawing time).
            figure.set_layout_engine("none")
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


def _rings(axis, x, y, mask, colour: str, marker: str, size: float, width: float, z: int) -> None:
    """Hollow markers over the points of ``x, y`` where ``mask`` is true."""
    if mask.any():
        axis.scatter(
            x[mask],
            y[mask],
            s=size,
            facecolors="white",
            edgecolors=colour,
            marker=marker,
            zorder=z,
            linewidths=width,
        )


def _mark_oversubscribed(
    axis, x: np.ndarray, y: np.ndarray, over: np.ndarray, colour: str, marker: str
) -> None:
    """Hollow markers on points measured with more workers than cores."""
    _rings(axis, x, y, over, colour, marker, size=70, width=1.5, z=4)


#: Cell colour of a tie in the best-strategy map.
TIE_COLOUR = "#b0b0b0"
#: Colour of configurations the sweep left disturbed.
DISTURBED_COLOUR = "#9a9a9a"


def _mark_disturbed(axis, x: np.ndarray, y: np.ndarray, disturbed: np.ndarray) -> None:
    """Hollow grey rings over points that rest on a disturbed configuration."""
    _rings(axis, x, y, disturbed, DISTURBED_COLOUR, "o", size=90, width=1.8, z=5)


def _disturbed_handle() -> Line2D:
    return Line2D(
        [],
        [],
        color=DISTURBED_COLOUR,
        marker="o",
        mfc="white",
        ls="",
        label="disturbed: no verdict\nrests on it",
    )


def _error_bars(axis, x, y, low, high, colour: str) -> None:
    """Vertical bars of an interval around ``y`` (NaN bounds draw nothing)."""
    y, low, high = (np.asarray(v, dtype=float) for v in (y, low, high))
    known = np.isfinite(low) & np.isfinite(high)
    if known.any():
        axis.errorbar(
            np.asarray(x, dtype=float)[known],
            y[known],
            yerr=[np.maximum(y - low, 0)[known], np.maximum(high - y, 0)[known]],
            fmt="none",
            ecolor=colour,
            elinewidth=1.0,
            capsize=2.5,
            alpha=0.8,
            zorder=2,
        )


def _interval_and_flags(axis, frame, x: str, y: str, colour: str) -> np.ndarray:
    """Error bars of column ``y`` (its interval in ``<y>_low``, ``<y>_high``) against
    column ``x`` of ``frame``, and rings on the points resting on a disturbed
    configuration; returns that disturbed mask."""
    xs, ys = frame[x].to_numpy(dtype=float), frame[y].to_numpy(dtype=float)
    disturbed = frame["rests_on_disturbed"].to_numpy(dtype=bool)
    _error_bars(axis, xs, ys, frame[f"{y}_low"], frame[f"{y}_high"], colour)
    _mark_disturbed(axis, xs, ys, disturbed)
    return disturbed
