"""The report's section on the ``dask`` strategy: what was measured, and the model past
this machine (:mod:`harness.report.cluster_model`).

Reads the run folder's ``configs/<config_id>.json`` (what each measurement process
reported in ``runtime_info``) and the analysis's medians; writes nothing and measures
nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from harness.report import cluster_model
from harness.report.analysis import Analysis
from harness.report.sections import md_table
from harness.report.text import fmt_ms, fmt_n
from harness.sweep.results import CONFIGS_DIR


def cluster_inputs(run_dir: Path) -> list[dict]:
    """The ``dask`` configurations' measured inputs of the cluster model.

    Read from ``configs/<config_id>.json`` (what each measurement process reported):
    medians over processes of the strategy's ``scheduler_overhead_seconds``,
    ``task_seconds_per_point`` and ``startup_seconds``.
    """
    rows = []
    for path in sorted((run_dir / CONFIGS_DIR).glob("*.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        processes = [
            entry
            for entry in document.get("processes") or []
            if isinstance(entry, dict) and entry.get("status") == "ok"
        ]
        infos = [entry.get("runtime_info") or {} for entry in processes]
        if not infos or not any("scheduler_overhead_seconds" in info for info in infos):
            continue
        spec = processes[0].get("spec") or {}
        rows.append(
            {
                "workload": spec.get("workload"),
                "n": int(spec.get("n") or 0),
                "workers": int(spec.get("workers") or 0),
                "overhead": cluster_model.median_of(
                    info.get("scheduler_overhead_seconds") for info in infos
                ),
                "cost_per_point": cluster_model.median_of(
                    info.get("task_seconds_per_point") for info in infos
                ),
                "startup": cluster_model.median_of(info.get("startup_seconds") for info in infos),
            }
        )
    return rows


def cluster_section(analysis: Analysis, run_dir: Path) -> str:
    """Measured scheduler overhead and start-up of ``dask``, and the model past this machine.

    The model (:mod:`harness.report.cluster_model`) is labelled as such, with the inputs
    it rests on; the openmp cost per point is the fastest measured ``openmp`` median
    iteration at that workload and n, divided by n.
    """
    inputs = cluster_inputs(run_dir)
    if not inputs:
        return ""
    summary = analysis.summary
    openmp = summary[(summary["strategy"] == "openmp") & (summary["phase"] == "iteration")]
    measured, modelled = [], []
    for item in sorted(inputs, key=lambda r: (str(r["workload"]), r["n"], r["workers"])):
        measured.append(
            [
                f"`{item['workload']}`",
                fmt_n(item["n"]),
                str(item["workers"]),
                fmt_ms(item["overhead"]),
                f"{item['cost_per_point'] * 1e9:,.1f} ns",
                fmt_ms(item["startup"]),
            ]
        )
        here = openmp[(openmp["workload"] == item["workload"]) & (openmp["n"] == item["n"])]
        usable = all(
            math.isfinite(item[key]) and item[key] >= 0 for key in ("overhead", "cost_per_point")
        )
        if here.empty or not usable or item["n"] <= 0:
            continue
        a = float(here["median"].min()) / item["n"]
        table = cluster_model.model_table(item["n"], item["cost_per_point"], item["overhead"], a)
        for row in table:
            crossover = "never" if math.isinf(row.crossover_n) else fmt_n(int(row.crossover_n))
            modelled.append(
                [
                    f"`{item['workload']}`",
                    fmt_n(item["n"]),
                    f"{item['workers']} → {row.workers}",
                    fmt_ms(row.seconds_per_iteration),
                    fmt_ms(row.openmp_seconds_per_iteration),
                    crossover,
                ]
            )
    parts = [
        "## Past this machine: `dask`",
        "",
        "Measured per configuration (medians over its processes): the scheduler overhead "
        "per iteration (wall time minus the slowest task's compute), the compute cost per "
        "point of one task, and the cluster's start-up.",
        "",
        md_table(
            ["workload", "n", "workers", "overhead / iteration", "task cost / point", "start-up"],
            measured,
            "lrrrrr",
        ),
        "",
    ]
    if modelled:
        parts += [
            "**A model, not a measurement**: t(n, W) = overhead + n·c/W against one "
            "in-process `openmp` run at n·a (a: its fastest measured time per point here). "
            "It assumes balanced blocks, an overhead that does not grow with W and a network "
            "that adds nothing, so each crossover is a lower bound on the n at which W "
            "workers start to beat `openmp`.",
            "",
            md_table(
                [
                    "workload",
                    "n",
                    "measured W → modelled W",
                    "modelled time / iteration",
                    "`openmp` / iteration",
                    "W beats `openmp` from n =",
                ],
                modelled,
                "lrrrrr",
            ),
            "",
        ]
    return "\n".join(parts)
