"""``python -m harness plot RUN_DIR``: charts, ``findings.json`` and ``report.md`` for one
results folder.

Reads ``RUN_DIR/results.csv`` and ``meta.json`` (:mod:`harness.sweep.results`), derives the
numbers with :mod:`harness.report.analysis` and the verdicts with
:mod:`harness.report.findings`, draws them with :mod:`harness.report.charts` into
``RUN_DIR/charts/`` (PNG and SVG), writes the verdicts to ``RUN_DIR/findings.json`` and
writes ``RUN_DIR/report.md``, whose findings are the ``text`` of those records and which
embeds the charts by relative path. The fitted-model pictures of the 2-D workloads come from a
short re-fit (``einsum`` strategy, the run's seed) on at most ``--fit-points`` points.

It writes only ``charts/`` and ``report.md`` into a run folder and never changes
its table, pyperf files or ``meta.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.model.errors import DataFileError, HarnessError
from harness.report import charts, overhead
from harness.report.analysis import (
    Analysis,
    analyse,
)
from harness.report.cluster_section import cluster_section
from harness.report.findings import FINDINGS_FILE
from harness.report.run_section import find_key, run_section, sweep_arguments
from harness.report.sections import (
    disturbed_section,
    floor_section,
    not_measured_section,
    peers_section,
    phase_section,
    scaling_section,
    summary_table,
)
from harness.report.text import fmt_n
from harness.report.uncertainty import CONFIDENCE, SINGLE_PROCESS_ALLOWANCE
from harness.sweep.floors import FLOORS_KEY
from harness.sweep.formats import write_text_atomic
from harness.sweep.results import (
    CHARTS_DIR,
    REPORT_FILE,
    TABLE_FILE,
    load_meta,
    load_table,
    run_folder,
)

#: Points of the fitted-model picture: enough to show the shape, quick to re-fit.
FIT_POINTS = 20_000
#: Iteration cap and stopping tolerance of that re-fit (scikit-learn's defaults), from the
#: benchmark's own k-means++ start. A fixed ~30 iterations left quinn (k = 50) visibly
#: unconverged; to tolerance it takes about 70 iterations, a few seconds at 20,000 points.
FIT_ITERATIONS = 100
FIT_TOL = 1e-3
#: Strategy used for the re-fit: vectorised NumPy, always available, no build needed.
FIT_STRATEGY = "einsum"

_NOT_TIMED = "no iteration time was measured"
_NOT_SCALED = "no parallel strategy was measured with 1 and with more workers"
#: The overview charts, in report order: (stem, heading, alt text, function of
#: :mod:`harness.report.charts` that draws it, why it may be missing).
_OVERVIEW = (
    ("speedup", "Speedup against workers", "Speedup against workers", "speedup_chart", _NOT_TIMED),
    (
        "best_strategy",
        "Fastest strategy per size and worker count",
        "Best-strategy map",
        "best_map_chart",
        _NOT_TIMED,
    ),
    (
        "efficiency",
        "Parallel efficiency and serial fraction",
        "Parallel efficiency and Karp-Flatt fraction",
        "efficiency_chart",
        _NOT_SCALED,
    ),
    (
        "amdahl",
        "Amdahl extrapolation (model)",
        "Amdahl extrapolation",
        "amdahl_chart",
        _NOT_SCALED,
    ),
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="results folder written by `python -m harness run`"
    )
    parser.add_argument(
        "--fit-points",
        type=int,
        default=FIT_POINTS,
        help="points used for the fitted-model pictures of 2-D workloads",
    )
    parser.add_argument(
        "--fit-iterations",
        type=int,
        default=FIT_ITERATIONS,
        help="at most this many EM iterations for the re-fit behind those pictures "
        f"(it stops earlier once the mean log-likelihood changes by less than {FIT_TOL:g})",
    )
    parser.add_argument(
        "--no-fitted-model", action="store_true", help="skip the fitted-model pictures (no re-fit)"
    )


def main(args: argparse.Namespace) -> int:
    if args.fit_points < 2 or args.fit_iterations < 1:
        from harness.model.errors import InvalidParameterError

        raise InvalidParameterError(
            "--fit-points must be >= 2 and --fit-iterations >= 1; got "
            f"{args.fit_points} and {args.fit_iterations}"
        )
    result = plot_run(
        args.run_dir,
        fit_points=args.fit_points,
        fit_iterations=args.fit_iterations,
        fitted_model=not args.no_fitted_model,
    )
    print(f"wrote {len(result.chart_files)} chart files to {result.charts_dir}")
    for stem, reason in result.skipped.items():
        print(f"  no {stem}: {reason}")
    print(f"wrote {result.findings_path}")
    print(f"wrote {result.report_path}")
    return 0


# --------------------------------------------------------------------------------------
# Driving the whole thing
# --------------------------------------------------------------------------------------


@dataclass
class PlotResult:
    """What :func:`plot_run` wrote.

    Attributes
    ----------
    report_path : Path
    findings_path : Path
    charts_dir : Path
    charts : dict of str to str
        Chart stem -> relative PNG path used in the report.
    chart_files : list of Path
        Every file written under ``charts/``.
    skipped : dict of str to str
        Chart stem -> why it was not drawn.
    captions : dict of str to str
        Chart stem -> a caption for the report (how a fitted-model picture was made).
    analysis : Analysis
    """

    report_path: Path
    charts_dir: Path
    analysis: Analysis
    findings_path: Path | None = None
    charts: dict[str, str] = field(default_factory=dict)
    chart_files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)


def plot_run(
    run_dir: str | Path,
    *,
    fit_points: int = FIT_POINTS,
    fit_iterations: int = FIT_ITERATIONS,
    fitted_model: bool = True,
) -> PlotResult:
    """Write ``charts/`` and ``report.md`` for one results folder.

    Parameters
    ----------
    run_dir : str or Path
    fit_points, fit_iterations : int
        Size of the re-fit behind the fitted-model pictures.
    fitted_model : bool
        Draw the fitted-model pictures of 2-D workloads.

    Returns
    -------
    PlotResult

    Raises
    ------
    DataFileError
        If the folder, its table or its metadata cannot be read, or a file cannot be
        written.
    """
    run_dir = run_folder(run_dir)
    table = load_table(run_dir)
    # Missing or damaged metadata is refused: a report that cannot say what machine and
    # build measured its figures would present them as if it could.
    meta = load_meta(run_dir)
    analysis = analyse(table, usable_cores=_usable_cores(meta), floors=meta.get(FLOORS_KEY))
    charts_dir = run_dir / CHARTS_DIR
    result = PlotResult(run_dir / REPORT_FILE, charts_dir, analysis)
    styles = charts.styles_for(analysis)
    workloads = sorted(analysis.headline_n)

    def emit(stem: str, figure, reason: str) -> None:
        if figure is None:
            result.skipped[stem] = reason
            return
        try:
            result.chart_files += charts.save(figure, charts_dir, stem)
        except OSError as exc:
            raise DataFileError(f"cannot write charts to {charts_dir}: {exc}") from exc
        result.charts[stem] = f"{CHARTS_DIR}/{stem}.png"

    for stem, _, _, draw, reason in _OVERVIEW:
        emit(stem, getattr(charts, draw)(analysis, styles), reason)
    for workload in workloads:
        slug = _slug(workload)
        emit(
            f"time_vs_n_{slug}",
            charts.time_vs_n_chart(analysis, styles, workload),
            _NOT_TIMED,
        )
        emit(
            f"phases_{slug}",
            charts.phase_chart(analysis, styles, workload),
            "no phase was measured",
        )
    micro = overhead.overhead_frame(analysis.table)
    if not micro.empty:
        emit("overhead", overhead.overhead_chart(micro, styles), "nothing to draw")
    if fitted_model:
        seed = _seed(meta)
        for workload in _two_d_workloads(analysis):
            stem = f"fitted_{_slug(workload)}"
            try:
                figure, caption = _fitted_model_figure(
                    analysis, workload, seed, fit_points, fit_iterations
                )
            except HarnessError as exc:
                figure, reason = None, f"re-fit failed: {exc}"
            else:
                reason = ""
                result.captions[stem] = caption
            emit(stem, figure, reason)
    result.findings_path = run_dir / FINDINGS_FILE
    records = [finding.to_dict() for finding in analysis.findings]
    _write_atomic(result.findings_path, json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    text = render_report(analysis, meta, result, run_dir)
    _write_atomic(result.report_path, text)
    return result


def _usable_cores(meta: dict) -> int | None:
    value = find_key(meta, "usable_cores")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _seed(meta: dict) -> int:
    """The sweep's data seed (``sweep.protocol.seed`` or ``args.seed``), 0 if unrecorded."""
    value = find_key(sweep_arguments(meta), "seed")
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _slug(name: str) -> str:
    """A workload name safe for a file name (user data files are named after the file)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "workload"


def _write_atomic(path: Path, text: str) -> None:
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise DataFileError(f"cannot write {path}: {exc}") from exc


# --------------------------------------------------------------------------------------
# Fitted-model picture
# --------------------------------------------------------------------------------------


def _two_d_workloads(analysis: Analysis) -> list[str]:
    """Built-in workloads with two features (user files cannot be regenerated)."""
    from harness.model.workloads import WORKLOADS

    names = []
    for workload in sorted(analysis.workloads.index):
        spec = WORKLOADS.get(workload)
        if spec is not None and spec.d == 2:
            names.append(workload)
    return names


def _fitted_model_figure(
    analysis: Analysis, workload: str, seed: int, fit_points: int, fit_iterations: int
):
    """Re-fit a workload cheaply and draw the fitted mixture.

    Returns
    -------
    figure : Figure
    caption : str
        How the picture was made, for the report.
    """
    import strategies
    from harness.model.gmm import derive, initial_params, log_weighted_density
    from harness.model.workloads import make_workload
    from harness.sweep.em import fit

    n_run = max(analysis.workloads.loc[workload, "n_values"])
    n = int(min(n_run, fit_points))
    dataset = make_workload(workload, n=n, seed=seed)
    init = initial_params(dataset.X, dataset.k, seed=seed)
    with warnings.catch_warnings():
        # A component floored on a small sample is part of the picture, not an error.
        warnings.simplefilter("ignore")
        with strategies.create(FIT_STRATEGY) as strategy:
            fitted = fit(strategy, dataset.X, init, max_iter=fit_iterations, tol=FIT_TOL)
    labels = np.argmax(log_weighted_density(dataset.X, derive(fitted.final)), axis=1)
    title = (
        f"{workload}: fitted {dataset.k}-component mixture\n{fmt_n(n)} of the run's "
        f"{fmt_n(n_run)} points, seed {seed}\nEM from the benchmark's start, "
        + (
            f"converged after {fitted.iterations}"
            if fitted.converged
            else f"stopped at {fitted.iterations}"
        )
        + f" iterations (tol {FIT_TOL:g})\nmean log-likelihood per point "
        f"{fitted.loglik[-1]:.3f}"
    )
    figure = charts.fitted_model_chart(
        dataset.X, fitted.final.means, fitted.final.covariances, labels, title
    )
    stopped = (
        f"converged after {fitted.iterations} iterations"
        if fitted.converged
        else f"stopped at the cap of {fitted.iterations} iterations"
    )
    caption = (
        f"EM re-fit of `{workload}` on {fmt_n(n)} of the run's {fmt_n(n_run)} points "
        f"(data seed {seed}, the benchmark's k-means++ start, strategy "
        f"`{FIT_STRATEGY}`), {stopped} (tolerance {FIT_TOL:g} on the mean "
        f"log-likelihood, final {fitted.loglik[-1]:.4f}). Points are coloured by their "
        "most likely component; ellipses are 1σ (solid) and 2σ (dashed). EM finds a "
        "local optimum from this start, so merged or split clusters are real results "
        "of the algorithm, not drawing errors."
    )
    return figure, caption


# --------------------------------------------------------------------------------------
# report.md
# --------------------------------------------------------------------------------------


def _image(result: PlotResult, stem: str, alt: str) -> str:
    if stem in result.charts:
        path = result.charts[stem]
        return f"![{alt}]({path})\n\n[SVG]({path[:-4]}.svg)"
    reason = result.skipped.get(stem, "not drawn")
    return f"*No chart “{alt}”: {reason}.*"


_METHOD = f"""## How the numbers are computed

