"""Test-only hooks of a sweep, read from the environment.

Never set them in normal use. They let tests and the CI self-test see what the
runner and the comparison do with a strategy that fails, hangs or slows down, and
let a test of a hung process end in seconds rather than after the real time limit:

``GMM_HARNESS_FAULT="<strategy>:raise|crash|hang"``
    The named strategy's E-step (and fused iteration) raises ``RuntimeError``, kills
    the process with ``os._exit`` (:data:`CRASH_EXIT_STATUS`), or blocks forever with
    every signal blocked (as a deadlock in C code would), so tests can see the runner
    record a failure and carry on. Several entries may be separated by commas.
``GMM_HARNESS_SLOWDOWN="<strategy>:<factor>"``
    Every timed call of the named strategy takes ``factor`` times as long: after the
    real call, the remaining time is spent busy-waiting inside the timed window.
    Lets the CI comparison prove that a real slowdown (e.g. ``1.2``) is detected.
``GMM_HARNESS_TIME_LIMIT="<strategy>:<seconds>"``
    The runner stops the named strategy's configuration processes after this many
    seconds instead of its usual time limit (read by the runner).
``GMM_HARNESS_STOP_GRACE="<seconds>"``
    Seconds a configuration process gets after SIGTERM before SIGKILL, instead of
    :data:`harness.sweep.processes.STOP_GRACE_SECONDS` (read by the runner).
``GMM_HARNESS_IGNORE_DISTURBANCE=1``
    The runner judges no process disturbed or unsteady (read by the runner). For
    tests of a sweep's plumbing (tables, charts, report sections) that must produce
    their findings even when the test suite shares the machine with other work; the
    interference tests leave it unset.

May not import a strategy, NumPy or anything that times; it only wraps the methods
of a strategy object it is handed.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from typing import Any

from harness.model.errors import InvalidParameterError

ENV_FAULT = "GMM_HARNESS_FAULT"
ENV_SLOWDOWN = "GMM_HARNESS_SLOWDOWN"
ENV_TIME_LIMIT = "GMM_HARNESS_TIME_LIMIT"
ENV_STOP_GRACE = "GMM_HARNESS_STOP_GRACE"
ENV_IGNORE_DISTURBANCE = "GMM_HARNESS_IGNORE_DISTURBANCE"
FAULT_ACTIONS = ("raise", "crash", "hang")
#: Exit status of a process killed by the ``crash`` fault hook.
CRASH_EXIT_STATUS = 70


def _hook_entries(variable: str) -> dict[str, str]:
    """``{"strategy": "value"}`` from ``"a:x,b:y"`` in an environment variable."""
    text = os.environ.get(variable, "").strip()
    entries = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise InvalidParameterError(
                f"{variable} entries must look like '<strategy>:<value>'; got {item!r}"
            )
        entries[name.strip().lower()] = value.strip().lower()
    return entries


def fault_for(strategy_name: str) -> str | None:
    """The fault action ``GMM_HARNESS_FAULT`` asks for on this strategy, if any."""
    action = _hook_entries(ENV_FAULT).get(strategy_name)
    if action is not None and action not in FAULT_ACTIONS:
        raise InvalidParameterError(
            f"{ENV_FAULT}: unknown action {action!r}; valid: {', '.join(FAULT_ACTIONS)}"
        )
    return action


def slowdown_for(strategy_name: str) -> float:
    """The factor ``GMM_HARNESS_SLOWDOWN`` applies to this strategy's timed calls (1.0: none)."""
    text = _hook_entries(ENV_SLOWDOWN).get(strategy_name)
    if text is None:
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        raise InvalidParameterError(
            f"{ENV_SLOWDOWN}: factor must be a number; got {text!r}"
        ) from None
    if not (math.isfinite(factor) and factor >= 1.0):
        raise InvalidParameterError(f"{ENV_SLOWDOWN}: factor must be >= 1; got {text!r}")
    return factor


def _seconds(variable: str, text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise InvalidParameterError(f"{variable}: expected seconds; got {text!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidParameterError(f"{variable}: expected seconds > 0; got {text!r}")
    return seconds


def time_limit_for(strategy_name: str) -> float | None:
    """The time limit ``GMM_HARNESS_TIME_LIMIT`` sets for this strategy, if any."""
    text = _hook_entries(ENV_TIME_LIMIT).get(strategy_name)
    return None if text is None else _seconds(ENV_TIME_LIMIT, text)


def stop_grace(default: float) -> float:
    """The SIGTERM-to-SIGKILL grace ``GMM_HARNESS_STOP_GRACE`` sets, else ``default``."""
    text = os.environ.get(ENV_STOP_GRACE, "").strip()
    return _seconds(ENV_STOP_GRACE, text) if text else default


def disturbance_ignored() -> bool:
    """True when ``GMM_HARNESS_IGNORE_DISTURBANCE`` asks the runner to judge no process
    disturbed."""
    return os.environ.get(ENV_IGNORE_DISTURBANCE, "").strip() not in ("", "0")


def install_fault(strategy: Any) -> None:
    """Replace the strategy's E-step entry points by the requested fault (test hook)."""
    action = fault_for(strategy.name)
    if action is None:
        return

    def fault(*args: object, **kwargs: object) -> Any:
        if action == "raise":
            raise RuntimeError(f"injected fault ({ENV_FAULT}={strategy.name}:raise)")
        if action == "crash":
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(CRASH_EXIT_STATUS)
        # hang like a deadlock in C code: deaf to every signal but SIGKILL, so only the
        # runner's time limit (which kills the process group) ends it
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            time.sleep(3600)

    # Instance attributes shadow the class's methods for this object only.
    strategy.e_step = fault
    strategy.fused_iteration = fault
    strategy.run = fault  # the micro-problems' timed call
    if strategy.whole_fit:
        strategy.fit = fault


__all__ = [
    "CRASH_EXIT_STATUS",
    "ENV_FAULT",
    "ENV_IGNORE_DISTURBANCE",
    "ENV_SLOWDOWN",
    "ENV_STOP_GRACE",
    "ENV_TIME_LIMIT",
    "FAULT_ACTIONS",
    "disturbance_ignored",
    "fault_for",
    "install_fault",
    "slowdown_for",
    "stop_grace",
    "time_limit_for",
]
