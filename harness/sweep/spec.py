"""What one configuration's measurement is asked to do, and how long it will take.

:class:`MeasureSpec` is the whole request the runner sends to a measurement process
(:mod:`harness.sweep.measure`) as JSON; :func:`save_inputs` / :func:`load_inputs`
hand it the workload and its common start; :func:`configuration_seconds` and
:func:`iteration_seconds_at` turn a per-iteration time into the estimate the time
budget judges (the runner before starting a process, the measurement process in its
budget probe, :func:`max_iteration_seconds`).

May not import a strategy or time anything; NumPy and the workloads load only inside
the input functions, so the runner can import this module cheaply.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from harness.model.errors import InvalidParameterError
from harness.sweep.results import config_id, phases_for
from harness.sweep.rounds import DECIDING_PHASE

#: EM iterations from the common start behind ``final_loglik`` (the correctness
#: cross-check). Three iterations exercise two M-steps and three E-steps, enough for
#: a wrong statistic to move the log-likelihood far beyond rounding.
CHECK_ITERATIONS = 3


@dataclass(frozen=True)
class MeasureSpec:
    """Everything the measurement process needs to know (JSON in, JSON out).

    Attributes
    ----------
    workload : str
    n : int
    strategy : str
    workers : int
    seed : int
        Data and initialisation seed.
    warmups, values : int
        pyperf warm-up and kept values per phase (per process).
    processes : int
        0 for the in-process mode, else pyperf worker processes per phase.
    min_time : float
        pyperf's minimum duration of one value (seconds), which sets the loop count.
    check_iterations : int
    time_budget : float or None
        Seconds of timed work this process may be estimated to take: the configuration's
        budget shared among its mandatory processes (used with ``probe``).
    probe : bool
        Use the first check iteration as the budget probe (see the module docstring).
    data_file, init_file : str or None
        The workload and its common start saved by :func:`save_inputs` (the runner
        generates each ``(workload, n)`` once for all its configurations); generated
        here when None. A micro-problem has no start: ``init_file`` is "".
    problem : str
        ``gmm``, or a micro-problem (:mod:`harness.model.problems`), whose strategies
        are timed through ``prepare(x)`` and ``run()``: phase ``prepare`` and phase
        ``iteration`` (one ``run()``, the whole problem); no ``e_step``/``m_step``.
    loops : dict or None
        Loop count per phase, taken from the configuration's first process (in-process
        mode): later processes skip pyperf's calibration and take one warm-up value
        instead, so every process's values use the same loop count.
    process : int
        Index of this process among the configuration's processes (0 for the first).
    deciding_only : bool
        Time only the phase the sweep's stopping rule decides on (``iteration``): a
        later process of the in-process modes, whose job is to replicate the
        configuration's iteration time across processes. The first process timed every
        phase; the E/M split and ``prepare`` are compared within that process.
    """

    workload: str
    n: int
    strategy: str
    workers: int
    seed: int = 0
    warmups: int = 1
    values: int = 3
    processes: int = 0
    min_time: float = 0.1
    check_iterations: int = CHECK_ITERATIONS
    time_budget: float | None = None
    probe: bool = False
    data_file: str | None = None
    init_file: str | None = None
    problem: str = "gmm"
    loops: dict[str, int] | None = None
    process: int = 0
    deciding_only: bool = False

    @property
    def config_id(self) -> str:
        return config_id(self.workload, self.n, self.strategy, self.workers)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MeasureSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def benchmark_name(config: str, phase: str) -> str:
    """pyperf benchmark name of one phase, e.g. ``quinn-n130000-einsum-w2/e_step``.

    The same configuration gets the same name in every run, so
    ``python -m pyperf compare_to`` pairs them up across runs.
    """
    return f"{config}/{phase}"


# ---- inputs --------------------------------------------------------------------------


def save_inputs(workload: str, n: int, seed: int, directory: Path) -> tuple[str, str]:
    """Generate a workload and its common start once, for every configuration using them.

    Saves ``X`` as ``.npy`` and the initial parameters as ``.npz`` in ``directory``,
    so measurement processes neither regenerate the data nor import scikit-learn
    (k-means++ seeding) at every start.

    Returns
    -------
    data_file, init_file : str
    """
    import numpy as np

    from harness.model.gmm import initial_params
    from harness.model.problems import problem_of_workload
    from harness.model.workloads import make_workload

    problem = problem_of_workload(workload)
    if problem.name != "gmm":
        directory.mkdir(parents=True, exist_ok=True)
        data_path = directory / f"{workload}-n{int(n)}-s{seed}.npy"
        np.save(data_path, problem.generate(workload, n, seed=seed), allow_pickle=False)
        return str(data_path), ""
    dataset = make_workload(workload, n, seed=seed)
    init = initial_params(dataset.X, dataset.k, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{dataset.name}-n{dataset.n}-s{seed}"
    data_file, init_file = stem.with_suffix(".npy"), stem.with_suffix(".init.npz")
    np.save(data_file, dataset.X, allow_pickle=False)
    np.savez(init_file, weights=init.weights, means=init.means, covariances=init.covariances)
    return str(data_file), str(init_file)


def load_inputs(spec: MeasureSpec) -> tuple[Any, Any]:
    """The spec's dataset and common start: from its files when given, else generated."""
    import numpy as np

    from harness.model.gmm import GMMParams, initial_params
    from harness.model.workloads import Dataset, make_workload

    if spec.problem != "gmm":
        return _load_micro_input(spec), None
    if spec.data_file is None or spec.init_file is None:
        dataset = make_workload(spec.workload, spec.n, seed=spec.seed)
        return dataset, initial_params(dataset.X, dataset.k, seed=spec.seed)
    X = np.load(spec.data_file, allow_pickle=False)
    with np.load(spec.init_file, allow_pickle=False) as saved:
        init = GMMParams(saved["weights"], saved["means"], saved["covariances"])
    if X.shape != (spec.n, init.n_features):
        raise InvalidParameterError(
            f"{spec.data_file} holds {X.shape}, expected ({spec.n}, {init.n_features})"
        )
    return Dataset(spec.workload, X, init.n_components, spec.seed), init


