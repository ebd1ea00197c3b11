"""Command line: ``python -m harness COMMAND ...``.

Built-in commands live here (``fit``, ``strategies``); the others live in their own
modules, each exposing ``configure_parser(parser)`` and ``main(args) -> int``, and are
listed with their one-line help in ``_COMMANDS``. Only the module of the command being
run is imported, so ``--help`` and every command start without loading the others'
libraries (pandas, matplotlib, SciPy).

Exit status: 0 success, 1 a check or comparison failed, 2 bad input (every
:class:`~harness.model.errors.HarnessError` becomes one ``error: ...`` line), 130 Ctrl-C
("interrupted"), 143 SIGTERM where a command turns it into an exception ("terminated").

It parses and dispatches only: each command's work lives in its module, and no
module of the harness imports this one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from harness.model import args as types
from harness.model.errors import HarnessError, InvalidParameterError, Terminated

# command name -> (module implementing it, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "harness.sweep.runner",
        "sweep strategies x workloads x sizes x worker counts, pyperf-timed, into "
        "results/<run-id>/ (pyperf JSON, tidy CSV/Parquet table, meta.json)",
    ),
    "plot": (
        "harness.report.markdown",
        "draw the speedup charts and write report.md for a results folder",
    ),
    "compare": (
        "harness.gate.compare",
        "compare two result folders: ratio of medians with a bootstrap confidence interval "
        "and a Mann-Whitney U test per configuration; exit 1 on a significant slowdown "
        "beyond the threshold",
    ),
    "check": (
        "harness.gate.expectations",
        "check a run against the scale-free expectations (speedups, ratios between "
        "strategies, log-likelihood agreement); exit 1 if any fails",
    ),
    "bench-compiled": (
        "harness.bench.compiled",
        "compiled strategies (cython, openmp, openmp-components, joblib-threads) at 1 and 2 "
        "workers vs scikit-learn's E+M step per iteration, side by side, with their targets",
    ),
    "bench-processes": (
        "harness.bench.processes",
        "process strategies' targets: peak PSS vs einsum, per-iteration time vs the same "
        "kernel in one process (crossover in n), prepare per start method, bytes per iteration",
    ),
    "demo": (
        "harness.demo",
        "teaching demos: `demo race` shows a lost-update race and two fixes (OpenMP)",
    ),
}
#: Commands implemented in this module: name -> (one-line help, description).
_BUILT_IN: dict[str, tuple[str, str]] = {
    "fit": (
        "fit one strategy on a workload or a data file and print per-iteration times",
        "Fit a full-covariance Gaussian mixture with one strategy and report "
        "per-iteration wall time, the mean log-likelihood and the fitted parameters.",
    ),
    "strategies": (
        "list every strategy, its kind and whether it can run here",
        "List the registered strategies with their kind, availability and, "
        "for unavailable ones, the reason.",
    ),
}
#: The modules of the commands above (tests and tools list them).
_COMMAND_MODULES = {command: module for command, (module, _) in _COMMANDS.items()}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are two lines: a one-line usage and the error.

    argparse's own usage for ``fit`` or ``run`` wraps over half a screen above the one
    line that says what went wrong; the full usage is one ``--help`` away.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"usage: {self.prog} [options] (--help for the list)\nerror: {message}\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something and the help text does not already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or any(
            action.default is value for value in (None, False, argparse.SUPPRESS)
        ):
            return text
        return super()._get_help_string(action)


def _add_command(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, description: str
) -> argparse.ArgumentParser:
    """A command's parser: its line in the command list, its description, the help format."""
    return subparsers.add_parser(
        name, help=help_text, description=description, formatter_class=_HelpFormatter
    )


#: Iteration cap of ``fit --tol`` when ``--max-iter`` is not given.
DEFAULT_MAX_ITER = 100
#: Iterations of ``fit`` when neither ``--iterations`` nor ``--tol`` is given.
DEFAULT_ITERATIONS = 10


