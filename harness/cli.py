"""Command line: ``python -m harness COMMAND ...``.

Built-in commands live here (``fit``, ``strategies``); the others live in their own
modules, each exposing ``HELP`` (one line), ``configure_parser(parser)`` and
``main(args) -> int``, and are listed in ``_COMMAND_MODULES``.

Exit status: 0 success, 1 a check or comparison failed, 2 bad input (every
:class:`~harness.model.errors.HarnessError` becomes one ``error: ...`` line), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from harness.model.args import positive_int, size
from harness.model.errors import HarnessError, InvalidParameterError

# command name -> module implementing it
_COMMAND_MODULES: dict[str, str] = {
    "run": "harness.sweep.runner",
    "plot": "harness.report.markdown",
    "compare": "harness.gate.compare",
    "check": "harness.gate.expectations",
    "bench-compiled": "harness.bench.compiled",
    "bench-processes": "harness.bench.processes",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something and the help text does not already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or any(
            action.default is value for value in (None, False, argparse.SUPPRESS)
        ):
            return text
        return super()._get_help_string(action)


def _add_fit_parser(subparsers: argparse._SubParsersAction) -> None:
    from harness.model.workloads import WORKLOADS

    parser = subparsers.add_parser(
        "fit",
        help="fit one strategy on a workload or a data file and print per-iteration times",
        description="Fit a full-covariance Gaussian mixture with one strategy and report "
        "per-iteration wall time, the mean log-likelihood and the fitted parameters.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--strategy", required=True, help="strategy name (see `python -m harness strategies`)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="threads or processes the strategy uses"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--workload", choices=sorted(WORKLOADS), help="synthetic workload to generate"
    )
    source.add_argument(
        "--data", metavar="FILE", help="your own data: .npy or .csv, one point per row"
    )
    parser.add_argument(
        "--n", type=size, default=None, help="points to generate (workload default when omitted)"
    )
    parser.add_argument(
        "--k",
        type=positive_int,
        default=None,
        help="components (required with --data; workload default otherwise)",
    )
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument(
        "--iterations",
        type=positive_int,
        default=None,
        help="run exactly this many iterations (default 10)",
    )
    stop.add_argument(
        "--tol",
        type=float,
        default=None,
        help="run until the mean log-likelihood changes by less than this "
        "(at most --max-iter iterations)",
    )
    parser.add_argument(
        "--max-iter", type=positive_int, default=100, help="iteration cap with --tol"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for data and initialisation")
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
    import strategies
    from harness.model.gmm import initial_params
    from harness.model.threads import effective_workers
    from harness.model.workloads import dataset_from_file, make_workload
    from harness.sweep.em import fit

    strategy_cls = strategies.get_strategy(args.strategy)
    if args.scheduler is not None:
        import os

        os.environ["GMM_HARNESS_DASK_SCHEDULER"] = args.scheduler
    if args.data is not None:
        if args.k is None:
            raise InvalidParameterError("--data needs --k (the number of components)")
        if args.n is not None:
            raise InvalidParameterError("--n applies to --workload only")
        dataset = dataset_from_file(args.data, args.k, seed=args.seed)
    else:
        dataset = make_workload(args.workload, n=args.n, seed=args.seed)
        if args.k is not None:
            from harness.model.validation import check_n_components

            dataset = type(dataset)(
                dataset.name, dataset.X, check_n_components(args.k, dataset.n), dataset.seed
            )
    workers, oversubscribed = effective_workers(args.workers)
    init = initial_params(dataset.X, dataset.k, seed=args.seed)
    if args.tol is not None:
        max_iter, tol = args.max_iter, args.tol
    else:
        max_iter, tol = (args.iterations or 10), None

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
        }
        json.dump(payload, sys.stdout, default=_json_default)
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


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _add_strategies_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "strategies",
        help="list every strategy, its kind and whether it can run here",
        description="List the registered strategies with their kind, availability and, "
        "for unavailable ones, the reason.",
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Benchmark harness: which way of parallelising Gaussian-mixture EM in "
        "Python is fastest for a problem size and core count, by how much, and why.",
        epilog="Run `python -m harness COMMAND --help` for each command's options.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_fit_parser(subparsers)
    _add_strategies_parser(subparsers)
    for command, module_name in _COMMAND_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not built yet
                continue
            raise
        sub = subparsers.add_parser(
            command,
            help=module.HELP,
            description=module.HELP,
            formatter_class=_HelpFormatter,
        )
        module.configure_parser(sub)
        sub.set_defaults(handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return int(args.handler(args) or 0)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
