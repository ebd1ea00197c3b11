"""The claims of an expectations file: what each states and how the file is read.

:func:`load_expectations` reads ``results/expectations.toml`` (or another file) into
:class:`Claim` objects, refusing anything malformed with a message that names the claim
by its position; the file's format is described in :mod:`harness.gate.expectations`,
which judges the claims against a run.

May read the expectations file and the strategy registry's capability flags; never
reads a run, judges a claim or prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.model.errors import InvalidParameterError
from harness.sweep.formats import read_toml
from harness.sweep.results import PHASES

SCHEMA_VERSION = 1


_COMMON_KEYS = {"kind", "name", "required", "workload", "n", "min_n"}
_KIND_KEYS = {
    "speedup": ({"strategy", "from_workers", "to_workers", "at_least"}, {"phase", "statistic"}),
    "ratio": (
        {"strategies", "versus", "at_least"},
        {"phase", "statistic", "workers", "versus_workers"},
    ),
    "agreement": ({"tolerance"}, {"strategies"}),
    "no-failures": (set(), {"strategies"}),
}
_SELECTOR_KEYS = {"kind", "compiled", "exclude"}
#: How the repeated values of a configuration's phase are summarised.
STATISTICS = ("median", "min")


# ---- the claims -------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """Which strategies a claim is about: explicit names, or kind/compiled filters.

    ``names`` is set for an explicit list; otherwise a strategy matches when its kind is
    in ``kinds`` (if given), its ``needs_compiled`` flag equals ``compiled`` (if given),
    and it is not in ``exclude``.
    """

    names: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    compiled: bool | None = None
    exclude: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"openmp, cython"`` or ``"every compiled openmp/threads strategy"``."""
        if self.names is not None:
            return ", ".join(self.names)
        words = ["every"]
        if self.compiled is not None:
            words.append("compiled" if self.compiled else "non-compiled")
        if self.kinds is not None:
            words.append("/".join(self.kinds))
        words.append("strategy")
        if self.exclude:
            words.append("except " + ", ".join(self.exclude))
        return " ".join(words)

    def members(self, table: pd.DataFrame) -> list[str]:
        """Strategies of ``table`` this selector picks (explicit names are kept even when
        the run lacks them, so the report can say they were not measured)."""
        if self.names is not None:
            return [name for name in self.names if name not in self.exclude]
        picked = []
        kinds = table.groupby("strategy")["kind"].first().astype(str)
        for name, kind in kinds.items():
            if name in self.exclude:
                continue
            if self.kinds is not None and kind not in self.kinds:
                continue
            if self.compiled is not None and _needs_compiled(name) != self.compiled:
                continue
            picked.append(name)
        return sorted(picked)


def _needs_compiled(name: str) -> bool:
    """The strategy class's ``needs_compiled`` flag (False for names the registry lacks)."""
    import strategies

    info = strategies.registry().get(name)
    return bool(info is not None and info.cls is not None and info.cls.needs_compiled)


@dataclass(frozen=True)
class Claim:
    """One parsed, validated claim of the expectations file (see the module docstring)."""

    index: int
    kind: str
    name: str
    required: bool = False
    workloads: tuple[str, ...] | None = None
    n: int | None = None
    min_n: int | None = None
    phase: str = "iteration"
    statistic: str = "median"
    strategy: str = ""
    from_workers: int = 1
    to_workers: int = 2
    at_least: float = math.nan
    strategies: Selector = field(default_factory=Selector)
    versus: str = ""
    workers: int | None = None
    versus_workers: int | None = None
    tolerance: float = math.nan

    def describe(self) -> str:
        """A generated one-line statement of the claim."""
        if self.kind == "speedup":
            text = (
                f"{self.strategy} at {self.to_workers} workers >= {self.at_least:g}x "
                f"faster than at {self.from_workers}"
            )
        elif self.kind == "ratio":
            at = f" at {self.workers} worker(s)" if self.workers is not None else ""
            vs_at = (
                f" at {self.versus_workers} worker(s)" if self.versus_workers is not None else ""
            )
            text = (
                f"{self.strategies.describe()}{at} >= {self.at_least:g}x faster than "
                f"{self.versus}{vs_at}"
            )
        elif self.kind == "agreement":
            text = (
                f"final_loglik agrees within {self.tolerance:g} across {self.strategies.describe()}"
            )
        else:
            text = f"no failed configuration ({self.strategies.describe()})"
        where = []
        if self.workloads is not None:
            where.append("/".join(self.workloads))
        if self.n is not None:
            where.append(f"n={self.n:,}")
        if self.min_n is not None:
            where.append(f"n>={self.min_n:,}")
        if self.kind in ("speedup", "ratio") and self.phase != "iteration":
            where.append(f"phase {self.phase}")
        if self.kind in ("speedup", "ratio") and self.statistic != "median":
            where.append(f"{self.statistic} times")
        return text + (f" ({', '.join(where)})" if where else "")


def _fail(path: Path, index: int | None, message: str) -> InvalidParameterError:
    where = f"{path}" + (f", claim {index + 1}" if index is not None else "")
    return InvalidParameterError(f"{where}: {message}")


def _strategy_name(value: object, path: Path, index: int, key: str) -> str:
    import strategies

    if not isinstance(value, str) or not value:
        raise _fail(path, index, f"{key} must be a strategy name, got {value!r}")
    if value not in strategies.names():
        raise _fail(
            path,
            index,
            f"{key}: unknown strategy {value!r}; valid names: {', '.join(strategies.names())}",
        )
    return value


