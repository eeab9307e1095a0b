"""The durable upload queue: schema, migrations and every job state transition. The only SQL.

One job links one commit to one agent session. A job is inserted (and the insert fsynced)
before the commit is acknowledged, moves `pending -> uploading -> done`, or to `failed` with a
reason. Retry timing lives in the row (`attempts`, `next_attempt_at`), so backoff survives
restarts; a job found `uploading` at start-up was in flight when the daemon died and is
handed back to `pending`.

Every method is synchronous and expects to be called from one thread (the daemon's database
thread): SQLite then needs no locking of ours, and the event loop never blocks on an fsync.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, TracekeeperError
from .protocol import JobState, JobView

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE repos (
            id INTEGER PRIMARY KEY,
            common_dir TEXT NOT NULL UNIQUE,
            key TEXT NOT NULL UNIQUE,
            display TEXT NOT NULL
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            repo_id INTEGER NOT NULL REFERENCES repos(id),
            git_dir TEXT NOT NULL,
            work_tree TEXT,
            commit_sha TEXT NOT NULL,
            agent TEXT NOT NULL,
            session_id TEXT NOT NULL,
            transcript TEXT,
            snapshot TEXT,
            bytes INTEGER,
            first_line INTEGER,
            last_line INTEGER,
            sha256 TEXT,
            remote_path TEXT,
            state TEXT NOT NULL CHECK (state IN ('pending', 'uploading', 'done', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            leased_until REAL,
            last_error TEXT,
            url TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (repo_id, commit_sha, agent, session_id)
        );
        CREATE INDEX jobs_by_state_due ON jobs (state, next_attempt_at);
        CREATE INDEX jobs_by_session ON jobs (repo_id, agent, session_id);
        CREATE TABLE uploads (
            store TEXT NOT NULL,
            remote_path TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            snapshot TEXT NOT NULL,
            job_id INTEGER NOT NULL,
            uploaded_at REAL NOT NULL,
            PRIMARY KEY (store, remote_path)
        );
        """,
    ),
    (
        "0002_redactions",
        "ALTER TABLE jobs ADD COLUMN redactions TEXT",
    ),
    (
        # `session_id` is now `active.session_key(raw id)`, one to one with the raw id and equal
        # to it for every id that was already safe, so earlier rows (which hold the cleaned id)
        # keep their key, their extents and their remote path. The raw id is kept beside it;
        # rows from before this migration have NULL: only the cleaned id was ever recorded.
        "0003_session_raw",
        "ALTER TABLE jobs ADD COLUMN session_raw TEXT",
    ),
    (
        # Sessions `tracekeeper forget` removed: never linked or uploaded again until
        # `tracekeeper forget --undo`. In every repository: a session is one transcript.
        "0004_forgotten",
        """
        CREATE TABLE forgotten (
            agent TEXT NOT NULL,
            session_id TEXT NOT NULL,
            session_raw TEXT,
            forgotten_at REAL NOT NULL,
            PRIMARY KEY (agent, session_id)
        )
        """,
    ),
    (
        # Per-session state where one indexed read finds it: ingest asked "the newest snapshot",
        # "the furthest extent" and "the last link" by scanning every job of the session on each
        # commit, and the follower rescanned the jobs table every few seconds. The row is kept
        # up to date by triggers, so every writer of `jobs` (add, rewrite copies, forget) keeps
        # it right without knowing of it; it also outlives the retention of old done jobs.
        # `snapshot_review` lists snapshot files whose jobs changed: only those (and sessions
        # idle past the snapshot's keep time) are looked at by the collector after a batch.
        "0005_sessions",
        """
        CREATE TABLE sessions (
            repo_id INTEGER NOT NULL REFERENCES repos(id),
            agent TEXT NOT NULL,
            session_id TEXT NOT NULL,
            session_raw TEXT,
            transcript TEXT,
            remote_path TEXT,
            snapshot TEXT,
            job_id INTEGER,
            first_line INTEGER,
            last_line INTEGER,
            bytes INTEGER,
            last_link_at REAL NOT NULL,
            last_done_at REAL,
            PRIMARY KEY (repo_id, agent, session_id)
        );
        CREATE INDEX sessions_by_id ON sessions (agent, session_id);
        CREATE INDEX sessions_by_snapshot ON sessions (snapshot) WHERE snapshot IS NOT NULL;
        CREATE INDEX sessions_holding_by_link ON sessions (last_link_at) WHERE snapshot IS NOT NULL;
        CREATE INDEX sessions_by_done ON sessions (last_done_at) WHERE last_done_at IS NOT NULL;
        CREATE TABLE snapshot_review (path TEXT PRIMARY KEY) WITHOUT ROWID;
        CREATE TABLE retired (done INTEGER NOT NULL);
        INSERT INTO retired VALUES (0);
        DROP INDEX jobs_by_session;
        CREATE INDEX jobs_by_session ON jobs (agent, session_id, repo_id, last_line);
        CREATE INDEX jobs_by_snapshot ON jobs (snapshot, bytes) WHERE snapshot IS NOT NULL;
        CREATE INDEX jobs_by_snapshot_state ON jobs (snapshot, state) WHERE snapshot IS NOT NULL;
        CREATE INDEX jobs_retirable ON jobs (updated_at) WHERE state = 'done' AND snapshot IS NULL;
        INSERT INTO sessions (repo_id, agent, session_id, last_link_at)
            SELECT repo_id, agent, session_id, MAX(created_at) FROM jobs GROUP BY repo_id, agent, session_id;
        UPDATE sessions SET
            session_raw = (SELECT session_raw FROM jobs j WHERE (j.repo_id, j.agent, j.session_id)
                = (sessions.repo_id, sessions.agent, sessions.session_id) AND session_raw IS NOT NULL
                ORDER BY id DESC LIMIT 1),
            transcript = (SELECT transcript FROM jobs j WHERE (j.repo_id, j.agent, j.session_id)
                = (sessions.repo_id, sessions.agent, sessions.session_id) AND transcript IS NOT NULL
                ORDER BY id DESC LIMIT 1),
            remote_path = (SELECT remote_path FROM jobs j WHERE (j.repo_id, j.agent, j.session_id)
                = (sessions.repo_id, sessions.agent, sessions.session_id) AND remote_path IS NOT NULL
                ORDER BY id DESC LIMIT 1),
            job_id = (SELECT id FROM jobs j WHERE (j.repo_id, j.agent, j.session_id)
                = (sessions.repo_id, sessions.agent, sessions.session_id) AND snapshot IS NOT NULL
                AND transcript IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1),
            last_done_at = (SELECT MAX(updated_at) FROM jobs j WHERE (j.repo_id, j.agent, j.session_id)
                = (sessions.repo_id, sessions.agent, sessions.session_id) AND state = 'done');
        UPDATE sessions SET snapshot = (SELECT snapshot FROM jobs WHERE id = sessions.job_id);
        UPDATE sessions SET (first_line, last_line, bytes) = (SELECT first_line, last_line, bytes FROM jobs j
            WHERE j.repo_id = sessions.repo_id AND j.agent = sessions.agent AND j.session_id = sessions.session_id
            AND last_line IS NOT NULL AND bytes IS NOT NULL ORDER BY bytes DESC, first_line LIMIT 1);
        INSERT OR IGNORE INTO snapshot_review SELECT DISTINCT snapshot FROM jobs WHERE snapshot IS NOT NULL;
        CREATE TRIGGER jobs_to_session AFTER INSERT ON jobs BEGIN
            INSERT OR IGNORE INTO snapshot_review SELECT snapshot FROM sessions WHERE repo_id = new.repo_id
                AND agent = new.agent AND session_id = new.session_id AND new.snapshot IS NOT NULL
                AND snapshot IS NOT NULL AND snapshot != new.snapshot;
            INSERT INTO sessions (repo_id, agent, session_id, session_raw, transcript, remote_path, snapshot, job_id,
                first_line, last_line, bytes, last_link_at, last_done_at)
            VALUES (new.repo_id, new.agent, new.session_id, new.session_raw, new.transcript, new.remote_path,
                new.snapshot, CASE WHEN new.snapshot IS NOT NULL AND new.transcript IS NOT NULL THEN new.id END,
                CASE WHEN new.bytes IS NOT NULL THEN new.first_line END,
                CASE WHEN new.bytes IS NOT NULL THEN new.last_line END,
                CASE WHEN new.last_line IS NOT NULL THEN new.bytes END,
                new.created_at, CASE WHEN new.state = 'done' THEN new.updated_at END)
            ON CONFLICT (repo_id, agent, session_id) DO UPDATE SET
                session_raw = COALESCE(excluded.session_raw, session_raw),
                transcript = COALESCE(excluded.transcript, transcript),
                remote_path = COALESCE(excluded.remote_path, remote_path),
                snapshot = COALESCE(excluded.snapshot, snapshot),
                job_id = COALESCE(excluded.job_id, job_id),
                first_line = CASE WHEN excluded.bytes > COALESCE(bytes, -1) THEN excluded.first_line
                    WHEN excluded.bytes = bytes THEN COALESCE(MIN(first_line, excluded.first_line), first_line)
                    ELSE first_line END,
                last_line = CASE WHEN excluded.bytes > COALESCE(bytes, -1) THEN excluded.last_line ELSE last_line END,
                bytes = CASE WHEN excluded.bytes > COALESCE(bytes, -1) THEN excluded.bytes ELSE bytes END,
                last_link_at = MAX(last_link_at, excluded.last_link_at),
                last_done_at = COALESCE(MAX(last_done_at, excluded.last_done_at), last_done_at, excluded.last_done_at);
        END;
        CREATE TRIGGER jobs_settled AFTER UPDATE OF state ON jobs WHEN new.state IN ('done', 'failed') BEGIN
            INSERT OR IGNORE INTO snapshot_review SELECT new.snapshot WHERE new.snapshot IS NOT NULL;
            UPDATE sessions SET last_done_at = COALESCE(MAX(last_done_at, new.updated_at), new.updated_at)
                WHERE new.state = 'done' AND repo_id = new.repo_id AND agent = new.agent
                AND session_id = new.session_id;
        END;
        CREATE TRIGGER jobs_gone AFTER DELETE ON jobs WHEN old.snapshot IS NOT NULL BEGIN
            INSERT OR IGNORE INTO snapshot_review VALUES (old.snapshot);
        END
        """,
    ),
    (
        # How many jobs are in each state, where one read of four rows finds it: the daemon
        # publishes the counts after every batch it claims (systemd's STATUS=) and `status`
        # shows them, and a GROUP BY read every job (all 100,000 of a long history) each time.
        # Kept by triggers, like `sessions`, so every writer of `jobs` keeps it right.
        "0006_job_counts",
        """
        CREATE TABLE job_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO job_counts SELECT state, COUNT(*) FROM jobs GROUP BY state;
        CREATE TRIGGER jobs_counted AFTER INSERT ON jobs BEGIN
            INSERT INTO job_counts VALUES (new.state, 1) ON CONFLICT (state) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER jobs_recounted AFTER UPDATE OF state ON jobs WHEN new.state IS NOT old.state BEGIN
            UPDATE job_counts SET n = n - 1 WHERE state = old.state;
            INSERT INTO job_counts VALUES (new.state, 1) ON CONFLICT (state) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER jobs_uncounted AFTER DELETE ON jobs BEGIN
            UPDATE job_counts SET n = n - 1 WHERE state = old.state;
        END
        """,
    ),
]


