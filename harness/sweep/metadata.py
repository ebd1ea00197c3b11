"""What a run ran on: machine, versions, build flags and source revision.

:func:`collect_metadata` gathers it once per sweep for ``meta.json``;
:func:`row_metadata` flattens the part every row of the tidy table repeats (the
metadata columns of :data:`harness.sweep.results.COLUMNS`).

Everything here degrades instead of failing: a field that cannot be read (no
``/proc/cpuinfo``, no git checkout, compiled kernels not built) is recorded as
``"unknown"`` or with the reason, because a benchmark run must never be lost to
its bookkeeping.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
from importlib import metadata as _importlib_metadata
from pathlib import Path

from harness.model.threads import usable_cores
from harness.sweep.results import RUN_METADATA_COLUMNS

UNKNOWN = "unknown"

#: The repository root (where ``git`` is asked for the commit).
REPO_ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                # x86 says "model name", some ARM kernels say "Model" or "Processor".
                if key.strip().lower() in ("model name", "model", "processor") and not (
                    value.strip().isdigit()
                ):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or UNKNOWN


def _package_version(distribution: str) -> str:
    try:
        return _importlib_metadata.version(distribution)
    except _importlib_metadata.PackageNotFoundError:
        return "not installed"


def blas_libraries() -> list[dict[str, object]]:
    """BLAS libraries loaded in this process (threadpoolctl), NumPy's first.

    Returns
    -------
    list of dict
        Keys ``internal_api``, ``version``, ``threading_layer``, ``architecture``,
        ``num_threads``, ``filepath``.
    """
    import numpy  # noqa: F401  (loads NumPy's BLAS so threadpoolctl can see it)
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "threading_layer", "architecture", "num_threads", "filepath")
    libraries = [
        {key: pool.get(key) for key in keys}
        for pool in threadpool_info()
        if pool.get("user_api") == "blas"
    ]
    # NumPy's own BLAS ships in numpy.libs (wheels) or is named in NumPy's build config.
    libraries.sort(key=lambda lib: "numpy" not in str(lib.get("filepath", "")))
    return libraries


def numpy_blas() -> str:
    """One line naming NumPy's BLAS, e.g. ``openblas 0.3.31 (pthreads, SkylakeX)``."""
    libraries = blas_libraries()
    if libraries:
        lib = libraries[0]
        details = ", ".join(
            str(lib[key]) for key in ("threading_layer", "architecture") if lib.get(key)
        )
        return f"{lib['internal_api']} {lib['version']}" + (f" ({details})" if details else "")
    try:  # not loaded as a shared library threadpoolctl knows: ask NumPy's build config
        import numpy as np

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', UNKNOWN)} {blas.get('version', '')}".strip()
    except Exception:
        return UNKNOWN


def kernels_build_info() -> dict[str, object]:
    """How the compiled kernels were built, or why they are not available.

    Returns
    -------
    dict
        ``available`` (bool) plus, when available, ``openmp_compiled``, ``compiler``,
        ``compile_args``, ``link_args``, ``cython_version`` from
        ``kernels.gmm_kernels.build_info()``; otherwise ``reason``.
    """
    try:
        from kernels import gmm_kernels

        info = dict(gmm_kernels.build_info())
    except Exception as exc:  # not built yet, or built for another Python: say so
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    info["available"] = True
    return info


def git_revision(root: Path = REPO_ROOT) -> tuple[str, bool | None]:
    """The checked-out commit and whether tracked files differ from it.

    Returns
    -------
    commit : str
        Full hash, or ``"unknown"`` outside a git checkout (or without git).
    dirty : bool or None
        None when unknown.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, None
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return commit or UNKNOWN, dirty


def compiler_flags(kernels: dict[str, object]) -> str:
    """The kernels' compile and link arguments as one string ("" when not built)."""
    if not kernels.get("available"):
        return ""
    compile_args = " ".join(map(str, kernels.get("compile_args") or ()))
    link_args = " ".join(map(str, kernels.get("link_args") or ()))
    return f"{compile_args} | link: {link_args}" if link_args else compile_args


def collect_metadata() -> dict[str, object]:
    """Everything a results folder records about where and with what it ran.

    Returns
    -------
    dict
        ``cpu_model``, ``usable_cores``, ``logical_cpus``, ``machine``, ``hostname``,
        ``platform``, ``python_version``, ``python_implementation``, ``numpy_version``,
        ``blas`` (NumPy's BLAS, one line), ``blas_libraries`` (every loaded BLAS),
        ``scipy_version``, ``sklearn_version``, ``cython_version``, ``pyperf_version``,
        ``threadpoolctl_version``, ``kernels`` (:func:`kernels_build_info`),
        ``compiler``, ``compiler_flags``, ``openmp`` (bool: OpenMP compiled into the
        kernels), ``git_commit``, ``git_dirty``, ``date`` (ISO 8601, local time with
        offset).
    """
    import numpy as np

    kernels = kernels_build_info()
    commit, dirty = git_revision()
    return {
        "cpu_model": cpu_model(),
        "usable_cores": usable_cores(),
        "logical_cpus": os.cpu_count() or 1,
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy_version": np.__version__,
        "blas": numpy_blas(),
        "blas_libraries": blas_libraries(),
        "scipy_version": _package_version("scipy"),
        "sklearn_version": _package_version("scikit-learn"),
        "cython_version": str(kernels.get("cython_version") or _package_version("Cython")),
        "pyperf_version": _package_version("pyperf"),
        "threadpoolctl_version": _package_version("threadpoolctl"),
        "kernels": kernels,
        "compiler": str(kernels.get("compiler", "")) if kernels.get("available") else "",
        "compiler_flags": compiler_flags(kernels),
        "openmp": bool(kernels.get("available") and kernels.get("openmp_compiled")),
        "git_commit": commit,
        "git_dirty": dirty,
        "date": now_iso(),
    }


def now_iso() -> str:
    """The current local time, ISO 8601 with UTC offset, to the second."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


#: Metadata columns of the tidy table filled from :func:`collect_metadata`.
ROW_METADATA_KEYS = tuple(
    column for column in RUN_METADATA_COLUMNS if column not in ("run_id", "date")
)


def row_metadata(metadata: dict[str, object]) -> dict[str, object]:
    """The per-row metadata columns (``run_id`` and ``date`` are added by the runner)."""
    return {key: metadata.get(key, UNKNOWN) for key in ROW_METADATA_KEYS}
