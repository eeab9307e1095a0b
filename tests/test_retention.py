"""Retention of old done jobs (issue #10): the jobs table stops growing without end, and
nothing `status`, `show`, `forget` or the next commit of a session needs is lost.

Time is injected (`now`, the worker's clock): nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracekeeperd import status as status_view
from tracekeeperd.config import RetryPolicy
from tracekeeperd.protocol import JobState
from tracekeeperd.queue import NewJob, Queue
from tracekeeperd.redact import Redactor
from tracekeeperd.snapshot import Snapshots
from tracekeeperd.stores import LocalStore
from tracekeeperd.worker import DbThread, Worker

T0 = 1_800_000_000.0
DAY = 86400.0


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    q = Queue(tmp_path / "queue.sqlite3")
    yield q
    q.close()


def _job(repo_id: int, n: int, *, snapshot: str | None = "/snap/s1", session: str = "s1") -> NewJob:
    return NewJob(
        repo_id=repo_id,
        git_dir="/src/app/.git",
        work_tree="/src/app",
        commit_sha=f"{n:040x}",
        agent="codex",
        session_id=session,
        transcript=f"/t/{session}.jsonl",
        snapshot=snapshot,
        bytes=100 * (n + 1),
        first_line=10 * n + 1,
        last_line=10 * (n + 1),
        sha256=f"{n:064x}",
        remote_path=f"app-00000000/sessions/codex-{session}.jsonl",
        session_raw=session.upper(),
    )


def _old_session(q: Queue) -> int:
    """Five commits noted at T0 whose snapshot was since collected (the session idled)."""
    repo_id, _ = q.add_repo("/src/app/.git", "app-00000000", "/src/app")
    for n in range(5):
        q.add(_job(repo_id, n), T0 + n)
    for job in q.claim_due(T0 + 10, 10, 60):
        q.complete(job.id, "file:///s/p", T0 + 10)
        q.record_upload("file:///s", job.remote_path or "", job, T0 + 10)
    q.drop_snapshot("/snap/s1")
    return repo_id


def test_retirement_removes_only_old_done_jobs_with_no_snapshot(queue: Queue) -> None:
    repo_id = _old_session(queue)
    held = queue.add(_job(repo_id, 10, snapshot="/snap/s2", session="s2"), T0)  # done, snapshot kept
    failed = queue.add(_job(repo_id, 11, session="s3"), T0, error="bucket is public")
    pending = queue.add(_job(repo_id, 12, session="s4"), T0)
    assert held is not None and failed is not None and pending is not None
    for job in queue.claim_due(T0, 10, 60):
        if job.id == held:
            queue.complete(job.id, "file:///s/p2", T0)
        else:
            queue.defer(job.id, "offline", T0 + 40 * DAY, T0)
    assert queue.retire_done(T0 + 5) == 0, "not old enough yet"
    assert queue.retire_done(T0 + 30 * DAY) == 5
    left = {job.id: job.state for job in queue.jobs(limit=100)}
    assert left == {held: JobState.DONE, failed: JobState.FAILED, pending: JobState.PENDING}
    assert queue.retire_done(T0 + 30 * DAY) == 0, "nothing twice"


def test_what_status_show_forget_and_ingest_need_survives_retirement(queue: Queue, tmp_path: Path) -> None:
    repo_id = _old_session(queue)

    def facts() -> tuple[Any, ...]:
        return (
            queue.counts(),
            queue.last_link_time(repo_id, "codex", "s1"),
            queue.previous_extent(repo_id, "codex", "s1"),
            queue.first_line_ending_at(repo_id, "codex", "s1", 50),
            queue.local_copies("codex", "s1", f"{2:040x}"),
        )

    before = facts()
    assert before[0]["done"] == 5 and before[4] == [("/t/s1.jsonl", "")]
    assert queue.retire_done(T0 + 60 * DAY) == 5
    assert queue.jobs(limit=100) == []
    # `status`: done jobs are still counted, and said to be not shown.
    assert facts() == before
    view = status_view.build(queue, tmp_path / "spool", include_done=True, daemon={})
    assert view["queue"]["done"] == 5 and view["jobs_not_shown"] == 5
    # the next commit of the session: continues at line 51, not at 1 (ingest reads these)
    assert queue.previous_extent(repo_id, "codex", "s1") == (50, 500)
    # `forget`: the raw id is recorded and what the store holds is forgotten.
    assert queue.uploaded("file:///s", "app-00000000/sessions/codex-s1.jsonl") is not None
    since, snapshots, cancelled = queue.forget("codex", "s1", T0 + 61 * DAY)
    assert (since, snapshots, cancelled) == (T0 + 61 * DAY, [], 0)
    assert queue.uploaded("file:///s", "app-00000000/sessions/codex-s1.jsonl") is None
    raw = queue.db.execute("SELECT session_raw FROM forgotten WHERE session_id = 's1'").fetchone()
    assert raw == ("S1",)


def test_the_worker_retires_by_its_clock_and_the_configured_age(queue: Queue, tmp_path: Path) -> None:
    _old_session(queue)
    now = [T0 + 10 * DAY]
    db = DbThread()
    try:
        worker = Worker(
            queue,
            db,
            LocalStore(tmp_path / "store"),
            Snapshots(tmp_path / "snapshots"),
            notes_ref="refs/notes/hf-traces",
            policy=RetryPolicy(),
            redactor=Redactor(),
            clock=lambda: now[0],
            keep_done=30 * DAY,
        )
        worker.collect_snapshots()
        assert queue.counts()["done"] == 5 and len(queue.jobs(limit=100)) == 5, "younger than 30 days: kept"
        now[0] = T0 + 31 * DAY
        worker.collect_snapshots()
        assert queue.counts()["done"] == 5 and queue.jobs(limit=100) == []
        worker.keep_done = None  # `keep_done_days = "forever"`
        queue.add(_job(1, 20, snapshot=None, session="s9"), T0)
        for job in queue.claim_due(T0, 10, 60):
            queue.complete(job.id, "u", T0)
        now[0] = T0 + 1000 * DAY
        worker.collect_snapshots()
        assert len(queue.jobs(limit=100)) == 1
    finally:
        db.shutdown()
