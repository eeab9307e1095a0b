"""Read and prune the trail: `tracekeeper log` and `tracekeeper forget`.

`log` is `git log --notes=hf-traces` made readable: one entry per commit, with agent, session,
line range, prompt count and URL of each linked session, and commits without a link marked. It
never downloads: prompt counts come from what this machine already has (the daemon's transcript
and snapshot, the configured `file://` store), else they are shown as "-".

`forget` deletes a session's uploaded trace from the store its URL points at and replaces every
link to it, in every note of the ref, by a tombstone line saying who removed it and when (see
docs/rewrites.md), so nobody chases a dead link and no relink can bring the link back. First it
tells this machine's daemon (or, when none runs, its queue): the session is never linked or
uploaded again until `forget --undo`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tracekeeperd import git, notes
from tracekeeperd.agents import DETECT_LINES, detect, split_lines
from tracekeeperd.config import Config, normalize_notes_ref
from tracekeeperd.errors import GitError, TracekeeperError
from tracekeeperd.notes import Tombstone, all_notes, bury, parse_tombstones, trace_lines
from tracekeeperd.paths import Paths
from tracekeeperd.queue import Queue

from .errors import ClientError
from .usage_view import usage_json


class TrailError(ClientError):
    """Something `log` or `forget` cannot do; the message is one line."""


# --- forget --------------------------------------------------------------------------------


@dataclass
class Target:
    """One uploaded object to forget, and the commits whose notes link it."""

    url: str
    agent: str | None
    session_id: str | None
    commits: list[str] = field(default_factory=list)


@dataclass
class ForgetPlan:
    what: str  # "session <id>" or "commit <sha>"
    targets: list[Target]
    already: list[Tombstone]  # forgotten before: nothing left to do for these
    live_jobs: int  # queued uploads that would bring the trace back
    active: bool  # the session is still the active one in this repository


@dataclass
class ForgetResult:
    plan: ForgetPlan
    deleted: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # url -> why it was not deleted
    tombstoned: list[str] = field(default_factory=list)  # commits whose note changed
    #: what the daemon (or its queue) recorded: {"agent", "session_id", "since", "cancelled"}
    held_back: list[dict[str, Any]] = field(default_factory=list)


def plan_sessions(plan: ForgetPlan) -> list[tuple[str, str]]:
    """(agent, session id) of every session the plan forgets, or forgot before (tombstones)."""
    pairs = [(t.agent, t.session_id) for t in plan.targets] + [(t.agent, t.session_id) for t in plan.already]
    return sorted({(agent, sid) for agent, sid in pairs if agent and sid})


# --- this machine's daemon: forgotten sessions stay forgotten -------------------------------


def _ask_daemon(paths: Paths, body: dict[str, Any]) -> dict[str, Any] | None:
    """The daemon's answer to POST /v1/forget; None when no daemon answers (then: its queue)."""
    from .api import Client, DaemonError, DaemonUnavailable

    try:
        # Waits for the batch in flight (uploads are bounded), which forgetting must not race.
        return Client(paths.socket, timeout=300).request("POST", "/forget", body)
    except DaemonUnavailable:
        return None
    except DaemonError as exc:
        if exc.status == 404:
            import warnings

            from .errors import ClientWarning

            warnings.warn(
                "the running tracekeeperd predates `forget`; restart it so it honours this", ClientWarning, stacklevel=2
            )
            return None
        raise TrailError(str(exc)) from None


def _with_queue(paths: Paths, action: Any) -> Any:
    """Run `action(queue, snapshots)` on the daemon's queue itself (no daemon is running)."""
    from tracekeeperd.snapshot import Snapshots

    try:
        queue = Queue(paths.db)
    except (sqlite3.Error, TracekeeperError) as exc:
        raise TrailError(f"cannot open the queue {paths.db}: {exc}") from None
    try:
        return action(queue, Snapshots(paths.snapshots))
    except sqlite3.Error as exc:
        raise TrailError(f"cannot update the queue {paths.db}: {exc}") from None
    finally:
        queue.close()


