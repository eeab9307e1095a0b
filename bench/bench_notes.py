"""How long writing notes takes: one batch of N commits, and one note into a large notes tree.

Run: `.venv/bin/python bench/bench_notes.py`. Prints figures; no targets are asserted here.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from tracekeeperd import git, notes

REF = "refs/notes/hf-traces"


def repository(root: Path, commits: int) -> tuple[Path, list[str]]:
    env = git.clean_env()
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    stream = "".join(
        f"commit refs/heads/m\nmark :{i}\ncommitter T <t@example.com> {1700000000 + i} +0000\ndata 1\nx\n"
        + (f"from :{i - 1}\n" if i > 1 else "")
        for i in range(1, commits + 1)
    )
    subprocess.run(["git", "-C", str(root), "fast-import", "--quiet"], input=stream.encode(), check=True, env=env)
    for key, value in (("user.name", "Bench"), ("user.email", "bench@example.com")):
        subprocess.run(["git", "-C", str(root), "config", key, value], check=True, env=env)
    shas = subprocess.run(
        ["git", "-C", str(root), "rev-list", "m"], capture_output=True, text=True, check=True, env=env
    )
    return root / ".git", shas.stdout.split()


def main() -> None:
    os.environ.setdefault("GIT_CONFIG_GLOBAL", "/dev/null")
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    with tempfile.TemporaryDirectory(prefix="tk-bench-notes-") as tmp:
        for count in (1, 20, 200):
            git_dir, shas = repository(Path(tmp) / f"batch{count}", count)
            started = time.perf_counter()
            notes.add(git_dir, REF, {sha: [f"hf-trace: file:///{sha}.jsonl"] for sha in shas})
            print(f"batch of {count:>3} notes: {(time.perf_counter() - started) * 1000:7.1f} ms, one notes commit")
        git_dir, shas = repository(Path(tmp) / "large", 5001)
        notes.add(git_dir, REF, {sha: ["base"] for sha in shas[:5000]})
        rounds = 20
        started = time.perf_counter()
        for i in range(rounds):
            notes.add(git_dir, REF, {shas[5000]: [f"hf-trace: file:///{i}.jsonl"]})
        print(f"one note into a 5000-note tree: {(time.perf_counter() - started) / rounds * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
