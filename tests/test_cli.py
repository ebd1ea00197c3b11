"""The command line as a user runs it: `python -m harness ...` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_fit_json_is_one_object_with_documented_keys() -> None:
    result = run_cli(
        "fit",
        "--strategy",
        "einsum",
        "--workload",
        "schreiber",
        "--n",
        "20000",
        "--iterations",
        "4",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    for key in (
        "strategy",
        "workers",
        "n",
        "d",
        "k",
        "iterations",
        "init",
        "final",
        "loglik",
        "iteration_seconds",
        "converged",
    ):
        assert key in payload
    assert (payload["strategy"], payload["n"], payload["d"], payload["k"]) == (
        "einsum",
        20000,
        2,
        4,
    )
    assert payload["iterations"] == 4 == len(payload["loglik"]) == len(payload["iteration_seconds"])
    for params in (payload["init"], payload["final"]):
        assert np.asarray(params["weights"]).shape == (4,)
        assert np.asarray(params["means"]).shape == (4, 2)
        assert np.asarray(params["covariances"]).shape == (4, 2, 2)
    assert np.all(np.diff(payload["loglik"]) > -1e-9)  # EM never decreases the likelihood


def test_fit_text_output_and_convergence(tmp_path) -> None:
    data = tmp_path / "points.csv"
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(8, 1, (300, 2))])
    np.savetxt(data, X, delimiter=",")
    result = run_cli("fit", "--strategy", "scipy", "--data", str(data), "--k", "2", "--tol", "1e-6")
    assert result.returncode == 0, result.stderr
    assert "per iteration" in result.stdout and "final log-lik" in result.stdout
    assert "converged        yes" in result.stdout


def test_strategies_json_lists_every_registered_name() -> None:
    import strategies

    result = run_cli("strategies", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [entry["name"] for entry in listed] == strategies.names()
    for entry in listed:
        assert set(entry) == {"name", "kind", "available", "reason", "problem"}
        assert entry["available"] or entry["reason"]
        assert entry["problem"] == strategies.get_info(entry["name"]).problem


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("fit", "--strategy", "nope", "--workload", "quinn"), "unknown strategy 'nope'"),
        (("fit", "--strategy", "einsum", "--data", "/no/such/file.npy", "--k", "2"), "not found"),
        (("fit", "--strategy", "einsum", "--data", "x.csv"), "needs --k"),
        (("fit", "--strategy", "einsum", "--workload", "quinn", "--n", "10"), "more than the 10"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("fit", "strategies"):
        assert command in result.stdout
