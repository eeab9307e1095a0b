"""What the CLI prints, as gh, hf and git do: plain whole lines when piped, styling and progress
on a terminal, a closing summary line, one line per job in `status`.

Piped output is checked through a real subprocess whose stdout is a pipe (harness.Env.cli); a
terminal through a pseudo-terminal (python's `pty`), as a user at a terminal sees it.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekeeperd.notes import TraceLink, add_link
from tracekeeperd.queue import NewJob, Queue

from .harness import Env, Repo, append_lines, cli_on_terminal, make_repo, running_daemon, wait_for
from .hubstub import running_hub

SHA_DONE = "d" * 40
SHA_FAILED = "f" * 40
SESSION = "019c8a70-dda7-7f33-98ea-f30553347322"
#: Longer than any terminal is wide: wrapped or folded, it could no longer be copied.
LONG_URL = "https://huggingface.co/buckets/someone/traces/resolve/" + "x" * 120 + "/codex-session.jsonl"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def on_terminal(env: Env, *args: str, columns: int = 80) -> str:
    """Run the real CLI with stdout and stderr on one pseudo-terminal; what the terminal got."""
    return cli_on_terminal(env, *args, columns=columns)[1]


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


# --- flush, push, pull: progress on a terminal, always a summary line ----------------------------


@contextlib.contextmanager
def one_job_waiting(env: Env) -> Iterator[tuple[Repo, str]]:
    """A running daemon with one job pending in its backoff: the Hub stand-in was offline at the
    first try and is back now, so a flush (which makes it due at once) uploads it."""
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write", TRACEKEEPER_RETRY_CAP="600")
        env.vars.update(TRACEKEEPER_RETRY_BASE="300")
        hub.create_bucket("alice/agent-traces")
        repo = make_repo(env).install()
        transcript = env.transcript()
        append_lines(transcript, 2)
        repo.activate(transcript)
        hub.go_offline()
        with running_daemon(env):
            sha = repo.commit("x")
            wait_for(lambda: env.status()["jobs"] and env.status()["jobs"][0]["attempts"] >= 1, what="a try")
            hub.go_online()
            yield repo, sha


def test_flush_ends_with_a_summary_line_and_shows_no_progress_when_piped(env: Env) -> None:
    with one_job_waiting(env) as (repo, sha):
        proc = env.cli("flush", "--timeout", "30")
        assert repo.note(sha)
        assert proc.stdout == "1 uploaded, 0 pending\n"
        assert proc.stderr == ""  # progress is for a terminal only
        again = env.cli("flush")
        assert again.stdout == "0 uploaded, 0 pending\n"
        assert env.cli("-q", "flush").stdout == ""


def test_flush_on_a_terminal_shows_progress_then_the_summary(env: Env) -> None:
    with one_job_waiting(env) as (repo, sha):
        out = ANSI.sub("", on_terminal(env, "flush", "--timeout", "30"))
        assert repo.note(sha)
    assert "uploading 1 job" in out, out
    assert out.rstrip().endswith("1 uploaded, 0 pending"), out


def notes_world(env: Env, monkeypatch: pytest.MonkeyPatch) -> tuple[Repo, Repo, str]:
    """Two clones of one bare remote; clone `a` has one noted commit, pushed without its note."""
    for key, value in env.vars.items():
        monkeypatch.setenv(key, value)
    remote = env.root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], env=env.vars, check=True)
    a = make_repo(env, "a")
    sha = a.commit("base")
    a.git("remote", "add", "origin", str(remote))
    a.git("push", "-q", "-u", "origin", "main")
    b = make_repo(env, "b")
    b.git("remote", "add", "origin", str(remote))
    b.git("fetch", "-q", "origin")
    link = TraceLink(
        url="file:///store/app-1234abcd/sessions/codex-s1.jsonl",
        agent="codex",
        session_id="s1",
        first_line=1,
        last_line=3,
        bytes=300,
        sha256="0" * 64,
    )
    assert add_link(a.git_dir, "refs/notes/hf-traces", sha, link)
    return a, b, sha


def test_push_and_pull_end_with_what_travelled(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, _ = notes_world(env, monkeypatch)
    pushed = env.cli("push", "-C", str(a.path))
    assert pushed.stdout.splitlines()[-1] == "notes pushed to origin: 1 new", pushed.stdout
    assert pushed.stderr == ""
    assert env.cli("push", "-C", str(a.path)).stdout.splitlines()[-1] == "notes pushed to origin: 0 new"
    pulled = env.cli("pull", "-C", str(b.path))
    assert pulled.stdout.splitlines()[-1] == "notes pulled from origin: 1 new", pulled.stdout
    assert env.cli("pull", "-C", str(b.path)).stdout.splitlines()[-1] == "notes pulled from origin: 0 new"
    assert env.cli("-q", "push", "-C", str(a.path)).stdout == ""
    assert env.cli("-q", "pull", "-C", str(b.path)).stdout == ""
    data = json.loads(env.cli("pull", "-C", str(b.path), "--json").stdout)
    assert data[0]["received"] == 0


def test_push_on_a_terminal_shows_progress(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    a, _, _ = notes_world(env, monkeypatch)
    out = ANSI.sub("", on_terminal(env, "-C", str(a.path), "push"))
    assert "pushing notes to origin" in out, out
    assert out.rstrip().endswith("notes pushed to origin: 1 new"), out


def test_a_remote_name_that_reads_as_rich_markup_is_shown_as_text(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress line is drawn by rich, which reads `[...]` as markup: a remote named on the
    command line as `[/]x` made rich raise MarkupError before git could refuse the name."""
    a, _, _ = notes_world(env, monkeypatch)
    out = ANSI.sub("", on_terminal(env, "-C", str(a.path), "push", "[/]x"))
    assert "Traceback" not in out and "MarkupError" not in out and "closing tag" not in out, out
    assert "Error:" in out, out
