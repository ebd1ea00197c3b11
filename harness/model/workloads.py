"""Workloads: deterministic synthetic data sets, and the user's own files.

| name        | n (default) | d  | k  | shape of the problem                                   |
|-------------|-------------|----|----|--------------------------------------------------------|
| schreiber   | 4,000,000   | 2  | 4  | unit-variance blobs, component i shifted by 5*i         |
| quinn       | 130,000     | 2  | 50 | many small 2-D components (exp-bound, k large)          |
| highdim     | 200,000     | 32 | 8  | BLAS-shaped: d^2 work per point and component dominates |

``n`` can be rescaled (the size axis of a sweep); the generator is a function of
``(name, n, seed)`` only, so two runs with the same arguments get identical data.

It generates or loads data only: no strategy, no timing, no results folder.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.model.errors import DataFileError, InvalidParameterError
from harness.model.footprint import check_fits
from harness.model.gmm import axis_length
from harness.model.validation import check_data, check_n_components


@dataclass(frozen=True)
class Dataset:
    """Data to fit and the number of components to fit with.

    Attributes
    ----------
    name : str
        Workload name, or the file name for user data.
    X : ndarray of float64, shape (n, d)
    k : int
    seed : int
    notes : tuple of str
        What reading the data decided that the user should hear (a skipped header).
    """

    name: str
    X: np.ndarray
    k: int
    seed: int = 0
    notes: tuple[str, ...] = ()

    n = axis_length("X", 0, "Number of points.")
    d = axis_length("X", 1, "Number of features.")


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    n: int
    d: int
    k: int
    description: str
    generate: Callable[[int, np.random.Generator], np.ndarray]


def _split_counts(n: int, k: int) -> np.ndarray:
    """n points shared out over k components as evenly as possible."""
    counts = np.full(k, n // k)
    counts[: n % k] += 1
    return counts


def _schreiber(n: int, rng: np.random.Generator) -> np.ndarray:
    k, d = 4, 2
    counts = _split_counts(n, k)
    blocks = [rng.standard_normal((count, d)) + 5.0 * i for i, count in enumerate(counts)]
    return np.concatenate(blocks)


def _random_covariance(rng: np.random.Generator, d: int, low: float, high: float) -> np.ndarray:
    """A random rotation of a diagonal with standard deviations in [low, high]."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q *= np.sign(np.diag(r))
    scales = rng.uniform(low, high, size=d)
    return (q * scales**2) @ q.T


def _mixture(
    n: int,
    rng: np.random.Generator,
    means: np.ndarray,
    sd_range: tuple[float, float],
) -> np.ndarray:
    k, d = means.shape
    counts = _split_counts(n, k)
    blocks = []
    for j, count in enumerate(counts):
        cov = _random_covariance(rng, d, *sd_range)
        chol = np.linalg.cholesky(cov)
        blocks.append(means[j] + rng.standard_normal((count, d)) @ chol.T)
    X = np.concatenate(blocks)
    # Interleave the components, as real data would be, without a full shuffle copy.
    return X[rng.permutation(n)]


def _quinn(n: int, rng: np.random.Generator) -> np.ndarray:
    means = rng.uniform(-60.0, 60.0, size=(50, 2))
    return _mixture(n, rng, means, (0.8, 4.0))


def _highdim(n: int, rng: np.random.Generator) -> np.ndarray:
    means = rng.normal(0.0, 4.0, size=(8, 32))
    return _mixture(n, rng, means, (0.5, 2.0))


WORKLOADS: dict[str, WorkloadSpec] = {
    spec.name: spec
    for spec in (
        WorkloadSpec(
            "schreiber",
            4_000_000,
            2,
            4,
            "4 unit-variance 2-D blobs shifted by 5*i (the seed notebook)",
            _schreiber,
        ),
        WorkloadSpec(
            "quinn", 130_000, 2, 50, "~130k 2-D points, 50 components (the einsum post)", _quinn
        ),
        WorkloadSpec(
            "highdim", 200_000, 32, 8, "32-D, 8 components: BLAS-shaped work dominates", _highdim
        ),
    )
}


