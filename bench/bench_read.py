"""How fast the trail comes back: `tracekeeper why` and `tracekeeper search` on a large repository.

The repository has 1,000 noted commits (each adds a line to src/app.py) linked to sessions
totalling 100 MB of Claude Code transcript (prompts, answers, tool calls and their output, drawn
from a Zipf-distributed vocabulary so common and rare words both exist); every session is cut
into consecutive slices, one per commit, as the daemon notes them. The store is a local
directory (`file://` URLs), so the figures are the reading itself, not a network. The index is
built with `search.reindex` (the clone's path: read, verify sha256, redact, parse, index).

Measured warm (one run discarded first), median and p95 of N runs:
- library: `why.why()` on two lines, `search.search()` for a rare word, a common word, a phrase;
- command: the same through `tracekeeper` as a process (interpreter start included), which is
  what a person or an agent waits for. Target: under 300 ms warm, both commands.

Run: `.venv/bin/python bench/bench_read.py` (about 3 minutes on 2 cores), `--quick` (100
commits, 10 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import index_bytes  # noqa: E402
from tracekeeper import search as search_mod  # noqa: E402
from tracekeeper import why as why_mod  # noqa: E402
from tracekeeperd import git, notes, redact  # noqa: E402
from tracekeeperd.config import RedactionSettings  # noqa: E402
from tracekeeperd.paths import Paths  # noqa: E402

REF = "refs/notes/hf-traces"
TARGET = 0.300
RARE = "zanzibarquux"  # planted once per session, in one prompt


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    common = [
        "the",
        "a",
        "to",
        "of",
        "and",
        "in",
        "is",
        "it",
        "for",
        "that",
        "this",
        "file",
        "test",
        "error",
        "function",
        "value",
        "config",
        "return",
        "line",
        "add",
        "fix",
        "update",
        "run",
        "build",
        "check",
        "use",
        "path",
        "name",
        "data",
        "type",
        "list",
        "helper",
        "module",
        "import",
        "class",
        "method",
    ]
    made = {"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 11))) for _ in range(size)}
    return common + sorted(made)


def session_lines(rng: random.Random, words: list[str], weights: list[float], size: int, index: int) -> list[bytes]:
    """Claude Code records (the shapes of tests/fixtures/claude) until about ``size`` bytes."""
    session = f"00000000-0000-4000-8000-{index:012d}"
    lines: list[bytes] = []
    written = 0
    n = 0

    def text(count: int) -> str:
        return " ".join(rng.choices(words, weights, k=count))

    def record(kind: str, message: dict[str, object]) -> bytes:
        stamp = f"2026-11-{1 + index % 28:02d}T10:{(n // 60) % 60:02d}:{n % 60:02d}.000Z"
        body = {"type": kind, "message": message, "sessionId": session, "cwd": "/w/app", "timestamp": stamp}
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    while written < size:
        n += 1
        prompt = text(rng.randint(8, 40)) + (f" {RARE}" if n == 7 else "")
        call = f"toolu_{index:04d}{n:08d}"
        batch = [
            record("user", {"role": "user", "content": prompt}),
            record(
                "assistant", {"role": "assistant", "content": [{"type": "text", "text": text(rng.randint(20, 120))}]}
            ),
            record(
                "assistant",
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": call, "name": "Bash", "input": {"command": text(6)}}],
                },
            ),
            record(
                "user",
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": call, "content": text(rng.randint(40, 400))}],
                },
            ),
        ]
        lines.extend(batch)
        written += sum(map(len, batch))
    return lines


def build(root: Path, commits: int, sessions: int, total_mb: int) -> tuple[Path, Path, int]:
    """The repository (1 commit per line of src/app.py), the store, and the bytes of sessions."""
    rng = random.Random(11)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    env = git.clean_env()
    repo = root / "app"
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    for key, value in (("user.name", "Bench"), ("user.email", "bench@example.com")):
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True, env=env)
    stream: list[str] = []
    content = ""
    for i in range(1, commits + 1):
        content += f"value_{i} = {i}\n"
        blob = content.encode()
        stream.append(
            f"commit refs/heads/main\nmark :{i}\ncommitter T <t@example.com> {1700000000 + i} +0000\n"
            + f"data 8\nchange{i % 10}\n"
            + (f"from :{i - 1}\n" if i > 1 else "")
            + f"M 100644 inline src/app.py\ndata {len(blob)}\n{content}\n"
        )
    subprocess.run(
        ["git", "-C", str(repo), "fast-import", "--quiet"], input="".join(stream).encode(), check=True, env=env
    )
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "main"], check=True, env=env)
    shas = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--reverse", "main"], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    store = root / "store"
    store.mkdir()
    per = commits // sessions
    book: dict[str, list[str]] = {}
    size = 0
    for s in range(sessions):
        lines = session_lines(rng, words, weights, total_mb * 1024 * 1024 // sessions, s)
        data = b"".join(lines)
        size += len(data)
        path = store / f"claude-session-{s}.jsonl"
        path.write_bytes(data)
        step = len(lines) // per
        for k in range(per):
            first, last = k * step + 1, (k + 1) * step if k < per - 1 else len(lines)
            prefix = sum(map(len, lines[:last]))
            link = notes.TraceLink(
                url=path.as_uri(),
                agent="claude",
                session_id=f"00000000-0000-4000-8000-{s:012d}",
                first_line=first,
                last_line=last,
                bytes=prefix,
                sha256=hashlib.sha256(data[:prefix]).hexdigest(),
            )
            book[shas[s * per + k]] = link.lines()
    notes.add(repo / ".git", REF, book)
    return repo, store, size


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm: page cache, imports, SQLite's pages
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def line(label: str, samples: list[float], target: bool, floor: float | None = None) -> str:
    median = statistics.median(samples)
    text = f"{label:44s} median {ms(median):>7s}  p95 {ms(pct(samples, 0.95)):>7s}"
    if floor is not None:
        text += f"  ({ms(median - floor)} above start-up)"
    if target:
        text += f"  (target < 300 ms warm: {'target met' if median < TARGET else 'target missed'})"
    return text


def incremental(root: Path, repo: Path, redactor: redact.Redactor) -> None:
    """What the daemon adds after each note: one commit's new lines of a growing session, indexed
    from the worker's redacted bytes (on the index thread, after the note is written)."""
    from tracekeeperd import searchindex

    book = notes.all_notes(repo / ".git", REF)
    first = sorted(
        (
            (link, sha)
            for sha, text in book.items()
            for link in notes.parse(text)
            if link.url.endswith("session-0.jsonl")
        ),
        key=lambda item: item[0].last_line,
    )
    raw = Path(first[0][0].url.removeprefix("file://")).read_bytes()
    samples: list[float] = []
    lines = 0
    with searchindex.connection(root / "incremental.sqlite3") as conn:
        assert conn is not None
        for link, sha in first:
            data = redactor.redact_bytes(raw[: link.bytes])[0]
            started = time.perf_counter()
            index_bytes(
                conn,
                data,
                searchindex.Link("repo", sha, link.first_line, link.last_line),
                url=link.url,
                agent=link.agent,
                session=link.session_id,
            )
            samples.append(time.perf_counter() - started)
            lines += link.last_line - link.first_line + 1
    print(
        f"index thread, per note: {len(samples)} commits of one {len(raw) / 1e6:.1f} MB session,"
        f" {lines / len(samples):.0f} new lines each: median {ms(statistics.median(samples))},"
        f" max {ms(max(samples))} (after the note; the commit -> note path does not wait for it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 commits, 10 MB of sessions")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    commits, sessions, total_mb = (100, 10, 10) if args.quick else (1000, 50, 100)
    with tempfile.TemporaryDirectory(prefix="tk-bench-read-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        repo, store, size = build(root, commits, sessions, total_mb)
        # The notes' file:// URLs are read only inside the configured local store (stores.locate):
        # this one, for the library calls here and the commands below.
        os.environ["TRACEKEEPER_STORE"] = store.as_uri()
        print(f"# read path: {commits} noted commits, {sessions} sessions, {size / 1e6:.0f} MB of transcript")
        print(f"built the repository and the store in {time.perf_counter() - started:.1f} s")
        home = root / "home"
        paths = Paths(home / "run", home / "state" / "tracekeeper", home / "config", home / "data")
        redactor = redact.from_settings(RedactionSettings())
        started = time.perf_counter()
        turns = search_mod.reindex(repo, paths=paths, notes_ref=REF, redactor=redactor)
        took = time.perf_counter() - started
        index_mb = sum(p.stat().st_size for p in paths.state_dir.glob("search.sqlite3*")) / 1e6
        print(
            f"search --reindex: {turns} turns in {took:.1f} s ({size / 1e6 / took:.1f} MB/s), index {index_mb:.0f} MB"
        )
        incremental(root, repo, redactor)
        middle = commits // 2
        target = f"src/app.py:{middle}-{middle + 1}"
        print("\nwarm, in-process (library):")
        why_lib = timed(
            lambda: why_mod.why(repo, "src/app.py", (middle, middle + 1), paths, REF, redactor=redactor), args.runs
        )
        print(line(f"why {target}", why_lib, False))
        queries = {"rare word": RARE, "common word": "config", "two words": "helper module"}
        for label, query in queries.items():
            found = search_mod.search(query, repo=repo, paths=paths)
            samples = timed(lambda q=query: search_mod.search(q, repo=repo, paths=paths), args.runs)  # type: ignore[misc]
            print(line(f"search {label} ({query!r}, {len(found)} hits)", samples, False))
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        (home / "run").mkdir(mode=0o700, exist_ok=True)

        def command(*argv: str) -> Callable[[], object]:
            def run() -> object:
                proc = subprocess.run(
                    [sys.executable, "-m", "tracekeeper", "-C", str(repo), *argv],
                    env=env,
                    capture_output=True,
                    check=False,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"tracekeeper {' '.join(argv)} failed: {proc.stderr.decode()[-500:]}")
                return proc

            return run

        print("\nwarm, the command as a process (interpreter start included):")
        bare = timed(command("--version"), args.runs)
        print(line("tracekeeper --version (start-up floor)", bare, False))
        floor = statistics.median(bare)
        runs: list[tuple[str, tuple[str, ...], bool]] = [
            (f"tracekeeper why {target}", ("why", target), True),
            (f"tracekeeper why {target} --json", ("why", target, "--json"), False),
            (f"tracekeeper search {RARE}", ("search", RARE), True),
            ("tracekeeper search 'helper module'", ("search", "helper module"), True),
            ("tracekeeper search config --json", ("search", "config", "--json"), True),
        ]
        for label, argv, has_target in runs:
            print(line(label, timed(command(*argv), args.runs), has_target, floor))
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
