"""The process strategies: results, what they report, failures, and clean-up.

Correctness against the reference for every registered strategy is in
``test_strategies.py``; here: every start method, the runtime
report (start method, threads, bytes per iteration that do not grow with n), worker
death and worker exceptions (a clear error, bounded by timeouts), and no process or
``/dev/shm`` entry left after ``close``, an exception, Ctrl-C or interpreter exit.
Also the PSS sampler of :mod:`harness.sweep.memory`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import strategies
import strategies.pool.workers as worker_tasks
from harness.model.errors import InvalidParameterError, WorkerError
from harness.model.gmm import GMMParams, derive, initial_params, reference_e_step, reference_m_step
from harness.sweep.em import em_iteration, fit
from harness.sweep.memory import MemoryMeasurementError, PeakMemorySampler, process_tree_pss
from strategies.joblib_processes import JoblibProcessesStrategy
from strategies.multiprocessing_pool import (
    MultiprocessingStrategy,
)
from strategies.pool import control
from strategies.pool import shared as shm
from tests import _ctrl_c_fit as ctrl_c_fit
from tests.conftest import make_blobs

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
SHM = Path("/dev/shm")
PROCESS_NAMES = ("multiprocessing", "multiprocessing-components", "joblib-processes")


# ---- helpers ------------------------------------------------------------------------


def _helper_pids() -> set[int]:
    """Interpreter-wide helper processes that legitimately outlive a pool.

    multiprocessing's and loky's resource trackers and the forkserver server start
    once per interpreter and stay until it exits; they are not workers.
    """
    from multiprocessing import forkserver, resource_tracker

    pids = {
        resource_tracker._resource_tracker._pid,
        getattr(forkserver._forkserver, "_forkserver_pid", None),
    }
    try:
        from joblib.externals.loky.backend import resource_tracker as loky_tracker

        pids.add(loky_tracker._resource_tracker._pid)
    except ImportError:
        pass
    return {pid for pid in pids if pid is not None}


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _our_shm_entries(pid: int | None = None) -> set[str]:
    """Entries in /dev/shm that a strategy in process ``pid`` created."""
    pid = os.getpid() if pid is None else pid
    prefixes = (f"{shm.SEGMENT_PREFIX}{pid}_", f"{shm.SEGMENT_PREFIX}joblib_{pid}_")
    return {entry.name for entry in SHM.iterdir() if entry.name.startswith(prefixes)}


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(control.alive(psutil.Process(pid)) for pid in pids if psutil.pid_exists(pid)):
            return True
        time.sleep(0.05)
    return False


def _assert_clean(before_children: set[int], worker_pids: list[int]) -> None:
    """No worker left, no new child but the helpers, no /dev/shm entry of ours."""
    assert _gone(worker_pids), f"workers still running: {worker_pids}"
    gc.collect()
    deadline = time.monotonic() + 10
    while True:
        extra = _children() - before_children - _helper_pids()
        extra = {pid for pid in extra if control.alive(psutil.Process(pid))} if extra else extra
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"child processes left: {extra}"
    assert not _our_shm_entries(), f"/dev/shm entries left: {_our_shm_entries()}"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, GMMParams]:
    X = make_blobs(n=3000, d=3, k=4, seed=21)
    return X, initial_params(X, 4, seed=1)


def _create(name: str, workers: int = 2, **kwargs: object) -> strategies.Strategy:
    return strategies.get_strategy(name)(workers=workers, **kwargs)


# ---- registry and results -----------------------------------------------------------


@pytest.mark.parametrize("name", PROCESS_NAMES)
def test_registered_available_and_declared_as_processes(name: str) -> None:
    info = strategies.get_info(name)
    assert info.available, info.reason
    assert info.kind == "processes"
    assert info.cls is not None and info.cls.parallel
    assert info.cls.has_fused_iteration == (name != "multiprocessing-components")


def test_unbuilt_kernels_make_the_data_parallel_strategies_unavailable(monkeypatch) -> None:
    """No NumPy fallback: without the kernels the registry lists them with the reason;
    the model-parallel one runs NumPy and stays available (and says so)."""
    import kernels

    monkeypatch.setattr(kernels, "unavailable_reason", lambda: "not built here")
    assert MultiprocessingStrategy.unavailable_reason() == "not built here"
    assert JoblibProcessesStrategy.unavailable_reason() == "not built here"
    components = strategies.get_info("multiprocessing-components").cls
    assert components.unavailable_reason() is None
    assert components(2).runtime_info()["kernel"] == "numpy"
    assert "NumPy" in components.description


@pytest.mark.parametrize("start_method", control.START_METHODS)
@pytest.mark.parametrize("name", ["multiprocessing", "multiprocessing-components"])
def test_every_start_method_matches_reference(name: str, start_method: str, data) -> None:
    X, init = data
    derived = derive(init)
    expected_log_resp, expected_loglik = reference_e_step(X, derived)
    expected_stats = reference_m_step(X, expected_log_resp)
    with _create(name, start_method=start_method) as strategy:
        strategy.prepare(X)
        log_resp, loglik = strategy.e_step(derived)
        stats = strategy.m_step(log_resp)
        info = strategy.runtime_info()
    np.testing.assert_allclose(np.exp(log_resp), np.exp(expected_log_resp), atol=1e-12)
    assert loglik == pytest.approx(expected_loglik, rel=1e-12)
    np.testing.assert_allclose(stats.mass, expected_stats.mass, rtol=1e-10)
    np.testing.assert_allclose(stats.means, expected_stats.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.scatter, expected_stats.scatter, rtol=1e-9, atol=1e-9)
    assert info["start_method"] == start_method
    assert info["workers_started"] == 2
    assert info["log_resp_copies"] == 0  # the E-step's own buffer was read in place


@pytest.mark.parametrize("cls", [MultiprocessingStrategy, JoblibProcessesStrategy])
def test_fused_and_separate_steps_iterate_identically(cls, data) -> None:
    X, init = data
    with cls(workers=2) as strategy:
        strategy.prepare(X)
        fused, separate = init, init
        for _ in range(4):
            fused, fused_loglik = em_iteration(strategy, fused, fused=True)
            separate, separate_loglik = em_iteration(strategy, separate, fused=False)
            assert fused_loglik == pytest.approx(separate_loglik, rel=1e-12)
    np.testing.assert_allclose(fused.means, separate.means, rtol=1e-10)
    np.testing.assert_allclose(fused.covariances, separate.covariances, rtol=1e-9)


# ---- what runtime_info reports ------------------------------------------------------


@pytest.mark.parametrize("name", ["multiprocessing", "joblib-processes"])
def test_workers_single_threaded_and_traffic_independent_of_n(name: str) -> None:
    """X travels once: per-iteration bytes do not grow with n (100x more points)."""
    traffic = {}
    for n in (2_000, 200_000):
        X = make_blobs(n=n, d=2, k=3, seed=4)
        init = initial_params(X, 3, seed=0)
        with _create(name) as strategy:
            fit(strategy, X, init, max_iter=3)
            info = strategy.runtime_info()
        assert info["workers_started"] == 2
        assert len(set(info["worker_pids"])) == 2
        assert info["worker_blas_threads"] == 1
        assert info["worker_openmp_threads"] == 1
        assert info["kernel"] == "cython"
        assert info["start_method"]
        assert info["prepare_pool_seconds"] > 0 and info["prepare_data_seconds"] > 0
        assert info["iterations_measured"] == 3
        traffic[n] = (info["bytes_to_workers"], info["bytes_from_workers"])
    small, large = traffic[2_000], traffic[200_000]
    assert small[0] > 0 and small[1] > 0
    assert large[0] < 1.5 * small[0] + 1024, traffic  # X is 1.6 MB at n = 200k
    assert large[1] < 1.5 * small[1] + 1024, traffic


def test_start_method_from_argument_environment_and_default(monkeypatch) -> None:
    monkeypatch.delenv(control.START_METHOD_ENV, raising=False)
    assert MultiprocessingStrategy(2).start_method == control.DEFAULT_START_METHOD
    monkeypatch.setenv(control.START_METHOD_ENV, "spawn")
    assert MultiprocessingStrategy(2).start_method == "spawn"
    assert MultiprocessingStrategy(2, start_method="fork").start_method == "fork"
    assert MultiprocessingStrategy(2).runtime_info()["start_method"] == "spawn"
    monkeypatch.setenv(control.START_METHOD_ENV, "threads")
    with pytest.raises(InvalidParameterError, match="GMM_HARNESS_START_METHOD"):
        MultiprocessingStrategy(2)
    with pytest.raises(InvalidParameterError, match="start_method"):
        MultiprocessingStrategy(2, start_method="posix_spawn")


def test_bad_arguments_give_one_clear_error(data) -> None:
    X, init = data
    with pytest.raises(InvalidParameterError, match="tasks_per_worker"):
        MultiprocessingStrategy(2, tasks_per_worker=0)
    with pytest.raises(InvalidParameterError, match="max_nbytes"):
        JoblibProcessesStrategy(2, max_nbytes=-1)
    with pytest.raises(InvalidParameterError, match="task_timeout"):
        MultiprocessingStrategy(2, task_timeout=0)
    with MultiprocessingStrategy(2) as strategy:
        with pytest.raises(InvalidParameterError, match="prepare"):
            strategy.fused_iteration(derive(init))
        strategy.prepare(X)
        wrong_d = GMMParams(init.weights, init.means[:, :2], init.covariances[:, :2, :2])
        with pytest.raises(InvalidParameterError, match="features"):
            strategy.e_step(derive(wrong_d))
        with pytest.raises(InvalidParameterError, match="shape"):
            strategy.m_step(np.zeros((X.shape[0] - 1, 4)))
        stats = strategy.m_step(reference_e_step(X, derive(init))[0])  # still usable
        assert stats.n_points == X.shape[0]


# ---- the returned responsibilities ---------------------------------------------------


@pytest.mark.parametrize("cls", [MultiprocessingStrategy, JoblibProcessesStrategy])
def test_held_result_is_never_overwritten_and_survives_close(cls, data) -> None:
    X, init = data
    first_params = derive(init)
    later = derive(fit(_create("einsum", 1), X, init, max_iter=2).final)
    with cls(workers=2) as strategy:
        strategy.prepare(X)
        held, _ = strategy.e_step(first_params)
        column = held[:, 1]  # a view: holding only it must protect the buffer too
        snapshot = held.copy()
        del held
        second, _ = strategy.e_step(later)
        np.testing.assert_array_equal(column, snapshot[:, 1])
        assert not np.allclose(second, snapshot)
        copy_in = strategy.m_step(snapshot)  # a foreign array: copied into shared memory
        assert strategy.runtime_info()["log_resp_copies"] == 1
        np.testing.assert_allclose(copy_in.mass, np.exp(snapshot).sum(axis=0), rtol=1e-10)
        np.testing.assert_array_equal(column, snapshot[:, 1])
    gc.collect()
    assert not _our_shm_entries()  # unlinked although `second` still maps it
    np.testing.assert_allclose(np.exp(second).sum(axis=1), 1.0, rtol=1e-12)


# ---- failures -----------------------------------------------------------------------


@pytest.mark.timeout(45)
@pytest.mark.parametrize(
    ("name", "start_method"),
    [
        ("multiprocessing", "forkserver"),
        ("multiprocessing-components", "fork"),
        ("joblib-processes", None),
    ],
)
def test_killed_worker_fails_fast_with_worker_error(name: str, start_method, data) -> None:
    X, init = data
    before = _children()
    kwargs = {} if start_method is None else {"start_method": start_method}
    strategy = _create(name, **kwargs)
    try:
        strategy.prepare(X)
        pids = strategy.runtime_info()["worker_pids"]
        os.kill(pids[0], signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerError, match=r"died|failed|terminated") as raised:
            for _ in range(50):  # the pool notices within milliseconds; never hangs
                strategy.e_step(derive(init))
        assert time.monotonic() - start < 10
        if name != "joblib-processes":  # the killed worker, not those the pool stopped
            assert f"[{pids[0]}]" in str(raised.value), str(raised.value)
            assert str(pids[1]) not in str(raised.value), str(raised.value)
        with pytest.raises(WorkerError, match="prepare"):
            strategy.e_step(derive(init))
    finally:
        strategy.close()
    _assert_clean(before, pids)
    with strategy:  # prepare() starts a fresh pool after a failure
        assert np.isfinite(fit(strategy, X, init, max_iter=1).loglik[0])


@pytest.mark.timeout(45)
def test_exception_in_worker_gives_worker_error_and_cleans_up(data, monkeypatch) -> None:
    """A worker raising (here: a fault injected into its task, inherited by fork)."""
    X, init = data

    def broken(*args: object) -> None:
        raise ValueError("injected fault")

    monkeypatch.setattr(worker_tasks, "fused_statistics", broken)
    before = _children()
    with MultiprocessingStrategy(2, start_method="fork") as strategy:
        strategy.prepare(X)
        pids = strategy.runtime_info()["worker_pids"]
        with pytest.raises(WorkerError, match="ValueError: injected fault"):
            strategy.fused_iteration(derive(init))
    _assert_clean(before, pids)


@pytest.mark.timeout(45)
def test_exception_in_joblib_worker_gives_worker_error_and_cleans_up(data) -> None:
    """The memmapped copy of X is damaged (truncated): workers cannot map it and raise."""
    X, init = data
    before = _children()
    with JoblibProcessesStrategy(2) as strategy:
        strategy.prepare(X)
        info = strategy.runtime_info()
        dumps = list(Path(info["temp_folder"]).rglob("*.pkl"))
        assert dumps, "X was not memmapped"
        for path in dumps:
            os.truncate(path, 0)
        with pytest.raises(WorkerError, match="failed"):
            strategy.fused_iteration(derive(init))
    _assert_clean(before, info["worker_pids"])


@pytest.mark.parametrize("name", PROCESS_NAMES)
def test_close_leaves_no_process_and_no_shared_memory(name: str, data) -> None:
    X, init = data
    before = _children()
    strategy = _create(name)
    fit(strategy, X, init, max_iter=2)
    info = strategy.runtime_info()
    assert _our_shm_entries(), "nothing was placed in shared memory"
    strategy.close()
    strategy.close()  # twice is fine
    _assert_clean(before, info["worker_pids"])


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", ["multiprocessing", "joblib-processes"])
def test_stopped_worker_fails_past_the_derived_deadline(name: str, data, monkeypatch) -> None:
    """A worker that stops without dying (SIGSTOP) no longer blocks the fit for ever:
    past the deadline derived from earlier calls it is killed and named.

    Every worker is stopped (one, for ``multiprocessing``): an idle stopped worker
    blocks nothing, the others take its tasks. joblib runs ``n_jobs=1`` in-process,
    so it gets two workers, both stopped.
    """
    X, init = data
    monkeypatch.setattr(control, "TASK_TIMEOUT_FLOOR", 1.0)
    before = _children()
    strategy = _create(name, workers=1 if name == "multiprocessing" else 2)
    try:
        fit(strategy, X, init, max_iter=2)  # measured calls: the deadline is the floor
        info = strategy.runtime_info()
        limit = info["task_timeout_seconds"]
        assert 1.0 <= limit < control.FIRST_CALL_TIMEOUT, limit
        assert info["task_timeout_fixed"] is False
        pids = info["worker_pids"]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(WorkerError, match="deadline") as raised:
            strategy.fused_iteration(derive(init))
        elapsed = time.monotonic() - start
        assert all(str(pid) in str(raised.value) for pid in pids), str(raised.value)
        assert elapsed < limit + 10, (elapsed, limit)
    finally:
        for pid in strategy.runtime_info().get("worker_pids", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        strategy.close()
    _assert_clean(before, pids)


def test_task_timeout_from_argument_environment_or_derived(monkeypatch) -> None:
    monkeypatch.delenv(control.TASK_TIMEOUT_ENV, raising=False)
    assert MultiprocessingStrategy(2).task_timeout is None
    assert MultiprocessingStrategy(2).runtime_info()["task_timeout_seconds"] == (
        control.FIRST_CALL_TIMEOUT
    )
    monkeypatch.setenv(control.TASK_TIMEOUT_ENV, "7.5")
    assert JoblibProcessesStrategy(2).task_timeout == 7.5
    assert MultiprocessingStrategy(2, task_timeout=3).runtime_info()["task_timeout_seconds"] == 3
    monkeypatch.setenv(control.TASK_TIMEOUT_ENV, "soon")
    with pytest.raises(InvalidParameterError, match="GMM_HARNESS_TASK_TIMEOUT"):
        MultiprocessingStrategy(2)
    for bad in (0, -1, float("inf"), True, "x"):
        with pytest.raises(InvalidParameterError, match="task_timeout"):
            MultiprocessingStrategy(2, task_timeout=bad)
    deadline = control.TaskDeadline(None)
    for seconds in (0.001, 2.0, 0.002):
        deadline.record(seconds)
    assert deadline.limit() == max(control.TASK_TIMEOUT_FLOOR, control.TASK_TIMEOUT_FACTOR * 2.0)


_CHILD_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import strategies
    from harness.model.gmm import derive, initial_params
    from tests.conftest import make_blobs

    def main(name, mode):
        X = make_blobs(n=200_000, d=2, k=3, seed=1)
        derived = derive(initial_params(X, 3, seed=0))
        strategy = strategies.create(name, workers=2)
        if mode in ("exit", "kill"):  # prepared, never closed
            strategy.prepare(X)
            strategy.fused_iteration(derived)
            print(json.dumps(strategy.runtime_info()), flush=True)
            if mode == "kill":  # until SIGKILL: no clean-up code of this process runs
                time.sleep(600)
            return
        with strategy:
            strategy.prepare(X)
            print(json.dumps(strategy.runtime_info()), flush=True)
            while True:  # until Ctrl-C
                strategy.e_step(derived)

    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
    """
)


