"""The queue's per-commit and periodic reads cost the same for any history (issue #10).

Proved by behaviour, not by timing: SQLite's own counters. `EXPLAIN QUERY PLAN` shows whether
a statement scans a whole table or sorts what it found; the progress handler counts virtual
machine steps, which grow with every row a statement visits. A read whose step count is the
same for a session with 20 earlier jobs and one with 1,000 is independent of history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tracekeeperd.queue import MIGRATIONS, NewJob, Queue

T0 = 1_800_000_000.0


def _open(path: Path) -> Queue:
    q = Queue(path)
    q.db.execute("PRAGMA synchronous=OFF")  # thousands of rows per test: durability is not tested here
    return q


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    q = _open(tmp_path / "queue.sqlite3")
    yield q
    q.close()


def _job(repo_id: int, n: int, session: str = "s1", *, snapshot: str | None = None, **kw: Any) -> NewJob:
    fields: dict[str, Any] = {
        "repo_id": repo_id,
        "git_dir": "/src/app/.git",
        "work_tree": "/src/app",
        "commit_sha": f"{n:040x}",
        "agent": "codex",
        "session_id": session,
        "transcript": f"/t/{session}.jsonl",
        "snapshot": snapshot if snapshot is not None else f"/snap/{session}",
        "bytes": 100 * (n + 1),
        "first_line": 10 * n + 1,
        "last_line": 10 * (n + 1),
        "sha256": f"{n:064x}",
        "remote_path": f"app-00000000/sessions/codex-{session}.jsonl",
        "session_raw": session,
    }
    fields.update(kw)
    return NewJob(**fields)


def _history(q: Queue, jobs: int, *, session: str = "s1", done: bool = True, at: float = T0) -> int:
    """A session with `jobs` earlier commits, all noted (done) unless told otherwise."""
    repo_id, _ = q.add_repo("/src/app/.git", "app-00000000", "/src/app")
    for n in range(jobs):
        q.add(_job(repo_id, n, session), at + n)
    if done:
        for job in q.claim_due(at + jobs + 1e6, jobs + 1, 60):
            q.complete(job.id, "file:///s/p", at + jobs)
    return repo_id


def _steps(q: Queue, read: Callable[[], object]) -> int:
    """SQLite virtual machine steps a read takes: grows with every row it visits."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    q.db.set_progress_handler(tick, 1)
    try:
        read()
    finally:
        q.db.set_progress_handler(None, 1)
    return count[0]


def _plans(q: Queue, read: Callable[[], object]) -> list[tuple[str, str]]:
    """(statement, its query plan) of every statement a read runs."""
    statements: list[str] = []
    q.db.set_trace_callback(statements.append)
    try:
        read()
    finally:
        q.db.set_trace_callback(None)
    out = []
    for sql in statements:
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        plan = q.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
        out.append((sql, " | ".join(str(row[-1]) for row in plan)))
    return out


def _per_commit_reads(q: Queue, repo_id: int, session: str = "s1") -> Callable[[], object]:
    """What ingest asks the queue about a session for every commit it links."""

    def read() -> object:
        latest = q.latest_snapshot(repo_id, "codex", session)
        generation = latest[0] if latest else None
        return (
            q.has_job(repo_id, "f" * 40, "codex", session),
            q.forgotten_at("codex", session),
            q.last_link_time(repo_id, "codex", session),
            latest,
            q.previous_extent(repo_id, "codex", session, snapshot=generation),
            q.previous_extent(repo_id, "codex", session),
            q.first_line_ending_at(repo_id, "codex", session, 10, snapshot=generation),
        )

    return read


def test_per_commit_session_reads_never_scan_or_sort(queue: Queue) -> None:
    repo_id = _history(queue, 50)
    plans = _plans(queue, _per_commit_reads(queue, repo_id))
    assert plans, "the reads ran statements"
    for sql, plan in plans:
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, f"{sql}\n  -> {plan}"


def test_per_commit_session_reads_cost_the_same_for_any_session_length(tmp_path: Path) -> None:
    costs = {}
    for jobs in (20, 1000):
        q = _open(tmp_path / f"q{jobs}.sqlite3")
        repo_id = _history(q, jobs)
        read = _per_commit_reads(q, repo_id)
        read()  # statements prepared: both runs count the same kind of steps
        costs[jobs] = _steps(q, read)
        q.close()
    assert costs[1000] <= costs[20] + 10, costs


def test_the_reads_still_answer_what_the_scans_did(queue: Queue) -> None:
    repo_id = _history(queue, 30)
    assert queue.last_link_time(repo_id, "codex", "s1") == T0 + 29
    assert queue.latest_snapshot(repo_id, "codex", "s1") == ("/snap/s1", 3000, 300, f"{29:064x}")
    assert queue.previous_extent(repo_id, "codex", "s1") == (300, 3000)
    assert queue.previous_extent(repo_id, "codex", "s1", snapshot="/snap/s1") == (300, 3000)
    assert queue.first_line_ending_at(repo_id, "codex", "s1", 300) == 291
    # A rewritten transcript: a new generation is what the next commit appends to.
    queue.add(_job(repo_id, 99, snapshot="/snap/s1-gen2", bytes=50, last_line=5, first_line=1), T0 + 100)
    assert queue.latest_snapshot(repo_id, "codex", "s1") == ("/snap/s1-gen2", 50, 5, f"{99:064x}")
    assert queue.previous_extent(repo_id, "codex", "s1", snapshot="/snap/s1-gen2") == (5, 50)
    assert queue.previous_extent(repo_id, "codex", "s1") == (300, 3000), "the furthest link of any generation"
    assert queue.last_link_time(repo_id, "codex", "s1") == T0 + 100