def _add_fit_parser(subparsers: argparse._SubParsersAction) -> None:
    from harness.model.workloads import WORKLOADS

    parser = _add_command(subparsers, "fit", *_BUILT_IN["fit"])
    parser.add_argument(
        "--strategy", required=True, help="strategy name (see `python -m harness strategies`)"
    )
    parser.add_argument(
        "--workers",
        type=types.workers,
        default=1,
        help=f"threads or processes the strategy uses (1 to {types.MAX_WORKERS})",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--workload", choices=sorted(WORKLOADS), help="synthetic workload to generate"
    )
    source.add_argument(
        "--data", metavar="FILE", help="your own data: .npy or .csv, one point per row"
    )
    parser.add_argument(
        "--n",
        type=types.size,
        default=None,
        help="points to generate (workload default when omitted; refused when the "
        "estimated memory exceeds what is available)",
    )
    parser.add_argument(
        "--k",
        type=types.positive_int,
        default=None,
        help="components (required with --data; workload default otherwise)",
    )
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument(
        "--iterations",
        type=types.positive_int,
        default=None,
        help="run exactly this many iterations (default 10)",
    )
    stop.add_argument(
        "--tol",
        type=types.tolerance,
        default=None,
        help="run until the mean log-likelihood changes by less than this "
        "(at most --max-iter iterations)",
    )
    parser.add_argument(
        "--max-iter",
        type=types.positive_int,
        default=None,
        help=f"iteration cap with --tol (default {DEFAULT_MAX_ITER}); an error without --tol",
    )
    parser.add_argument(
        "--seed",
        type=types.seed,
        default=0,
        help="seed for data and initialisation (0 to 4294967295)",
    )
    parser.add_argument(
        "--no-fused",
        action="store_true",
        help="use separate E/M steps even if the strategy has a fused iteration",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print exactly one JSON object on stdout instead of text",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="dask strategy: use the scheduler at tcp://HOST:PORT instead of a LocalCluster "
        "(sets GMM_HARNESS_DASK_SCHEDULER)",
    )
    parser.set_defaults(handler=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    import numpy as np

    import strategies
    from harness.model.gmm import initial_params
    from harness.model.threads import effective_workers
    from harness.model.workloads import dataset_from_file, make_workload
    from harness.sweep.em import fit

    if args.max_iter is not None and args.tol is None:
        # A cap on a count that is already fixed would silently do nothing.
        raise InvalidParameterError(
            "--max-iter caps the iterations of --tol; without --tol the fit runs a fixed "
            "number of iterations: give --iterations N instead"
        )
    strategy_cls = strategies.get_strategy(args.strategy, problem="gmm")
    if args.scheduler is not None:
        import os

        os.environ["GMM_HARNESS_DASK_SCHEDULER"] = args.scheduler
    if args.data is not None:
        if args.k is None:
            raise InvalidParameterError("--data needs --k (the number of components)")
        if args.n is not None:
            raise InvalidParameterError("--n applies to --workload only")
        dataset = dataset_from_file(args.data, args.k, seed=args.seed)
        for note in dataset.notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        from harness.model.footprint import check_fits
        from harness.model.workloads import WORKLOADS

        spec = WORKLOADS[args.workload]
        # Before generating anything: the strategy's kind decides whether workers hold
        # a second copy of the data.
        check_fits(
            spec.n if args.n is None else args.n,
            spec.d,
            spec.k if args.k is None else args.k,
            kind=strategy_cls.kind,
            what=f"workload {spec.name} with strategy {strategy_cls.name}",
        )
        dataset = make_workload(args.workload, n=args.n, seed=args.seed)
        if args.k is not None:
            from harness.model.validation import check_n_components

            dataset = type(dataset)(
                dataset.name, dataset.X, check_n_components(args.k, dataset.n), dataset.seed
            )
    if not strategy_cls.parallel and args.workers > 1:
        print(
            f"note: {strategy_cls.name} is a serial strategy: --workers {args.workers} gives "
            "it no more cores (at most more BLAS threads inside library calls)",
            file=sys.stderr,
        )
    workers, oversubscribed = effective_workers(args.workers)
    init = initial_params(dataset.X, dataset.k, seed=args.seed)
    if args.tol is not None:
        max_iter, tol = args.max_iter or DEFAULT_MAX_ITER, args.tol
    else:
        max_iter, tol = (args.iterations or DEFAULT_ITERATIONS), None

    def progress(iteration: int, loglik: float, seconds: float) -> None:
        if not args.json:
            print(f"{iteration + 1:>5}  {seconds * 1e3:>12.3f}  {loglik:>+18.10f}", flush=True)

    if not args.json:
        print(
            f"strategy {strategy_cls.name} ({strategy_cls.kind}), workers {workers}"
            f"{' (OVERSUBSCRIBED)' if oversubscribed else ''}; {dataset.name}: "
            f"n={dataset.n:,} d={dataset.d} k={dataset.k}"
        )
        print(f"{'iter':>5}  {'time (ms)':>12}  {'mean log-lik':>18}")
    with strategy_cls(workers=workers) as strategy:
        result = fit(
            strategy,
            dataset.X,
            init,
            max_iter=max_iter,
            tol=tol,
            use_fused=False if args.no_fused else None,
            on_iteration=progress,
        )

    if args.json:
        payload = {
            "strategy": result.strategy,
            "workers": result.workers,
            "n": dataset.n,
            "d": dataset.d,
            "k": dataset.k,
            "iterations": result.iterations,
            "init": result.init.to_dict(),
            "final": result.final.to_dict(),
            "loglik": result.loglik,
            "iteration_seconds": result.iteration_seconds,
            "converged": result.converged,
            "prepare_seconds": result.prepare_seconds,
            "used_fused": result.used_fused,
            "oversubscribed": oversubscribed,
            "collapsed": [[i, list(c)] for i, c in result.collapsed],
            "runtime_info": result.runtime_info,
            "whole_fit": result.whole_fit,
            "fixed_seconds": None if np.isnan(result.fixed_seconds) else result.fixed_seconds,
        }
        from harness.sweep.formats import json_default

        json.dump(payload, sys.stdout, default=json_default)
        sys.stdout.write("\n")
        return 0

    times = np.array(result.iteration_seconds)
    print()
    print(f"prepare          {result.prepare_seconds * 1e3:10.3f} ms")
    print(
        f"per iteration    {np.median(times) * 1e3:10.3f} ms median "
        f"(min {times.min() * 1e3:.3f}, max {times.max() * 1e3:.3f}) over {len(times)} "
        f"iteration(s){', fused one-pass' if result.used_fused else ''}"
    )
    if result.whole_fit and np.isnan(result.fixed_seconds):
        print("                 a library's whole fit of one iteration, fixed cost included")
    elif result.whole_fit:
        print(
            f"                 a library's whole fit: differenced from fits of 1 and "
            f"{result.iterations} iterations; fixed cost (set-up, own initialisation, "
            f"final E-step) {result.fixed_seconds * 1e3:.3f} ms"
        )
    print(f"final log-lik    {result.loglik[-1]:+.10f} (mean per point)")
    if tol is not None:
        print(f"converged        {'yes' if result.converged else 'no'} (tol {tol:g})")
    if result.collapsed:
        print(f"collapsed        {result.collapsed} (floored, see warnings)")
    with np.printoptions(precision=4, suppress=True, linewidth=100):
        print("\nfitted parameters")
        for j in range(result.final.n_components):
            print(
                f"  component {j}: weight {result.final.weights[j]:.4f}  "
                f"mean {result.final.means[j]}"
            )
            if dataset.d <= 4:
                for line in str(result.final.covariances[j]).splitlines():
                    print(f"      {line}")
    return 0


def _add_strategies_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = _add_command(subparsers, "strategies", *_BUILT_IN["strategies"])
    parser.add_argument(
        "--json", action="store_true", help="print a JSON list of {name, kind, available, reason}"
    )
    parser.set_defaults(handler=_run_strategies)


def _run_strategies(args: argparse.Namespace) -> int:
    import strategies

    infos = list(strategies.registry().values())
    if args.json:
        json.dump([info.to_dict() for info in infos], sys.stdout)
        sys.stdout.write("\n")
        return 0
    width = max(len(info.name) for info in infos)
    for info in infos:
        if info.available:
            flags = []
            if info.cls is not None:
                flags += ["gil-free"] if info.cls.releases_gil else []
                flags += ["fused"] if info.cls.has_fused_iteration else []
                flags += ["compiled"] if info.cls.needs_compiled else []
            extra = f"{info.description}" + (f"  [{', '.join(flags)}]" if flags else "")
            print(f"{info.name:<{width}}  {info.kind:<11}  available    {extra}")
        else:
            print(f"{info.name:<{width}}  {info.kind:<11}  UNAVAILABLE  {info.reason}")
    return 0


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``argv``, only its command's module is imported.

    Without ``argv`` every command module is imported and configured (for tests and
    documentation tools). A command module that cannot be imported is an error.
    """
    parser = _Parser(
        prog="python -m harness",
        description="Benchmark harness: which way of parallelising Gaussian-mixture EM in "
        "Python is fastest for a problem size and core count, by how much, and why.",
        epilog="Run `python -m harness COMMAND --help` for each command's options.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_fit_parser(subparsers)
    _add_strategies_parser(subparsers)
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for command, (module_name, help_text) in _COMMANDS.items():
        sub = _add_command(subparsers, command, help_text, help_text)
        if chosen is None or chosen == command:
            module = importlib.import_module(module_name)
            module.configure_parser(sub)
            sub.set_defaults(handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return int(args.handler(args) or 0)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