- Every time is the **median** of the repeated values of one configuration and phase; the
  bracket and the chart bands are its **{CONFIDENCE:.0%} bootstrap confidence interval**.
  Processes are the unit of replication where the table records which process timed a
  value (the bootstrap resamples processes, then values within them); otherwise each value
  is a unit. Values from one process cannot show the process-to-process noise, which is
  the larger one, so an interval resting on a single process is widened by
  {SINGLE_PROCESS_ALLOWANCE:.0%}.
- Every ratio (margin, speedup, "slower", crossover) carries the interval of the ratio of
  the two medians, from the same bootstrap draws. **Where that interval reaches 1 the
  verdict is a tie** ("`a` ≈ `b`"): no winner, loss, crossover or slowdown is named
  inside the noise. Efficiencies above 100% and serial fractions below 0 that the
  interval does not separate from 100% and 0 are shown as "within noise"; fitted costs
  are stated only where their interval is above zero.
- Configurations the sweep left **disturbed** (other programs took the CPU, or the
  values were unstable, after its last attempt) are drawn hollow and grey, listed under
  *Disturbed configurations*, and used for no finding and no winner.
- *Iteration* is one full EM iteration as the driver runs it (the fused one-pass
  iteration where the strategy has one, marked *fused*); *prepare* runs once per data set.
