"""Exceptions the harness raises for problems a user can fix.

The command line turns every :class:`HarnessError` into one line on stderr and
exit status 2; anything else is a bug and keeps its traceback.

Imports nothing: every layer may raise these.
"""


class HarnessError(Exception):
    """Base class of every error caused by input or environment, not by a bug."""


class InvalidDataError(HarnessError, ValueError):
    """The data array cannot be fitted (NaN/inf, wrong shape, empty, ...)."""


class InvalidParameterError(HarnessError, ValueError):
    """A model or run parameter is out of range (k < 1, k > n, workers < 1, ...)."""


class DataFileError(HarnessError, OSError):
    """A data file is missing, unreadable or malformed."""


class UnknownStrategyError(HarnessError, KeyError):
    """A strategy name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class StrategyUnavailableError(HarnessError, RuntimeError):
    """A registered strategy that cannot run on this machine (reason attached)."""


class WorkerError(HarnessError, RuntimeError):
    """A worker process or thread died or raised while a strategy was running."""


class NumericalError(HarnessError, FloatingPointError):
    """The fit produced a non-finite value or a covariance that is not positive definite."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so that cleanup (``finally``, ``with``) runs.

    A :class:`KeyboardInterrupt` so that everything that stops cleanly on Ctrl-C stops
    the same way; the command line tells them apart (exit 143 "terminated", not 130
    "interrupted", the shells' convention of 128 + the signal number).
    """
