"""Scale-free expectations checked within one run: ``python -m harness check RUN_DIR``.

Absolute timings depend on the machine; *ratios measured side by side in one run* do
much less. An expectations file states such ratios, plus a correctness cross-check, so
CI on any machine can judge strategies against each other. Each claim comes out
``passed``, ``failed`` or ``not-applicable`` (what it talks about was not measured in
this run, e.g. a strategy that is unavailable here or a size the quick sweep skips),
with the measured figure. Exit status: 0 nothing failed, 1 a claim failed, 2 unusable
input (no such run, malformed table, malformed expectations file).

The file (default ``results/expectations.toml``) is TOML::

    version = 1                      # schema of this file

    [[claim]]                        # one table per claim, checked in order
    kind = "speedup"                 # speedup | ratio | agreement | no-failures
    name = "openmp scales"           # optional label (a description is generated)
    required = false                 # optional: true turns not-applicable into failed

    # where it applies (optional, every kind): each matching (workload, n) is checked
    # separately and the claim passes only if every applicable one does
    workload = "schreiber"           # a name or a list; default: every workload measured
    n = 100000                       # exact size ...
    min_n = 100000                   # ... or every measured size >= min_n
    phase = "iteration"              # timing phase (speedup, ratio); default iteration
    statistic = "median"             # speedup, ratio: "median" (default) or "min" of the
                                     # repeated values; "min" asks what the code can do:
                                     # another process's load only ever adds time

``kind = "speedup"``: one strategy against itself at two worker counts::

    strategy = "openmp"
    from_workers = 1
    to_workers = 2
    at_least = 1.3                   # median(from) / median(to) >= 1.3

  Not applicable when ``to_workers`` oversubscribes the machine's usable cores: more
  workers than cores cannot be expected to scale.

``kind = "ratio"``: one strategy or a group against another::

    strategies = "openmp"            # a name, a list of names, or a selector:
    # strategies = { kind = ["openmp", "threads"], compiled = true, exclude = ["x"] }
    #   kind: the table's kind column; compiled: the class's needs_compiled flag
    versus = "scipy"
    at_least = 5.0                   # median(versus) / median(strategy) >= 5
    workers = 1                      # optional: the group's worker count (default: each
                                     # count measured)
    versus_workers = 1               # optional: default the same count as the group's

``kind = "agreement"``: correctness cross-check of ``final_loglik`` (the mean
log-likelihood after the runner's fixed check iterations) across every ``ok``
configuration (every strategy and worker count) of a workload and size::

    tolerance = 1e-8                 # max - min <= tolerance (absolute)
    strategies = { kind = [...] }    # optional restriction, same forms as above

  An ``ok`` configuration without a finite ``final_loglik`` fails the claim.

``kind = "no-failures"``: no configuration has status ``failed`` (``skipped`` ones are
fine: unavailable here); optional ``workload`` and ``strategies`` restrict it.

Timing figures are ratios of medians (or minima, ``statistic = "min"``) over the
repeated values of ``phase``.

It reads a run folder and the expectations file; it never writes into the run or
measures anything.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.gate.claims import STATISTICS, Claim, load_expectations
from harness.model.errors import DataFileError
from harness.sweep.results import load_meta, load_table, why_not_measured

#: Default expectations file, next to the results it judges.
DEFAULT_EXPECTATIONS = Path(__file__).resolve().parents[2] / "results" / "expectations.toml"
PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not-applicable"
_LABELS = {PASSED: "PASS", FAILED: "FAIL", NOT_APPLICABLE: "N/A "}


# ---- evaluation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """The outcome of a claim at one place (a workload and size, a strategy, ...)."""

    where: str
    status: str
    figure: str


@dataclass(frozen=True)
class ClaimResult:
    """A claim's overall outcome and the findings behind it."""

    claim: Claim
    status: str
    findings: tuple[Finding, ...]

    @property
    def title(self) -> str:
        return self.claim.name or self.claim.describe()


