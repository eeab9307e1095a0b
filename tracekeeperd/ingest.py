"""RECEIVE -> PERSIST: turn one commit event into durable jobs, one per linked session.

Runs on the daemon's database thread (blocking I/O, never on the event loop). Everything a
commit saw is captured here, at commit time: which sessions were active and how far each
transcript had got, copied into a snapshot. After this returns, the transcript may be
rewritten or deleted and the commit still gets exactly what it saw.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from . import active as active_mod
from . import git
from .errors import ActiveFileError, GitError, PermanentError, TransientError
from .queue import NewJob, Queue, forgotten_reason
from .snapshot import Extent, Snapshots, is_document
from .spool import CommitEvent, RewriteEvent

log = logging.getLogger(__name__)

#: A session no hook has reported for this long, with no new transcript lines, is over.
ABANDONED = 12 * 3600.0


@dataclass
class IngestResult:
    job_ids: list[int] = field(default_factory=list)
    #: (git dir, source, target) note copies for the I/O thread, the repository's one note writer.
    copies: list[tuple[Path, str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    note: str | None = None


def normalize_remote(url: str) -> str:
    """`git@host:a/b.git`, `https://u:p@host/a/b` -> `host/a/b`: one identity per project."""
    url = url.strip()
    scp = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$", url)
    if scp and "://" not in url:
        host, path = scp.group(1), scp.group(2)
    else:
        parsed = urlparse(url)
        host, path = (parsed.hostname or ""), parsed.path
    path = path.strip("/").removesuffix(".git")
    return f"{host.lower()}/{path}" if host else path


def repo_key(display: Path, identity: str) -> str:
    """`<dir name>-<8 hex>`: readable, and two repos that share a name never share a prefix."""
    name = active_mod.safe_component(display.name) or "repo"
    return f"{name}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def remote_path(key: str, agent: str, session_id: str) -> str:
    """The recipe's `<repo>/sessions/<agent>-<session_id>.jsonl`, under our unique repo key.

    `session_id` is `active.session_key` of the raw id: one to one, so one file per session.
    """
    return f"{key}/sessions/{agent}-{session_id}.jsonl"


def allowed_roots(extra: tuple[Path, ...] = (), env: dict[str, str] | None = None) -> tuple[Path, ...]:
    """Where transcripts may come from: the agents' own directories plus configured ones."""
    from .agents.roots import transcript_dirs

    return tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in (*transcript_dirs(env), *extra)))


def check_root(transcript: Path, roots: tuple[Path, ...]) -> None:
    """Only transcripts are uploaded: a payload pointing at ~/.ssh/id_ed25519 sends nothing."""
    real = Path(os.path.realpath(transcript.parent)) / transcript.name
    if any(real.is_relative_to(root) for root in roots):
        return
    raise PermanentError(
        f"refusing to upload {transcript}: it is not under a known transcript directory"
        " (add its directory to transcript_roots in config.toml if it really is a transcript)"
    )


#: Finds sessions by worktree and activity time when no hook recorded one (the discovery package).
Discover = Callable[[Path, float | None], list[active_mod.ActiveSession]]
#: A `live` spool file (active file left for the daemon to read) older than the daemon by more
#: than this was written while no daemon was there to read it.
LIVE_GRACE = 2.0
#: Without a parent commit, a session counts as active for this commit within this window.
ROOT_COMMIT_WINDOW = 6 * 3600.0


@dataclass(frozen=True)
class RepoFacts:
    """What ingest needs from git about a repository; it does not change while the daemon runs."""

    common: Path
    #: `remote.origin.url`: the identity a new repository's key is made from.
    identity: str | None


