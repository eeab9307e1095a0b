"""`tracekeeper log` and `tracekeeper forget`, on real repositories, the real daemon and stores.

`log` must never download: a link whose bytes are not on this machine shows "-" prompts, and the
Hub stand-in proves no request was made. `forget` is checked against what each store holds
afterwards (the file is gone, `hub.files(bucket)` no longer lists it) and against the exact lines
of every note that linked the session.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracekeeper import trail
from tracekeeperd import notes

from .harness import UUID_A, UUID_B, Daemon, Env, Repo, make_repo, note_links, running_daemon, wait_for
from .hubstub import running_hub
from .test_rewrite import REF, tk
from .test_show import assert_nothing_reaches_the_terminal, on_terminal

FIXTURES = Path(__file__).parent / "fixtures"
CODEX = FIXTURES / "codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"
BUCKET = "alice/agent-traces"


def codex_lines(prompts: list[int], count: int) -> list[bytes]:
    """A Codex transcript of `count` lines: the fixture's session_meta, then a user prompt on
    each line number in `prompts` and agent messages elsewhere."""
    meta = CODEX.read_bytes().splitlines(keepends=True)[0]
    out = [meta]
    for n in range(2, count + 1):
        kind = "user_message" if n in prompts else "agent_message"
        body = {"type": kind, "message": f"line {n}"}
        out.append(
            json.dumps({"timestamp": "2026-11-25T09:00:00.000Z", "type": "event_msg", "payload": body}).encode() + b"\n"
        )
    return out


def link_for(url: str, session: str, lines: list[bytes], first: int, last: int) -> notes.TraceLink:
    data = b"".join(lines[:last])
    return notes.TraceLink(url, "codex", session, first, last, len(data), hashlib.sha256(data).hexdigest())


def stones(repo: Repo, sha: str) -> list[dict[str, Any]]:
    prefix = "hf-trace-forgotten: "
    return [json.loads(line[len(prefix) :]) for line in repo.note(sha).splitlines() if line.startswith(prefix)]


# --- log -------------------------------------------------------------------------------------


def test_log_lists_commits_for_paths_with_prompts_and_never_downloads(env: Env) -> None:
    repo = make_repo(env)
    env.vars["TRACEKEEPER_STORE"] = (env.root / "store").as_uri()  # the notes' file:// store is this machine's
    store = env.root / "store" / "app-1234abcd" / "sessions"
    store.mkdir(parents=True)
    lines = codex_lines(prompts=[2, 4, 6], count=8)
    local = store / f"codex-{UUID_A}.jsonl"
    local.write_bytes(b"".join(lines))
    with running_hub(env.root / "cas") as hub:
        remote_url = f"{hub.endpoint}/buckets/{BUCKET}/tree/app-1234abcd/sessions/codex-{UUID_B}.jsonl"
        c1 = repo.commit("Parse the header", file="a.py")
        c2 = repo.commit("Bump the version", file="b.py")
        c3 = repo.commit("Handle empty input", file="a.py")
        first = link_for(local.as_uri(), UUID_A, lines, 1, 4)
        second = link_for(local.as_uri(), UUID_A, lines, 5, 8)
        remote = link_for(remote_url, UUID_B, lines, 1, 3)
        notes.add_link(repo.git_dir, REF, c1, first)
        notes.add_link(repo.git_dir, REF, c3, second)
        notes.add_link(repo.git_dir, REF, c3, remote)
        hub.clear_requests()

        data = json.loads(tk(env, "log", "--json", "a.py", cwd=repo.path).stdout)
        assert hub.requests == []  # nothing was downloaded
    assert data["notes_ref"] == REF
    assert [c["commit"] for c in data["commits"]] == [c3, c1]
    newest, oldest = data["commits"]
    assert newest["subject"] == "Handle empty input" and newest["author"] == "Test" and newest["traced"] is True
    assert newest["sessions"] == [
        {
            "agent": "codex",
            "session_id": UUID_A,
            "lines": [5, 8],
            "bytes": second.bytes,
            "prompts": 1,
            "url": second.url,
            "usage": None,  # a link made without usage: unknown, never estimated
        },
        {
            "agent": "codex",
            "session_id": UUID_B,
            "lines": [1, 3],
            "bytes": remote.bytes,
            "prompts": None,
            "url": remote_url,
            "usage": None,
        },
    ]
    assert oldest["sessions"][0]["prompts"] == 2 and oldest["forgotten"] == []

    everything = json.loads(tk(env, "log", "--json", cwd=repo.path).stdout)["commits"]
    assert [(c["commit"], c["traced"]) for c in everything] == [(c3, True), (c2, False), (c1, True)]
    newest_only = json.loads(tk(env, "log", "--json", "-n", "1", cwd=repo.path).stdout)["commits"]
    assert [c["commit"] for c in newest_only] == [c3]

    text = tk(env, "log", cwd=repo.path).stdout.splitlines()
    date = everything[0]["date"][:10]
    assert text == [
        f"{c3[:12]} {date} Handle empty input  (Test)",
        f"    codex {UUID_A}  lines 5-8  1 prompt  tokens unknown",
        f"    {second.url}",
        f"    codex {UUID_B}  lines 1-3  - prompts  tokens unknown",
        f"    {remote_url}",
        f"{c2[:12]} {date} Bump the version  (Test)",
        "    no trace",
        f"{c1[:12]} {date} Parse the header  (Test)",
        f"    codex {UUID_A}  lines 1-4  2 prompts  tokens unknown",
        f"    {first.url}",
    ]


def test_log_renders_control_sequences_from_commits_and_notes_visibly(env: Env) -> None:
    """A commit message and a teammate's note are hostile input too: `log` must not let them set
    the window title, write the clipboard, clear the screen or reorder text, on a pipe or a terminal."""
    repo = make_repo(env)
    subject = "Fix \x1b]0;pwned\x07 parser \x1b[2J\u202e"
    author = "Mallory \x1b]52;c;ZXZpbA==\x07 Evil"  # git trims control characters at the ends
    repo.git("commit", "--allow-empty", "-q", "-m", subject, extra_env={"GIT_AUTHOR_NAME": author})
    linked = repo.git("rev-parse", "HEAD")
    url = "file:///store/x\x1b]8;;https://evil.example\x07.jsonl"
    notes.add_link(repo.git_dir, REF, linked, notes.TraceLink(url, "codex\x9b2J", "s\r\u202e", 1, 2, 10, "0" * 64))
    repo.git("commit", "--allow-empty", "-q", "-m", "second")
    buried = repo.git("rev-parse", "HEAD")
    stone = notes.Tombstone("file:///gone", "codex", "t\x1b[2J", "2026-11-25T09:00:00Z", "eve\x1b]0;x\x07")
    notes.add(repo.git_dir, REF, {buried: [stone.line()]})

    for out in (tk(env, "log", cwd=repo.path).stdout, on_terminal(env, "log", cwd=repo.path)):
        assert_nothing_reaches_the_terminal(out)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
        assert "Fix \\x1b]0;pwned\\x07 parser \\x1b[2J\\u202e  (Mallory \\x1b]52;c;ZXZpbA==\\x07 Evil)" in plain
        assert "    codex\\x9b2J s\\r\\u202e  lines 1-2  - prompts" in plain
        assert "    file:///store/x\\x1b]8;;https://evil.example\\x07.jsonl" in plain
        assert "forgotten codex t\\x1b[2J on 2026-11-25T09:00:00Z by eve\\x1b]0;x\\x07" in plain
    # --json carries the text itself, escaped by JSON.
    data = json.loads(tk(env, "log", "--json", cwd=repo.path).stdout)
    assert data["commits"][1]["subject"] == subject and data["commits"][1]["author"] == author


def test_log_reads_a_notes_file_url_only_inside_the_configured_store(env: Env) -> None:
    """A teammate's note may name any local file: `log` counts prompts from it only inside the
    store this machine is configured for (as `show` reads it), else "-", never reading the file
    (a FIFO or /dev/zero named there would block or fill memory)."""
    repo = make_repo(env)
    store = env.root / "store"
    env.vars["TRACEKEEPER_STORE"] = store.as_uri()
    lines = codex_lines(prompts=[2, 4], count=5)
    inside = store / "app" / f"codex-{UUID_A}.jsonl"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"".join(lines))
    outside = env.home / "private" / f"codex-{UUID_B}.jsonl"
    outside.parent.mkdir()
    outside.write_bytes(b"".join(lines))
    fifo = env.home / "private" / "pipe.jsonl"
    os.mkfifo(fifo)
    urls = [inside.as_uri(), outside.as_uri(), f"file://{store}/../h/private/codex-{UUID_B}.jsonl", fifo.as_uri()]
    for index, url in enumerate(urls):
        sha = repo.commit(f"c{index}", file=f"f{index}.py")
        notes.add_link(repo.git_dir, REF, sha, link_for(url, UUID_A, lines, 1, 5))
    commits = json.loads(tk(env, "log", "--json", cwd=repo.path).stdout)["commits"]
    assert [c["sessions"][0]["url"] for c in commits] == urls[::-1]
    assert [c["sessions"][0]["prompts"] for c in commits] == [None, None, None, 2]


def test_log_counts_prompts_from_the_daemons_copy_of_the_transcript(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript(CODEX.name)
    lines = codex_lines(prompts=[2, 3, 5], count=6)
    transcript.write_bytes(b"".join(lines))
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit_noted("agent work")
    (meta,) = note_links(repo.note(sha))
    for stored in env.local_store.rglob("*.jsonl"):
        stored.unlink()  # not from the store: from the transcript the daemon's queue names
    (entry,) = json.loads(tk(env, "log", "--json", cwd=repo.path).stdout)["commits"]
    assert entry["sessions"][0]["lines"] == meta["lines"] == [1, 6]
    assert entry["sessions"][0]["prompts"] == 3
    transcript.unlink()
    assert json.loads(tk(env, "log", "--json", cwd=repo.path).stdout)["commits"][0]["sessions"][0]["prompts"] == 3
    for snapshot in env.state.rglob("*"):
        if snapshot.is_file() and "snapshots" in snapshot.parts:
            snapshot.unlink()
    assert json.loads(tk(env, "log", "--json", cwd=repo.path).stdout)["commits"][0]["sessions"][0]["prompts"] is None


def test_log_errors_are_one_line(env: Env) -> None:
    repo = make_repo(env)
    empty = tk(env, "log", "--json", cwd=repo.path)
    assert empty.returncode == 0 and json.loads(empty.stdout)["commits"] == []
    repo.commit("x")
    bad = tk(env, "log", "--rev", "nope", cwd=repo.path)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and bad.stderr.count("\n") == 1


# --- forget ----------------------------------------------------------------------------------


def _two_sessions(env: Env, repo: Repo) -> tuple[list[str], str]:
    """Two commits of session A, then one of session B, noted by the real daemon."""
    transcript_a = env.transcript()
    transcript_a.write_bytes(b"".join(codex_lines([2], 3)))
    repo.activate(transcript_a)
    a1 = repo.commit("first of A", file="a.txt")
    wait_for(lambda: repo.note(a1), what="note a1")
    with transcript_a.open("ab") as fh:
        fh.write(b"".join(codex_lines([4], 5)[3:]))
    a2 = repo.commit("second of A", file="a.txt")
    wait_for(lambda: repo.note(a2), what="note a2")
    transcript_b = env.transcript(f"rollout-2026-11-25T10-00-00-{UUID_B}.jsonl")
    transcript_b.write_bytes(b"".join(codex_lines([2], 2)))
    repo.activate(transcript_b, session_id=UUID_B)
    b1 = repo.commit("only of B", file="b.txt")
    wait_for(lambda: repo.note(b1), what="note b1")
    return [a1, a2], b1


def test_forget_never_deletes_a_file_outside_the_configured_store(env: Env) -> None:
    """`forget` deletes what a note's URL names: a teammate's note naming `~/.ssh/id_ed25519` (or
    reaching it by `..`) must not make it unlink that file. It says so for that URL, and the
    note keeps its link (nothing was deleted, so nothing is declared dead)."""
    repo = make_repo(env)
    store = env.root / "store"
    store.mkdir()
    env.vars["TRACEKEEPER_STORE"] = store.as_uri()
    key = env.home / ".ssh" / "id_ed25519"
    key.parent.mkdir()
    key.write_text("PRIVATE KEY\n")
    lines = codex_lines(prompts=[2], count=3)
    for index, url in enumerate([key.as_uri(), f"file://{store}/../h/.ssh/id_ed25519"]):
        sha = repo.commit(f"c{index}", file=f"f{index}.py")
        notes.add_link(repo.git_dir, REF, sha, link_for(url, f"s{index}", lines, 1, 3))
        before = repo.note(sha)
        proc = tk(env, "forget", sha, "--yes", cwd=repo.path)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{url} is outside the configured local store" in proc.stdout + proc.stderr, proc
        assert key.read_text() == "PRIVATE KEY\n" and repo.note(sha) == before


def test_forget_a_session_with_the_local_store(env: Env) -> None:
    repo = make_repo(env).install()
    with running_daemon(env):
        (a1, a2), b1 = _two_sessions(env, repo)
        wait_for(lambda: env.status()["queue"]["pending"] == 0, what="queue drained")
        url_a = note_links(repo.note(a1))[0]["url"]
        file_a = Path(url_a.removeprefix("file://"))
        file_b = Path(note_links(repo.note(b1))[0]["url"].removeprefix("file://"))
        before = {sha: repo.note(sha) for sha in (a1, a2, b1)}
        assert file_a.exists() and file_b.exists()

        dry = tk(env, "forget", UUID_A, "--dry-run", cwd=repo.path)
        assert dry.returncode == 0, dry.stderr
        assert f"codex session {UUID_A}: {url_a}" in dry.stdout
        assert f"linked from 2 commit(s): {a1[:12]}, {a2[:12]}" in dry.stdout or (
            f"linked from 2 commit(s): {a2[:12]}, {a1[:12]}" in dry.stdout
        )
        declined = tk(env, "forget", UUID_A, cwd=repo.path, input="n\n")
        assert declined.returncode == 1 and declined.stderr.endswith("Error: nothing forgotten\n")
        assert file_a.exists() and {sha: repo.note(sha) for sha in (a1, a2, b1)} == before

        done = tk(env, "forget", UUID_A, cwd=repo.path, input="y\n")
        assert done.returncode == 0, done.stderr
        assert f"deleted {url_a}" in done.stdout and "tombstoned the links in 2 note(s)" in done.stdout
    assert not file_a.exists() and file_b.exists()
    for sha in (a1, a2):
        (stone,) = stones(repo, sha)
        assert stone["session"] == UUID_A and stone["url"] == url_a and stone["agent"] == "codex"
        assert stone["by"] == "test@example.com" and stone["v"] == 1
        assert stone["at"].endswith("Z") and len(stone["at"]) == len("2026-11-25T09:00:00Z")
        assert [line for line in repo.note(sha).splitlines() if line.startswith("hf-trace")] == [
            "hf-trace-forgotten: " + json.dumps(stone, sort_keys=True, separators=(",", ":"))
        ]
    assert repo.note(b1) == before[b1]

    again = tk(env, "forget", UUID_A, "--yes", cwd=repo.path)
    assert again.returncode == 0 and again.stdout.startswith(f"nothing to forget for session {UUID_A} (forgotten on ")
    assert {sha: stones(repo, sha) for sha in (a1, a2)} == {sha: [stone] for sha in (a1, a2)}
    entry = json.loads(tk(env, "log", "--json", cwd=repo.path).stdout)["commits"][-1]
    assert entry["commit"] == a1 and entry["traced"] is False
    assert entry["forgotten"] == [
        {"agent": "codex", "session_id": UUID_A, "url": url_a, "at": stone["at"], "by": "test@example.com"}
    ]


def test_forget_a_commit_with_the_hub_stand_in(env: Env) -> None:
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write")
        repo = make_repo(env).install()
        with running_daemon(env):
            (a1, a2), b1 = _two_sessions(env, repo)
            wait_for(lambda: env.status()["queue"]["pending"] == 0, what="queue drained")
        url_a = note_links(repo.note(a2))[0]["url"]
        path_a = url_a.split("/tree/", 1)[1]
        assert path_a in hub.files(BUCKET) and len(hub.files(BUCKET)) == 2
        before_b = repo.note(b1)

        result = tk(env, "forget", a2, "--yes", "--json", cwd=repo.path)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["target"] == f"commit {a2}"
        (trace,) = data["traces"]
        assert trace["url"] == url_a and trace["deleted"] is True and trace["error"] is None
        assert sorted(trace["commits"]) == sorted([a1, a2]) and sorted(data["tombstoned"]) == sorted([a1, a2])
        assert path_a not in hub.files(BUCKET) and len(hub.files(BUCKET)) == 1
        for sha in (a1, a2):
            (stone,) = stones(repo, sha)
            assert stone["url"] == url_a and stone["session"] == UUID_A
            assert notes.parse(repo.note(sha)) == []
        assert repo.note(b1) == before_b

        again = json.loads(tk(env, "forget", a1, "--yes", "--json", cwd=repo.path).stdout)
        assert again["traces"] == [] and again["already_forgotten"][0]["url"] == url_a


def queue_rows(env: Env, sql: str, *args: object) -> list[tuple[object, ...]]:
    """The daemon's queue, read-only, as any SQLite client would see it."""
    db = sqlite3.connect(f"file:{env.state / 'queue.sqlite3'}?mode=ro", uri=True)
    try:
        return list(db.execute(sql, args))
    finally:
        db.close()