def forgotten_reason(session_id: str, at: float) -> str:
    """Why a forgotten session's commit gets no link, as `status` and the log show it."""
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"session forgotten on {when}; not linked or uploaded (`tracekeeper forget --undo {session_id}` allows it)"


class NotForgotten(TracekeeperError):
    """`forget --undo` named no forgotten session, or the start of several."""


@dataclass(frozen=True)
class Job:
    id: int
    repo_key: str
    repo_display: str
    git_dir: str
    work_tree: str | None
    commit_sha: str
    agent: str
    session_id: str
    transcript: str | None
    snapshot: str | None
    bytes: int | None
    first_line: int | None
    last_line: int | None
    sha256: str | None
    remote_path: str | None
    state: JobState
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    url: str | None
    created_at: float
    updated_at: float
    redactions: str | None = None
    #: The session id as the agent gave it (None in rows older than migration 0003).
    session_raw: str | None = None

    def view(self) -> JobView:
        lines = (
            [self.first_line, self.last_line] if self.first_line is not None and self.last_line is not None else None
        )
        return JobView(
            id=self.id,
            repo=self.repo_display,
            commit=self.commit_sha,
            agent=self.agent,
            session_id=self.session_id,
            state=self.state.value,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            last_error=self.last_error,
            url=self.url,
            created_at=self.created_at,
            updated_at=self.updated_at,
            lines=lines,
            bytes=self.bytes,
            redactions=json.loads(self.redactions) if self.redactions else None,
        )


