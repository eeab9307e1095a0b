"""The worker notes a whole batch in one notes commit per repository.

Real parts: a real SQLite queue, real snapshot files, the local directory store, real git
repositories; the worker is driven directly (`run_once`) rather than through the daemon so
that every job is certainly claimed in one batch.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekeeperd import git, notes
from tracekeeperd.config import RetryPolicy
from tracekeeperd.queue import JobState, NewJob, Queue
from tracekeeperd.redact import Redactor
from tracekeeperd.snapshot import Snapshots
from tracekeeperd.stores import LocalStore
from tracekeeperd.worker import DbThread, Worker

REF = "refs/notes/hf-traces"
NOW = 1_800_000_000.0


def _repo(root: Path, name: str, commits: int) -> tuple[Path, list[str]]:
    work = root / name
    work.mkdir()
    env = git.clean_env()

    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True, text=True).stdout

    run("init", "-q")
    run("config", "user.name", "Test")
    run("config", "user.email", "test@example.com")
    for i in range(commits):
        run("commit", "-q", "--allow-empty", "-m", f"c{i}")
    return work / ".git", run("rev-list", "--reverse", "HEAD").split()


@pytest.fixture
def queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    q = Queue(tmp_path / "state" / "queue.sqlite3")
    yield q
    q.close()


def test_one_batch_is_one_notes_commit_per_repository(tmp_path: Path, queue: Queue) -> None:
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    snapshot = snapshots / "s1.jsonl"
    snapshot.write_bytes(b"".join(b'{"type":"message","n":%d}\n' % i for i in range(1, 6)))
    size = snapshot.stat().st_size
    repos = {name: _repo(tmp_path, name, 12) for name in ("app", "lib")}
    gone = "0" * 40  # a commit that does not exist: that job fails, the rest are noted
    ids: dict[str, list[int]] = {}
    for name, (git_dir, shas) in repos.items():
        repo_id, key = queue.add_repo(str(git_dir), f"{name}-00000000", str(git_dir.parent))
        for i, sha in enumerate([*shas, gone]):
            job = NewJob(
                repo_id=repo_id,
                git_dir=str(git_dir),
                work_tree=str(git_dir.parent),
                commit_sha=sha,
                agent="codex",
                session_id=f"s{i % 3}",
                transcript=str(snapshot),
                snapshot=str(snapshot),
                bytes=size,
                first_line=1,
                last_line=5,
                sha256="ab" * 32,
                remote_path=f"{key}/sessions/codex-s{i % 3}.jsonl",
            )
            job_id = queue.add(job, NOW)
            assert job_id is not None
            ids.setdefault(name, []).append(job_id)
    db = DbThread()
    try:
        worker = Worker(
            queue,
            db,
            LocalStore(tmp_path / "store"),
            Snapshots(snapshots),
            notes_ref=REF,
            policy=RetryPolicy(),
            redactor=Redactor(),
            clock=lambda: NOW,
        )
        assert worker.run_once() == 2 * 13
    finally:
        db.shutdown()
    states = {job.id: job.state for job in queue.jobs()}
    for name, (git_dir, shas) in repos.items():
        assert [states[i] for i in ids[name]] == [JobState.DONE] * 12 + [JobState.FAILED]
        count = git.output(git_dir, ["rev-list", "--count", REF])
        assert count == "1", f"{name}: one notes commit for the whole batch"
        for i, sha in enumerate(shas):
            (link,) = notes.parse(notes.read(git_dir, REF, sha))
            assert link.session_id == f"s{i % 3}" and link.url.endswith(f"/codex-s{i % 3}.jsonl")


def test_reconfigure_switches_store_notes_ref_and_opens_the_gate(tmp_path: Path, queue: Queue) -> None:
    """SIGHUP goes through Worker.reconfigure: the next batch uses the new store and notes ref,
    and a gate the old store closed no longer holds the queue back."""
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    snapshot = snapshots / "s.jsonl"
    snapshot.write_bytes(b'{"type":"message","n":1}\n')
    git_dir, (sha,) = _repo(tmp_path, "app", 1)
    repo_id, key = queue.add_repo(str(git_dir), "app-00000000", str(git_dir.parent))
    job = NewJob(
        repo_id=repo_id,
        git_dir=str(git_dir),
        work_tree=str(git_dir.parent),
        commit_sha=sha,
        agent="codex",
        session_id="s",
        transcript=str(snapshot),
        snapshot=str(snapshot),
        bytes=snapshot.stat().st_size,
        first_line=1,
        last_line=1,
        sha256="ab" * 32,
        remote_path=f"{key}/sessions/codex-s.jsonl",
    )
    assert queue.add(job, NOW) is not None
    db = DbThread()
    try:
        old = LocalStore(tmp_path / "old")
        worker = Worker(
            queue,
            db,
            old,
            Snapshots(snapshots),
            notes_ref=REF,
            policy=RetryPolicy(),
            redactor=Redactor(),
            clock=lambda: NOW,
        )
        worker.gate.closed_until, worker.gate.reason = NOW + 3600, "old store unreachable"
        assert worker.run_once() == 0, "the closed gate holds the queue"
        new = LocalStore(tmp_path / "new")
        worker.reconfigure(new, notes_ref="refs/notes/other", policy=RetryPolicy(), redactor=Redactor())
        assert worker.store_id == new.ident() and worker.gate.closed_until == 0.0
        assert worker.run_once() == 1
    finally:
        db.shutdown()
    assert [j.state for j in queue.jobs()] == [JobState.DONE]
    assert (tmp_path / "new" / key / "sessions" / "codex-s.jsonl").is_file()
    assert not (tmp_path / "old").exists() or not any((tmp_path / "old").rglob("*.jsonl"))
    (link,) = notes.parse(notes.read(git_dir, "refs/notes/other", sha))
    assert link.url.endswith("/codex-s.jsonl")
    assert git.run(git_dir, ["rev-parse", "--verify", "-q", REF], check=False).returncode != 0


def test_notes_repair_runs_git_only_when_the_notes_ref_moved(
    tmp_path: Path, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The housekeeping tick asks every recently noted repository for lost lines every few
    seconds for an hour: with nobody else writing notes it must not start git each time."""
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    snapshot = snapshots / "s.jsonl"
    snapshot.write_bytes(b'{"type":"message","n":1}\n')
    git_dir, (sha,) = _repo(tmp_path, "app", 1)
    repo_id, key = queue.add_repo(str(git_dir), "app-00000000", str(git_dir.parent))
    job = NewJob(
        repo_id=repo_id,
        git_dir=str(git_dir),
        work_tree=str(git_dir.parent),
        commit_sha=sha,
        agent="codex",
        session_id="s",
        transcript=str(snapshot),
        snapshot=str(snapshot),
        bytes=snapshot.stat().st_size,
        first_line=1,
        last_line=1,
        sha256="ab" * 32,
        remote_path=f"{key}/sessions/codex-s.jsonl",
    )
    assert queue.add(job, NOW) is not None
    repairs: list[Path] = []
    real_repair = notes.repair

    def counting_repair(where: Path, ref: str) -> notes.Written:
        repairs.append(where)
        return real_repair(where, ref)

    monkeypatch.setattr(notes, "repair", counting_repair)  # a spy: the real repair still runs
    db = DbThread()
    try:
        worker = Worker(
            queue,
            db,
            LocalStore(tmp_path / "store"),
            Snapshots(snapshots),
            notes_ref=REF,
            policy=RetryPolicy(),
            redactor=Redactor(),
            clock=lambda: NOW,
        )
        assert worker.run_once() == 1
        ours = notes.read(git_dir, REF, sha)
        for _ in range(5):
            assert worker.repair_notes() == 0
        assert len(repairs) <= 1, "nothing moved the notes ref: no git for it"
        # A user's stale `git notes add -f` drops our line: the next tick puts it back.
        subprocess.run(
            ["git", "notes", f"--ref={REF}", "add", "-f", "-m", "reviewed-by: bob", sha],
            cwd=git_dir.parent,
            env=git.clean_env(),
            check=True,
            capture_output=True,
        )
        before = len(repairs)
        assert worker.repair_notes() == 1
        assert len(repairs) == before + 1
        back = notes.read(git_dir, REF, sha)
        for _ in range(5):
            assert worker.repair_notes() == 0
        assert len(repairs) <= before + 2
    finally:
        db.shutdown()
    assert "reviewed-by: bob" in back and all(line in back for line in ours.splitlines())
