"""`tracekeeper --help` start-up time against a bare interpreter (`python3 -I -c pass`).

    .venv/bin/python bench/bench_cli.py            # 20 runs of each
    .venv/bin/python bench/bench_cli.py --runs 50

The CLI registers its subcommands lazily (cli.LazyGroup): `--help` must not import their
modules, rich or the daemon's queue. Target (issue 9): the median of `tracekeeper --help` is at
most 5x the median of a bare interpreter start, measured in the same run. Printed as met/missed,
never asserted: timing on a shared 2-core machine is noisy, so the three commands are interleaved
(drift hits them alike). Also prints `--version` for scale, and `status` with the daemon down
(issue 10 asks for it against a bare start but names no ratio: the CLI's own cost, printed as a
figure; bench/bench_fleet.py has the daemon's part). bench/bench_hook.py measures `hook`.
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


def medians(commands: dict[str, Sequence[str]], runs: int, env: dict[str, str]) -> dict[str, float]:
    """Median wall time of `runs` fresh processes of each command, run in turn (round robin) so
    that load from other processes falls on all of them alike; one warm-up round first."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(runs + 1):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, env=env, capture_output=True, check=False)
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tkbench") as home:
        env = {**os.environ, "HOME": home, "XDG_STATE_HOME": home, "XDG_RUNTIME_DIR": home}
        env.pop("TRACEKEEPER_DEBUG", None)
        # The same interpreter as the CLI: `python3` on PATH may be a pyenv shim (a shell script).
        cli = [sys.executable, "-m", "tracekeeper"]
        took = medians(
            {
                "bare": [sys.executable, "-I", "-c", "pass"],
                "help": [*cli, "--help"],
                "version": [*cli, "--version"],
                "status": [*cli, "status"],
            },
            args.runs,
            env,
        )
    bare, helped, version, status = took["bare"], took["help"], took["version"], took["status"]
    ratio = helped / bare
    print(f"python -I -c pass       {bare * 1000:7.1f} ms (median of {args.runs}, interleaved)")
    print(f"tracekeeper --help      {helped * 1000:7.1f} ms  = {ratio:.1f}x")
    print(f"tracekeeper --version   {version * 1000:7.1f} ms  = {version / bare:.1f}x")
    print(f"tracekeeper status      {status * 1000:7.1f} ms  = {status / bare:.1f}x (daemon down; no target)")
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    print(f"target --help <= {TARGET_RATIO:g}x bare start: {verdict} ({ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
