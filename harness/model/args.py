"""Argument types shared by every command: the one place a number on a command line is read.

Sizes, size lists, worker counts and lists, seeds, seconds, tolerances and
probabilities are parsed here and nowhere else, so ``fit``, ``run``,
``bench-compiled`` and ``bench-processes`` refuse the same bad values with the same
words. Each parser raises :class:`argparse.ArgumentTypeError`, so argparse prints
usage plus one ``error:`` line and exits 2; :func:`as_parameter_error` turns one into
an :class:`~harness.model.errors.InvalidParameterError` for values that come from a
file (a resumed run's ``meta.json``) rather than from the command line.

Ranges are checked here, not only the syntax: a seed of -1 or 2**32, a size of
``inf`` or ``1e300`` or a worker count of 30 digits would otherwise reach NumPy, the
operating system or ctypes and come back as a traceback. Whether a size fits in
memory depends on the workload, so that check lives in
:mod:`harness.model.footprint`; the bound here only catches sizes no machine holds.

Output paths are checked here too (:func:`output_file`, :func:`output_folder`), so a
path that cannot be written fails before the work, not after an hour of benchmark.

Imports nothing of the harness but its errors, so the model, the sweep and the CLI can
all use it. May not import NumPy (it runs before any numeric library loads).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness.model.errors import InvalidParameterError

#: Largest ``n`` accepted at parse time: 10^12 points are 8 TB at d = 1, more than any
#: machine this harness targets holds; anything larger is a typo or a test of the parser.
MAX_SIZE = 10**12
#: Largest worker count accepted: far above any core count the harness will meet, far
#: below what the operating system or ctypes (C ``int`` thread counts) would choke on.
MAX_WORKERS = 1024
#: Seeds are 32-bit unsigned: what NumPy's legacy seeding and every BLAS/OpenMP RNG take.
MAX_SEED = 2**32 - 1

_T = TypeVar("_T")


def _number(text: str, what: str) -> float | int:
    """``"4_000"`` -> 4000, ``"4e3"`` -> 4000.0; exact for long whole numbers."""
    cleaned = str(text).strip().replace("_", "")
    try:
        return int(cleaned)
    except ValueError:
        pass
    try:
        return float(cleaned)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _whole(text: str, what: str, *, minimum: int, maximum: int, why_max: str) -> int:
    value = _number(text, what)
    if isinstance(value, float):
        if math.isnan(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (not a number)")
        if math.isinf(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (infinite)")
        if value != int(value):
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
        value = int(value)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {text!r}")
    if value > maximum:
        raise argparse.ArgumentTypeError(f"{text!r} is too large: at most {maximum:,} ({why_max})")
    return value


def positive_int(text: str) -> int:
    """``"4"`` -> 4; a whole number from 1 to 2**31 - 1 (a C ``int``)."""
    return _whole(text, "a whole number", minimum=1, maximum=2**31 - 1, why_max="the largest C int")


def nonnegative_int(text: str) -> int:
    """``"0"`` -> 0; a whole number from 0 to 2**31 - 1 (warm-up rounds and the like)."""
    return _whole(text, "a whole number", minimum=0, maximum=2**31 - 1, why_max="the largest C int")


def size(text: str) -> int:
    """A number of points: ``4000000``, ``4e6`` or ``4_000_000``; 1 to :data:`MAX_SIZE`."""
    return _whole(
        text,
        "a size such as 100000 or 1e5",
        minimum=1,
        maximum=MAX_SIZE,
        why_max="more points than any machine holds",
    )


def workers(text: str) -> int:
    """A worker count (threads or processes): 1 to :data:`MAX_WORKERS`."""
    return _whole(
        text,
        "a worker count such as 2",
        minimum=1,
        maximum=MAX_WORKERS,
        why_max="the harness's cap on threads or processes",
    )


def seed(text: str) -> int:
    """A random seed: 0 to :data:`MAX_SEED` (32 bits unsigned)."""
    return _whole(
        text,
        "a seed (a whole number from 0 to 4294967295)",
        minimum=0,
        maximum=MAX_SEED,
        why_max="seeds are 32-bit unsigned",
    )


def _listed(item: Callable[[str], _T], what: str, text: str) -> tuple[_T, ...]:
    parts = [part.strip() for part in str(text).split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
    values = []
    for part in parts:
        if not part:
            continue
        try:
            values.append(item(part))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{what} {text!r}: {exc}") from None
    return tuple(sorted(set(values)))


def size_list(text: str) -> tuple[int, ...]:
    """``"1e4,1e5"`` -> (10000, 100000): sorted, duplicates dropped."""
    return _listed(size, "sizes", text)


def sizes_at_least(minimum: int) -> Callable[[str], tuple[int, ...]]:
    """A :func:`size_list` parser that also refuses sizes below ``minimum``."""

    def parse(text: str) -> tuple[int, ...]:
        values = size_list(text)
        if values[0] < minimum:
            raise argparse.ArgumentTypeError(f"sizes must be >= {minimum}; got {text!r}")
        return values

    parse.__name__ = "sizes"
    return parse


def worker_list(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> (1, 2): sorted, duplicates dropped."""
    return _listed(workers, "worker counts", text)


def seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    value = _number(text, "seconds such as 30 or 1.5")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return float(value)


def seconds_or_inf(text: str) -> float:
    """Seconds > 0, or ``inf`` for no limit."""
    value = _number(text, "seconds such as 30, or inf")
    if math.isnan(value) or not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0 (or inf), got {text!r}")
    return float(value)


def tolerance(text: str) -> float:
    """A convergence tolerance: finite and > 0."""
    value = _number(text, "a tolerance such as 1e-6")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a tolerance > 0, got {text!r}")
    return float(value)


def probability(text: str) -> float:
    """A probability strictly between 0 and 1 (a significance level)."""
    value = _number(text, "a probability such as 0.05")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a probability between 0 and 1 (exclusive), got {text!r}"
        )
    return float(value)


def _probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``: the only test that holds for
    root, read-only mounts and pseudo file systems alike (``os.access`` says yes to
    root in ``/proc``)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot write in {folder}: creating a file there fails ({exc.strerror or exc})"
        ) from None


def output_file(text: str) -> str:
    """A file the command will write: its folder must exist and be writable.

    Returns ``text`` unchanged; nothing is created.
    """
    path = Path(text)
    if not str(text).strip():
        raise argparse.ArgumentTypeError("expected a file name, got an empty string")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a regular file")
    folder = path.parent
    if not folder.exists():
        raise argparse.ArgumentTypeError(f"cannot write {text}: folder {folder} does not exist")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {folder} is not a folder")
    _probe_writable(folder)
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied")
    return str(text)


def output_folder(text: str) -> str:
    """A folder the command will create or write into.

    It may exist (a folder) or not; the nearest existing ancestor must be a writable
    folder. Returns ``text`` unchanged; nothing is created.
    """
    path = Path(text)
    if not str(text).strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty string")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot create {text}: {ancestor} is a file, not a folder"
        )
    _probe_writable(ancestor)
    return str(text)


def as_parameter_error(parse: Callable[[str], _T], text: object, option: str) -> _T:
    """``parse(text)``, with a refusal raised as :class:`InvalidParameterError`.

    For values read back from a file, where argparse is not there to print usage.
    """
    try:
        return parse(str(text))
    except argparse.ArgumentTypeError as exc:
        raise InvalidParameterError(f"{option}: {exc}") from None
