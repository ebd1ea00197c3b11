"""Argument types shared by every command: whole positive numbers and sizes.

Each parser raises :class:`argparse.ArgumentTypeError`, so argparse prints usage plus one
``error:`` line. Imports nothing of the harness, so the model, the sweep and the CLI can
all use it.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """``"4"`` -> 4; refuses anything that is not a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def size(text: str) -> int:
    """Accepts 4000000, 4e6, 4_000_000."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 100000 or 1e5, got {text!r}"
        ) from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole size >= 1, got {text!r}")
    return int(value)
