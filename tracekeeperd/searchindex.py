"""The full-text index of linked sessions: SQLite FTS5, fed only with redacted text.

Why a separate database (``search.sqlite3`` in the state dir) and not the queue: indexing a long
session is slow work that must never hold the queue's one database thread, and the index can be
thrown away and rebuilt from the store at any time (`tracekeeper search --reindex`); the queue
cannot. Both the daemon (after it wrote a note, from the very bytes it uploaded) and the CLI
(rebuilding a clone's index from the store) write here through `index_session`, so a teammate's
index holds the same rows as the committer's.

What is indexed is always what left the machine: the redacted prefix `outgoing.py` produced (the
daemon), or the downloaded object redacted once more (the CLI). Raw transcript bytes never reach
this module. A session is parsed in chunks that end where its commits' slices end, so the rows do
not depend on whether the daemon saw those commits one by one or in one batch, or on a reindex.

Rows: ``docs`` (one per uploaded session object, by URL), ``links`` (repository, commit and the
commit's slice of that session), ``turns`` (the transcript line a turn was read from, its kind)
and ``turns_fts`` (its text and tool name; rowid = turns.id). A hit is a turn inside some commit's
slice: the join with ``links`` names the commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import logging

    from .agents import TranscriptFormat
    from .agents.reading import LineReader


def _log() -> logging.Logger:
    """The daemon's logger, looked up when the index thread logs: `tracekeeper search` imports
    this module on its start-up path and never logs, so it does not pay for importing logging."""
    import logging

    return logging.getLogger(__name__)


SCHEMA_VERSION = "1"
#: Snippet highlight markers: private-use characters, removed from indexed text (`clean`), so a
#: transcript can never fake a highlight. Renderers split on them (client `search.parts`).
MARK_START = "\ue000"
MARK_END = "\ue001"
#: Tokens of context a snippet shows around its matches.
SNIPPET_TOKENS = 16
#: The kinds of turn that are searched: prompts, answers, tool calls and their output.
INDEXED_KINDS = frozenset({"user", "assistant", "tool_call", "tool_result"})
BUSY_TIMEOUT_MS = 10_000
READ_MMAP_BYTES = 256 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS repos (id INTEGER PRIMARY KEY, common_dir TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS docs (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    agent TEXT NOT NULL,
    session TEXT NOT NULL,
    lines INTEGER NOT NULL DEFAULT 0,
    -- where line `lines + 1` starts in the redacted object: indexing resumes there
    offset INTEGER NOT NULL DEFAULT 0,
    -- which bytes `offset` is in (the daemon's redacted copy, `outgoing.View.ident`); NULL: unknown
    source TEXT
);
CREATE INDEX IF NOT EXISTS docs_by_session ON docs (agent, session);
CREATE TABLE IF NOT EXISTS links (
    repo_id INTEGER NOT NULL REFERENCES repos(id),
    doc_id INTEGER NOT NULL REFERENCES docs(id),
    commit_sha TEXT NOT NULL,
    first_line INTEGER NOT NULL,
    last_line INTEGER NOT NULL,
    PRIMARY KEY (repo_id, doc_id, commit_sha)
);
CREATE INDEX IF NOT EXISTS links_by_doc ON links (doc_id, first_line, last_line);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    doc_id INTEGER NOT NULL REFERENCES docs(id),
    line INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_doc ON turns (doc_id, line);
CREATE VIRTUAL TABLE IF NOT EXISTS turns_fts USING fts5(
    text, name, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""
#: Columns of `docs` added after the first release of the index, with their declarations. A row
#: that predates them has no `source`, so it is indexed anew from its first line.
_ADDED_COLUMNS = {"offset": "INTEGER NOT NULL DEFAULT 0", "source": "TEXT"}


class QuerySyntaxError(ValueError):
    """FTS5 could not parse the query; the message is SQLite's own one line."""


@dataclass(frozen=True)
class Link:
    """One commit's slice of a session, in one repository (its common git dir)."""

    repo: str
    commit: str
    first_line: int
    last_line: int


@dataclass(frozen=True)
class Row:
    """One search result as the index has it; the client turns it into a `SearchHit`."""

    commit: str
    agent: str
    session: str
    line: int
    snippet: str
    url: str


