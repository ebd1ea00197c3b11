"""A sweep's results folder: its rows, ``meta.json``, pyperf files and per-configuration JSON.

The runner (:mod:`harness.sweep.runner`) decides what to measure and when; this module
keeps what was measured on disk, in the layout of :mod:`harness.sweep.results`, and
decides on resume which configurations a folder already holds whole (rows exactly
their pyperf values, phase by phase). Every write is atomic (temporary file plus
``os.replace``). It never starts a process or runs a strategy.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

from harness.sweep.formats import to_json, write_atomic, write_text_atomic
from harness.sweep.metadata import collect_metadata, now_iso
from harness.sweep.plan import Sweep
from harness.sweep.results import (
    CONFIGS_DIR,
    META_FILE,
    PARQUET_FILE,
    PYPERF_DIR,
    PYPERF_SUITE,
    SCHEMA_VERSION,
    TABLE_FILE,
    as_table,
    load_meta,
    phases_for,
    read_table,
)
from harness.sweep.rounds import DECIDING_PHASE
from harness.sweep.rows import plain
from harness.sweep.spec import benchmark_name

WORK_DIR = ".work"  # inside the run folder: inputs, specs, logs in flight; removed at the end
LOG_DIR = "logs"  # inside the run folder: the output of configurations that failed


def merge_sweep_arguments(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The sweep fields of a resumed run: what the table holds, not the last request.

    A resume may ask for fewer workloads, sizes, workers or strategies than the run
    already holds; the table keeps those configurations, so ``meta.json`` keeps
    describing them: list fields become the union (in order of first appearance),
    ``resolved_sizes`` the union per workload. The protocol and the rest come from
    ``new`` (a resume must keep the protocol, and the runner refuses one that does
    not).
    """

    def union(*lists: Any) -> list[Any]:
        return list(dict.fromkeys(item for items in lists if items for item in items))

    merged = dict(new)
    for key in ("workloads", "workers", "strategies"):
        merged[key] = union(stored.get(key), new.get(key))
    resolved: dict[str, list[int]] = {}
    for sizes in (stored.get("resolved_sizes") or {}, new.get("resolved_sizes") or {}):
        for workload, values in sizes.items():
            resolved[workload] = sorted(set(resolved.get(workload, [])) | set(values))
    merged["resolved_sizes"] = resolved
    if stored.get("sizes") is None and new.get("sizes") is None:
        merged["sizes"] = None
    else:
        # One list for every workload: the union of what any workload was measured at.
        merged["sizes"] = sorted({n for values in resolved.values() for n in values})
    if "workers" in merged:
        merged["workers"] = sorted(merged["workers"])
    return merged


