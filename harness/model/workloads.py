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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.model.errors import DataFileError, InvalidParameterError
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
    """

    name: str
    X: np.ndarray
    k: int
    seed: int = 0

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]


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
        (comma-separated numbers, one point per row; one header row is skipped).

    Returns
    -------
    ndarray of float64, shape (n, d)

    Raises
    ------
    DataFileError
        If the file is missing, of an unknown type, or cannot be parsed.
    InvalidDataError
        If it parses but the values cannot be fitted (NaN, wrong shape, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as exc:
            raise DataFileError(f"cannot read {path} as a .npy array: {exc}") from exc
    elif suffix == ".csv":
        array = _load_csv(path)
    else:
        raise DataFileError(f"unsupported data file type {suffix!r} for {path}; use .npy or .csv")
    return check_data(array, name=str(path))


def _load_csv(path: Path) -> np.ndarray:
    """Comma-separated numbers; a first line that is not numeric is taken as a header."""
    try:
        with path.open() as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    try:
        [float(field) for field in first.split(",")]
        header_rows = 0
    except ValueError:
        header_rows = 1
    try:
        return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=header_rows, dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(f"malformed CSV {path}: {exc}") from exc


def dataset_from_file(path: str | Path, k: int, seed: int = 0) -> Dataset:
    """A :class:`Dataset` from a user's file, with ``k`` checked against ``n``."""
    X = load_data(path)
    k = check_n_components(k, X.shape[0])
    return Dataset(Path(path).name, X, k, seed)
