"""What the CLI prints, as gh, hf and git do: plain whole lines when piped, styling and progress
on a terminal, a closing summary line, one line per job in `status`.

Piped output is checked through a real subprocess whose stdout is a pipe (harness.Env.cli); a
terminal through a pseudo-terminal (python's `pty`), as a user at a terminal sees it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from tracekeeperd.queue import NewJob, Queue

from .harness import Env, append_lines, make_repo, running_daemon, wait_for

SHA_DONE = "d" * 40
SHA_FAILED = "f" * 40
SESSION = "019c8a70-dda7-7f33-98ea-f30553347322"
#: Longer than any terminal is wide: wrapped or folded, it could no longer be copied.
LONG_URL = "https://huggingface.co/buckets/someone/traces/resolve/" + "x" * 120 + "/codex-session.jsonl"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def on_terminal(env: Env, *args: str, columns: int = 80) -> str:
    """Run the real CLI with stdout and stderr on one pseudo-terminal, as a user at a terminal
    would; what the terminal got (CRLF folded back)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekeeper", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**env.vars, "TERM": "xterm-256color", "COLUMNS": str(columns)},
        cwd=env.root,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    proc.wait(timeout=60)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def seed_queue(env: Env) -> Path:
    """A queue with one done job (its URL) and one failed job whose error quotes a long URL,
    written through the daemon's own Queue (no daemon needed: status reads it from disk)."""
    env.state.mkdir(parents=True, exist_ok=True)
    queue = Queue(env.state / "queue.sqlite3")
    repo_id, _ = queue.add_repo("/src/app/.git", "app-00000000", "/src/app")
    done = queue.add(NewJob(repo_id, "/src/app/.git", "/src/app", SHA_DONE, "codex", SESSION, "/t.jsonl"), 1000.0)
    assert done is not None
    assert queue.complete(done, LONG_URL + "?done", 1000.0)
    failed = queue.add(NewJob(repo_id, "/src/app/.git", "/src/app", SHA_FAILED, "claude", SESSION, "/t.jsonl"), 1000.0)
    assert failed is not None
    queue.fail(failed, f"the Hub answered 403 for {LONG_URL}", 1000.0)
    queue.close()
    return env.state / "queue.sqlite3"


def test_piped_status_is_one_line_per_job_with_short_ids_and_whole_urls(env: Env) -> None:
    seed_queue(env)
    proc = env.cli("status", "--all", check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out  # piped: no styling
    rows = [line for line in out.splitlines() if re.match(r"^\s*\d+\s+(done|failed|pending|uploading)\s", line)]
    assert len(rows) == 2, out
    done_row = next(row for row in rows if " done " in row)
    assert SHA_DONE[:7] in done_row and "codex" in done_row and SESSION[:8] in done_row
    assert "ago" in done_row  # relative time, not a timestamp
    assert SHA_DONE not in out and SHA_FAILED not in out  # short ids only
    # The failed job's reason quotes a URL: on one line, whole.
    assert any(f"the Hub answered 403 for {LONG_URL}" in line for line in out.splitlines()), out
    # A done job's URL is for --json (and `tracekeeper show`), not the table.
    assert LONG_URL + "?done" not in out
    data = json.loads(env.cli("status", "--all", "--json").stdout)
    assert {job["url"] for job in data["jobs"]} == {LONG_URL + "?done", None}


def test_status_on_a_terminal_is_styled_and_still_one_row_per_job(env: Env) -> None:
    seed_queue(env)
    out = on_terminal(env, "status", "--all", columns=100)
    assert ANSI.search(out), out  # coloured states
    plain = ANSI.sub("", out)
    rows = [line for line in plain.splitlines() if re.match(r"^\s*\d+\s+(done|failed)\s", line)]
    assert len(rows) == 2, plain
    assert SHA_DONE not in plain and LONG_URL + "?done" not in plain


def test_piped_show_keeps_a_long_trace_url_on_one_line(env: Env) -> None:
    repo = make_repo(env, name="a-repository-with-a-rather-long-name-for-its-url").install()
    transcript = env.transcript()
    append_lines(transcript, 3)
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit("x")
        wait_for(lambda: repo.note(sha), what="note")
    (session,) = json.loads(env.cli("show", sha, "-C", str(repo.path), "--json").stdout)["sessions"]
    url = session["url"]
    assert len(url) > 100, url  # longer than the 80 columns rich assumes without a terminal
    out = env.cli("show", sha, "-C", str(repo.path)).stdout
    assert url in out.splitlines(), out
