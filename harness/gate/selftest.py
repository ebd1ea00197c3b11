"""Measure how well ``compare`` separates noise from a real slowdown, on this machine.

``python -m harness.gate.selftest [--trials 5] [--replicates 3] [--chained]
[--slowdown cython:1.2] [--iterations 10] [--out DIR] [-- RUNNER_OPTIONS]``

Two targets:

* **A/A**: the same build swept repeatedly with ``--quick`` must give *no* regression,
  in each of ``--trials`` trials;
* **slowdown**: sweeps with ``GMM_HARNESS_SLOWDOWN=<strategy>:<factor>`` (the runner's
  test-only switch: every timed call of that strategy takes ``factor`` times as long)
  compared with plain sweeps must report the slowed strategy as a regression, and
  nothing else.

Every comparison is made the way the CI workflow makes it: ``--replicates`` pairs of
sweeps, BASE and NEW alternately (``B1 N1 B2 N2 B3 N3``), compared as
``compare B1,B2,B3 N1,N2,N3``. Sweeps run as
``python -m harness run --quick --iterations 10 --out DIR`` subprocesses (extra runner
options after ``--``), one after another. Trials sweep afresh (``2 x replicates``
sweeps each), or with ``--chained`` trial ``t`` reuses all but two of trial
``t - 1``'s sweeps. The load average around each sweep and the git commit it measured
are recorded: a comparison across a rebuild, or under someone else's benchmark, is not
the A/A the target means. The figures are printed and written to
``DIR/selftest.json`` and ``DIR/selftest.md``. Exit status 0 when both targets are
met, 1 otherwise, 2 when a sweep fails.

It runs sweeps only through ``python -m harness run``, into folders of its own, and
reads no other run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.gate.compare import ComparisonReport, compare_runs, parse_threshold
from harness.model.errors import HarnessError, InvalidParameterError
from harness.sweep.results import load_table

SLOWDOWN_ENV = "GMM_HARNESS_SLOWDOWN"


def sweep(out: Path, runner_args: Sequence[str], env_extra: dict[str, str] | None = None) -> float:
    """Run one quick sweep into ``out``; return its wall time in seconds.

    Raises
    ------
    HarnessError
        When the runner exits with an error (its stderr tail is in the message).
    """
    # an inherited switch would slow the "plain" sweeps too
    env = {key: value for key, value in os.environ.items() if key != SLOWDOWN_ENV}
    env.update(env_extra or {})
    command = [sys.executable, "-m", "harness", "run", "--quick", "--out", str(out), *runner_args]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise HarnessError(f"sweep {' '.join(command)} exited {result.returncode}:\n{tail}")
    return elapsed


def _commit(run_dir: Path) -> str:
    """The git commit(s) a run's table records ("" when it records none)."""
    try:
        table = load_table(run_dir)
    except HarnessError:
        return ""
    if "git_commit" not in table.columns:
        return ""
    return " / ".join(sorted({str(c)[:12] for c in table["git_commit"].dropna().unique()}))


def _counts(report: ComparisonReport) -> dict[str, int]:
    return {
        verdict: len(report.by_verdict(verdict))
        for verdict in ("slower", "faster", "unchanged", "missing")
    }