def _positive_int(value: object, path: Path, index: int, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(path, index, f"{key} must be a whole number >= 1, got {value!r}")
    return value


def _positive_float(value: object, path: Path, index: int, key: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise _fail(path, index, f"{key} must be a positive number, got {value!r}")
    return float(value)


def _names(value: object, path: Path, index: int, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _fail(path, index, f"{key} must be a name or a non-empty list, got {value!r}")
    return tuple(_strategy_name(item, path, index, key) for item in items)


def _selector(value: object, path: Path, index: int, key: str) -> Selector:
    if not isinstance(value, dict):
        return Selector(names=_names(value, path, index, key))
    unknown = set(value) - _SELECTOR_KEYS
    if unknown:
        raise _fail(
            path,
            index,
            f"{key}: unknown selector key(s) {sorted(unknown)}; valid: {sorted(_SELECTOR_KEYS)}",
        )
    from strategies.base import KINDS

    kinds = None
    if "kind" in value:
        raw = value["kind"]
        kinds = (raw,) if isinstance(raw, str) else raw
        if not isinstance(kinds, list | tuple) or not kinds or any(k not in KINDS for k in kinds):
            raise _fail(
                path, index, f"{key}.kind must be one or more of {', '.join(KINDS)}, got {raw!r}"
            )
        kinds = tuple(kinds)
    compiled = value.get("compiled")
    if compiled is not None and not isinstance(compiled, bool):
        raise _fail(path, index, f"{key}.compiled must be true or false, got {compiled!r}")
    exclude = _names(value["exclude"], path, index, f"{key}.exclude") if "exclude" in value else ()
    return Selector(kinds=kinds, compiled=compiled, exclude=exclude)


def _parse_claim(raw: object, path: Path, index: int) -> Claim:
    if not isinstance(raw, dict):
        raise _fail(path, index, "each [[claim]] must be a table")
    kind = raw.get("kind")
    if kind not in _KIND_KEYS:
        raise _fail(path, index, f"kind must be one of {', '.join(_KIND_KEYS)}, got {kind!r}")
    required, optional = _KIND_KEYS[kind]
    missing = required - set(raw)
    if missing:
        raise _fail(path, index, f"a {kind} claim needs {', '.join(sorted(missing))}")
    unknown = set(raw) - required - optional - _COMMON_KEYS
    if unknown:
        raise _fail(
            path,
            index,
            f"unknown key(s) for a {kind} claim: {sorted(unknown)}; "
            f"valid: {sorted(required | optional | _COMMON_KEYS)}",
        )
    if "n" in raw and "min_n" in raw:
        raise _fail(path, index, "give n or min_n, not both")

    values: dict[str, object] = {"index": index, "kind": kind}
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise _fail(path, index, f"name must be a string, got {name!r}")
    values["name"] = name
    if not isinstance(raw.get("required", False), bool):
        raise _fail(path, index, f"required must be true or false, got {raw['required']!r}")
    values["required"] = raw.get("required", False)
    if "workload" in raw:
        workloads = raw["workload"]
        workloads = [workloads] if isinstance(workloads, str) else workloads
        if (
            not isinstance(workloads, list)
            or not workloads
            or not all(isinstance(w, str) and w for w in workloads)
        ):
            raise _fail(
                path, index, f"workload must be a name or a list of names, got {raw['workload']!r}"
            )
        values["workloads"] = tuple(workloads)
    for key in ("n", "min_n", "from_workers", "to_workers", "workers", "versus_workers"):
        if key in raw:
            values[key] = _positive_int(raw[key], path, index, key)
    for key in ("at_least", "tolerance"):
        if key in raw:
            values[key] = _positive_float(raw[key], path, index, key)
    if "phase" in raw:
        if raw["phase"] not in PHASES:
            raise _fail(
                path, index, f"phase must be one of {', '.join(PHASES)}, got {raw['phase']!r}"
            )
        values["phase"] = raw["phase"]
    if "statistic" in raw:
        if raw["statistic"] not in STATISTICS:
            raise _fail(
                path,
                index,
                f"statistic must be one of {', '.join(STATISTICS)}, got {raw['statistic']!r}",
            )
        values["statistic"] = raw["statistic"]
    if "strategy" in raw:
        values["strategy"] = _strategy_name(raw["strategy"], path, index, "strategy")
    if "versus" in raw:
        values["versus"] = _strategy_name(raw["versus"], path, index, "versus")
    if "strategies" in raw:
        values["strategies"] = _selector(raw["strategies"], path, index, "strategies")
    if kind == "speedup" and values["from_workers"] == values["to_workers"]:
        raise _fail(path, index, "from_workers and to_workers must differ")
    return Claim(**values)


def load_expectations(path: str | Path) -> list[Claim]:
    """Read and validate an expectations file.

    Raises
    ------
    DataFileError
        The file is missing or is not valid TOML.
    InvalidParameterError
        A claim is malformed (unknown kind or key, wrong type, unknown strategy name);
        the message names the claim by its position.
    """
    path = Path(path)
    document = read_toml(path, f"no expectations file at {path}")
    version = document.get("version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise _fail(
            path,
            None,
            f"version {version!r} is not supported (this harness reads version {SCHEMA_VERSION})",
        )
    unknown = set(document) - {"version", "claim"}
    if unknown:
        raise _fail(
            path, None, f"unknown top-level key(s) {sorted(unknown)}; claims go in [[claim]] tables"
        )
    raw_claims = document.get("claim", [])
    if not isinstance(raw_claims, list) or not raw_claims:
        raise _fail(path, None, "no [[claim]] tables")
    return [_parse_claim(raw, path, i) for i, raw in enumerate(raw_claims)]
