"""UPLOAD -> NOTE: claim due jobs, upload each session's newest snapshot once, note every commit.

The worker runs one batch at a time on an I/O thread; every queue transition goes through the
database thread. Jobs for the same remote path are coalesced (a rebase that made 50 commits in
one session uploads that session once), and a store that is unreachable closes a gate for the
whole queue, so an offline laptop makes one cheap probe per backoff step instead of spinning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tenacity import RetryCallState, wait_exponential_jitter

from . import git, notes, outgoing
from .config import RetryPolicy
from .errors import GitError, PermanentError, TransientError
from .queue import Job, Queue, forgotten_reason
from .redact import RedactionError, Redactor
from .snapshot import Extent, Snapshots, read_prefix
from .stores import Store, Upload

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long after our last note write a repository is watched for writers that dropped our lines.
REPAIR_WINDOW = 3600.0
#: Newest snapshot of a session that saw no commit for this long is deleted once uploaded.
SNAPSHOT_IDLE = 24 * 3600.0
BATCH_LIMIT = 200
#: Sessions linked to a commit within this window have their remote copy kept current.
FOLLOW_WINDOW = 24 * 3600.0
#: Redacted sessions kept in memory so a growing session is only scanned for its new lines.
REDACTED_CACHE_ENTRIES = 8
REDACTED_CACHE_BYTES = 32 * 1024 * 1024


class DbThread:
    """The one thread that touches SQLite (and snapshot files, which ingest appends to)."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracekeeper-db")

    def run(self, fn: Callable[..., T], *args: object) -> T:
        if threading.current_thread().name.startswith("tracekeeper-db"):
            return fn(*args)
        return self.executor.submit(fn, *args).result()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)


def backoff(policy: RetryPolicy, attempts: int, retry_after: float | None = None) -> float:
    """Seconds until the next try: exponential with jitter, capped, never before Retry-After."""
    wait = wait_exponential_jitter(multiplier=policy.base, max=policy.cap, jitter=policy.jitter)
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempts)
    return max(float(wait(state)), retry_after or 0.0)


#: What a notes ref's storage looked like: (path, inode, size, mtime in ns) per file, or None.
RefStamp = tuple[tuple[str, int, int, int] | None, ...]


def ref_stamp(git_dir: Path, ref: str) -> RefStamp:
    """A fingerprint of `ref` that changes whenever any git moves it, read without running git.

    git keeps a ref as a loose file (rewritten through `<ref>.lock` and a rename), in
    `packed-refs` after `git pack-refs`/`gc`, or, with the reftable backend, in tables listed
    by `reftable/tables.list` (rewritten on every update); all of them live in the common
    dir a linked worktree's `commondir` file names (git's Documentation/gitrepository-layout.txt
    and refs/files-backend.c, refs/reftable-backend.c). A move of the ref rewrites one of these
    files, so the stamp differs; an unchanged stamp means nobody wrote the notes.
    """
    common = git_dir
    with contextlib.suppress(OSError):  # no `commondir`: the repository's own git dir
        common = git_dir / (git_dir / "commondir").read_text().strip()
    stamps: list[tuple[str, int, int, int] | None] = []
    for path in (common / ref, common / "packed-refs", common / "reftable" / "tables.list"):
        try:
            st = path.stat()
        except OSError:
            stamps.append(None)
            continue
        stamps.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


@dataclass
class Gate:
    """Closed while the store is unreachable; the whole queue waits for one probe."""

    failures: int = 0
    closed_until: float = 0.0
    reason: str | None = None