def _session_a(env: Env) -> tuple[Repo, Path]:
    """A hooked repository and session A's transcript (three lines), active in it."""
    repo = make_repo(env).install()
    transcript = env.transcript()
    transcript.write_bytes(b"".join(codex_lines([2], 3)))
    repo.activate(transcript)
    return repo, transcript


def _first_of_a(env: Env, repo: Repo) -> tuple[str, str, Path]:
    """With a daemon running: a commit of session A, once linked and uploaded: (commit, url, stored copy)."""
    a1 = repo.commit("first of A")
    wait_for(lambda: repo.note(a1), what="note a1")
    wait_for(lambda: env.status()["queue"]["pending"] == 0, what="queue drained")
    url = note_links(repo.note(a1))[0]["url"]
    stored = Path(url.removeprefix("file://"))
    assert stored.exists()
    return a1, url, stored


def _marker(env: Env, repo: Repo, n: int) -> str:
    """A commit of another session: once its note is there, the commits before it were ingested."""
    other = env.transcript(f"rollout-2026-11-25T11-00-0{n}-{UUID_B}.jsonl")
    other.write_bytes(b"".join(codex_lines([2], 2 + n)))
    repo.activate(other, session_id=UUID_B)
    sha = repo.commit(f"marker {n}", file="m.txt")
    wait_for(lambda: repo.note(sha), what=f"marker note {n}")
    return sha


