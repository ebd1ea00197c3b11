"""Compiled Cython kernels: nogil numeric code only, no policy and no I/O.

The extensions :mod:`kernels.gmm_kernels` (EM) and :mod:`kernels.micro_kernels` (the
summarize/pairwise micro-problems and the race demo) are compiled by the project's own build
(``pip install -e .``, i.e. ``make install``; see ``kernels/_build.py``). Code that can
run without it imports it through :func:`load`, so that a missing build makes the
compiled strategies unavailable instead of breaking every import.
"""

from __future__ import annotations

from types import ModuleType

_BUILD_HINT = "build them with `make install` (pip install -e .)"


def load() -> ModuleType:
    """The compiled kernel module.

    Raises
    ------
    ImportError
        If the extension is not built (or cannot be loaded), with how to build it.
    """
    try:
        from kernels import gmm_kernels
    except ImportError as exc:
        raise ImportError(
            f"the compiled kernels (kernels/gmm_kernels.pyx) cannot be imported: {exc}; "
            f"{_BUILD_HINT}"
        ) from exc
    return gmm_kernels


def load_micro() -> ModuleType:
    """The compiled micro-problem kernel module.

    Raises
    ------
    ImportError
        If the extension is not built (or cannot be loaded), with how to build it.
    """
    try:
        from kernels import micro_kernels
    except ImportError as exc:
        raise ImportError(
            f"the compiled micro kernels (kernels/micro_kernels.pyx) cannot be imported: "
            f"{exc}; {_BUILD_HINT}"
        ) from exc
    return micro_kernels


def micro_unavailable_reason() -> str | None:
    """Why the micro kernels cannot be used here, or None when they can."""
    try:
        load_micro()
    except ImportError as exc:
        return str(exc)
    return None


def unavailable_reason() -> str | None:
    """Why the compiled kernels cannot be used here, or None when they can."""
    try:
        load()
    except ImportError as exc:
        return str(exc)
    return None


def build_info() -> dict[str, object]:
    """How the kernels were built (see ``gmm_kernels.build_info``); ``{"built": False,
    "reason": ...}`` when they are not."""
    try:
        module = load()
    except ImportError as exc:
        return {"built": False, "reason": str(exc)}
    return {"built": True, **module.build_info()}


__all__ = [
    "build_info",
    "load",
    "load_micro",
    "micro_unavailable_reason",
    "unavailable_reason",
]