def open_index(path: Path, *, readonly: bool = False) -> sqlite3.Connection | None:
    """The index database, created (0600, WAL) unless ``readonly``; None when read-only and absent."""
    if readonly:
        if not path.exists():
            return None
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Ranking reads every match's row sizes: mapped pages spare a copy per page read.
        conn.execute(f"PRAGMA mmap_size = {READ_MMAP_BYTES}")
        return conn
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # never readable by others, even briefly
    os.close(fd)
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # a lost tail is rebuilt by the next index or --reindex
    # Deleted rows (a forgotten session) are overwritten on disk, not left in free pages.
    conn.execute("PRAGMA secure_delete = ON")
    conn.executescript(_SCHEMA)
    have = {str(r[1]) for r in conn.execute("PRAGMA table_info(docs)")}
    for column, declaration in _ADDED_COLUMNS.items():  # an index made before they existed
        if column not in have:
            conn.execute(f"ALTER TABLE docs ADD COLUMN {column} {declaration}")
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    conn.commit()
    return conn


def clean(text: str) -> str:
    """Indexed text without the highlight markers, so only the index can mark a match."""
    return text.replace(MARK_START, "\ufffd").replace(MARK_END, "\ufffd")


# --- reading a session ---------------------------------------------------------------------------


def _head(source: BinaryIO, size: int) -> list[bytes]:
    """The first complete lines of a session, without reading all of it."""
    from .agents import DETECT_LINES
    from .agents.reading import LineReader

    reader = LineReader(source, 0, size)
    head: list[bytes] = []
    while len(head) < DETECT_LINES and (item := reader.next()) is not None:
        head.append(item[1])
    return head


def _turn_rows(fmt: TranscriptFormat, numbered: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, str, str, str]]:
    for turn in fmt.turns(numbered):
        if turn.kind in INDEXED_KINDS and turn.text.strip():
            yield turn.line, turn.kind, clean(turn.text), clean(turn.name or "")


# --- writing -------------------------------------------------------------------------------------


def _repo_id(conn: sqlite3.Connection, common_dir: str) -> int:
    conn.execute("INSERT OR IGNORE INTO repos (common_dir) VALUES (?)", (common_dir,))
    row = conn.execute("SELECT id FROM repos WHERE common_dir = ?", (common_dir,)).fetchone()
    return int(row[0])


def repo_key(git_dir: Path) -> str:
    """The key a repository is filed under: its common git dir, resolved, the same for every
    worktree. The daemon (from a commit's git dir) and `search` (from the cwd) both call this."""
    from . import git

    return str(git.common_dir(git_dir).resolve())


def register_repo(conn: sqlite3.Connection, common_dir: str) -> None:
    """Known to the index even with no linked session yet: `search` then finds nothing, quietly."""
    with conn:
        _repo_id(conn, common_dir)


def index_session(
    conn: sqlite3.Connection,
    *,
    url: str,
    agent: str,
    session: str,
    source: BinaryIO,
    size: int,
    links: Sequence[Link],
    source_id: str | None = None,
) -> int:
    """Record ``links`` and index the session's turns up to the end of its last linked slice.

    ``source`` holds the redacted session object (or a prefix of it holding every linked line)
    in its first ``size`` bytes: the daemon's redacted copy on disk, or a clone's download. It is
    read from where the previous call stopped (``docs.offset``), in pieces, so a long session
    costs only its new lines and memory does not grow with it. Returns how many turns were added.

    ``source_id`` names those bytes: a caller passes the same one only while ``source`` grows by
    appending (the daemon: its redacted copy's `outgoing.View.ident`). Any other source (None, or
    a copy redacted anew under the same URL: new rules, a new snapshot) is read from its first
    line, and the session's old turns are dropped first: the offset would fall elsewhere in the new
    bytes, and under new rules some old text is now a secret.
    """
    # The transcript formats load only where sessions are indexed, not for a search.
    from .agents import DETECT_LINES, detect, format_for
    from .agents.gemini import legacy_json_lines
    from .agents.reading import LineReader

    with conn:
        row = conn.execute("SELECT id, lines, offset, source FROM docs WHERE url = ?", (url,)).fetchone()
        if row is None:
            doc = int(
                conn.execute("INSERT INTO docs (url, agent, session) VALUES (?, ?, ?)", (url, agent, session)).lastrowid
                or 0
            )
            done, offset = 0, 0
        else:
            doc, done, offset = int(row[0]), int(row[1]), int(row[2])
            if done and (source_id is None or row[3] != source_id):
                _delete_turns(conn, doc)
                done, offset = 0, 0
                conn.execute("UPDATE docs SET lines = 0, offset = 0, source = NULL WHERE id = ?", (doc,))
        for link in links:
            conn.execute(
                "INSERT OR REPLACE INTO links (repo_id, doc_id, commit_sha, first_line, last_line)"
                " VALUES (?, ?, ?, ?, ?)",
                (_repo_id(conn, link.repo), doc, link.commit, link.first_line, link.last_line),
            )
        ends = [
            int(r[0])
            for r in conn.execute(
                "SELECT DISTINCT last_line FROM links WHERE doc_id = ? AND last_line > ? ORDER BY 1", (doc, done)
            )
        ]
        if not ends:
            return 0
        added = 0
        source.seek(0)
        head = _head(source, size)
        fmt = format_for(agent, session, head)
        if fmt is None:
            return 0
        source.seek(0)
        if detect(Path(f"{agent}-{session}.jsonl"), head[:DETECT_LINES]) is None and source.read(
            min(size, 64)
        ).lstrip().startswith(b"{"):
            # Gemini's legacy whole-file `.json`: pseudo-lines, one per message (as show reads it).
            # One document, read whole: snapshot.py takes it whole too.
            source.seek(0)
            messages = legacy_json_lines(source.read(size))
            fmt = format_for(agent, session, messages)
            assert fmt is not None
            numbered = list(enumerate(messages, start=1))
            for start, end in _chunks(done, ends, len(numbered)):
                added += _insert(conn, doc, _turn_rows(fmt, numbered[start - 1 : end]))
                done = end
        else:
            lines = LineReader(source, offset, size, done + 1)
            for _, end in _chunks(done, ends, None):
                for piece in _pieces(lines, end):
                    added += _insert(conn, doc, _turn_rows(fmt, piece))
                    done, offset = piece[-1][0], lines.offset
                if done < end:  # the data ends before this slice does
                    break
        conn.execute("UPDATE docs SET lines = ?, offset = ?, source = ? WHERE id = ?", (done, offset, source_id, doc))
        return added


