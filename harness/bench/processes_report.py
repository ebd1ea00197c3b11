"""bench-processes' printed tables and the figures its targets judge.

Each ``report_*`` function prints one measurement's table (rows as the measurements in
:mod:`harness.bench.processes` return them) and returns the figures that targets may
name, ``{metric: (value or None, detail)}``, for :func:`harness.bench.targets.judge`.
May not measure, start processes or read the targets file.
"""

from __future__ import annotations

MIB = 1024**2


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.1f}"


def _first_from(rows: list[dict], holds) -> int | None:
    """Smallest n from which ``holds(row)`` is true for every larger n (None: not at the
    largest)."""
    found = None
    for row in sorted(rows, key=lambda r: r["n"], reverse=True):
        if not holds(row):
            break
        found = row["n"]
    return found


def crossover(rows: list[dict], key: str) -> int | None:
    """Smallest n from which ``key`` (pool / in-process) stays below 1 for all larger n."""
    return _first_from(rows, lambda row: row[key] < 1.0)


def _first_within(rows: list[dict], key: str, limit: float) -> int | None:
    return _first_from(rows, lambda row: row[key] <= limit)


def report_memory(rows: list[dict]) -> dict[str, tuple[float | None, str]]:
    print("\nPeak PSS of the process tree (prepare + iterations), fresh process each")
    print(f"{'configuration':<36} {'peak MiB':>10} {'start MiB':>10} {'x einsum':>9}  notes")
    base = rows[0].get("peak_bytes")
    for row in rows:
        if "error" in row:
            print(f"{row['label']:<36} {'failed':>10}  {row['error']}")
            continue
        ratio = row["peak_bytes"] / base if base else float("nan")
        info = row.get("runtime_info", {})
        notes = f"{row['samples']} samples, {row['iteration_seconds'] * 1e3:,.0f} ms/iter"
        if info.get("kernel"):
            notes += f", kernel {info['kernel']}"
        print(
            f"{row['label']:<36} {_mib(row['peak_bytes']):>10} {_mib(row['start_bytes']):>10} "
            f"{ratio:>9.2f}  {notes}"
        )
    target = rows[1] if len(rows) > 1 else {}
    if base and "peak_bytes" in target:
        ratio = target["peak_bytes"] / base
        return {"peak_pss_ratio": (ratio, f"{ratio:.2f}x ({target['label']})")}
    return {"peak_pss_ratio": (None, "")}


def report_time(
    rows: list[dict], target_n: int, within: float
) -> dict[str, tuple[float | None, str]]:
    """Print the time table; the figures at ``target_n``. ``within``: ratio to locate."""
    kernel = rows[0]["kernel"] if rows else "?"
    print(
        f"\nPer-iteration time (median ms), same per-chunk code ({kernel}) in one process "
        "vs the pools"
    )
    labels = list(rows[0]["medians"]) if rows else []
    header = f"{'n':>10} " + " ".join(f"{label:>22}" for label in labels)
    print(header + f" {'mp/in-proc':>10} {'joblib/in':>10} {'e+m ratio':>10}")
    for row in rows:
        cells = " ".join(f"{row['medians'][label] * 1e3:>22.2f}" for label in labels)
        print(
            f"{row['n']:>10,} {cells} {row['ratio_fused']:>10.2f} {row['ratio_joblib']:>10.2f} "
            f"{row['ratio_em']:>10.2f}"
        )
    for key, name in (
        ("ratio_fused", "multiprocessing fused"),
        ("ratio_joblib", "joblib-processes fused"),
        ("ratio_em", "multiprocessing e+m"),
    ):
        cross = crossover(rows, key)
        close = _first_within(rows, key, within)
        print(
            f"  {name}: faster than in-process from n = "
            f"{'not in range' if cross is None else f'{cross:,}'}; within {within:g}x "
            f"from n = {'not in range' if close is None else f'{close:,}'}"
        )
    at_target = [row for row in rows if row["n"] == target_n] or rows[-1:]
    if not at_target:
        return {"fused_time_ratio": (None, ""), "crossover_n": (None, "")}
    row = at_target[0]
    cross = crossover(rows, "ratio_fused")
    return {
        "fused_time_ratio": (row["ratio_fused"], f"{row['ratio_fused']:.2f}x at n = {row['n']:,}"),
        "crossover_n": (
            cross,
            "faster from n = " + ("not in range" if cross is None else f"{cross:,}"),
        ),
    }


def report_traffic(rows: list[dict]) -> None:
    print(
        "\nBytes per iteration the workers read (to) and wrote (from), measured; the last "
        "column is what pickling the n x k responsibilities back would move"
    )
    labels = [key for key in rows[0] if isinstance(rows[0][key], dict)] if rows else []
    print(
        f"{'n':>10} "
        + " ".join(f"{label + ' to':>26} {'from':>8}" for label in labels)
        + f" {'n*k*8':>12}"
    )
    for row in rows:
        cells = " ".join(
            f"{row[label]['to'] or 0:>26,.0f} {row[label]['from'] or 0:>8,.0f}" for label in labels
        )
        print(f"{row['n']:>10,} {cells} {row['pickled_log_resp_bytes']:>12,}")


def report_prepare(rows: list[dict]) -> dict[str, tuple[float | None, str]]:
    print("\nprepare (pool start + data placement), fresh process each; ms")
    print(
        f"{'start method':<28} {'cold':>9} {'= pool':>9} {'+ data':>9} {'warm':>9} "
        f"{'= pool':>9} {'+ data':>9}"
    )
    failures = 0
    for row in rows:
        if "error" in row:
            failures += 1
            print(f"{row['label']:<28} failed: {row['error']}")
            continue
        cold, warm = row["cold"], row["warm"]
        print(
            f"{row['label']:<28} {cold['seconds'] * 1e3:>9.1f} "
            f"{(cold['pool_seconds'] or 0) * 1e3:>9.1f} {(cold['data_seconds'] or 0) * 1e3:>9.1f} "
            f"{warm['seconds'] * 1e3:>9.1f} {(warm['pool_seconds'] or 0) * 1e3:>9.1f} "
            f"{(warm['data_seconds'] or 0) * 1e3:>9.1f}"
        )
    summary = ", ".join(
        f"{row['label'].split()[-1]} {row['cold']['seconds'] * 1e3:.0f} ms"
        for row in rows
        if "cold" in row
    )
    return {"prepare_failures": (failures, f"{failures} failed; {summary}")}
