"""Findings about workers: each parallel strategy against the fastest 1-worker strategy
across n (wins, losses, crossovers, and why it loses), and scaling with workers at the
headline size (speedup, efficiency, serial fraction, Amdahl extrapolation, slowdowns).

Part of :mod:`harness.report.findings`, which states the rules these follow. No I/O.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.report import uncertainty as unc
from harness.report.analysis import MODEL_CORES, NO_SCALING_BELOW, Analysis
from harness.report.record import Finding, clean_rows, fair_max_workers, iteration_key
from harness.report.text import (
    code,
    fmt_bytes,
    fmt_fraction,
    fmt_ms,
    fmt_n,
    fmt_ratio_ci,
    fmt_times,
    round_significant,
    workers_text,
)
from harness.sweep.results import config_id

# --------------------------------------------------------------------------------------
# Parallel strategies against the fastest 1-worker strategy, across n
# --------------------------------------------------------------------------------------


def versus_best_1w_findings(analysis: Analysis, workload: str) -> list[Finding]:
    scal = analysis.scaling[analysis.scaling["workload"] == workload]
    p_max = fair_max_workers(scal)
    if p_max < 2:
        return []
    out = []
    parallel = clean_rows(scal[~scal["sequential"].astype(bool) & (scal["workers"] == p_max)])
    for strategy, group in parallel.groupby("strategy", sort=True):
        group = group.sort_values("n")
        group = group[
            np.isfinite(group["speedup_best_1w"].astype(float))
            & (group["best_1w_strategy"] != strategy)
        ]
        if group.empty:
            continue
        ns = group["n"].to_numpy()
        ratio = group["speedup_best_1w"].to_numpy(dtype=float)
        low = group["speedup_best_1w_low"].to_numpy(dtype=float)
        high = group["speedup_best_1w_high"].to_numpy(dtype=float)
        verdicts = [unc.verdict(lo, hi) for lo, hi in zip(low, high, strict=True)]
        who = f"{code(strategy)} ({workers_text(p_max)})"
        rival = " / ".join(code(r) for r in sorted(set(group["best_1w_strategy"])))
        configurations = [config_id(workload, v, strategy, p_max) for v in ns] + [
            config_id(workload, v, r, 1) for v, r in zip(ns, group["best_1w_strategy"], strict=True)
        ]

        def at(i: int, ratio=ratio, low=low, high=high, ns=ns) -> str:
            return f"{fmt_ratio_ci(ratio[i], low[i], high[i])} at n = {fmt_n(ns[i])}"

        wins = [i for i, v in enumerate(verdicts) if v == "above"]
        losses = [i for i, v in enumerate(verdicts) if v == "below"]
        ties = [i for i, v in enumerate(verdicts) if v == "tie"]
        base = dict(workload=workload, workers=p_max, configurations=configurations)
        if not wins and not losses:
            text = (
                f"**{workload}**: {who} is within the noise of the fastest 1-worker strategy "
                f"({rival}) at every measured n (" + "; ".join(at(i) for i in ties) + ")."
            )
            out.append(
                Finding(
                    "tie",
                    text,
                    n=int(ns[-1]),
                    strategies=[strategy, *sorted(set(group["best_1w_strategy"]))],
                    ratio=ratio[-1],
                    ci_low=low[-1],
                    ci_high=high[-1],
                    **base,
                )
            )
            continue
        if wins and not losses:
            kind = "beats_best_1w"
            text = (
                f"**{workload}**: {who} beats the fastest 1-worker strategy ({rival}) at "
                f"n = {', '.join(fmt_n(ns[i]) for i in wins)} ("
                + "; ".join(at(i) for i in wins)
                + ")"
                + (f"; within noise at n = {', '.join(fmt_n(ns[i]) for i in ties)}" if ties else "")
                + "."
            )
            focus = wins[-1]
        elif losses and not wins:
            kind = "loses_to_best_1w"
            text = (
                f"**{workload}**: {who} never beats the fastest 1-worker strategy ({rival}) "
                f"at the measured n; it is slower at n = "
                + ", ".join(fmt_n(ns[i]) for i in losses)
                + " ("
                + "; ".join(at(i) for i in losses)
                + ")"
            )
            focus = losses[-1]
        elif max(losses) < min(wins):
            kind = "crossover"
            text = (
                f"**{workload}**: {who} loses to the fastest 1-worker strategy ({rival}) up to "
                f"n = {fmt_n(ns[max(losses)])} ({at(max(losses))}) and wins from "
                f"n = {fmt_n(ns[min(wins)])} on ({at(wins[-1])})"
            )
            if min(wins) - max(losses) > 1:
                text += ", within noise in between"
            focus = max(losses)
        else:
            kind = "mixed_versus_best_1w"
            text = (
                f"**{workload}**: {who} against the fastest 1-worker strategy ({rival}) wins "
                f"at n = {', '.join(fmt_n(ns[i]) for i in wins)} and loses at n = "
                f"{', '.join(fmt_n(ns[i]) for i in losses)}, with no single crossover"
            )
            focus = losses[-1]
        if losses:
            text += _overhead_reason(analysis, workload, strategy, p_max, group, int(ns[focus]))
        out.append(
            Finding(
                kind,
                text,
                n=int(ns[focus]),
                strategies=[strategy, *sorted(set(group["best_1w_strategy"]))],
                ratio=ratio[focus],
                ci_low=low[focus],
                ci_high=high[focus],
                **base,
            )
        )
    return out


def _fit_line(analysis: Analysis, workload: str, strategy: str, workers: int, ns: np.ndarray):
    """``seconds = a + b n`` fitted to medians, with intervals from the bootstrap draws.

    Relative least squares (weights ``1 / median``), solved in closed form so the same
    linear map applies to every draw at once.

    Returns
    -------
    dict or None
        ``a, b`` and their intervals ``a_low, a_high, b_low, b_high``; ``None`` with
        fewer than two sizes or a size without draws.
    """
    ns = np.asarray(sorted(set(int(v) for v in ns)))
    keys = [iteration_key(workload, v, strategy, workers) for v in ns]
    if len(ns) < 2 or any(key not in analysis.draws.medians for key in keys):
        return None
    draws = np.vstack([analysis.draws.medians[key] for key in keys])  # (sizes, B)
    medians = np.array([analysis.draws.point[key] for key in keys], dtype=float)
    if not np.all(medians > 0):
        return None
    weights = (1.0 / medians) ** 2
    design = np.column_stack([np.ones(len(ns)), ns.astype(float)])
    normal = design.T @ (weights[:, None] * design)
    solve = np.linalg.solve(normal, (design * weights[:, None]).T)  # (2, sizes)
    a, b = solve @ medians
    a_draws, b_draws = solve @ draws
    single = any(analysis.draws.single[key] for key in keys)
    widen = unc.allowance_factor(int(single))
    tails = [(1 - unc.CONFIDENCE) / 2, (1 + unc.CONFIDENCE) / 2]
    a_low, a_high = np.quantile(a_draws, tails)
    b_low, b_high = np.quantile(b_draws, tails)
    # the allowance scales every time alike, so it scales the fitted costs alike
    return dict(
        a=float(a),
        b=float(b),
        a_low=float(min(a_low / widen, a_low * widen)),
        a_high=float(max(a_high * widen, a_high / widen)),
        b_low=float(min(b_low / widen, b_low * widen)),
        b_high=float(max(b_high * widen, b_high / widen)),
    )


def _overhead_reason(
    analysis: Analysis,
    workload: str,
    strategy: str,
    workers: int,
    group: pd.DataFrame,
    losing_n: int,
) -> str:
    """Why a parallel strategy loses at ``losing_n``, from its own numbers.

    Each candidate reason is stated only when the intervals support it: a cost per point
    above the rival's; a fixed cost per iteration (the intercept of a straight-line fit
    of time against n) above the rival's and a visible part of the time that lost, with
    the n at which a lower cost per point repays it; the bytes moved to and from
    workers. A fitted cost whose interval reaches zero or below is never printed. A
    prepare step longer than one of the rival's iterations is a separate sentence.

    Returns
    -------
    str
        ``", because ...."`` (or just ``"."``) plus the optional prepare sentence.
    """
    reasons = []
    scal = analysis.scaling
    rival = group.loc[group["n"] == losing_n, "best_1w_strategy"].iloc[0]
    rival_rows = scal[
        (scal["workload"] == workload) & (scal["strategy"] == rival) & (scal["workers"] == 1)
    ]
    line = _fit_line(analysis, workload, strategy, workers, group["n"].to_numpy())
    rival_line = _fit_line(analysis, workload, rival, 1, rival_rows["n"].to_numpy())
    slopes_known = (
        line is not None
        and rival_line is not None
        and line["b_low"] > 0
        and rival_line["b_low"] > 0
    )
    if slopes_known and line["b_low"] > rival_line["b_high"]:
        reasons.append(
            f"even with {workers_text(workers)} its cost per point "
            f"({line['b'] * 1e9:.3g} ns) is above {code(rival)}'s "
            f"({rival_line['b'] * 1e9:.3g} ns)"
        )
    own_time = group.loc[group["n"] == losing_n, "seconds"].iloc[0]
    rival_fixed = rival_line["a"] if rival_line is not None and rival_line["a_low"] > 0 else 0.0
    rival_fixed_high = max(rival_line["a_high"], 0.0) if rival_line is not None else 0.0
    if (
        line is not None
        and line["a_low"] > 0
        and line["a_low"] > rival_fixed_high
        and line["a"] - rival_fixed >= 0.1 * own_time
    ):
        text = (
            f"each iteration carries a fixed cost of about {fmt_ms(line['a'])} (intercept "
            "of a straight-line fit of its time against n"
        )
        if rival_line is not None:
            text += (
                f"; {fmt_ms(rival_fixed)} for {code(rival)}"
                if rival_fixed > 0
                else f"; none beyond the noise for {code(rival)}"
            )
        text += ")"
        if slopes_known and line["b_high"] < rival_line["b_low"]:
            break_even = (line["a"] - rival_fixed) / (rival_line["b"] - line["b"])
            text += (
                f" that its lower cost per point ({line['b'] * 1e9:.3g} ns against "
                f"{rival_line['b'] * 1e9:.3g} ns) repays only above n ≈ "
                f"{fmt_n(round_significant(break_even, 2))}"
            )
        reasons.append(text)
    summary = analysis.summary
    config = summary[
        (summary["workload"] == workload)
        & (summary["strategy"] == strategy)
        & (summary["workers"] == workers)
        & (summary["n"] == losing_n)
    ]
    moved = config[["bytes_to_workers", "bytes_from_workers"]].max()
    if moved.notna().any() and moved.fillna(0).sum() > 0:
        reasons.append(
            f"it moves {fmt_bytes(moved.fillna(0).sum())} to and from its workers "
            f"per iteration at n = {fmt_n(losing_n)}"
        )
    text = ""
    if reasons:
        if len(reasons) > 1:
            reasons[-1] = "and " + reasons[-1]
        text = ", because " + "; ".join(reasons)
    text += "."
    prepare = config[config["phase"] == "prepare"]
    rival_time = rival_rows[rival_rows["n"] == losing_n]
    # A one-off cost is not why an iteration is slower, but it adds to the bill.
    if (
        not prepare.empty
        and not rival_time.empty
        and prepare["ci_low"].iloc[0] > rival_time["ci_high"].iloc[0]
    ):
        cost = prepare["median"].iloc[0]
        text += (
            f" On top of that, its prepare step (once per data set) costs "
            f"{fmt_ms(cost)} at n = {fmt_n(losing_n)}, as much as "
            f"{cost / rival_time['seconds'].iloc[0]:.3g} {code(rival)} iterations."
        )
    return text


# --------------------------------------------------------------------------------------
# Scaling with workers at the headline size
# --------------------------------------------------------------------------------------


def _pool_note(row: pd.Series) -> str:
    """Say so when a speedup over one worker compares a pool with no pool."""
    if bool(row.get("inline_1w", False)):
        return (
            f" At 1 worker {code(str(row.name))} runs inline, with no pool, so this "
            "speedup compares a pool with no pool, not the pool's own scaling."
        )
    return ""


def _efficiency_text(row: pd.Series) -> str:
    value, low = row["efficiency"], row["efficiency_low"]
    if value > 1 and not (math.isfinite(low) and low > 1):
        return "efficiency about 100%, within noise"
    if value > 1:
        return f"efficiency {value:.0%}: superlinear beyond the noise"
    return f"efficiency {value:.0%}"


def _karp_flatt_text(row: pd.Series) -> str:
    value, low, high = row["karp_flatt"], row["karp_flatt_low"], row["karp_flatt_high"]
    if not math.isfinite(value):
        return "no Karp-Flatt serial fraction"
    if value > 1 and not (math.isfinite(low) and low > 1):
        return "Karp-Flatt serial fraction 1 within noise"
    if value < 0:
        if math.isfinite(high) and high < 0:
            return "a negative Karp-Flatt serial fraction: superlinear (cache effects)"
        return "Karp-Flatt serial fraction 0 within noise"
    return f"Karp-Flatt serial fraction {fmt_fraction(value)}"


def scaling_findings(analysis: Analysis, workload: str) -> list[Finding]:
    n = analysis.headline_n[workload]
    fits = analysis.amdahl[(analysis.amdahl["workload"] == workload) & (analysis.amdahl["n"] == n)]
    scal = analysis.scaling
    here = clean_rows(
        scal[
            (scal["workload"] == workload)
            & (scal["n"] == n)
            & ~scal["sequential"].astype(bool)
            & (scal["workers"] > 1)
            & ~scal["oversubscribed"].astype(bool)
        ]
    )
    if here.empty:
        return []
    out = []
    p_top = int(here["workers"].max())
    top = here[here["workers"] == p_top].dropna(subset=["speedup_self"]).set_index("strategy")
    if top.empty:
        return []
    fit = fits.set_index("strategy") if not fits.empty else pd.DataFrame()
    best_name = top["speedup_self"].idxmax()
    best = top.loc[best_name]

    def ids(name: str) -> list[str]:
        return [config_id(workload, n, name, 1), config_id(workload, n, name, p_top)]

    if best["speedup_self_low"] > 1 and best_name in fit.index:
        model = fit.loc[best_name]
        speedup = fmt_ratio_ci(
            best["speedup_self"], best["speedup_self_low"], best["speedup_self_high"]
        )
        text = (
            f"**{workload}**: {code(best_name)} scales best at n = {fmt_n(n)}: {speedup} "
            f"from 1 to {p_top} workers ({_efficiency_text(best)}, "
            f"{_karp_flatt_text(best)}).{_pool_note(best)} "
        )
        shown = [p for p in MODEL_CORES if bool(model[f"model_{p}_shown"])]
        dropped = [p for p in MODEL_CORES if p not in shown]
        if shown:
            text += (
                "Amdahl's law with the fitted serial fraction predicts "
                + ", ".join(
                    f"{fmt_times(model[f'model_{p}'])} on {p} "
                    f"({model[f'model_{p}_low']:.2g}–{fmt_times(model[f'model_{p}_high'])})"
                    for p in shown
                )
                + " cores (a model, with the band propagated from the speedup's interval)"
            )
            if dropped:
                text += (
                    f"; beyond {max(shown)} cores the band is wider than the prediction, "
                    "so none is given"
                )
        else:
            text += (
                "No Amdahl extrapolation is given: propagated from the speedup's interval, "
                "its band is wider than the predicted values at every core count"
            )
        text += f" (this machine has {analysis.usable_cores or p_top} cores)."
        out.append(
            Finding(
                "scaling",
                text,
                workload,
                n,
                p_top,
                [best_name],
                best["speedup_self"],
                best["speedup_self_low"],
                best["speedup_self_high"],
                ids(best_name),
            )
        )
    for name, row in top.sort_values("speedup_self").iterrows():
        value, low, high = row["speedup_self"], row["speedup_self_low"], row["speedup_self_high"]
        if math.isfinite(high) and high < 1:
            kind = "slower_with_more_workers"
            text = (
                f"**{workload}**: at n = {fmt_n(n)}, {code(name)} is slower with "
                f"{p_top} workers than with 1 (speedup {fmt_ratio_ci(value, low, high)}): "
                "coordinating the extra worker costs more than the share of work it "
                "takes over."
            )
        elif not (math.isfinite(low) and low > 1) or high < NO_SCALING_BELOW:
            gain = (
                "gets no gain beyond the noise"
                if not (math.isfinite(low) and low > 1)
                else f"gains less than {NO_SCALING_BELOW:.1f}×"
            )
            kind = "no_gain"
            text = (
                f"**{workload}**: at n = {fmt_n(n)}, {code(name)} {gain} from "
                f"{p_top} workers (speedup {fmt_ratio_ci(value, low, high)})."
            )
        else:
            continue
        text += _pool_note(row)
        out.append(Finding(kind, text, workload, n, p_top, [name], value, low, high, ids(name)))
    trend = clean_rows(
        scal[
            (scal["workload"] == workload)
            & (scal["strategy"] == best_name)
            & (scal["workers"] == p_top)
        ]
    ).dropna(subset=["karp_flatt"])
    trend = trend.sort_values("n")
    if len(trend) >= 2:
        first, last = trend.iloc[0], trend.iloc[-1]
        apart = (
            first["karp_flatt_low"] > last["karp_flatt_high"]
            or last["karp_flatt_low"] > first["karp_flatt_high"]
        )
        positive = first["karp_flatt_low"] > 0 and last["karp_flatt_low"] > 0
        positive &= first["karp_flatt"] <= 1 and last["karp_flatt"] <= 1
        if apart and positive:
            a, b = first["karp_flatt"], last["karp_flatt"]
            direction = "falls" if b < a else "rises"
            why = (
                "the parallel overhead is roughly fixed while the work grows with n"
                if b < a
                else "a part of the work that does not split grows with n"
            )
            out.append(
                Finding(
                    "serial_fraction_trend",
                    f"**{workload}**: {code(best_name)}'s serial fraction {direction} from "
                    f"{fmt_fraction(a)} at n = {fmt_n(first['n'])} to {fmt_fraction(b)} at "
                    f"n = {fmt_n(last['n'])}, beyond the noise: {why}.",
                    workload,
                    None,
                    p_top,
                    [best_name],
                    configurations=[
                        config_id(workload, v, best_name, p) for v in trend["n"] for p in (1, p_top)
                    ],
                )
            )
    return out
