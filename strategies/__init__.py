"""Registry of strategies: short lowercase names mapped to classes.

Each entry names a module and a class; modules are imported when the registry is
first used, each on its own, so a strategy whose module fails to import (or whose
optional dependency or compiled kernel is missing) is listed as unavailable with
the reason and never breaks the others.

Adding a strategy: copy ``strategies/_template.py``, then add one line to
``_ENTRIES`` below. The test suite is parametrised over this registry, so the new
strategy is tested against the reference automatically.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from harness.model.errors import StrategyUnavailableError, UnknownStrategyError
from strategies.base import KINDS, Strategy

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
)


@dataclass(frozen=True)
class StrategyInfo:
    """One registry entry, whether or not it can run here."""

    name: str
    kind: str
    available: bool
    reason: str
    cls: type[Strategy] | None
    description: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "available": self.available,
            "reason": self.reason,
        }


def _load(name: str, target: str) -> StrategyInfo:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except Exception as exc:  # any failure makes this one entry unavailable, nothing else
        return StrategyInfo(
            name, "unknown", False, f"cannot import {target}: {type(exc).__name__}: {exc}", None
        )
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        return StrategyInfo(name, "unknown", False, f"{target} is not a Strategy", None)
    if cls.name != name or cls.kind not in KINDS:
        return StrategyInfo(
            name,
            str(cls.kind),
            False,
            f"{target} declares name={cls.name!r}, kind={cls.kind!r}",
            None,
        )
    try:
        reason = cls.unavailable_reason()
    except Exception as exc:
        reason = f"availability check failed: {type(exc).__name__}: {exc}"
    return StrategyInfo(name, cls.kind, reason is None, reason or "", cls, cls.description)


@cache
def registry() -> dict[str, StrategyInfo]:
    """Every registered strategy by name, available or not."""
    return {name: _load(name, target) for name, target in _ENTRIES}


def names() -> list[str]:
    """All registered names, in listing order."""
    return [name for name, _ in _ENTRIES]


def available_names() -> list[str]:
    """Names of the strategies that can run on this machine."""
    return [name for name, info in registry().items() if info.available]


def get_info(name: str) -> StrategyInfo:
    """Look a strategy up by name.

    Raises
    ------
    UnknownStrategyError
        With the list of valid names.
    """
    key = str(name).strip().lower()
    info = registry().get(key)
    if info is None:
        raise UnknownStrategyError(f"unknown strategy {name!r}; valid names: {', '.join(names())}")
    return info


def load_one(name: str) -> StrategyInfo:
    """Look one strategy up importing only its own module (not the whole registry).

    For short-lived measurement processes, where importing every strategy's
    dependencies would cost more than the measurement.

    Raises
    ------
    UnknownStrategyError
        With the list of valid names.
    """
    key = str(name).strip().lower()
    target = dict(_ENTRIES).get(key)
    if target is None:
        raise UnknownStrategyError(f"unknown strategy {name!r}; valid names: {', '.join(names())}")
    return _load(key, target)


def get_strategy(name: str) -> type[Strategy]:
    """The class of an available strategy.

    Raises
    ------
    UnknownStrategyError
        If the name is not registered.
    StrategyUnavailableError
        If it is registered but cannot run here (the reason is in the message).
    """
    info = get_info(name)
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
