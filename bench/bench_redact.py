"""Redaction throughput, before and after escape-aware redaction, against a plain copy, in one run.

    python bench/bench_redact.py                     # 50 MB, google-re2, baseline eb7d4d7
    python bench/bench_redact.py --engine re         # stdlib re, for comparison
    python bench/bench_redact.py --size-mb 10 --repeat 1
    python bench/bench_redact.py --baseline HEAD~3   # any revision's tracekeeperd/redact.py

"Before" is `tracekeeperd/redact.py` as it was at ``--baseline`` (by default the last
revision before redaction learned to see through JSON escapes and terminal colours), read
with `git show` and imported as a module of its own; "after" is the working tree's. Both run
on the same bytes, interleaved (before, after, before, after ...), and the best of each is
kept, so drift on a shared machine hits both alike.

Two inputs, from tests/secretgen.py (realistic Claude/Codex lines, one secret line in 40):

* ``transcript``: as generated. Its escapes are the usual ``\\n``, ``\\"`` and ``\\u001b``,
  which the escape-aware word starts handle at no extra cost.
* ``hiding``: every JSON line also holds an escape that hides a letter (``"t\\u0079pe"``),
  as a .NET or PHP writer would produce on every line: the worst case, where each line is
  decoded and scanned a second time.

The files are written to a temporary directory and read back warm from the page cache, so
the figures compare CPU work, not the disk. MB here is 10**6 bytes. The target (25 MB/s on
the 2-core development machine) applies to ``transcript``; the exit status is 1 if it is
missed.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.secretgen import write_transcript
from tracekeeperd.redact import Redactor

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB_S = 25.0
MB = 1_000_000
BASELINE = "eb7d4d7"
"""The revision before escape-aware redaction."""


def best_of(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Fastest of ``repeat`` interleaved runs of each: the least disturbed by other processes."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def plain_copy(src: Path, dst: Path) -> None:
    with src.open("rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def load_baseline(rev: str, tmp: Path) -> ModuleType:
    """`tracekeeperd/redact.py` at ``rev``, imported under a name of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:tracekeeperd/redact.py"],
        capture_output=True,
        check=True,
    ).stdout
    path = tmp / "redact_baseline.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("redact_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def with_hiding_escapes(src: Path, dst: Path) -> None:
    """Every JSON line gets ``"t\\u0079pe"`` for its first ``"type"`` key: still the same JSON."""
    with src.open("rb") as fin, dst.open("wb") as fout:
        for line in fin:
            fout.write(line.replace(b'"type"', b'"t\\u0079pe"', 1) if line.startswith(b"{") else line)


def measure(src: Path, out: Path, redactors: dict[str, Any], repeat: int) -> tuple[dict[str, float], dict[str, Any]]:
    reports: dict[str, Any] = {}
    outputs: dict[str, bytes] = {}

    def runner(name: str, redactor: Any) -> Callable[[], None]:
        def run() -> None:
            with src.open("rb") as fin, out.open("wb") as fout:
                reports[name] = redactor.redact_stream(fin, fout)
            outputs[name] = out.read_bytes()

        return run

    times = best_of(repeat, {name: runner(name, r) for name, r in redactors.items()})
    same = len(set(outputs.values())) == 1
    return times, {"reports": reports, "same": same}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--engine", choices=["re2", "re"], default="re2")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose redact.py is 'before'")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tk-bench-") as tmp_name:
        tmp = Path(tmp_name)
        src, hiding, copy_dst, out = tmp / "in.jsonl", tmp / "hiding.jsonl", tmp / "copy.jsonl", tmp / "out.jsonl"
        start = time.perf_counter()
        lines, secret_lines = write_transcript(src, int(args.size_mb * MB))
        with_hiding_escapes(src, hiding)
        size = src.stat().st_size
        print(
            f"input        {size / MB:8.1f} MB, {lines} lines, {secret_lines} with secrets "
            f"(written in {time.perf_counter() - start:.1f} s)"
        )
        try:
            baseline = load_baseline(args.baseline, tmp)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"baseline     cannot read tracekeeperd/redact.py at {args.baseline}: {exc}", file=sys.stderr)
            return 2
        redactors = {
            f"before ({args.baseline})": baseline.Redactor(engine=args.engine),
            "after": Redactor(engine=args.engine),
        }
        copy_s = best_of(args.repeat, {"copy": lambda: plain_copy(src, copy_dst)})["copy"]
        inputs = {"transcript": src, "hiding": hiding}
        results = {name: measure(path, out, redactors, args.repeat) for name, path in inputs.items()}

    copy_rate = size / MB / copy_s
    print(f"plain copy   {copy_rate:8.1f} MB/s ({copy_s:.3f} s)")
    after_rate = 0.0
    for input_name, (times, extra) in results.items():
        for name, seconds in times.items():
            rate = size / MB / seconds
            report = extra["reports"][name]
            print(
                f"{input_name:<10} {name:<18} {rate:8.1f} MB/s ({seconds:.3f} s, engine {args.engine}); "
                f"{report.total} secrets in {len(report.counts)} kinds"
            )
            if input_name == "transcript" and name == "after":
                after_rate = rate
        print(f"{input_name:<10} outputs      {'identical' if extra['same'] else 'differ'} before and after")
    met = after_rate >= TARGET_MB_S
    print(f"target       {TARGET_MB_S:8.1f} MB/s on transcript, after: {'target met' if met else 'target missed'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