#: A slice's new lines go to the turn readers in pieces of about this many bytes (cut at a line
#: end), so indexing a huge first slice holds one piece, not the slice. The cut falls at the same
#: place for the daemon and for a clone's reindex (both start at the same slice ends).
PIECE_BYTES = 8 * 1024 * 1024


def _pieces(lines: LineReader, end: int) -> Iterator[list[tuple[int, bytes]]]:
    """Lines up to number ``end``, in pieces of about PIECE_BYTES."""
    piece: list[tuple[int, bytes]] = []
    held = 0
    while lines.number <= end:
        item = lines.next()
        if item is None:
            break
        piece.append(item)
        held += len(item[1])
        if held >= PIECE_BYTES:
            yield piece
            piece, held = [], 0
    if piece:
        yield piece


def _chunks(done: int, ends: Sequence[int], available: int | None) -> Iterator[tuple[int, int]]:
    """(first, last) line ranges from after ``done`` to each slice end, as far as the data goes
    (``available`` lines; None: the reader stops where the data does)."""
    for slice_end in ends:
        end = slice_end if available is None else min(slice_end, available)
        if end > done:
            yield done + 1, end
            done = end


def _insert(conn: sqlite3.Connection, doc: int, rows: Iterable[tuple[int, str, str, str]]) -> int:
    added = 0
    for line, kind, text, name in rows:
        turn = conn.execute("INSERT INTO turns (doc_id, line, kind) VALUES (?, ?, ?)", (doc, line, kind)).lastrowid
        conn.execute("INSERT INTO turns_fts (rowid, text, name) VALUES (?, ?, ?)", (turn, text, name))
        added += 1
    return added


def copy_links(conn: sqlite3.Connection, common_dir: str, source: str, target: str) -> int:
    """A rewritten commit (amend, rebase, cherry-pick) gets the links of the one it replaces."""
    with conn:
        repo = _repo_id(conn, common_dir)
        cur = conn.execute(
            "INSERT OR IGNORE INTO links (repo_id, doc_id, commit_sha, first_line, last_line)"
            " SELECT repo_id, doc_id, ?, first_line, last_line FROM links WHERE repo_id = ? AND commit_sha = ?",
            (target, repo, source),
        )
        return cur.rowcount


def _delete_turns(conn: sqlite3.Connection, doc: int) -> None:
    conn.execute("DELETE FROM turns_fts WHERE rowid IN (SELECT id FROM turns WHERE doc_id = ?)", (doc,))
    conn.execute("DELETE FROM turns WHERE doc_id = ?", (doc,))


def _delete_docs(conn: sqlite3.Connection, docs: Sequence[int]) -> None:
    for doc in docs:
        _delete_turns(conn, doc)
        conn.execute("DELETE FROM links WHERE doc_id = ?", (doc,))
        conn.execute("DELETE FROM docs WHERE id = ?", (doc,))