def test_forget_reaches_the_daemon_and_sticks_until_undone(env: Env) -> None:
    """Forgotten, a session is neither linked nor uploaded again (not re-noted, not followed) until --undo."""
    env.vars["TRACEKEEPER_FOLLOW_DEBOUNCE"] = "0.2"  # the daemon would re-upload a grown session at once
    repo, transcript = _session_a(env)
    with running_daemon(env) as daemon:
        a1, url, stored = _first_of_a(env, repo)

        done = tk(env, "forget", UUID_A, "--yes", cwd=repo.path)
        assert done.returncode == 0, done.stderr
        assert f"codex session {UUID_A} will not be linked or uploaded again" in done.stdout
        assert f"tracekeeper forget --undo {UUID_A}" in done.stdout
        assert not stored.exists()
        # Its upload and snapshot records are gone: nothing is left to follow or to skip against.
        assert queue_rows(env, "SELECT COUNT(*) FROM uploads") == [(0,)]
        assert queue_rows(env, "SELECT COUNT(*) FROM jobs WHERE snapshot IS NOT NULL") == [(0,)]
        assert not any((env.state / "snapshots").iterdir())

        a2 = repo.commit("A again, nothing new", file="a.txt")  # the active file still names A
        with transcript.open("ab") as fh:
            fh.write(b"".join(codex_lines([4], 6)[3:]))
        a3 = repo.commit("A again, grown", file="a.txt")
        _marker(env, repo, 1)
        assert repo.note(a2) == "" and repo.note(a3) == ""
        assert not stored.exists()
        assert {a2, a3}.isdisjoint(job["commit"] for job in env.status("--all")["jobs"])
        assert f"not linking codex/{UUID_A}: forgotten on " in daemon.output()

        shown = env.cli("show", a1, "-C", str(repo.path), check=False)
        assert shown.returncode == 1 and "no trace note" not in shown.stderr
        assert shown.stderr.startswith(f"Error: commit {a1[:12]}: its trace (codex session {UUID_A}) was forgotten on ")

        undone = tk(env, "forget", "--undo", UUID_A, cwd=repo.path)
        assert undone.returncode == 0, undone.stderr
        assert f"codex session {UUID_A} may be linked and uploaded again" in undone.stdout
        repo.activate(transcript)
        a4 = repo.commit("A after undo", file="a.txt")
        wait_for(lambda: repo.note(a4), what="note a4")
        (link,) = note_links(repo.note(a4))
        assert link["url"] == url and stored.read_bytes() == transcript.read_bytes()
    assert daemon.proc is not None


