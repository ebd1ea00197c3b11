"""Which two runs ``make compare`` compares: ``python -m harness compare --auto [NEW]``.

Timings can only be compared like with like: the same machine, the same data, and
configurations measured in both runs. A default sweep (``make bench``) and a quick sweep
(``make bench-quick``) share no size, so a fixed "baseline against the latest run" finds
nothing in common half of the time. :func:`choose_runs` picks instead:

* **NEW**: the run given, else the most recently written run folder under ``results/``
  that is not a committed baseline (``results/baseline*``);
* **BASE**, the first of these that is comparable with NEW (same host and data, as
  :func:`harness.gate.runs.check_compatible` decides, and at least one configuration
  measured in both):

  1. a committed baseline (``results/baseline``, a quick sweep; ``results/baseline-*``
     for other protocols) swept with NEW's mode and sizes;
  2. the most recent earlier run under ``results/`` swept with NEW's mode and sizes
     (after ``make bench``, the previous ``make bench``);
  3. a committed baseline or earlier run with some configurations in common with NEW
     (only those are compared).

When nothing qualifies the choice fails with the reason and the command that gives
``make compare`` something to compare with. Reads run folders only; never writes.
"""

from __future__ import annotations

from pathlib import Path

from harness.model.errors import DataFileError, HarnessError
from harness.sweep.results import META_FILE, load_meta

#: Where ``make`` writes runs.
RESULTS_ROOT = Path("results")
#: Name prefix of committed baselines.
BASELINE_PREFIX = "baseline"


class NothingToCompareError(HarnessError, ValueError):
    """No run under the results folder is comparable with NEW."""


def _created(run: Path) -> tuple[str, float]:
    """Sort key: the run's recorded creation time, then its meta.json's modification time."""
    try:
        created = str(load_meta(run).get("created") or "")
    except DataFileError:
        created = ""
    return created, (run / META_FILE).stat().st_mtime


def _runs(root: Path) -> list[Path]:
    """Run folders under ``root`` (with a ``meta.json``), newest first."""
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and (p / META_FILE).is_file()]
    return sorted(runs, key=_created, reverse=True)


def _is_baseline(run: Path) -> bool:
    return run.name.startswith(BASELINE_PREFIX)


def _protocol_signature(run: Path) -> tuple:
    """Mode and resolved sizes of a sweep (what "the same sweep" means here)."""
    sweep = load_meta(run).get("sweep") or {}
    sizes = sweep.get("resolved_sizes") or sweep.get("sizes") or {}
    sizes = (
        tuple(sorted((str(k), tuple(v)) for k, v in sizes.items()))
        if isinstance(sizes, dict)
        else ()
    )
    return str(sweep.get("mode", "")), sizes


def latest_new_run(root: Path = RESULTS_ROOT) -> Path:
    """The newest run under ``root`` that is not a committed baseline.

    Raises
    ------
    NothingToCompareError
        If there is none.
    """
    runs = [run for run in _runs(root) if not _is_baseline(run)]
    if not runs:
        raise NothingToCompareError(
            f"no run in {root}/ to compare: run `make bench-quick` (compared with the "
            f"committed {root}/{BASELINE_PREFIX}) or `make bench` first"
        )
    return runs[0]


def choose_runs(
    new: str | Path | None = None, root: str | Path | None = None
) -> tuple[Path, Path, str]:
    """BASE and NEW for an automatic comparison, and why that BASE.

    Parameters
    ----------
    new : str or Path, optional
        The run to judge; default :func:`latest_new_run`.
    root : str or Path, optional
        Where to look for baselines and earlier runs; default NEW's parent folder, or
        ``results/``.

    Returns
    -------
    base, new : Path
    reason : str
        One sentence saying which BASE was chosen and why.

    Raises
    ------
    NothingToCompareError
        If no run is comparable with NEW.
    """
    from harness.gate.runs import common_keys, compatibility_problem

    root = Path(root) if root is not None else (Path(new).parent if new else RESULTS_ROOT)
    new_run = Path(new) if new is not None else latest_new_run(root)
    load_meta(new_run)  # a clear error for a folder that is not a run
    signature = _protocol_signature(new_run)
    new_created = _created(new_run)
    others = [run for run in _runs(root) if run.resolve() != new_run.resolve()]
    baselines = [run for run in others if _is_baseline(run)]
    earlier = [run for run in others if not _is_baseline(run) and _created(run) < new_created]
    rejected: list[str] = []

    def usable(run: Path) -> bool:
        problem = compatibility_problem(run, new_run)
        if problem:
            rejected.append(f"{run}: {problem}")
            return False
        if not common_keys(run, new_run):
            rejected.append(f"{run}: no configuration in common")
            return False
        return True

    same = [run for run in baselines + earlier if _protocol_signature(run) == signature]
    for run in same:
        if usable(run):
            what = "committed baseline" if _is_baseline(run) else "most recent earlier run"
            return (
                run,
                new_run,
                f"BASE {run}: the {what} swept like NEW (mode {signature[0]!r}, same sizes)",
            )
    for run in baselines + earlier:
        if run not in same and usable(run):
            return (
                run,
                new_run,
                f"BASE {run}: no run swept exactly like NEW (mode {signature[0]!r}); only the "
                "configurations both measured are compared",
            )
    hint = (
        f"run the same sweep again after your change (`make bench` twice, then `make compare`), "
        f"or `make bench-quick`, which the committed {root}/{BASELINE_PREFIX} matches"
    )
    detail = "; ".join(rejected) if rejected else f"no baseline or earlier run in {root}/"
    raise NothingToCompareError(f"nothing comparable with {new_run} ({detail}): {hint}")