def test_following_sessions_reads_only_recent_ones(tmp_path: Path) -> None:
    """The follower asks every few seconds: with old history only, that must read nothing."""
    costs = {}
    for sessions in (5, 500):
        q = _open(tmp_path / f"q{sessions}.sqlite3")
        repo_id, _ = q.add_repo("/src/app/.git", "app-00000000", "/src/app")
        for n in range(sessions):
            q.add(_job(repo_id, n, f"old{n}"), T0)
        for job in q.claim_due(T0, sessions, 60):
            q.complete(job.id, "file:///s/p", T0)
        q.add(_job(repo_id, 0, "recent"), T0 + 10 * 86400)
        [job] = q.claim_due(T0 + 10 * 86400, 10, 60)
        q.complete(job.id, "file:///s/p", T0 + 10 * 86400)
        since = T0 + 9 * 86400
        assert [j.session_id for j in q.followed(since)] == ["recent"]
        for sql, plan in _plans(q, lambda q=q, since=since: q.followed(since)):  # type: ignore[misc]
            assert "SCAN jobs" not in plan and "SCAN sessions" not in plan, f"{sql}\n  -> {plan}"
        costs[sessions] = _steps(q, lambda q=q, since=since: q.followed(since))  # type: ignore[misc]
        q.close()
    assert costs[500] <= costs[5] + 10, costs


def test_collecting_after_a_batch_looks_only_at_what_the_batch_touched(tmp_path: Path) -> None:
    costs = {}
    for history in (10, 1000):
        q = _open(tmp_path / f"q{history}.sqlite3")
        repo_id, _ = q.add_repo("/src/app/.git", "app-00000000", "/src/app")
        for n in range(history):  # finished sessions whose (newest) snapshots are still kept
            q.add(_job(repo_id, n, f"old{n}"), T0)
        for job in q.claim_due(T0, history, 60):
            q.complete(job.id, "file:///s/p", T0)
        q.take_collectable(T0, 86400)
        q.add(_job(repo_id, 0, "new"), T0 + 5)
        [job] = q.claim_due(T0 + 5, 10, 60)
        q.complete(job.id, "file:///s/p", T0 + 5)
        costs[history] = _steps(q, lambda q=q: q.collectable_snapshots(T0 + 6, 86400))  # type: ignore[misc]
        for sql, plan in _plans(q, lambda q=q: q.collectable_snapshots(T0 + 6, 86400)):  # type: ignore[misc]
            assert "SCAN jobs" not in plan and "SCAN sessions" not in plan, f"{sql}\n  -> {plan}"
        q.close()
    assert costs[1000] <= costs[10] + 10, costs


def test_collection_still_finds_replaced_and_idle_snapshots(queue: Queue) -> None:
    repo_id, _ = queue.add_repo("/src/app/.git", "app-00000000", "/src/app")
    queue.add(_job(repo_id, 0, snapshot="/snap/gen1"), T0)
    for job in queue.claim_due(T0, 10, 60):
        queue.complete(job.id, "u", T0)
    assert queue.take_collectable(T0 + 1, 3600) == [], "a live session's newest is kept"
    # A rewrite of the transcript starts a new generation: the old file is free, though none
    # of its own jobs changed.
    queue.add(_job(repo_id, 1, snapshot="/snap/gen2"), T0 + 2)
    assert queue.take_collectable(T0 + 3, 3600) == ["/snap/gen1"]
    queue.drop_snapshot("/snap/gen1")
    for job in queue.claim_due(T0 + 3, 10, 60):
        queue.complete(job.id, "u", T0 + 3)
    assert queue.take_collectable(T0 + 4, 3600) == []
    assert queue.take_collectable(T0 + 4000, 3600) == ["/snap/gen2"], "idle past the keep time"
    queue.drop_snapshot("/snap/gen2")
    assert queue.latest_snapshot(repo_id, "codex", "s1") is None
    assert queue.take_collectable(T0 + 8000, 3600) == [], "a collected file is not looked at again"


