"""`tracekeeper hook codex` wall time against a bare `python3 -I -c pass` (target: ratio <= 2).

Agents run the hook on every prompt and wait for it, so its cost is startup cost: this measures
what the console script will run (a copy of pip's `tracekeeper` script pointing at
`tracekeeper.entry:main`, same interpreter) with a realistic Codex UserPromptSubmit payload on
stdin, in a temporary git repository, so each run does the real work: parse, `git rev-parse`,
lock, merge, atomic replace. The baseline is the same interpreter doing nothing.

The machine is shared and noisy, so the two commands are interleaved (drift hits both alike)
and the median of many runs is reported; nothing fails on a number.

    .venv/bin/python bench/bench_hook.py             # 30 runs each
    .venv/bin/python bench/bench_hook.py --runs 60 --importtime
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 2.0
SESSION = "019c8a70-dda7-7f33-98ea-f30553347322"

#: What pip writes for `tracekeeper = "tracekeeper.entry:main"`.
CONSOLE_SCRIPT = """#!{python}
import sys
from tracekeeper.entry import main
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(main())
"""


def payload(home: Path, repo: Path) -> bytes:
    rollout = home / ".codex" / "sessions" / "2026" / "11" / "25" / f"rollout-2026-11-25T09-00-00-{SESSION}.jsonl"
    return json.dumps(
        {
            "session_id": SESSION,
            "transcript_path": str(rollout),
            "cwd": str(repo),
            "hook_event_name": "UserPromptSubmit",
            "model": "gpt-5.5-codex",
            "permission_mode": "default",
            "turn_id": "019c8a71-0000-7000-8000-000000000001",
            "prompt": "Add a --json flag to the status command and update the tests. " * 20,
        }
    ).encode()


def timed(
    argv: list[str], stdin: bytes, env: dict[str, str], cwd: Path
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, cwd=cwd, check=False)
    return time.perf_counter() - start, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each command (default 30)")
    parser.add_argument("--importtime", action="store_true", help="also print the hook's slowest imports")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tkbench"))
    try:
        home = root / "home"
        repo = root / "repo"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
        env.update(HOME=str(home), XDG_STATE_HOME=str(home / ".local" / "state"), GIT_CONFIG_NOSYSTEM="1")
        subprocess.run(["git", "init", "-q", str(repo)], env=env, check=True)
        script = root / "bin" / "tracekeeper"
        script.parent.mkdir()
        script.write_text(CONSOLE_SCRIPT.format(python=sys.executable))
        script.chmod(0o755)
        data = payload(home, repo)
        hook = [str(script), "hook", "codex"]
        bare = [sys.executable, "-I", "-c", "pass"]

        _, proc = timed(hook, data, env, repo)
        active = repo / ".git" / "hf-traces-active.json"
        if proc.returncode != 0 or proc.stdout or not active.exists():
            print(f"FINDING: the hook did not work: rc={proc.returncode} stdout={proc.stdout!r} stderr={proc.stderr!r}")
            return 1
        for _ in range(3):  # warm the page cache for both
            timed(bare, b"", env, repo)
            timed(hook, data, env, repo)
        hook_times: list[float] = []
        bare_times: list[float] = []
        for _ in range(args.runs):
            bare_times.append(timed(bare, b"", env, repo)[0])
            hook_times.append(timed(hook, data, env, repo)[0])
        sessions = json.loads(active.read_bytes())["sessions"]
        if len(sessions) != 1:
            print(f"FINDING: {len(sessions)} sessions after {args.runs} runs of one session (expected 1)")

        hook_ms = statistics.median(hook_times) * 1000
        bare_ms = statistics.median(bare_times) * 1000
        ratio = hook_ms / bare_ms
        print(f"python      {sys.executable} ({sys.version.split()[0]})")
        print(f"runs        {args.runs} of each, interleaved")
        print(f"bare        python3 -I -c pass            median {bare_ms:6.1f} ms  (min {min(bare_times) * 1000:.1f})")
        print(f"hook        tracekeeper hook codex        median {hook_ms:6.1f} ms  (min {min(hook_times) * 1000:.1f})")
        verdict = "target met" if ratio <= TARGET_RATIO else "target missed"
        print(f"ratio       {ratio:.2f} (target <= {TARGET_RATIO:g}): {verdict}")

        if args.importtime:
            proc = subprocess.run(
                [sys.executable, "-X", "importtime", str(script), "hook", "codex"],
                input=data,
                capture_output=True,
                env=env,
                cwd=repo,
                check=False,
            )
            rows = []
            for line in proc.stderr.decode().splitlines():
                parts = line.split("|")
                if len(parts) == 3 and parts[1].strip().isdigit():
                    rows.append((int(parts[1]), parts[2].rstrip()))
            print("slowest imports (cumulative us):")
            for cumulative, name in sorted(rows, reverse=True)[:12]:
                print(f"  {cumulative:>8}  {name}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
