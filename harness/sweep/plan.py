"""What a sweep will run: its options resolved, resumed and expanded into configurations.

This is the part of ``python -m harness run`` that decides before anything is
measured: the timing protocols (:data:`MODES`), the options given on the command
line merged with a resumed run's ``meta.json`` and the protocol's defaults
(:func:`resolve_sweep`), the configurations in run order (:func:`build_configurations`)
and the per-iteration estimates that decide which configurations exceed the time
budget (:class:`Estimator`). The decisions themselves are described in
:mod:`harness.sweep.runner`.

It may read a run folder (``meta.json``) but never writes one, starts no process
and times nothing; :mod:`harness.sweep.runner` does those.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import socket
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.model import args as types
from harness.model.errors import DataFileError, InvalidParameterError
from harness.sweep.lock import LOCK_FILE
from harness.sweep.results import META_FILE, SCHEMA_VERSION, config_id, load_meta
from harness.sweep.spec import CHECK_ITERATIONS, iteration_seconds_at

RESULTS_ROOT = Path("results")


@dataclass(frozen=True)
class Mode:
    """A timing protocol and the sweep it runs by default.

    Attributes
    ----------
    warmups, values : int
        pyperf warm-up and kept values per phase (per process); ``values`` is what
        ``--iterations`` sets.
    processes : int
        0: time in the configuration's own process; P: pyperf worker processes per phase.
    min_time : float
        pyperf's minimum seconds per value (sets the loop count of fast phases).
    time_budget : float
        Default ``--time-budget`` (seconds per configuration).
    sizes : dict
        Default sizes (n) per workload.
    rounds : (int, int)
        Default ``--rounds``: undisturbed processes every configuration gets, and the
        most processes (attempts) one may get (:mod:`harness.sweep.rounds`).
    micro_rounds : (int, int) or None
        The same for the micro-problems' configurations (None: ``rounds``); an explicit
        ``--rounds`` sets both.
    sweep_budget : float
        Default ``--sweep-budget``: wall seconds after which no extra round starts.
    workloads : tuple of str or None
        The GMM workloads swept when ``--workloads`` is not given (None: every one);
        ``sizes`` has sizes for the others too, for when they are asked for.
    problems : tuple of str
        The problems swept when ``--problems`` is not given
        (:mod:`harness.model.problems`).
    """

    name: str
    warmups: int
    values: int
    processes: int
    min_time: float
    time_budget: float
    sizes: dict[str, tuple[int, ...]]
    rounds: tuple[int, int] = (3, 6)
    sweep_budget: float = 600.0
    workloads: tuple[str, ...] | None = None
    problems: tuple[str, ...] = ("gmm",)
    micro_rounds: tuple[int, int] | None = None


# Default sizes: schreiber, the workload whose size axis the charts and crossovers are
# about, at its own size and a hundredth of it (where pools and clusters cost more than
# they save), and quinn at its own size (many components: the E-step dominates). The
# sizes between, quinn's smaller size and highdim (many dimensions) are rigorous's;
# quick measures every workload, and `--workloads highdim` adds it to a default sweep.
# Quick keeps schreiber at 1e5, where parallel speedup is already visible (the CI
# expectations check it there), and the others small.
#
# What the default sweep costs decides the rest, and on two cores the fixed cost of a
# process dominates it: process start, imports, a process strategy's pool or a dask
# cluster, and per phase pyperf's calibration and values of at least min_time each.
# With every strategy at two worker counts, a size costs about twenty-five processes
# per round, and the pools, clusters and library fits among them cost seconds each
# however small the data; so the budget of 15 minutes allows three sizes at two
# processes each, with room to replace the processes that were disturbed (four sizes
# took the whole budget for the two mandatory rounds and left none):
#
# * min_time is 0.02 s, as in quick: still far above timer resolution for these
#   millisecond calls, and a value's own noise is small next to the process-to-process
#   spread that the processes measure;
# * three values per phase and process (six over the two mandatory processes): values
#   inside one process agree to a few per cent, so the information is in the processes;
# * a later process times only the iteration phase, the one the stopping rule and the
#   verdicts rest on: its job is to replicate that time across processes, while the
#   E/M split and prepare are compared within the first process;
# * two mandatory processes per configuration (a CI over processes from their range),
#   and up to five where the CI is wide or a process was disturbed, while the sweep's
#   wall time is within sweep_budget (a configuration gets its next process only if
#   its previous process's duration still fits, so the adaptive part cannot push the
#   sweep past sweep_budget by more than one process);
# * the time budget is what a configuration may cost over its mandatory processes
#   (Sweep.process_budget_for): it decides which of the NumPy, SciPy and pure-Python
#   strategies run at the larger sizes, and nothing is hard-coded.
#
# The default sweep also measures the micro-problems (summarize and pairwise) at three
# sizes each, spread over their axes so that the overhead-against-work crossovers fall
# between measured sizes. They get one process each (micro_rounds, the quick protocol's
# rule): at two processes their mandatory rounds alone took the sweep past 15 minutes and
# left no adaptive round for GMM, while their speed-ups differ by factors, not per cent.
#
# The first process of a configuration calibrates pyperf's loop count and runs the
# full correctness check; later ones reuse the loop count (one warm-up value instead
# of a calibration) and run one check iteration as a warm-up. Warm-ups are 0 in the
# in-process modes: pyperf's calibration calls (or the one warm-up value) precede the
# values in the same process, after the check iterations. The quick protocol (CI)
# keeps one process of 3 values per configuration and a second only in place of a
# disturbed one: the CI workflow replicates whole quick runs, so its processes come
# from the replicates. Rigorous measures two sizes of every workload with pyperf's own
# worker processes and every phase in every process, with no time pressure.
_DEFAULT_SIZES = {
    "schreiber": (40_000, 4_000_000),
    "quinn": (130_000,),
    "highdim": (20_000,),  # only when asked for
}
_DEFAULT_WORKLOADS = ("schreiber", "quinn")
_ALL_PROBLEMS = ("gmm", "summarize", "pairwise")
_QUICK_SIZES = {"schreiber": (100_000,), "quinn": (5_000,), "highdim": (5_000,)}
_RIGOROUS_SIZES = {
    "schreiber": (40_000, 400_000, 4_000_000),
    "quinn": (13_000, 130_000),
    "highdim": (20_000, 200_000),
}

# One row per protocol, fields in the order of :class:`Mode`.
# fmt: off
_MODE_ROWS = (
    # name   warmups values processes min_time time_budget sizes rounds sweep_budget workloads
    #        problems micro_rounds
    ("quick", 0, 3, 0, 0.02, 10.0, _QUICK_SIZES, (1, 2), 480.0, None, ("gmm",)),
    ("default", 0, 3, 0, 0.02, 30.0, _DEFAULT_SIZES, (2, 5), 840.0, _DEFAULT_WORKLOADS,
     _ALL_PROBLEMS, (1, 2)),
    ("rigorous", 1, 5, 3, 0.10, 1800.0, _RIGOROUS_SIZES, (3, 8), 3600.0, None, _ALL_PROBLEMS),
)
# fmt: on
MODES: dict[str, Mode] = {row[0]: Mode(*row) for row in _MODE_ROWS}


@dataclass(frozen=True)
class Protocol:
    """What makes two runs' timings comparable; a resumed run must keep it."""

    mode: str
    warmups: int
    values: int
    processes: int
    min_time: float
    check_iterations: int
    seed: int


