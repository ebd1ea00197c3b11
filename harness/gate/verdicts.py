"""The statistics of a comparison: one configuration's verdict from its two samples.

:func:`compare_samples` judges one pair of samples (ratio of medians, its bootstrap
interval, a two-sided Mann-Whitney U test); :func:`combine_pairs` judges replicate pairs
and :func:`within_run_processes` the processes of one run, with processes as the unit
of replication (see :mod:`harness.gate.compare` for the rules). Pure functions on
arrays: no files, no tables.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
from scipy import stats

#: Bootstrap resamples per configuration: enough that the interval's ends are stable to
#: about the third digit, cheap because the statistic is vectorised.
DEFAULT_RESAMPLES = 9999


def min_p_value(base_count: int, new_count: int) -> float:
    """Smallest two-sided p-value the exact Mann-Whitney U test can give for these sizes.

    It is reached when the samples do not overlap at all: ``2 / C(m + n, m)``.
    """
    if base_count < 1 or new_count < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(base_count + new_count, base_count))


def values_needed(alpha: float) -> int:
    """Smallest equal number of values per side with which a test can reach ``alpha``."""
    count = 1
    while min_p_value(count, count) >= alpha:
        count += 1
    return count


def seed_for(key: Sequence[object], seed: int) -> np.random.Generator:
    """A generator seeded by the configuration, so intervals do not depend on order."""
    digest = zlib.crc32("|".join(map(str, key)).encode())
    return np.random.default_rng([seed, digest])


def _median_ratio(base: np.ndarray, new: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(new, axis=axis) / np.median(base, axis=axis)


def compare_samples(
    base: np.ndarray,
    new: np.ndarray,
    *,
    threshold: float,
    alpha: float,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> tuple[float, float, float, float, str, str]:
    """Ratio of medians, its interval, the U-test p-value, the verdict and a note.

    Parameters
    ----------
    base, new : ndarray of float64, shape (m,) and (p,)
        Positive seconds, one per measured value.
    threshold : float
        Relative change that matters (0.1 for 10%).
    alpha : float
        Significance level of the test; the interval's level is ``1 - alpha``.
    rng : numpy.random.Generator
        Source of the bootstrap resamples.
    n_resamples : int

    Returns
    -------
    ratio, ci_low, ci_high, p_value : float
    verdict : {"slower", "faster", "unchanged"}
    note : str
    """
    ratio = float(_median_ratio(base, new))
    ci_low = ci_high = p_value = math.nan
    if len(base) >= 2 and len(new) >= 2:
        ci = stats.bootstrap(
            (base, new),
            _median_ratio,
            vectorized=True,
            paired=False,
            confidence_level=1 - alpha,
            method="percentile",  # BCa's jackknife is unstable for medians of few values
            n_resamples=n_resamples,
            rng=rng,
        ).confidence_interval
        ci_low, ci_high = float(ci.low), float(ci.high)
    if len(base) >= 1 and len(new) >= 1:
        p_value = float(stats.mannwhitneyu(base, new, alternative="two-sided").pvalue)

    significant = p_value < alpha  # False for NaN
    beyond = ratio > 1 + threshold or ratio < 1 / (1 + threshold)
    change = f"{ratio - 1:+.1%}"
    # Said on every such row, not only on the large changes: a reader must know that
    # this configuration could never have been flagged, whatever it measured.
    powerless = min_p_value(len(base), len(new)) >= alpha
    too_few = (
        f"too few values ({len(base)} vs {len(new)}) for the test to ever reach alpha={alpha:g}"
    )
    if beyond and significant:
        verdict = "slower" if ratio > 1 else "faster"
        note = f"{change}, significant"
    elif beyond:
        verdict = "unchanged"
        note = f"{change} but {too_few}" if powerless else f"{change} but not significant"
    elif significant:
        verdict = "unchanged"
        note = f"{change}, significant but within the threshold"
    else:
        verdict = "unchanged"
        note = f"{change}; {too_few}" if powerless else f"{change}"
    return ratio, ci_low, ci_high, p_value, verdict, note


def processes_separate(
    base_medians: list[float], new_medians: list[float], *, slower: bool
) -> bool:
    """Every NEW process median beyond every BASE one, in the direction of the change."""
    if slower:
        return min(new_medians) > max(base_medians)
    return max(new_medians) < min(base_medians)


def within_run_processes(
    result: tuple[float, float, float, float, str, str],
    base_medians: list[float],
    new_medians: list[float],
) -> tuple[float, float, float, float, str, str]:
    """A one-pair verdict checked against its runs' processes (the default protocol
    measures each configuration in several): a change stands only when the process
    medians separate completely, as :func:`combine_pairs` asks of replicate pairs."""
    ratio, ci_low, ci_high, p_value, verdict, note = result
    if verdict == "unchanged" or len(base_medians) < 2 or len(new_medians) < 2:
        return result
    separated = processes_separate(base_medians, new_medians, slower=verdict == "slower")
    if separated:
        return (
            ratio,
            ci_low,
            ci_high,
            p_value,
            verdict,
            (f"{note}; every NEW process {verdict} than every BASE one"),
        )
    return (
        ratio,
        ci_low,
        ci_high,
        p_value,
        "unchanged",
        f"{note}, but the BASE and NEW processes overlap: not beyond the process-to-process noise",
    )


def combine_pairs(
    results: list[tuple[float, float, float, float, str, str]],
    replicates: int,
    *,
    base_medians: list[float],
    new_medians: list[float],
    threshold: float,
    alpha: float,
) -> tuple[str, float, float, float, float, str]:
    """One verdict from the replicate pairs, with processes as the unit of replication.

    Each pair's values come from one process per side, so a pair's test sees the noise
    within a process only. A change counts when

    1. every pair's test is significant in the same direction (Berger's
       intersection-union test: the p-value is the largest of the pairs');
    2. the process medians separate completely: every NEW process is slower than every
       BASE process (faster: the reverse), so no pair's BASE lies among the NEW ones;
    3. the overall ratio (geometric mean of the pairs' ratios) is beyond the threshold.

    A single pair's ratio may fall short of the threshold when the others exceed it: a
    real change of about the threshold's size is then still seen, while the complete
    separation of the processes keeps a difference between processes from passing as
    one. The interval is the hull of the pairs'. With one pair this is that pair's
    comparison unchanged.

    Returns
    -------
    verdict, ratio, ci_low, ci_high, p_value, note
    """
    if replicates == 1:
        ratio, ci_low, ci_high, p_value, verdict, note = results[0]
        return verdict, ratio, ci_low, ci_high, p_value, note
    ratios = [r[0] for r in results]
    ratio = float(np.exp(np.mean(np.log(ratios))))
    lows, highs = [r[1] for r in results], [r[2] for r in results]
    ci_low = math.nan if any(math.isnan(v) for v in lows) else min(lows)
    ci_high = math.nan if any(math.isnan(v) for v in highs) else max(highs)
    p_values = [r[3] for r in results]
    p_value = math.nan if any(math.isnan(p) for p in p_values) else max(p_values)
    per_pair = ", ".join(
        f"{r - 1:+.1%}" + ("*" if p < alpha else "") for r, p in zip(ratios, p_values, strict=True)
    )
    compared = f"{len(results)} of {replicates} pairs"
    direction = "slower" if ratio > 1 else "faster"
    sign = 1 if ratio > 1 else -1
    each = all(p < alpha and sign * math.log(r) > 0 for r, p in zip(ratios, p_values, strict=True))
    separated = processes_separate(base_medians, new_medians, slower=sign > 0)
    beyond = ratio > 1 + threshold or ratio < 1 / (1 + threshold)
    if len(results) < replicates:
        why = f"measured on both sides in {compared} only: not replicated"
    elif not beyond:
        why = f"within the threshold over {compared}"
    elif not each:
        why = f"not {direction} and significant in each of {compared}"
    elif not separated:
        why = "the BASE and NEW processes overlap: not beyond the process-to-process noise"
    else:
        return (
            direction,
            ratio,
            ci_low,
            ci_high,
            p_value,
            f"{ratio - 1:+.1%}, significant in each of {compared}, every NEW process "
            f"{direction} than every BASE one ({per_pair})",
        )
    return "unchanged", ratio, ci_low, ci_high, p_value, f"{ratio - 1:+.1%}; {why} ({per_pair})"
