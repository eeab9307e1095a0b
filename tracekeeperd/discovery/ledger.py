"""The session index's ledger: one SQLite row per candidate file, so a restart re-reads only what changed.

Why SQLite and not a JSON file: the index changes a few rows at a time, many times a second
under load. SQLite upserts just those rows in one small transaction; a JSON ledger would
rewrite every row (megabytes for 10,000 files) or need its own journal to survive a crash
mid-write. The ledger is a cache, never the truth: a row lost to a crash (WAL with
``synchronous=NORMAL`` may lose the last commits on power loss) only means that file's
signature no longer matches and it is read again. A ledger written by another parser
version is discarded whole for the same reason. It lives in its own file, apart from the
job queue, so it can be deleted at any time.

Used from one thread only (the index's worker), like any sqlite3 connection by default.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from .read import Entry

#: Bump when the parsers or the reading rules change what an entry would say about a file.
LEDGER_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, agent TEXT, session_id TEXT, cwd TEXT, project_hash TEXT,
    started_at REAL, last_activity_at REAL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL, offset INTEGER NOT NULL, head_done INTEGER NOT NULL
);
"""
_UPSERT = """
INSERT OR REPLACE INTO files (
    path, agent, session_id, cwd, project_hash, started_at, last_activity_at, size, mtime_ns, ino, offset, head_done
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SELECT = """
SELECT path, agent, session_id, cwd, project_hash, started_at, last_activity_at, size, mtime_ns, ino, offset, head_done
FROM files
"""


class Ledger:
    """Load every entry once at start; afterwards only write what changed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() if _has_meta(db) else None
            if row is not None and row[0] != LEDGER_VERSION:
                db.executescript("DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS meta;")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('version', ?)", (LEDGER_VERSION,))
        except sqlite3.DatabaseError:
            # Corrupt or not a database: the ledger is only a cache, start a new one.
            db.close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('version', ?)", (LEDGER_VERSION,))
        return db

    def load(self) -> list[Entry]:
        rows = self._db.execute(_SELECT).fetchall()
        return [
            Entry(
                path=row[0],
                agent=row[1],
                session_id=row[2],
                cwd=row[3],
                project_hash=row[4],
                started_at=row[5],
                last_activity_at=row[6],
                size=row[7],
                mtime_ns=row[8],
                ino=row[9],
                offset=row[10],
                head_done=bool(row[11]),
            )
            for row in rows
        ]

    def write(self, upserts: Iterable[Entry], deletes: Iterable[str]) -> None:
        """One transaction for a batch of changes."""
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                _UPSERT,
                (
                    (
                        e.path,
                        e.agent,
                        e.session_id,
                        e.cwd,
                        e.project_hash,
                        e.started_at,
                        e.last_activity_at,
                        e.size,
                        e.mtime_ns,
                        e.ino,
                        e.offset,
                        int(e.head_done),
                    )
                    for e in upserts
                ),
            )
            self._db.executemany("DELETE FROM files WHERE path = ?", ((path,) for path in deletes))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


def _has_meta(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is not None
