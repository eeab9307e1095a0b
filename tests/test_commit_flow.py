"""The whole path from `git commit` to a note, with the default (local directory) store."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .harness import (
    UUID_A,
    UUID_B,
    Daemon,
    Env,
    Repo,
    append_lines,
    make_repo,
    note_links,
    running_daemon,
    session_repo,
    wait_for,
)


def test_commit_gets_a_note_pointing_at_an_exact_copy_of_the_transcript(env: Env) -> None:
    repo, transcript = session_repo(env, 5)
    with running_daemon(env):
        sha = repo.commit("first")
        note = wait_for(lambda: repo.note(sha), what="the note")
    lines = note.splitlines()
    assert lines[0].startswith("hf-trace: file://")
    (meta,) = note_links(note)
    expected_path = env.stored(meta["url"])
    assert lines[0] == f"hf-trace: {expected_path.as_uri()}"
    assert expected_path.name == f"codex-{UUID_A}.jsonl"
    assert expected_path.parent.name == "sessions"
    assert expected_path.parent.parent.name.startswith("app-")
    data = transcript.read_bytes()
    assert expected_path.read_bytes() == data
    redacted = meta.pop("redacted")
    assert redacted["counts"] == {} and len(redacted["ruleset"]) == 12
    assert meta == {
        "agent": "codex",
        "bytes": len(data),
        "lines": [1, 5],
        "session": UUID_A,
        "sha256": hashlib.sha256(data).hexdigest(),
        "url": expected_path.as_uri(),
        "v": 1,
    }


def test_commit_without_active_session_gets_no_note_and_no_error(env: Env) -> None:
    repo = make_repo(env).install()
    with running_daemon(env):
        sha = repo.commit("plain")
        wait_for(lambda: not list(env.spool.iterdir()), what="the spool to drain, leaving nothing behind")
        status = env.status()
    assert repo.note(sha) == ""
    assert status["queue"] == {"pending": 0, "uploading": 0, "done": 0, "failed": 0}
    assert status["jobs"] == []


def test_each_commit_records_its_own_slice_of_a_growing_session(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript()
    repo.activate(transcript)
    with running_daemon(env):
        append_lines(transcript, 3)
        first = repo.commit("one")
        wait_for(lambda: repo.note(first), what="first note")
        append_lines(transcript, 4, start=4)
        second = repo.commit("two")
        wait_for(lambda: repo.note(second), what="second note")
        third = repo.commit("three")  # no new transcript lines: shares the previous slice
        wait_for(lambda: repo.note(third), what="third note")
    (m1,), (m2,), (m3,) = (note_links(repo.note(s)) for s in (first, second, third))
    assert m1["lines"] == [1, 3]
    assert m2["lines"] == [4, 7]
    assert m3["lines"] == [4, 7]
    stored = env.stored(m2["url"])
    # The remote copy is the whole session; each note keeps the bytes its commit saw.
    assert stored.read_bytes() == transcript.read_bytes()
    assert hashlib.sha256(stored.read_bytes()[: m1["bytes"]]).hexdigest() == m1["sha256"]


def test_partial_last_line_is_not_part_of_the_commit(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript()
    append_lines(transcript, 2)
    with transcript.open("a") as fh:
        fh.write('{"timestamp": "2026-11-25T09:00:00Z", "type": "half')  # the agent is mid-write
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), what="the note")
    (meta,) = note_links(note)
    assert meta["lines"] == [1, 2]
    assert meta["bytes"] == transcript.read_bytes().rfind(b"\n") + 1


def test_relative_trace_file_resolved_against_cwd_and_session_id_from_file_name(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = repo.path / "logs" / f"rollout-x-{UUID_A}.jsonl"
    transcript.parent.mkdir()
    append_lines(transcript, 2)
    active = repo.activate(transcript)
    active.write_text(json.dumps({"trace_file": f"logs/{transcript.name}", "cwd": str(repo.path)}))
    env.vars["TRACEKEEPER_TRANSCRIPT_ROOTS"] = str(repo.path / "logs")  # not an agent's own directory
    with running_daemon(env):
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), what="the note")
    (meta,) = note_links(note)
    assert meta["session"] == UUID_A
    assert meta["agent"] == "agent"  # not under /.codex/


def test_notes_ref_can_be_renamed_like_the_recipe(env: Env) -> None:
    env.vars["HF_TRACE_NOTES_REF"] = "refs/notes/agent-traces"
    repo, _ = session_repo(env, 1)
    with running_daemon(env):
        sha = repo.commit("x")
        wait_for(lambda: repo.note(sha, "refs/notes/agent-traces"), what="the note on the custom ref")
    assert repo.note(sha) == ""


def test_linked_worktree_has_its_own_active_file(env: Env) -> None:
    repo = make_repo(env).install()
    repo.commit("base")
    worktree = env.root / "wt"
    repo.git("worktree", "add", "-q", str(worktree))
    from .harness import Repo

    wt = Repo(env, worktree)
    transcript = env.transcript()
    append_lines(transcript, 2)
    wt.activate(transcript)
    assert wt.git_dir != repo.git_dir
    with running_daemon(env):
        in_main = repo.commit("main side")
        in_wt = wt.commit("worktree side", file="other.txt")
        wait_for(lambda: wt.note(in_wt), what="note on the worktree commit")
        wait_for(lambda: not list(env.spool.glob("*.commit")), what="the spool to drain")
    assert repo.note(in_main) == ""  # the main worktree has no active session


def test_commit_made_while_daemon_is_down_is_noted_when_it_starts(env: Env) -> None:
    repo, transcript = session_repo(env, 3)
    sha = repo.commit("offline")
    spooled = list(env.spool.glob("*.commit"))
    assert len(spooled) == 1
    offline = env.status()
    assert offline["daemon"]["running"] is False
    assert offline["daemon"]["spool"]["waiting"] == 1
    plain = env.cli("status").stdout
    assert "not running" in plain and "1 commit(s) waiting" in plain
    # The agent keeps working before the daemon comes back: those lines are not this commit's.
    append_lines(transcript, 2, start=4, stamp="2999-01-01T00:00:00Z")
    os.utime(transcript, (os.path.getmtime(transcript) + 60,) * 2)
    with running_daemon(env):
        note = wait_for(lambda: repo.note(sha), what="the note after start")
    (meta,) = note_links(note)
    assert meta["lines"] == [1, 3]
    assert not list(env.spool.glob("*.commit"))


def test_transcript_deleted_after_commit_still_uploads_what_the_commit_saw(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript()
    append_lines(transcript, 4)
    original = transcript.read_bytes()
    repo.activate(transcript)
    # A store that cannot work (its directory would sit under a plain file) fails the job...
    (env.root / "not-a-dir").write_text("")
    env.vars["TRACEKEEPER_STORE"] = f"file://{env.root / 'not-a-dir' / 'x'}"
    with running_daemon(env):
        sha = repo.commit("x")
        failed = wait_for(lambda: [j for j in env.status()["jobs"] if j["state"] == "failed"], what="a failed job")
    assert "cannot create store directory" in failed[0]["last_error"]
    # ...and meanwhile the agent's transcript disappears (Claude Code deletes old ones).
    transcript.unlink()
    env.vars["TRACEKEEPER_STORE"] = f"file://{env.root / 'store'}"
    with running_daemon(env):
        env.cli("retry")
        note = wait_for(lambda: repo.note(sha), what="the note after retry")
    (meta,) = note_links(note)
    assert (env.root / "store" / meta["url"].split("/store/", 1)[1]).read_bytes() == original


def test_git_variables_inherited_by_the_daemon_do_not_redirect_its_git_commands(env: Env) -> None:
    """A daemon started from inside a hook inherits GIT_DIR/GIT_INDEX_FILE; it must ignore them."""
    decoy = make_repo(env, "decoy")
    decoy.commit("decoy")
    repo, _ = session_repo(env, 2)
    daemon_env = Env(env.root, {**env.vars, "GIT_DIR": str(decoy.git_dir), "GIT_INDEX_FILE": "/nonexistent"})
    daemon = Daemon(daemon_env).start()
    try:
        repo.commit_noted("x")
    finally:
        daemon.stop()
    assert decoy.git("notes", "--ref=refs/notes/hf-traces", "list", check=False) == ""


def test_malformed_active_file_fails_visibly_without_a_note(env: Env) -> None:
    repo = make_repo(env).install()
    active = repo.activate(env.transcript())
    active.write_text('{"session_id": "abc", "transcript_path": ')  # a hook died mid-write
    with running_daemon(env):
        sha = repo.commit("x")
        (job,) = wait_for(lambda: env.status()["jobs"], what="the failed job")
        retried = env.cli("retry").stdout
    assert job["state"] == "failed"
    assert job["last_error"].startswith("hf-traces-active.json is not valid JSON (")
    assert job["last_error"].endswith(f"({active})")
    assert repo.note(sha) == ""
    assert "1 job(s) cannot be retried" in retried


def _failed_commit(env: Env, repo: Repo) -> tuple[str, dict[str, Any]]:
    """Commit under the real daemon with whatever the active file names; the commit and the one job
    it queued, once the daemon has given up on it."""
    with running_daemon(env):
        sha = repo.commit("x")
        (job,) = wait_for(lambda: env.status()["jobs"], what="the failed job")
    return sha, job


def _secret(env: Env, relpath: str, text: str) -> Path:
    """A credential file in the test's home, as a user has them."""
    secret = env.home / relpath
    secret.parent.mkdir()
    secret.write_text(text)
    return secret