def hold_back(paths: Paths, sessions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Record `sessions` as forgotten where this machine's uploads are decided: the running
    daemon, else its queue (read when it starts). Clears their upload and snapshot records and
    cancels their queued uploads; idempotent."""
    if not sessions:
        return []
    answer = _ask_daemon(paths, {"sessions": [{"agent": a, "session_id": s} for a, s in sessions]})
    if answer is not None:
        return [dict(item) for item in answer.get("forgotten", [])]

    def action(queue: Queue, snapshots: Any) -> list[dict[str, Any]]:
        return queue.forget_sessions(sessions, datetime.now(UTC).timestamp(), snapshots.discard)

    result: list[dict[str, Any]] = _with_queue(paths, action)
    return result


def let_go(paths: Paths, session: str) -> list[tuple[str, str]]:
    """`forget --undo`: the session may be linked and uploaded again; (agent, id) pairs."""
    from tracekeeperd.queue import NotForgotten

    answer = _ask_daemon(paths, {"undo": session})
    if answer is not None:
        return [(str(item["agent"]), str(item["session_id"])) for item in answer.get("undone", [])]

    def action(queue: Queue, _snapshots: Any) -> list[tuple[str, str]]:
        try:
            return queue.unforget(session)
        except NotForgotten as exc:
            raise TrailError(str(exc)) from None

    result: list[tuple[str, str]] = _with_queue(paths, action)
    return result


def _links_by_url(book: dict[str, str]) -> dict[str, Target]:
    """Every URL any note links, with its session and the commits linking it."""
    targets: dict[str, Target] = {}
    for sha, text in book.items():
        for link in notes.parse(text):
            target = targets.setdefault(link.url, Target(link.url, link.agent, link.session_id))
            if sha not in target.commits:
                target.commits.append(sha)
        for line in text.splitlines():  # a recipe-only note: the URL line without a meta line
            if line.startswith(notes.LINK_PREFIX):
                url = line[len(notes.LINK_PREFIX) :].strip()
                target = targets.setdefault(url, Target(url, None, None))
                if sha not in target.commits:
                    target.commits.append(sha)
    return targets


def _resolve(git_dir: Path, book: dict[str, str], what: str) -> tuple[str, set[str]] | None:
    """("session <id>", URLs) or ("commit <sha>", URLs) for `what`; None if it names neither."""
    sessions: dict[str, set[str]] = {}
    for text in book.values():
        for link in notes.parse(text):
            sessions.setdefault(link.session_id, set()).add(link.url)
        for stone in parse_tombstones(text):
            if stone.session_id:
                sessions.setdefault(stone.session_id, set()).add(stone.url)
    if what in sessions:
        return f"session {what}", sessions[what]
    proc = git.run(git_dir, ["rev-parse", "--verify", "--quiet", f"{what}^{{commit}}"], check=False)
    if proc.returncode == 0:
        sha = proc.stdout.decode().strip()
        text = book.get(sha, "")
        urls = {link.url for link in notes.parse(text)}
        urls |= {
            line[len(notes.LINK_PREFIX) :].strip() for line in text.splitlines() if line.startswith(notes.LINK_PREFIX)
        }
        urls |= {stone.url for stone in parse_tombstones(text)}
        return f"commit {sha}", urls
    prefixed = [sid for sid in sessions if len(what) >= 6 and sid.startswith(what)]
    if len(prefixed) == 1:
        return f"session {prefixed[0]}", sessions[prefixed[0]]
    if len(prefixed) > 1:
        raise TrailError(f"{what!r} is the start of {len(prefixed)} session ids; give more of it")
    return None


def _live_jobs(paths: Paths, sessions: Iterable[tuple[str | None, str | None]]) -> int:
    """Uploads of these sessions the daemon may still make (read-only look at its queue)."""
    wanted = [(a, s) for a, s in sessions if a and s]
    queue = Queue.peek(paths.db) if wanted else None
    if queue is None:
        return 0
    try:
        return sum(queue.unfinished(agent, session) for agent, session in wanted)
    except sqlite3.Error:
        return 0
    finally:
        queue.close()


def _is_active(git_dir: Path, session_ids: set[str]) -> bool:
    from tracekeeperd.active import ACTIVE_FILE, parse

    path = git_dir / ACTIVE_FILE
    try:
        sessions = parse(path.read_bytes(), base=git_dir)
    except (OSError, TracekeeperError):
        return False
    return any(s.session_id in session_ids and s.ended_at is None for s in sessions)


def plan_forget(repo: Path, notes_ref: str, what: str, paths: Paths) -> ForgetPlan:
    """What forgetting `what` (a commit or a session id) would delete and which notes it would change."""
    try:
        git_dir = git.find_git_dir(repo)
    except TracekeeperError as exc:
        raise TrailError(str(exc)) from None
    book = all_notes(git_dir, normalize_notes_ref(notes_ref))
    resolved = _resolve(git_dir, book, what)
    if resolved is None:
        raise TrailError(f"{what!r} is neither a commit nor a session id linked in {notes_ref}")
    label, urls = resolved
    links = _links_by_url(book)
    stones = {t.url: t for text in book.values() for t in parse_tombstones(text)}
    targets = [links[url] for url in sorted(urls) if url in links]
    already = [stones[url] for url in sorted(urls) if url in stones and url not in links]
    session_ids = {t.session_id for t in targets if t.session_id}
    return ForgetPlan(
        what=label,
        targets=targets,
        already=already,
        live_jobs=_live_jobs(paths, {(t.agent, t.session_id) for t in targets}),
        active=_is_active(git_dir, session_ids),
    )


def delete_url(url: str) -> None:
    """Delete the object behind a note's URL from its store, with this user's credentials (only on
    the Hub this machine uses, inside its configured local store: a note's URL is the pusher's word)."""
    from tracekeeperd.config import load
    from tracekeeperd.stores import NotAStoreURL, locate_configured

    try:
        store, path = locate_configured(url, load())
    except NotAStoreURL as exc:
        raise TrailError(str(exc) if exc.explains else f"don't know how to delete {url}") from None
    store.delete(path)


def _identity(git_dir: Path) -> str:
    for key in ("user.email", "user.name"):
        proc = git.run(git_dir, ["config", key], check=False)
        value = proc.stdout.decode().strip()
        if value:
            return value
    return "unknown"


def forget(
    repo: Path,
    notes_ref: str,
    plan: ForgetPlan,
    *,
    paths: Paths,
    now: datetime | None = None,
    dry_run: bool = False,
) -> ForgetResult:
    """Hold the plan's sessions back, delete every target from its store, then tombstone its
    links in every note.

    Daemon first: once it knows, nothing uploads the session again, so a deleted object stays
    deleted. Store second, notes third: a link is only declared dead once its object is gone,
    and a run interrupted in between is finished by running it again (a missing object is no
    error, and holding back twice is a no-op).
    """
    result = ForgetResult(plan)
    if dry_run:
        return result
    result.held_back = hold_back(paths, plan_sessions(plan))
    git_dir = git.find_git_dir(repo)
    ref = normalize_notes_ref(notes_ref)
    at = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    by = _identity(git_dir)
    stones: dict[str, Tombstone] = {}
    for target in plan.targets:
        try:
            delete_url(target.url)
        except TrailError as exc:  # our own words already
            result.errors[target.url] = str(exc)
            continue
        except (OSError, TracekeeperError) as exc:
            from .hub_errors import describe

            result.errors[target.url] = describe(exc, access="write")[0]
            continue
        result.deleted.append(target.url)
        stones[target.url] = Tombstone(target.url, target.agent, target.session_id, at, by)
    if not stones:
        return result
    book = all_notes(git_dir, ref)  # fresh: the daemon may have written since the plan
    linking = [sha for sha, text in book.items() if bury(text, stones) is not None]
    # One notes commit; each note is buried as it is when written, so no line is lost to a race.
    written = notes.write(git_dir, ref, {sha: lambda text: bury(text, stones) for sha in linking})
    result.tombstoned.extend(written.changed)
    return result


# --- log -----------------------------------------------------------------------------------


@dataclass
class Session:
    link: notes.TraceLink
    prompts: int | None


@dataclass
class Entry:
    sha: str
    author: str
    date: str
    subject: str
    sessions: list[Session]
    forgotten: list[Tombstone]
    other: bool  # the note has trace lines this version cannot read

    @property
    def traced(self) -> bool:
        return bool(self.sessions)


class PromptCounter:
    """User turns in a link's range, from bytes already on this machine (verified by sha256)."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._sources: dict[tuple[str, str], list[Path]] = {}
        self._data: dict[Path, bytes | None] = {}
        self._turns: dict[tuple[Path, int], list[int]] = {}
        self._queue: Queue | None = None
        self._queue_tried = False
        self._config: Config | None = None

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()

    def _query(self, agent: str, session: str) -> list[Path]:
        if not self._queue_tried:
            self._queue_tried = True
            self._queue = Queue.peek(self.paths.db)
        if self._queue is None:
            return []
        try:
            rows = self._queue.local_copies(agent, session)
        except sqlite3.Error:
            return []
        seen: dict[str, None] = {}
        for row in rows:
            for value in row:
                if value:
                    seen.setdefault(str(value))
        return [Path(p) for p in seen]

    def _in_local_store(self, url: str) -> Path | None:
        """The file a note's `file://` URL names, if it lies in the configured local store: the
        URL is the pusher's word (any path: a private key, a FIFO that would block `log`), so it
        is read only where `show` would read it (stores.locate_configured)."""
        if urlparse(url).scheme != "file":
            return None
        from tracekeeperd.config import load
        from tracekeeperd.stores import LocalStore, NotAStoreURL, locate_configured

        if self._config is None:
            self._config = load()
        try:
            store, path = locate_configured(url, self._config)
        except NotAStoreURL:
            return None
        return store.root / path if isinstance(store, LocalStore) else None

    def _read(self, path: Path) -> bytes | None:
        if path not in self._data:
            try:
                data = path.read_bytes()
                self._data[path] = data[: data.rfind(b"\n") + 1]
            except OSError:
                self._data[path] = None
        return self._data[path]

    def _user_lines(self, path: Path, data: bytes, link: notes.TraceLink) -> list[int]:
        key = (path, len(data))
        if key not in self._turns:
            lines, _ = split_lines(data)
            fmt = detect(Path(f"{link.agent}-{link.session_id}.jsonl"), lines[:DETECT_LINES])
            numbered = list(enumerate(lines, start=1))
            self._turns[key] = [t.line for t in fmt.turns(numbered) if t.kind == "user"] if fmt else []
        return self._turns[key]

    def count(self, link: notes.TraceLink) -> int | None:
        key = (link.agent, link.session_id)
        if key not in self._sources:
            self._sources[key] = self._query(*key)
        candidates = list(self._sources[key])
        stored = self._in_local_store(link.url)
        if stored is not None:
            candidates.insert(0, stored)
        redacted = getattr(link, "redacted", None) is not None
        for path in candidates:
            data = self._read(path)
            if data is None:
                continue
            verified = len(data) >= link.bytes and hashlib.sha256(data[: link.bytes]).hexdigest() == link.sha256
            # A redacted upload hashes differently from the raw transcript, but keeps its lines
            # one to one: the raw lines of the range hold the same prompts.
            if not verified and not (redacted and data.count(b"\n") >= link.last_line):
                continue
            user = self._user_lines(path, data, link)
            return sum(1 for n in user if link.first_line <= n <= link.last_line)
        return None


def _unborn(repo: Path) -> bool:
    try:
        proc = git.run(None, ["rev-parse", "--verify", "--quiet", "HEAD"], cwd=repo, check=False)
    except GitError:
        return False
    # With --quiet an unborn HEAD fails silently; anything else (no such directory, not a
    # repository) says `fatal:` and is an error, not an empty history.
    return proc.returncode == 1 and not proc.stderr.strip()


def log_entries(
    repo: Path,
    notes_ref: str,
    pathspecs: Iterable[str] = (),
    *,
    rev: str = "HEAD",
    limit: int | None = None,
    paths: Paths,
    count_prompts: bool = True,
) -> list[Entry]:
    """Commits of `rev` (touching `pathspecs`, like `git log -- <paths>`) with their trace links."""
    ref = normalize_notes_ref(notes_ref)
    argv = ["log", f"--notes={ref}", "--format=%x1e%H%x1f%an%x1f%aI%x1f%s%x1f%N"]
    if limit:
        argv.append(f"--max-count={limit}")
    argv += [rev, "--", *pathspecs]
    try:
        proc = git.run(None, argv, cwd=repo, check=False, timeout=120)
    except GitError as exc:
        raise TrailError(str(exc)) from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        if rev == "HEAD" and _unborn(repo):
            return []  # a repository with no commit yet: nothing to list, not an error
        raise TrailError((stderr.splitlines() or ["git log failed"])[-1].removeprefix("fatal: "))
    counter = PromptCounter(paths) if count_prompts else None
    entries: list[Entry] = []
    try:
        for record in proc.stdout.decode(errors="replace").split("\x1e")[1:]:
            sha, author, date, subject, note = [*record.split("\x1f", 4), "", "", "", ""][:5]
            stones = parse_tombstones(note)
            links = notes.live_links(note)
            sessions = [Session(link, counter.count(link) if counter else None) for link in links]
            other = bool(trace_lines(note)) and not links and not stones
            entries.append(Entry(sha.strip(), author, date, subject, sessions, stones, other))
    finally:
        if counter:
            counter.close()
    return entries


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "commit": entry.sha,
        "author": entry.author,
        "date": entry.date,
        "subject": entry.subject,
        "traced": entry.traced,
        "sessions": [
            {
                "agent": s.link.agent,
                "session_id": s.link.session_id,
                "lines": [s.link.first_line, s.link.last_line],
                "bytes": s.link.bytes,
                "prompts": s.prompts,
                "url": s.link.url,
                "usage": usage_json(s.link.usage),
            }
            for s in entry.sessions
        ],
        "forgotten": [
            {"agent": t.agent, "session_id": t.session_id, "url": t.url, "at": t.at, "by": t.by}
            for t in entry.forgotten
        ],
    }
