"""Unit tests for `tracekeeperd.ingest`: remote identity, repo keys, and line ranges per commit.

The Ingestor tests run in-process against a real repository, a real SQLite queue and real
snapshot files; only the daemon around them is absent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekeeperd import git
from tracekeeperd.ingest import Ingestor, normalize_remote, remote_path, repo_key
from tracekeeperd.protocol import JobState
from tracekeeperd.queue import Job, Queue
from tracekeeperd.snapshot import Snapshots
from tracekeeperd.spool import CommitEvent

T0 = 1_800_000_000.0


# --- normalize_remote / repo_key -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("git@github.com:a/b.git", "github.com/a/b"),
        ("git@github.com:/a/b.git", "github.com/a/b"),
        ("github.com:a/b", "github.com/a/b"),
        ("https://user:pw@GitHub.com/a/b.git/", "github.com/a/b"),
        ("https://github.com/a/b", "github.com/a/b"),
        ("ssh://git@host:22/a/b", "host/a/b"),
        ("ssh://git@HOST/a/b.git", "host/a/b"),
        ("  git@github.com:a/b.git\n", "github.com/a/b"),
        ("/srv/git/b.git", "srv/git/b"),
        ("file:///srv/git/b.git", "srv/git/b"),
    ],
)
def test_normalize_remote(url: str, expected: str) -> None:
    assert normalize_remote(url) == expected


def test_one_project_has_one_identity_whatever_the_transport() -> None:
    forms = ["git@github.com:org/app.git", "https://github.com/org/app", "ssh://git@github.com/org/app.git"]
    assert {normalize_remote(form) for form in forms} == {"github.com/org/app"}


def test_credentials_never_reach_the_identity() -> None:
    assert "pw" not in normalize_remote("https://user:pw@github.com/a/b.git")


def test_repo_key_separates_repos_that_share_a_name() -> None:
    a = repo_key(Path("/home/u/work/app"), "github.com/org/app")
    b = repo_key(Path("/home/u/play/app"), "github.com/someone-else/app")
    assert a != b
    assert a.startswith("app-") and b.startswith("app-")
    assert len(a) == len("app-") + 8
    assert repo_key(Path("/elsewhere/app"), "github.com/org/app") == a, "a clone elsewhere keeps its key"


@pytest.mark.parametrize("name", ["..", "a b", "../../etc", ""])
def test_repo_key_is_one_safe_component(name: str) -> None:
    key = repo_key(Path("/x") / name if name else Path("/"), "id")
    assert "/" not in key and not key.startswith((".", "-"))
    assert remote_path(key, "codex", "s1") == f"{key}/sessions/codex-s1.jsonl"


# --- the Ingestor, in-process ----------------------------------------------------------


@pytest.fixture
def git_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    work = tmp_path / "src" / "app"
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(work)], env=git.clean_env(), check=True)
    return work / ".git"


@pytest.fixture
def ingestor(tmp_path: Path) -> Iterator[Ingestor]:
    queue = Queue(tmp_path / "state" / "queue.sqlite3")
    yield Ingestor(queue, Snapshots(tmp_path / "state" / "snapshots"), roots=(tmp_path.resolve(),))
    queue.close()


def _lines(path: Path, start: int, end: int, tag: str = "") -> bytes:
    return b"".join(json.dumps({"type": "msg", "n": n, "tag": tag}).encode() + b"\n" for n in range(start, end + 1))


def _commit(ingestor: Ingestor, git_dir: Path, sha_char: str, transcript: Path, at: float) -> Job:
    os.utime(transcript, (at, at))
    payload = {"session_id": "s1", "agent": "codex", "transcript_path": str(transcript)}
    event = CommitEvent(
        sha=sha_char * 40,
        git_dir=git_dir,
        work_tree=git_dir.parent,
        committed_at=at,
        active=json.dumps(payload).encode(),
    )
    result = ingestor.ingest(event, now=at)
    assert not result.failed, result.failed
    [job_id] = result.job_ids
    return next(job for job in ingestor.queue.jobs() if job.id == job_id)


def test_ingest_records_what_the_commit_saw(ingestor: Ingestor, git_dir: Path, tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(_lines(transcript, 1, 3) + b'{"partial')
    job = _commit(ingestor, git_dir, "a", transcript, T0)
    assert (job.first_line, job.last_line, job.bytes) == (1, 3, len(_lines(transcript, 1, 3)))
    assert job.state is JobState.PENDING
    assert job.remote_path is not None and job.remote_path.endswith("/sessions/codex-s1.jsonl")
    assert job.remote_path.startswith("app-")
    transcript.unlink()  # what the commit saw is kept regardless
    assert Path(job.snapshot or "").read_bytes() == _lines(transcript, 1, 3)


def test_duplicate_delivery_adds_nothing(ingestor: Ingestor, git_dir: Path, tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(_lines(transcript, 1, 3))
    _commit(ingestor, git_dir, "a", transcript, T0)
    event = CommitEvent(
        "a" * 40,
        git_dir,
        git_dir.parent,
        T0,
        json.dumps({"transcript_path": str(transcript), "session_id": "s1", "agent": "codex"}).encode(),
    )
    assert ingestor.ingest(event, now=T0 + 1).job_ids == []
    assert ingestor.queue.counts()["pending"] == 1


def test_line_ranges_follow_the_session(ingestor: Ingestor, git_dir: Path, tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(_lines(transcript, 1, 20))
    a = _commit(ingestor, git_dir, "a", transcript, T0)
    transcript.write_bytes(_lines(transcript, 1, 25))
    b = _commit(ingestor, git_dir, "b", transcript, T0 + 10)
    c = _commit(ingestor, git_dir, "c", transcript, T0 + 20)  # no new lines: shares b's range
    assert [(j.first_line, j.last_line) for j in (a, b, c)] == [(1, 20), (21, 25), (21, 25)]
    assert a.snapshot == b.snapshot == c.snapshot


def test_line_ranges_restart_with_a_rewritten_transcript(ingestor: Ingestor, git_dir: Path, tmp_path: Path) -> None:
    """A rewritten transcript is a new snapshot generation: its line numbers start again at 1.

    The previous extent must come from the same generation; the old, longer generation's
    extent says nothing about where this one's new lines begin.
    """
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(_lines(transcript, 1, 20))
    _commit(ingestor, git_dir, "a", transcript, T0)
    transcript.write_bytes(_lines(transcript, 1, 25))
    _commit(ingestor, git_dir, "b", transcript, T0 + 10)
    transcript.write_bytes(_lines(transcript, 1, 5, tag="compacted"))
    c = _commit(ingestor, git_dir, "c", transcript, T0 + 20)
    transcript.write_bytes(_lines(transcript, 1, 8, tag="compacted"))
    d = _commit(ingestor, git_dir, "d", transcript, T0 + 30)
    assert c.snapshot == d.snapshot
    assert (c.first_line, c.last_line) == (1, 5)
    assert (d.first_line, d.last_line) == (6, 8)


def test_a_json_document_is_ranged_whole_even_after_its_snapshot_was_collected(
    ingestor: Ingestor, git_dir: Path, tmp_path: Path
) -> None:
    """A new version of a whole-file session is a new document: lines 1..end, never "after the last link"."""
    transcript = tmp_path / "session-2026-06-05T04-59-dcbe78d3.json"
    messages = [{"id": f"m{n}", "type": "user", "content": f"prompt {n}"} for n in range(1, 4)]
    transcript.write_bytes(json.dumps({"sessionId": "s1", "messages": messages}, indent=2).encode())
    a = _commit(ingestor, git_dir, "a", transcript, T0)
    assert (a.first_line, a.last_line) == (1, transcript.read_bytes().count(b"\n") + 1)
    # Uploaded, idle, collected: the session's next commit has no snapshot to compare with.
    ingestor.queue.complete(a.id, "file:///x", T0 + 1)
    ingestor.snapshots.forget(Path(a.snapshot or ""))
    ingestor.queue.drop_snapshot(a.snapshot or "")
    messages.append({"id": "m4", "type": "user", "content": "prompt 4"})
    transcript.write_bytes(json.dumps({"sessionId": "s1", "messages": messages}, indent=2).encode())
    b = _commit(ingestor, git_dir, "b", transcript, T0 + 10)
    assert (b.first_line, b.last_line) == (1, transcript.read_bytes().count(b"\n") + 1)
    assert json.loads(Path(b.snapshot or "").read_bytes())["messages"] == messages


def test_a_queue_from_before_raw_ids_keeps_its_sessions(tmp_path: Path, git_dir: Path) -> None:
    """Rows written when the queue held cleaned ids (schema 0002) go on: same key, range and remote file."""
    from tracekeeperd.queue import MIGRATIONS

    db_path = tmp_path / "state" / "queue.sqlite3"
    db_path.parent.mkdir(mode=0o700)
    old = sqlite3.connect(db_path)
    old.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for name, sql in MIGRATIONS[:2]:
        old.executescript(sql)
        old.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    old.commit()
    old.close()
    queue = Queue(db_path)
    ingestor = Ingestor(queue, Snapshots(tmp_path / "state" / "snapshots"), roots=(tmp_path.resolve(),))
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(_lines(transcript, 1, 4))
    uuid = "019c8a70-dda7-7f33-98ea-f30553347322"
    payload = {"session_id": uuid, "agent": "codex", "transcript_path": str(transcript)}

    def commit(sha: str, at: float) -> Job:
        event = CommitEvent(sha * 40, git_dir, git_dir.parent, at, json.dumps(payload).encode())
        [job_id] = ingestor.ingest(event, now=at).job_ids
        return next(job for job in queue.jobs() if job.id == job_id)

    a = commit("a", T0)
    # Make the row look like one from the old schema: no raw id was ever recorded.
    queue.db.execute("UPDATE jobs SET session_raw = NULL")
    transcript.write_bytes(_lines(transcript, 1, 6))
    b = commit("b", T0 + 10)
    queue.close()
    assert a.session_id == b.session_id == uuid and b.session_raw == uuid
    assert b.remote_path == a.remote_path and (a.remote_path or "").endswith(f"/sessions/codex-{uuid}.jsonl")
    assert (b.first_line, b.last_line) == (5, 6) and b.snapshot == a.snapshot


def test_missing_transcript_becomes_a_failed_job_with_the_reason(
    ingestor: Ingestor, git_dir: Path, tmp_path: Path
) -> None:
    event = CommitEvent(
        "e" * 40, git_dir, git_dir.parent, T0, json.dumps({"transcript_path": str(tmp_path / "gone.jsonl")}).encode()
    )
    result = ingestor.ingest(event, now=T0)
    assert result.job_ids == []
    [reason] = result.failed
    assert "does not exist" in reason
    [job] = ingestor.queue.jobs()
    assert job.state is JobState.FAILED and job.snapshot is None


def test_malformed_active_file_becomes_one_failed_job(ingestor: Ingestor, git_dir: Path) -> None:
    event = CommitEvent("f" * 40, git_dir, git_dir.parent, T0, b"{oops")
    result = ingestor.ingest(event, now=T0)
    [reason] = result.failed
    assert "not valid JSON" in reason and "hf-traces-active.json" in reason
    assert ingestor.ingest(event, now=T0 + 1).failed == [], "the same failure is recorded once"


def test_no_active_file_is_no_job_and_no_error(ingestor: Ingestor, git_dir: Path) -> None:
    event = CommitEvent("1" * 40, git_dir, git_dir.parent, T0, None, spool_file=git_dir / "x.commit")
    result = ingestor.ingest(event, now=T0)
    assert (result.job_ids, result.failed, result.note) == ([], [], "no active agent session")