class Ingestor:
    """Commit events -> jobs. `prepare` runs an event's git ahead of time, off the database
    thread (its answers are cached per repository); `ingest` then runs on the database thread
    and only falls back to git for what was not prepared."""

    def __init__(
        self,
        queue: Queue,
        snapshots: Snapshots,
        roots: tuple[Path, ...] | None = None,
        discover: Discover | None = None,
    ) -> None:
        self.started_at = time.time()
        self.queue = queue
        self.snapshots = snapshots
        self.roots = allowed_roots() if roots is None else roots
        self.discover = discover
        #: Per git dir (a linked worktree has its own); read by several threads, set atomically.
        self._facts: dict[Path, RepoFacts] = {}
        #: Commit time of a commit's parent, per (git dir, sha), for discovery; taken once used.
        self._parent_time: dict[tuple[Path, str], float | None] = {}

    # --- git, ahead of the database thread ---------------------------------------------------

    def prepare(self, event: CommitEvent | RewriteEvent) -> None:
        """Ask git now what ingesting `event` will need, so the database thread does not wait on
        a git process (a busy repository, a slow disk) while every other commit and `status`
        wait on it. Failures are left for `ingest`, which reports them with the event."""
        try:
            self._repo_facts(event.git_dir)
            if isinstance(event, CommitEvent):
                key = (event.git_dir, event.sha)
                if key not in self._parent_time and self._may_discover(event):
                    if len(self._parent_time) > 1024:  # prepared, never ingested (a duplicate)
                        self._parent_time.clear()
                    self._parent_time[key] = self._parent_commit_time(event)
        except GitError:
            pass

    def _repo_facts(self, git_dir: Path) -> RepoFacts:
        facts = self._facts.get(git_dir)
        if facts is not None and git_dir.is_dir():
            return facts
        self._facts.pop(git_dir, None)  # gone: git says how, below
        common = git.common_dir(git_dir)
        facts = RepoFacts(common=common, identity=git.remote_url(common))
        self._facts[git_dir] = facts
        return facts

    def _may_discover(self, event: CommitEvent) -> bool:
        """Whether ingest will look for sessions by discovery: `_active` will find no active
        file (read from the event, or from the repository when the hook left it there)."""
        if self.discover is None or event.work_tree is None:
            return False
        if self._stale(event):
            return True
        if self._captured(event):
            return event.active is None
        return not (event.git_dir / active_mod.ACTIVE_FILE).exists()

    def _parent_commit_time(self, event: CommitEvent) -> float | None:
        proc = git.run(event.git_dir, ["log", "-1", "--format=%ct", f"{event.sha}^"], check=False)
        parent = proc.stdout.decode().strip()
        return float(parent) if proc.returncode == 0 and parent.isdigit() else None

    def _discovered(self, event: CommitEvent) -> list[active_mod.ActiveSession]:
        """Sessions that worked in this worktree since the previous commit, found without hooks."""
        if self.discover is None or event.work_tree is None:
            return []
        key = (event.git_dir, event.sha)
        parent = self._parent_time.pop(key) if key in self._parent_time else self._parent_commit_time(event)
        since = parent if parent is not None else event.committed_at - ROOT_COMMIT_WINDOW
        return self.discover(event.work_tree, since)

    def _repo(self, event: CommitEvent) -> tuple[int, str]:
        facts = self._repo_facts(event.git_dir)
        common = facts.common
        known = self.queue.repo(str(common))
        if known:
            return known
        display = event.work_tree or (common.parent if common.name == ".git" else common)
        identity = facts.identity
        key = repo_key(display, normalize_remote(identity) if identity else str(common))
        return self.queue.add_repo(str(common), key, str(display))

    def _active(self, event: CommitEvent) -> bytes | None:
        if self._stale(event):
            log.warning("commit %s: its active sessions were not captured; using discovery", event.sha[:12])
            return None
        if self._captured(event):
            return event.active
        return active_mod.read(event.git_dir / active_mod.ACTIVE_FILE)

    # The two tests `_active` and `_may_discover` (its forecast, for `prepare`) share, so the
    # forecast cannot drift from the decision.

    def _stale(self, event: CommitEvent) -> bool:
        """The hook left the active file to a daemon that then died before reading it: what
        the file says now may name a later session, so it is not this commit's."""
        return event.active_live and event.committed_at < self.started_at - LIVE_GRACE

    @staticmethod
    def _captured(event: CommitEvent) -> bool:
        """The hook captured the file (or its absence) at commit time: trust that."""
        return event.active is not None or (event.spool_file is not None and not event.active_live)

    def ingest(self, event: CommitEvent, now: float | None = None) -> IngestResult:
        now = time.time() if now is None else now
        result = IngestResult()
        if event.made_by == "rebase":
            result.note = "re-created by a rebase: its links follow the original through post-rewrite"
            return result
        if event.made_by == "cherry-pick" and event.copy_of:
            return self._cherry_pick(event, event.copy_of, now, result)
        # Whatever the file holds, it ends as sessions or as a failed job with the reason.
        unreadable: ActiveFileError | None = None
        try:
            raw = self._active(event)
        except ActiveFileError as exc:
            raw, unreadable = None, exc
        discovered = self._discovered(event) if raw is None and unreadable is None else []
        if raw is None and unreadable is None and not discovered:
            result.note = "no active agent session"
            return result
        try:
            repo_id, key = self._repo(event)
        except GitError as exc:
            if event.git_dir.is_dir() and exc.returncode == -1:  # a timeout: the repo is busy, not gone
                raise TransientError(f"git did not answer for {event.git_dir}: {exc}") from exc
            raise PermanentError(f"{event.git_dir} is not a usable git repository: {exc}") from exc
        base = event.work_tree or event.git_dir
        try:
            if unreadable is not None:
                raise unreadable
            sessions = active_mod.parse(raw, base=base) if raw is not None else discovered
        except ActiveFileError as exc:
            reason = f"{exc} ({event.git_dir / active_mod.ACTIVE_FILE})"
            self._record_failure(repo_id, event, reason, session=None, now=now, result=result)
            return result
        if not sessions:
            result.note = "active file names no transcript"
        for session in sessions:
            self._ingest_session((repo_id, key), event, session, now=now, result=result)
        return result

    def _record_failure(
        self,
        repo_id: int,
        event: CommitEvent,
        reason: str,
        *,
        session: active_mod.ActiveSession | None,
        now: float,
        result: IngestResult,
    ) -> None:
        """A failed job, so the reason shows in `status` instead of vanishing in a log."""
        job = NewJob(
            repo_id=repo_id,
            git_dir=str(event.git_dir),
            work_tree=str(event.work_tree) if event.work_tree else None,
            commit_sha=event.sha,
            agent=session.agent if session else "?",
            session_id=session.session_id if session else "?",
            transcript=str(session.transcript) if session else None,
            session_raw=session.session_raw if session else None,
        )
        job_id = self.queue.add(job, now, error=reason)
        if job_id is not None:
            log.warning("commit %s: %s", event.sha[:12], reason)
            result.failed.append(reason)

    def _ingest_session(
        self,
        repo: tuple[int, str],
        event: CommitEvent,
        session: active_mod.ActiveSession,
        *,
        now: float,
        result: IngestResult,
    ) -> None:
        repo_id, key = repo
        if self.queue.has_job(repo_id, event.sha, session.agent, session.session_id):
            return  # a duplicate delivery (socket and spool both fired): already persisted
        forgotten = self.queue.forgotten_at(session.agent, session.session_id)
        if forgotten is not None:
            # The user removed this session (`tracekeeper forget`): no job, no snapshot, no link.
            why = forgotten_reason(session.session_id, forgotten).removeprefix("session ")
            log.warning("commit %s: not linking %s/%s: %s", event.sha[:12], session.agent, session.session_id, why)
            result.note = f"{session.agent}/{session.session_id}: {why}"
            return
        try:
            check_root(session.transcript, self.roots)
        except PermanentError as exc:
            self._record_failure(repo_id, event, str(exc), session=session, now=now, result=result)
            return
        previous = self._previous(repo_id, session)
        reason = self._not_live(repo_id, session, previous, event.committed_at)
        if reason:
            log.info("commit %s: not linking %s/%s: %s", event.sha[:12], session.agent, session.session_id, reason)
            return
        try:
            snapshot, extent = self.snapshots.take(
                session.transcript,
                committed_at=event.committed_at,
                previous=previous,
                new_name=f"{repo_id}-{session.agent}-{session.session_id}-{int(now * 1000)}.jsonl",
            )
        except PermanentError as exc:
            self._record_failure(repo_id, event, str(exc), session=session, now=now, result=result)
            return
        # Line numbers belong to a snapshot generation. A rewritten transcript (a new snapshot
        # although there was one to continue) numbers its lines from 1 again; a continued one
        # counts on from its own jobs only. Without any previous snapshot (collected after the
        # session idled) the session's furthest link is the best guess, except for a whole-file
        # document: each new version of it is a new document, ranged whole.
        continued = previous is not None and snapshot == previous[0]
        rewritten = not continued and (previous is not None or is_document(session.transcript))
        generation = str(snapshot) if previous is not None else None
        before = (
            None
            if rewritten
            else self.queue.previous_extent(repo_id, session.agent, session.session_id, snapshot=generation)
        )
        if before and extent.lines > before[0]:
            first = before[0] + 1
        elif before:
            first = self._first_line_of(repo_id, session, before[0], generation)
        else:
            first = 1
        job = NewJob(
            repo_id=repo_id,
            git_dir=str(event.git_dir),
            work_tree=str(event.work_tree) if event.work_tree else None,
            commit_sha=event.sha,
            agent=session.agent,
            session_id=session.session_id,
            transcript=str(session.transcript),
            snapshot=str(snapshot),
            bytes=extent.bytes,
            first_line=min(first, max(extent.lines, 1)),
            last_line=extent.lines,
            sha256=extent.sha256,
            remote_path=remote_path(key, session.agent, session.session_id),
            session_raw=session.session_raw,
        )
        job_id = self.queue.add(job, now)
        if job_id is not None:
            result.job_ids.append(job_id)

    def _cherry_pick(self, event: CommitEvent, source: str, now: float, result: IngestResult) -> IngestResult:
        """A picked commit carries the original's links: its note now, its queued jobs too."""
        result.copies.append((event.git_dir, source, event.sha))
        try:
            known = self.queue.repo(str(self._repo_facts(event.git_dir).common))
        except GitError as exc:
            raise PermanentError(f"{event.git_dir} is not a usable git repository: {exc}") from exc
        if known is not None:
            result.job_ids += self.queue.copy_jobs(known[0], source, event.sha, now)
        result.note = f"cherry-picked from {source[:12]}"
        return result

    def rewrite(self, event: RewriteEvent, now: float | None = None) -> IngestResult:
        """Commits replaced by amend/rebase: their links follow them to the new SHAs."""
        now = time.time() if now is None else now
        result = IngestResult()
        try:
            known = self.queue.repo(str(self._repo_facts(event.git_dir).common))
        except GitError as exc:
            raise PermanentError(f"{event.git_dir} is not a usable git repository: {exc}") from exc
        if known is None:
            result.note = "no jobs in this repository"
            return result
        for old, new in event.pairs:
            result.job_ids += self.queue.retarget(known[0], old, new, now)
        if result.job_ids:
            log.info("%s rewrote %d commit(s): %d job(s) follow", event.command, len(event.pairs), len(result.job_ids))
        return result

    def _not_live(
        self,
        repo_id: int,
        session: active_mod.ActiveSession,
        previous: tuple[Path, Extent] | None,
        committed_at: float,
    ) -> str | None:
        """Why a session listed in the active file should not be linked to this commit, if so.

        The active file keeps every session seen since the last commit, so a commit links all
        of them; but a session that ended and whose end was already linked, or one nobody has
        seen for ABANDONED seconds and that wrote nothing since its last link, is history.
        """
        last_link = self.queue.last_link_time(repo_id, session.agent, session.session_id)
        if last_link is None:
            return None
        if session.ended_at is not None and last_link >= session.ended_at:
            return "the session ended and its end is already linked"
        if session.seen_at is not None and session.seen_at < committed_at - ABANDONED:
            try:
                size = session.transcript.stat().st_size
            except OSError:
                size = 0
            if previous is None or size <= previous[1].bytes:
                return "no agent activity since its last linked commit"
        return None

    def _previous(self, repo_id: int, session: active_mod.ActiveSession) -> tuple[Path, Extent] | None:
        """The session's newest snapshot and its extent, to append to rather than copy again."""
        latest = self.queue.latest_snapshot(repo_id, session.agent, session.session_id)
        if latest is None:
            return None
        path, size, lines, digest = latest
        return Path(path), Extent(bytes=size, lines=lines, sha256=digest)

    def _first_line_of(
        self, repo_id: int, session: active_mod.ActiveSession, last_line: int, generation: str | None
    ) -> int:
        """No new lines since the last link (several commits in one burst): share its range."""
        first = self.queue.first_line_ending_at(
            repo_id, session.agent, session.session_id, last_line, snapshot=generation
        )
        return first or 1