@dataclass(frozen=True)
class Configuration:
    """One ``(workload, n, strategy, workers)`` of a sweep and what is known up front."""

    workload: str
    n: int
    d: int
    k: int
    strategy: str
    kind: str
    workers: int
    oversubscribed: bool
    skip_reason: str = ""  # decided before any process starts (unavailable, serial)
    problem: str = "gmm"  # harness.model.problems; the workload names it

    @property
    def config_id(self) -> str:
        return config_id(self.workload, self.n, self.strategy, self.workers)


@dataclass
class Sweep:
    """A resolved sweep: every option decided, validated, ready to run."""

    run_dir: Path
    run_id: str
    protocol: Protocol
    time_budget: float
    workloads: list[str]
    sizes: dict[str, list[int]]
    workers: list[int]
    strategies: list[str]
    arguments: dict[str, Any] = field(default_factory=dict)  # as stored in meta.json
    resume: bool = False
    problems: list[str] = field(default_factory=lambda: ["gmm"])
    min_processes: int = 3
    max_processes: int = 6
    sweep_budget: float = math.inf
    micro_rounds: tuple[int, int] | None = None  # None: the micro-problems take the above

    def rounds_for(self, problem: str) -> tuple[int, int]:
        """``(min_processes, max_processes)`` of a configuration of ``problem``."""
        if problem != "gmm" and self.micro_rounds is not None:
            return self.micro_rounds
        return self.min_processes, self.max_processes

    def process_budget_for(self, problem: str) -> float:
        """Seconds of timed work one process of ``problem`` may be estimated to take.

        ``time_budget`` is what a configuration may cost over its mandatory processes:
        the budget judges the configuration the sweep will pay for, not its first
        process alone. The first process, which also calibrates and checks, is the most
        expensive one, so its share is a conservative estimate.
        """
        return self.time_budget / max(1, self.rounds_for(problem)[0])


