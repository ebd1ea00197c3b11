"""Bad input: each case gets one clear error, never a crash or a silent NaN."""

from __future__ import annotations

import numpy as np
import pytest

import strategies
from harness.model.errors import (
    DataFileError,
    HarnessError,
    InvalidDataError,
    InvalidParameterError,
    StrategyUnavailableError,
    UnknownStrategyError,
)
from harness.model.gmm import GMMParams, initial_params
from harness.model.validation import check_data, check_n_components, check_workers
from harness.model.workloads import dataset_from_file, load_data, make_workload
from harness.sweep.em import fit
from tests.conftest import make_blobs


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    X = make_blobs(n=50, d=2, k=2)
    X[7, 1] = bad
    with pytest.raises(InvalidDataError, match=r"non-finite.*row 7, column 1"):
        check_data(X)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4)])
def test_wrong_dimensionality_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidDataError, match=f"must be 2-D.*got {len(shape)}-D"):
        check_data(np.zeros(shape))


@pytest.mark.parametrize("shape", [(0, 2), (5, 0)])
def test_empty_array_is_rejected(shape: tuple[int, int]) -> None:
    with pytest.raises(InvalidDataError, match="empty"):
        check_data(np.zeros(shape))


@pytest.mark.parametrize("value", [np.array([["a", "b"]]), np.ones((3, 2), dtype=complex)])
def test_non_real_dtypes_are_rejected(value: np.ndarray) -> None:
    with pytest.raises(InvalidDataError, match="real numbers"):
        check_data(value)


def test_float32_and_non_contiguous_are_converted_to_float64() -> None:
    X = make_blobs(n=40, d=3, k=2)
    converted = check_data(X.astype(np.float32))
    assert converted.dtype == np.float64 and converted.flags.c_contiguous
    strided = check_data(np.asfortranarray(X)[:, ::2])
    assert strided.flags.c_contiguous
    np.testing.assert_array_equal(strided, X[:, ::2])


def test_read_only_float64_is_used_without_copy() -> None:
    X = make_blobs(n=40, d=2, k=2)
    X.setflags(write=False)
    assert check_data(X) is X


@pytest.mark.parametrize(
    ("k", "message"), [(0, ">= 1"), (-3, ">= 1"), (11, "more than the 10"), (2.5, "integer")]
)
def test_bad_number_of_components(k: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        check_n_components(k, 10)


def test_k_larger_than_n_in_fit() -> None:
    X = make_blobs(n=5, d=2, k=1)
    init = GMMParams(np.full(6, 1 / 6), np.zeros((6, 2)), np.broadcast_to(np.eye(2), (6, 2, 2)))
    with (
        strategies.create("einsum") as strategy,
        pytest.raises(InvalidParameterError, match="more than the 5"),
    ):
        fit(strategy, X, init)


def test_feature_mismatch_in_fit() -> None:
    X = make_blobs(n=50, d=3, k=2)
    init = initial_params(make_blobs(n=50, d=2, k=2), 2)
    with (
        strategies.create("einsum") as strategy,
        pytest.raises(InvalidParameterError, match="features"),
    ):
        fit(strategy, X, init)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_bad_worker_counts(workers: object) -> None:
    with pytest.raises(InvalidParameterError, match="workers"):
        check_workers(workers)


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(UnknownStrategyError, match=r"unknown strategy 'nope'.*einsum"):
        strategies.get_strategy("nope")


def test_unavailable_strategy_gives_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    info = strategies.get_info("einsum")
    fake = strategies.StrategyInfo(info.name, info.kind, False, "no BLAS today", None)
    monkeypatch.setitem(strategies.registry(), "einsum", fake)
    with pytest.raises(StrategyUnavailableError, match="no BLAS today"):
        strategies.get_strategy("einsum")


def test_unknown_workload() -> None:
    with pytest.raises(InvalidParameterError, match=r"unknown workload.*quinn"):
        make_workload("nope")


def test_missing_data_file(tmp_path) -> None:
    with pytest.raises(DataFileError, match="not found"):
        load_data(tmp_path / "absent.npy")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bad.csv", "1,2\n3,oops\n"),
        ("ragged.csv", "1,2\n3,4,5\n"),
        ("bad.npy", "this is not numpy"),
        ("data.txt", "1,2\n"),
    ],
)
def test_malformed_data_files(tmp_path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFileError):
        load_data(path)


def test_csv_with_header_and_npy_memmap(tmp_path) -> None:
    X = make_blobs(n=30, d=2, k=2)
    csv = tmp_path / "points.csv"
    csv.write_text("x,y\n" + "\n".join(f"{float(a)!r},{float(b)!r}" for a, b in X))
    np.testing.assert_array_equal(load_data(csv), X)
    npy = tmp_path / "points.npy"
    np.save(npy, X)
    loaded = load_data(npy)
    assert not loaded.flags.writeable  # opened as a read-only memmap, not copied
    dataset = dataset_from_file(npy, k=2)
    assert dataset.k == 2 and dataset.name == "points.npy"
    with pytest.raises(InvalidParameterError):
        dataset_from_file(npy, k=31)


def test_nan_in_data_file_is_rejected(tmp_path) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("1,2\nnan,4\n")
    with pytest.raises(InvalidDataError, match="non-finite"):
        load_data(path)


def test_all_user_errors_share_one_base_class() -> None:
    for error in (
        InvalidDataError,
        InvalidParameterError,
        DataFileError,
        UnknownStrategyError,
        StrategyUnavailableError,
    ):
        assert issubclass(error, HarnessError)
