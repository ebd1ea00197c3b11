"""The ``dask`` strategy: bad addresses, clean shutdown, a real TCP cluster, worker loss."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import strategies
from harness.model.errors import WorkerError
from harness.model.gmm import derive, initial_params
from tests.conftest import make_blobs

pytestmark = pytest.mark.skipif(
    not strategies.get_info("dask").available, reason=strategies.get_info("dask").reason
)

ROOT = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).with_name("dask")


def _children() -> set[int]:
    """Child processes, less multiprocessing's resource tracker (one per parent, started
    by the first spawned process and kept for the parent's life by design)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if not any("resource_tracker" in part for part in child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            pass
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- bad scheduler addresses ----------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "",
        "not an address",
        "http://127.0.0.1:8786",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:99999",
        "tcp://:8786",
        "tcp://no-such-scheduler.invalid:8786",
    ],
)
def test_bad_address_is_one_clear_error_within_the_deadline(address) -> None:
    from strategies.dask_cluster import SchedulerAddressError, connect

    began = time.monotonic()
    with pytest.raises(SchedulerAddressError, match=r"scheduler|address|port") as caught:
        connect(address, 1, deadline_seconds=3.0)
    assert time.monotonic() - began < 5.0
    assert str(caught.value).strip() and "\n" not in str(caught.value)


def test_refused_port_and_silent_server_fail_within_the_deadline() -> None:
    from strategies.dask_cluster import SchedulerAddressError, connect

    began = time.monotonic()
    with pytest.raises(SchedulerAddressError, match="cannot connect"):
        connect(f"tcp://127.0.0.1:{_free_port()}", 1, deadline_seconds=3.0)
    assert time.monotonic() - began < 5.0
    with socket.socket() as silent:  # accepts connections, never speaks Dask
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        began = time.monotonic()
        with pytest.raises(SchedulerAddressError):
            connect(f"tcp://127.0.0.1:{silent.getsockname()[1]}", 1, deadline_seconds=2.0)
        assert time.monotonic() - began < 4.0


def test_cli_gives_one_error_line_for_a_bad_scheduler() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "fit", "--strategy", "dask", "--workload", "quinn",
         "--n", "1000", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dask scheduler"), completed.stderr


# ---- own LocalCluster: start, record, release -------------------------------------------


def test_own_local_cluster_is_recorded_and_released_also_after_an_exception(monkeypatch) -> None:
    monkeypatch.delenv("GMM_HARNESS_DASK_SCHEDULER", raising=False)
    before = _children()
    X = make_blobs(n=2000, d=2, k=3, seed=4)
    derived = derive(initial_params(X, 3, seed=0))
    with pytest.raises(RuntimeError, match="boom"), strategies.create("dask", 2) as strategy:
        strategy.prepare(X)
        strategy.fused_iteration(derived)
        info = strategy.runtime_info()
        folder = strategy._resources.folder
        assert folder is not None and folder.is_dir()
        raise RuntimeError("boom")
    assert info["scheduler"] == "local"
    assert info["cluster_workers"] == 2 and info["cluster_threads"] == 2
    assert info["workers_used"] == 2 and info["kernel"] in {"cython", "numpy"}
    assert info["startup_seconds"] > 0 and info["scheduler_overhead_seconds"] >= 0
    assert info["worker_blas_threads"] == 1
    assert not folder.exists()
    deadline = time.monotonic() + 30
    while _children() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (_children() - before)


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import strategies
    from harness.model.gmm import derive, initial_params
    from tests.conftest import make_blobs

    if __name__ == "__main__":
        X = make_blobs(n=2000, d=2, k=3, seed=4)
        derived = derive(initial_params(X, 3, seed=0))
        with strategies.create("dask", 2) as strategy:
            strategy.prepare(X)
            print("ready", flush=True)
            while True:
                strategy.fused_iteration(derived)
    """
)


def test_ctrl_c_leaves_no_process_behind(tmp_path) -> None:
    script = tmp_path / "fit_forever.py"
    script.write_text(CTRL_C_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "GMM_HARNESS_DASK_SCHEDULER"}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout.readline().strip() == "ready"
        group = os.getpgid(process.pid)
        time.sleep(0.5)
        os.killpg(group, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        process.wait(timeout=90)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = [p for p in psutil.process_iter(["pid"]) if _in_group(p, group)]
            if not left:
                break
            time.sleep(0.2)
        assert not left, [p.cmdline() for p in left]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


class _InterruptingFinalizer:
    """Raises SIGINT from ``__del__``, where Python prints the KeyboardInterrupt as
    ignored: where a Ctrl-C lands when the main thread runs one of distributed's
    finalizers (a Future's ``__del__``) at that moment."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_fit(
    dask_cluster_address, monkeypatch
) -> None:
    monkeypatch.setenv("GMM_HARNESS_DASK_SCHEDULER", dask_cluster_address)
    X = make_blobs(n=2000, d=2, k=3, seed=4)
    derived = derive(initial_params(X, 3, seed=0))
    with strategies.create("dask", 2) as strategy:
        strategy.prepare(X)
        strategy.fused_iteration(derived)
        _InterruptingFinalizer()  # collected at once; its KeyboardInterrupt is swallowed
        with pytest.raises(KeyboardInterrupt):
            strategy.fused_iteration(derived)
        strategy.fused_iteration(derived)  # acted on once: the strategy still works


