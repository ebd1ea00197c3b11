"""The GitHub Actions workflow cannot run here: check that it is valid and does its job.

Loads ``.github/workflows/bench.yml``, checks the steps the CI job needs and their
order, that every shell script parses, that every ``steps.<id>`` it refers to exists,
that every ``make`` target and ``python -m harness`` command it calls exists, and runs
the compare and summary steps' own scripts on synthetic results.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import _COMMAND_MODULES, build_parser
from harness.gate.verdicts import min_p_value

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "bench.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def find_step(steps: list[dict], pattern: str) -> tuple[int, dict]:
    """The one step whose name or script matches ``pattern`` (regex)."""
    hits = [
        (i, s)
        for i, s in enumerate(steps)
        if re.search(pattern, s.get("name", "") + "\n" + s.get("run", ""))
    ]
    assert len(hits) == 1, f"expected one step matching {pattern!r}, found {len(hits)}"
    return hits[0]


def test_triggers_on_pull_requests(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "pull_request" in triggers
    assert workflow["permissions"] == {"contents": "read"}


def test_one_job_on_one_machine(workflow):
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert "strategy" not in job  # no matrix: base and head must share the machine
    assert isinstance(job["timeout-minutes"], int)


def test_has_the_steps_in_order(steps):
    checkout = next(
        i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/checkout@")
    )
    assert steps[checkout]["with"]["fetch-depth"] == 0  # the base commit must be reachable
    tests, _ = find_step(steps, r"make test")
    base_install, base = find_step(steps, r"git worktree add")
    assert "pull_request.base.sha" in str(base) or "BASE_REF" in base["run"]
    sweeps, sweep_step = find_step(steps, r"-m harness run")
    assert sweep_step["run"].count("-m harness run $SWEEP_ARGS") == 2  # base, head
    check, _ = find_step(steps, r"-m harness check")
    compare, compare_step = find_step(steps, r"-m harness compare")
    assert "--markdown compare.md" in compare_step["run"]
    assert "results/ci-base-1,results/ci-base-2,results/ci-base-3" in compare_step["run"]
    assert "results/ci-head-1,results/ci-head-2,results/ci-head-3" in compare_step["run"]
    summary, summary_step = find_step(steps, r"job summary")
    assert summary_step["if"] == "always()"
    charts, _ = find_step(steps, r"-m harness plot")
    upload = next(
        i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/upload-artifact@")
    )
    assert "charts" in steps[upload]["with"]["path"]
    assert steps[upload]["if"] == "always()"
    assert checkout < tests < base_install < sweeps < check < compare
    assert compare < summary < upload and sweeps < charts < upload


def test_sweeps_take_enough_values_for_compare_to_reach_alpha(workflow, steps):
    (job,) = workflow["jobs"].values()
    args = job["env"]["SWEEP_ARGS"].split()
    assert args[0] == "--quick"
    values = int(args[args.index("--iterations") + 1])
    _, compare_step = find_step(steps, r"-m harness compare")
    alpha = float(re.search(r"--alpha ([\d.e-]+)", compare_step["run"]).group(1))
    assert min_p_value(values, values) < alpha / 100  # room for overlap between samples


def test_actions_are_pinned_to_a_version(steps):
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_every_script_is_valid_bash(steps):
    bash = shutil.which("bash")
    assert bash is not None
    for step in steps:
        if "run" in step:
            result = subprocess.run(
                [bash, "-n"], input=step["run"], text=True, capture_output=True, check=False
            )
            assert result.returncode == 0, f"{step.get('name')}: {result.stderr}"


def test_step_references_and_commands_exist(workflow, steps):
    text = WORKFLOW.read_text()
    ids = {s["id"] for s in steps if "id" in s}
    referenced = set(re.findall(r"steps\.([\w-]+)\.", text))
    assert referenced <= ids, f"unknown step ids {referenced - ids}"
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"\bmake (?:-C \S+ )?([\w-]+)", text)):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"no make target {target}"
    # built-in commands, plus the ones the CLI loads from their own modules
    commands = {"fit", "strategies", *_COMMAND_MODULES}
    for command in set(re.findall(r"-m harness ([\w-]+)", text)):
        assert command in commands, f"python -m harness has no {command!r} command"
    for command in ("compare", "check"):  # the gate's commands are really there
        assert command in build_parser()._subparsers._group_actions[0].choices


def _runner(tmp_path: Path) -> Path:
    """A stand-in for the workflow's ``.venv/bin/python``: this interpreter, this tree."""
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    venv_python.chmod(venv_python.stat().st_mode | stat.S_IEXEC)
    return venv_python


def _run_step(step: dict, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        check=False,
        timeout=50,
    )


def _logging_python(path: Path, label: str, log: Path) -> None:
    """A fake ``.venv/bin/python`` that logs its arguments and makes the --out folder."""
    path.parent.mkdir(parents=True)
    path.write_text(
        "#!/bin/sh\n"
        f'echo "{label} $*" >> "{log}"\n'
        'while [ $# -gt 0 ]; do [ "$1" = --out ] && mkdir -p "$2"; shift; done\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("base_runnable", [True, False])
def test_sweep_step_alternates_base_and_head(workflow, steps, tmp_path, base_runnable):
    (job,) = workflow["jobs"].values()
    log = tmp_path / "sweeps.log"
    head, base = tmp_path / "head", tmp_path / "base"
    _logging_python(head / ".venv" / "bin" / "python", "head", log)
    _logging_python(base / ".venv" / "bin" / "python", "base", log)
    env = {
        **os.environ,
        "SWEEP_ARGS": job["env"]["SWEEP_ARGS"],
        "BASE_DIR": str(base),
        "GITHUB_WORKSPACE": str(head),
        "BASE_RUNNABLE": "true" if base_runnable else "false",
    }
    _, sweep_step = find_step(steps, r"-m harness run")
    result = _run_step(sweep_step, head, env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    expected = [
        f"base -m harness run --quick --iterations 10 --out {head}/results/ci-base-1",
        "head -m harness run --quick --iterations 10 --out results/ci-head-1",
        f"base -m harness run --quick --iterations 10 --out {head}/results/ci-base-2",
        "head -m harness run --quick --iterations 10 --out results/ci-head-2",
        f"base -m harness run --quick --iterations 10 --out {head}/results/ci-base-3",
        "head -m harness run --quick --iterations 10 --out results/ci-head-3",
    ]
    assert calls == (expected if base_runnable else expected[1::2])
    assert (head / "results" / "ci-head-3").is_dir()


def test_compare_and_summary_steps_run_on_synthetic_results(steps, tmp_path):
    from tests.test_compare import KEY, noisy, write_run

    _runner(tmp_path)
    for pair in (1, 2, 3):
        write_run(tmp_path / "results" / f"ci-base-{pair}", {KEY: noisy(0.02, 0.02, seed=pair)})
        write_run(tmp_path / "results" / f"ci-head-{pair}", {KEY: noisy(0.04, 0.02, seed=9 + pair)})
    summary = tmp_path / "summary.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GITHUB_STEP_SUMMARY": str(summary)}
    _, compare_step = find_step(steps, r"-m harness compare")
    result = _run_step(compare_step, tmp_path, env)
    assert result.returncode == 1, result.stderr  # the 2x slowdown fails the job ...
    _, summary_step = find_step(steps, r"job summary")
    assert _run_step(summary_step, tmp_path, env).returncode == 0
    text = summary.read_text()  # ... and is still posted
    assert "## Benchmark comparison" in text and "**SLOWER**" in text
