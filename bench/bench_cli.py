"""`tracekeeper --help` start-up time against a bare interpreter (`python3 -I -c pass`).

    .venv/bin/python bench/bench_cli.py            # 20 runs of each
    .venv/bin/python bench/bench_cli.py --runs 50

The CLI registers its subcommands lazily (cli.LazyGroup): `--help` must not import their
modules, rich or the daemon's queue. Target (issue 9): the median of `tracekeeper --help` is at
most 5x the median of a bare interpreter start. Printed as met/missed, never asserted: timing on
a shared 2-core machine is noisy. Also prints `--version` and `hook` (the fast path) for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

TARGET_RATIO = 5.0


def median_seconds(argv: Sequence[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time of `runs` fresh processes (one warm-up run first, not counted)."""
    subprocess.run(argv, env=env, capture_output=True, check=False)
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tkbench") as home:
        env = {**os.environ, "HOME": home, "XDG_STATE_HOME": home, "XDG_RUNTIME_DIR": home}
        env.pop("TRACEKEEPER_DEBUG", None)
        # The same interpreter as the CLI: `python3` on PATH may be a pyenv shim (a shell script).
        bare = median_seconds([sys.executable, "-I", "-c", "pass"], args.runs, env)
        cli = [sys.executable, "-m", "tracekeeper"]
        helped = median_seconds([*cli, "--help"], args.runs, env)
        version = median_seconds([*cli, "--version"], args.runs, env)
    ratio = helped / bare
    print(f"python -I -c pass       {bare * 1000:7.1f} ms (median of {args.runs})")
    print(f"tracekeeper --help      {helped * 1000:7.1f} ms  = {ratio:.1f}x")
    print(f"tracekeeper --version   {version * 1000:7.1f} ms  = {version / bare:.1f}x")
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    print(f"target --help <= {TARGET_RATIO:g}x bare start: {verdict} ({ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