class RunFolder:
    """One run folder and the rows it holds.

    Attributes
    ----------
    run_dir : Path
    rows : list of dict
        The tidy table's rows (:func:`harness.sweep.rows.table_row`), in memory.
    meta : dict
        ``meta.json``.
    metadata : dict
        :func:`harness.sweep.metadata.collect_metadata` of this session.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}
        self._benchmarks: dict[str, list[Any]] = {}  # config_id -> its pyperf benchmarks
        self._parquet_warned = False

    def open(self, sweep: Sweep) -> set[str]:
        """Create or reopen the folder for ``sweep`` and start a session in ``meta.json``.

        A resumed folder's rows are read into :attr:`rows`, keeping only the
        configurations whose rows are exactly their pyperf values
        (:meth:`consistent_configurations`); the files of the others are deleted.

        Returns
        -------
        set of str
            The ``config_id`` of every configuration kept (empty for a new folder).
        """
        (self.run_dir / PYPERF_DIR).mkdir(parents=True, exist_ok=True)
        (self.run_dir / CONFIGS_DIR).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(
            self.run_dir / WORK_DIR, ignore_errors=True
        )  # leftovers of an interrupted run
        self.metadata = collect_metadata()
        session = {
            "started": now_iso(),
            "git_commit": self.metadata["git_commit"],
            "hostname": self.metadata["hostname"],
            "status": "running",
        }
        kept: set[str] = set()
        if sweep.resume:
            self.meta = load_meta(self.run_dir)
            if (self.run_dir / TABLE_FILE).is_file():
                table, damage = read_table(self.run_dir, drop_damaged=True)
                if damage:
                    warnings.warn(
                        damage.describe(self.run_dir / TABLE_FILE)
                        + "; configurations with damaged or missing rows are measured again",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                self.rows = [
                    {key: plain(value) for key, value in row.items()}
                    for row in table.to_dict("records")
                ]
            kept = self.consistent_configurations()
            # Configurations to run again lose their old rows now; new ones replace them.
            self.rows = [row for row in self.rows if str(row.get("config_id")) in kept]
            # Files of configurations measured again (or cut short between two writes) go.
            for directory in (PYPERF_DIR, CONFIGS_DIR):
                for path in (self.run_dir / directory).glob("*.json"):
                    if path.stem not in kept:
                        path.unlink()
            self.write_table()
            self.write_suite()
            # The session records what this invocation asked for; the sweep fields
            # describe everything the table holds, narrower resumes included.
            session["arguments"] = sweep.arguments
            self.meta.setdefault("sessions", []).append(session)
            self.meta["sweep"] = merge_sweep_arguments(
                self.meta.get("sweep") or {}, sweep.arguments
            )
        else:
            self.meta = {
                "schema_version": SCHEMA_VERSION,
                "run_id": sweep.run_id,
                "created": self.metadata["date"],
                "sessions": [session],
                "sweep": sweep.arguments,
            }
        self.meta.update(self._describe_environment())
        self.meta["status"] = "running"
        self.write_meta(dict.fromkeys(("ok", "skipped", "failed", "kept"), 0))
        return kept

    def _describe_environment(self) -> dict[str, Any]:
        import strategies

        m = self.metadata
        return {
            "host": {
                key: m[key]
                for key in (
                    "cpu_model",
                    "usable_cores",
                    "logical_cpus",
                    "machine",
                    "hostname",
                    "platform",
                )
            },
            "versions": {
                "python": m["python_version"],
                "numpy": m["numpy_version"],
                "blas": m["blas"],
                "scipy": m["scipy_version"],
                "sklearn": m["sklearn_version"],
                "cython": m["cython_version"],
                "pyperf": m["pyperf_version"],
                "threadpoolctl": m["threadpoolctl_version"],
            },
            "build": {
                "compiler": m["compiler"],
                "compiler_flags": m["compiler_flags"],
                "openmp": m["openmp"],
                "kernels": m["kernels"],
            },
            "git_commit": m["git_commit"],
            "git_dirty": m["git_dirty"],
            "metadata": m,
            "strategies": {
                name: {
                    "kind": info.kind,
                    "available": info.available,
                    "reason": info.reason,
                    "parallel": bool(info.cls.parallel) if info.cls is not None else None,
                }
                for name, info in strategies.registry().items()
            },
        }

    def consistent_configurations(self) -> set[str]:
        """Configurations of a resumed table kept as they are (``ok``, files whole).

        An ``ok`` configuration is kept (finished or still sampling) when its pyperf file
        holds one run per process in the table and, phase by phase, the table's values
        are exactly the pyperf values: a row deleted, cut short or edited (a
        ``seconds`` of ``fast``) makes the configuration unfinished. Anything else
        (skipped, failed, cut short between two writes) is measured again from its
        first process, with a warning naming why.
        """
        by_config: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            by_config.setdefault(str(row.get("config_id")), []).append(row)
        kept = set()
        for cid, rows in by_config.items():
            if {str(row.get("status")) for row in rows} != {"ok"}:
                continue
            problem = self._disagreement_with_pyperf(cid, rows)
            if problem:
                warnings.warn(
                    f"{self.run_dir / TABLE_FILE}: {cid} is measured again: {problem}",
                    RuntimeWarning,
                    stacklevel=5,
                )
                continue
            kept.add(cid)
        return kept

    def _disagreement_with_pyperf(self, cid: str, rows: list[dict[str, Any]]) -> str:
        """Why ``rows`` are not exactly the configuration's pyperf values, or ""."""
        path = self.run_dir / PYPERF_DIR / f"{cid}.json"
        if not path.is_file():
            return f"its pyperf file {path.name} is missing"
        try:
            benchmarks = {bench.get_name(): bench for bench in self.pyperf_benchmarks(cid)}
        except Exception as exc:  # any damage to the JSON
            self._benchmarks.pop(cid, None)
            return f"its pyperf file cannot be read ({type(exc).__name__}: {exc})"
        first = rows[0]
        phases = (
            phases_for(str(first.get("kind")))
            if str(first.get("problem") or "gmm") == "gmm"
            else ("prepare", "iteration")  # micro-problems: no E/M split
        )
        processes = {int(row["process"]) for row in rows if row.get("phase") == DECIDING_PHASE}
        for phase in phases:
            bench = benchmarks.get(benchmark_name(cid, phase))
            if bench is None:
                return f"its pyperf file has no {phase} values"
            runs = [run for run in bench.get_runs() if run.values]
            if phase == DECIDING_PHASE and len(runs) != len(processes):
                return f"{len(processes)} process(es) in the table for {len(runs)} pyperf runs"
            values = sorted(float(v) for run in runs for v in run.values)
            stored = sorted(float(row["seconds"]) for row in rows if row.get("phase") == phase)
            if len(stored) != len(values):
                return (
                    f"{len(stored)} {phase} row(s) in the table for the {len(values)} pyperf values"
                )
            pairs = zip(stored, values, strict=True)
            if any(not math.isclose(s, v, rel_tol=1e-9) for s, v in pairs):
                return f"its {phase} rows differ from the pyperf values"
        return ""

    def write_meta(self, counts: dict[str, int]) -> None:
        """``meta.json``, with ``counts`` (configurations by status) as ``configurations``."""
        self.meta["updated"] = now_iso()
        self.meta["configurations"] = dict(counts)
        write_text_atomic(self.run_dir / META_FILE, to_json(self.meta, indent=1))

    def write_table(self) -> None:
        table = as_table(self.rows)
        write_atomic(self.run_dir / TABLE_FILE, lambda path: table.to_csv(path, index=False))
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return
        try:
            write_atomic(
                self.run_dir / PARQUET_FILE, lambda path: table.to_parquet(path, index=False)
            )
        except Exception as exc:  # a convenience copy must never stop a sweep
            if not self._parquet_warned:
                warnings.warn(
                    f"cannot write {PARQUET_FILE} ({type(exc).__name__}: {exc}); the CSV "
                    "table is complete",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._parquet_warned = True

    def pyperf_benchmarks(self, cid: str) -> list[Any]:
        """A finished configuration's pyperf benchmarks (read once, then cached)."""
        import pyperf

        if cid not in self._benchmarks:
            path = self.run_dir / PYPERF_DIR / f"{cid}.json"
            self._benchmarks[cid] = pyperf.BenchmarkSuite.load(str(path)).get_benchmarks()
        return self._benchmarks[cid]

    def write_suite(self) -> None:
        """Merge the finished configurations' pyperf files into one suite."""
        import pyperf

        done = sorted({str(row["config_id"]) for row in self.rows if row["status"] == "ok"})
        benchmarks = [bench for cid in done for bench in self.pyperf_benchmarks(cid)]
        if not benchmarks:
            with contextlib.suppress(OSError):
                (self.run_dir / PYPERF_SUITE).unlink()
            return
        suite = pyperf.BenchmarkSuite(benchmarks)
        write_atomic(self.run_dir / PYPERF_SUITE, lambda path: suite.dump(str(path), replace=True))

    def replace_rows(self, cid: str, rows: list[dict]) -> None:
        """Put ``rows`` in place of the configuration's rows (in memory)."""
        self.rows = [row for row in self.rows if row["config_id"] != cid] + rows

    def merge_pyperf(self, cid: str, suite: Any) -> None:
        """Add one process's runs to the configuration's pyperf file."""
        import pyperf

        target = self.run_dir / PYPERF_DIR / f"{cid}.json"
        if target.is_file():
            merged = pyperf.BenchmarkSuite.load(str(target))
            for bench in suite.get_benchmarks():
                merged.add_runs(bench)
        else:
            merged = suite
        write_atomic(target, lambda path: merged.dump(str(path), replace=True))
        self._benchmarks[cid] = merged.get_benchmarks()

    def keep_log(self, cid: str, log_file: Path) -> None:
        """Copy a failed process's output to ``logs/<config_id>.log``."""
        logs = self.run_dir / LOG_DIR
        logs.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(log_file, logs / f"{cid}.log")


__all__ = ["LOG_DIR", "WORK_DIR", "RunFolder", "merge_sweep_arguments"]