- **Speedup vs itself** = T(1 worker) / T(p workers) of the same strategy.
  **Speedup vs fastest 1-worker** = T of the fastest strategy at 1 worker / T.
  **Efficiency** = speedup vs itself / p.
- **Karp-Flatt serial fraction** e = (1/S − 1/p) / (1 − 1/p): the share of the work
  that behaved as serial. Negative means superlinear (cache) effects; above 1 means the
  extra workers made it slower.
- **Amdahl model**: f is the least-squares fit of 1/S − 1/p = f (1 − 1/p) over the
  measured p > 1 (oversubscribed runs excluded), clipped to [0, 1]; its speedups on more
  cores than the machine has are a **model**, drawn dashed, with the band propagated
  from the speedups' intervals. Where that band is wider than the predicted value the
  prediction is dropped (tables, findings and chart): with two cores measured, a small
  change of the measured speedup moves the far extrapolations by several times.
- `findings.json` holds every finding as data (kind, workload, n, workers, strategies,
  ratio and interval, the configurations it rests on, and the sentence); the findings
  above are its `text`.
- In the best-strategy map and the summary tables a worker count is a **budget**: each
  strategy competes with its fastest time on at most that many workers (sequential
  strategies, kind *serial* and `cython`, are measured at 1 worker only).
