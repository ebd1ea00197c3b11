"""``python -m harness demo race``: a shared counter updated in parallel, three ways.

The seed notebook's second lesson: a shared accumulator updated by several threads
without care gives wrong answers. A counter is incremented ``n`` times under an OpenMP
``prange`` (:mod:`kernels.micro_kernels`):

* ``unprotected``: a plain read-modify-write of one shared C variable through a
  volatile pointer (the compiler can neither keep it in a register nor turn it into a
  reduction). It exists to be wrong: two threads that read the same value both write
  value + 1, and one increment is lost.
* ``atomic``: the same update as ``#pragma omp atomic`` (a hardware atomic add, not a
  lock): always right, but every increment fights for one cache line.
* ``reduction``: OpenMP ``reduction(+)``: each thread counts privately and the counts
  are added once at the end. Right, and the cheapest.

For each it prints the expected value, the returned value and the time, then which
were wrong on this run; with ``--repeat N``, in how many of the N runs each was wrong.
The race is a matter of timing: a run in which the threads happen not to overlap
returns the right count even from the unprotected version.

Exit status 0; 1 if a protected version ever returns a wrong count (a kernel bug);
2 (one ``error:`` line) when the kernels are not built or have no
OpenMP, since then every version runs on one thread and there is no race to show.
Times are wall-clock of one call each, for orientation only (not a benchmark: no
warm-up, no repeats, no interference record).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

from harness.model.args import positive_int, size
from harness.model.errors import StrategyUnavailableError
from harness.model.threads import effective_workers

#: Increments per run by default: each thread's share lasts long enough that two
#: threads overlap for most of it, even when one is briefly descheduled.
DEFAULT_N = 10_000_000

#: (name, kernel function, how it is protected)
VERSIONS: tuple[tuple[str, str, str], ...] = (
    ("unprotected", "race_unprotected", "none: read, add, write a shared variable"),
    ("atomic", "race_atomic", "#pragma omp atomic on every increment"),
    ("reduction", "race_reduction", "OpenMP reduction(+): private counts added at the end"),
)


@dataclass
class VersionResult:
    """What one version returned over the runs."""

    name: str
    protection: str
    expected: int
    returned: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def wrong_runs(self) -> int:
        return sum(value != self.expected for value in self.returned)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("demo", choices=["race"], help="which demo to run")
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="runs of each version; reports how often each was wrong",
    )
    parser.add_argument("--threads", type=positive_int, default=2, help="OpenMP threads")
    parser.add_argument(
        "--n", type=size, default=DEFAULT_N, help="increments per run (the expected count)"
    )


def run_race(n: int, threads: int, repeat: int = 1) -> list[VersionResult]:
    """Run each version ``repeat`` times, interleaved (run 1 of each, then run 2, ...).

    Raises
    ------
    StrategyUnavailableError
        When the micro kernels are not built or were built without OpenMP.
    """
    import kernels

    reason = kernels.micro_unavailable_reason()
    if reason is None:
        module = kernels.load_micro()
        reason = module.openmp_unavailable_reason()
    if reason is not None:
        raise StrategyUnavailableError(
            f"cannot show the race: {reason}; without OpenMP every version runs on one "
            "thread, so the unprotected counter cannot lose an update"
        )
    results = [VersionResult(name, protection, n) for name, _, protection in VERSIONS]
    functions = [getattr(module, function) for _, function, _ in VERSIONS]
    for _ in range(repeat):
        for result, function in zip(results, functions, strict=True):
            start = time.perf_counter()
            value = function(n, threads)
            result.seconds.append(time.perf_counter() - start)
            result.returned.append(int(value))
    return results


def format_report(results: list[VersionResult], threads: int, repeat: int) -> list[str]:
    """The demo's text: a table of expected against returned, then the verdict."""
    n = results[0].expected
    lines = [
        f"race demo: one counter incremented {n:,} times under prange on {threads} OpenMP "
        f"thread{'s' if threads != 1 else ''}"
        + (f", {repeat} runs of each version" if repeat > 1 else ""),
        "",
    ]
    returned_label = "returned" if repeat == 1 else "returned (last)"
    header = f"{'version':<12} {'expected':>13} {returned_label:>15} {'lost':>11} {'time':>10}"
    if repeat > 1:
        header += f" {'wrong':>11}"
    lines.append(header + "  protection")
    for result in results:
        last = result.returned[-1]
        seconds = statistics.median(result.seconds)
        line = (
            f"{result.name:<12} {result.expected:>13,} {last:>15,} "
            f"{result.expected - last:>11,} {seconds * 1e3:>8.2f}ms"
        )
        if repeat > 1:
            line += f" {f'{result.wrong_runs}/{repeat}':>11}"
        lines.append(line + f"  {result.protection}")
    lines.append("")
    if repeat == 1:
        wrong = [result.name for result in results if result.wrong_runs]
        if wrong:
            lines.append(f"wrong on this run: {', '.join(wrong)}")
        else:
            lines.append(
                "wrong on this run: none (the threads did not collide this time; "
                "try --repeat 100 or a larger --n)"
            )
    else:
        for result in results:
            lines.append(f"{result.name}: wrong in {result.wrong_runs} of {repeat} runs")
    if any(r.wrong_runs for r in results if r.name != "unprotected"):
        lines.append("ERROR: a protected version returned a wrong count")
    lines.append(
        "(times: median wall-clock of single calls, on a shared machine; not a benchmark)"
        if repeat > 1
        else "(time: wall-clock of one call; not a benchmark)"
    )
    if threads == 1:
        lines.append("note: with 1 thread nothing runs concurrently, so nothing can race")
    return lines


def main(args: argparse.Namespace) -> int:
    threads, oversubscribed = effective_workers(args.threads, warn=False)
    results = run_race(args.n, threads, args.repeat)
    for line in format_report(results, threads, args.repeat):
        print(line)
    if oversubscribed:
        print(
            f"note: {threads} threads on fewer usable cores: threads take turns, so "
            "collisions are rarer than with one core per thread"
        )
    # A protected version that loses updates is a bug in the kernels, not a lesson.
    return 1 if any(r.wrong_runs for r in results if r.name != "unprotected") else 0


__all__ = ["VERSIONS", "VersionResult", "configure_parser", "format_report", "main"]
