"""When a configuration has been measured enough: the sweep's stopping rule.

Processes are the unit of replication. The values one process takes agree closely
(they share one address layout, one pool, one page placement), while two processes of
the same configuration can differ by ten per cent or more; an uncertainty computed
from one process's values is too narrow. So the runner measures every configuration
in several fresh processes, interleaved in *rounds* (round r measures each
configuration still sampling once, in run order, so a slow spell of the machine hits
every strategy alike), and after each process asks :func:`decide` whether to go on.

The rule, on the ``iteration`` phase (the one the verdicts rest on):

* A process is *disturbed* (:func:`process_disturbance`) when the median
  ``foreign_cpu`` of its values exceeds :data:`FOREIGN_LIMIT`, or when its own
  iteration values spread more than :data:`PROCESS_SPREAD_LIMIT` (median absolute
  deviation over the median: one slow value among three does not move it). Its rows
  stay in the table (``process_disturbed`` True) but do not count below, and it is
  replaced by another process (another *attempt*).
* A configuration is *settled* once it has ``min_processes`` undisturbed processes
  and the 95% bootstrap confidence interval of the median over processes
  (:func:`median_ci` of the per-process medians) lies within +-:data:`CI_TARGET` of it.
  With ``min_processes`` 1 (the quick protocol, whose replicates are whole runs)
  one undisturbed process settles it: further attempts only replace disturbed ones.
* Otherwise it gets another process in the next round, until ``max_processes``
  attempts or until the sweep's time budget is used.
* When sampling stops, the configuration is ``disturbed`` (and no verdict may rest on
  it) if fewer than ``min_processes`` of its processes were undisturbed, or if the
  interval is still wider than +-:data:`UNSTABLE_LIMIT`; ``disturbed_reason`` says
  which and with what numbers.

Why these thresholds (for the project's 2-core machines):

* ``FOREIGN_LIMIT = 0.10``: a tenth of the machine is a fifth of a core on two
  cores. A 2-worker configuration that shares its cores with that much foreign work
  loses about that share of its throughput, ten per cent, which is what the verdicts
  must resolve. A quiet machine's daemons stay around a hundredth; the median over a
  process's values keeps the tick resolution of ``/proc/stat`` (see
  :mod:`harness.sweep.interference`) from tripping it.
* ``PROCESS_SPREAD_LIMIT = 0.15``: a process is judged on the relative median absolute
  deviation of its values (MAD over the median), the robust spread: one slow value
  (a page fault, a timer tick, the pool's first wake-up) does not move it, and unlike
  median/min, whose reference is the extreme value, its scale does not grow with the
  number of values a process takes. Short values of a few calls, pools that wake up
  and differenced library fits spread by some per cent on a quiet machine too; the
  limit sits at about the 95th percentile of that spread over quiet quick sweeps of
  every strategy on a 2-core machine, with three and with ten values per process, so
  a quiet machine flags about one process in twenty (and replaces it) and anything
  beyond is rarer than the quiet machine makes it. Interference the counters see is
  judged by ``FOREIGN_LIMIT`` instead.
* ``CI_TARGET = 0.03``: a 10% difference between two configurations is then resolved
  when both are settled.
* ``UNSTABLE_LIMIT = 0.25``: the process-to-process variation itself is not a
  disturbance. On a shared virtual machine the speed of the whole machine drifts over
  seconds to minutes (the host's other tenants, invisible to ``/proc/stat`` unless
  they show as steal), so two quiet processes of one configuration, a round apart,
  differ far more than the values inside one process, while the configurations
  measured next to each other move together. That uncertainty belongs in the
  verdicts, whose intervals carry it (a difference inside it is a tie), not in a flag
  that removes the configuration from every finding. The limit sits above that drift
  on the project's 2-core machines, so the flag marks a configuration whose own
  processes disagree more than the machine's drift explains; below it the
  configuration keeps its wide interval and its ties.

Pure functions on plain numbers: no processes, files or timing here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

FOREIGN_LIMIT = 0.10
PROCESS_SPREAD_LIMIT = 0.15
CI_TARGET = 0.03
UNSTABLE_LIMIT = 0.25
CONFIDENCE = 0.95
#: Bootstrap resamples of the process medians; the seed is fixed so that a resumed
#: run takes the same decisions on the same rows.
RESAMPLES = 2000
SEED = 12345

#: The phase the stopping rule looks at.
DECIDING_PHASE = "iteration"


def median(values: Sequence[float]) -> float:
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def median_ci(
    values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median of ``values``.

    With three values the interval is their range; with one it is that value.
    """
    import numpy as np

    data = np.asarray([float(v) for v in values if math.isfinite(v)])
    if data.size == 0:
        return math.nan, math.nan
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    medians = np.median(data[picks], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def relative_half_width(values: Sequence[float]) -> float:
    """Largest distance from the median to an end of :func:`median_ci`, over the median."""
    centre = median(values)
    low, high = median_ci(values)
    if not (math.isfinite(centre) and centre > 0 and math.isfinite(low)):
        return math.inf
    return max(centre - low, high - centre) / centre


def process_disturbance(iteration_values: Sequence[float], foreign: Sequence[float]) -> str:
    """Why one process's values cannot be trusted ("" when they can).

    Parameters
    ----------
    iteration_values : sequence of float
        The process's values of :data:`DECIDING_PHASE`.
    foreign : sequence of float
        ``foreign_cpu`` of every value the process took (all phases; NaN ignored).
    """
    shares = [value for value in foreign if math.isfinite(value)]
    if shares and median(shares) > FOREIGN_LIMIT:
        return f"other programs took {median(shares):.0%} of the CPUs (limit {FOREIGN_LIMIT:.0%})"
    values = [value for value in iteration_values if math.isfinite(value) and value > 0]
    if len(values) >= 2:
        centre = median(values)
        spread = median([abs(value - centre) for value in values]) / centre
        if spread > PROCESS_SPREAD_LIMIT:
            return (
                f"unsteady: its values spread {spread:.0%} about their median "
                f"(median absolute deviation; limit {PROCESS_SPREAD_LIMIT:.0%})"
            )
    return ""


@dataclass(frozen=True)
class ProcessRecord:
    """What the rule needs of one measured process."""

    index: int
    median: float  # of its iteration values
    disturbance: str  # "" when undisturbed


@dataclass(frozen=True)
class Decision:
    """The rule's answer after a process.

    Attributes
    ----------
    more : bool
        Measure another process (in the next round).
    stopped : str
        Why sampling stopped ("" while ``more``).
    disturbed : bool
    reason : str
        ``disturbed_reason`` ("" unless ``disturbed``).
    why_more : str
        What the next process is for (for the progress bar), "" unless ``more``.
    half_width : float
        Relative half-width of the CI over the undisturbed processes.
    """

    more: bool
    stopped: str
    disturbed: bool
    reason: str
    why_more: str
    half_width: float


def decide(
    records: Sequence[ProcessRecord],
    *,
    min_processes: int,
    max_processes: int,
    budget_left: bool = True,
) -> Decision:
    """Whether a configuration needs another process, and how it stands otherwise.

    Parameters
    ----------
    records : sequence of ProcessRecord
        Every process measured so far (disturbed ones included: they count as attempts).
    min_processes, max_processes : int
        Undisturbed processes required before the CI may stop sampling; attempts allowed.
    budget_left : bool
        False once the sweep's time budget is used: sampling stops as it stands.
    """
    good = [record for record in records if not record.disturbance]
    medians = [record.median for record in good]
    width = relative_half_width(medians) if len(good) >= 2 else math.inf
    attempts = len(records)
    # MIN = 1 asks for no replication inside the run (the quick protocol: CI replicates
    # whole runs); further attempts then only replace disturbed processes.
    settled = len(good) >= min_processes and (min_processes == 1 or width <= CI_TARGET)
    if settled:
        return Decision(False, "converged", False, "", "", width)
    if len(good) < min_processes:
        # "" for a process the protocol asks for anyway (the progress bar says nothing)
        disturbances = [record.disturbance for record in records if record.disturbance]
        replacing = bool(records and records[-1].disturbance) or attempts >= min_processes
        why = f"re-measure: {disturbances[-1]}" if replacing and disturbances else ""
    else:
        why = f"CI of the median +-{width:.1%} > +-{CI_TARGET:.0%}"
    if attempts < max_processes and budget_left:
        return Decision(True, "", False, "", why, width)
    stopped = (
        "time budget used"
        if attempts < max_processes
        else f"{attempts} attempt{'' if attempts == 1 else 's'}"
    )
    if len(good) < min_processes:
        reasons = [record.disturbance for record in records if record.disturbance]
        reason = (
            f"{len(good)} of {attempts} processes undisturbed, {min_processes} needed "
            f"(last: {reasons[-1]})"
        )
        return Decision(False, stopped, True, reason, "", width)
    if width > UNSTABLE_LIMIT:
        reason = (
            f"unstable: 95% CI of the median +-{width:.0%} over {len(good)} processes "
            f"(limit +-{UNSTABLE_LIMIT:.0%})"
        )
        return Decision(False, stopped, True, reason, "", width)
    return Decision(False, stopped, False, "", "", width)


__all__ = [
    "CI_TARGET",
    "DECIDING_PHASE",
    "FOREIGN_LIMIT",
    "PROCESS_SPREAD_LIMIT",
    "UNSTABLE_LIMIT",
    "Decision",
    "ProcessRecord",
    "decide",
    "median",
    "median_ci",
    "process_disturbance",
    "relative_half_width",
]