def test_stale_active_file_pointing_at_a_missing_transcript_fails_visibly(env: Env) -> None:
    repo = make_repo(env).install()
    missing = env.transcript()  # never written: the session is long gone
    repo.activate(missing)
    sha, job = _failed_commit(env, repo)
    assert job["state"] == "failed"
    assert job["last_error"] == f"transcript {missing} does not exist (stale hf-traces-active.json?)"
    assert job["agent"] == "codex" and job["session_id"] == UUID_A
    assert repo.note(sha) == ""


def test_active_file_naming_a_non_regular_file_is_refused(env: Env) -> None:
    repo = make_repo(env).install()
    link = env.transcript()
    link.symlink_to(_secret(env, ".ssh/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n"))
    repo.activate(link)
    _sha, job = _failed_commit(env, repo)
    assert job["last_error"] == f"transcript {link} is a symlink; refusing to follow it"
    assert not any(env.local_store.rglob("*.jsonl"))


def test_session_ids_that_clean_to_the_same_name_keep_their_own_remote_files(env: Env) -> None:
    """`team/<uuid>` and `team-<uuid>`, or two 140-character ids that differ at the end, are four sessions."""
    repo = make_repo(env).install()
    raws = [f"team/{UUID_A}", f"team-{UUID_A}", "s" * 139 + "1", "s" * 139 + "2"]
    commits: dict[str, str] = {}
    with running_daemon(env):
        for n, raw in enumerate(raws):
            transcript = env.transcript(f"rollout-2026-11-25T09-00-0{n}-{UUID_B}.jsonl")
            append_lines(transcript, n + 1, stamp=f"2026-11-25T09:00:0{n}.000Z")
            repo.activate(transcript, session_id=raw)
            commits[raw] = repo.commit(f"work of session {n}")
            wait_for(lambda sha=commits[raw]: repo.note(sha), what=f"note {n}")
        wait_for(lambda: env.status()["queue"]["pending"] == 0, what="queue drained")
    metas = {raw: note_links(repo.note(sha))[0] for raw, sha in commits.items()}
    urls = [meta["url"] for meta in metas.values()]
    assert len(set(urls)) == len(raws), urls
    assert len({meta["session"] for meta in metas.values()}) == len(raws)
    for n, (raw, meta) in enumerate(metas.items()):
        stored = Path(meta["url"].removeprefix("file://")).read_bytes()
        # Each remote file still holds its own session, not the one committed after it.
        assert stored.count(b"\n") == n + 1 and meta["lines"] == [1, n + 1], raw
        assert hashlib.sha256(stored).hexdigest() == meta["sha256"]
    # An ordinary id is its own name, as the recipe's path wants; the others are told apart.
    assert metas[f"team-{UUID_A}"]["url"].endswith(f"/sessions/codex-team-{UUID_A}.jsonl")
    assert metas[f"team-{UUID_A}"]["session"] == f"team-{UUID_A}"


