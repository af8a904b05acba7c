"""Run every benchmark, one after another, and print a table of each ratio against its target.

Each benchmark is run as `python bench/NAME.py` from the repository root; its output is shown as it
comes, and its last line `RATIO <name> <value> (target <op> <value>)` is collected. A miss is
reported in the table, not as a failure: the ratios are measurements to read, so this always exits
0 (a benchmark that crashed shows as an error). Names on the command line run only those.

    python bench/run_all.py                       # all eight, a few minutes on 2 cores
    python bench/run_all.py shard_writing memory  # just these
"""

from __future__ import annotations

import argparse
import operator
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BENCHMARKS = [
    "pipeline_efficiency",
    "gpu_saturation",
    "batching_saturation",
    "shard_writing",
    "memory",
    "qc_share",
    "readings",
    "text_time",
]
RATIO = re.compile(r"^RATIO (\S+) (\S+) \(target (<=|>=) (\S+)\)$")
MEETS = {"<=": operator.le, ">=": operator.ge}


def run(name: str) -> tuple[str | None, float]:
    """Runs one benchmark, echoing its output; returns its RATIO line (or None) and its seconds."""
    print(f"\n=== {name}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(BENCH / f"{name}.py")],
        cwd=BENCH.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ratio_line = None
    for line in process.stdout:
        print(line, end="", flush=True)
        if RATIO.match(line.strip()):
            ratio_line = line.strip()
    process.wait()
    return (ratio_line if process.returncode == 0 else None), time.perf_counter() - started


def table(results: dict[str, tuple[str | None, float]]) -> str:
    rows = [f"{'benchmark':<22}{'ratio':>8}  {'target':<9}{'met':<6}{'seconds':>8}"]
    for name, (line, seconds) in results.items():
        match = RATIO.match(line) if line else None
        if match is None:
            rows.append(f"{name:<22}{'error':>8}  {'':<9}{'':<6}{seconds:>8.0f}")
            continue
        _, value, op, target = match.groups()
        met = "yes" if MEETS[op](float(value), float(target)) else "NO"
        rows.append(f"{name:<22}{value:>8}  {op + ' ' + target:<9}{met:<6}{seconds:>8.0f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    names = parser.parse_args().names or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    results = {name: run(name) for name in names}
    print("\n" + table(results))


if __name__ == "__main__":
    main()
