"""`tracekeeper show <commit>`: the part of each linked session that led to a commit.

Where the bytes come from, in order: the agent's transcript on this machine (if it still
starts with what the commit saw), the daemon's snapshot, then the store the note points at
(a teammate who fetched the notes gets the same view). Every source is checked against the
note's sha256, so what is shown is provably what the commit saw.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracekeeperd import git, notes
from tracekeeperd.agents import DETECT_LINES, TranscriptFormat, Turn, detect, split_lines
from tracekeeperd.agents.gemini import legacy_json_lines
from tracekeeperd.errors import TracekeeperError

from .errors import ClientError
from .usage_view import usage_json

if TYPE_CHECKING:
    from tracekeeperd.paths import Paths
    from tracekeeperd.redact import Redactor

# The queue, the redactor and the stores are imported where they are used: `why` and `search`
# import this module on their start-up path, and a clone (no queue, nothing local) or a machine
# whose copies need no redaction never uses the first two.
RESULT_LINES = 8
RESULT_CHARS = 600


class ShowError(ClientError):
    """A commit or note that cannot be shown; the message is one line."""


class StoreUnreadable(ShowError):
    """This user may not read the store a note points at (a teammate's bucket, no access).

    Not one trace's problem but the whole reading's: `why` and `search --reindex` stop on it
    (errors_table says what to do) instead of listing every session as unavailable.
    """

    def __init__(self, message: str, *, location: str) -> None:
        super().__init__(message)
        self.location = location


@dataclass
class Trail:
    link: notes.TraceLink
    data: bytes  # complete lines: the whole session as far as known
    source: str  # "transcript", "snapshot", "store"
    verified: bool

    def lines(self, *, full: bool) -> list[tuple[int, bytes]]:
        lines, _ = split_lines(self.data if full else self.data[: self.link.bytes])
        numbered = list(enumerate(lines, start=1))
        if full:
            return numbered
        return [(n, line) for n, line in numbered if self.link.first_line <= n <= self.link.last_line]

    def conversation(self) -> tuple[TranscriptFormat | None, list[tuple[int, bytes]], bool]:
        """The transcript's format, all its numbered lines, and whether it is Gemini's legacy
        whole-file `.json`: not line-oriented, so its "lines" are pseudo-lines, one per message
        (what the note's first/last line count). `show` and `why` both read a trail through this."""
        lines, _ = split_lines(self.data)
        fmt = detect(Path(f"{self.link.agent}-{self.link.session_id}.jsonl"), lines[:DETECT_LINES])
        if fmt is None and self.data.lstrip().startswith(b"{"):
            messages = legacy_json_lines(self.data)
            legacy = detect(Path(f"{self.link.session_id}.json"), messages[:DETECT_LINES])
            return legacy, list(enumerate(messages, start=1)), True
        return fmt, list(enumerate(lines, start=1)), False

    def turns(self, *, full: bool) -> list[Turn]:
        fmt, numbered, legacy = self.conversation()
        if fmt is None:
            return []
        if legacy:  # the whole conversation
            return list(fmt.turns(numbered))
        wanted = {n for n, _ in self.lines(full=full)}
        return [turn for turn in fmt.turns(numbered) if turn.line in wanted]


def resolve_commit(repo: Path, rev: str) -> tuple[Path, str]:
    try:
        git_dir = git.find_git_dir(repo)
    except TracekeeperError as exc:
        raise ShowError(str(exc)) from None
    try:
        sha = git.output(git_dir, ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"])
    except TracekeeperError:
        raise ShowError(f"{rev!r} is not a commit in {repo}") from None
    return git_dir, sha


def matches(data: bytes, link: notes.TraceLink) -> bool:
    """Whether `data` starts with what the commit of `link` saw (its sha256)."""
    return len(data) >= link.bytes and hashlib.sha256(data[: link.bytes]).hexdigest() == link.sha256


def _local_candidates(paths: Paths, sha: str, link: notes.TraceLink) -> list[tuple[str, Path]]:
    """The transcript and snapshot this machine's daemon recorded for the commit, if any."""
    if not paths.db.exists():  # a clone, or no daemon yet: spare importing the queue
        return []
    from tracekeeperd.queue import Queue

    queue = Queue.peek(paths.db)
    if queue is None:
        return []
    try:
        rows = queue.local_copies(link.agent, link.session_id, sha)
    except sqlite3.Error:
        return []
    finally:
        queue.close()
    if not rows:
        return []
    return [(name, Path(value)) for name, value in zip(("transcript", "snapshot"), rows[0], strict=True) if value]


def fetch_url(url: str) -> bytes:
    """Bytes behind a note's URL, with this user's credentials: only from the Hub this machine uses,
    or from inside its configured local store (a note's `file://` URL is the pusher's word)."""
    from tracekeeperd.config import load
    from tracekeeperd.stores import NotAStoreURL, locate_configured

    try:
        store, path = locate_configured(url, load())
    except NotAStoreURL as exc:
        raise ShowError(str(exc) if exc.explains else f"don't know how to fetch {url}") from None
    return store.fetch(path)


def _redacted(data: bytes, link: notes.TraceLink, redactor: Redactor | Callable[[], Redactor] | None) -> bytes:
    """Local bytes as the daemon uploaded them: redacted, if the note says redaction ran."""
    if link.redacted is None or redactor is None:
        return data
    from tracekeeperd.redact import RedactionError

    if callable(redactor):
        redactor = redactor()
    try:
        return redactor.redact_bytes(data)[0]
    except RedactionError:
        return b""


def load(
    paths: Paths, sha: str, link: notes.TraceLink, redactor: Redactor | Callable[[], Redactor] | None = None
) -> Trail:
    """The slice's session as the commit saw it: local copies first, then the store.

    ``redactor`` may be a function that builds one: it is called only if a local copy needs it.
    """
    for source, path in _local_candidates(paths, sha, link):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        data = _redacted(data[: data.rfind(b"\n") + 1], link, redactor)
        if matches(data, link):
            return Trail(link, data, source, True)
    from tracekeeperd.stores.base import MissingTrace, StoreDenied

    try:
        data = fetch_url(link.url)
    except StoreDenied as exc:
        raise StoreUnreadable(f"cannot read the traces: {exc}", location=exc.location) from None
    except MissingTrace as exc:
        raise ShowError(
            f"{exc}; `tracekeeper status` on the machine that made the commit shows whether it is still queued"
        ) from None
    except (OSError, TracekeeperError) as exc:
        from .hub_errors import describe

        reason, hint = describe(exc, access="read")
        raise ShowError(f"cannot fetch {link.url}: {reason}", hint=hint) from exc
    return Trail(link, data, "store", matches(data, link))


def trails(
    repo: Path, rev: str, paths: Paths, notes_ref: str, redactor: Redactor | Callable[[], Redactor] | None = None
) -> tuple[str, list[Trail]]:
    git_dir, sha = resolve_commit(repo, rev)
    text = notes.read(git_dir, notes_ref, sha)
    stones = notes.parse_tombstones(text)
    links = notes.live_links(text)
    if stones and not links:
        forgotten = "; ".join(
            f"its trace ({stone.agent or '?'} session {stone.session_id or '?'}) was forgotten on"
            f" {stone.at or '?'} by {stone.by or '?'}"
            for stone in stones
        )
        raise ShowError(f"commit {sha[:12]}: {forgotten}")
    return sha, [load(paths, sha, link, redactor) for link in links]


def shorten(text: str) -> str:
    lines = text.splitlines()
    clipped = "\n".join(lines[:RESULT_LINES])
    if len(clipped) > RESULT_CHARS:
        clipped = clipped[:RESULT_CHARS]
    hidden = len(text) - len(clipped)
    return clipped + (f"\n… ({hidden} more characters)" if hidden > 0 else "")


def as_json(sha: str, items: list[Trail], *, full: bool) -> dict[str, Any]:
    return {
        "commit": sha,
        "sessions": [
            {
                "agent": t.link.agent,
                "session_id": t.link.session_id,
                "url": t.link.url,
                "lines": [t.link.first_line, t.link.last_line],
                "bytes": t.link.bytes,
                "sha256": t.link.sha256,
                "source": t.source,
                "verified": t.verified,
                "usage": usage_json(t.link.usage),
                "turns": [
                    {
                        "kind": turn.kind,
                        "text": turn.text,
                        "name": turn.name,
                        "line": turn.line,
                        "timestamp": turn.timestamp.isoformat() if turn.timestamp else None,
                    }
                    for turn in t.turns(full=full)
                ],
            }
            for t in items
        ],
    }


def raw(items: list[Trail], *, full: bool) -> bytes:
    return b"".join(line + b"\n" for t in items for _, line in t.lines(full=full))


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