def run_selftest(
    out: Path,
    *,
    trials: int,
    slowdown: str,
    threshold: float,
    alpha: float,
    runner_args: Sequence[str],
    replicates: int = 3,
    chained: bool = False,
) -> dict:
    """Run the A/A trials and the slowdown trial; return every figure as a dict.

    Parameters
    ----------
    out : Path
        Folder for the sweeps (one sub-folder each) and the figures.
    trials : int
        A/A trials.
    slowdown : str
        ``"STRATEGY:FACTOR"`` for the slowed sweep.
    threshold, alpha : float
        ``compare``'s parameters.
    runner_args : sequence of str
        Options added to ``harness run --quick`` for every sweep.
    replicates : int
        Replicate pairs per comparison (``compare BASE1,BASE2 NEW1,NEW2``), as CI sweeps.
    chained : bool
        Consecutive trials share all but two sweeps instead of each sweeping afresh.
    """
    strategy, _, factor = slowdown.partition(":")
    try:
        factor_value = float(factor)
    except ValueError:
        raise InvalidParameterError(
            f"--slowdown must be STRATEGY:FACTOR such as cython:1.2, got {slowdown!r}"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    figures: dict = {
        "threshold": threshold,
        "alpha": alpha,
        "runner_args": list(runner_args),
        "trials": "chained" if chained else "independent",
        "replicates": replicates,
        "sweeps": [],
        "aa": [],
        "slowdown": None,
    }

    def timed_sweep(folder: Path, env_extra: dict[str, str] | None = None) -> Path:
        load_before = os.getloadavg()[0]
        seconds = sweep(folder, runner_args, env_extra)
        figures["sweeps"].append(
            {
                "folder": folder.name,
                "seconds": round(seconds, 1),
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
                "git_commit": _commit(folder),
            }
        )
        return folder

    sweeps: dict[int, Path] = {}

    def plain_sweep(index: int) -> Path:
        if index not in sweeps:
            sweeps[index] = timed_sweep(out / f"aa{index}")
        return sweeps[index]

    # trial t uses sweeps start(t) .. start(t) + 2R - 1, alternately BASE and NEW, so
    # each replicate pair is swept back to back; chained trials overlap by all but two
    stride = 2 if chained else 2 * replicates
    for trial in range(trials):
        first = trial * stride
        base, new = [], []
        for j in range(replicates):  # in sweep order: B1 N1 B2 N2 ...
            base.append(plain_sweep(first + 2 * j))
            new.append(plain_sweep(first + 2 * j + 1))
        report = compare_runs(base, new, threshold=threshold, alpha=alpha)
        ratios = [c.ratio for c in report.comparisons if c.verdict != "missing"]
        commits = {_commit(run) for run in base + new}
        entry = {
            "trial": trial + 1,
            "base": [run.name for run in base],
            "new": [run.name for run in new],
            "same_commit": len(commits) == 1,
            "regressions": len(report.regressions),
            "counts": _counts(report),
            "max_ratio": max(ratios, default=float("nan")),
            "min_ratio": min(ratios, default=float("nan")),
            "flagged": [
                f"{c.strategy} w{c.workers} {c.workload} n={c.n}: {c.note}"
                for c in report.regressions
            ],
        }
        figures["aa"].append(entry)
        print(
            f"A/A trial {trial + 1}/{trials} ({','.join(entry['base'])} vs "
            f"{','.join(entry['new'])}): {report.summary()}; ratios "
            f"{entry['min_ratio']:.3f}..{entry['max_ratio']:.3f}",
            flush=True,
        )

    # the slowed sweeps alternate with plain ones, pair by pair, as BASE and NEW would
    plain, slowed = [], []
    for j in range(replicates):
        plain.append(timed_sweep(out / f"slowdown-plain{j}"))
        slowed.append(
            timed_sweep(out / f"slowdown-slowed{j}", {SLOWDOWN_ENV: f"{strategy}:{factor_value:g}"})
        )
    report = compare_runs(plain, slowed, threshold=threshold, alpha=alpha)
    target = [c for c in report.comparisons if c.strategy == strategy and c.verdict != "missing"]
    others = [c for c in report.regressions if c.strategy != strategy]
    figures["slowdown"] = {
        "strategy": strategy,
        "factor": factor_value,
        "base": [run.name for run in plain],
        "new": [run.name for run in slowed],
        "configurations": len(target),
        "flagged": sum(c.regression for c in target),
        "ratios": [round(c.ratio, 4) for c in target],
        "notes": [f"{c.workload} n={c.n} w{c.workers}: {c.note}" for c in target],
        "p_values": [c.p_value for c in target],
        "other_regressions": [f"{c.strategy} w{c.workers} {c.workload} n={c.n}" for c in others],
        "counts": _counts(report),
    }
    print(
        f"slowdown {strategy} x{factor_value:g}: {figures['slowdown']['flagged']} of "
        f"{len(target)} configuration(s) flagged as regressions (ratios "
        f"{', '.join(f'{r:.3f}' for r in figures['slowdown']['ratios'])}); "
        f"{len(others)} other regression(s)",
        flush=True,
    )

    aa_clean = sum(entry["regressions"] == 0 for entry in figures["aa"])
    slow = figures["slowdown"]
    figures["aa_clean_trials"] = aa_clean
    figures["aa_target_met"] = aa_clean == trials
    figures["slowdown_target_met"] = slow["flagged"] >= 1 and not slow["other_regressions"]
    return figures


def to_markdown(figures: dict) -> str:
    """The figures as a short Markdown report."""
    lines = [
        "# compare self-test",
        "",
        f"threshold {figures['threshold']:.0%}, alpha {figures['alpha']:g}, runner "
        f"arguments `--quick {' '.join(figures['runner_args'])}`, {figures['replicates']} "
        f"replicate pair(s) per comparison, {figures['trials']} trials",
        "",
        "| A/A trial | sweeps | same commit | regressions | slower / faster / unchanged / "
        "missing | ratio range |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in figures["aa"]:
        counts = entry["counts"]
        lines.append(
            f"| {entry['trial']} | {','.join(entry['base'])} vs {','.join(entry['new'])} | "
            f"{'yes' if entry['same_commit'] else 'NO'} | {entry['regressions']} | "
            f"{counts['slower']} / {counts['faster']} / {counts['unchanged']} / "
            f"{counts['missing']} | {entry['min_ratio']:.3f} .. {entry['max_ratio']:.3f} |"
        )
    slow = figures["slowdown"]
    lines += [
        "",
        f"A/A: no regression in {figures['aa_clean_trials']} of {len(figures['aa'])} trials.",
        "",
        f"Slowdown {slow['strategy']} x{slow['factor']:g} ({','.join(slow['base'])} vs "
        f"{','.join(slow['new'])}): "
        f"{slow['flagged']} of {slow['configurations']} configuration(s) reported as "
        f"regressions; measured ratios {', '.join(f'{r:.3f}' for r in slow['ratios'])}; "
        f"other regressions: {', '.join(slow['other_regressions']) or 'none'}.",
        "",
        "| sweep | seconds | load before | load after | commit |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {s['folder']} | {s['seconds']} | {s['load_before']} | {s['load_after']} | "
        f"{s['git_commit']} |"
        for s in figures["sweeps"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.gate.selftest",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--trials", type=int, default=5, help="A/A trials")
    parser.add_argument(
        "--slowdown", default="cython:1.2", help="STRATEGY:FACTOR for the slowdown trial"
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=10,
        help="values per phase of every sweep (as the CI workflow takes; "
        "the quick default of 3 gives compare no power at alpha 0.01)",
    )
    parser.add_argument(
        "--replicates",
        type=int,
        default=3,
        help="replicate pairs per comparison, as the CI workflow sweeps",
    )
    parser.add_argument(
        "--chained",
        action="store_true",
        help="consecutive trials share all but two sweeps (2 x (trials + replicates - 1) "
        "sweeps instead of 2 x trials x replicates)",
    )
    parser.add_argument("--threshold", default="10%", help="compare's threshold")
    parser.add_argument("--alpha", type=float, default=0.01, help="compare's alpha")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results") / f"selftest-{time.strftime('%Y%m%d-%H%M%S')}",
        help="folder for the sweeps and the figures",
    )
    parser.add_argument("runner_args", nargs="*", help="extra `harness run` options, after --")
    args = parser.parse_args(argv)
    try:
        if args.trials < 1 or args.replicates < 1:
            raise InvalidParameterError("--trials and --replicates must be >= 1")
        figures = run_selftest(
            args.out,
            trials=args.trials,
            slowdown=args.slowdown,
            threshold=parse_threshold(args.threshold),
            alpha=args.alpha,
            runner_args=["--iterations", str(args.iterations), *args.runner_args],
            replicates=args.replicates,
            chained=args.chained,
        )
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (args.out / "selftest.json").write_text(json.dumps(figures, indent=2))
    markdown = to_markdown(figures)
    (args.out / "selftest.md").write_text(markdown)
    print()
    print(markdown)
    return 0 if figures["aa_target_met"] and figures["slowdown_target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