@dataclass(frozen=True)
class Uploaded:
    """What the store holds at a remote path, as far as this machine knows."""

    bytes: int
    sha256: str
    snapshot: str
    job_id: int


@dataclass(frozen=True)
class NewJob:
    """What ingest learned at commit time; the queue adds identity and state."""

    repo_id: int
    git_dir: str
    work_tree: str | None
    commit_sha: str
    agent: str
    session_id: str
    transcript: str | None
    snapshot: str | None = None
    bytes: int | None = None
    first_line: int | None = None
    last_line: int | None = None
    sha256: str | None = None
    remote_path: str | None = None
    session_raw: str | None = None


_JOB_COLUMNS = """
    jobs.id, repos.key, repos.display, jobs.git_dir, jobs.work_tree, jobs.commit_sha, jobs.agent,
    jobs.session_id, jobs.transcript, jobs.snapshot, jobs.bytes, jobs.first_line, jobs.last_line,
    jobs.sha256, jobs.remote_path, jobs.state, jobs.attempts, jobs.next_attempt_at, jobs.last_error,
    jobs.url, jobs.created_at, jobs.updated_at, jobs.redactions, jobs.session_raw
"""
_JOB_FROM = "FROM jobs JOIN repos ON repos.id = jobs.repo_id"


def _id_list(ids: list[int] | None) -> tuple[str | None, str | None]:
    """(flag, JSON array) for `? IS NULL OR id IN (SELECT value FROM json_each(?))`: any number
    of ids as one parameter (SQLite caps the number of `?`)."""
    encoded = None if ids is None else json.dumps([int(i) for i in ids])
    return encoded, encoded


def _job(row: tuple[Any, ...]) -> Job:
    values = list(row)
    values[15] = JobState(values[15])
    return Job(*values)


def _copy_to(
    db: sqlite3.Connection, repo_id: int, source: str, target: str, now: float, *, states: tuple[str, ...]
) -> list[int]:
    """Pending copies, for `target`, of `source`'s jobs in `states` that still have a snapshot;
    returns every pending job of `target` (the new commit may already have had its own)."""
    marks = ",".join("?" * len(states))  # only placeholders are interpolated below
    sql = (
        "INSERT OR IGNORE INTO jobs (repo_id, git_dir, work_tree, commit_sha, agent, session_id, transcript,"  # noqa: S608
        " snapshot, bytes, first_line, last_line, sha256, remote_path, state, next_attempt_at, created_at,"
        " updated_at, session_raw) SELECT repo_id, git_dir, work_tree, ?, agent, session_id, transcript, snapshot,"
        " bytes, first_line, last_line, sha256, remote_path, 'pending', ?, ?, ?, session_raw FROM jobs"
        f" WHERE repo_id = ? AND commit_sha = ? AND snapshot IS NOT NULL AND state IN ({marks})"
    )
    db.execute(
        sql,
        (target, now, now, now, repo_id, source, *states),
    )
    rows = db.execute(
        "SELECT id FROM jobs WHERE repo_id = ? AND commit_sha = ? AND state = 'pending'", (repo_id, target)
    ).fetchall()
    return [int(row[0]) for row in rows]


def _statements(sql: str) -> Iterator[str]:
    """The statements of a migration script, cut where SQLite itself says one is complete (a
    trigger's body holds `;` of its own). Not `executescript`: it commits first, and a migration
    must be one transaction with its record."""
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def damaged(path: Path, exc: BaseException) -> str:
    """The one line that says a queue database is damaged, and what to do."""
    reason = " ".join(str(exc).split())  # quick_check reports over several lines
    return (
        f"the queue {path} is damaged ({reason}); stop tracekeeperd, move the file aside and start it"
        " again (jobs in it are lost; commits still in the spool are not)"
    )