class _RunView:
    """The parts of a run's table the claims need, computed once."""

    def __init__(self, table: pd.DataFrame) -> None:
        table = table.copy()
        table["seconds"] = pd.to_numeric(table["seconds"], errors="coerce")
        for column in ("n", "workers"):
            numbers = pd.to_numeric(table[column], errors="coerce")
            if numbers.isna().any():
                raise DataFileError(f"the results table has non-numeric values in {column!r}")
            table[column] = numbers.astype("int64")
        for column in ("workload", "strategy", "phase", "kind"):
            table[column] = table[column].astype(str) if column in table else ""
        if "status" not in table.columns:
            table["status"] = "ok"
        table["status"] = table["status"].fillna("ok").astype(str)
        if "final_loglik" in table.columns:
            table["final_loglik"] = pd.to_numeric(table["final_loglik"], errors="coerce")
        else:
            table["final_loglik"] = math.nan
        self.table = table
        ok = table[(table["status"] == "ok") & np.isfinite(table["seconds"])]
        grouped = ok.groupby(["workload", "n", "strategy", "workers", "phase"])["seconds"]
        self._times = {statistic: grouped.agg(statistic) for statistic in STATISTICS}

    def sizes(self, claim: Claim) -> list[tuple[str, int]]:
        """The (workload, n) pairs of the run the claim applies to."""
        pairs = sorted(
            {(str(w), int(n)) for w, n in self.table[["workload", "n"]].itertuples(index=False)}
        )
        return [
            (w, n)
            for w, n in pairs
            if (claim.workloads is None or w in claim.workloads)
            and (claim.n is None or n == claim.n)
            and (claim.min_n is None or n >= claim.min_n)
        ]

    def rows(
        self, workload: str, n: int, strategy: str | None = None, workers: int | None = None
    ) -> pd.DataFrame:
        table = self.table
        mask = (table["workload"] == workload) & (table["n"] == n)
        if strategy is not None:
            mask &= table["strategy"] == strategy
        if workers is not None:
            mask &= table["workers"] == workers
        return table[mask]

    def time(
        self, workload: str, n: int, strategy: str, workers: int, phase: str, statistic: str
    ) -> float | None:
        """Median or minimum seconds of a configuration's phase; None if not measured."""
        return self._times[statistic].get((workload, n, strategy, workers, phase))

    def why_missing(self, workload: str, n: int, strategy: str, workers: int, phase: str) -> str:
        """Why a configuration has no timing: skipped/failed and the reason, or absent."""
        why = why_not_measured(self.rows(workload, n, strategy, workers), phase)
        return f"{strategy} at {workers} worker(s) {why}"

    def oversubscribed(self, workload: str, n: int, strategy: str, workers: int) -> bool:
        rows = self.rows(workload, n, strategy, workers)
        if (
            "oversubscribed" in rows
            and rows["oversubscribed"].astype(str).str.lower().isin(("true", "1", "1.0")).any()
        ):
            return True
        if "usable_cores" in rows:
            cores = pd.to_numeric(rows["usable_cores"], errors="coerce").dropna()
            return bool(len(cores) and workers > cores.min())
        return False


def _verdict(figure: float, at_least: float) -> str:
    return PASSED if figure >= at_least else FAILED


def _check_speedup(claim: Claim, run: _RunView, where: str, workload: str, n: int) -> list[Finding]:
    strategy, phase = claim.strategy, claim.phase
    slow = run.time(workload, n, strategy, claim.from_workers, phase, claim.statistic)
    fast = run.time(workload, n, strategy, claim.to_workers, phase, claim.statistic)
    for workers, value in ((claim.from_workers, slow), (claim.to_workers, fast)):
        if value is None:
            return [
                Finding(
                    where, NOT_APPLICABLE, run.why_missing(workload, n, strategy, workers, phase)
                )
            ]
    if run.oversubscribed(workload, n, strategy, claim.to_workers):
        return [
            Finding(
                where,
                NOT_APPLICABLE,
                f"{claim.to_workers} workers oversubscribe this machine's cores",
            )
        ]
    speedup = slow / fast
    return [
        Finding(
            where,
            _verdict(speedup, claim.at_least),
            f"{speedup:.2f}x ({slow * 1e3:.3g} ms -> {fast * 1e3:.3g} ms)",
        )
    ]


