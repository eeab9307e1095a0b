"""`tracekeeper show`: a commit's slice of a real agent transcript, from wherever it still exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .harness import Env, append_lines, make_repo, note_links, running_daemon, wait_for
from .hubstub import running_hub

FIXTURES = Path(__file__).parent / "fixtures"
CODEX = FIXTURES / "codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"


def test_show_prints_the_commits_part_of_a_real_codex_session(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript(CODEX.name)
    lines = CODEX.read_bytes().splitlines(keepends=True)
    transcript.write_bytes(b"".join(lines[:10]))
    repo.activate(transcript)
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="note 1")
        with transcript.open("ab") as fh:
            fh.write(b"".join(lines[10:]))
        second = repo.commit("second")
        wait_for(lambda: repo.note(second), what="note 2")
    (meta,) = note_links(repo.note(second))
    assert meta["lines"] == [11, len(lines)]
    shown = env.cli("show", second, "-C", str(repo.path), "--json")
    data = json.loads(shown.stdout)
    (session,) = data["sessions"]
    assert session["verified"] is True and session["source"] == "transcript"
    assert session["lines"] == [11, len(lines)]
    assert all(11 <= turn["line"] <= len(lines) for turn in session["turns"])
    assert {turn["kind"] for turn in session["turns"]} >= {"assistant", "tool_call"}
    raw = env.cli("show", second, "-C", str(repo.path), "--raw").stdout.encode()
    assert raw == b"".join(lines[10:])
    full = json.loads(env.cli("show", second, "-C", str(repo.path), "--json", "--full").stdout)
    assert len(full["sessions"][0]["turns"]) > len(session["turns"])
    text = env.cli("show", first, "-C", str(repo.path)).stdout
    assert "codex session 019c8a70-dda7-7f33-98ea-f30553347322 · lines 1-10" in text
    assert "verified" in text


def test_show_downloads_from_the_bucket_when_the_transcript_is_gone(env: Env) -> None:
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write")
        repo = make_repo(env).install()
        transcript = env.transcript(CODEX.name)
        shutil.copy(CODEX, transcript)
        repo.activate(transcript)
        with running_daemon(env):
            sha = repo.commit("x")
            wait_for(lambda: repo.note(sha), what="note")
        transcript.unlink()
        shutil.rmtree(env.state)  # a teammate's machine: no queue, no snapshots
        data = json.loads(env.cli("show", sha, "-C", str(repo.path), "--json").stdout)
    (session,) = data["sessions"]
    assert session["source"] == "store" and session["verified"] is True
    assert session["turns"]


def test_show_errors_are_one_line(env: Env) -> None:
    repo = make_repo(env)
    sha = repo.commit("plain")
    no_note = env.cli("show", sha, "-C", str(repo.path), check=False)
    assert no_note.returncode == 1
    assert (
        no_note.stderr
        == f"Error: commit {sha[:12]} has no trace note (was an agent session active when it was made?)\n"
    )
    bad = env.cli("show", "nope", "-C", str(repo.path), check=False)
    assert bad.stderr == f"Error: 'nope' is not a commit in {repo.path}\n"
    outside = env.cli("show", "-C", str(env.root), check=False)
    assert outside.returncode == 1 and outside.stderr.startswith("Error: ") and "Traceback" not in outside.stderr


def test_show_flags_a_transcript_that_no_longer_matches(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript()
    append_lines(transcript, 3)
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit("x")
        wait_for(lambda: repo.note(sha), what="note")
    transcript.write_text('{"rewritten": true}\n')  # the local copy changed; the store has the truth
    data = json.loads(env.cli("show", sha, "-C", str(repo.path), "--json").stdout)
    assert data["sessions"][0]["source"] == "snapshot"  # the daemon's copy of what the commit saw
    assert data["sessions"][0]["verified"] is True


def test_show_reads_gemini_legacy_json_sessions(env: Env) -> None:
    repo = make_repo(env).install()
    legacy = FIXTURES / "gemini" / "agent-history_real-session-01.json"
    transcript = env.home / ".gemini" / "tmp" / "abc" / "chats" / "session-2026-06-05T04-59-dcbe78d3.json"
    transcript.parent.mkdir(parents=True)
    shutil.copy(legacy, transcript)
    repo.activate(transcript, session_id="dcbe78d3-ea75-4786-929e-d6cff0fc00ed", agent="gemini")
    with running_daemon(env):
        sha = repo.commit("x")
        wait_for(lambda: repo.note(sha), what="note")
    data = json.loads(env.cli("show", sha, "-C", str(repo.path), "--json").stdout)
    (session,) = data["sessions"]
    assert session["agent"] == "gemini"
    assert any(turn["kind"] == "user" for turn in session["turns"])


def test_show_reads_a_gemini_legacy_session_written_without_a_final_newline(env: Env) -> None:
    """gemini-cli < v0.39 writes `JSON.stringify(conversation, null, 2)`: no final newline (fixtures/SOURCES.md)."""
    repo = make_repo(env).install()
    legacy = FIXTURES / "gemini" / "agent-history_real-session-01.no-final-newline.json"
    doc = legacy.read_bytes()
    transcript = env.home / ".gemini" / "tmp" / "abc" / "chats" / "session-2026-06-05T04-59-dcbe78d3.json"
    transcript.parent.mkdir(parents=True)
    transcript.write_bytes(doc)
    repo.activate(transcript, session_id="dcbe78d3-ea75-4786-929e-d6cff0fc00ed", agent="gemini")
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="note 1")
        data = json.loads(env.cli("show", first, "-C", str(repo.path), "--json").stdout)
        (session,) = data["sessions"]
        assert session["verified"] is True
        assert [t["kind"] for t in session["turns"]][:2] == ["user", "assistant"]
        record = json.loads(doc)
        record["messages"].append(
            {"id": "later-1", "type": "user", "content": "Now add tests.", "timestamp": record["lastUpdated"]}
        )
        rewritten = json.dumps(record, indent=2).encode()  # rewritten whole, again without a final newline
        transcript.write_bytes(rewritten)
        second = repo.commit("second")
        wait_for(lambda: repo.note(second), what="note 2")
    (meta1,) = note_links(repo.note(first))
    (meta2,) = note_links(repo.note(second))
    # One document, ranged as one: each commit's range is the whole document it saw.
    assert meta1["lines"] == [1, doc.count(b"\n") + 1] and meta1["bytes"] == len(doc) + 1
    assert meta2["lines"] == [1, rewritten.count(b"\n") + 1]
    uploaded = Path(meta2["url"].removeprefix("file://")).read_bytes()
    assert json.loads(uploaded) == record  # the stored object is the whole, valid document
    text = env.cli("show", second, "-C", str(repo.path)).stdout
    assert "verified" in text and "differs" not in text
    assert "no readable turns" not in text and "Now add tests." in text
