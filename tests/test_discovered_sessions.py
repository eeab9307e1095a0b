"""Commits that no agent hook described still get linked to the sessions that worked there."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from .harness import Env, make_repo, note_links, running_daemon, wait_for

SESSION = "55604662-cf2a-4331-851a-ec234028f8ca"


def _claude_transcript(env: Env, cwd: Path, session: str, when: float, lines: int = 3) -> Path:
    """A Claude Code transcript as Claude writes it: cwd in the records, not in the lossy dir name."""
    path = env.home / ".claude" / "projects" / ("-" + str(cwd).strip("/").replace("/", "-")) / f"{session}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")
    with path.open("a") as fh:
        for i in range(lines):
            role = "user" if i % 2 == 0 else "assistant"
            record = {
                "type": role,
                "sessionId": session,
                "cwd": str(cwd),
                "timestamp": stamp,
                "uuid": f"u{i}",
                "message": {"role": role, "content": f"step {i}"},
            }
            fh.write(json.dumps(record) + "\n")
    return path


def test_a_session_found_in_claudes_directory_is_linked_without_any_hook(env: Env) -> None:
    repo = make_repo(env).install()
    repo.commit("before the agent")  # the previous commit: the session must be active after it
    with running_daemon(env) as daemon:
        transcript = _claude_transcript(env, repo.path, SESSION, time.time() + 1)
        wait_for(
            lambda: any(r.get("sessions") for r in env.status()["daemon"]["discovery"]["roots"]),
            what="the index to see the session",
        )
        sha = repo.commit("agent work")
        note = wait_for(lambda: repo.note(sha), what="a note from discovery")
        assert "discovery" in env.status()["daemon"]
        assert "noted" in daemon.output()
    (meta,) = note_links(note)
    assert (meta["agent"], meta["session"], meta["lines"]) == ("claude", SESSION, [1, 3])
    stored = env.stored(meta["url"])
    assert stored.read_bytes() == transcript.read_bytes()


def test_a_session_idle_since_before_the_previous_commit_is_not_linked(env: Env) -> None:
    repo = make_repo(env).install()
    _claude_transcript(env, repo.path, SESSION, time.time() - 7200)  # two hours ago
    other = env.root / "elsewhere"
    other.mkdir()
    _claude_transcript(env, other, "66604662-cf2a-4331-851a-ec234028f8ca", time.time())  # another project
    repo.commit("human commit after the session went idle", file="a.txt")
    with running_daemon(env):
        wait_for(
            lambda: sum(r.get("sessions", 0) for r in env.status()["daemon"]["discovery"]["roots"]) == 2,
            what="the index to see both sessions",
        )
        sha = repo.commit("human commit now")
        wait_for(lambda: not list(env.spool.iterdir()), what="the commit to be taken")
        assert env.status()["jobs"] == []
    assert repo.note(sha) == ""
