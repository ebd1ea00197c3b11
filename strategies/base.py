"""The one interface every strategy implements.

A strategy adapts compute code (NumPy, SciPy, the Cython kernels, a pool of
workers) to the EM driver. Its life cycle::

    with SomeStrategy(workers=2) as strategy:     # nothing started yet
        strategy.prepare(X)                       # start pools, place data (timed apart)
        log_resp, loglik = strategy.e_step(derived)
        stats = strategy.m_step(log_resp)
        # or, where `has_fused_iteration`: stats, loglik = strategy.fused_iteration(derived)
    # close(): every process, thread pool, shared-memory segment and file released

Strategies compute *statistics*, never parameters: :func:`harness.model.gmm.params_from_stats`
turns :class:`~harness.model.gmm.SufficientStats` into the next parameters (``reg_covar``,
floors) and :func:`harness.model.gmm.derive` computes Cholesky factors, once per iteration
for all strategies alike. Strategies know nothing about timing, files or charts.

To add a strategy, copy ``strategies/_template.py`` and add one line to
``strategies/__init__.py``.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
from typing import ClassVar, Literal

import numpy as np

from harness.model.errors import InvalidParameterError, StrategyUnavailableError
from harness.model.gmm import DerivedParams, SufficientStats
from harness.model.validation import check_data, check_workers

Kind = Literal["serial", "threads", "processes", "openmp", "distributed", "library"]
#: ``library``: a peer library's own whole EM fit (:mod:`strategies.library`), not an
#: E/M split; the harness times it per iteration by differencing fits of different lengths.
KINDS: tuple[str, ...] = ("serial", "threads", "processes", "openmp", "distributed", "library")


def import_optional(module: str, attribute: str, lacking: str) -> object:
    """Import a package a strategy needs when the strategy is created, and check it has
    what the strategy uses.

    ``unavailable_reason`` only looks the package up (:func:`find_reason`): importing
    scikit-learn or daal4py there would slow every listing of the strategies down.
    A strategy imports such packages in ``__init__`` instead (neither ``prepare`` nor
    an iteration is then charged for the import), and what only an import can tell (a
    broken install, an attribute this version lacks) is one clear error there.

    Raises
    ------
    StrategyUnavailableError
        With ``lacking`` (and the import error, if that is what failed).
    """
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise StrategyUnavailableError(f"{lacking} ({exc})") from None
    if not hasattr(imported, attribute):
        raise StrategyUnavailableError(lacking)
    return imported


def find_reason(module: str, missing: str) -> str | None:
    """``missing`` when ``module`` cannot be found, else None; never imports it (cheap)."""
    return None if importlib.util.find_spec(module) is not None else missing


class Lifecycle(abc.ABC):
    """Capabilities and life cycle shared by both interfaces (EM and micro-problems).

    Holds the capability flags, the worker count, ``prepare`` (validate, then the
    ``_setup`` hook), ``close`` (the ``_teardown`` hook) and context-manager use.
    Subclasses say how their data is validated (:meth:`_check`) and what they compute.

    Parameters
    ----------
    workers : int
        Threads or processes the strategy uses; honoured exactly.
    """

    name: ClassVar[str] = ""
    problem: ClassVar[str] = ""
    kind: ClassVar[Kind] = "serial"
    releases_gil: ClassVar[bool] = False
    needs_compiled: ClassVar[bool] = False
    has_fused_iteration: ClassVar[bool] = False
    parallel: ClassVar[bool] = False
    whole_fit: ClassVar[bool] = False
    description: ClassVar[str] = ""
    #: Parallel only through BLAS: :meth:`blas_threads` gives BLAS the workers.
    blas_parallel: ClassVar[bool] = False
    #: How ``prepare``'s argument is named in error messages.
    data_name: ClassVar[str] = "X"

    def __init__(self, workers: int = 1) -> None:
        self.workers = check_workers(workers)
        self._data: np.ndarray | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this strategy cannot run here, or None when it can.

        Must be cheap and must not raise; override for optional dependencies.
        """
        return None

    @staticmethod
    @abc.abstractmethod
    def _check(data: np.ndarray) -> np.ndarray:
        """``prepare``'s argument validated and converted (C-contiguous float64)."""

    def prepare(self, data: np.ndarray) -> None:
        """Validate ``data`` once per dataset and place it where the workers read it."""
        self.close()
        self._data = self._check(data)
        self._setup(self._data)

    def _setup(self, data: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """Hook for subclasses: start pools, share data. ``data`` is already validated."""

    def _prepared(self) -> np.ndarray:
        """The prepared data; raises before :meth:`prepare`."""
        if self._data is None:
            raise InvalidParameterError(
                f"strategy {self.name!r}: call prepare({self.data_name}) first"
            )
        return self._data

    def blas_threads(self) -> int:
        """BLAS threads while this strategy runs; the driver applies it with threadpoolctl.

        1 for everything that parallelises by itself, so that workers never also run
        a multi-threaded BLAS (no hidden oversubscription); the workers for a strategy
        that is parallel only through BLAS (``blas_parallel``).
        """
        return self.workers if self.blas_parallel else 1

    def close(self) -> None:
        """Release every resource; safe to call more than once."""
        self._teardown()

    def _teardown(self) -> None:  # noqa: B027 (optional hook)
        """Hook for subclasses: stop pools, unlink shared memory."""

    def __enter__(self) -> Lifecycle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class Strategy(Lifecycle):
    """Base class of all strategies.

    Parameters
    ----------
    workers : int
        Threads or processes the strategy uses; honoured exactly.

    Class attributes (capabilities)
    -------------------------------
    name : str
        Registry name, short and lowercase.
    kind : {"serial", "threads", "processes", "openmp", "distributed", "library"}
    releases_gil : bool
        The hot loops run without the GIL.
    needs_compiled : bool
        Needs the Cython extensions in ``kernels/``.
    has_fused_iteration : bool
        Offers :meth:`fused_iteration` (statistics in one pass, no n x k matrix).
    parallel : bool
        Uses more than one core when ``workers > 1``. Serial strategies ignore
        ``workers`` except for BLAS threads (see :meth:`blas_threads`).
    whole_fit : bool
        Runs a whole fit only (:class:`strategies.library.LibraryStrategy`): no
        E-step or M-step of its own, so the driver times it by differencing.
    description : str
        One line for ``python -m harness strategies``.
    kernel : str
        The code path that runs the numbers (``"numpy"``, ``"cython"``, ``"openmp"``,
        ``"python"``, ...); :meth:`runtime_info` reports it under ``kernel``.
    problem : str
        The problem solved: ``"gmm"`` for every strategy of this interface (see
        :mod:`harness.model.problems`).
    """

    problem: ClassVar[str] = "gmm"
    kernel: ClassVar[str] = "numpy"

    _check = staticmethod(check_data)

    def prepare(self, X: np.ndarray) -> None:
        """Validate ``X`` once per dataset and place it where the workers read it.

        Parameters
        ----------
        X : array_like, shape (n, d)
            Converted to C-contiguous float64 if needed (see :mod:`harness.model.validation`).
        """
        super().prepare(X)

    @property
    def X(self) -> np.ndarray:
        """The prepared data, shape (n, d), float64."""
        return self._prepared()

    @abc.abstractmethod
    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        """Responsibilities for the current parameters.

        Parameters
        ----------
        derived : DerivedParams

        Returns
        -------
        log_resp : ndarray of float64, shape (n, k)
            Log responsibilities (rows log-sum-exp to 0).
        mean_loglik : float
            Mean over points of the log-likelihood under ``derived``.
        """

    @abc.abstractmethod
    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        """Statistics for the next parameters.

        Parameters
        ----------
        log_resp : ndarray of float64, shape (n, k)
            As returned by :meth:`e_step`.

        Returns
        -------
        SufficientStats
        """

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        """E-step and M-step statistics in one pass, without the n x k matrix.

        Only where ``has_fused_iteration`` is True.
        """
        raise NotImplementedError(f"strategy {self.name!r} has no fused iteration")

    def runtime_info(self) -> dict[str, object]:
        """What actually ran (code path, threads used, start method, bytes moved, ...).

        Every strategy reports ``kernel``: the code path that ran.
        """
        return {"kernel": self.kernel}


class ShiftedSumsStrategy(Strategy):
    """A strategy whose M-step sums are taken relative to a shift (not registered).

    The compiled, Numba and Dask strategies accumulate sums relative to the means of
    the last E-step (the data mean before any), so that centring them loses nothing on
    data far from the origin. This class holds that shift and the argument checks
    those strategies share; each sets ``_data_mean`` in its ``_setup``. All of them run
    compiled code without the GIL and offer the one-pass fused iteration (a subclass
    that cannot says so).
    """

    releases_gil = True
    has_fused_iteration = True

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._shift: np.ndarray | None = None
        self._data_mean: np.ndarray | None = None

    def _check_derived(self, derived: DerivedParams) -> None:
        if derived.n_features != self.X.shape[1]:
            raise InvalidParameterError(
                f"parameters have {derived.n_features} features but the prepared data has "
                f"{self.X.shape[1]}"
            )

    def _log_resp_array(self, log_resp: np.ndarray) -> np.ndarray:
        """``log_resp`` as C-contiguous float64 (n, k), or one clear error."""
        array = np.asarray(log_resp)
        if array.ndim != 2 or array.shape[0] != self.X.shape[0] or array.shape[1] < 1:
            raise InvalidParameterError(
                f"log responsibilities must have shape (n, k) with n = {self.X.shape[0]}; "
                f"got {array.shape}"
            )
        return np.ascontiguousarray(array, dtype=np.float64)

    def _shift_for(self, k: int) -> np.ndarray:
        """Centre of the M-step sums: the last E-step's means, else the data mean."""
        d = self.X.shape[1]
        if self._shift is not None and self._shift.shape == (k, d):
            return self._shift
        return np.ascontiguousarray(np.broadcast_to(self._data_mean, (k, d)))