def test_a_hard_link_inside_a_transcript_root_is_refused(env: Env) -> None:
    """`ln ~/.aws/credentials ~/.codex/sessions/.../rollout-x.jsonl`: under a root, regular, and not a transcript."""
    repo = make_repo(env).install()
    link = env.transcript()
    os.link(
        _secret(env, ".aws/credentials", '{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}\n'),
        link,
    )
    repo.activate(link)
    sha, job = _failed_commit(env, repo)
    assert job["state"] == "failed"
    assert job["last_error"] == (f"transcript {link} has 2 hard links; refusing to read it (a transcript has one name)")
    assert not any(env.local_store.rglob("*.jsonl"))
    assert repo.note(sha) == ""
    snapshots = env.state / "snapshots"
    assert not snapshots.exists() or not any(snapshots.iterdir())


def _agent_hook(env: Env, agent: str, payload: dict[str, object]) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "tracekeeper", "hook", agent],
        input=json.dumps(payload),
        env=env.vars,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "")


def test_two_agents_in_one_worktree_are_both_linked_until_one_session_ends(env: Env) -> None:
    repo = make_repo(env).install()
    codex = env.transcript()
    claude = env.home / ".claude" / "projects" / "-src-app" / "55604662-cf2a-4331-851a-ec234028f8ca.jsonl"
    claude.parent.mkdir(parents=True)
    append_lines(codex, 2)
    append_lines(claude, 3)
    base = {"cwd": str(repo.path), "permission_mode": "default"}
    _agent_hook(
        env,
        "codex",
        {
            **base,
            "session_id": UUID_A,
            "transcript_path": str(codex),
            "hook_event_name": "SessionStart",
            "model": "gpt-5",
        },
    )
    claude_payload = {
        **base,
        "session_id": "55604662-cf2a-4331-851a-ec234028f8ca",
        "transcript_path": str(claude),
        "hook_event_name": "UserPromptSubmit",
    }
    _agent_hook(env, "claude", claude_payload)
    with running_daemon(env):
        both = repo.commit("both agents")
        wait_for(lambda: len(note_links(repo.note(both))) == 2, what="two links")
        append_lines(claude, 1, start=4)
        _agent_hook(env, "claude", {**claude_payload, "hook_event_name": "SessionEnd", "reason": "exit"})
        after_end = repo.commit("claude's last words")
        wait_for(lambda: len(note_links(repo.note(after_end))) == 2, what="the ended session's final part")
        later = repo.commit("only codex now")
        wait_for(lambda: repo.note(later), what="third note")
        wait_for(lambda: not env.status()["jobs"], what="queue to settle")
    assert {link["agent"] for link in note_links(repo.note(both))} == {"codex", "claude"}
    claude_end = next(link for link in note_links(repo.note(after_end)) if link["agent"] == "claude")
    assert claude_end["lines"] == [4, 4]
    assert [link["agent"] for link in note_links(repo.note(later))] == ["codex"]