def _split(values: Sequence[str] | str | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _parse_size(text: str) -> int:
    return types.as_parameter_error(types.size, text, "--sizes")


def _parse_workers(text: str) -> int:
    return types.as_parameter_error(types.workers, text, "--workers")


def _per_mode(field: str) -> str:
    """``"<value> quick, <value> default, ..."`` of one protocol field, for --help."""

    def shown(value: object) -> str:
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{shown(getattr(mode, field))} {name}" for name, mode in MODES.items())


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m harness run`` (defaults depend on the protocol)."""
    parser.description = (
        f"{parser.description}. Each configuration (workload, n, strategy, workers) runs "
        "in fresh processes with their thread counts set before NumPy loads; see "
        "harness/sweep/README.md for the decisions (serial strategies, budget, resume)."
    )
    parser.add_argument(
        "--workloads",
        nargs="+",
        metavar="NAME",
        default=None,
        help="workloads to run (space or comma separated; default: all)",
    )
    # Options whose default depends on the protocol or on a resumed run's meta.json.
    options = (
        ("--problems", None, "P1,P2,...", "problems to sweep: gmm, summarize, pairwise "
         "(default: gmm in --quick, all three otherwise); each brings its workloads, "
         "sizes and strategies"),
        ("--sizes", None, "N1,N2,...", "values of n, for every workload (accepts 1e5, "
         "100_000; default: per workload, see MODES in harness/sweep/plan.py)"),
        ("--workers", None, "W1,W2,...", "worker counts (default: 1,2)"),
        ("--strategies", None, "A,B,...", "strategies (default: every registered one; "
         "unavailable ones are recorded as skipped)"),
        ("--iterations", types.positive_int, "N", "timed values per phase and process "
         f"(each value of the iteration phase is one EM iteration; default {_per_mode('values')})"),
        ("--out", types.output_folder, "DIR", "results folder (default: results/<timestamp>)"),
        ("--rounds", None, "MIN[,MAX]", "fresh processes per configuration: at least MIN "
         "undisturbed ones, and up to MAX attempts while the CI of the median is wider than "
         f"+-3%% or a process was disturbed (default {_per_mode('rounds')}, and "
         f"{','.join(map(str, MODES['default'].micro_rounds))} for the micro-problems in the "
         "default protocol; MAX defaults to 2 x MIN; given, it "
         "applies to every problem)"),
        ("--sweep-budget", types.seconds_or_inf, "SECONDS", "no extra round (beyond MIN) "
         f"starts once the sweep has run this long (default {_per_mode('sweep_budget')}; "
         "'inf' for none)"),
        ("--time-budget", types.seconds_or_inf, "SECONDS", "skip a configuration whose "
         "estimated timed work over its MIN processes (--rounds) exceeds this (default "
         f"{_per_mode('time_budget')}; 'inf' for none)"),
        ("--scheduler", None, "ADDRESS", "dask strategy: use the scheduler at "
         "tcp://HOST:PORT instead of a LocalCluster (sets GMM_HARNESS_DASK_SCHEDULER for "
         "the measurement processes)"),
    )  # fmt: skip
    for flag, kind, metavar, text in options:
        parser.add_argument(flag, type=kind, default=None, metavar=metavar, help=text)
    protocol = parser.add_mutually_exclusive_group()
    protocol.add_argument(
        "--quick",
        action="store_true",
        help="CI protocol: one or two sizes per workload, one process of short values per "
        "configuration (a second replaces a disturbed one)",
    )
    protocol.add_argument(
        "--rigorous",
        action="store_true",
        help="pyperf worker processes per phase, more values (slow)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (default: the latest under "
        "results/): configurations already ok are kept, the rest run",
    )


def latest_run(root: Path = RESULTS_ROOT) -> Path:
    """The most recently written run folder under ``root`` (not the CI baseline)."""
    candidates = [
        path
        for path in root.glob("*/")
        if path.is_dir() and (path / META_FILE).is_file() and path.name != "baseline"
    ]
    if not candidates:
        raise DataFileError(f"nothing to resume: no run folder with {META_FILE} under {root}/")
    return max(candidates, key=lambda path: (path / META_FILE).stat().st_mtime)


def _new_run_id(root: Path) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id, suffix = stamp, 1
    while (root / run_id).exists():
        suffix += 1
        run_id = f"{stamp}-{suffix}"
    return run_id


def resolve_sweep(args: argparse.Namespace) -> Sweep:
    """Decide every option: explicit ones, else the resumed run's, else the protocol's.

    Raises
    ------
    HarnessError
        Unknown workload or strategy (with the valid names), bad sizes or worker
        counts, a folder that exists without ``--resume``, or one that cannot be
        resumed (other schema or timing protocol).
    """
    import strategies
    from harness.model.problems import get_problem, micro_workloads
    from harness.model.workloads import WORKLOADS

    stored: dict[str, Any] = {}
    if args.resume:
        run_dir = Path(args.out) if args.out else latest_run()
        meta = load_meta(run_dir)
        schema = meta.get("schema_version")
        if schema != SCHEMA_VERSION:
            raise DataFileError(
                f"cannot resume {run_dir}: it was written with results schema {schema!r}, "
                f"this harness writes schema {SCHEMA_VERSION}; start a new run"
            )
        stored = dict(meta.get("sweep") or {})
        _warn_other_machine(meta, run_dir)
        run_id = str(meta.get("run_id") or run_dir.name)
    elif args.out:
        run_dir = Path(args.out)
        if run_dir.exists() and any(path.name != LOCK_FILE for path in run_dir.iterdir()):
            raise InvalidParameterError(
                f"{run_dir} exists and is not empty; add --resume to continue that run or "
                "choose another --out"
            )
        run_id = run_dir.name
    else:
        run_id = _new_run_id(RESULTS_ROOT)
        run_dir = RESULTS_ROOT / run_id

    explicit_mode = "quick" if args.quick else "rigorous" if args.rigorous else None
    mode_name = explicit_mode or stored.get("mode") or "default"
    if args.resume and explicit_mode and stored.get("mode") not in (None, explicit_mode):
        raise InvalidParameterError(
            f"{run_dir} was measured with the {stored['mode']} protocol; resume it without "
            f"--{explicit_mode} (timings of different protocols are not mixed)"
        )
    mode = MODES[mode_name]
    values = args.iterations or stored.get("iterations") or mode.values
    if args.resume and args.iterations and stored.get("iterations") not in (None, args.iterations):
        raise InvalidParameterError(
            f"{run_dir} was measured with --iterations {stored['iterations']}; resume it "
            "with the same value (timings of different protocols are not mixed)"
        )
    protocol = Protocol(
        mode=mode.name,
        warmups=mode.warmups,
        values=int(values),
        processes=mode.processes,
        min_time=mode.min_time,
        check_iterations=CHECK_ITERATIONS,
        seed=0,
    )
    if args.resume and stored.get("protocol") and stored["protocol"] != asdict(protocol):
        raise InvalidParameterError(
            f"{run_dir} was measured with the timing protocol {stored['protocol']}, this "
            f"harness would use {asdict(protocol)}; start a new run"
        )

    # The problem axis: each problem brings its workloads (names unique across problems).
    problem_texts = (
        _split(getattr(args, "problems", None)) or stored.get("problems") or list(mode.problems)
    )
    problem_names = list(dict.fromkeys(get_problem(text).name for text in problem_texts))
    micro = micro_workloads()
    valid_workloads = {
        name: problem
        for problem in problem_names
        for name in (WORKLOADS if problem == "gmm" else get_problem(problem).workloads)
    }
    default_workloads = [
        name
        for name, problem in valid_workloads.items()
        if (problem == "gmm" and (mode.workloads is None or name in mode.workloads))
        or (problem != "gmm" and micro[name].swept)
    ]
    workload_names = _split(args.workloads) or list(stored.get("workloads") or default_workloads)
    workload_names = [name.lower() for name in workload_names]
    unknown = [name for name in workload_names if name not in valid_workloads]
    if unknown:
        raise InvalidParameterError(
            f"unknown workload(s) {', '.join(map(repr, unknown))} for problem(s) "
            f"{', '.join(problem_names)}; valid names: {', '.join(valid_workloads)}"
        )
    workload_names = list(dict.fromkeys(workload_names))

    size_texts = _split(args.sizes) if args.sizes is not None else stored.get("sizes")
    if size_texts:
        explicit_sizes = sorted({_parse_size(str(text)) for text in size_texts})
        sizes = {name: list(explicit_sizes) for name in workload_names}
    else:
        explicit_sizes = None
        sizes = {
            name: list(
                mode.sizes[name]
                if name in WORKLOADS
                else micro[name].quick_sizes
                if mode.name == "quick"
                else micro[name].default_sizes
                if mode.name == "default"
                else micro[name].sizes
            )
            for name in workload_names
        }
    for name in workload_names:
        if name not in WORKLOADS:
            continue  # micro-problems take any n >= 1
        k = WORKLOADS[name].k
        too_small = [n for n in sizes[name] if n < max(k, 2)]
        if too_small:
            raise InvalidParameterError(
                f"--sizes {too_small} too small for workload {name!r}: it fits k = {k} "
                "components, so n must be at least k (and 2)"
            )

    worker_texts = _split(args.workers) if args.workers is not None else stored.get("workers")
    workers = sorted({_parse_workers(str(text)) for text in (worker_texts or ["1", "2"])})

    if args.strategies is not None:
        names = _split(args.strategies)
        if not names:
            raise InvalidParameterError("--strategies: give at least one name")
    else:
        names = list(
            stored.get("strategies")
            or [name for problem in problem_names for name in strategies.names(problem=problem)]
        )
    resolved = []
    for name in names:
        resolved.append(strategies.get_info(name).name)  # UnknownStrategyError lists names
    strategy_names = list(dict.fromkeys(resolved))

    budget = args.time_budget or stored.get("time_budget") or mode.time_budget
    rounds_text = getattr(args, "rounds", None)
    micro_rounds = None
    if rounds_text is not None:
        min_processes, max_processes = _parse_rounds(rounds_text)
    elif stored.get("rounds"):
        min_processes, max_processes = (int(value) for value in stored["rounds"])
        if stored.get("micro_rounds"):
            micro_rounds = tuple(int(value) for value in stored["micro_rounds"])
    else:
        min_processes, max_processes = mode.rounds
        micro_rounds = mode.micro_rounds
    sweep_budget = (
        getattr(args, "sweep_budget", None) or stored.get("sweep_budget") or mode.sweep_budget
    )
    arguments = {
        "problems": problem_names,
        "mode": mode.name,
        "iterations": protocol.values,
        "workloads": workload_names,
        "sizes": explicit_sizes,
        "resolved_sizes": sizes,
        "workers": workers,
        "strategies": strategy_names,
        "time_budget": budget,
        "rounds": [min_processes, max_processes],
        "micro_rounds": list(micro_rounds) if micro_rounds else None,
        "sweep_budget": sweep_budget,
        "protocol": asdict(protocol),
    }
    return Sweep(
        run_dir=run_dir,
        run_id=run_id,
        protocol=protocol,
        time_budget=float(budget),
        workloads=workload_names,
        sizes=sizes,
        workers=workers,
        strategies=strategy_names,
        arguments=arguments,
        resume=bool(args.resume),
        problems=problem_names,
        min_processes=min_processes,
        max_processes=max_processes,
        sweep_budget=float(sweep_budget),
        micro_rounds=micro_rounds,
    )


def _parse_rounds(text: str) -> tuple[int, int]:
    """``"3"`` -> (3, 6), ``"3,5"`` -> (3, 5): processes per configuration, at least and at most."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers) < 1:
        raise InvalidParameterError(
            f"--rounds: expected MIN or MIN,MAX processes per configuration (>= 1), got {text!r}"
        )
    low = numbers[0]
    high = numbers[1] if len(numbers) == 2 else 2 * low
    if high < low:
        raise InvalidParameterError(f"--rounds: MAX must be >= MIN, got {text!r}")
    return low, high


def _warn_other_machine(meta: dict[str, Any], run_dir: Path) -> None:
    before = meta.get("metadata") or {}
    from harness.sweep.metadata import cpu_model, git_revision

    now_host = {"hostname": socket.gethostname(), "cpu_model": cpu_model()}
    for key, value in now_host.items():
        if before.get(key) not in (None, value):
            warnings.warn(
                f"resuming {run_dir}, measured on {key} {before[key]!r}, on "
                f"{value!r}: rows record where each configuration ran",
                RuntimeWarning,
                stacklevel=3,
            )
    commit, _ = git_revision()
    if before.get("git_commit") not in (None, commit):
        warnings.warn(
            f"resuming {run_dir}, started at commit {before['git_commit'][:12]}, "
            f"at commit {commit[:12]}: rows record the commit that measured them",
            RuntimeWarning,
            stacklevel=3,
        )


def build_configurations(sweep: Sweep) -> list[Configuration]:
    """Every configuration in run order: workload, then n ascending, strategy, workers.

    Smaller sizes run first so their timings can estimate the larger ones.
    """
    import strategies
    from harness.model.problems import problem_of_workload
    from harness.model.threads import effective_workers
    from harness.model.workloads import WORKLOADS

    smallest_workers = min(sweep.workers)
    configurations = []
    for workload in sweep.workloads:
        problem = problem_of_workload(workload).name
        # A micro-problem's data is a vector: d = 1, k = 0 (no components).
        d, k = (WORKLOADS[workload].d, WORKLOADS[workload].k) if problem == "gmm" else (1, 0)
        for n in sorted(sweep.sizes[workload]):
            for name in sweep.strategies:
                info = strategies.get_info(name)
                if info.problem != problem:
                    continue  # each workload runs the strategies of its own problem
                serial = info.cls is not None and not info.cls.parallel
                for workers in sweep.workers:
                    _, oversubscribed = effective_workers(workers, warn=False)
                    reason = ""
                    if not info.available:
                        reason = f"unavailable: {info.reason}"
                    elif serial and workers != smallest_workers:
                        reason = (
                            f"serial strategy: measured at workers={smallest_workers} "
                            "only (more workers would change nothing but BLAS threads)"
                        )
                    configurations.append(
                        Configuration(
                            workload,
                            n,
                            d,
                            k,
                            info.name,
                            info.kind,
                            workers,
                            oversubscribed,
                            reason,
                            problem,
                        )
                    )
    return configurations


def _work(workload: str, n: int) -> int:
    """Work units of one iteration at ``n``: n for EM and summarize, n^2 for pairwise.

    Estimates scale with work, not with n, so that an O(n^2) problem is not
    extrapolated as if it were linear.
    """
    from harness.model.problems import problem_of_workload

    return problem_of_workload(workload).work(n)


def _work_label(workload: str, work: int) -> str:
    from harness.model.problems import problem_of_workload

    problem = problem_of_workload(workload)
    return f"n={work:,}" if problem.work(2) == 2 else f"{work:,} {problem.work_unit}"


class Estimator:
    """Per-iteration seconds measured so far, by (workload, strategy, workers)."""

    def __init__(self) -> None:
        # (workload, strategy, workers) -> {n: (seconds, is_lower_bound)}
        self._points: dict[tuple[str, str, int], dict[int, tuple[float, bool]]] = {}

    def add(
        self,
        workload: str,
        strategy: str,
        workers: int,
        n: int,
        seconds: float,
        *,
        lower_bound: bool = False,
    ) -> None:
        """Record one iteration's seconds at ``n`` (``lower_bound``: it took at least that)."""
        if math.isfinite(seconds) and seconds > 0:
            key = (workload, strategy, int(workers))
            work = _work(workload, int(n))
            self._points.setdefault(key, {})[work] = (float(seconds), bool(lower_bound))

    def iteration_seconds(self, configuration: Configuration) -> tuple[float, str] | None:
        """Seconds per iteration at the configuration's n, and where they come from.

        Only smaller sizes count (a larger one would mean this size was never run).
        The same worker count is preferred; failing that, the slowest other count
        (the conservative guess).

        Returns
        -------
        (seconds, source) or None
            ``source`` reads e.g. ``scaled from n=40,000: 12.3 ms/iteration``.
        """
        candidates = []
        target = _work(configuration.workload, configuration.n)
        for (workload, strategy, workers), points in self._points.items():
            if workload != configuration.workload or strategy != configuration.strategy:
                continue
            smaller = {n: point for n, point in points.items() if n < target}
            if not smaller:
                continue
            estimate = iteration_seconds_at(
                [(n, seconds) for n, (seconds, _) in smaller.items()], target
            )
            source_n = max(smaller)
            source_t, lower_bound = smaller[source_n]
            source = (
                f"scaled from {_work_label(configuration.workload, source_n)}: "
                f"{'over ' if lower_bound else ''}"
                f"{source_t * 1e3:.1f} ms/iteration"
                + ("" if workers == configuration.workers else f" with {workers} worker(s)")
            )
            candidates.append((workers == configuration.workers, estimate, source))
        if not candidates:
            return None
        same = [candidate for candidate in candidates if candidate[0]]
        _, estimate, source = same[0] if same else max(candidates, key=lambda c: c[1])
        return estimate, source


__all__ = [
    "MODES",
    "RESULTS_ROOT",
    "Configuration",
    "Estimator",
    "Mode",
    "Protocol",
    "Sweep",
    "build_configurations",
    "configure_parser",
    "latest_run",
    "resolve_sweep",
]