def test_forget_without_the_daemon_is_honoured_when_it_starts(env: Env) -> None:
    repo, _ = _session_a(env)
    with running_daemon(env):
        _, _, stored = _first_of_a(env, repo)
    done = tk(env, "forget", UUID_A, "--yes", cwd=repo.path)
    assert done.returncode == 0, done.stderr
    assert not stored.exists()
    assert queue_rows(env, "SELECT agent, session_id FROM forgotten") == [("codex", UUID_A)]
    assert queue_rows(env, "SELECT COUNT(*) FROM uploads") == [(0,)]
    a2 = repo.commit("A again while the daemon is down", file="a.txt")  # spooled
    daemon = Daemon(env).start()
    try:
        _marker(env, repo, 1)
        assert repo.note(a2) == "" and not stored.exists()
    finally:
        daemon.stop()


def test_a_job_queued_by_a_daemon_that_did_not_know_is_dropped_by_the_worker(env: Env) -> None:
    """A daemon from before `forget` (404 on POST /v1/forget) gets the record written to its queue
    behind its back and keeps queueing; the next daemon's worker fails those jobs instead of uploading."""
    from tracekeeperd.queue import NewJob, Queue

    repo, transcript = _session_a(env)
    with running_daemon(env):
        _, _, stored = _first_of_a(env, repo)
    assert tk(env, "forget", UUID_A, "--yes", cwd=repo.path).returncode == 0
    a2 = repo.commit("queued by an unaware daemon", file="a.txt")
    snapshot = env.state / "snapshots" / "unaware.jsonl"
    snapshot.write_bytes(transcript.read_bytes())
    queue = Queue(env.state / "queue.sqlite3")
    [done] = queue.jobs()
    [(repo_id,)] = queue.db.execute("SELECT id FROM repos").fetchall()
    data = transcript.read_bytes()
    queue.add(
        NewJob(
            repo_id=repo_id,
            git_dir=done.git_dir,
            work_tree=done.work_tree,
            commit_sha=a2,
            agent="codex",
            session_id=UUID_A,
            transcript=str(transcript),
            snapshot=str(snapshot),
            bytes=len(data),
            first_line=1,
            last_line=3,
            sha256=hashlib.sha256(data).hexdigest(),
            remote_path=done.remote_path,
        ),
        datetime.now(UTC).timestamp(),
    )
    queue.close()
    with running_daemon(env):
        job = wait_for(
            lambda: next((j for j in env.status()["jobs"] if j["commit"] == a2 and j["state"] == "failed"), None),
            what="the unaware job failed",
        )
    assert job["last_error"].startswith("session forgotten on ")
    assert not stored.exists() and repo.note(a2) == ""


