"""Options every bench command has: ``--n``, ``--json`` and ``--targets``.

One place that declares them, so the two commands spell and check them alike; each
command adds its own options next to these. May not read files, measure or import a
strategy.
"""

from __future__ import annotations

import argparse

from harness.model import args as types


def add_bench_options(parser: argparse.ArgumentParser, section: str, n_help: str) -> None:
    """``--n`` (a size; None: the command's default), ``--json FILE`` (checked before
    anything is measured) and ``--targets FILE`` (section ``[section]`` of a targets
    file)."""
    parser.add_argument("--n", type=types.size, default=None, help=n_help)
    parser.add_argument(
        "--json",
        metavar="FILE",
        type=types.output_file,
        default=None,
        help="also write every figure to this JSON file (checked before the benchmark)",
    )
    parser.add_argument(
        "--targets",
        metavar="FILE",
        default=None,
        help=f"targets file, section [{section}] (default: results/targets.toml)",
    )