# ---- time estimates (shared with the runner) -------------------------------------------


def iteration_seconds_at(points: Sequence[tuple[int, float]], n: int) -> float:
    """Per-iteration seconds at ``n`` points, extrapolated from measured points.

    Parameters
    ----------
    points : sequence of (n_points, seconds)
        Measured (or probed) seconds of one EM iteration of the same strategy, workload
        and worker count at other sizes.
    n : int

    Returns
    -------
    float
        With one point, linear through the origin (every cost taken as per-point:
        errs on the slow side). With more, affine through the two largest sizes not
        above ``n`` (a fixed cost plus a per-point cost), never below the largest
        measured time and falling back to the linear rule when noise makes the slope
        negative.
    """
    if not points:
        raise ValueError("no measured points to extrapolate from")
    ordered = sorted((int(size), float(seconds)) for size, seconds in points)
    below = [point for point in ordered if point[0] <= n] or ordered[:1]
    n2, t2 = below[-1]
    linear = t2 * n / n2
    if len(below) < 2:
        return linear
    n1, t1 = below[-2]
    if n1 == n2:
        return linear
    slope = (t2 - t1) / (n2 - n1)
    if slope <= 0:
        return linear
    return max(t2 + slope * (n - n2), t2 if n >= n2 else 0.0)


@dataclass(frozen=True)
class MicroInput:
    """A micro-problem's data, shaped like :class:`~harness.model.workloads.Dataset`."""

    name: str
    X: Any  # ndarray of float64, shape (n,)
    d: int = 1
    k: int = 0


def _load_micro_input(spec: MeasureSpec) -> MicroInput:
    import numpy as np

    from harness.model.problems import get_problem

    if spec.data_file:
        x = np.load(spec.data_file, allow_pickle=False)
    else:
        x = get_problem(spec.problem).generate(spec.workload, spec.n, seed=spec.seed)
    if x.shape != (spec.n,):
        raise InvalidParameterError(f"{spec.data_file} holds {x.shape}, expected ({spec.n},)")
    return MicroInput(spec.workload, x)


def phases_of(spec: MeasureSpec, kind: str | None = None) -> tuple[str, ...]:
    """The phases timed for the spec's problem and strategy kind.

    Micro-problems: ``prepare`` and ``iteration``; a ``library`` strategy:
    :data:`~harness.sweep.results.LIBRARY_PHASES`; otherwise :data:`~harness.sweep.results.PHASES`.
    Only :data:`~harness.sweep.rounds.DECIDING_PHASE` when ``spec.deciding_only``.
    """
    if spec.deciding_only:
        return (DECIDING_PHASE,)
    if spec.problem != "gmm":
        return ("prepare", "iteration")
    return phases_for(kind)


def calls_per_phase(spec: MeasureSpec) -> int:
    """Timed calls (counting calibration and warm-ups) of each phase of a configuration."""
    if spec.processes == 0:
        return 1 + spec.warmups + spec.values  # one calibration value, then warm-ups + values
    return (spec.processes + 1) * (spec.warmups + spec.values)  # + pyperf's calibration run


def configuration_seconds(iteration_seconds: float, spec: MeasureSpec) -> float:
    """Estimated seconds of a configuration's timed work, given one iteration's time.

    E-step and M-step are taken as half an iteration each; pyperf raises any call
    shorter than ``min_time`` to ``min_time`` through its loop count; ``prepare`` is
    counted at ``min_time`` per call (it is usually far cheaper than an iteration).
    Process start-up, imports and data generation are not included.
    """
    t = float(iteration_seconds)
    floor = spec.min_time
    per_round = max(t, floor) + 2 * max(t / 2, floor) + floor
    if spec.problem != "gmm":  # no e_step / m_step phases
        per_round = max(t, floor) + floor
    return spec.check_iterations * t + calls_per_phase(spec) * per_round


def max_iteration_seconds(spec: MeasureSpec) -> float:
    """The longest iteration for which :func:`configuration_seconds` stays within budget."""
    budget = spec.time_budget
    if budget is None or not math.isfinite(budget):
        return math.inf
    low, high = 0.0, budget
    if configuration_seconds(0.0, spec) > budget:
        return 0.0
    for _ in range(60):  # bisection on a monotone function; 60 halvings reach 1e-18 s
        middle = (low + high) / 2
        if configuration_seconds(middle, spec) > budget:
            high = middle
        else:
            low = middle
    return low


__all__ = [
    "CHECK_ITERATIONS",
    "MeasureSpec",
    "benchmark_name",
    "calls_per_phase",
    "configuration_seconds",
    "iteration_seconds_at",
    "load_inputs",
    "max_iteration_seconds",
    "save_inputs",
]