def test_forget_refuses_while_an_upload_of_the_session_is_queued(env: Env) -> None:
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write")
        repo = make_repo(env).install()
        transcript = env.transcript()
        transcript.write_bytes(b"".join(codex_lines([2], 3)))
        repo.activate(transcript)
        with running_daemon(env):
            first = repo.commit("uploaded")
            wait_for(lambda: repo.note(first), what="note")
            hub.go_offline()
            with transcript.open("ab") as fh:
                fh.write(b"".join(codex_lines([4], 5)[3:]))
            repo.commit("queued")
            wait_for(lambda: env.status()["queue"]["pending"] == 1, what="a pending job")
            before = repo.note(first)
            refused = tk(env, "forget", UUID_A, "--yes", cwd=repo.path)
            assert refused.returncode == 1
            assert "still has 1 upload(s) of this session queued" in refused.stderr
            assert "warning: this session is still active here" in refused.stderr
            forced = tk(env, "forget", UUID_A, "--yes", "--force", cwd=repo.path)
            assert forced.returncode == 1 and "its links are kept; run forget again" in forced.stderr
            assert repo.note(first) == before  # not deleted, so not declared dead
            # ...but the daemon already knows: the queued upload is cancelled, with the reason.
            (job,) = [j for j in env.status()["jobs"] if j["commit"] != first]
            assert job["state"] == "failed" and job["last_error"].startswith("session forgotten on ")
            hub.go_online()
            again = tk(env, "forget", UUID_A, "--yes", cwd=repo.path)
            assert again.returncode == 0, again.stderr
            env.cli("retry")
            env.cli("flush", "--timeout", "20", check=False)
            assert not [p for p in hub.files(BUCKET) if UUID_A in p]  # the cancelled job never uploads