def _run_child(name: str, mode: str, tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    script = tmp_path / "child.py"
    script.write_text(_CHILD_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, str(script), name, mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline()
    if not line:
        child.wait(timeout=30)
        pytest.fail(f"child failed: {child.stderr.read()}")
    return child, json.loads(line)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["multiprocessing", "joblib-processes"])
def test_ctrl_c_during_fit_cleans_up(name: str, tmp_path: Path) -> None:
    child, info = _run_child(name, "interrupt", tmp_path)
    try:
        assert _our_shm_entries(child.pid)
        time.sleep(0.5)  # well inside the E-step loop
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
        stderr = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
    assert "KeyboardInterrupt" in stderr
    assert _gone(info["worker_pids"]), "workers outlived the interrupted parent"
    assert not _our_shm_entries(child.pid)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["multiprocessing", "joblib-processes"])
def test_interpreter_exit_without_close_cleans_up(name: str, tmp_path: Path) -> None:
    child, info = _run_child(name, "exit", tmp_path)
    try:
        child.wait(timeout=30)
        stderr = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, stderr
    assert "leaked" not in stderr, stderr  # the resource tracker had nothing to clean up
    assert _gone(info["worker_pids"])
    assert not _our_shm_entries(child.pid)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["multiprocessing", "joblib-processes"])