def make_workload(name: str, n: int | None = None, seed: int = 0) -> Dataset:
    """Generate a workload deterministically.

    Parameters
    ----------
    name : {"schreiber", "quinn", "highdim"}
    n : int, optional
        Number of points; the workload's default when None.
    seed : int

    Returns
    -------
    Dataset
    """
    spec = WORKLOADS.get(str(name).lower())
    if spec is None:
        raise InvalidParameterError(
            f"unknown workload {name!r}; valid names: {', '.join(WORKLOADS)}"
        )
    n = spec.n if n is None else int(n)
    check_n_components(spec.k, n)
    check_fits(n, spec.d, spec.k, what=f"workload {spec.name}")
    # One stream per (workload, seed): adding a workload never changes another's data.
    rng = np.random.default_rng([seed, sum(map(ord, spec.name))])
    X = np.ascontiguousarray(spec.generate(n, rng), dtype=np.float64)
    return Dataset(spec.name, X, spec.k, seed)


def load_data(path: str | Path, *, mmap: bool = True) -> np.ndarray:
    """Read a user's data file.

    Parameters
    ----------
    path : str or Path
        ``.npy`` (opened as a read-only memmap when ``mmap``) or ``.csv``
        (comma-separated numbers, one point per row; a first line that is not numbers,
        once a UTF-8 byte-order mark and whitespace are stripped, is a header and skipped).

    Returns
    -------
    ndarray of float64, shape (n, d)

    Raises
    ------
    DataFileError
        If the file is missing, not a regular file (a folder, a FIFO, a device), of an
        unknown type, empty, or cannot be parsed.
    InvalidDataError
        If it parses but the values cannot be fitted (NaN, wrong shape, ...).
    """
    return _read_data(Path(path), mmap)[0]


#: What a path that is not a regular file is, for the message (never opened: a FIFO
#: would block the reader until someone writes to it).
_NOT_A_FILE = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular_file(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataFileError(f"data file not found: {path}") from None
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for test, what in _NOT_A_FILE:
        if test(mode):
            raise DataFileError(f"{path} is {what}, not a data file; give a .npy or .csv file")
    if not stat.S_ISREG(mode):
        raise DataFileError(f"{path} is not a regular file; give a .npy or .csv file")


def _read_data(path: Path, mmap: bool) -> tuple[np.ndarray, tuple[str, ...]]:
    """The checked array and the notes reading it produced."""
    _check_regular_file(path)
    suffix = path.suffix.lower()
    notes: tuple[str, ...] = ()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as exc:
            raise DataFileError(f"cannot read {path} as a .npy array: {exc}") from exc
    elif suffix == ".csv":
        array, header = _load_csv(path)
        if header is not None:
            notes = (f"{path.name}: first line taken as a header and skipped: {header!r}",)
    else:
        raise DataFileError(f"unsupported data file type {suffix!r} for {path}; use .npy or .csv")
    return check_data(array, name=str(path)), notes


#: Text encoding of CSV files: UTF-8, with the byte-order mark some editors write
#: (Excel's "CSV UTF-8") dropped instead of glued to the first number.
_CSV_ENCODING = "utf-8-sig"


def _is_numeric_row(line: str) -> bool:
    fields = [field.strip() for field in line.split(",")]
    try:
        [float(field) for field in fields]
    except ValueError:
        return False
    return True


def _load_csv(path: Path) -> tuple[np.ndarray, str | None]:
    """Comma-separated numbers, and the header line when the first line was one.

    The first non-blank line is data when every field parses as a number once the
    byte-order mark and whitespace are stripped; otherwise it is a header.
    """
    try:
        with path.open(encoding=_CSV_ENCODING) as handle:
            first, header_rows = "", 0
            for line in handle:
                header_rows += 1
                if line.strip():
                    first = line.strip()
                    break
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    if not first:
        raise DataFileError(f"{path} is empty: no data rows")
    header = None if _is_numeric_row(first) else first
    try:
        with warnings.catch_warnings():
            # An empty result is reported below in words, not as NumPy's warning.
            warnings.simplefilter("ignore", UserWarning)
            array = np.loadtxt(
                path,
                delimiter=",",
                ndmin=2,
                # leading blank lines, and the header when there is one
                skiprows=header_rows if header is not None else header_rows - 1,
                dtype=np.float64,
                encoding=_CSV_ENCODING,
            )
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(f"malformed CSV {path}: {exc}") from exc
    if array.size == 0:
        raise DataFileError(f"{path} has a header line ({header!r}) but no data rows")
    return array, header


def dataset_from_file(path: str | Path, k: int, seed: int = 0) -> Dataset:
    """A :class:`Dataset` from a user's file, with ``k`` checked against ``n``."""
    X, notes = _read_data(Path(path), mmap=True)
    k = check_n_components(k, X.shape[0])
    check_fits(X.shape[0], X.shape[1], k, generated=False, what=str(path))
    return Dataset(Path(path).name, X, k, seed, notes)