def test_forget_unknown_target_is_one_line(env: Env) -> None:
    repo = make_repo(env)
    repo.commit("x")
    missing = tk(env, "forget", "not-a-session", cwd=repo.path)
    assert missing.returncode == 1
    assert missing.stderr == f"Error: 'not-a-session' is neither a commit nor a session id linked in {REF}\n"
    plain = tk(env, "forget", "HEAD", "--yes", cwd=repo.path)
    assert plain.returncode == 0 and plain.stdout.startswith("nothing to forget for commit ")


def test_bury_replaces_a_links_lines_in_place_and_is_idempotent() -> None:
    live = notes.TraceLink("u1", "codex", "s1", 1, 2, 10, "a" * 64)
    other = notes.TraceLink("u2", "codex", "s2", 1, 2, 10, "b" * 64)
    text = "\n".join(["mine", *live.lines(), *other.lines(), "also mine"]) + "\n"
    stone = trail.Tombstone("u1", "codex", "s1", "2026-11-25T09:00:00Z", "me@example.com")
    buried = trail.bury(text, {"u1": stone})
    assert buried == "\n".join(["mine", stone.line(), *other.lines(), "also mine"]) + "\n"
    assert trail.bury(buried, {"u1": stone}) is None
    assert trail.parse_tombstones(buried) == [stone]


