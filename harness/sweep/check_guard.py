"""What a configuration's check does when it fails: one home for all three checks.

The EM check (:func:`harness.sweep.measure.run_check`), the micro-problems' check and
the library check (:func:`harness.sweep.library_timing.run_library_check`) each prepare
a strategy and run it, the first run under the budget probe's deadline. Whatever goes
wrong, the strategy is closed before the error leaves; a deadline that fired (an
``OverBudget`` without arguments) becomes an ``OverBudget`` that says what overran.

Imports nothing of the harness: the ``OverBudget`` class is passed in, because the
measurement process runs :mod:`harness.sweep.measure` as ``__main__`` and a class from a
second import of it would not be caught by that module's handlers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def closed_on_failure(
    strategy: Any, over_budget: type[Exception], what: str, allowance: float, time_budget: float
) -> Iterator[None]:
    """Close ``strategy`` when the block raises; name the overrun when the deadline fired.

    Parameters
    ----------
    strategy : Strategy or MicroStrategy
        Prepared (or being prepared) in the block; left open when the block succeeds.
    over_budget : type
        The measurement module's ``OverBudget``.
    what : str
        What the probe timed, for the message (``"one iteration"``, ``"one run"``, ...).
    allowance : float
        The probe's deadline in seconds.
    time_budget : float
        The configuration's time budget in seconds.
    """
    try:
        yield
    except over_budget as exc:
        strategy.close()
        if not exc.args:  # the deadline fired: the run took at least the allowance
            raise over_budget(
                f"{what} at n takes over {allowance:.2f} s, the most a "
                f"configuration within the time budget of {time_budget:g} s allows",
                allowance,
                True,
            ) from None
        raise
    except BaseException:
        strategy.close()
        raise
