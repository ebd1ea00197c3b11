"""Registry of strategies: short lowercase names mapped to classes.

Each entry names a module and a class; modules are imported when the registry is
first used, each on its own, so a strategy whose module fails to import (or whose
optional dependency or compiled kernel is missing) is listed as unavailable with
the reason and never breaks the others.

Adding a strategy: copy ``strategies/_template.py``, then add one line to
``_ENTRIES`` below. The test suite is parametrised over this registry, so the new
strategy is tested against the reference automatically.

One registry for every problem (:mod:`harness.model.problems`): each class declares the
``problem`` it solves (``gmm`` for :class:`~strategies.base.Strategy` subclasses, a
micro-problem for :class:`~strategies.micro.base.MicroStrategy` ones, registered as
``<problem>-<family>``, e.g. ``summarize-openmp``). ``names(problem=...)`` and
``registry(...)`` filter by it; without the argument they list every problem.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from harness.model.errors import (
    InvalidParameterError,
    StrategyUnavailableError,
    UnknownStrategyError,
)
from harness.model.problems import DEFAULT_PROBLEM, PROBLEMS
from harness.model.validation import look_up
from strategies.base import KINDS, Strategy
from strategies.micro.base import MicroStrategy

#: The base class a problem's interface requires.
_INTERFACE_BASES = {"em": Strategy, "array": MicroStrategy}

# (registry name, "module:Class"), in the order listings show them.
_ENTRIES: tuple[tuple[str, str], ...] = (
    ("python", "strategies.python_loops:PythonLoopsStrategy"),
    ("scipy", "strategies.scipy_stats:ScipyStrategy"),
    ("einsum", "strategies.einsum:EinsumStrategy"),
    ("sklearn", "strategies.sklearn_ref:SklearnStrategy"),
    ("cython", "strategies.cython_serial:CythonStrategy"),
    ("openmp", "strategies.openmp_chunks:OpenMPStrategy"),
    ("openmp-components", "strategies.openmp_components:OpenMPComponentsStrategy"),
    ("joblib-threads", "strategies.joblib_threads:JoblibThreadsStrategy"),
    ("multiprocessing", "strategies.multiprocessing_pool:MultiprocessingStrategy"),
    (
        "multiprocessing-components",
        "strategies.multiprocessing_pool:MultiprocessingComponentsStrategy",
    ),
    ("joblib-processes", "strategies.joblib_processes:JoblibProcessesStrategy"),
    ("numba", "strategies.numba_chunks:NumbaStrategy"),
    ("dask", "strategies.dask_cluster:DaskStrategy"),
    # kind "library": a peer library's whole fit, timed by differencing (strategies/library.py)
    ("sklearn-fit", "strategies.library_sklearn:SklearnFitStrategy"),
    ("onedal", "strategies.library_onedal:OneDALStrategy"),
    # micro-problems (prepare(x) / run() / close()), strategies/micro/
    ("summarize-python", "strategies.micro.python_loops:SummarizePython"),
    ("summarize-cython", "strategies.micro.cython_serial:SummarizeCython"),
    ("summarize-openmp", "strategies.micro.openmp:SummarizeOpenMP"),
    ("summarize-joblib-threads", "strategies.micro.joblib_threads:SummarizeJoblibThreads"),
    (
        "summarize-multiprocessing",
        "strategies.micro.multiprocessing_pool:SummarizeMultiprocessing",
    ),
    (
        "summarize-joblib-processes",
        "strategies.micro.joblib_processes:SummarizeJoblibProcesses",
    ),
    ("pairwise-python", "strategies.micro.python_loops:PairwisePython"),
    ("pairwise-cython", "strategies.micro.cython_serial:PairwiseCython"),
    ("pairwise-openmp", "strategies.micro.openmp:PairwiseOpenMP"),
    ("pairwise-joblib-threads", "strategies.micro.joblib_threads:PairwiseJoblibThreads"),
    ("pairwise-multiprocessing", "strategies.micro.multiprocessing_pool:PairwiseMultiprocessing"),
    ("pairwise-joblib-processes", "strategies.micro.joblib_processes:PairwiseJoblibProcesses"),
)


@dataclass(frozen=True)
class StrategyInfo:
    """One registry entry, whether or not it can run here."""

    name: str
    kind: str
    available: bool
    reason: str
    cls: type[Strategy] | type[MicroStrategy] | None
    description: str = ""
    problem: str = DEFAULT_PROBLEM

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "available": self.available,
            "reason": self.reason,
            "problem": self.problem,
        }


def _problem_of(name: str) -> str:
    """The problem an entry solves, from its name alone (for entries that fail to import)."""
    prefix = name.split("-", 1)[0]
    return prefix if prefix in PROBLEMS and prefix != DEFAULT_PROBLEM else DEFAULT_PROBLEM


def _load(name: str, target: str) -> StrategyInfo:
    module_name, _, class_name = target.partition(":")
    guessed = _problem_of(name)
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except Exception as exc:  # any failure makes this one entry unavailable, nothing else
        return StrategyInfo(
            name,
            "unknown",
            False,
            f"cannot import {target}: {type(exc).__name__}: {exc}",
            None,
            problem=guessed,
        )
    if not (isinstance(cls, type) and issubclass(cls, (Strategy, MicroStrategy))):
        return StrategyInfo(
            name, "unknown", False, f"{target} is not a Strategy", None, problem=guessed
        )
    problem = PROBLEMS.get(getattr(cls, "problem", ""))
    if problem is None or not issubclass(cls, _INTERFACE_BASES[problem.interface]):
        return StrategyInfo(
            name,
            str(cls.kind),
            False,
            f"{target} declares problem={getattr(cls, 'problem', None)!r}, which is not a "
            "problem whose interface it implements",
            None,
            problem=guessed,
        )
    if cls.name != name or cls.kind not in KINDS:
        return StrategyInfo(
            name,
            str(cls.kind),
            False,
            f"{target} declares name={cls.name!r}, kind={cls.kind!r}",
            None,
            problem=problem.name,
        )
    try:
        reason = cls.unavailable_reason()
    except Exception as exc:
        reason = f"availability check failed: {type(exc).__name__}: {exc}"
    return StrategyInfo(
        name, cls.kind, reason is None, reason or "", cls, cls.description, problem.name
    )


@cache
def _registry() -> dict[str, StrategyInfo]:
    return {name: _load(name, target) for name, target in _ENTRIES}


def _check_problem(problem: str | None) -> str | None:
    if problem is not None and problem not in PROBLEMS:
        raise InvalidParameterError(
            f"unknown problem {problem!r}; valid problems: {', '.join(PROBLEMS)}"
        )
    return problem


def registry(problem: str | None = None) -> dict[str, StrategyInfo]:
    """Every registered strategy by name, available or not (of one problem if given).

    Without ``problem`` this is the registry itself (tests may patch entries in it).
    """
    if _check_problem(problem) is None:
        return _registry()
    return {name: info for name, info in _registry().items() if info.problem == problem}


def names(problem: str | None = None) -> list[str]:
    """Registered names in listing order (of one problem if given).

    Filtering by problem needs no import: the problem is read from the name
    (``<problem>-<family>``; anything else is ``gmm``).
    """
    _check_problem(problem)
    return [name for name, _ in _ENTRIES if problem is None or _problem_of(name) == problem]


def available_names(problem: str | None = None) -> list[str]:
    """Names of the strategies that can run on this machine (of one problem if given)."""
    return [name for name, info in registry(problem).items() if info.available]


def get_info(name: str) -> StrategyInfo:
    """Look a strategy up by name.

    Raises
    ------
    UnknownStrategyError
        With the list of valid names.
    """
    return look_up(registry(), name, "strategy", valid=names(), error=UnknownStrategyError)


def load_one(name: str) -> StrategyInfo:
    """Look one strategy up importing only its own module (not the whole registry).

    For short-lived measurement processes, where importing every strategy's
    dependencies would cost more than the measurement.

    Raises
    ------
    UnknownStrategyError
        With the list of valid names.
    """
    target = look_up(dict(_ENTRIES), name, "strategy", valid=names(), error=UnknownStrategyError)
    return _load(str(name).strip().lower(), target)


def get_strategy(name: str, problem: str | None = None) -> type[Strategy]:
    """The class of an available strategy (of ``problem``, when given).

    Raises
    ------
    UnknownStrategyError
        If the name is not registered.
    InvalidParameterError
        If ``problem`` is given and the strategy solves another problem.
    StrategyUnavailableError
        If it is registered but cannot run here (the reason is in the message).
    """
    info = get_info(name)
    if _check_problem(problem) is not None and info.problem != problem:
        raise InvalidParameterError(
            f"strategy {info.name!r} solves problem {info.problem!r}, not {problem!r}; "
            f"{problem} strategies: {', '.join(names(problem))}"
        )
    if not info.available or info.cls is None:
        raise StrategyUnavailableError(f"strategy {info.name!r} is unavailable: {info.reason}")
    return info.cls


def create(name: str, workers: int = 1) -> Strategy:
    """Instantiate an available strategy."""
    return get_strategy(name)(workers=workers)


__all__ = [
    "Strategy",
    "StrategyInfo",
    "available_names",
    "create",
    "get_info",
    "get_strategy",
    "load_one",
    "names",
    "registry",
]
