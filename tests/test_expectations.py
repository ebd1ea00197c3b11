"""``python -m harness check``: every kind of claim passes and fails on constructed tables."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.gate import claims as gate_claims
from harness.gate.expectations import (
    DEFAULT_EXPECTATIONS,
    FAILED,
    NOT_APPLICABLE,
    PASSED,
    check_run,
    load_expectations,
)
from harness.model.errors import DataFileError, InvalidParameterError
from harness.sweep.results import config_id
from tests.conftest import blank_row, write_run_folder

pytestmark = pytest.mark.timeout(60)

KINDS = {
    "scipy": "serial",
    "python": "serial",
    "einsum": "threads",
    "cython": "serial",
    "openmp": "openmp",
    "joblib-threads": "threads",
    "multiprocessing": "processes",
}
COMPILED = {"cython", "openmp", "joblib-threads"}


def config(
    strategy,
    workers,
    seconds,
    *,
    workload="schreiber",
    n=100_000,
    loglik=-3.25,
    status="ok",
    error="",
    usable_cores=2,
    factors=(1.0, 0.98, 1.02, 0.99, 1.01),
):
    """Rows of one configuration: ``seconds`` is one value, repeated 5 times with jitter."""
    base = blank_row(
        workload=workload,
        n=n,
        d=2,
        k=4,
        strategy=strategy,
        kind=KINDS[strategy],
        workers=workers,
        phase="iteration",
        status=status,
        error=error,
        config_id=config_id(workload, n, strategy, workers),
        effective_workers=workers,
        oversubscribed=workers > usable_cores,
        usable_cores=usable_cores,
        final_loglik=loglik,
        cpu_model="Test CPU",
    )
    if status != "ok":
        return [{**base, "seconds": math.nan, "value_index": 0, "final_loglik": math.nan}]
    return [{**base, "seconds": seconds * f, "value_index": i} for i, f in enumerate(factors)]


def write_run(path: Path, *configs: list[dict]) -> Path:
    return write_run_folder(path, [row for rows in configs for row in rows])


def write_claims(path: Path, text: str) -> Path:
    file = path / "expectations.toml"
    file.write_text("version = 1\n" + text)
    return file


def check(tmp_path: Path, claims: str, *configs: list[dict]):
    run = write_run(tmp_path / "run", *configs)
    return check_run(run, write_claims(tmp_path, claims))


@pytest.fixture(autouse=True)
def compiled_flags(monkeypatch):
    """Which strategies count as compiled, independent of which kernels are built here."""
    monkeypatch.setattr(gate_claims, "_needs_compiled", lambda name: name in COMPILED)


SPEEDUP = """
[[claim]]
kind = "speedup"
strategy = "openmp"
workload = "schreiber"
from_workers = 1
to_workers = 2
at_least = 1.5
"""


# ---- speedup ----------------------------------------------------------------------------


def test_speedup_passes_with_the_measured_figure(tmp_path):
    (result,) = check(tmp_path, SPEEDUP, config("openmp", 1, 1.0), config("openmp", 2, 0.5))
    assert result.status == PASSED
    (finding,) = result.findings
    assert finding.where == "schreiber n=100,000"
    assert finding.figure.startswith("2.00x")


def test_speedup_fails_below_the_margin(tmp_path):
    (result,) = check(tmp_path, SPEEDUP, config("openmp", 1, 1.0), config("openmp", 2, 0.9))
    assert result.status == FAILED
    assert result.findings[0].figure.startswith("1.11x")


def test_speedup_of_every_measured_size_must_hold(tmp_path):
    (result,) = check(
        tmp_path,
        SPEEDUP,
        config("openmp", 1, 1.0),
        config("openmp", 2, 0.5),
        config("openmp", 1, 0.01, n=1000),
        config("openmp", 2, 0.009, n=1000),
    )
    assert result.status == FAILED
    assert [f.status for f in result.findings] == [FAILED, PASSED]  # n=1000 first
    (result,) = check(
        tmp_path,
        SPEEDUP.replace('workload = "schreiber"', "min_n = 10_000"),
        config("openmp", 1, 1.0),
        config("openmp", 2, 0.5),
        config("openmp", 1, 0.01, n=1000),
        config("openmp", 2, 0.009, n=1000),
    )
    assert result.status == PASSED and len(result.findings) == 1


def test_speedup_is_not_applicable_when_not_measured(tmp_path):
    (result,) = check(tmp_path, SPEEDUP, config("scipy", 1, 1.0))
    assert result.status == NOT_APPLICABLE
    assert "openmp at 1 worker(s) not measured" in result.findings[0].figure
    (result,) = check(
        tmp_path,
        SPEEDUP,
        config("openmp", 1, 1.0),
        config("openmp", 2, 0, status="skipped", error="no OpenMP"),
    )
    assert result.status == NOT_APPLICABLE
    assert "skipped: no OpenMP" in result.findings[0].figure
    (result,) = check(tmp_path, SPEEDUP.replace("schreiber", "quinn"), config("openmp", 1, 1.0))
    assert result.status == NOT_APPLICABLE
    assert "no workload and size" in result.findings[0].figure


def test_speedup_is_not_applicable_on_a_machine_with_too_few_cores(tmp_path):
    (result,) = check(
        tmp_path,
        SPEEDUP,
        config("openmp", 1, 1.0, usable_cores=1),
        config("openmp", 2, 0.9, usable_cores=1),
    )
    assert result.status == NOT_APPLICABLE
    assert "oversubscribe" in result.findings[0].figure


def test_speedup_on_minimum_times_sees_through_interference(tmp_path):
    # one value at 2 workers ran undisturbed, the others shared the cores with a
    # competing process: the median says "slower", the minimum what the code can do
    disturbed = config("openmp", 2, 0.5, factors=(1.0, 4.0, 4.2, 3.9, 4.1))
    (result,) = check(tmp_path, SPEEDUP, config("openmp", 1, 1.0), disturbed)
    assert result.status == FAILED
    (result,) = check(
        tmp_path, SPEEDUP + 'statistic = "min"\n', config("openmp", 1, 1.0), disturbed
    )
    assert result.status == PASSED
    assert result.findings[0].figure.startswith("1.96x")  # 0.98 / 0.5
    assert "min times" in result.claim.describe()


def test_required_claim_fails_when_nothing_applies(tmp_path):
    (result,) = check(tmp_path, SPEEDUP + "required = true\n", config("scipy", 1, 1.0))
    assert result.status == FAILED


# ---- ratio ------------------------------------------------------------------------------

COMPILED_VS_SCIPY = """
[[claim]]
kind = "ratio"
strategies = { kind = ["openmp", "threads"], compiled = true }
versus = "scipy"
workers = 1
at_least = 5
"""


def test_every_compiled_strategy_beats_scipy(tmp_path):
    (result,) = check(
        tmp_path,
        COMPILED_VS_SCIPY,
        config("scipy", 1, 1.0),
        config("openmp", 1, 0.1),
        config("joblib-threads", 1, 0.15),
        config("einsum", 1, 0.5),  # threads but not compiled: not in the group
        config("cython", 1, 0.9),  # compiled but serial: not in the group
        config("openmp", 2, 0.9),
    )  # other worker count: not in the claim
    assert result.status == PASSED
    assert [f.where for f in result.findings] == [
        "schreiber n=100,000, joblib-threads w1",
        "schreiber n=100,000, openmp w1",
    ]
    assert result.findings[1].figure.startswith("10.00x")


def test_one_slow_member_fails_the_group(tmp_path):
    (result,) = check(
        tmp_path,
        COMPILED_VS_SCIPY,
        config("scipy", 1, 1.0),
        config("openmp", 1, 0.1),
        config("joblib-threads", 1, 0.5),
    )
    assert result.status == FAILED
    assert [f.status for f in result.findings] == [FAILED, PASSED]


def test_ratio_with_an_explicit_list_and_every_worker_count(tmp_path):
    claims = """