def _check_ratio(claim: Claim, run: _RunView, where: str, workload: str, n: int) -> list[Finding]:
    phase = claim.phase
    members = [s for s in claim.strategies.members(run.rows(workload, n)) if s != claim.versus]
    if not members:
        return [
            Finding(
                where,
                NOT_APPLICABLE,
                f"the run has no strategy of the group ({claim.strategies.describe()})",
            )
        ]
    findings = []
    for strategy in members:
        if claim.workers is not None:
            counts = [claim.workers]
        else:
            # each worker count measured; when none was, the ones tried (to say why)
            rows = run.rows(workload, n, strategy)
            counts = (
                sorted(set(rows.loc[rows["status"] == "ok", "workers"]))
                or sorted(set(rows["workers"]))
                or [1]
            )
        for workers in counts:
            label = f"{where}, {strategy} w{workers}"
            versus_workers = claim.versus_workers or workers
            mine = run.time(workload, n, strategy, workers, phase, claim.statistic)
            theirs = run.time(workload, n, claim.versus, versus_workers, phase, claim.statistic)
            if mine is None:
                findings.append(
                    Finding(
                        label,
                        NOT_APPLICABLE,
                        run.why_missing(workload, n, strategy, workers, phase),
                    )
                )
                continue
            if theirs is None:
                findings.append(
                    Finding(
                        label,
                        NOT_APPLICABLE,
                        run.why_missing(workload, n, claim.versus, versus_workers, phase),
                    )
                )
                continue
            ratio = theirs / mine
            findings.append(
                Finding(
                    label,
                    _verdict(ratio, claim.at_least),
                    f"{ratio:.2f}x ({claim.versus} w{versus_workers} {theirs * 1e3:.3g} ms, "
                    f"{strategy} {mine * 1e3:.3g} ms)",
                )
            )
    return findings


def _check_agreement(
    claim: Claim, run: _RunView, where: str, workload: str, n: int
) -> list[Finding]:
    rows = run.rows(workload, n)
    if "problem" in rows.columns and not (rows["problem"] == "gmm").any():
        # A micro-problem has no log-likelihood: each answer was checked against the
        # problem's oracle when measured, and a wrong one is a failed configuration.
        return [Finding(where, NOT_APPLICABLE, "not EM: answers checked when measured")]
    members = set(claim.strategies.members(rows))
    ok = rows[(rows["status"] == "ok") & rows["strategy"].isin(members)]
    values: dict[str, float] = {}
    lacking = []
    for (strategy, workers), group in ok.groupby(["strategy", "workers"]):
        finite = group["final_loglik"][np.isfinite(group["final_loglik"])]
        label = f"{strategy} w{workers}"
        if finite.empty:
            lacking.append(label)
        else:
            values[label] = float(finite.iloc[0])
    if lacking:
        return [Finding(where, FAILED, "no finite final_loglik for " + ", ".join(lacking))]
    if len(values) < 2:
        return [
            Finding(
                where, NOT_APPLICABLE, f"{len(values)} ok configuration(s); need two to compare"
            )
        ]
    low = min(values, key=values.__getitem__)
    high = max(values, key=values.__getitem__)
    spread = values[high] - values[low]
    figure = f"spread {spread:.3g} over {len(values)} configurations"
    if spread > claim.tolerance:
        centre = float(np.median(list(values.values())))
        outliers = [
            f"{label} {value:+.12g}"
            for label, value in sorted(values.items())
            if abs(value - centre) > claim.tolerance / 2
        ]
        figure += f" (median {centre:+.12g}; off: {', '.join(outliers)})"
    return [Finding(where, PASSED if spread <= claim.tolerance else FAILED, figure)]


def _check_no_failures(claim: Claim, run: _RunView) -> list[Finding]:
    table = run.table
    if claim.workloads is not None:
        table = table[table["workload"].isin(claim.workloads)]
    if claim.n is not None:
        table = table[table["n"] == claim.n]
    if claim.min_n is not None:
        table = table[table["n"] >= claim.min_n]
    table = table[table["strategy"].isin(claim.strategies.members(table))]
    if table.empty:
        return [Finding("run", NOT_APPLICABLE, "no configuration matches")]
    failed = table[table["status"] == "failed"].drop_duplicates(
        ["workload", "n", "strategy", "workers"]
    )
    configurations = len(table.drop_duplicates(["workload", "n", "strategy", "workers"]))
    if failed.empty:
        return [Finding("run", PASSED, f"0 of {configurations} configurations failed")]
    findings = [
        Finding(
            f"{r.workload} n={r.n:,}, {r.strategy} w{r.workers}", FAILED, str(r.error or "failed")
        )
        for r in failed.itertuples(index=False)
    ]
    return findings