def test_migration_backfills_sessions_from_existing_jobs(tmp_path: Path) -> None:
    """A queue written before the sessions table answers as it did once migrated."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for name, sql in MIGRATIONS:
        if name == "0005_sessions":
            break
        for statement in sql.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    db.execute("INSERT INTO repos VALUES (1, '/src/app/.git', 'app-00000000', '/src/app')")
    rows = [
        # id, commit, snapshot, bytes, first, last, state, created, updated
        (1, "a", "/snap/g1", 800, 1, 80, "done", T0, T0 + 1),
        (2, "b", "/snap/g2", 100, 1, 10, "done", T0 + 10, T0 + 11),
        (3, "c", "/snap/g2", 300, 11, 30, "pending", T0 + 20, T0 + 20),
        (4, "d", "/snap/g2", 100, 1, 10, "pending", T0 + 30, T0 + 30),  # a pick's copy: newest row
    ]
    for job_id, sha, snap, size, first, last, state, created, updated in rows:
        db.execute(
            "INSERT INTO jobs (id, repo_id, git_dir, commit_sha, agent, session_id, transcript, snapshot, bytes,"
            " first_line, last_line, sha256, remote_path, state, created_at, updated_at, session_raw)"
            " VALUES (?, 1, '/src/app/.git', ?, 'codex', 's1', '/t/s1.jsonl', ?, ?, ?, ?, ?, 'r/p', ?, ?, ?, 'S1')",
            (job_id, sha * 40, snap, size, first, last, f"{job_id:064x}", state, created, updated),
        )
    db.close()
    counts = {"pending": 2, "uploading": 0, "done": 2, "failed": 0}
    old = Queue(path, readonly=True)  # the CLI, with no daemon to migrate it: counted by reading
    try:
        assert old.counts() == counts
    finally:
        old.close()
    q = Queue(path)
    try:
        assert q.counts() == counts, "job_counts backfilled from the jobs there"
        assert q.last_link_time(1, "codex", "s1") == T0 + 30
        assert q.latest_snapshot(1, "codex", "s1") == ("/snap/g2", 300, 30, f"{3:064x}")
        assert q.previous_extent(1, "codex", "s1") == (80, 800)
        row = q.db.execute("SELECT session_raw, transcript, remote_path, last_done_at FROM sessions").fetchone()
        assert row == ("S1", "/t/s1.jsonl", "r/p", T0 + 11)
        assert q.take_collectable(T0 + 40, 3600) == ["/snap/g1"], "existing files are looked at once"
    finally:
        q.close()


def _counted(q: Queue) -> dict[str, int]:
    """What `counts` must say: the jobs table grouped by state, plus the retired done jobs."""
    truth = {state: 0 for state in ("pending", "uploading", "done", "failed")}
    truth.update({str(s): int(n) for s, n in q.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")})
    truth["done"] += int(q.db.execute("SELECT done FROM retired").fetchone()[0])
    return truth


def test_counting_jobs_by_state_costs_the_same_for_any_history(tmp_path: Path) -> None:
    """The daemon publishes the counts after every batch it claims (app._publish_status, for
    systemd's STATUS=) and for every `status`: a count that reads every job costs each commit
    more as the queue grows (100,000 jobs: a scan of them all per batch)."""
    costs = {}
    for jobs in (20, 1000):
        q = _open(tmp_path / f"q{jobs}.sqlite3")
        _history(q, jobs)
        q.counts()  # statements prepared: both runs count the same kind of steps
        costs[jobs] = _steps(q, q.counts)
        for sql, plan in _plans(q, q.counts):
            assert "jobs" not in plan and "TEMP B-TREE" not in plan, f"{sql}\n  -> {plan}"
        assert q.counts() == _counted(q) == {"pending": 0, "uploading": 0, "done": jobs, "failed": 0}
        q.close()
    assert costs[1000] == costs[20], costs


def test_the_counts_follow_every_writer_of_the_jobs_table(queue: Queue) -> None:
    repo_id = _history(queue, 6, done=False)
    assert queue.counts() == _counted(queue) == {"pending": 6, "uploading": 0, "done": 0, "failed": 0}
    claimed = queue.claim_due(T0 + 1e6, 4, 60)
    assert queue.counts() == _counted(queue) == {"pending": 2, "uploading": 4, "done": 0, "failed": 0}
    queue.complete(claimed[0].id, "file:///s/p", T0 + 1e6)
    queue.complete_all([(claimed[1].id, "file:///s/p", None, claimed[1].commit_sha)], T0 + 1e6)
    queue.fail(claimed[2].id, "bucket is public", T0 + 1e6)
    queue.defer(claimed[3].id, "503", T0 + 2e6, T0 + 1e6)
    assert queue.counts() == _counted(queue) == {"pending": 3, "uploading": 0, "done": 2, "failed": 1}
    assert queue.retry_failed(T0 + 1e6) == (1, 0)
    assert queue.counts() == _counted(queue) == {"pending": 4, "uploading": 0, "done": 2, "failed": 0}
    queue.fail(claimed[2].id, "again", T0 + 1e6)
    assert queue.drop_failed() == 1
    queue.copy_jobs(repo_id, claimed[0].commit_sha, "e" * 40, T0 + 1e6)
    assert queue.counts() == _counted(queue)
    queue.db.execute("UPDATE jobs SET snapshot = NULL WHERE state = 'done'")  # collected: retirable
    assert queue.retire_done(T0 + 3e6) == 2
    assert queue.counts() == _counted(queue) and queue.counts()["done"] == 2  # retired, still done
    queue.forget_sessions([("codex", "s1")], T0 + 3e6, lambda paths: None)
    assert queue.counts() == _counted(queue)
