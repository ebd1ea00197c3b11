"""The results model: what a run folder holds and how to read it.

A run folder ``results/<run-id>/`` holds:

``meta.json``
    The run's metadata (:data:`META_FILE`): ``schema_version``, ``run_id``,
    ``created`` (ISO time), ``host`` (CPU model, usable cores, machine), versions
    (Python, NumPy, its BLAS, Cython, SciPy, scikit-learn), compiler flags, whether
    OpenMP was compiled in, git commit, and the sweep's arguments.
``results.csv`` (and ``results.parquet`` when pyarrow is installed)
    The tidy table (:data:`TABLE_FILE`): one row per measured value, columns
    :data:`COLUMNS`. A configuration that was skipped or failed has one row with
    ``status`` ``"skipped"`` or ``"failed"``, ``seconds`` NaN and the reason in ``error``.
    An ``ok`` configuration was measured in several processes (``process`` 0, 1, ...;
    see :mod:`harness.sweep.rounds`): bootstrap over processes, not over values, and
    leave out rows whose ``process_disturbed`` is True and configurations whose
    ``disturbed`` is True.
``pyperf/<config-id>.json``
    pyperf's own files, one per configuration (one pyperf run per process and phase),
    readable by ``python -m pyperf stats`` and ``compare_to``; ``pyperf.json`` merges
    them into one suite.
``configs/<config-id>.json``
    What each of the configuration's processes reported (:data:`CONFIGS_DIR`): its
    spec, ``runtime_info`` of the strategy, thread pools, check results, wall time.
``charts/``, ``report.md``
    Written by ``python -m harness plot``.

A *configuration* is one ``(workload, n, strategy, workers)``; its ``config_id``
is :func:`config_id`. Phases are :data:`PHASES`:

* ``prepare``: ``Strategy.prepare(X)`` (pool start, data placement);
* ``e_step`` and ``m_step``: each step on its own;
* ``iteration``: one full EM iteration as the driver runs it (the fused one-pass
  iteration where the strategy has one, otherwise E-step + M-step + update).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.model.errors import DataFileError

if TYPE_CHECKING:  # pandas loads lazily: measurement processes import this module too
    import pandas as pd

SCHEMA_VERSION = 2  # 2: processes, interference and the stopping rule's columns
META_FILE = "meta.json"
TABLE_FILE = "results.csv"
PARQUET_FILE = "results.parquet"
PYPERF_DIR = "pyperf"
PYPERF_SUITE = "pyperf.json"
CONFIGS_DIR = "configs"
CHARTS_DIR = "charts"
REPORT_FILE = "report.md"

PHASES = ("prepare", "e_step", "m_step", "iteration")
STATUSES = ("ok", "skipped", "failed")

#: Identity of a configuration.
CONFIG_COLUMNS = ("workload", "n", "d", "k", "strategy", "workers")

#: Columns of the tidy table, in order, and the type of each (the one definition of the
#: table: :func:`as_table` applies it). The first nine are the measurement itself.
COLUMN_TYPES: dict[str, str] = {
    "workload": "str",  # schreiber / quinn / highdim / file name
    "n": "int",  # points
    "d": "int",  # features
    "k": "int",  # components
    "strategy": "str",  # registry name
    "kind": "str",  # serial / threads / processes / openmp / distributed
    "workers": "int",  # requested worker count
    "phase": "str",  # one of PHASES
    "seconds": "float",  # one measured value (wall time of one call); NaN when not ok
    "value_index": "int",  # 0.. within (configuration, phase, process)
    # the measurement protocol (harness.sweep.rounds, harness.sweep.interference)
    "process": "int",  # 0.. which of the configuration's processes took the value
    "foreign_cpu": "float",  # share of the CPUs other programs used while it was timed
    "tree_cpu": "float",  # the measured process tree's CPU time / wall / workers
    "process_disturbed": "bool",  # its process was judged disturbed and re-measured
    "status": "str",  # ok / skipped / failed
    "error": "str",  # reason for skipped / failed, else ""
    "config_id": "str",  # see config_id()
    "attempts": "int",  # processes started for the configuration (disturbed ones too)
    "disturbed": "bool",  # still disturbed or unstable after its last attempt
    "disturbed_reason": "str",  # why, "" when not disturbed
    "stopped": "str",  # why sampling stopped: converged / N attempts / time budget used
    "effective_workers": "int",  # workers actually used (threads seen / processes started)
    "oversubscribed": "bool",  # workers > usable cores
    "blas_threads": "int",  # BLAS threads while the strategy ran (threadpoolctl)
    "omp_threads": "int",  # OpenMP threads available to the strategy
    "used_fused": "bool",  # the iteration phase used the fused one-pass path
    "kernel": "str",  # code path that ran: cython / numpy / python / library ...
    "inline": "bool",  # no pool: the work ran in the calling thread (joblib at 1 worker)
    "start_method": "str",  # fork / spawn / forkserver for process strategies, else ""
    "bytes_to_workers": "float",  # bytes sent to workers per iteration (process strategies)
    "bytes_from_workers": "float",  # bytes received from workers per iteration
    "peak_pss_bytes": "float",  # peak proportional set size of parent + workers
    "final_loglik": "float",  # mean log-likelihood after the fixed check iterations
    "iterations_checked": "int",  # iterations behind final_loglik
    # run metadata, repeated on every row so any row stands on its own
    "run_id": "str",
    "cpu_model": "str",
    "usable_cores": "int",
    "python_version": "str",
    "numpy_version": "str",
    "blas": "str",
    "cython_version": "str",
    "compiler_flags": "str",
    "openmp": "bool",
    "git_commit": "str",
    "date": "str",
}
COLUMNS = tuple(COLUMN_TYPES)


#: The run-metadata columns at the end of :data:`COLUMNS`, repeated on every row.
RUN_METADATA_COLUMNS = COLUMNS[COLUMNS.index("run_id") :]
#: The run-metadata columns that say which machine measured: comparing timings of
#: different ones compares machines, not code.
HOST_COLUMNS = ("cpu_model", "usable_cores")
#: The run-metadata columns that say which software measured.
SOFTWARE_COLUMNS = (
    "python_version",
    "numpy_version",
    "blas",
    "cython_version",
    "compiler_flags",
    "openmp",
)


def config_id(workload: str, n: int, strategy: str, workers: int) -> str:
    """Stable, file-name-safe identity of a configuration, e.g. ``quinn-n130000-openmp-w2``."""
    return f"{workload}-n{int(n)}-{strategy}-w{int(workers)}"


def load_meta(run_dir: str | Path) -> dict:
    """Read a run's ``meta.json``.

    Raises
    ------
    DataFileError
        If the folder or the file is missing or not valid JSON.
    """
    path = Path(run_dir) / META_FILE
    if not path.is_file():
        raise DataFileError(f"not a results folder (no {META_FILE}): {run_dir}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path} is not valid JSON: {exc}") from exc


def load_table(run_dir: str | Path) -> pd.DataFrame:
    """Read a run's tidy table (CSV; Parquet is a convenience copy).

    Raises
    ------
    DataFileError
        If the table is missing, unreadable, or lacks the measurement columns.
    """
    import pandas as pd

    path = Path(run_dir) / TABLE_FILE
    if not path.is_file():
        raise DataFileError(f"no results table {TABLE_FILE} in {run_dir}")
    try:
        table = pd.read_csv(path, keep_default_na=True)
    except Exception as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    missing = [column for column in COLUMNS[:9] if column not in table.columns]
    if missing:
        raise DataFileError(f"{path} lacks the columns {missing}")
    # Empty text cells come back from CSV as NaN; the table holds "" (as as_table writes).
    for column, kind in COLUMN_TYPES.items():
        if kind == "str" and column in table.columns:
            table[column] = table[column].astype(object).fillna("")
    return table


def as_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`COLUMNS` in order, typed by :data:`COLUMN_TYPES`.

    Integers and booleans are pandas' nullable types (a skipped row has no thread
    count); text columns hold "" rather than NaN, so CSV and Parquet agree.
    """
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for column, kind in COLUMN_TYPES.items():
        values = table[column]
        if kind == "int":
            table[column] = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        elif kind == "bool":
            table[column] = values.map(_bool_or_na).astype("boolean")
        elif kind == "float":
            table[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            table[column] = values.map(lambda v: "" if _is_missing(v) else str(v)).astype(object)
    return table


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _bool_or_na(value: Any) -> Any:
    import pandas as pd

    if _is_missing(value) or value is pd.NA:
        return pd.NA
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower(), pd.NA)
    return bool(value)