def forget_sessions(conn: sqlite3.Connection, sessions: Iterable[tuple[str, str]]) -> int:
    """Drop every row of these (agent, session) pairs: a forgotten session is not searchable,
    and its words are not left in the file either.

    FTS5 (before SQLite 3.42's `secure-delete`) only marks a deleted row's tokens in its index
    segments; 'optimize' rewrites the segments without them, `secure_delete` zeroes the freed
    pages, and the checkpoint carries that into the main file.
    """
    with conn:
        docs = [
            int(r[0])
            for agent, session in sessions
            for r in conn.execute("SELECT id FROM docs WHERE agent = ? AND session = ?", (agent, session))
        ]
        _delete_docs(conn, docs)
    if docs:
        with conn:
            conn.execute("INSERT INTO turns_fts (turns_fts) VALUES ('optimize')")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return len(docs)


def drop_repo(conn: sqlite3.Connection, common_dir: str) -> None:
    """Forget what the index knows about one repository (before a rebuild of it).

    Sessions linked from another repository too keep their turns; the others go. Afterwards the
    FTS index is merged, so deleted text does not linger in its segments.
    """
    with conn:
        row = conn.execute("SELECT id FROM repos WHERE common_dir = ?", (common_dir,)).fetchone()
        if row is None:
            return
        conn.execute("DELETE FROM links WHERE repo_id = ?", (int(row[0]),))
        orphans = [int(r[0]) for r in conn.execute("SELECT id FROM docs WHERE id NOT IN (SELECT doc_id FROM links)")]
        _delete_docs(conn, orphans)
    with conn:
        conn.execute("INSERT INTO turns_fts (turns_fts) VALUES ('optimize')")


# --- reading -------------------------------------------------------------------------------------


def check_query(text: str) -> None:
    """Raise QuerySyntaxError unless FTS5 can parse ``text``.

    Asked of an empty in-memory table with the same columns: there, any error can only come from
    parsing the query, so a locked or damaged index is never mistaken for a user's typo.
    """
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("CREATE VIRTUAL TABLE q USING fts5(text, name)")
        probe.execute("SELECT rowid FROM q WHERE q MATCH ?", (text,)).fetchall()
    except sqlite3.OperationalError as exc:
        raise QuerySyntaxError(" ".join(str(exc).split())) from None
    finally:
        probe.close()


def repo_known(conn: sqlite3.Connection, common_dir: str) -> bool:
    return conn.execute("SELECT 1 FROM repos WHERE common_dir = ?", (common_dir,)).fetchone() is not None


#: How many matches FTS5 ranks into a page's candidates at least, and per result wanted: enough
#: that a page is almost always found in one round even when filters drop most of them.
CANDIDATES = 200
CANDIDATES_PER_RESULT = 4

# The candidates' commits: each (turn id, rank) joined to the slices that hold the turn, filtered.
_PLACE_SQL = (
    "SELECT l.commit_sha, d.agent, d.session, t.line, d.url, t.id, c.value ->> 1"
    " FROM json_each(?) c JOIN turns t ON t.id = c.value ->> 0 JOIN docs d ON d.id = t.doc_id"
    " JOIN links l ON l.doc_id = t.doc_id AND t.line BETWEEN l.first_line AND l.last_line"
    " JOIN repos r ON r.id = l.repo_id"
    " WHERE (? IS NULL OR r.common_dir IN (SELECT value FROM json_each(?)))"
    " AND d.id NOT IN (SELECT value FROM json_each(?))"
    " ORDER BY c.value ->> 1, d.url, t.line, l.commit_sha"
)