def _in_group(process: psutil.Process, group: int) -> bool:
    try:
        return os.getpgid(process.pid) == group
    except (ProcessLookupError, PermissionError):
        return False


# ---- a real multi-process cluster over TCP on loopback ------------------------------------


def _start(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with pytest.raises(ProcessLookupError) if False else _suppress():
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with _suppress():
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError)


@pytest.fixture
def tcp_cluster(tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes (no nanny) on 127.0.0.1."""
    if not DASK.exists():
        pytest.skip(f"no dask command at {DASK}")
    processes: list[subprocess.Popen] = []
    try:
        log = tmp_path / "scheduler.log"
        processes.append(
            _start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                    "--no-dashboard"], log)
        )  # fmt: skip
        address = None
        deadline = time.monotonic() + 120
        while address is None and time.monotonic() < deadline:
            found = re.search(r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)", log.read_text())
            address = found.group(1) if found else None
            if processes[0].poll() is not None:
                pytest.fail(f"dask scheduler exited: {log.read_text()}")
            time.sleep(0.1)
        assert address, log.read_text()
        for index in range(2):
            processes.append(
                _start([str(DASK), "worker", address, "--nthreads", "1", "--no-nanny",
                        "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{index}"],
                       tmp_path / f"worker{index}.log")
            )  # fmt: skip
        yield address, processes[1:]
    finally:
        for process in reversed(processes):
            _stop(process)


def test_real_cluster_fits_recovers_a_lost_worker_and_fails_cleanly(tcp_cluster, monkeypatch):
    import strategies.dask_cluster as dask_cluster

    address, worker_processes = tcp_cluster
    monkeypatch.setenv("GMM_HARNESS_DASK_SCHEDULER", address)
    monkeypatch.setattr(dask_cluster, "CONNECT_SECONDS", 120.0)  # workers start slowly here
    monkeypatch.setattr(dask_cluster, "WORKER_LOSS_SECONDS", 2.0)
    X = make_blobs(n=3000, d=2, k=3, seed=9)
    derived = derive(initial_params(X, 3, seed=0))
    with strategies.create("dask", 2) as strategy:
        strategy.prepare(X)
        first, loglik = strategy.fused_iteration(derived)
        info = strategy.runtime_info()
        assert info["scheduler"] == address and info["cluster_workers"] == 2
        assert info["workers_used"] == 2

        # Lose the worker holding block 0: its block is rebuilt from its lineage.
        pids = strategy._resources.client.run(os.getpid)
        victim = pids[strategy._pins[0]]
        os.kill(victim, signal.SIGKILL)
        began = time.monotonic()
        again, loglik_again = strategy.fused_iteration(derived)
        assert time.monotonic() - began < 60
        assert strategy.runtime_info()["blocks_moved"] >= 1
        assert loglik_again == loglik
        for name in ("mass", "means", "scatter"):
            assert np.array_equal(getattr(again, name), getattr(first, name))

        # Lose every worker: a WorkerError within seconds, not a hang.
        for process in worker_processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        began = time.monotonic()
        with pytest.raises(WorkerError, match="worker"):
            strategy.fused_iteration(derived)
        assert time.monotonic() - began < 30


# ---- the tasks' NumPy path (workers without the compiled kernels) ---------------------------


@pytest.mark.parametrize("kernels_built", [True, False])
def test_tasks_match_the_reference_with_and_without_kernels(monkeypatch, kernels_built) -> None:
    import strategies.dask_tasks as dask_tasks
    from harness.model.gmm import reference_e_step, reference_m_step

    dask_tasks._worker_init()
    if kernels_built and dask_tasks._WORKER.kernel is None:
        pytest.skip("compiled kernels not built")
    if not kernels_built:
        monkeypatch.setattr(dask_tasks._WORKER, "kernel", None)
        monkeypatch.setattr(dask_tasks._WORKER, "path", "numpy")
    X = make_blobs(n=700, d=3, k=4, seed=6)
    derived = derive(initial_params(X, 4, seed=2))
    log_resp, mean_loglik = reference_e_step(X, derived)
    expected = reference_m_step(X, log_resp)
    stats, loglik, seconds, address, path = dask_tasks.fused_task(X, derived)
    assert path == ("cython" if kernels_built else "numpy") and address == "" and seconds >= 0
    assert loglik == pytest.approx(mean_loglik * X.shape[0], rel=1e-10)
    np.testing.assert_allclose(stats.mass, expected.mass, rtol=1e-10)
    np.testing.assert_allclose(stats.means, expected.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.scatter, expected.scatter, rtol=1e-9, atol=1e-9)
    got_log_resp, e_loglik, *_ = dask_tasks.e_step_task(X, derived)
    np.testing.assert_allclose(np.exp(got_log_resp), np.exp(log_resp), rtol=1e-8, atol=1e-12)
    assert e_loglik == pytest.approx(loglik, rel=1e-12)
    m_stats, *_ = dask_tasks.m_step_task(X, log_resp, np.ascontiguousarray(derived.means))
    np.testing.assert_allclose(m_stats.scatter, expected.scatter, rtol=1e-9, atol=1e-9)


def test_missing_dask_is_unavailable_with_the_install_command(monkeypatch) -> None:
    import importlib.util

    from strategies.dask_cluster import DaskStrategy

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "distributed" else real(name, *a),
    )
    reason = DaskStrategy.unavailable_reason()
    assert reason is not None and "not installed" in reason and ".[dask]" in reason