def test_hostile_active_file_pointing_outside_transcript_roots_sends_nothing(env: Env) -> None:
    repo = make_repo(env).install()
    secret = _secret(
        env, ".ssh/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    sneaky = env.home / ".codex" / "sessions" / ".." / ".." / ".ssh" / "id_ed25519"  # climbs out
    for target in (secret, sneaky):
        repo.activate(target)
        with running_daemon(env):
            repo.commit(f"steal {target.name}")
            failed = wait_for(lambda: [j for j in env.status()["jobs"] if j["state"] == "failed"], what="a refusal")
        assert failed[0]["last_error"].startswith(f"refusing to upload {target}: it is not under a known")
        assert not env.local_store.exists() or not any(env.local_store.rglob("*"))
        assert not any((env.state / "snapshots").glob("*"))  # not even copied locally


def test_the_remote_copy_follows_the_session_after_the_commit(env: Env) -> None:
    """The URL shows the whole session as it grows; the note keeps the commit's own range."""
    env.vars["TRACEKEEPER_FOLLOW_DEBOUNCE"] = "0.3"
    repo, transcript = session_repo(env, 3)
    with running_daemon(env) as daemon:
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), what="the note")
        (meta,) = note_links(note)
        stored = env.stored(meta["url"])
        append_lines(transcript, 4, start=4)  # the agent keeps working after the commit
        wait_for(lambda: stored.read_bytes() == transcript.read_bytes(), what="the copy to catch up")
        wait_for(lambda: "refreshed codex/" in daemon.output(), what="the refresh to be logged")
    assert repo.note(sha) == note
    assert meta["lines"] == [1, 3]
    assert hashlib.sha256(stored.read_bytes()[: meta["bytes"]]).hexdigest() == meta["sha256"]


def test_a_daemon_killed_without_cleanup_does_not_make_commits_lose_their_session(env: Env) -> None:
    """SIGKILL leaves the spool-watched marker behind; commits made meanwhile must still capture
    their active file, or a restart would link them to whatever session is active by then."""
    repo = make_repo(env).install()
    first = env.transcript()
    append_lines(first, 2)
    later = env.transcript(f"rollout-b-{UUID_B}.jsonl")
    append_lines(later, 5)
    daemon = Daemon(env).start()
    daemon.kill()
    assert (env.runtime / "spool-watched").exists()
    repo.activate(first)
    sha = repo.commit("while the daemon is dead")
    repo.activate(later, session_id=UUID_B)  # the agent moved on before the daemon came back
    with running_daemon(env):
        note = wait_for(lambda: repo.note(sha), what="the note")
    (meta,) = note_links(note)
    assert meta["session"] == UUID_A and meta["lines"] == [1, 2]


def test_uninstall_removes_the_private_ref_and_keeps_the_notes(env: Env) -> None:
    """Every notes write also moves `refs/tracekeeper/notes-written/<ref>` (tracekeeperd/notes.py):
    tracekeeper's alone, so uninstall takes it away; the notes are the user's and stay."""
    repo, _ = session_repo(env, 3)
    with running_daemon(env):
        sha = repo.commit("first")
        note = wait_for(lambda: repo.note(sha), what="the note")
    ours = repo.git("for-each-ref", "--format=%(refname)", "refs/tracekeeper/")
    assert ours == "refs/tracekeeper/notes-written/notes/hf-traces"
    notes_tip = repo.git("rev-parse", "refs/notes/hf-traces")

    env.cli("uninstall", "-C", str(repo.path))
    assert repo.git("for-each-ref", "refs/tracekeeper/") == ""
    assert repo.git("rev-parse", "refs/notes/hf-traces") == notes_tip and repo.note(sha) == note
    assert not (repo.git_dir / "hooks" / "post-commit").exists()
