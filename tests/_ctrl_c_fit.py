"""``python -m harness fit ...`` that says on stdout when it reaches a chosen phase.

Run as ``python -m tests._ctrl_c_fit PHASE [fit arguments...]``. Before the CLI runs,
one function of the ``multiprocessing`` strategy is wrapped so that, on reaching
``PHASE``, it prints :data:`MARKER` and the phase name (flushed) and goes on; the test
then sends Ctrl-C at a known phase instead of at a random moment. Nothing else changes:
the fit is the CLI's own, in this process.

Phases (see :data:`PHASES`):

* ``pool-start``: workers are being started (the executor and its warm-up tasks);
* ``data-placement``: the data's shared segment exists and is being filled;
* ``e-step``: an E-step's tasks are submitted and running in the workers (run the fit
  with ``--no-fused`` for a separate E-step);
* ``merge``: the parent merges the workers' per-chunk sums of an iteration;
* ``close``: ``close`` is stopping the workers and unlinking the segments.
"""

from __future__ import annotations

import runpy
import sys
import time

#: What a phase line starts with on stdout.
MARKER = "@phase "
#: How long the wrapped call lingers after saying so (data placement and merge only,
#: which are otherwise over before a signal can arrive), in seconds.
LINGER = 5.0
#: Pool calls before the one whose tasks ``e-step`` interrupts: the warm-up, then the
#: first iteration's E-step and M-step (``--no-fused``), so the second E-step.
CALLS_BEFORE_STEP = 3
PHASES = ("pool-start", "data-placement", "e-step", "merge", "close")


def _say(phase: str) -> None:
    sys.stdout.write(f"{MARKER}{phase}\n")
    sys.stdout.flush()


def _wrap(phase: str) -> None:
    import strategies.multiprocessing_pool as mp
    from strategies.pool import base, control, shared

    if phase == "pool-start":
        original_env = control.worker_thread_env

        def worker_thread_env():
            _say(phase)
            return original_env()

        control.worker_thread_env = worker_thread_env
    elif phase == "data-placement":
        original_lease = shared.SharedArray.lease
        seen = []

        def lease(self):
            lent = original_lease(self)
            if not seen:  # the first lease is copy_of filling the data's segment
                seen.append(self)
                _say(phase)
                time.sleep(LINGER)
            return lent

        shared.SharedArray.lease = lease
    elif phase == "e-step":
        original_execute = mp.ExecutorPoolStrategy._execute
        calls = []

        def _execute(self, batch):
            calls.append(None)
            if len(calls) == CALLS_BEFORE_STEP + 1:
                _say(phase)
            return original_execute(self, batch)

        mp.ExecutorPoolStrategy._execute = _execute
    elif phase == "merge":
        original_merge = base.ProcessPoolStrategy._merge

        def _merge(self, sums, shift):
            _say(phase)
            time.sleep(LINGER)
            return original_merge(self, sums, shift)

        base.ProcessPoolStrategy._merge = _merge
    elif phase == "close":
        original_release = mp._ExecutorResources.release

        def release(self):
            _say(phase)
            return original_release(self)

        mp._ExecutorResources.release = release
    else:
        raise SystemExit(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")


def main() -> None:
    phase, *fit_args = sys.argv[1:]
    _wrap(phase)
    sys.argv = ["harness", *fit_args]
    runpy.run_module("harness", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