def query(
    conn: sqlite3.Connection,
    text: str,
    *,
    repos: Sequence[str] | None,
    limit: int,
    offset: int,
    exclude: Iterable[tuple[str, str]] = (),
) -> list[Row]:
    """Turns matching the FTS5 query ``text``, best first (bm25), one row per (turn, commit).

    ``repos`` are common git dirs (None: every repository). ``exclude`` are (agent, session)
    pairs not to return (sessions forgotten on this machine that a stale index still holds).

    Ranked in two steps so that a common word costs what bm25 costs and no more: FTS5 ranks
    the matches itself and keeps the best ``n`` (``ORDER BY rank LIMIT``, sorted inside the
    virtual table), and only those are joined to their commits, filtered and given snippets
    (joined first, every match's row would be built and its snippet cut before the sort). The
    page is exact, the same as ranking every match with the joins: a row is kept only if its
    rank is strictly better than the worst candidate's (no match left out can tie or beat it);
    when fewer than a page survive that (filters dropped many), ``n`` grows and it runs again.
    """
    if repos is not None and not repos:
        return []
    wanted = json.dumps(list(repos)) if repos is not None else None
    # Resolved to document ids first: an uncorrelated `NOT IN` is computed once, not per match.
    skip = json.dumps(
        [
            int(row[0])
            for agent, session in sorted(set(exclude))
            for row in conn.execute("SELECT id FROM docs WHERE agent = ? AND session = ?", (agent, session))
        ]
    )
    check_query(text)
    want = limit + offset
    n = max(CANDIDATES, CANDIDATES_PER_RESULT * want)
    while True:
        candidates = conn.execute(
            "SELECT rowid, rank FROM turns_fts WHERE turns_fts MATCH ? ORDER BY rank LIMIT ?", (text, n)
        ).fetchall()
        placed = conn.execute(_PLACE_SQL, (json.dumps(candidates), wanted, wanted, skip)).fetchall()
        if len(candidates) < n:  # every match was a candidate
            break
        worst = candidates[-1][1]
        sure = [row for row in placed if row[6] < worst]
        if len(sure) >= want:
            placed = sure
            break
        n *= 4  # grows fast: each round ranks every match again
    page = placed[offset : offset + limit]
    snippets = {
        turn: str(
            conn.execute(
                "SELECT snippet(turns_fts, -1, ?, ?, '…', ?) FROM turns_fts WHERE turns_fts MATCH ? AND rowid = ?",
                (MARK_START, MARK_END, SNIPPET_TOKENS, text, turn),
            ).fetchone()[0]
        )
        for turn in {int(row[5]) for row in page}
    }
    return [Row(str(c), str(a), str(s), int(n), snippets[int(t)], str(u)) for c, a, s, n, u, t, _ in page]


@contextlib.contextmanager
def connection(path: Path, *, readonly: bool = False) -> Iterator[sqlite3.Connection | None]:
    conn = open_index(path, readonly=readonly)
    try:
        yield conn
    finally:
        if conn is not None:
            conn.close()


# --- the daemon's writer -------------------------------------------------------------------------


class Indexer:
    """The daemon's one writer of the index, on a thread of its own.

    The worker hands it a session's redacted bytes after the commit's note is written, so the
    commit -> note path never waits on indexing, and neither the event loop nor the queue's
    database thread runs it. A failure is logged and costs only search results (the index can
    be rebuilt with `tracekeeper search --reindex`); it never fails a job.
    """

    def __init__(self, path: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.path = path
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracekeeper-index")
        self._conn: sqlite3.Connection | None = None
        self._common: dict[str, str] = {}

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = open_index(self.path)
            assert conn is not None
            self._conn = conn
        return self._conn

    def _repo(self, git_dir: str) -> str:
        """`repo_key`, once per git dir: it runs `git rev-parse`."""
        if git_dir not in self._common:
            self._common[git_dir] = repo_key(Path(git_dir))
        return self._common[git_dir]

    def _run(self, what: str, fn: Callable[[], object]) -> bool:
        """False when the executor is shut down (the daemon is stopping) and ``fn`` will never run."""

        def guarded() -> None:
            try:
                fn()
            except Exception:
                _log().exception("search index: %s failed; `tracekeeper search --reindex` rebuilds it", what)

        try:
            self.executor.submit(guarded)
        except RuntimeError:  # shut down: the daemon is stopping
            return False
        return True

    def add(
        self,
        *,
        url: str,
        agent: str,
        session: str,
        source: BinaryIO,
        size: int,
        links: Sequence[tuple[str, str, int, int]],
        source_id: str,
    ) -> None:
        """Index the first ``size`` bytes of ``source`` (redacted; only ever appended to while
        ``source_id`` is the same) for ``links``: (git dir, commit, first line, last line) each.
        Takes ``source`` over: it is closed once read."""

        def work() -> None:
            with source:
                rows = [Link(self._repo(git_dir), commit, first, last) for git_dir, commit, first, last in links]
                added = index_session(
                    self._db(),
                    url=url,
                    agent=agent,
                    session=session,
                    source=source,
                    size=size,
                    links=rows,
                    source_id=source_id,
                )
            _log().debug("search index: %d turn(s) of %s/%s", added, agent, session)

        if not self._run(f"indexing {agent}/{session}", work):
            source.close()  # taken over, but `work` will never run to close it

    def copy(self, git_dir: Path, source: str, target: str) -> None:
        self._run("copying links", lambda: copy_links(self._db(), self._repo(str(git_dir)), source, target))

    def forget(self, sessions: Sequence[tuple[str, str]]) -> None:
        self._run("forgetting sessions", lambda: forget_sessions(self._db(), list(sessions)))

    def wait(self) -> None:
        """Until everything submitted so far is done (tests, and stopping)."""
        self.executor.submit(lambda: None).result()

    def stop(self) -> None:
        self.executor.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
