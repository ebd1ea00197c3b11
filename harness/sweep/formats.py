"""How the harness writes files and prints durations: one helper of each kind.

* :func:`write_atomic` / :func:`write_text_atomic`: a file is replaced whole or not at
  all (temporary file in the same folder, then ``os.replace``), so an interrupted
  writer never leaves half a file where a reader expects a whole one;
* :func:`json_default` / :func:`to_json`: JSON that holds NumPy scalars and arrays
  (and, as text, anything else);
* :func:`read_toml`: a TOML file as a dict, or one :class:`DataFileError` that says
  what is wrong with it;
* :func:`format_seconds`: a duration as ``"1.23 s"``, ``"12.3 ms"`` or ``"123 us"``.

Only the standard library (and the harness's errors): the measurement process and the
CLI import it before any numeric library. It knows nothing of strategies, runs or their layout.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.model.errors import DataFileError


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary)`` on a fresh file next to ``path``, then move it into place.

    Parameters
    ----------
    path : str or Path
        The file to create or replace.
    write : callable
        Writes the whole content to the path it is given. If it raises, ``path`` is
        untouched and the temporary file is removed.

    Raises
    ------
    OSError
        When the folder cannot be written; whatever ``write`` raises.
    """
    path = Path(path)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """:func:`write_atomic` of a UTF-8 text."""
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def json_default(value: object) -> object:
    """``default=`` for :func:`json.dumps`: NumPy scalars and arrays as plain values.

    Anything else that JSON cannot hold becomes its ``str``.
    """
    tolist = getattr(value, "tolist", None)  # NumPy scalars give a Python scalar
    if callable(tolist):
        return tolist()
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


def to_json(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON text, NumPy values included (NaN and infinities kept as such)."""
    return json.dumps(value, indent=indent, default=json_default, allow_nan=True)


def read_toml(path: str | Path, missing: str) -> dict[str, Any]:
    """The TOML document at ``path``.

    Raises
    ------
    DataFileError
        ``missing`` when there is no file (or a folder); otherwise what is wrong (unreadable, not
        UTF-8, not valid TOML), naming the file.
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise DataFileError(missing) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from None


def format_seconds(seconds: float | None, missing: str = "-") -> str:
    """A duration with three significant figures in s, ms or us; ``missing`` if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return missing
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


__all__ = ["format_seconds", "json_default", "to_json", "write_atomic", "write_text_atomic"]
