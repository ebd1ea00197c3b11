"""Compare two result folders: which configurations got faster, slower, or went missing.

``python -m harness compare BASE NEW [--threshold 10%] [--alpha 0.01] [--markdown FILE]``
``python -m harness compare --auto [NEW]`` (what ``make compare`` runs): BASE is chosen
for NEW, like with like, by :mod:`harness.gate.pick`, which prints its choice.

Configurations are matched on ``(workload, n, strategy, workers, phase)`` (phase
``iteration`` by default, more with ``--phase``). For each match:

* **ratio** = median(NEW seconds) / median(BASE seconds); above 1 is slower;
* a **confidence interval** for that ratio, at level ``1 - alpha``: percentile
  bootstrap (:func:`scipy.stats.bootstrap`), each side resampled on its own, with a
  seed derived from the configuration so the same inputs always give the same interval;
* a **Mann-Whitney U test** (:func:`scipy.stats.mannwhitneyu`, two-sided) of the two
  samples of repeated values: no assumption of normality, robust to the long right tail
  timings have.

**Replicate pairs.** ``BASE`` and ``NEW`` may each be a comma-separated list of
folders, swept alternately (``BASE1 NEW1 BASE2 NEW2 ...``) and paired in order. The
repeated values of one quick sweep all come from one process, so a pair's test sees the
noise within a process but not the noise between processes, and on a small VM that is
the larger one (a BLAS-threaded strategy can settle at a different speed in each
process of the same build; a competing program's burst moves whole minutes of a
sweep). Processes are therefore the unit of replication: a change counts when every
pair's test is significant in the same direction, every NEW process's median lies
beyond every BASE process's (complete separation), and the overall ratio (geometric
mean over the pairs) is beyond the threshold
(:func:`harness.gate.verdicts.combine_pairs`). A false alarm must then separate all the
processes, a real slowdown of about the threshold's size is seen even when one pair's
ratio falls just short of it. The CI workflow sweeps three pairs.

Verdicts (symmetric in log space, so 2x slower and 2x faster are equally far from 1):

``slower``
    ratio > 1 + threshold **and** p < alpha. This is a **regression**.
``faster``
    ratio < 1 / (1 + threshold) **and** p < alpha.
``unchanged``
    anything else; the note says whether the change was within the threshold or not
    significant (and when a side has too few values for any test to reach ``alpha``:
    the exact two-sided Mann-Whitney p-value cannot go below ``2 / C(m + n, m)``, so
    5 values per side are needed for ``alpha = 0.01``).
``missing``
    measured on one side only, or skipped/failed on one. A configuration that was
    ``ok`` in BASE and *failed* in NEW is also counted as a regression: a gate that
    passes when a strategy starts crashing would be useless.

Exit status: 0 no regression, 1 at least one regression, 2 unusable input (a folder
that is not a results folder, a malformed table, no configuration in common,
incompatible metadata).

Compatibility (pyperf's rule: incompatible runs are refused, not mixed):

* refused: a different results ``schema_version``; the same ``(workload, n)`` with a
  different ``d`` or ``k``, or a different data ``seed`` in ``meta.json``'s
  ``sweep.protocol`` (different data, not a different speed);
* refused unless ``--allow-different-hosts``: a different CPU model or usable-core
  count. Timings from two machines measure the machines, not the code; the CI job
  sweeps both commits on one machine, so a host mismatch is almost always a mistake
  (for example comparing against a baseline committed from another computer). With the
  flag the comparison runs and the report opens with a warning;
* reported as warnings: different Python, NumPy, BLAS, Cython, compiler flags or OpenMP
  support (a pull request may change them on purpose, and that is worth measuring), and
  a different timing protocol (mode, warm-ups, pyperf processes, minimum time per value;
  the number of values may differ freely);
* reported as a warning: comparisons with too few values for any test to reach
  ``alpha`` (the quick sweep's default 3 values per phase cannot; CI sweeps with
  ``--iterations 10``).

It reads two result folders and never writes into them, re-runs or re-times anything.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.gate.compare_format import format_markdown, format_text
from harness.gate.runs import (
    KEY_COLUMNS,
    IncompatibleRunsError,
    check_compatible,
    describe_coverage,
    distinct,
    load_run,
    why_absent,
)
from harness.gate.verdicts import (
    DEFAULT_RESAMPLES,
    combine_pairs,
    compare_samples,
    min_p_value,
    seed_for,
    values_needed,
    within_run_processes,
)
from harness.model import args as types
from harness.model.errors import DataFileError, InvalidParameterError
from harness.sweep.results import (
    PHASES,
)

#: Verdicts in the order reports list them.
VERDICTS = ("slower", "faster", "unchanged", "missing")


@dataclass(frozen=True)
class Comparison:
    """The comparison of one configuration and phase.

    Attributes
    ----------
    workload, n, strategy, workers, phase
        The matched key.
    verdict : {"slower", "faster", "unchanged", "missing"}
    base_values, new_values : int
        Number of measured values on each side (0 when missing there).
    base_median, new_median : float
        Seconds; NaN when missing.
    ratio : float
        ``new_median / base_median``; NaN when missing.
    ci_low, ci_high : float
        Bootstrap confidence interval of ``ratio``; NaN when it cannot be computed.
    p_value : float
        Two-sided Mann-Whitney U p-value; NaN when it cannot be computed.
    regression : bool
        Counts towards exit status 1 (``slower``, or ok in BASE and failed in NEW).
    note : str
        Why the verdict is what it is, in a few words.
    """

    workload: str
    n: int
    strategy: str
    workers: int
    phase: str
    verdict: str
    base_values: int = 0
    new_values: int = 0
    base_median: float = math.nan
    new_median: float = math.nan
    ratio: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    regression: bool = False
    note: str = ""


@dataclass
class ComparisonReport:
    """Everything ``compare`` found, ready to be printed or written as Markdown."""

    base_dir: str
    new_dir: str
    threshold: float
    alpha: float
    comparisons: list[Comparison]
    warnings: list[str] = field(default_factory=list)
    base_commit: str = ""
    new_commit: str = ""
    replicates: int = 1

    def by_verdict(self, verdict: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == verdict]

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regression]

    def summary(self) -> str:
        counts = {verdict: len(self.by_verdict(verdict)) for verdict in VERDICTS}
        parts = [f"{counts[verdict]} {verdict}" for verdict in VERDICTS]
        verdict = f"{len(self.regressions)} regression(s)" if self.regressions else "no regression"
        pairs = f", {self.replicates} replicate pairs" if self.replicates > 1 else ""
        return (
            f"{verdict}: {', '.join(parts)} (threshold {self.threshold:.0%}, "
            f"alpha {self.alpha:g}, {1 - self.alpha:.0%} bootstrap CI{pairs})"
        )


# ---- arguments ------------------------------------------------------------------------


def parse_threshold(text: str | float) -> float:
    """Relative slowdown that counts, from ``"10%"`` or ``"0.10"``.

    A number with ``%`` is a percentage; a bare number is a fraction and must be below 1,
    so ``10`` (ambiguous) is refused with a hint instead of meaning 1000%.

    Raises
    ------
    InvalidParameterError
        For anything that is not a positive threshold.
    """
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise InvalidParameterError(
            f"--threshold: expected a percentage such as 10% or a fraction such as 0.1, "
            f"got {text!r}"
        ) from None
    if not raw.endswith("%") and value >= 1:
        raise InvalidParameterError(
            f"--threshold {text!r} is ambiguous: write {value:g}% for a percentage "
            f"or a fraction below 1"
        )
    if not math.isfinite(value) or value <= 0:
        raise InvalidParameterError(f"--threshold must be positive, got {text!r}")
    return value


def check_alpha(alpha: float) -> float:
    """Significance level strictly between 0 and 1."""
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise InvalidParameterError(f"--alpha must be between 0 and 1, got {alpha!r}")
    return float(alpha)


def _usable(table: pd.DataFrame, phases: Iterable[str]) -> pd.DataFrame:
    """``ok`` rows of the phases compared, without the rows of replaced processes.

    A process the sweep replaced carries no verdict; a configuration whose processes
    were all disturbed keeps them (it is flagged ``disturbed`` in its run), so that it
    is still compared rather than silently missing.
    """
    ok = table[(table["status"] == "ok") & table["phase"].isin(list(phases))]
    if "process_disturbed" not in ok.columns:
        return ok
    replaced = ok["process_disturbed"].astype("boolean").fillna(False).astype(bool)
    any_good = (~replaced).groupby([ok[c] for c in KEY_COLUMNS]).transform("any")
    return ok[~replaced | ~any_good]


def _samples(table: pd.DataFrame, phases: Iterable[str]) -> dict[tuple, np.ndarray]:
    return {
        tuple(key): group["seconds"].to_numpy(dtype=np.float64)
        for key, group in _usable(table, phases).groupby(list(KEY_COLUMNS), sort=True)
    }


def _process_medians(table: pd.DataFrame, phases: Iterable[str]) -> dict[tuple, list[float]]:
    """Per configuration, the median of each measurement process (none without the column)."""
    ok = _usable(table, phases)
    if "process" not in ok.columns or ok["process"].isna().all():
        return {}
    medians = ok.groupby([*KEY_COLUMNS, "process"], sort=True)["seconds"].median()
    out: dict[tuple, list[float]] = {}
    for index, value in medians.items():
        out.setdefault(tuple(index[:-1]), []).append(float(value))
    return out


def compare_runs(
    base_dir: str | Path,
    new_dir: str | Path,
    *,
    threshold: float = 0.10,
    alpha: float = 0.01,
    phases: Iterable[str] = ("iteration",),
    allow_different_hosts: bool = False,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> ComparisonReport:
    """Compare every configuration two runs have, phase by phase.

    Parameters
    ----------
    base_dir, new_dir : str or Path
        Result folders (see :mod:`harness.sweep.results`).
    threshold : float
        Relative change that matters, as a fraction (0.10 = 10%).
    alpha : float
        Significance level of the Mann-Whitney U test; intervals are at ``1 - alpha``.
    phases : iterable of str
        Phases to compare (subset of :data:`harness.sweep.results.PHASES`).
    allow_different_hosts : bool
        Compare runs from different machines (with a warning) instead of refusing.
    seed : int
        Base seed of the bootstrap (each configuration derives its own from it).
    n_resamples : int

    Raises
    ------
    DataFileError
        A folder is missing or its table is malformed.
    IncompatibleRunsError
        Different schema, data or (without the flag) machine; nothing in common.
    """
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0):
        raise InvalidParameterError(f"threshold must be a positive fraction, got {threshold!r}")
    alpha = check_alpha(alpha)
    phases = tuple(dict.fromkeys(phases))
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise InvalidParameterError(f"unknown phase(s) {unknown}; valid: {', '.join(PHASES)}")

    base_dirs, new_dirs = _run_dirs(base_dir, "BASE"), _run_dirs(new_dir, "NEW")
    if len(base_dirs) != len(new_dirs):
        raise InvalidParameterError(
            f"replicate pairs: {len(base_dirs)} BASE folder(s) but {len(new_dirs)} NEW "
            "folder(s); give one NEW per BASE, in the order they were swept"
        )
    replicates = len(base_dirs)

    def label(side: str, index: int) -> str:
        return side if replicates == 1 else f"{side}{index + 1}"

    base_runs = [load_run(d, label("BASE", i)) for i, d in enumerate(base_dirs)]
    new_runs = [load_run(d, label("NEW", i)) for i, d in enumerate(new_dirs)]
    warnings: list[str] = []
    reference = (label("BASE", 0), *base_runs[0])
    others = [(label("BASE", i), *run) for i, run in enumerate(base_runs) if i] + [
        (label("NEW", i), *run) for i, run in enumerate(new_runs)
    ]
    for other in others:
        for warning in check_compatible(reference, other, allow_different_hosts):
            if warning not in warnings:
                warnings.append(warning)

    base_samples = [_samples(table, phases) for _, table in base_runs]
    new_samples = [_samples(table, phases) for _, table in new_runs]
    base_processes = [_process_medians(table, phases) for _, table in base_runs]
    new_processes = [_process_medians(table, phases) for _, table in new_runs]
    # the replicate pairs in which each configuration was measured on both sides
    pairs_of = {
        key: [i for i in range(replicates) if key in base_samples[i] and key in new_samples[i]]
        for key in set().union(*base_samples, *new_samples)
    }
    common = sorted(key for key, pairs in pairs_of.items() if pairs)
    if not common:
        raise IncompatibleRunsError(
            f"no configuration measured in both runs for phase(s) {', '.join(phases)}: "
            f"BASE has {describe_coverage(base_runs[0][1]) or 'nothing'}; "
            f"NEW has {describe_coverage(new_runs[0][1]) or 'nothing'}"
        )

    sizes = [
        (len(base_samples[i][key]), len(new_samples[i][key]))
        for key in common
        for i in pairs_of[key]
    ]
    powerless = [
        key
        for key in common
        if any(
            min_p_value(len(base_samples[i][key]), len(new_samples[i][key])) >= alpha
            for i in pairs_of[key]
        )
    ]
    if powerless:
        fewest = min(min(pair) for pair in sizes if min_p_value(*pair) >= alpha)
        warnings.append(
            f"{len(powerless)} of {len(common)} comparisons have too few values (as few as "
            f"{fewest} per side) for the Mann-Whitney test to ever reach alpha={alpha:g}, so "
            f"they can never be flagged; sweep with more values, e.g. "
            f"`python -m harness run --quick --iterations {values_needed(alpha)}` or more"
        )

    comparisons: list[Comparison] = []
    for key in sorted(pairs_of):
        fields = dict(zip(KEY_COLUMNS, key, strict=True))
        pairs = pairs_of[key]
        if not pairs:
            comparisons.append(
                _missing(key, fields, base_runs, new_runs, base_samples, new_samples)
            )
            continue
        results = [
            compare_samples(
                base_samples[i][key],
                new_samples[i][key],
                threshold=threshold,
                alpha=alpha,
                rng=seed_for((*key, i) if i else key, seed),
                n_resamples=n_resamples,
            )
            for i in pairs
        ]
        b = np.concatenate([base_samples[i][key] for i in pairs])
        n = np.concatenate([new_samples[i][key] for i in pairs])
        if replicates == 1:
            results[0] = within_run_processes(
                results[0], base_processes[0].get(key, []), new_processes[0].get(key, [])
            )
        verdict, ratio, ci_low, ci_high, p_value, note = combine_pairs(
            results,
            replicates,
            base_medians=[float(np.median(base_samples[i][key])) for i in pairs],
            new_medians=[float(np.median(new_samples[i][key])) for i in pairs],
            threshold=threshold,
            alpha=alpha,
        )
        comparisons.append(
            Comparison(
                **fields,
                verdict=verdict,
                base_values=len(b),
                new_values=len(n),
                base_median=float(np.median(b)),
                new_median=float(np.median(n)),
                ratio=ratio,
                ci_low=ci_low,
                ci_high=ci_high,
                p_value=p_value,
                regression=verdict == "slower",
                note=note,
            )
        )

    order = {verdict: i for i, verdict in enumerate(VERDICTS)}
    comparisons.sort(
        key=lambda c: (
            order[c.verdict],
            c.workload,
            c.n,
            c.strategy,
            c.workers,
            PHASES.index(c.phase),
        )
    )
    return ComparisonReport(
        base_dir=", ".join(map(str, base_dirs)),
        new_dir=", ".join(map(str, new_dirs)),
        threshold=float(threshold),
        alpha=alpha,
        comparisons=comparisons,
        warnings=warnings,
        base_commit=" / ".join(dict.fromkeys(distinct(t, "git_commit") for _, t in base_runs)),
        new_commit=" / ".join(dict.fromkeys(distinct(t, "git_commit") for _, t in new_runs)),
        replicates=replicates,
    )


def _run_dirs(value: str | Path | Sequence[str | Path], side: str) -> list[Path]:
    """One or more run folders: a path, a comma-separated list, or a sequence of them."""
    items = [value] if isinstance(value, str | Path) else list(value)
    dirs = [Path(part.strip()) for item in items for part in str(item).split(",") if part.strip()]
    if not dirs:
        raise InvalidParameterError(f"no {side} folder given")
    return dirs


def _missing(
    key: tuple,
    fields: dict,
    base_runs: list[tuple[dict, pd.DataFrame]],
    new_runs: list[tuple[dict, pd.DataFrame]],
    base_samples: list[dict[tuple, np.ndarray]],
    new_samples: list[dict[tuple, np.ndarray]],
) -> Comparison:
    """A configuration that no replicate pair measured on both sides."""
    in_base = [i for i, samples in enumerate(base_samples) if key in samples]
    in_new = [i for i, samples in enumerate(new_samples) if key in samples]
    b = np.concatenate([base_samples[i][key] for i in in_base]) if in_base else None
    n = np.concatenate([new_samples[i][key] for i in in_new]) if in_new else None
    newly_failing = False
    if in_base and in_new:
        note = "never measured on both sides of one pair"
    elif in_base:
        why = why_absent(new_runs[in_base[0]][1], key)  # from the pair whose BASE has it
        note = f"only in BASE (NEW: {why})"
        newly_failing = why.startswith("failed")
    else:
        note = f"only in NEW (BASE: {why_absent(base_runs[in_new[0]][1], key)})"
    return Comparison(
        **fields,
        verdict="missing",
        base_values=0 if b is None else len(b),
        new_values=0 if n is None else len(n),
        base_median=math.nan if b is None else float(np.median(b)),
        new_median=math.nan if n is None else float(np.median(n)),
        regression=newly_failing,
        note=note + ("; newly failing counts as a regression" if newly_failing else ""),
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="BASE NEW: the reference run folder (or a comma-separated list of replicate "
        "runs, paired in order with NEW's) and the run to judge. With --auto only NEW, "
        "optional (default: the latest run under results/)",
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="choose BASE for NEW: a committed results/baseline* swept like NEW, else the "
        "most recent earlier run swept like NEW, else one with configurations in common "
        "(what `make compare` runs; see harness/gate/pick.py)",
    )
    parser.add_argument(
        "--threshold",
        default="10%",
        help="relative slowdown that counts as a regression when significant (10%% or 0.1)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="significance level of the Mann-Whitney U test; the bootstrap "
        "interval is at 1 - alpha",
    )
    parser.add_argument(
        "--phase",
        action="append",
        choices=(*PHASES, "all"),
        default=None,
        help="phase to compare (repeatable; 'all' for every phase; default: iteration)",
    )
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        default=None,
        help="also write the table as Markdown to FILE ('-' for stdout only)",
    )
    parser.add_argument(
        "--allow-different-hosts",
        action="store_true",
        help="compare runs from different machines (warning) instead of refusing",
    )
    parser.add_argument("--seed", type=types.seed, default=0, help="bootstrap seed")


def main(args: argparse.Namespace) -> int:
    phases = args.phase or ["iteration"]
    if "all" in phases:
        phases = list(PHASES)
    if args.auto:
        from harness.gate.pick import choose_runs

        if len(args.runs) > 1:
            raise InvalidParameterError(
                f"--auto takes at most one run folder (NEW), got {len(args.runs)}: "
                f"{' '.join(args.runs)}"
            )
        base, new, reason = choose_runs(args.runs[0] if args.runs else None)
        print(reason)
    elif len(args.runs) != 2:
        raise InvalidParameterError(
            f"compare needs two run folders, BASE and NEW (or --auto [NEW]); got {len(args.runs)}"
        )
    else:
        base, new = args.runs
    report = compare_runs(
        base,
        new,
        threshold=parse_threshold(args.threshold),
        alpha=args.alpha,
        phases=phases,
        allow_different_hosts=args.allow_different_hosts,
        seed=args.seed,
    )
    markdown = format_markdown(report)
    if args.markdown == "-":
        print(markdown)
    else:
        print(format_text(report))
        if args.markdown:
            try:
                Path(args.markdown).write_text(markdown)
            except OSError as exc:
                raise DataFileError(f"cannot write {args.markdown}: {exc}") from exc
    return 1 if report.regressions else 0
