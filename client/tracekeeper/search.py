"""Full-text search over the sessions linked to a repository's commits (the library behind
`tracekeeper search`, the MCP `search` tool and the web page).

The index (tracekeeperd/searchindex.py, `search.sqlite3` in the daemon's state dir) is kept
current by the daemon as it notes commits, from the redacted bytes it uploaded. A clone has no
such history: `reindex` rebuilds a repository's part from its notes (`tracekeeper pull`), each
session downloaded through its note's URL, checked against the note's sha256 and redacted again
with this machine's rules before a word of it is indexed. Only redacted text is ever indexed or
returned.

Nothing here prints. A `SearchHit`'s ``snippet`` marks each match between `MARK_START` and
`MARK_END` (private-use characters the index strips from transcript text, so a transcript
cannot fake one); `parts` splits a snippet for a renderer, `plain` drops the marks. Snippet text
is hostile input: renderers escape it for their medium.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tracekeeperd import git, searchindex
from tracekeeperd.errors import TracekeeperError
from tracekeeperd.searchindex import MARK_END, MARK_START

from .errors import ClientError

if TYPE_CHECKING:
    from tracekeeperd import notes
    from tracekeeperd.paths import Paths
    from tracekeeperd.redact import Redactor

__all__ = [
    "MARK_END",
    "MARK_START",
    "NotIndexed",
    "ReindexIncomplete",
    "SearchError",
    "SearchHit",
    "SearchQueryError",
    "parts",
    "plain",
    "reindex",
    "search",
]


class SearchError(ClientError):
    """A search that cannot run (no repository, bad limits); the message is one line."""


class SearchQueryError(SearchError):
    """The query is not valid FTS5 syntax: a usage error (exit 2), with how to quote it."""

    exit_code = 2


class NotIndexed(SearchError):
    """This repository is in no index here yet (a fresh clone): `search --reindex` builds it."""


class ReindexIncomplete(SearchError):
    """Some sessions could not be read or verified; the others were indexed."""

    def __init__(self, message: str, *, indexed: int) -> None:
        super().__init__(message)
        self.indexed = indexed


@dataclass(frozen=True)
class SearchHit:
    """One matching turn of a session, in one commit's slice of it.

    ``turn`` is the 1-based transcript line the turn was read from (what `tracekeeper show`
    prints as "line N", and what a session's note range counts); ``url`` the session's object
    in the store, as the commit's note names it.
    """

    commit: str
    agent: str
    session: str
    turn: int
    snippet: str
    url: str


def parts(snippet: str) -> list[tuple[str, bool]]:
    """The snippet as (text, is_match) pieces, in order; empty pieces are left out."""
    out: list[tuple[str, bool]] = []
    for index, piece in enumerate(snippet.split(MARK_START)):
        if index == 0:
            before, match, after = piece, "", ""
        else:
            match, _, after = piece.partition(MARK_END)
            before = ""
        out.extend((text, is_match) for text, is_match in ((before, False), (match, True), (after, False)) if text)
    return out


def plain(snippet: str) -> str:
    """The snippet's text without the match marks (the `--json` shape)."""
    return snippet.replace(MARK_START, "").replace(MARK_END, "")


def _paths(paths: Paths | None) -> Paths:
    if paths is not None:
        return paths
    from tracekeeperd.paths import resolve

    return resolve()


def repo_key(repo: Path) -> tuple[Path, str]:
    """(git dir, the key the index files a repository under): its common git dir, resolved, the
    same for every worktree and the same as the daemon computes from a commit's git dir."""
    try:
        git_dir = git.find_git_dir(repo)
        return git_dir, searchindex.repo_key(git_dir)
    except TracekeeperError as exc:
        raise SearchError(str(exc)) from None


def _forgotten(paths: Paths) -> list[tuple[str, str]]:
    """Sessions forgotten on this machine: never returned, even by an index that predates that."""
    if not paths.db.exists():  # a clone, or no daemon yet: spare importing the queue
        return []
    from tracekeeperd.queue import Queue

    queue = Queue.peek(paths.db)
    if queue is None:
        return []
    try:
        return queue.forgotten()
    except sqlite3.Error:
        return []
    finally:
        queue.close()


def search(
    query: str,
    *,
    repo: Path | None,
    all_repos: bool = False,
    limit: int = 20,
    offset: int = 0,
    paths: Paths | None = None,
) -> list[SearchHit]:
    """The turns matching ``query`` (FTS5 syntax: words, "phrases", AND/OR/NOT, prefix*), best
    first (bm25), in ``repo``'s linked sessions or, with ``all_repos``, in every repository the
    index knows. Raises SearchQueryError for a query FTS5 cannot parse, NotIndexed for a
    repository nothing was indexed for yet."""
    if not query.strip():
        raise SearchQueryError("the search query is empty")
    if limit < 1 or offset < 0:
        raise SearchError(f"bad page: limit must be at least 1 and offset at least 0 (got {limit}, {offset})")
    paths = _paths(paths)
    repos: list[str] | None = None
    key = ""
    if not all_repos:
        _, key = repo_key(repo or Path("."))
        repos = [key]
    with searchindex.connection(paths.search_db, readonly=True) as conn:
        if conn is None or (key and not searchindex.repo_known(conn, key)):
            if all_repos:
                return []
            raise NotIndexed(f"nothing is indexed for this repository yet ({key})")
        try:
            rows = searchindex.query(conn, query, repos=repos, limit=limit, offset=offset, exclude=_forgotten(paths))
        except searchindex.QuerySyntaxError as exc:
            raise SearchQueryError(f"bad search query {query!r}: {exc}") from None
        except sqlite3.Error as exc:
            raise SearchError(f"cannot read the search index {paths.search_db}: {exc}") from None
    return [SearchHit(r.commit, r.agent, r.session, r.line, r.snippet, r.url) for r in rows]


# --- rebuilding from the store --------------------------------------------------------------------


@dataclass
class _Session:
    agent: str
    session: str
    links: list[tuple[str, notes.TraceLink]]  # (commit, link)


def _linked_sessions(git_dir: Path, notes_ref: str) -> dict[str, _Session]:
    """Every live link in the notes, by session URL; a URL tombstoned in any note is left out."""
    from tracekeeperd import notes

    book = notes.all_notes(git_dir, notes_ref)
    dead = {stone.url for text in book.values() for stone in notes.parse_tombstones(text)}
    sessions: dict[str, _Session] = {}
    for sha, text in sorted(book.items()):
        for link in notes.live_links(text, dead):
            entry = sessions.setdefault(link.url, _Session(link.agent, link.session_id, []))
            entry.links.append((sha, link))
    return sessions


def _verified(data: bytes, links: list[tuple[str, notes.TraceLink]]) -> tuple[list[tuple[str, notes.TraceLink]], int]:
    """The links whose prefix of ``data`` has the note's sha256 (one pass, shortest first)."""
    good: list[tuple[str, notes.TraceLink]] = []

    digest = hashlib.sha256()
    done = 0
    by_size = sorted(links, key=lambda item: item[1].bytes)
    bad = 0
    for sha, link in by_size:
        if link.bytes > len(data):
            bad += 1
            continue
        digest.update(data[done : link.bytes])
        done = link.bytes
        if digest.copy().hexdigest() == link.sha256:
            good.append((sha, link))
        else:
            bad += 1
    return good, bad


def reindex(
    repo: Path,
    *,
    paths: Paths | None = None,
    notes_ref: str | None = None,
    redactor: Redactor | None = None,
) -> int:
    """Rebuild ``repo``'s part of the index from its notes and the store; the number of turns indexed.

    Every session is read as `show` reads it (this machine's snapshot if it has one, else the
    store), each link checked against its note's sha256, and the bytes redacted again with this
    machine's rules before indexing. A store this user may not read stops it at once
    (show.StoreUnreadable) before the index is touched; sessions that are missing or do not
    verify are skipped, and ReindexIncomplete says so after the rest is indexed.
    """
    from tracekeeperd import redact
    from tracekeeperd.config import load

    from . import show

    paths = _paths(paths)
    if notes_ref is None or redactor is None:
        config = load()
        notes_ref = notes_ref or config.notes_ref
        redactor = redactor or redact.from_settings(config.redaction)
    git_dir, key = repo_key(repo)
    fetched: list[tuple[str, _Session, bytes]] = []
    problems: list[str] = []
    for url, entry in _linked_sessions(git_dir, notes_ref).items():
        longest = max(entry.links, key=lambda item: item[1].bytes)
        try:
            trail = show.load(paths, longest[0], longest[1], redactor)
        except show.StoreUnreadable:
            raise
        except show.ShowError as exc:
            problems.append(f"{entry.agent} session {entry.session}: {exc}")
            continue
        good, bad = _verified(trail.data, entry.links)
        if bad:
            problems.append(f"{entry.agent} session {entry.session}: {bad} link(s) do not match their note's sha256")
        if not good:
            continue
        end = max(link.bytes for _, link in good)
        try:
            data = redactor.redact_bytes(trail.data[:end])[0]  # what anyone downloads is redacted again here
            if data.count(b"\n") != trail.data[:end].count(b"\n"):  # turns would land on other lines
                raise redact.RedactionError("redaction changed the number of lines")
        except redact.RedactionError as exc:
            problems.append(f"{entry.agent} session {entry.session}: redaction failed, not indexed: {exc}")
            continue
        fetched.append((url, _Session(entry.agent, entry.session, good), data))
    added = 0
    try:
        with searchindex.connection(paths.search_db) as conn:
            assert conn is not None
            searchindex.drop_repo(conn, key)
            searchindex.register_repo(conn, key)
            for url, entry, data in fetched:
                links = [searchindex.Link(key, sha, link.first_line, link.last_line) for sha, link in entry.links]
                added += searchindex.index_session(
                    conn,
                    url=url,
                    agent=entry.agent,
                    session=entry.session,
                    source=io.BytesIO(data),
                    size=len(data),
                    links=links,
                )
    except sqlite3.Error as exc:
        raise SearchError(f"cannot write the search index {paths.search_db}: {exc}") from None
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ReindexIncomplete(f"indexed {added} turn(s); not indexed: {problems[0]}{more}", indexed=added)
    return added