[[claim]]
kind = "ratio"
strategies = ["openmp", "cython"]
versus = "python"
versus_workers = 1
at_least = 20
"""
    (result,) = check(
        tmp_path,
        claims,
        config("python", 1, 10.0),
        config("openmp", 1, 0.2),
        config("openmp", 2, 0.1),
        config("cython", 1, 0.6),
    )
    assert result.status == FAILED  # cython is only 16.7x faster
    figures = {f.where.split(", ")[1]: (f.status, f.figure[:6]) for f in result.findings}
    assert figures == {
        "openmp w1": (PASSED, "50.00x"),
        "openmp w2": (PASSED, "100.00"),
        "cython w1": (FAILED, "16.67x"),
    }


def test_ratio_not_applicable_when_versus_or_group_is_missing(tmp_path):
    (result,) = check(tmp_path, COMPILED_VS_SCIPY, config("openmp", 1, 0.1))
    assert result.status == NOT_APPLICABLE
    assert "scipy at 1 worker(s) not measured" in result.findings[0].figure
    (result,) = check(
        tmp_path, COMPILED_VS_SCIPY, config("scipy", 1, 1.0), config("einsum", 1, 0.1)
    )
    assert result.status == NOT_APPLICABLE
    assert "the run has no strategy of the group" in result.findings[0].figure


# ---- agreement --------------------------------------------------------------------------

AGREEMENT = """
[[claim]]
kind = "agreement"
tolerance = 1e-8
"""


def test_agreement_passes_within_tolerance(tmp_path):
    (result,) = check(
        tmp_path,
        AGREEMENT,
        config("scipy", 1, 1.0, loglik=-3.25),
        config("openmp", 2, 0.1, loglik=-3.25 + 3e-12),
        config("python", 1, 5.0, loglik=-3.25 - 2e-12),
        config("cython", 1, 0, status="failed", error="boom"),
    )
    assert result.status == PASSED
    assert result.findings[0].figure.startswith("spread 5e-12 over 3 configurations")


def test_agreement_fails_and_names_the_outlier(tmp_path):
    (result,) = check(
        tmp_path,
        AGREEMENT,
        config("scipy", 1, 1.0, loglik=-3.25),
        config("openmp", 1, 0.1, loglik=-3.25),
        config("openmp", 2, 0.1, loglik=-3.2501),
    )
    assert result.status == FAILED
    figure = result.findings[0].figure
    assert "openmp w2 -3.2501" in figure and "scipy w1" not in figure.split("off:")[1]


def test_agreement_fails_when_an_ok_configuration_has_no_loglik(tmp_path):
    (result,) = check(
        tmp_path, AGREEMENT, config("scipy", 1, 1.0), config("openmp", 1, 0.1, loglik=math.nan)
    )
    assert result.status == FAILED
    assert "no finite final_loglik for openmp w1" in result.findings[0].figure


def test_agreement_needs_two_configurations(tmp_path):
    (result,) = check(tmp_path, AGREEMENT, config("scipy", 1, 1.0))
    assert result.status == NOT_APPLICABLE


def test_agreement_is_checked_per_workload_and_size(tmp_path):
    (result,) = check(
        tmp_path,
        AGREEMENT,
        config("scipy", 1, 1.0, loglik=-3.0),
        config("openmp", 1, 0.1, loglik=-3.0),
        config("scipy", 1, 1.0, n=1000, loglik=-2.0),
        config("openmp", 1, 0.1, n=1000, loglik=-2.0),
    )
    assert result.status == PASSED and len(result.findings) == 2


# ---- no-failures ------------------------------------------------------------------------

NO_FAILURES = """
[[claim]]
kind = "no-failures"
"""


def test_no_failures_passes_with_skipped_configurations(tmp_path):
    (result,) = check(
        tmp_path,
        NO_FAILURES,
        config("scipy", 1, 1.0),
        config("openmp", 1, 0, status="skipped", error="not built"),
    )
    assert result.status == PASSED
    assert result.findings[0].figure == "0 of 2 configurations failed"


def test_no_failures_fails_and_lists_the_failure(tmp_path):
    (result,) = check(
        tmp_path,
        NO_FAILURES,
        config("scipy", 1, 1.0),
        config("multiprocessing", 2, 0, status="failed", error="WorkerError: worker 1 died"),
    )
    assert result.status == FAILED
    (finding,) = result.findings
    assert finding.where == "schreiber n=100,000, multiprocessing w2"
    assert finding.figure == "WorkerError: worker 1 died"


# ---- the command line and the file ------------------------------------------------------


def test_cli_exit_status_and_markdown(tmp_path, capsys):
    run = write_run(
        tmp_path / "run",
        config("scipy", 1, 1.0),
        config("openmp", 1, 1.0),
        config("openmp", 2, 0.5),
    )
    passing = write_claims(tmp_path, SPEEDUP + AGREEMENT)
    markdown = tmp_path / "check.md"
    assert (
        cli_main(["check", str(run), "--expectations", str(passing), "--markdown", str(markdown)])
        == 0
    )
    out = capsys.readouterr().out
    assert "PASS  [speedup] openmp at 2 workers >= 1.5x faster than at 1" in out
    assert "2 passed, 0 failed, 0 not-applicable" in out
    assert "| passed |" in markdown.read_text()
    failing = write_claims(tmp_path, SPEEDUP.replace("1.5", "3") + AGREEMENT)
    assert cli_main(["check", str(run), "--expectations", str(failing)]) == 1
    assert "FAIL  [speedup]" in capsys.readouterr().out


def test_cli_unusable_input_exits_2(tmp_path, capsys):
    run = write_run(tmp_path / "run", config("scipy", 1, 1.0))
    claims = write_claims(tmp_path, NO_FAILURES)
    assert cli_main(["check", str(tmp_path / "missing"), "--expectations", str(claims)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["check", str(tmp_path / "empty"), "--expectations", str(claims)]) == 2
    assert cli_main(["check", str(run), "--expectations", str(tmp_path / "none.toml")]) == 2
    assert "no expectations file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[claim]]\nkind = 'speed'\n", "kind must be one of"),
        ("[[claim]]\nkind = 'agreement'\ntolerance = 1e-8\ntolerence = 1\n", "unknown key"),
        ("[[claim]]\nkind = 'agreement'\n", "needs tolerance"),
        ("[[claim]]\nkind = 'agreement'\ntolerance = -1\n", "positive number"),
        (
            "[[claim]]\nkind = 'ratio'\nstrategies = 'openmpp'\nversus = 'scipy'\nat_least = 2\n",
            "unknown strategy 'openmpp'",
        ),
        (
            "[[claim]]\nkind = 'ratio'\nstrategies = { kind = 'gpu' }\nversus = 'scipy'\n"
            "at_least = 2\n",
            "strategies.kind",
        ),
        ("[[claim]]\nkind = 'no-failures'\nn = 10\nmin_n = 5\n", "n or min_n"),
        (
            "[[claim]]\nkind = 'speedup'\nstrategy = 'openmp'\nfrom_workers = 2\nto_workers = 2\n"
            "at_least = 1\n",
            "must differ",
        ),
        ("claims = 1\n", "unknown top-level"),
        (
            "[[claim]]\nkind = 'speedup'\nstrategy = 'openmp'\nfrom_workers = 1\n"
            "to_workers = 2\nat_least = 1\nstatistic = 'mean'\n",
            "statistic must be one of median, min",
        ),
        ("", "no [[claim]]"),
    ],
)
def test_malformed_claims_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(InvalidParameterError, match=message.replace("[", r"\[")):
        load_expectations(write_claims(tmp_path, text))


def test_invalid_toml_and_wrong_version_are_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[claim]\nkind=")
    with pytest.raises(DataFileError, match="not valid TOML"):
        load_expectations(bad)
    with pytest.raises(InvalidParameterError, match="version 2"):
        load_expectations(
            write_claims(tmp_path, "").write_text("version = 2\n")
            and tmp_path / "expectations.toml"
        )


def test_committed_expectations_file_is_valid_and_covers_every_kind():
    claims = load_expectations(DEFAULT_EXPECTATIONS)
    assert {"speedup", "ratio", "agreement", "no-failures"} <= {c.kind for c in claims}
    agreement = [c for c in claims if c.kind == "agreement"]
    assert all(c.required for c in agreement)  # CI must compare something