class Worker:
    def __init__(
        self,
        queue: Queue,
        db: DbThread,
        store: Store,
        snapshots: Snapshots,
        *,
        notes_ref: str,
        policy: RetryPolicy,
        redactor: Redactor,
        clock: Callable[[], float] = time.time,
        keep_done: float | None = None,
    ) -> None:
        self.queue = queue
        #: Seconds a done job's row outlives its snapshot (config `keep_done_days`); None: forever.
        self.keep_done = keep_done
        self.db = db
        self.store = store
        self.snapshots = snapshots
        self.notes_ref = notes_ref
        self.policy = policy
        self.clock = clock
        self.gate = Gate()
        self.store_id = store.ident()
        #: Repositories whose notes we wrote, and when: watched for a while by `repair_notes`.
        self._noted_in: dict[Path, float] = {}
        #: Per watched repository, how its notes ref looked before our last write or repair there.
        self._ref_seen: dict[Path, RefStamp] = {}
        #: The store's `generation` when we last looked (a store starts at 0, having created nothing).
        self._generation = 0
        self.redactor = redactor
        self._redacted: dict[str, tuple[str, outgoing.Outgoing]] = {}

    # --- scheduling -------------------------------------------------------------------

    def wait_time(self) -> float | None:
        """Seconds until there may be work; None when the queue has nothing pending at all."""
        due = self.db.run(self.queue.next_due)
        if due is None:
            return None
        return max(0.0, max(due, self.gate.closed_until) - self.clock())

    def open_gate(self) -> None:
        self.gate = Gate()

    def reconfigure(self, store: Store, *, notes_ref: str, policy: RetryPolicy, redactor: Redactor) -> None:
        """A reloaded configuration (SIGHUP). Call it on the I/O thread, between batches, so no
        batch mixes two stores; redacted copies made under the old rules are dropped."""
        self.store, self.store_id = store, store.ident()
        self._generation = 0  # a new store object: anything it created since is news
        self.notes_ref, self.policy = notes_ref, policy
        self.redactor = redactor
        self.drop_redacted()
        self.open_gate()

    def drop_redacted(self) -> None:
        """Forget the in-memory redacted sessions (new rules, or a session the user forgot)."""
        self._redacted.clear()

    def run_once(self) -> int:
        """Process one batch of due jobs; returns how many were claimed."""
        now = self.clock()
        if now < self.gate.closed_until:
            return 0
        jobs = self.db.run(self.queue.claim_due, now, BATCH_LIMIT, self.policy.attempt_timeout * 2)
        if not jobs:
            return 0
        try:
            self.process(jobs)
        except Exception as exc:
            # A bug must not strand claimed jobs in `uploading`: hand them back with the reason.
            log.exception("batch of %d job(s) crashed", len(jobs))
            for job in jobs:
                self.db.run(self.queue.defer_if_uploading, job.id, f"internal error: {exc!r}", self.clock() + 60)
        self.collect_snapshots()
        return len(jobs)

    # --- one batch --------------------------------------------------------------------

    def process(self, jobs: list[Job]) -> None:
        jobs = self._drop_forgotten(jobs)
        if not jobs:
            return
        try:
            self.store.preflight()
            self.store_id = self.store.ident()
        except TransientError as exc:
            self._close_gate(exc)
            self._defer_all(jobs, exc)
            return
        except PermanentError as exc:
            self._fail_all(jobs, str(exc))
            return
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            if not job.remote_path or not job.snapshot or job.bytes is None:
                self._fail(job, "job has no snapshot to upload")
                continue
            groups[job.remote_path].append(job)
        self._store_renewed()  # a bucket created just now holds none of what was recorded
        uploads, chosen, views = self._plan(groups)
        if groups:  # even with nothing to send: the store checks it still exists before we note
            try:
                failed = self.store.put(uploads)
            except TransientError as exc:
                self._close_gate(exc)
                self._defer_all([j for g in groups.values() for j in g], exc)
                return
            except PermanentError as exc:
                self._fail_all([j for g in groups.values() for j in g], str(exc))
                return
            # Created anew by this put, before it sent anything (Store.put): what it sent is there,
            # what the queue recorded as "already there" is not, and its links would be dead.
            renewed = self._store_renewed()
            for path, error in failed.items():
                for job in groups.pop(path, []):
                    self._fail(job, f"the store rejected {path}: {error}")
            now = self.clock()
            for path, job in chosen.items():
                if path in groups:
                    self.db.run(self.queue.record_upload, self.store_id, path, job, now)
            if renewed:
                for path in [p for p in groups if p not in chosen]:
                    for job in groups.pop(path):  # planned again at once, now with nothing recorded
                        self.db.run(self.queue.defer, job.id, "the store was created anew; uploading again", now, now)
        self.gate = Gate()
        self._note_all([(job, views[job.id]) for group in groups.values() for job in group])

    def _drop_forgotten(self, jobs: list[Job]) -> list[Job]:
        """Fail the jobs of sessions forgotten since they were queued; the rest go on.

        `forget` cancels a session's queued jobs and ingest queues none for it, so this only
        catches a job queued by a daemon from before forgetting reached daemons (its
        `POST /v1/forget` answered 404, so the CLI wrote the record to its queue behind it).
        """
        keep: list[Job] = []
        for job in jobs:
            since = self.db.run(self.queue.forgotten_at, job.agent, job.session_id)
            if since is None:
                keep.append(job)
            else:
                self._fail(job, forgotten_reason(job.session_id, since))
        return keep

    def _plan(
        self, groups: dict[str, list[Job]]
    ) -> tuple[list[Upload], dict[str, Job], dict[int, tuple[int, str, dict[str, int]]]]:
        """One upload per remote path (the newest snapshot, redacted), unless the store has it.

        Also returns, per job, what its note must say about the uploaded bytes: the length and
        sha256 of its redacted prefix, and the secrets removed from its own lines.
        """
        uploads: list[Upload] = []
        chosen: dict[str, Job] = {}
        views: dict[int, tuple[int, str, dict[str, int]]] = {}
        for path, group in list(groups.items()):
            best = max(group, key=lambda j: (j.bytes or 0, j.id))
            try:
                out = self._outgoing(path, best)
                for job in group:
                    view = out if job.snapshot == best.snapshot else self._outgoing(None, job)
                    length, digest = view.prefix(job.last_line or 0)
                    views[job.id] = (length, digest, view.counts(job.first_line or 1, job.last_line or 0))
            except FileNotFoundError as exc:
                for job in groups.pop(path):
                    self._fail(job, f"snapshot unreadable: {exc}")
                continue
            except (OSError, PermanentError) as exc:  # being extended right now: try again shortly
                for job in groups.pop(path):
                    self._defer(job, TransientError(f"snapshot not readable yet: {exc}"))
                continue
            except RedactionError as exc:
                for job in groups.pop(path):
                    self._fail(job, f"redaction failed, nothing uploaded: {exc}")
                continue
            held = self.db.run(self.queue.uploaded, self.store_id, path)
            if held and ((held.snapshot == best.snapshot and held.bytes >= (best.bytes or 0)) or held.job_id > best.id):
                continue  # the store already has these bytes (or a newer generation of the session)
            uploads.append(Upload(remote_path=path, data=bytes(out.data)))
            chosen[path] = best
        return uploads, chosen, views

    def _outgoing(self, remote_path: str | None, job: Job) -> outgoing.Outgoing:
        """The job's snapshot prefix, redacted; a session's last one is kept to extend next time."""
        raw = read_prefix(Path(job.snapshot or ""), job.bytes or 0)
        cached = self._redacted.get(remote_path) if remote_path else None
        previous = cached[1] if cached and cached[0] == job.snapshot else None
        out = outgoing.extend(previous, raw, self.redactor)
        if remote_path:
            self._redacted.pop(remote_path, None)
            if len(out.data) <= REDACTED_CACHE_BYTES:
                self._redacted[remote_path] = (job.snapshot or "", out)
                while len(self._redacted) > REDACTED_CACHE_ENTRIES:
                    self._redacted.pop(next(iter(self._redacted)))
        return out

    def _link(self, job: Job, view: tuple[int, str, dict[str, int]]) -> notes.TraceLink:
        length, digest, counts = view
        return notes.TraceLink(
            url=self.store.url(job.remote_path or ""),
            agent=job.agent,
            session_id=job.session_id,
            first_line=job.first_line or 1,
            last_line=job.last_line or 0,
            bytes=length,
            sha256=digest,
            redacted={"counts": counts, "ruleset": self.redactor.ruleset_id},
        )

    def _note_all(self, batch: list[tuple[Job, tuple[int, str, dict[str, int]]]]) -> None:
        """Every uploaded job's link, in one notes commit per repository (notes.add)."""
        by_repo: dict[str, list[tuple[Job, notes.TraceLink]]] = defaultdict(list)
        for claimed, view in batch:
            current = self.db.run(self.queue.commit_of, claimed.id)
            if current is None:
                continue  # dropped: a rewrite replaced the commit, whose own job carries the link
            job = dataclasses.replace(claimed, commit_sha=current)
            by_repo[job.git_dir].append((job, self._link(job, view)))
        for git_dir_name, items in by_repo.items():
            self._note_repo(Path(git_dir_name), items)

    def _note_repo(self, git_dir: Path, items: list[tuple[Job, notes.TraceLink]]) -> None:
        if not git_dir.exists():
            for job, _ in items:
                self._fail(job, f"repository {job.git_dir} no longer exists")
            return
        try:
            present = git.existing_commits(git_dir, [job.commit_sha for job, _ in items])
        except GitError as exc:
            self._defer_all([job for job, _ in items], TransientError(str(exc)))
            return
        live: list[tuple[Job, notes.TraceLink]] = []
        lines: dict[str, list[str]] = {}
        for job, link in items:
            if job.commit_sha not in present:
                # A note on a missing object is accepted by git; nobody would ever see it.
                self._fail(job, f"commit {job.commit_sha[:12]} no longer exists in {job.repo_display}")
                continue
            live.append((job, link))
            lines.setdefault(job.commit_sha, []).extend(link.lines())
        if not live:
            return
        try:
            seen = ref_stamp(git_dir, self.notes_ref)
            notes.add(git_dir, self.notes_ref, lines)
            self._noted_in[git_dir], self._ref_seen[git_dir] = self.clock(), seen
        except TransientError as exc:
            self._defer_all([job for job, _ in live], exc)
            return
        except GitError as exc:
            self._defer_all([job for job, _ in live], TransientError(str(exc)))
            return
        for job, link in live:
            if not self.db.run(self.queue.complete, job.id, link.url, self.clock(), link.redacted, job.commit_sha):
                # A rewrite moved the job to another commit while we wrote this note: note that one too.
                self.db.run(
                    self.queue.defer, job.id, "moved to a rewritten commit; noting it next", self.clock(), self.clock()
                )
                continue
            log.info("noted %s %s/%s -> %s", job.commit_sha[:12], job.agent, job.session_id, link.url)

    def _store_renewed(self) -> bool:
        """Whether the store created its bucket (or directory) since we last looked.

        If it did, every upload the queue recorded for it went into a container that no longer
        exists: those records are dropped so the next plan uploads the sessions again, instead
        of noting links to objects that are gone (a bucket deleted while the daemon runs).
        """
        if self.store.generation == self._generation:
            return False
        self._generation = self.store.generation
        self.db.run(self.queue.forget_uploads, self.store_id)
        log.warning("store %s was created anew; what was uploaded before is uploaded again", self.store_id)
        return True

    # --- outcomes ---------------------------------------------------------------------

    def _close_gate(self, exc: TransientError) -> None:
        self.gate.failures += 1
        delay = backoff(self.policy, self.gate.failures, exc.retry_after)
        self.gate.closed_until = self.clock() + delay
        self.gate.reason = str(exc)
        log.warning("store unavailable, next try in %.0fs: %s", delay, exc)

    def _defer(self, job: Job, exc: TransientError) -> None:
        now = self.clock()
        delay = backoff(self.policy, job.attempts + 1, exc.retry_after)
        self.db.run(self.queue.defer, job.id, str(exc), now + delay, now)

    def _defer_all(self, jobs: list[Job], exc: TransientError) -> None:
        for job in jobs:
            self._defer(job, exc)

    def _fail(self, job: Job, reason: str) -> None:
        log.error("job %d (%s %s) failed: %s", job.id, job.commit_sha[:12], job.session_id, reason)
        self.db.run(self.queue.fail, job.id, reason, self.clock())

    def _fail_all(self, jobs: list[Job], reason: str) -> None:
        for job in jobs:
            self._fail(job, reason)

    # --- housekeeping -----------------------------------------------------------------

    def repair_notes(self) -> int:
        """Put back lines of ours that a user's `git notes append/edit` wrote over.

        git's own notes commands have no compare-and-swap (builtin/notes.c reads the note,
        then notes-utils.c moves the ref unchecked), so a user command that started before our
        write can drop our lines after it. `notes.write` repairs that on our next write to the
        repository; this closes the window in between, for repositories we wrote to recently.
        A repository whose notes ref has not moved since we last looked costs a few `stat`s,
        not a git process: only another write can have dropped our lines.
        """
        now = self.clock()
        repaired = 0
        for git_dir, at in list(self._noted_in.items()):
            if now - at > REPAIR_WINDOW or not git_dir.exists():
                del self._noted_in[git_dir]
                self._ref_seen.pop(git_dir, None)
                continue
            # Taken before the repair, so a write during it is seen on the next tick.
            seen = ref_stamp(git_dir, self.notes_ref)
            if seen == self._ref_seen.get(git_dir):
                continue
            try:
                self._ref_seen[git_dir] = seen
                if notes.repair(git_dir, self.notes_ref).restored:
                    repaired += 1
                    log.warning("put back trace lines another notes writer dropped in %s", git_dir)
            except (TransientError, GitError) as exc:
                self._ref_seen.pop(git_dir, None)  # look again next tick
                log.info("notes repair in %s postponed: %s", git_dir, exc)
        return repaired

    # --- following linked sessions ---------------------------------------------------

    def refresh_sessions(self, debounce: float) -> int:
        """Bring the remote copy of every recently linked session up to date with its transcript.

        A session usually goes on after the commit that linked it; its URL should show the
        whole session while each note keeps its own range. A transcript is re-uploaded once it
        has been quiet for `debounce` seconds (so also once more after the session ends), only
        its new lines are snapshotted and redacted, and no note changes.
        """
        now = self.clock()
        if now < self.gate.closed_until:
            return 0
        refreshed = 0
        for job in self.db.run(self.queue.followed, now - FOLLOW_WINDOW):
            try:
                st = os.stat(job.transcript or "")
            except OSError:
                continue  # deleted: the store keeps what was uploaded
            held = self.db.run(self.queue.uploaded, self.store_id, job.remote_path or "")
            if held is None or st.st_size <= held.bytes or st.st_mtime > now - debounce:
                continue
            try:
                if self._refresh(job, now):
                    refreshed += 1
            except TransientError as exc:
                self._close_gate(exc)
                break
            except (PermanentError, RedactionError, OSError) as exc:
                log.warning("could not refresh %s/%s: %s", job.agent, job.session_id, exc)
        return refreshed

    def _refresh(self, job: Job, now: float) -> bool:
        assert job.snapshot and job.transcript and job.remote_path and job.bytes is not None
        previous = (Path(job.snapshot), Extent(bytes=job.bytes, lines=job.last_line or 0, sha256=job.sha256 or ""))
        snapshot, extent = self.db.run(
            lambda: self.snapshots.take(
                Path(job.transcript or ""),
                committed_at=now,
                previous=previous,
                new_name=f"refresh-{job.id}-{int(now * 1000)}.jsonl",
            )
        )
        if snapshot != previous[0]:
            self._discard_snapshot(snapshot)  # rewritten, not grown: only a commit may link that
            return False
        if extent.bytes <= job.bytes:
            return False
        grown = dataclasses.replace(job, bytes=extent.bytes, last_line=extent.lines, sha256=extent.sha256)
        self.store.preflight()
        out = self._outgoing(job.remote_path, grown)
        failed = self.store.put([Upload(remote_path=job.remote_path, data=bytes(out.data))])
        if failed:
            raise PermanentError(failed[job.remote_path])
        self.db.run(self.queue.record_upload, self.store_id, job.remote_path, grown, self.clock())
        log.info("refreshed %s/%s: %d lines now at %s", job.agent, job.session_id, extent.lines, job.remote_path)
        return True

    def _discard_snapshot(self, snapshot: Path) -> None:
        self.db.run(self.snapshots.forget, snapshot)

    def collect_snapshots(self) -> int:
        """Delete snapshot files nothing needs any more (on the db thread: ingest appends there),
        then retire done jobs older than the retention (one indexed delete)."""

        def collect() -> int:
            paths = self.queue.take_collectable(self.clock(), SNAPSHOT_IDLE)
            for path in paths:
                self.snapshots.forget(Path(path))
                self.queue.drop_snapshot(path)
            root = self.snapshots.root
            # One indexed read per file left in the directory (live sessions' snapshots).
            orphans = [p for p in root.iterdir() if not self.queue.references(str(p))] if root.exists() else []
            for orphan in orphans:
                self.snapshots.forget(orphan)
            if self.keep_done is not None:  # after the drops above: rows they freed may go too
                self.queue.retire_done(self.clock() - self.keep_done)
            return len(paths) + len(orphans)

        return self.db.run(collect)