def test_forget_json_without_yes_is_a_usage_error(env: Env) -> None:
    repo = make_repo(env)
    sha = repo.commit("x")
    scripted = tk(env, "forget", sha, "--json", cwd=repo.path)
    assert scripted.returncode == 2 and "--json needs --yes" in scripted.stderr


def test_forget_renders_a_teammates_note_visibly(env: Env) -> None:
    """`forget` lists what it would delete from the notes (a teammate's, hostile input like
    `log`'s): agent, session id and URL must not reach the terminal as control sequences."""
    repo = make_repo(env)
    sha = repo.commit("c", file="f.py")
    url = "file:///store/x\x1b]8;;https://evil.example\x07.jsonl"
    lines = codex_lines(prompts=[2], count=3)
    link = link_for(url, "s\x1b]0;pwned\x07", lines, 1, 3)
    notes.add_link(repo.git_dir, REF, sha, dataclasses.replace(link, agent="codex\x9b2J"))
    dry = tk(env, "forget", sha, "--dry-run", cwd=repo.path)
    assert dry.returncode == 0, dry.stderr
    assert_nothing_reaches_the_terminal(dry.stdout)
    assert "codex\\x9b2J session s\\x1b]0;pwned\\x07: file:///store/x\\x1b]8;;https://evil.example\\x07.jsonl" in (
        dry.stdout
    ), dry.stdout


def test_forget_and_its_undo_say_a_teammates_ids_visibly(env: Env) -> None:
    """The lines `forget` prints after it ran (sessions held back from linking, `--undo`) and the
    "already forgotten" dates take agent, session id and time from notes: hostile text too."""
    repo = make_repo(env)
    sha = repo.commit("c", file="f.py")
    lines = codex_lines(prompts=[2], count=3)
    link = link_for("file:///store/x.jsonl", "s\x1b]0;pwned\x07", lines, 1, 3)
    notes.add_link(repo.git_dir, REF, sha, dataclasses.replace(link, agent="codex\x9b2J"))
    done = tk(env, "forget", sha, "--yes", cwd=repo.path)
    assert "session" in done.stdout + done.stderr, (done.stdout, done.stderr)
    assert_nothing_reaches_the_terminal(done.stdout + done.stderr)
    undo = tk(env, "forget", "--undo", "s\x1b]0;pwned\x07", cwd=repo.path)
    assert_nothing_reaches_the_terminal(undo.stdout + undo.stderr)
    again = tk(env, "forget", sha, "--yes", cwd=repo.path)
    assert_nothing_reaches_the_terminal(again.stdout + again.stderr)