"""


def render_report(analysis: Analysis, meta: dict, result: PlotResult, run_dir: Path) -> str:
    """The text of ``report.md``."""
    run_id = meta.get("run_id") or run_dir.resolve().name
    parts = [
        f"# Benchmark report: {run_id}",
        "",
        "Which way of parallelising Gaussian-mixture EM is fastest here, when, and why. "
        "Generated by `python -m harness plot` from this folder's "
        f"`{TABLE_FILE}`; every number and sentence below is computed from it.",
        "",
        run_section(analysis, meta),
        "## Findings",
        "",
    ]
    parts += [f"- {finding.text}" for finding in analysis.findings] or ["- Nothing was measured."]
    parts += [
        "",
        "## Overview",
        "",
    ]
    for stem, heading, alt, _, _ in _OVERVIEW:
        parts += [f"### {heading}", "", _image(result, stem, alt), ""]
    for workload in sorted(analysis.headline_n):
        slug = _slug(workload)
        info = analysis.workloads.loc[workload]
        dims = f"d = {int(info['d'])}, k = {int(info['k'])}, " if pd.notna(info["d"]) else ""
        parts += [
            f"## Workload `{workload}`",
            "",
            f"{dims}n ∈ {{{', '.join(fmt_n(v) for v in info['n_values'])}}}.",
            "",
            "### Fastest strategy at each size and worker count",
            "",
            summary_table(analysis, workload),
            "",
            scaling_section(analysis, workload),
            "### Time per iteration against n",
            "",
            _image(result, f"time_vs_n_{slug}", f"Time per iteration, {workload}"),
            "",
            phase_section(analysis, workload),
            _image(result, f"phases_{slug}", f"Phase breakdown, {workload}"),
            "",
        ]
        stem = f"fitted_{slug}"
        if stem in result.charts or stem in result.skipped:
            parts += ["### Fitted model", "", _image(result, stem, f"Fitted model, {workload}"), ""]
            if stem in result.captions:
                parts += [result.captions[stem], ""]
    micro = overhead.overhead_frame(analysis.table)
    parts += [overhead.overhead_section(micro, _image(result, "overhead", "Overhead against work"))]
    parts += [
        peers_section(analysis),
        floor_section(analysis),
        cluster_section(analysis, run_dir),
        disturbed_section(analysis),
        not_measured_section(analysis),
        _METHOD,
    ]
    return "\n".join(parts)
