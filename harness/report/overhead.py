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
exceeds" it there. Speed-ups are ratios of medians, without a confidence interval.

It reads the table only; it may not touch the sweep, the strategies or other charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.model.problems import PROBLEMS, problem_of_workload

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
    """

    work: float | None
    already: bool = False


def overhead_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Speed-up at 2 workers over 1 against work per task, one row per strategy and size.

    Returns
    -------
    DataFrame
        Columns ``problem``, ``work_unit``, ``workload``, ``strategy``, ``kind``, ``n``,
        ``work_per_task``, ``seconds_1``, ``seconds_2``, ``speedup``; sorted by
        strategy and work. Empty when the run has no micro-problem measured at both
        worker counts.
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
    if ok.empty:
        return pd.DataFrame(columns=columns)
    ok["seconds"] = pd.to_numeric(ok["seconds"], errors="coerce")
    medians = (
        ok.groupby(["problem", "workload", "strategy", "kind", "n", "workers"])["seconds"]
        .median()
        .unstack("workers")
    )
    if not all(w in medians.columns for w in WORKERS):
        return pd.DataFrame(columns=columns)
    medians = medians.dropna(subset=list(WORKERS)).reset_index()
    rows = []
    for _, record in medians.iterrows():
        problem = problem_of_workload(str(record["workload"]))
        n = int(record["n"])
        tasks = max(1, min(WORKERS[1], n))
        s1, s2 = float(record[WORKERS[0]]), float(record[WORKERS[1]])
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
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["problem", "strategy", "work_per_task"]).reset_index(drop=True)


def crossing(points: pd.DataFrame, threshold: float) -> Crossing:
    """Where the speed-up (rows sorted by work) first exceeds ``threshold``."""
    work = points["work_per_task"].to_numpy(dtype=float)
    speedup = points["speedup"].to_numpy(dtype=float)
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
    strategy, hollow marks where it first exceeds 1.0 and filled stars at 1.8.

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
            axis.plot(
                points["work_per_task"],
                points["speedup"],
                marker=marker,
                color=colour,
                label=strategy,
                linewidth=1.2,
                markersize=4,
            )
            for threshold, symbol in ((PAYS_OFF, "o"), (NEAR_LINEAR, "*")):
                where = found[(problem, strategy)][threshold]
                if where.work is None:
                    continue
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
        return "never in this run"
    text = f"{_fmt_work(where.work)} {unit}"
    return f"already at {text}" if where.already else f"from about {text}"


def overhead_section(frame: pd.DataFrame, image: str) -> str:
    """The report section: the chart, a table of crossings, and what they say.

    Parameters
    ----------
    frame : DataFrame
        From :func:`overhead_frame`.
    image : str
        The markdown that embeds the chart (or says why there is none).
    """
    if frame.empty:
        return ""
    found = crossings(frame)
    lines = [
        "## Overhead against work (micro-problems)",
        "",
        "Speed-up at 2 workers over the same strategy at 1 worker, against the work each "
        "task carries (one task per worker). Hollow circles: where the speed-up first "
        f"exceeds {PAYS_OFF:g} (parallel work starts to pay); stars: where it first "
        f"exceeds {NEAR_LINEAR:g} (near-linear). Crossings are interpolated between "
        "measured sizes; speed-ups are ratios of medians, without confidence intervals.",
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
            f"{largest['speedup']:.2f}x at {_fmt_work(largest['work_per_task'])} |"
        )
    lines += ["", *_claims(frame, found), ""]
    return "\n".join(lines)


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
