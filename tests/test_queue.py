"""Unit tests for `tracekeeperd.queue`: every state transition against a real SQLite file.

Time is always passed in (`now`), so backoff and leases are tested without sleeping.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekeeperd.protocol import JobState
from tracekeeperd.queue import MIGRATIONS, NewJob, NotForgotten, Queue

T0 = 1_800_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "queue.sqlite3"


@pytest.fixture
def queue(db_path: Path) -> Iterator[Queue]:
    q = Queue(db_path)
    yield q
    q.close()


def _repo(q: Queue, name: str = "app") -> int:
    repo_id, _ = q.add_repo(f"/src/{name}/.git", f"{name}-00000000", f"/src/{name}")
    return repo_id


def _job(
    repo_id: int, sha: str = "a" * 40, session: str = "s1", *, snapshot: str | None = "/snap/s1", **kw: object
) -> NewJob:
    fields: dict[str, object] = {
        "repo_id": repo_id,
        "git_dir": "/src/app/.git",
        "work_tree": "/src/app",
        "commit_sha": sha,
        "agent": "codex",
        "session_id": session,
        "transcript": "/t/s1.jsonl",
        "snapshot": snapshot,
        "bytes": 100,
        "first_line": 1,
        "last_line": 10,
        "sha256": "ab" * 32,
        "remote_path": f"app-00000000/sessions/codex-{session}.jsonl",
    }
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]


# --- schema ----------------------------------------------------------------------------


def test_migrations_are_idempotent_on_reopen(db_path: Path) -> None:
    q = Queue(db_path)
    repo_id = _repo(q)
    assert q.add(_job(repo_id), T0) is not None
    q.close()
    for _ in range(2):
        q = Queue(db_path)
        names = [row[0] for row in q.db.execute("SELECT name FROM migrations")]
        assert names == [name for name, _ in MIGRATIONS]
        assert q.counts()["pending"] == 1, "reopening keeps the data"
        q.close()
    assert (db_path.parent.stat().st_mode & 0o777) == 0o700


def test_wal_and_full_sync_are_on(queue: Queue) -> None:
    assert queue.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert queue.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert queue.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


# --- repositories ----------------------------------------------------------------------


def test_add_repo_is_stable_and_collisions_get_a_suffix(queue: Queue) -> None:
    first = queue.add_repo("/a/app/.git", "app-1234", "/a/app")
    assert queue.add_repo("/a/app/.git", "ignored-now", "/a/app") == first, "a repo keeps its key for life"
    second = queue.add_repo("/b/app/.git", "app-1234", "/b/app")
    third = queue.add_repo("/c/app/.git", "app-1234", "/c/app")
    assert [first[1], second[1], third[1]] == ["app-1234", "app-1234-2", "app-1234-3"]
    assert len({first[0], second[0], third[0]}) == 3
    assert queue.repo("/b/app/.git") == second
    assert queue.repo("/nowhere/.git") is None


# --- the happy path --------------------------------------------------------------------


def test_add_claim_complete(queue: Queue) -> None:
    repo_id = _repo(queue)
    job_id = queue.add(_job(repo_id), T0)
    assert job_id is not None
    assert queue.has_job(repo_id, "a" * 40, "codex", "s1")
    assert queue.next_due() == T0
    [claimed] = queue.claim_due(T0, limit=10, lease=60)
    assert claimed.id == job_id
    assert claimed.state is JobState.UPLOADING
    assert claimed.repo_key == "app-00000000"
    assert claimed.repo_display == "/src/app"
    assert queue.claim_due(T0 + 1, limit=10, lease=60) == [], "a claimed job is not handed out twice"
    assert queue.counts() == {"pending": 0, "uploading": 1, "done": 0, "failed": 0}
    queue.complete(job_id, "file:///store/x.jsonl", T0 + 2)
    [done] = queue.jobs()
    assert (done.state, done.url, done.attempts, done.next_attempt_at, done.last_error) == (
        JobState.DONE,
        "file:///store/x.jsonl",
        1,
        None,
        None,
    )
    assert queue.counts()["done"] == 1
    assert queue.next_due() is None
    assert queue.oldest_pending() is None


def test_duplicates_are_ignored(queue: Queue) -> None:
    repo_id = _repo(queue)
    assert queue.add(_job(repo_id), T0) is not None
    assert queue.add(_job(repo_id, bytes=999), T0 + 5) is None
    assert queue.add(_job(repo_id), T0, error="a failure for the same key") is None
    [only] = queue.jobs()
    assert only.bytes == 100, "the first insert wins"
    assert queue.add(_job(repo_id, session="s2"), T0) is not None, "another session of the same commit"


def test_a_job_added_with_an_error_is_failed_and_never_due(queue: Queue) -> None:
    repo_id = _repo(queue)
    queue.add(_job(repo_id, snapshot=None), T0, error="transcript missing")
    [job] = queue.jobs()
    assert (job.state, job.last_error, job.next_attempt_at) == (JobState.FAILED, "transcript missing", None)
    assert queue.claim_due(T0 + 10**6, 10, 60) == []


# --- timing ----------------------------------------------------------------------------


def test_claim_due_respects_now_limit_and_order(queue: Queue) -> None:
    repo_id = _repo(queue)
    late = queue.add(_job(repo_id, "c" * 40), T0 + 20)
    early = queue.add(_job(repo_id, "b" * 40), T0 + 10)
    also_early = queue.add(_job(repo_id, "d" * 40), T0 + 10)
    assert queue.claim_due(T0 + 9.999, 10, 60) == []
    assert [j.id for j in queue.claim_due(T0 + 30, 2, 60)] == sorted([early, also_early])  # type: ignore[type-var]
    assert [j.id for j in queue.claim_due(T0 + 30, 2, 60)] == [late]


def test_defer_persists_across_reopen(db_path: Path) -> None:
    q = Queue(db_path)
    repo_id = _repo(q)
    job_id = q.add(_job(repo_id), T0)
    assert job_id is not None
    q.claim_due(T0, 1, 60)
    q.defer(job_id, "the Hub answered 503", T0 + 300, T0)
    q.close()

    q = Queue(db_path)
    [job] = q.jobs()
    assert (job.state, job.attempts, job.next_attempt_at, job.last_error) == (
        JobState.PENDING,
        1,
        T0 + 300,
        "the Hub answered 503",
    )
    assert q.claim_due(T0 + 299, 10, 60) == [], "the backoff survived the restart"
    [again] = q.claim_due(T0 + 300, 10, 60)
    q.defer(again.id, "still 503", T0 + 900, T0 + 300)
    assert q.jobs()[0].attempts == 2
    q.close()


def test_recover_hands_back_in_flight_jobs(db_path: Path) -> None:
    q = Queue(db_path)
    repo_id = _repo(q)
    q.add(_job(repo_id), T0)
    q.add(_job(repo_id, "b" * 40), T0)
    assert len(q.claim_due(T0, 10, 60)) == 2
    q.close()  # the daemon died mid-upload

    q = Queue(db_path)
    assert q.counts()["uploading"] == 2
    assert q.recover(T0 + 1000) == 2
    assert q.recover(T0 + 1000) == 0
    reclaimed = q.claim_due(T0 + 1000, 10, 60)
    assert len(reclaimed) == 2
    assert all(job.attempts == 0 for job in reclaimed), "a crash is not the job's failed attempt"
    q.close()


def test_defer_if_uploading_hands_back_only_unfinished_jobs(queue: Queue) -> None:
    """After a crashed batch: jobs that already reached their outcome keep it."""
    repo_id = _repo(queue)
    stranded = queue.add(_job(repo_id, "a" * 40), T0)
    finished = queue.add(_job(repo_id, "b" * 40), T0)
    assert stranded is not None and finished is not None
    queue.claim_due(T0, 10, 60)
    queue.complete(finished, "u", T0 + 1)
    for job_id in (stranded, finished):
        queue.defer_if_uploading(job_id, "internal error: KeyError('x')", T0 + 61)
    by_id = {job.id: job for job in queue.jobs()}
    assert (by_id[stranded].state, by_id[stranded].attempts, by_id[stranded].last_error) == (
        JobState.PENDING,
        1,
        "internal error: KeyError('x')",
    )
    assert by_id[stranded].next_attempt_at == T0 + 61
    assert (by_id[finished].state, by_id[finished].url, by_id[finished].last_error) == (JobState.DONE, "u", None)
    assert queue.claim_due(T0 + 60, 10, 60) == []
    assert [j.id for j in queue.claim_due(T0 + 61, 10, 60)] == [stranded]


def test_flush_makes_backed_off_jobs_due(queue: Queue) -> None:
    repo_id = _repo(queue)
    a = queue.add(_job(repo_id, "a" * 40), T0)
    b = queue.add(_job(repo_id, "b" * 40), T0)
    assert a is not None and b is not None
    queue.claim_due(T0, 10, 60)
    queue.defer(a, "offline", T0 + 3600, T0)
    queue.defer(b, "offline", T0 + 60, T0)
    assert queue.claim_due(T0 + 1, 10, 60) == []
    assert queue.flush(T0 + 1) == 2
    assert queue.flush(T0 + 1) == 0
    assert {j.id for j in queue.claim_due(T0 + 1, 10, 60)} == {a, b}


# --- failure and retry -----------------------------------------------------------------


def test_fail_then_retry_failed(queue: Queue) -> None:
    repo_id = _repo(queue)
    retriable = queue.add(_job(repo_id, "a" * 40), T0)
    assert retriable is not None
    queue.claim_due(T0, 10, 60)
    queue.fail(retriable, "the Hub refused the token (401)", T0 + 1)
    queue.add(_job(repo_id, "b" * 40, snapshot=None), T0, error="transcript missing")
    assert queue.counts()["failed"] == 2
    [failed] = queue.jobs(states=(JobState.FAILED,), limit=1)
    assert failed.last_error == "transcript missing"  # newest first

    assert queue.retry_failed(T0 + 100) == (1, 1), "(re-queued, left failed because it has no snapshot)"
    assert queue.counts() == {"pending": 1, "uploading": 0, "done": 0, "failed": 1}
    [job] = queue.claim_due(T0 + 100, 10, 60)
    assert job.id == retriable
    assert queue.retry_failed(T0 + 200) == (0, 1)


def test_counts_jobs_and_oldest_pending(queue: Queue) -> None:
    repo_id = _repo(queue)
    first = queue.add(_job(repo_id, "a" * 40), T0 + 5)
    second = queue.add(_job(repo_id, "b" * 40), T0 + 1)
    third = queue.add(_job(repo_id, "c" * 40), T0 + 9)
    assert first is not None and second is not None and third is not None
    assert queue.counts() == {"pending": 3, "uploading": 0, "done": 0, "failed": 0}
    oldest = queue.oldest_pending()
    assert oldest is not None and oldest.id == second
    queue.claim_due(T0 + 1, 1, 60)
    oldest = queue.oldest_pending()
    assert oldest is not None and oldest.id == second, "an uploading job is still outstanding"
    queue.complete(second, "u", T0 + 2)
    oldest = queue.oldest_pending()
    assert oldest is not None and oldest.id == first
    assert [j.id for j in queue.jobs(limit=2)] == [third, second]
    assert [j.id for j in queue.jobs(states=(JobState.DONE,))] == [second]
    view = queue.jobs(states=(JobState.DONE,))[0].view()
    assert view["state"] == "done" and view["lines"] == [1, 10] and view["repo"] == "/src/app"


# --- uploads and snapshot collection ---------------------------------------------------


def test_record_upload_upserts(queue: Queue) -> None:
    repo_id = _repo(queue)
    job_id = queue.add(_job(repo_id), T0)
    assert job_id is not None
    [job] = queue.claim_due(T0, 1, 60)
    assert queue.uploaded("file:///s", "p") is None
    queue.record_upload("file:///s", "p", job, T0)
    queue.record_upload("file:///s", "p", job, T0 + 1)
    held = queue.uploaded("file:///s", "p")
    assert held is not None and (held.bytes, held.job_id, held.snapshot) == (100, job_id, "/snap/s1")
    assert queue.uploaded("hf://buckets/x/y", "p") is None, "uploads are per store"


def test_collectable_snapshots_keeps_a_live_sessions_newest(queue: Queue) -> None:
    repo_id = _repo(queue)
    old_gen = queue.add(_job(repo_id, "a" * 40, snapshot="/snap/gen1"), T0)
    new_gen = queue.add(_job(repo_id, "b" * 40, snapshot="/snap/gen2"), T0)
    unfinished = queue.add(_job(repo_id, "c" * 40, session="s2", snapshot="/snap/other"), T0)
    assert old_gen is not None and new_gen is not None and unfinished is not None
    queue.claim_due(T0, 10, 60)
    queue.complete(old_gen, "u", T0)
    queue.complete(new_gen, "u", T0)
    idle = 3600.0
    assert queue.collectable_snapshots(T0 + 10, idle) == ["/snap/gen1"]
    assert set(queue.collectable_snapshots(T0 + idle + 10, idle)) == {"/snap/gen1", "/snap/gen2"}
    queue.drop_snapshot("/snap/gen1")
    assert queue.referenced_snapshots() == {"/snap/gen2", "/snap/other"}
    # The next commit of the session appends to the newest generation, not a collected one.
    latest = queue.latest_snapshot(repo_id, "codex", "s1")
    assert latest is not None and latest[0] == "/snap/gen2"


def test_drop_snapshot_never_touches_unfinished_jobs(queue: Queue) -> None:
    repo_id = _repo(queue)
    queue.add(_job(repo_id, snapshot="/snap/x"), T0)
    queue.drop_snapshot("/snap/x")
    assert queue.referenced_snapshots() == {"/snap/x"}


def test_session_extent_queries(queue: Queue) -> None:
    repo_id = _repo(queue)
    queue.add(_job(repo_id, "a" * 40, first_line=1, last_line=10, bytes=100, snapshot="/snap/g"), T0)
    queue.add(_job(repo_id, "b" * 40, first_line=11, last_line=20, bytes=200, snapshot="/snap/g"), T0)
    queue.add(_job(repo_id, "c" * 40, first_line=11, last_line=20, bytes=200, snapshot="/snap/g"), T0)
    assert queue.previous_extent(repo_id, "codex", "s1") == (20, 200)
    assert queue.first_line_ending_at(repo_id, "codex", "s1", 20) == 11
    assert queue.first_line_ending_at(repo_id, "codex", "s1", 15) is None
    assert queue.latest_snapshot(repo_id, "codex", "s1") == ("/snap/g", 200, 20, "ab" * 32)
    assert queue.previous_extent(repo_id, "codex", "nope") is None


# --- a second, read-only reader --------------------------------------------------------


def test_readonly_reader_alongside_a_writer(db_path: Path) -> None:
    writer = Queue(db_path)
    repo_id = _repo(writer)
    writer.add(_job(repo_id), T0)
    reader = Queue(db_path, readonly=True)
    try:
        assert reader.counts()["pending"] == 1
        writer.add(_job(repo_id, "b" * 40), T0)
        assert reader.counts()["pending"] == 2, "the reader sees committed writes"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.execute("DELETE FROM jobs")
    finally:
        reader.close()
        writer.close()


def test_readonly_reader_without_a_writer(db_path: Path) -> None:
    """`tracekeeper status` with the daemon down: the WAL side files may be gone."""
    writer = Queue(db_path)
    writer.add(_job(_repo(writer)), T0)
    writer.close()
    reader = Queue(db_path, readonly=True)
    try:
        assert reader.counts()["pending"] == 1
    finally:
        reader.close()


def test_readonly_open_of_a_missing_database_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        Queue(tmp_path / "absent.sqlite3", readonly=True).counts()
    assert not (tmp_path / "absent.sqlite3").exists(), "a reader never creates the database"


def test_session_extent_queries_per_generation(queue: Queue) -> None:
    """A rewritten transcript's new generation must not inherit the old generation's line numbers."""
    repo_id = _repo(queue)
    queue.add(_job(repo_id, "a" * 40, first_line=5, last_line=8, bytes=800, snapshot="/snap/old"), T0)
    queue.add(_job(repo_id, "b" * 40, first_line=1, last_line=3, bytes=30, snapshot="/snap/new"), T0)
    queue.add(_job(repo_id, "c" * 40, first_line=4, last_line=8, bytes=80, snapshot="/snap/new"), T0)
    assert queue.previous_extent(repo_id, "codex", "s1") == (8, 800)
    assert queue.previous_extent(repo_id, "codex", "s1", snapshot="/snap/new") == (8, 80)
    assert queue.first_line_ending_at(repo_id, "codex", "s1", 8, snapshot="/snap/new") == 4
    assert queue.first_line_ending_at(repo_id, "codex", "s1", 8, snapshot="/snap/old") == 5
    assert queue.previous_extent(repo_id, "codex", "s1", snapshot="/snap/none") is None


def test_an_expired_lease_makes_a_stranded_job_due_again(queue: Queue) -> None:
    """A batch that crashed with an unexpected exception must not strand its jobs until a restart."""
    repo_id = _repo(queue)
    job_id = queue.add(_job(repo_id), T0)
    assert [j.id for j in queue.claim_due(T0, 10, lease=240)] == [job_id]
    assert queue.claim_due(T0 + 240, 10, lease=240) == [], "still leased"
    [again] = queue.claim_due(T0 + 241, 10, lease=240)
    assert again.id == job_id and again.state is JobState.UPLOADING
    assert again.attempts == 0


# --- regressions found in review -----------------------------------------------------------


def test_complete_refuses_a_job_that_a_rewrite_moved_to_another_commit(queue: Queue) -> None:
    repo = _repo(queue)
    job_id = queue.add(_job(repo, "a" * 40), T0)
    assert job_id is not None
    queue.claim_due(T0, 10, 60)
    queue.retarget(repo, "a" * 40, "b" * 40, T0)  # while the worker was writing the note on "a"
    assert queue.complete(job_id, "file:///x", T0, None, "a" * 40) is False
    assert queue.commit_of(job_id) == "b" * 40
    assert queue.complete(job_id, "file:///x", T0, None, "b" * 40) is True


def test_latest_snapshot_is_the_furthest_extent_of_the_newest_snapshot(queue: Queue) -> None:
    """Copies made for a cherry-pick are newer rows with older, shorter extents."""
    repo = _repo(queue)
    queue.add(_job(repo, "a" * 40, bytes=100, last_line=10), T0)
    queue.add(_job(repo, "b" * 40, bytes=300, last_line=30), T0 + 1)
    queue.copy_jobs(repo, "a" * 40, "c" * 40, T0 + 2)  # a pick of the older commit
    latest = queue.latest_snapshot(repo, "codex", "s1")
    assert latest is not None and latest[1:3] == (300, 30)


# --- forgotten sessions ----------------------------------------------------------------


def test_forget_clears_what_would_bring_a_session_back(queue: Queue) -> None:
    repo_id = _repo(queue)
    done = queue.add(_job(repo_id, "a" * 40, snapshot="/snap/gen1", session_raw="s1"), T0)
    queued = queue.add(_job(repo_id, "b" * 40, snapshot="/snap/gen1"), T0)
    other = queue.add(_job(repo_id, "c" * 40, session="s2", snapshot="/snap/other"), T0)
    assert done is not None and queued is not None and other is not None
    [first, *_] = queue.claim_due(T0, 1, 60)
    queue.complete(first.id, "file:///s/p", T0)
    queue.record_upload("file:///s", first.remote_path or "", first, T0)
    others = [job for job in queue.jobs() if job.id == other]
    queue.record_upload("file:///s", others[0].remote_path or "", others[0], T0)

    since, snapshots, cancelled = queue.forget("codex", "s1", T0 + 5)
    assert (since, snapshots, cancelled) == (T0 + 5, ["/snap/gen1"], 1)
    assert queue.uploaded("file:///s", first.remote_path or "") is None
    assert queue.uploaded("file:///s", others[0].remote_path or "") is not None, "other sessions keep theirs"
    jobs = {job.id: job for job in queue.jobs()}
    assert jobs[done].state is JobState.DONE and jobs[done].snapshot is None
    assert jobs[queued].state is JobState.FAILED and jobs[queued].snapshot is None
    assert (jobs[queued].last_error or "").startswith("session forgotten on 2027-01-15T08:00:05Z; not linked")
    assert jobs[other].snapshot == "/snap/other" and jobs[other].state is JobState.PENDING
    assert queue.followed(T0 - 1) == [] and queue.latest_snapshot(repo_id, "codex", "s1") is None
    assert queue.retry_failed(T0 + 6) == (0, 1), "a cancelled upload is never retried"
    assert queue.unfinished("codex", "s1") == 0
    assert queue.forgotten_at("codex", "s1") == T0 + 5 and queue.forgotten_at("claude", "s1") is None
    # Forgetting again is harmless and keeps the first date.
    assert queue.forget("codex", "s1", T0 + 60) == (T0 + 5, [], 0)
    rows = queue.db.execute("SELECT agent, session_id, session_raw, forgotten_at FROM forgotten").fetchall()
    assert rows == [("codex", "s1", "s1", T0 + 5)]


def test_unforget_by_id_or_unambiguous_prefix(queue: Queue) -> None:
    queue.forget("codex", "019c8a70-aaaa", T0)
    queue.forget("claude", "019c8a70-aaaa", T0)
    queue.forget("codex", "019c8a70-bbbb", T0)
    with pytest.raises(NotForgotten, match="is the start of 2 forgotten session ids"):
        queue.unforget("019c8a70")
    with pytest.raises(NotForgotten, match="'nope' is not a forgotten session on this machine"):
        queue.unforget("nope")
    with pytest.raises(NotForgotten, match="not a forgotten session"):
        queue.unforget("019c8")  # too short to be a prefix
    assert sorted(queue.unforget("019c8a70-a")) == [("claude", "019c8a70-aaaa"), ("codex", "019c8a70-aaaa")]
    assert queue.unforget("019c8a70-bbbb") == [("codex", "019c8a70-bbbb")]
    assert queue.db.execute("SELECT COUNT(*) FROM forgotten").fetchone() == (0,)
