"""``dask``: EM on a ``dask.distributed`` cluster, one block of points per worker.

How a user scales past one machine. ``prepare`` starts a ``LocalCluster`` of
``workers`` worker processes with one thread each (or, with
``GMM_HARNESS_DASK_SCHEDULER=ADDRESS`` / ``--scheduler ADDRESS``, connects to an
existing cluster and uses ``workers`` of its workers), then places X on the workers
once: X is written to one ``.npy`` file and each worker runs a task that reads its
block from it. Those tasks are the blocks' lineage: when a worker is lost, the
scheduler re-runs the lost block's task on another worker and the iteration goes on
(the file's folder must be visible to every worker: a shared filesystem on a real
cluster, see ``GMM_HARNESS_DASK_DATA_DIR``).

Each iteration submits one task per block (:mod:`strategies.dask_tasks`), pinned to the
worker that holds the block (a loose restriction: the scheduler honours it while that
worker lives, and runs the task elsewhere after a loss). The task computes its block's
statistics with the compiled fused kernel on one thread (NumPy's reference maths where
the kernels are not built) and returns centred
:class:`~harness.model.gmm.SufficientStats`; the client merges them in block order with
:meth:`SufficientStats.merge_all` (Chan's pairwise update) and the driver runs the
M-step on the client. Results therefore agree with the reference and depend on the
worker count only through floating-point merge order (the block boundaries move with the
worker count); at a fixed worker count they are identical run to run, and after a
recovery.

Faults: a lost worker is recovered through lineage (tested); when no worker is left
for :data:`WORKER_LOSS_SECONDS`, or a task fails, the iteration raises
:class:`~harness.model.errors.WorkerError`. A bad scheduler address fails with one
:class:`SchedulerAddressError` within :data:`CONNECT_SECONDS` (this module enforces
the deadline: Dask's own connect timeout does not cover name resolution). ``close()``
stops the cluster it started (never one it only connected to) and deletes the data file.

:meth:`DaskStrategy.runtime_info` records the cluster (workers, threads, scheduler),
the start-up and placement times, and per iteration the scheduler overhead: the wall
time from submitting the tasks to having their results, minus the slowest task's own
compute time measured inside the task.

May not touch: timing of the harness, result files, other strategies.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from harness.model.errors import HarnessError, InvalidParameterError, WorkerError
from harness.model.gmm import (
    DerivedParams,
    SufficientStats,
)
from strategies.base import ShiftedSumsStrategy, find_reason
from strategies.dask_tasks import (
    e_step_task,
    fused_task,
    load_block,
    m_step_task,
    worker_report,
)
from strategies.pool.control import InterruptLatch

#: Environment variable with the address of an existing scheduler to use instead of a
#: LocalCluster (what ``--scheduler`` sets).
SCHEDULER_ENV = "GMM_HARNESS_DASK_SCHEDULER"

#: Environment variable naming the folder for the data file the workers read their
#: blocks from (default: the system's temporary folder). On a multi-machine cluster it
#: must be on a filesystem every worker sees.
DATA_DIR_ENV = "GMM_HARNESS_DASK_DATA_DIR"

#: Seconds allowed for resolving, reaching and handshaking with a given scheduler.
CONNECT_SECONDS = 10.0

#: Seconds an iteration waits with no worker left before raising WorkerError.
WORKER_LOSS_SECONDS = 10.0

#: Seconds an iteration may make no progress at all (no task finishing) before it
#: raises WorkerError; a hung (not lost) worker ends here.
STALL_SECONDS = 300.0

#: Seconds between checks of the cluster while an iteration waits for its tasks.
POLL_SECONDS = 0.25

_INSTALL_HINT = 'install it with `pip install -e ".[dask]"` (or `make install`)'


class SchedulerAddressError(HarnessError, ConnectionError):
    """A scheduler address that is malformed, unresolvable, refused or not a scheduler."""


# --------------------------------------------------------------------------------------
# Connecting to a scheduler within a deadline
# --------------------------------------------------------------------------------------


def parse_address(address: str) -> tuple[str, str, int]:
    """``(protocol, host, port)`` of ``tcp://HOST:PORT`` (``HOST:PORT`` means tcp).

    Raises
    ------
    SchedulerAddressError
        With what was wrong, for anything else.
    """
    text = str(address).strip()
    expected = "expected tcp://HOST:PORT (or tls://HOST:PORT)"
    if not text:
        raise SchedulerAddressError(f"empty dask scheduler address; {expected}")
    if "://" not in text:
        text = "tcp://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise SchedulerAddressError(
            f"invalid dask scheduler address {address!r} ({exc}); {expected}"
        ) from None
    if parts.scheme not in ("tcp", "tls"):
        raise SchedulerAddressError(
            f"invalid dask scheduler address {address!r}: protocol {parts.scheme!r}; {expected}"
        )
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise SchedulerAddressError(f"invalid dask scheduler address {address!r}; {expected}")
    if not 0 < port < 65536:
        raise SchedulerAddressError(f"invalid port {port} in dask scheduler address {address!r}")
    return parts.scheme, parts.hostname, port


def _in_thread(function: Any, seconds: float, what: str) -> Any:
    """Run ``function()`` in a daemon thread; its result, or an error after ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = function()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"dask-{what}", daemon=True)
    thread.start()
    thread.join(max(seconds, 0.0))
    if thread.is_alive():
        box["late"] = True
        raise TimeoutError(f"{what} took more than {seconds:.1f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def connect(address: str, workers: int, deadline_seconds: float = CONNECT_SECONDS) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` with ``workers`` workers.

    Every step (resolving the host, opening a TCP connection, Dask's handshake,
    waiting for workers) shares one deadline, enforced here.

    Raises
    ------
    SchedulerAddressError
        Malformed, unresolvable or refused address, not a Dask scheduler, no answer
        within the deadline, or fewer than ``workers`` workers by then.
    """
    protocol, host, port = parse_address(address)
    end = time.monotonic() + deadline_seconds
    full = f"{protocol}://{host}:{port}"

    def remaining() -> float:
        return max(end - time.monotonic(), 0.05)

    try:
        infos = _in_thread(
            lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), remaining(), "lookup"
        )
    except TimeoutError:
        raise SchedulerAddressError(
            f"dask scheduler {full}: resolving {host!r} took more than {deadline_seconds:g} s"
        ) from None
    except OSError as exc:
        raise SchedulerAddressError(
            f"dask scheduler {full}: cannot resolve host {host!r} ({exc})"
        ) from None
    family, kind, proto, _, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.settimeout(remaining())
            probe.connect(sockaddr)
    except TimeoutError:
        raise SchedulerAddressError(
            f"dask scheduler {full}: no answer within {deadline_seconds:g} s"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SchedulerAddressError(f"dask scheduler {full}: cannot connect ({reason})") from None

    from distributed import Client

    holder: dict[str, Any] = {}

    def handshake() -> Any:
        client = Client(full, timeout=remaining(), set_as_default=False)
        holder["client"] = client
        client.wait_for_workers(workers, timeout=remaining())
        return client

    try:
        return _in_thread(handshake, remaining(), "handshake")
    except BaseException as exc:
        _close_later(holder)
        if isinstance(exc, TimeoutError):
            found = ""
            client = holder.get("client")
            if client is not None:
                with contextlib.suppress(Exception):
                    found = f" (it has {len(client.scheduler_info()['workers'])} worker(s))"
            raise SchedulerAddressError(
                f"dask scheduler {full}: no usable scheduler with {workers} worker(s) within "
                f"{deadline_seconds:g} s{found}"
            ) from None
        if isinstance(exc, HarnessError):
            raise
        message = str(exc).strip() or type(exc).__name__
        raise SchedulerAddressError(
            f"dask scheduler {full}: handshake failed ({message})"
        ) from None


def _close_later(holder: dict[str, Any]) -> None:
    """Close a client that a timed-out handshake may still create, without waiting."""

    def closer() -> None:
        deadline = time.monotonic() + 2 * CONNECT_SECONDS
        while "client" not in holder and time.monotonic() < deadline:
            time.sleep(0.1)
        client = holder.get("client")
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)

    threading.Thread(target=closer, name="dask-close-late", daemon=True).start()


# --------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------


class _Cluster:
    """What ``close()`` must release: client, owned cluster, data folder."""

    def __init__(self) -> None:
        self.client: Any = None
        self.cluster: Any = None
        self.folder: Path | None = None

    def close(self) -> None:
        client, cluster, folder = self.client, self.cluster, self.folder
        self.client = self.cluster = self.folder = None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=20)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


class DaskStrategy(ShiftedSumsStrategy):
    name = "dask"
    kind = "distributed"
    parallel = True
    description = "dask.distributed cluster, one pinned block per worker, client-side merge"

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._resources = _Cluster()
        self._finalizer = weakref.finalize(self, self._resources.close)
        self._blocks: list[Any] = []
        self._bounds: list[tuple[int, int]] = []
        self._pins: list[str] = []
        self._scheduler = ""
        self._startup_seconds = math.nan
        self._placement_seconds = math.nan
        self._overheads: list[float] = []
        self._slowest: list[float] = []
        self._per_point: list[float] = []
        self._moved = 0
        self._kernel_paths: set[str] = set()
        self._cluster_workers = 0
        self._cluster_threads = 0
        self._worker_blas = 0
        # A Ctrl-C that lands in one of distributed's finalizers (a Future's __del__)
        # is printed as ignored; the latch keeps it, and every wait acts on it.
        self._latch = InterruptLatch()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return find_reason("distributed", f"dask.distributed is not installed; {_INSTALL_HINT}")

    # ---- start-up -----------------------------------------------------------------------

    def _setup(self, X: np.ndarray) -> None:
        self._latch.arm()
        try:
            self._start(X)
        except BaseException:
            self._latch.uninstall()
            self._resources.close()
            raise

    def _start(self, X: np.ndarray) -> None:
        address = os.environ.get(SCHEDULER_ENV, "").strip()
        began = time.perf_counter()
        if address:
            self._resources.client = connect(address, self.workers)
            self._scheduler = address
        else:
            self._resources.cluster, self._resources.client = _local_cluster(self.workers)
            self._scheduler = "local"
        self._startup_seconds = time.perf_counter() - began
        client = self._resources.client
        info = client.scheduler_info()
        targets = sorted(info["workers"])[: self.workers]
        self._cluster_workers = len(info["workers"])
        self._cluster_threads = sum(int(w.get("nthreads", 1)) for w in info["workers"].values())

        began = time.perf_counter()
        folder = Path(
            tempfile.mkdtemp(prefix="gmmh_dask_", dir=os.environ.get(DATA_DIR_ENV) or None)
        )
        self._resources.folder = folder
        path = folder / "X.npy"
        np.save(path, X)
        n = X.shape[0]
        edges = np.linspace(0, n, self.workers + 1).round().astype(int)
        self._bounds = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
        self._blocks = [
            client.submit(
                load_block,
                str(path),
                start,
                stop,
                workers=[worker],
                allow_other_workers=True,
                pure=False,
                key=f"gmm-block-{index}-{os.getpid()}-{id(self):x}",
            )
            for index, ((start, stop), worker) in enumerate(zip(self._bounds, targets, strict=True))
        ]
        self._wait(self._blocks, "placing the data")
        holders = client.who_has(self._blocks)
        self._pins = [
            next(iter(holders.get(block.key, ())), target)
            for block, target in zip(self._blocks, targets, strict=True)
        ]
        reports = client.run(worker_report, workers=targets)
        self._worker_blas = max((int(r["blas_threads"]) for r in reports.values()), default=0)
        self._kernel_paths = {str(r["kernel"]) for r in reports.values()}
        self._placement_seconds = time.perf_counter() - began
        self._data_mean = X.mean(axis=0)
        self._shift = None
        self._overheads, self._slowest, self._per_point = [], [], []
        self._moved = 0

    # ---- per iteration ------------------------------------------------------------------

    def _wait(self, futures: list[Any], what: str) -> list[Any]:
        """Results of ``futures`` in order; WorkerError when workers are gone, a task
        fails or nothing progresses (each result is fetched as it is waited for, so no
        separate gather round trip follows)."""
        client = self._resources.client
        if client is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(X) first")
        no_workers_since: float | None = None
        last_progress = time.monotonic()
        results: list[Any] = []
        while len(results) < len(futures):
            self._latch.check()
            try:
                result = futures[len(results)].result(timeout=POLL_SECONDS)
            except TimeoutError:
                pass
            except Exception as exc:
                self._latch.check()  # workers stopped by the same Ctrl-C: report that
                message = str(exc).strip() or "no message"
                raise WorkerError(
                    f"dask: a task failed while {what}: {type(exc).__name__}: {message}"
                ) from exc
            else:
                results.append(result)
                last_progress = time.monotonic()
                continue
            now = time.monotonic()
            if client.status not in ("running", "connecting"):
                raise WorkerError(f"dask: lost the scheduler while {what} ({client.status})")
            try:
                alive = len(client.nthreads())
            except Exception as exc:
                raise WorkerError(f"dask: the scheduler stopped answering while {what}") from exc
            if alive:
                no_workers_since = None
            elif no_workers_since is None:
                no_workers_since = now
            elif now - no_workers_since > WORKER_LOSS_SECONDS:
                raise WorkerError(
                    f"dask: every worker was lost while {what}, and none came back within "
                    f"{WORKER_LOSS_SECONDS:g} s"
                )
            if now - last_progress > STALL_SECONDS:
                raise WorkerError(f"dask: no task finished for {STALL_SECONDS:g} s while {what}")
        self._latch.check()
        return results

    def _run(self, function: Any, per_block_args: list[tuple], what: str) -> list[tuple]:
        """One task per block, pinned to its holder; results in block order."""
        client = self._resources.client
        if client is None or not self._blocks:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(X) first")
        began = time.perf_counter()
        futures = [
            client.submit(
                function,
                block,
                *args,
                workers=[pin],
                allow_other_workers=True,
                pure=False,
            )
            for block, pin, args in zip(self._blocks, self._pins, per_block_args, strict=True)
        ]
        results = self._wait(futures, what)
        wall = time.perf_counter() - began
        slowest = max(result[2] for result in results)
        self._overheads.append(max(wall - slowest, 0.0))
        self._slowest.append(slowest)
        for index, result in enumerate(results):
            start, stop = self._bounds[index]
            if result[2] > 0 and stop > start:
                self._per_point.append(result[2] / (stop - start))
            if result[3] != self._pins[index]:
                # Recovered elsewhere (lineage): follow the block to its new worker.
                self._moved += 1
                self._pins[index] = result[3]
            self._kernel_paths.add(result[4])
        return results

    def _per_block(self, task: Any, derived: DerivedParams, what: str) -> tuple[list, float]:
        """``task(block, derived)`` on every block; the results and the mean log-likelihood."""
        self._check_derived(derived)
        results = self._run(task, [(derived,)] * len(self._blocks), what)
        self._shift = np.ascontiguousarray(derived.means)
        return results, math.fsum(result[1] for result in results) / self.X.shape[0]

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        results, loglik = self._per_block(fused_task, derived, "running an iteration")
        return SufficientStats.merge_all([result[0] for result in results]), loglik

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        results, loglik = self._per_block(e_step_task, derived, "running an E-step")
        return np.concatenate([result[0] for result in results]), loglik

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        array = self._log_resp_array(log_resp)
        shift = self._shift_for(array.shape[1])
        args = [
            (np.ascontiguousarray(array[start:stop], dtype=np.float64), shift)
            for start, stop in self._bounds
        ]
        results = self._run(m_step_task, args, "running an M-step")
        return SufficientStats.merge_all([result[0] for result in results])

    # ---- reporting and release ----------------------------------------------------------

    def runtime_info(self) -> dict[str, object]:
        if not self._bounds:
            return {}
        overheads = self._overheads
        return {
            "workers_used": len(set(self._pins)),
            "blocks": len(self._bounds),
            "scheduler": self._scheduler,
            "cluster_workers": self._cluster_workers,
            "cluster_threads": self._cluster_threads,
            "startup_seconds": self._startup_seconds,
            "placement_seconds": self._placement_seconds,
            "scheduler_overhead_seconds": float(np.median(overheads)) if overheads else None,
            "scheduler_overhead_max_seconds": max(overheads) if overheads else None,
            "slowest_task_seconds": float(np.median(self._slowest)) if self._slowest else None,
            "task_seconds_per_point": (
                float(np.median(self._per_point)) if self._per_point else None
            ),
            "iterations_timed": len(overheads),
            "blocks_moved": self._moved,
            "placement": "file-lineage",
            "kernel": ",".join(sorted(self._kernel_paths)),
            "worker_blas_threads": self._worker_blas,
        }

    def _teardown(self) -> None:
        self._latch.uninstall()
        self._blocks = []
        self._pins = []
        self._resources.close()


def _local_cluster(workers: int) -> tuple[Any, Any]:
    """A LocalCluster of ``workers`` processes with one thread each, on loopback only."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        # Loopback only, on free ports: the HTTP endpoints would otherwise take 8787 on
        # every interface (or the next free port, with a warning).
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
    try:
        client = Client(cluster, set_as_default=False)
        client.wait_for_workers(workers, timeout=120)
    except BaseException:
        cluster.close()
        raise
    return cluster, client