def evaluate(claims: Iterable[Claim], table: pd.DataFrame) -> list[ClaimResult]:
    """Evaluate claims against one run's tidy table.

    Parameters
    ----------
    claims : iterable of Claim
    table : pandas.DataFrame
        The run's table, columns :data:`harness.sweep.results.COLUMNS`.

    Returns
    -------
    list of ClaimResult
        A claim fails if any finding fails; passes if at least one passes and none
        fails; is not applicable otherwise (``failed`` instead when ``required``).
    """
    run = _RunView(table)
    results = []
    for claim in claims:
        findings: list[Finding] = []
        if claim.kind == "no-failures":
            findings = _check_no_failures(claim, run)
        else:
            check = {
                "speedup": _check_speedup,
                "ratio": _check_ratio,
                "agreement": _check_agreement,
            }[claim.kind]
            sizes = run.sizes(claim)
            for workload, n in sizes:
                findings += check(claim, run, f"{workload} n={n:,}", workload, n)
            if not sizes:
                findings.append(
                    Finding("run", NOT_APPLICABLE, "no workload and size of this run matches")
                )
        statuses = {f.status for f in findings}
        if FAILED in statuses:
            status = FAILED
        elif PASSED in statuses:
            status = PASSED
        else:
            status = FAILED if claim.required else NOT_APPLICABLE
            if claim.required:
                findings.append(Finding("run", FAILED, "required, but nothing to check"))
        results.append(ClaimResult(claim, status, tuple(findings)))
    return results


def check_run(
    run_dir: str | Path, expectations: str | Path = DEFAULT_EXPECTATIONS
) -> list[ClaimResult]:
    """Load a run and an expectations file and evaluate every claim.

    Raises
    ------
    DataFileError, InvalidParameterError
        Unusable run folder or expectations file.
    """
    claims = load_expectations(expectations)
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise DataFileError(f"not a folder: {run_dir} (give a results folder)")
    if not Path(run_dir).is_dir():
        raise DataFileError(f"run folder does not exist: {run_dir}")
    load_meta(run_dir)  # refuses a folder that is not a results folder
    return evaluate(claims, load_table(run_dir))


# ---- output -----------------------------------------------------------------------------


def _counts(results: list[ClaimResult]) -> str:
    return ", ".join(
        f"{sum(r.status == s for r in results)} {s}" for s in (PASSED, FAILED, NOT_APPLICABLE)
    )


def format_text(results: list[ClaimResult]) -> str:
    lines = []
    for result in results:
        lines.append(f"{_LABELS[result.status]}  [{result.claim.kind}] {result.title}")
        for finding in result.findings:
            lines.append(
                f"        {_LABELS[finding.status].strip():<4}  {finding.where}: {finding.figure}"
            )
    lines.append(_counts(results))
    return "\n".join(lines)


def format_markdown(results: list[ClaimResult], run_dir: str | Path) -> str:
    lines = [
        "## Expectations",
        "",
        f"Run `{run_dir}`: {_counts(results)}",
        "",
        "| result | claim | where | measured |",
        "| --- | --- | --- | --- |",
    ]
    for result in results:
        for finding in result.findings:
            status = finding.status if finding.status != FAILED else "**failed**"
            lines.append(
                f"| {status} | {result.title.replace('|', '/')} | {finding.where} | "
                f"{finding.figure.replace('|', '/')} |"
            )
    return "\n".join(lines) + "\n"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="result folder of one run")
    parser.add_argument(
        "--expectations",
        metavar="FILE",
        default=str(DEFAULT_EXPECTATIONS),
        help="TOML file of claims (schema in `harness/gate/expectations.py`)",
    )
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        default=None,
        help="also write the results as a Markdown table to FILE",
    )


def main(args: argparse.Namespace) -> int:
    results = check_run(args.run_dir, args.expectations)
    print(format_text(results))
    if args.markdown:
        try:
            Path(args.markdown).write_text(format_markdown(results, args.run_dir))
        except OSError as exc:
            raise DataFileError(f"cannot write {args.markdown}: {exc}") from exc
    return 1 if any(r.status == FAILED for r in results) else 0
