"""The worker in-process, driven turn by turn with injected time.

Real parts: a real SQLite queue, real snapshot files, real git repositories and a real store
(the local directory, or huggingface_hub against tests/hubstub.py). Only the daemon around the
worker is left out: a test calls `Worker.loop(now=...)` itself, as huey's own tests drive its
consumer (coleifer/huey, huey/consumer.py `loop(now=None)`), and so never waits out a backoff.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tracekeeperd import git
from tracekeeperd.config import RetryPolicy
from tracekeeperd.queue import NewJob, Queue
from tracekeeperd.redact import Redactor
from tracekeeperd.snapshot import Snapshots
from tracekeeperd.stores import LocalStore, Store
from tracekeeperd.worker import DbThread, Worker

REF = "refs/notes/hf-traces"
#: The injected start of time: far from the real clock, so a stray real timestamp shows.
NOW = 1_800_000_000.0


def make_git_repo(root: Path, name: str, commits: int) -> tuple[Path, list[str]]:
    """A repository with `commits` empty commits: its git dir and their shas, oldest first."""
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


def transcript_lines(first: int, last: int) -> bytes:
    return b"".join(b'{"type":"message","n":%d}\n' % i for i in range(first, last + 1))


@dataclass
class WorkerKit:
    """A queue, a worker and the repositories and snapshots its jobs point at."""

    root: Path
    queue: Queue
    worker: Worker
    repos: dict[str, tuple[Path, int, str]] = field(default_factory=dict)  # name -> (git dir, id, key)

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def repo(self, name: str, commits: int) -> tuple[Path, list[str]]:
        git_dir, shas = make_git_repo(self.root, name, commits)
        repo_id, key = self.queue.add_repo(str(git_dir), f"{name}-00000000", str(git_dir.parent))
        self.repos[name] = (git_dir, repo_id, key)
        return git_dir, shas

    def snapshot(self, name: str, lines: int) -> Path:
        path = self.snapshots / name
        path.write_bytes(transcript_lines(1, lines))
        return path

    def add(
        self,
        repo: str,
        sha: str,
        snapshot: Path,
        *,
        session: str = "s",
        at: float = NOW,
        transcript: Path | None = None,
    ) -> int:
        """Queue one commit x session job as ingest would, its snapshot taken whole."""
        git_dir, repo_id, key = self.repos[repo]
        data = snapshot.read_bytes()
        lines = data.count(b"\n")
        job = NewJob(
            repo_id=repo_id,
            git_dir=str(git_dir),
            work_tree=str(git_dir.parent),
            commit_sha=sha,
            agent="codex",
            session_id=session,
            transcript=str(transcript or snapshot),
            snapshot=str(snapshot),
            bytes=len(data),
            first_line=1,
            last_line=lines,
            # As ingest records it (snapshot.Extent.sha256): the worker checks a redacted copy
            # continues the snapshot against it, and would otherwise start every copy afresh.
            sha256=hashlib.sha256(data).hexdigest(),
            remote_path=f"{key}/sessions/codex-{session}.jsonl",
        )
        job_id = self.queue.add(job, at)
        assert job_id is not None
        return job_id


@contextmanager
def worker_kit(root: Path, store: Store | None = None, policy: RetryPolicy | None = None) -> Iterator[WorkerKit]:
    """A worker whose clock is NOW unless a turn says otherwise (`loop(now=...)`)."""
    (root / "snapshots").mkdir(parents=True, exist_ok=True)
    queue = Queue(root / "state" / "queue.sqlite3")
    db = DbThread()
    try:
        worker = Worker(
            queue,
            db,
            store or LocalStore(root / "store"),
            Snapshots(root / "snapshots"),
            notes_ref=REF,
            policy=policy or RetryPolicy(),
            redactor=Redactor(),
            clock=lambda: NOW,
        )
        try:
            yield WorkerKit(root, queue, worker)
        finally:
            worker.close()  # the daemon's stop: no git process outlives the test
    finally:
        db.shutdown()
        queue.close()
