"""The "overhead against work" chart and report section (the micro-problems).

The seed notebook's first lesson, measured: processes pay off only once each task
carries enough work, while threads over nogil code scale almost linearly even on
small tasks. For every parallel micro-strategy (``summarize-*``, ``pairwise-*``) this
module computes, from a run's tidy table,

* the speed-up at 2 workers over the *same strategy* at 1 worker (medians of the
  ``iteration`` phase: one ``run()`` each), and
* the work per task at 2 workers: the problem's work at that n (elements for
  summarize, pair operations for pairwise, :meth:`harness.model.problems.Problem.work`)
  over the tasks a run is split into (one per worker, see
  :func:`strategies.micro.base.task_bounds`),

then finds where each strategy's speed-up first exceeds :data:`PAYS_OFF` (1.0) and
:data:`NEAR_LINEAR` (1.8). A crossing is placed by log-linear interpolation between
the last measured size below the threshold and the first above it (between measured
sizes, not beyond); a strategy above the threshold at its smallest size "already
exceeds" it there.

Each speed-up carries the report's 95% interval (:mod:`harness.report.uncertainty`:
hierarchical bootstrap over processes, widened when a side was measured in one process
only). A crossing's interval is where the interval's upper end first exceeds the
threshold (the earliest the data allow) and where its lower end does (the latest);
when the lower end never does, the crossing is not established beyond the noise at the
sizes measured, and the report says so.

It reads the table only; it may not touch the sweep, the strategies or other charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.model.problems import PROBLEMS, problem_of_workload
from harness.report.draws import bootstrap, draw_key

#: Speed-up at which parallel work starts to pay.
PAYS_OFF = 1.0
#: Speed-up at 2 workers counted as near-linear.
NEAR_LINEAR = 1.8
#: Worker counts compared.
WORKERS = (1, 2)


@dataclass(frozen=True)
class Crossing:
    """Where one strategy's speed-up first exceeds a threshold.

    Attributes
    ----------
    work : float or None
        Work per task at the crossing (None: never exceeded in this run).
    already : bool
        Exceeded at the smallest measured size (``work`` is that size's).
    earliest, latest : float or None
        The crossing's interval: where the speed-up's upper and lower 95% bounds first
        exceed the threshold (None: that bound never does at the sizes measured).
    """

    work: float | None
    already: bool = False
    earliest: float | None = None
    latest: float | None = None


def overhead_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Speed-up at 2 workers over 1 against work per task, one row per strategy and size.

    Returns
    -------
    DataFrame
        Columns ``problem``, ``work_unit``, ``workload``, ``strategy``, ``kind``, ``n``,
        ``work_per_task``, ``seconds_1``, ``seconds_2``, ``speedup``,
        ``speedup_low``, ``speedup_high`` (its 95% interval); sorted by strategy and
        work. Empty when the run has no micro-problem measured at both worker counts.
        Disturbed configurations are left out; ``attrs["left_out"]`` lists their
        ``config_id``.
    """
    columns = [
        "problem",
        "work_unit",
        "workload",
        "strategy",
        "kind",
        "n",
        "work_per_task",
        "seconds_1",
        "seconds_2",
        "speedup",
        "speedup_low",
        "speedup_high",
    ]
    if table.empty or "problem" not in table.columns:
        return pd.DataFrame(columns=columns)
    ok = table[
        (table["status"] == "ok")
        & (table["phase"] == "iteration")
        & (table["problem"] != "gmm")
        & table["problem"].isin(list(PROBLEMS))
        & table["workers"].isin(WORKERS)
    ].copy()
    left_out: list[str] = []
    if "disturbed" in ok.columns:  # no claim rests on a disturbed configuration
        flagged = ok["disturbed"].astype("boolean").fillna(False).astype(bool)
        left_out = sorted(set(ok.loc[flagged, "config_id"].astype(str)))
        ok = ok[~flagged]
    if ok.empty:
        empty = pd.DataFrame(columns=columns)
        empty.attrs["left_out"] = left_out
        return empty
    ok["seconds"] = pd.to_numeric(ok["seconds"], errors="coerce")
    medians = (
        ok.groupby(["problem", "workload", "strategy", "kind", "n", "workers"])["seconds"]
        .median()
        .unstack("workers")
    )
    if not all(w in medians.columns for w in WORKERS):
        return pd.DataFrame(columns=columns)
    medians = medians.dropna(subset=list(WORKERS)).reset_index()
    draws = bootstrap(ok)  # the report's own interval over processes

    rows = []
    for _, record in medians.iterrows():
        problem = problem_of_workload(str(record["workload"]))
        n = int(record["n"])
        tasks = max(1, min(WORKERS[1], n))
        s1, s2 = float(record[WORKERS[0]]), float(record[WORKERS[1]])
        low, high = draws.ratio(
            draw_key(record["workload"], n, record["strategy"], WORKERS[0], "iteration"),
            draw_key(record["workload"], n, record["strategy"], WORKERS[1], "iteration"),
        )
        rows.append(
            {
                "problem": problem.name,
                "work_unit": problem.work_unit,
                "workload": record["workload"],
                "strategy": record["strategy"],
                "kind": record["kind"],
                "n": n,
                "work_per_task": problem.work(n) / tasks,
                "seconds_1": s1,
                "seconds_2": s2,
                "speedup": s1 / s2 if s2 > 0 else math.nan,
                "speedup_low": low,
                "speedup_high": high,
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.sort_values(["problem", "strategy", "work_per_task"]).reset_index(drop=True)
    frame.attrs["left_out"] = left_out
    return frame


def _first_above(work: np.ndarray, speedup: np.ndarray, threshold: float) -> Crossing:
    above = np.flatnonzero(speedup > threshold)
    if above.size == 0:
        return Crossing(None)
    first = int(above[0])
    if first == 0:
        return Crossing(float(work[0]), already=True)
    w0, w1 = math.log10(work[first - 1]), math.log10(work[first])
    s0, s1 = speedup[first - 1], speedup[first]
    fraction = (threshold - s0) / (s1 - s0) if s1 != s0 else 1.0
    return Crossing(10 ** (w0 + fraction * (w1 - w0)))


def crossing(points: pd.DataFrame, threshold: float) -> Crossing:
    """Where the speed-up (rows sorted by work) first exceeds ``threshold``, with the
    interval given by the speed-up's bounds (columns ``speedup_low``/``speedup_high``,
    when present)."""
    work = points["work_per_task"].to_numpy(dtype=float)
    found = _first_above(work, points["speedup"].to_numpy(dtype=float), threshold)
    bounds = {}
    for column in ("speedup_high", "speedup_low"):
        if column in points.columns:
            values = points[column].to_numpy(dtype=float)
            bounds[column] = _first_above(work, np.nan_to_num(values, nan=-np.inf), threshold)
    earliest, latest = bounds.get("speedup_high"), bounds.get("speedup_low")
    return Crossing(
        found.work,
        found.already,
        earliest.work if earliest else None,
        latest.work if latest else None,
    )


def crossings(frame: pd.DataFrame) -> dict[tuple[str, str], dict[float, Crossing]]:
    """``{(problem, strategy): {PAYS_OFF: Crossing, NEAR_LINEAR: Crossing}}``."""
    found = {}
    for (problem, strategy), points in frame.groupby(["problem", "strategy"], sort=True):
        ordered = points.sort_values("work_per_task")
        found[(problem, strategy)] = {
            threshold: crossing(ordered, threshold) for threshold in (PAYS_OFF, NEAR_LINEAR)
        }
    return found


def overhead_chart(frame: pd.DataFrame, styles: dict) -> object | None:
    """One panel per problem: speed-up against work per task (log x), one line per
    strategy with its 95% interval as error bars, hollow marks where it first exceeds
    1.0 and filled stars at 1.8, each with the crossing's interval as a band along the
    threshold line.

    Returns
    -------
    matplotlib Figure, or None when there is nothing to draw.
    """
    if frame.empty:
        return None
    from harness.report import charts

    problems = list(dict.fromkeys(frame["problem"]))
    found = crossings(frame)
    figure = charts._figure(5.0 * len(problems), 3.8)
    axes = figure.subplots(1, len(problems), squeeze=False)[0]
    for axis, problem in zip(axes, problems, strict=True):
        part = frame[frame["problem"] == problem]
        for strategy, points in part.groupby("strategy", sort=False):
            style = styles.get(strategy)
            colour = style.colour if style else None
            marker = style.marker if style else "o"
            lines = axis.plot(
                points["work_per_task"],
                points["speedup"],
                marker=marker,
                color=colour,
                label=strategy,
                linewidth=1.2,
                markersize=4,
            )
            colour = colour or lines[0].get_color()
            if {"speedup_low", "speedup_high"} <= set(points.columns):
                speedup = points["speedup"].to_numpy(dtype=float)
                below = np.clip(speedup - points["speedup_low"].to_numpy(dtype=float), 0, None)
                above = np.clip(points["speedup_high"].to_numpy(dtype=float) - speedup, 0, None)
                axis.errorbar(
                    points["work_per_task"],
                    speedup,
                    yerr=np.nan_to_num(np.vstack([below, above])),
                    fmt="none",
                    ecolor=colour,
                    elinewidth=0.8,
                    capsize=2,
                )
            for threshold, symbol in ((PAYS_OFF, "o"), (NEAR_LINEAR, "*")):
                where = found[(problem, strategy)][threshold]
                if where.work is None:
                    continue
                if where.earliest is not None:  # the crossing's interval, along the line
                    axis.plot(
                        [where.earliest, where.latest or points["work_per_task"].max()],
                        [threshold, threshold],
                        color=colour,
                        linewidth=3,
                        alpha=0.35,
                        solid_capstyle="butt",
                    )
                axis.plot(
                    [where.work],
                    [threshold],
                    marker=symbol,
                    markersize=10 if symbol == "*" else 8,
                    markerfacecolor="none" if symbol == "o" else colour,
                    markeredgecolor=colour,
                    linestyle="none",
                )
        for threshold in (PAYS_OFF, NEAR_LINEAR):
            axis.axhline(threshold, color="#555555", linewidth=0.8, linestyle="--")
        axis.axhline(2.0, color="#999999", linewidth=0.6, linestyle=":")
        axis.set_xscale("log")
        # Ratios: a log axis shows 0.1x as far below 1 as 10x is above it.
        axis.set_yscale("log", base=2)
        axis.set_xlabel(f"work per task ({part['work_unit'].iloc[0]}, 2 workers)")
        axis.set_ylabel("speed-up, 2 workers over 1 (same strategy)")
        axis.set_title(f"{problem}: overhead against work")
        axis.legend(loc="upper left", frameon=False)
    return figure


def _fmt_work(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    exponent = math.log10(value)
    return f"{value:,.0f} (10^{exponent:.1f})"


def _describe(where: Crossing, unit: str) -> str:
    if where.work is None:
        if where.earliest is not None:
            return f"not beyond the noise (possible from {_fmt_work(where.earliest)} {unit})"
        return "never in this run"
    text = f"{_fmt_work(where.work)} {unit}"
    text = f"already at {text}" if where.already else f"from about {text}"
    if where.latest is None:
        return f"{text} (95% CI: not established beyond the noise at the sizes measured)"
    if where.earliest is not None and not where.already:
        return f"{text} (95% CI {_fmt_work(where.earliest)} to {_fmt_work(where.latest)})"
    return text


def overhead_section(frame: pd.DataFrame, image: str) -> str:
    """The report section: the chart, a table of crossings, and what they say.

    Parameters
    ----------
    frame : DataFrame
        From :func:`overhead_frame`.
    image : str
        The markdown that embeds the chart (or says why there is none).
    """
    left_out = frame.attrs.get("left_out", [])
    note = (
        f"{len(left_out)} disturbed micro-problem configuration(s) are left out of this "
        "section (see *Disturbed configurations*)."
        if left_out
        else ""
    )
    if frame.empty:
        return f"## Overhead against work (micro-problems)\n\n{note}\n" if note else ""
    found = crossings(frame)
    lines = [
        "## Overhead against work (micro-problems)",
        "",
        "Speed-up at 2 workers over the same strategy at 1 worker, against the work each "
        "task carries (one task per worker). Hollow circles: where the speed-up first "
        f"exceeds {PAYS_OFF:g} (parallel work starts to pay); stars: where it first "
        f"exceeds {NEAR_LINEAR:g} (near-linear). Crossings are interpolated between "
        "measured sizes. Error bars and the crossings' intervals are 95% bootstrap "
        "intervals over processes; a crossing whose lower bound never exceeds the "
        "threshold is not established beyond the noise.",
        "",
        image,
        "",
        "| problem | strategy | kind | exceeds 1.0 | exceeds 1.8 | speed-up at the largest size |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (problem, strategy), marks in found.items():
        points = frame[(frame["problem"] == problem) & (frame["strategy"] == strategy)]
        unit = points["work_unit"].iloc[0]
        largest = points.sort_values("work_per_task").iloc[-1]
        lines.append(
            f"| {problem} | `{strategy}` | {points['kind'].iloc[0]} | "
            f"{_describe(marks[PAYS_OFF], unit)} | {_describe(marks[NEAR_LINEAR], unit)} | "
            f"{_fmt_speedup(largest)} at {_fmt_work(largest['work_per_task'])} |"
        )
    lines += ["", *_claims(frame, found), "", *([note, ""] if note else [])]
    return "\n".join(lines)


def _fmt_speedup(point: pd.Series) -> str:
    low, high = point.get("speedup_low", math.nan), point.get("speedup_high", math.nan)
    if math.isfinite(low) and math.isfinite(high):
        return f"{point['speedup']:.2f}x (95% CI {low:.2f}–{high:.2f})"
    return f"{point['speedup']:.2f}x"


def _claims(frame: pd.DataFrame, found: dict) -> list[str]:
    """The seed's two claims, stated from this run's data."""
    sentences = []
    for problem in dict.fromkeys(frame["problem"]):
        part = frame[frame["problem"] == problem]
        unit = part["work_unit"].iloc[0]
        for kinds, label, threshold in (
            (("processes",), "Processes", PAYS_OFF),
            (("threads", "openmp"), "Threads and OpenMP over nogil code", NEAR_LINEAR),
        ):
            names = sorted(set(part.loc[part["kind"].isin(kinds), "strategy"]))
            if not names:
                continue
            verb = "pay off (speed-up > 1.0)" if threshold == PAYS_OFF else "reach near-linear"
            verb += "" if threshold == PAYS_OFF else " speed-up (> 1.8)"
            parts = [
                f"`{name}` {_describe(found[(problem, name)][threshold], unit)}" for name in names
            ]
            sentences.append(f"- **{problem}**: {label} {verb}: {'; '.join(parts)}.")
    return sentences


__all__ = [
    "NEAR_LINEAR",
    "PAYS_OFF",
    "Crossing",
    "crossing",
    "crossings",
    "overhead_chart",
    "overhead_frame",
    "overhead_section",
]