class Queue:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        #: (device, inode) of the file this connection writes, to notice it deleted or replaced
        #: under us; None for a reader.
        self._identity: tuple[int, int] | None = None
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=5)
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._connect()
            # A damaged file is refused at start with one line, rather than failing batch after
            # batch later; quick_check reads every page once (milliseconds for a queue).
            (verdict,) = self.db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            self._migrate()
        except sqlite3.OperationalError as exc:  # locked, unreadable, no space: not damage
            self._close_if_open()
            raise ConfigError(f"cannot open the queue {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self._close_if_open()
            raise ConfigError(damaged(path, exc)) from exc

    def _close_if_open(self) -> None:
        if hasattr(self, "db"):
            self.db.close()

    def _connect(self) -> None:
        self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit acknowledged to the hook survives power loss, not just a crash.
        self.db.execute("PRAGMA synchronous=FULL")
        if sys.platform == "darwin":
            self.db.execute("PRAGMA fullfsync=ON")
        self.db.execute("PRAGMA foreign_keys=ON")
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)

    def close(self) -> None:
        self.db.close()

    def ensure_on_disk(self) -> str | None:
        """Write the live queue back if its file was deleted (or replaced) under this connection.

        The connection keeps working on the unlinked file, so nothing looks wrong until the next
        start finds an empty queue and every job in it is gone. Checked before every write and
        now and then by the daemon; says what it did, or None when the file is ours.
        """
        if self._identity is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == self._identity:
            return None
        if st is not None:  # someone else's file now: keep it, aside, and put ours back
            aside = self.path.with_name(f"{self.path.name}.replaced-{int(time.time())}")
            os.replace(self.path, aside)
            what = f"the queue {self.path} was replaced while tracekeeperd ran (that file is now {aside})"
        else:
            what = f"the queue {self.path} was deleted while tracekeeperd ran"
        self._write_back()
        message = f"{what}; its live state was written back"
        log.error("%s", message)
        return message

    def _write_back(self) -> None:
        """SQLite's online backup of this connection (WAL included) into a new file at the path."""
        tmp = self.path.with_name(self.path.name + ".restoring")
        for stale in (tmp, Path(f"{tmp}-journal")):
            stale.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        copy = sqlite3.connect(tmp)
        try:
            self.db.backup(copy)
        finally:
            copy.close()
        self.db.close()
        # The old -wal/-shm belong to the deleted file: a new database must never replay them.
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._connect()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.ensure_on_disk()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        done = {row[0] for row in self.db.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with self._tx() as db:
                for statement in _statements(sql):
                    db.execute(statement)
                db.execute("INSERT INTO migrations VALUES (?, strftime('%s','now'))", (name,))

    # --- repositories -------------------------------------------------------------------

    def repo(self, common_dir: str) -> tuple[int, str] | None:
        row = self.db.execute("SELECT id, key FROM repos WHERE common_dir = ?", (common_dir,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def add_repo(self, common_dir: str, key: str, display: str) -> tuple[int, str]:
        """Register a repository under a remote prefix `key` that stays fixed for its life."""
        with self._tx() as db:
            row = db.execute("SELECT id, key FROM repos WHERE common_dir = ?", (common_dir,)).fetchone()
            if row:
                return int(row[0]), str(row[1])
            candidate, n = key, 1
            while db.execute("SELECT 1 FROM repos WHERE key = ?", (candidate,)).fetchone():
                n += 1
                candidate = f"{key}-{n}"
            cur = db.execute(
                "INSERT INTO repos (common_dir, key, display) VALUES (?, ?, ?)", (common_dir, candidate, display)
            )
            return int(cur.lastrowid or 0), candidate

    # --- enqueue ------------------------------------------------------------------------

    def previous_extent(
        self, repo_id: int, agent: str, session_id: str, *, snapshot: str | None = None
    ) -> tuple[int, int] | None:
        """(last line, bytes) of the furthest point of this session already linked to a commit.

        With `snapshot`, only that generation counts: byte and line counts of a rewritten
        transcript's older generation say nothing about the current one. Either way one indexed
        read: the sessions row, or the top of the snapshot's jobs by size (a snapshot file is
        named after its session, so its jobs are that session's).
        """
        if snapshot is None:
            row = self.db.execute(
                "SELECT last_line, bytes FROM sessions WHERE repo_id = ? AND agent = ? AND session_id = ?"
                " AND last_line IS NOT NULL",
                (repo_id, agent, session_id),
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT last_line, bytes FROM jobs INDEXED BY jobs_by_snapshot WHERE snapshot = ?"
                " AND last_line IS NOT NULL AND bytes IS NOT NULL ORDER BY bytes DESC LIMIT 1",
                (snapshot,),
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def latest_snapshot(self, repo_id: int, agent: str, session_id: str) -> tuple[str, int, int, str] | None:
        """(snapshot path, bytes, lines, sha256) of the session's newest snapshot, at the furthest
        extent any job records in it: copies made for rewrites and cherry-picks are newer rows
        with older, shorter extents. Two indexed reads, whatever the session's length."""
        row = self.db.execute(
            "SELECT snapshot FROM sessions WHERE repo_id = ? AND agent = ? AND session_id = ? AND snapshot IS NOT NULL",
            (repo_id, agent, session_id),
        ).fetchone()
        if row is None:
            return None
        best = self.db.execute(
            "SELECT snapshot, bytes, last_line, sha256 FROM jobs INDEXED BY jobs_by_snapshot WHERE snapshot = ?"
            " AND bytes IS NOT NULL AND last_line IS NOT NULL ORDER BY bytes DESC LIMIT 1",
            (row[0],),
        ).fetchone()
        return (str(best[0]), int(best[1]), int(best[2]), str(best[3])) if best else None

    def first_line_ending_at(
        self, repo_id: int, agent: str, session_id: str, last_line: int, *, snapshot: str | None = None
    ) -> int | None:
        """Where the links that end at `last_line` start (index: session, then last line). The
        sessions row remembers it for the furthest link after retention removed its jobs."""
        row = self.db.execute(
            "SELECT MIN(first_line) FROM jobs WHERE agent = ? AND session_id = ? AND repo_id = ? AND last_line = ?"
            " AND (? IS NULL OR snapshot = ?)",
            (agent, session_id, repo_id, last_line, snapshot, snapshot),
        ).fetchone()
        if row and row[0] is not None:
            return int(row[0])
        if snapshot is not None:
            return None
        kept = self.db.execute(
            "SELECT first_line FROM sessions WHERE repo_id = ? AND agent = ? AND session_id = ? AND last_line = ?",
            (repo_id, agent, session_id, last_line),
        ).fetchone()
        return int(kept[0]) if kept and kept[0] is not None else None

    def last_link_time(self, repo_id: int, agent: str, session_id: str) -> float | None:
        """When a commit of this repository was last linked to the session (ingest time)."""
        row = self.db.execute(
            "SELECT last_link_at FROM sessions WHERE repo_id = ? AND agent = ? AND session_id = ?",
            (repo_id, agent, session_id),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def has_job(self, repo_id: int, commit_sha: str, agent: str, session_id: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM jobs WHERE repo_id = ? AND commit_sha = ? AND agent = ? AND session_id = ?",
            (repo_id, commit_sha, agent, session_id),
        ).fetchone()
        return row is not None

    def add(self, job: NewJob, now: float, *, error: str | None = None) -> int | None:
        """Insert a job, pending (or failed when `error` is given); None if it already exists."""
        state = JobState.FAILED if error else JobState.PENDING
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO jobs (repo_id, git_dir, work_tree, commit_sha, agent, session_id,"
                " transcript, snapshot, bytes, first_line, last_line, sha256, remote_path, state,"
                " next_attempt_at, last_error, created_at, updated_at, session_raw)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.repo_id, job.git_dir, job.work_tree, job.commit_sha, job.agent, job.session_id,
                    job.transcript, job.snapshot, job.bytes, job.first_line, job.last_line, job.sha256,
                    job.remote_path, state.value, None if error else now, error, now, now, job.session_raw,
                ),
            )  # fmt: skip
            return int(cur.lastrowid) if cur.rowcount == 1 and cur.lastrowid is not None else None

    # --- the worker's transitions -------------------------------------------------------

    def recover(self, now: float) -> int:
        """Hand back jobs that were in flight when a previous daemon died."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = 'pending', leased_until = NULL, updated_at = ?,"
                " next_attempt_at = COALESCE(next_attempt_at, ?) WHERE state = 'uploading'",
                (now, now),
            )
            return cur.rowcount

    def claim_due(self, now: float, limit: int, lease: float) -> list[Job]:
        with self._tx() as db:
            ids = [
                int(row[0])
                for row in db.execute(
                    # An `uploading` job whose lease ran out was lost by a crashed batch: take it back.
                    "SELECT id FROM jobs WHERE (state = 'pending' AND next_attempt_at <= ?)"
                    " OR (state = 'uploading' AND leased_until < ?) ORDER BY next_attempt_at, id LIMIT ?",
                    (now, now, limit),
                )
            ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            db.execute(
                f"UPDATE jobs SET state = 'uploading', leased_until = ?, updated_at = ? WHERE id IN ({marks})",  # noqa: S608
                (now + lease, now, *ids),
            )
            rows = db.execute(f"SELECT {_JOB_COLUMNS} {_JOB_FROM} WHERE jobs.id IN ({marks})", ids).fetchall()
        return [_job(row) for row in rows]

    def complete(
        self, job_id: int, url: str, now: float, redactions: dict[str, object] | None = None, commit: str | None = None
    ) -> bool:
        """Mark done; with `commit`, only if the job still belongs to it (a rewrite may have moved it)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = 'done', url = ?, attempts = attempts + 1, last_error = NULL,"
                " next_attempt_at = NULL, leased_until = NULL, updated_at = ?, redactions = ?"
                " WHERE id = ? AND (? IS NULL OR commit_sha = ?)",
                (
                    url,
                    now,
                    json.dumps(redactions, sort_keys=True) if redactions is not None else None,
                    job_id,
                    commit,
                    commit,
                ),
            )
            return cur.rowcount == 1

    def complete_all(self, done: Sequence[tuple[int, str, dict[str, object] | None, str]], now: float) -> set[int]:
        """`complete` for each (job id, url, redactions, commit), in one transaction: a batch
        of a burst costs one commit (one fsync) of the queue, not one per job. Returns the ids
        marked done (a job a rewrite moved to another commit meanwhile is not)."""
        marked: set[int] = set()
        with self._tx() as db:
            for job_id, url, redactions, commit in done:
                cur = db.execute(
                    "UPDATE jobs SET state = 'done', url = ?, attempts = attempts + 1, last_error = NULL,"
                    " next_attempt_at = NULL, leased_until = NULL, updated_at = ?, redactions = ?"
                    " WHERE id = ? AND commit_sha = ?",
                    (
                        url,
                        now,
                        json.dumps(redactions, sort_keys=True) if redactions is not None else None,
                        job_id,
                        commit,
                    ),
                )
                if cur.rowcount == 1:
                    marked.add(job_id)
        return marked

    def commits_of(self, job_ids: Sequence[int]) -> dict[int, tuple[str, int | None]]:
        """(commit, first line) of many jobs as they are now, in one read: a rewrite taken in
        while they were uploading may have moved them to a new commit, or given them the start
        of the job it dropped (`retarget`). A job that no longer exists is left out."""
        out: dict[int, tuple[str, int | None]] = {}
        ids = list(job_ids)
        for start in range(0, len(ids), 500):  # below SQLite's limit on bound parameters
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT id, commit_sha, first_line FROM jobs WHERE id IN ({marks})"  # noqa: S608
            for row in self.db.execute(query, chunk):
                out[int(row[0])] = (str(row[1]), None if row[2] is None else int(row[2]))
        return out

    def defer(self, job_id: int, error: str, next_attempt_at: float, now: float) -> None:
        """A transient failure: back to pending, due again at `next_attempt_at`."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'pending', attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ?, leased_until = NULL, updated_at = ? WHERE id = ?",
                (error, next_attempt_at, now, job_id),
            )

    def fail(self, job_id: int, error: str, now: float) -> None:
        """A permanent failure: parked until a human runs `tracekeeper retry`."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'failed', attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = NULL, leased_until = NULL, updated_at = ? WHERE id = ?",
                (error, now, job_id),
            )

    def defer_if_uploading(self, job_id: int, error: str, next_attempt_at: float) -> None:
        """Like `defer`, for a job that may already have reached its outcome before a crash."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'pending', attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ?, leased_until = NULL WHERE id = ? AND state = 'uploading'",
                (error, next_attempt_at, job_id),
            )

    def flush(self, now: float) -> int:
        """Make every backed-off pending job due now."""
        with self._tx() as db:
            return db.execute(
                "UPDATE jobs SET next_attempt_at = ? WHERE state = 'pending' AND next_attempt_at > ?", (now, now)
            ).rowcount

    def retry_failed(self, now: float, ids: list[int] | None = None) -> tuple[int, int]:
        """Re-queue failed jobs (all, or those of `ids`); those that never got a snapshot cannot be
        retried. Returns (re-queued, still failed among the ones asked for)."""
        with self._tx() as db:
            retried = db.execute(
                "UPDATE jobs SET state = 'pending', next_attempt_at = ?, updated_at = ?"
                " WHERE state = 'failed' AND snapshot IS NOT NULL"
                " AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
                (now, now, *_id_list(ids)),
            ).rowcount
            stuck = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = 'failed'"
                " AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
                _id_list(ids),
            ).fetchone()[0]
        return retried, int(stuck)

    def drop_failed(self, ids: list[int] | None = None) -> int:
        """Forget failed jobs (all, or those of `ids`): their commits stay without a link.

        Only failed jobs: a pending or uploading one may be in a batch right now. Snapshots
        nothing refers to any more are collected as usual.
        """
        with self._tx() as db:
            return db.execute(
                "DELETE FROM jobs WHERE state = 'failed' AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
                _id_list(ids),
            ).rowcount

    def unsettled_ids(self) -> list[int]:
        """Jobs pending or uploading now: what a flush waits for."""
        return [
            int(r[0])
            for r in self.db.execute("SELECT id FROM jobs WHERE state IN ('pending', 'uploading') ORDER BY id")
        ]

    def by_ids(self, ids: list[int]) -> list[Job]:
        """The jobs of `ids` that still exist (a rewrite may have merged some away)."""
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} {_JOB_FROM} WHERE jobs.id IN (SELECT value FROM json_each(?))"  # noqa: S608
            " ORDER BY jobs.id",
            (json.dumps(ids),),
        ).fetchall()
        return [_job(row) for row in rows]

    # --- uploads already made (so a late, shorter snapshot never overwrites a longer one) --

    def uploaded(self, store: str, remote_path: str) -> Uploaded | None:
        row = self.db.execute(
            "SELECT bytes, sha256, snapshot, job_id FROM uploads WHERE store = ? AND remote_path = ?",
            (store, remote_path),
        ).fetchone()
        return Uploaded(int(row[0]), str(row[1]), str(row[2]), int(row[3])) if row else None

    def forget_uploads(self, store: str) -> int:
        """The store was created anew: nothing recorded as uploaded into it is there any more."""
        with self._tx() as db:
            return int(db.execute("DELETE FROM uploads WHERE store = ?", (store,)).rowcount)

    def record_upload(self, store: str, remote_path: str, job: Job, now: float) -> None:
        self.record_uploads(store, [(remote_path, job)], now)

    def record_uploads(self, store: str, sent: Sequence[tuple[str, Job]], now: float) -> None:
        """`record_upload` for each (remote path, job) a batch sent, in one transaction."""
        if not sent:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, remote_path) DO UPDATE SET"
                " bytes = excluded.bytes, sha256 = excluded.sha256, snapshot = excluded.snapshot,"
                " job_id = excluded.job_id, uploaded_at = excluded.uploaded_at",
                [(store, path, job.bytes, job.sha256, job.snapshot, job.id, now) for path, job in sent],
            )

    def collectable_snapshots(self, now: float, idle: float) -> list[str]:
        """Snapshot files no unfinished job needs, except a live session's newest (appended to next).

        Only the files whose jobs changed since the last collection (`snapshot_review`, kept by
        triggers) and the newest snapshots of sessions idle for `idle` seconds are looked at,
        each with indexed reads: the cost follows the batch, not the size of the queue.
        """
        cutoff = now - idle
        candidates = [str(row[0]) for row in self.db.execute("SELECT path FROM snapshot_review")]
        candidates += [
            str(row[0])
            for row in self.db.execute(
                "SELECT snapshot FROM sessions INDEXED BY sessions_holding_by_link"
                " WHERE snapshot IS NOT NULL AND last_link_at < ?",
                (cutoff,),
            )
        ]
        out = []
        for path in dict.fromkeys(candidates):
            unfinished = self.db.execute(
                "SELECT 1 FROM jobs INDEXED BY jobs_by_snapshot_state WHERE snapshot = ?"
                " AND state IN ('pending', 'uploading', 'failed') LIMIT 1",
                (path,),
            ).fetchone()
            if unfinished:
                continue
            live = self.db.execute(
                "SELECT 1 FROM sessions WHERE snapshot = ? AND MAX(last_link_at, COALESCE(last_done_at, 0)) >= ?",
                (path, cutoff),
            ).fetchone()
            if live is None:
                out.append(path)
        return out

    def take_collectable(self, now: float, idle: float) -> list[str]:
        """`collectable_snapshots`, and the review list emptied: what was kept is looked at again
        when one of its jobs changes (or its session idles)."""
        paths = self.collectable_snapshots(now, idle)
        with self._tx() as db:
            db.execute("DELETE FROM snapshot_review")
        return paths

    def drop_snapshot(self, snapshot: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET snapshot = NULL WHERE snapshot = ? AND state = 'done'", (snapshot,))
            held = db.execute("SELECT 1 FROM jobs WHERE snapshot = ? LIMIT 1", (snapshot,)).fetchone()
            if held is None:  # no session appends to (or follows) a collected file
                db.execute("UPDATE sessions SET snapshot = NULL, job_id = NULL WHERE snapshot = ?", (snapshot,))

    def references(self, snapshot: str) -> bool:
        """Whether any job still names this snapshot file (one indexed read)."""
        return self.db.execute("SELECT 1 FROM jobs WHERE snapshot = ? LIMIT 1", (snapshot,)).fetchone() is not None

    def retire_done(self, before: float) -> int:
        """Delete done jobs last changed before `before` whose snapshot is already collected.

        What `status`, `show` and `forget` still need of them lives elsewhere: the sessions
        row (extent, last link, transcript, remote path, raw id), the notes in git, and the
        `retired` count that `counts` adds to `done`. A job that still names a snapshot may be
        copied to a rewritten commit and is kept.
        """
        with self._tx() as db:
            gone = db.execute(
                "DELETE FROM jobs WHERE state = 'done' AND snapshot IS NULL AND updated_at < ?", (before,)
            ).rowcount
            if gone:
                db.execute("UPDATE retired SET done = done + ?", (gone,))
        return int(gone)

    # --- reading ------------------------------------------------------------------------

    def followed(self, since: float) -> list[Job]:
        """The newest done job of every session linked since `since`: sessions whose copy we follow.

        A range of the sessions index on the last job done: an idle queue reads nothing.
        """
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM sessions s INDEXED BY sessions_by_done"  # noqa: S608
            " JOIN jobs ON jobs.id = s.job_id JOIN repos ON repos.id = jobs.repo_id"
            " WHERE s.last_done_at >= ? AND s.snapshot IS NOT NULL AND jobs.snapshot IS NOT NULL"
            " AND jobs.transcript IS NOT NULL AND jobs.state = 'done' AND jobs.updated_at >= ?"
            " AND NOT EXISTS (SELECT 1 FROM forgotten f WHERE f.agent = jobs.agent AND f.session_id = jobs.session_id)"
            " ORDER BY jobs.id",
            (since, since),
        ).fetchall()
        return [_job(row) for row in rows]

    # --- forgotten sessions ---------------------------------------------------------------

    def forget(self, agent: str, session_id: str, now: float) -> tuple[float, list[str], int]:
        """Mark a session forgotten and clear what would bring it back; (since when, snapshot
        files to delete, queued uploads cancelled).

        In one transaction: the session is recorded (an earlier date is kept); what this machine
        believes the store holds for its remote paths is dropped, so nothing is skipped as
        "already uploaded"; its snapshots are detached (the caller deletes the files), so
        nothing is followed or copied to a rewritten commit; and its jobs that could still upload
        fail with the reason, never to be retried (they have no snapshot left).
        """
        with self._tx() as db:
            raw = db.execute(
                "SELECT session_raw FROM sessions WHERE agent = ? AND session_id = ? AND session_raw IS NOT NULL"
                " LIMIT 1",
                (agent, session_id),
            ).fetchone()
            db.execute(
                "INSERT INTO forgotten VALUES (?, ?, ?, ?) ON CONFLICT (agent, session_id) DO NOTHING",
                (agent, session_id, raw[0] if raw else None, now),
            )
            since = float(
                db.execute(
                    "SELECT forgotten_at FROM forgotten WHERE agent = ? AND session_id = ?", (agent, session_id)
                ).fetchone()[0]
            )
            snapshots = [
                str(row[0])
                for row in db.execute(
                    "SELECT DISTINCT snapshot FROM jobs WHERE agent = ? AND session_id = ? AND snapshot IS NOT NULL",
                    (agent, session_id),
                )
            ]
            db.execute(
                "DELETE FROM uploads WHERE remote_path IN"
                " (SELECT remote_path FROM jobs WHERE agent = ? AND session_id = ? AND remote_path IS NOT NULL)"
                " OR remote_path IN"
                " (SELECT remote_path FROM sessions WHERE agent = ? AND session_id = ? AND remote_path IS NOT NULL)"
                " OR job_id IN (SELECT id FROM jobs WHERE agent = ? AND session_id = ?)",
                (agent, session_id, agent, session_id, agent, session_id),
            )
            cancelled = db.execute(
                "UPDATE jobs SET state = 'failed', last_error = ?, next_attempt_at = NULL, leased_until = NULL,"
                " updated_at = ? WHERE agent = ? AND session_id = ? AND state != 'done' AND snapshot IS NOT NULL",
                (forgotten_reason(session_id, since), now, agent, session_id),
            ).rowcount
            db.execute("UPDATE jobs SET snapshot = NULL WHERE agent = ? AND session_id = ?", (agent, session_id))
            db.execute(
                "UPDATE sessions SET snapshot = NULL, job_id = NULL WHERE agent = ? AND session_id = ?",
                (agent, session_id),
            )
        return since, snapshots, cancelled

    def forget_sessions(
        self, sessions: list[tuple[str, str]], now: float, discard: Callable[[list[str]], object]
    ) -> list[dict[str, Any]]:
        """`forget` for each (agent, session id), `discard` deleting the snapshot files it frees;
        what each became, as `POST /v1/forget` answers it. One place for the daemon and for the
        CLI when no daemon runs (client/tracekeeper/trail.py `hold_back`)."""
        out = []
        for agent, session_id in sessions:
            since, snapshots, cancelled = self.forget(agent, session_id, now)
            discard(snapshots)
            out.append({"agent": agent, "session_id": session_id, "since": since, "cancelled": cancelled})
        return out

    def forgotten(self) -> list[tuple[str, str]]:
        """Every forgotten (agent, session id): `search` never returns them, whatever its index holds."""
        return [(str(a), str(s)) for a, s in self.db.execute("SELECT agent, session_id FROM forgotten")]

    def forgotten_at(self, agent: str, session_id: str) -> float | None:
        """Since when a session is forgotten, or None if it may be linked."""
        row = self.db.execute(
            "SELECT forgotten_at FROM forgotten WHERE agent = ? AND session_id = ?", (agent, session_id)
        ).fetchone()
        return float(row[0]) if row else None

    def unforget(self, session: str) -> list[tuple[str, str]]:
        """Let a forgotten session be linked again: its id, or an unambiguous start of 6+ characters.

        Returns the (agent, session id) pairs allowed again; raises NotForgotten otherwise.
        """
        with self._tx() as db:
            ids = {str(row[0]) for row in db.execute("SELECT session_id FROM forgotten")}
            if session not in ids:
                prefixed = sorted(sid for sid in ids if len(session) >= 6 and sid.startswith(session))
                if len(prefixed) > 1:
                    raise NotForgotten(f"{session!r} is the start of {len(prefixed)} forgotten session ids; give more")
                if not prefixed:
                    raise NotForgotten(f"{session!r} is not a forgotten session on this machine")
                session = prefixed[0]
            pairs = [
                (str(r[0]), str(r[1]))
                for r in db.execute("SELECT agent, session_id FROM forgotten WHERE session_id = ?", (session,))
            ]
            db.execute("DELETE FROM forgotten WHERE session_id = ?", (session,))
        return pairs

    def retarget(self, repo_id: int, old: str, new: str, now: float) -> list[int]:
        """Move a rewritten commit's jobs to its replacement (amend, rebase).

        Unfinished jobs move (or, when the new commit already has its own job for that
        session, are dropped as duplicates); finished ones are copied as pending jobs for the
        new commit, so its note is written by the same path. Returns the ids to work on.
        """
        with self._tx() as db:
            # An amend's own post-commit already queued the new commit: it inherits the old
            # commit's earlier start, since it replaces that commit's work too; an uploading one
            # as well, since its note is built from the job as it is once uploaded (commits_of).
            db.execute(
                "UPDATE jobs SET first_line = (SELECT MIN(o.first_line) FROM jobs o WHERE o.repo_id = jobs.repo_id"
                " AND o.commit_sha = ? AND o.agent = jobs.agent AND o.session_id = jobs.session_id)"
                " WHERE repo_id = ? AND commit_sha = ? AND state IN ('pending', 'uploading') AND first_line > (SELECT"
                " MIN(o.first_line) FROM jobs o WHERE o.repo_id = jobs.repo_id AND o.commit_sha = ?"
                " AND o.agent = jobs.agent AND o.session_id = jobs.session_id)",
                (old, repo_id, new, old),
            )
            db.execute(
                "UPDATE OR IGNORE jobs SET commit_sha = ?, updated_at = ? WHERE repo_id = ? AND commit_sha = ?"
                " AND state IN ('pending', 'uploading', 'failed')",
                (new, now, repo_id, old),
            )
            db.execute(
                "DELETE FROM jobs WHERE repo_id = ? AND commit_sha = ? AND state IN ('pending', 'uploading')",
                (repo_id, old),
            )
            return _copy_to(db, repo_id, old, new, now, states=("done",))

    def copy_jobs(self, repo_id: int, source: str, target: str, now: float) -> list[int]:
        """Queue the links of `source` again for `target` (a cherry-pick copies a commit)."""
        with self._tx() as db:
            return _copy_to(db, repo_id, source, target, now, states=("pending", "uploading", "done"))

    def commit_of(self, job_id: int) -> str | None:
        """The commit a job belongs to now (a rewrite may have moved it while it was in flight)."""
        row = self.db.execute("SELECT commit_sha FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return str(row[0]) if row else None

    def local_copies(self, agent: str, session_id: str, commit: str | None = None) -> list[tuple[str, str]]:
        """(transcript, snapshot) paths recorded for a session (or one commit of it), newest first.

        For the CLI, which shows or counts what a commit saw from bytes still on this machine.
        """
        rows = self.db.execute(
            "SELECT COALESCE(transcript, ''), COALESCE(snapshot, '') FROM jobs WHERE agent = ? AND session_id = ?"
            " AND (? IS NULL OR commit_sha = ?) ORDER BY id DESC",
            (agent, session_id, commit, commit),
        ).fetchall()
        if not rows:
            # Retention removed the commit's job (or the daemon never had one): the session's own
            # row still knows its transcript, and callers check the bytes against the note's hash.
            try:
                rows = self.db.execute(
                    "SELECT COALESCE(transcript, ''), COALESCE(snapshot, '') FROM sessions"
                    " WHERE agent = ? AND session_id = ? AND transcript IS NOT NULL ORDER BY last_link_at DESC",
                    (agent, session_id),
                ).fetchall()
            except sqlite3.OperationalError:  # a queue from before migration 0005, read by the CLI
                rows = []
        return [(str(r[0]), str(r[1])) for r in rows]

    def unfinished(self, agent: str, session_id: str) -> int:
        """Jobs of a session that may still upload it (pending, uploading, or failed and retryable)."""
        row = self.db.execute(
            # A failed job without a snapshot can never be retried (see retry_failed): not counted.
            "SELECT COUNT(*) FROM jobs WHERE agent = ? AND session_id = ? AND state != 'done' AND snapshot IS NOT NULL",
            (agent, session_id),
        ).fetchone()
        return int(row[0]) if row else 0

    @classmethod
    def peek(cls, path: Path) -> Queue | None:
        """The daemon's queue, read-only, for the CLI; None when there is none (or it is unreadable)."""
        if not path.exists():
            return None
        try:
            queue = cls(path, readonly=True)
            queue.db.execute("SELECT 1 FROM jobs LIMIT 1")
        except sqlite3.Error:
            return None
        return queue

    def repositories(self) -> list[tuple[str, str]]:
        """(common git dir, working tree shown to users) of every repository seen."""
        return [(str(r[0]), str(r[1])) for r in self.db.execute("SELECT common_dir, display FROM repos ORDER BY id")]

    def counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in JobState}
        try:
            rows = self.db.execute("SELECT state, n FROM job_counts").fetchall()
        except sqlite3.OperationalError:  # a queue from before migration 0006, read by the CLI
            rows = self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        for state, n in rows:
            counts[str(state)] = int(n)
        # Done jobs whose rows retention removed are still done (absent from a queue written
        # before migration 0005, which the CLI may read).
        with contextlib.suppress(sqlite3.OperationalError, TypeError):
            counts[JobState.DONE.value] += int(self.db.execute("SELECT done FROM retired").fetchone()[0])
        return counts

    def jobs(self, *, states: tuple[JobState, ...] | None = None, limit: int = 200) -> list[Job]:
        where, args = "", []
        if states:
            where = f"WHERE jobs.state IN ({','.join('?' * len(states))})"
            args = [s.value for s in states]
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} {_JOB_FROM} {where} ORDER BY jobs.id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_job(row) for row in rows]

    def next_due(self) -> float | None:
        row = self.db.execute("SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def oldest_pending(self) -> Job | None:
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} {_JOB_FROM} WHERE jobs.state IN ('pending', 'uploading')"
            " ORDER BY jobs.created_at, jobs.id LIMIT 1"
        ).fetchall()
        return _job(rows[0]) if rows else None

    def referenced_snapshots(self) -> set[str]:
        """Every snapshot file a job names (a scan of the snapshot index: for tests and tools)."""
        return {str(row[0]) for row in self.db.execute("SELECT DISTINCT snapshot FROM jobs WHERE snapshot IS NOT NULL")}