def test_killed_parent_leaves_no_workers_and_no_shared_memory(name: str, tmp_path: Path) -> None:
    """SIGKILL runs no clean-up in the parent: workers notice it is gone and exit, and
    the resource trackers (multiprocessing's, loky's) unlink what it registered."""
    child, info = _run_child(name, "kill", tmp_path)
    try:
        assert _our_shm_entries(child.pid)
        child.kill()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert _gone(info["worker_pids"], timeout=20), "workers outlived a killed parent"
    deadline = time.monotonic() + 20
    while _our_shm_entries(child.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _our_shm_entries(child.pid)


#: The seconds a fit may take to exit after a Ctrl-C (interpreter
#: shutdown included, on a loaded 2-core machine).
CTRL_C_EXIT_BOUND = 20.0
CTRL_C_FIT = (
    "fit", "--strategy", "multiprocessing", "--workers", "2",
    "--workload", "highdim", "--n", "20000",
)  # fmt: skip
#: Options per phase: enough iterations that the fit is still running when the signal
#: comes, except for ``close``, which the fit must reach first; separate E- and M-steps
#: for ``e-step`` (the merge is then the fused pass's).
CTRL_C_OPTIONS = {"close": ("--iterations", "3"), "e-step": ("--iterations", "300", "--no-fused")}


def _shm_mapped_by(pids: list[int]) -> set[str]:
    """/dev/shm files (segments, named semaphores) these processes have mapped."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                fields = line.split(maxsplit=5)
                path = fields[5] if len(fields) == 6 else ""
                if path.startswith("/dev/shm/"):
                    found.add(path.removesuffix(" (deleted)"))
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("phase", ctrl_c_fit.PHASES)
def test_ctrl_c_in_each_phase_of_a_fit_exits_and_leaves_nothing(phase: str) -> None:
    """SIGINT to the whole process group (as a terminal's Ctrl-C) once the fit says it
    is in ``phase`` (:mod:`tests._ctrl_c_fit`): the fit exits within the bound, and no
    process of its group nor any /dev/shm entry it had mapped is left."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    options = CTRL_C_OPTIONS.get(phase, ("--iterations", "300"))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests._ctrl_c_fit", phase, *CTRL_C_FIT, *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        said = []
        for line in child.stdout:
            said.append(line.rstrip())
            if line.startswith(ctrl_c_fit.MARKER):
                break
        assert said and said[-1] == f"{ctrl_c_fit.MARKER}{phase}", f"never reached {phase}: {said}"
        group = [child.pid] + [p.pid for p in psutil.Process(child.pid).children(True)]
        mapped = _shm_mapped_by(group) | _our_shm_entries(child.pid)
        os.killpg(child.pid, signal.SIGINT)
        start = time.monotonic()
        try:
            child.wait(timeout=CTRL_C_EXIT_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{phase}: no exit {CTRL_C_EXIT_BOUND} s after Ctrl-C")
        seconds = time.monotonic() - start
        deadline = time.monotonic() + 10
        while _group_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = {path for path in mapped if os.path.exists(path)}
        left |= {f"/dev/shm/{name}" for name in _our_shm_entries(child.pid)}
        assert not _group_alive(child.pid), f"{phase}: processes left in the group"
        assert not left, f"{phase}: /dev/shm entries left: {sorted(left)}"
    finally:
        if child.poll() is None or _group_alive(child.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        child.stdout.close()
    print(f"Ctrl-C in {phase}: exit after {seconds:.2f} s")


# ---- harness.sweep.memory -----------------------------------------------------------------


def _touch_in_child(name: str, nbytes: int, ready, done) -> None:
    from multiprocessing import shared_memory

    segment = shared_memory.SharedMemory(name=name)
    view = np.ndarray((nbytes,), dtype=np.uint8, buffer=segment.buf)
    int(view[::4096].sum())  # map every page (reading is enough)
    ready.set()
    done.wait(30)
    del view
    segment.close()


@pytest.mark.timeout(60)
def test_tree_pss_counts_a_child_and_shared_pages_once() -> None:
    nbytes = 128 * 1024**2
    context = multiprocessing.get_context("fork")
    shared = shm.SharedArray((nbytes,), np.uint8)
    try:
        shared.lease().array()[:] = 1  # parent maps and dirties every page
        alone = process_tree_pss()
        ready, done = context.Event(), context.Event()
        child = context.Process(target=_touch_in_child, args=(shared.name, nbytes, ready, done))
        child.start()
        try:
            assert ready.wait(30)
            together = process_tree_pss()
            child_pss = psutil.Process(child.pid).memory_full_info().pss
        finally:
            done.set()
            child.join(30)
    finally:
        shared.release()
    # The child maps all 128 MB: its PSS holds half of them, the parent's PSS dropped
    # by as much. Summed over the tree they count once, not twice as RSS would.
    assert child_pss > 0.4 * nbytes
    assert together - alone < 0.25 * nbytes, (alone, together)


def test_sampler_sees_a_short_lived_peak() -> None:
    with PeakMemorySampler(interval=0.005) as sampler:
        block = np.ones(200 * 1024**2 // 8)
        time.sleep(0.1)
        del block
    assert sampler.samples >= 3
    assert sampler.peak_bytes - sampler.start_bytes > 150 * 1024**2
    assert sampler.peak_bytes >= process_tree_pss() + 150 * 1024**2


def test_sampler_rejects_bad_interval_and_missing_process() -> None:
    with pytest.raises(MemoryMeasurementError):
        PeakMemorySampler(interval=0)
    with pytest.raises(MemoryMeasurementError):
        process_tree_pss(2**22 + 12345)  # above the default pid_max


# ---- the bench command's own logic ----------------------------------------------------


def test_bench_crossover_is_where_the_pool_stays_faster() -> None:
    from harness.bench.processes_report import crossover

    rows = [
        {"n": n, "r": r} for n, r in ((1e3, 3.0), (1e4, 0.9), (1e5, 1.2), (1e6, 0.7), (4e6, 0.6))
    ]
    assert crossover(rows, "r") == 1e6  # 1e4 was a fluke: 1e5 is slower again
    assert crossover(rows[:3], "r") is None
    assert crossover([{"n": 10, "r": 0.5}], "r") == 10


def test_bench_command_is_wired_and_rejects_unknown_sections() -> None:
    from harness.bench.processes import main
    from harness.cli import build_parser

    args = build_parser().parse_args(["bench-processes", "--only", "memory,speed"])
    with pytest.raises(InvalidParameterError, match="speed"):
        main(args)
