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
is :func:`config_id`. Workload names are unique across problems, so the workload also
names the ``problem`` (column ``problem``; tables written before it existed load as
``gmm``). Phases are :data:`PHASES`:

* ``prepare``: ``Strategy.prepare(X)`` (pool start, data placement);
* ``e_step`` and ``m_step``: each step on its own (EM only);
* ``iteration``: one full EM iteration as the driver runs it (the fused one-pass
  iteration where the strategy has one, otherwise E-step + M-step + update); for a
  micro-problem (``summarize``, ``pairwise``), one ``run()`` call, the whole problem.

It defines the layout and reads it; the runner alone writes a run folder. It may not
import pandas at module level: the measurement process imports it too.

A ``library`` strategy (a peer library's whole fit) has :data:`LIBRARY_PHASES` instead:
``prepare``, ``iteration`` (differenced from fits of different lengths) and ``fixed``
(the rest of a fit); see :mod:`harness.sweep.library_timing`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.model.errors import DataFileError
from harness.model.problems import DEFAULT_PROBLEM

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
#: Phases of a whole-fit (``library``) strategy, timed by differencing fits of different
#: lengths (:mod:`harness.sweep.library_timing`): ``iteration`` is the differenced
#: per-iteration time, ``fixed`` the rest of a fit (set-up, the library's own
#: initialisation, a final E-step). A library has no E-step or M-step to time apart.
LIBRARY_PHASES = ("prepare", "iteration", "fixed")


def phases_for(kind: str | None) -> tuple[str, ...]:
    """The phases a configuration of this strategy kind is timed in."""
    return LIBRARY_PHASES if kind == "library" else PHASES


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
    "kind": "str",  # serial / threads / processes / openmp / distributed / library
    "workers": "int",  # requested worker count
    "phase": "str",  # one of PHASES (LIBRARY_PHASES for kind library)
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
    "problem": "str",  # gmm / summarize / pairwise (harness.model.problems); gmm if absent
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


def run_folder(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path, once it is known to be an existing folder.

    Raises
    ------
    DataFileError
        Naming what it is instead (a file, or nothing).
    """
    path = Path(run_dir)
    if path.is_dir():
        return path
    if path.exists():
        raise DataFileError(f"not a folder: {run_dir} (give a results folder)")
    raise DataFileError(f"results folder not found: {run_dir}")


def load_meta(run_dir: str | Path) -> dict:
    """Read a run's ``meta.json``.

    Raises
    ------
    DataFileError
        If the folder or the file is missing, not valid JSON (truncated), or not the
        metadata of a run (not an object, or without ``schema_version``).
    """
    path = Path(run_dir) / META_FILE
    if not path.is_file():
        raise DataFileError(f"not a results folder (no {META_FILE}): {run_dir}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path} is not valid JSON (truncated or damaged?): {exc}") from exc
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(meta, dict) or "schema_version" not in meta:
        what = "an empty object" if meta == {} else f"a JSON {type(meta).__name__}"
        raise DataFileError(
            f"{path} is {what} without a schema_version: not the metadata of a run "
            "(written by `python -m harness run`), or damaged"
        )
    return meta


@dataclass
class TableDamage:
    """What :func:`read_table` found wrong in a table.

    Attributes
    ----------
    damaged : dict of str to str
        ``config_id`` -> why one of its rows is unusable (cut short, a value that does
        not parse, a ``config_id`` that does not match the row). A resumed sweep
        measures such a configuration again.
    dropped_damaged : bool
        Whether those rows were dropped (the runner) or kept for the reader's own
        checks to refuse (plot, compare, check).
    unidentified : int
        Unusable rows that name no configuration (repeated header lines, rows cut
        before their ``config_id``); always dropped.
    duplicates : int
        Rows repeating an earlier row's ``(config_id, phase, value_index)``; always
        dropped, the first is kept.
    """

    damaged: dict[str, str] = field(default_factory=dict)
    dropped_damaged: bool = False
    unidentified: int = 0
    duplicates: int = 0

    def __bool__(self) -> bool:
        return bool(self.damaged or self.unidentified or self.duplicates)

    def describe(self, path: str | Path) -> str:
        """One sentence for a warning."""
        parts = []
        if self.damaged:
            shown = ", ".join(f"{cid} ({why})" for cid, why in list(self.damaged.items())[:3])
            more = len(self.damaged) - 3
            parts.append(
                f"unusable rows of {len(self.damaged)} configuration(s) "
                f"{'dropped' if self.dropped_damaged else 'found'}: {shown}"
                + (f" and {more} more" if more > 0 else "")
            )
        if self.unidentified:
            parts.append(
                f"{self.unidentified} row(s) naming no configuration (a repeated header, "
                "a row cut short) dropped"
            )
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate row(s) dropped, the first kept")
        return f"{path}: " + "; ".join(parts)


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _row_problem(row: dict[str, Any]) -> str:
    """Why a parsed row cannot be trusted, or "" when it can."""
    status = row.get("status")
    if status not in STATUSES:
        return f"status {status!r} is not one of {', '.join(STATUSES)}"
    identity = ("n", "workers") if status != "ok" else ("n", "d", "k", "workers", "value_index")
    for column in identity:
        if not _is_number(row.get(column)):
            return f"{column} {row.get(column)!r} is not a number"
    cid = row.get("config_id")
    if isinstance(cid, str) and cid:
        expected = config_id(
            str(row.get("workload")),
            int(float(row["n"])),
            str(row.get("strategy")),
            int(float(row["workers"])),
        )
        if cid != expected:
            return f"config_id {cid!r} does not match its workload, n, strategy and workers"
    if status == "ok":
        if row.get("phase") not in PHASES:
            return f"phase {row.get('phase')!r} is not one of {', '.join(PHASES)}"
        if not _is_number(row.get("seconds")) or float(row["seconds"]) <= 0:
            return f"seconds {row.get('seconds')!r} is not a positive number"
    return ""


def read_table(
    run_dir: str | Path, *, drop_damaged: bool = False
) -> tuple[pd.DataFrame, TableDamage]:
    """Read a run's tidy table and say what in it cannot be trusted.

    A table is written atomically, so damage means a hand edit, a copy cut short or
    two writers. Repeated header lines and rows repeating an earlier row's
    ``(config_id, phase, value_index)`` are dropped. A row with fewer fields than the
    header (cut short), whose numbers or status do not parse, or whose ``config_id``
    does not match its own columns is named in the returned :class:`TableDamage`,
    and dropped when ``drop_damaged``.

    Parameters
    ----------
    run_dir : str or Path
    drop_damaged : bool
        Drop damaged rows (the runner, which measures their configurations again)
        rather than keep them for the reader's own checks to refuse.

    Returns
    -------
    table : pandas.DataFrame
        Typed as a clean file's would be.
    damage : TableDamage

    Raises
    ------
    DataFileError
        If the table is missing, unreadable, or lacks the measurement columns.
    """
    import csv
    import io

    import pandas as pd

    path = Path(run_dir) / TABLE_FILE
    if not path.is_file():
        raise DataFileError(f"no results table {TABLE_FILE} in {run_dir}")
    try:
        text = path.read_text()
        records = [fields for fields in csv.reader(io.StringIO(text)) if fields]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    if not records:
        raise DataFileError(f"{path} is empty (not even a header line)")
    header = records[0]
    missing = [column for column in COLUMNS[:9] if column not in header]
    if missing:
        raise DataFileError(f"{path} lacks the columns {missing}")
    damage = TableDamage(dropped_damaged=drop_damaged)
    keep: list[list[str]] = [header]
    seen: set[tuple[str, str, str, str]] = set()
    cid_at = header.index("config_id") if "config_id" in header else None
    for fields in records[1:]:
        row = dict(zip(header, fields, strict=False))  # lengths checked below
        cid = fields[cid_at] if cid_at is not None and len(fields) > cid_at else ""
        if fields == header or (not cid and len(fields) != len(header)):
            damage.unidentified += 1
            continue
        if len(fields) != len(header):
            problem = f"a row with {len(fields)} of {len(header)} fields (cut short?)"
        else:
            problem = _row_problem(
                {key: (None if value == "" else value) for key, value in row.items()}
            )
        if problem:
            if cid:
                damage.damaged.setdefault(cid, problem)
            else:
                damage.unidentified += 1
            if drop_damaged or not cid:
                continue
        key = (cid, row.get("phase", ""), row.get("process", ""), row.get("value_index", ""))
        if cid and key in seen:
            damage.duplicates += 1
            continue
        seen.add(key)
        keep.append(fields)
    if len(keep) < len(records):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(keep)
        source: Any = io.StringIO(buffer.getvalue())
    else:
        source = io.StringIO(text)
    try:
        table = pd.read_csv(source, keep_default_na=True)
    except Exception as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    # Empty text cells come back from CSV as NaN; the table holds "" (as as_table writes).
    for column, kind in COLUMN_TYPES.items():
        if kind == "str" and column in table.columns:
            table[column] = table[column].astype(object).fillna("")
    if "problem" not in table.columns:  # written before the problem axis: GMM only
        table["problem"] = DEFAULT_PROBLEM
    table["problem"] = table["problem"].astype(object).fillna(DEFAULT_PROBLEM)
    table.loc[table["problem"] == "", "problem"] = DEFAULT_PROBLEM
    return table, damage


def load_table(run_dir: str | Path) -> pd.DataFrame:
    """Read a run's tidy table (CSV; Parquet is a convenience copy).

    Repeated header lines and duplicate rows are dropped with a warning; other damaged
    rows are kept for the caller's checks to refuse (see :func:`read_table`).

    Raises
    ------
    DataFileError
        If the table is missing, unreadable, or lacks the measurement columns.
    """
    table, damage = read_table(run_dir)
    if damage.unidentified or damage.duplicates:
        # damaged rows stay: the reader's own checks refuse them with their own words
        shown = TableDamage(unidentified=damage.unidentified, duplicates=damage.duplicates)
        warnings.warn(shown.describe(Path(run_dir) / TABLE_FILE), RuntimeWarning, stacklevel=2)
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


def why_not_measured(rows: pd.DataFrame, phase: str) -> str:
    """Why a configuration has no value for ``phase``, from its rows of the table.

    Parameters
    ----------
    rows : DataFrame
        The table's rows of one configuration (possibly none), with ``status`` and
        ``error`` columns.
    phase : str
        The phase looked for.

    Returns
    -------
    str
        ``"skipped: <reason>"`` or ``"failed: <reason>"`` when the configuration did
        not run; ``"phase <phase> not measured"`` when it ran without that phase;
        ``"not measured"`` when the table has no row of it.
    """
    not_ok = rows[rows["status"] != "ok"]
    if not not_ok.empty:
        first = not_ok.iloc[0]
        error = str(first.get("error", "") or "").strip()
        return f"{first['status']}" + (f": {error}" if error else "")
    if not rows.empty:
        return f"phase {phase} not measured"
    return "not measured"
