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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tenacity import RetryCallState, wait_exponential_jitter

from . import notes, outgoing, plumbing, records, tokens
from .config import RetryPolicy
from .errors import GitError, PermanentError, TransientError
from .git import FileStamp, read_common_dir, stat_stamp
from .queue import Job, Queue, forgotten_reason
from .redact import RedactionError, Redactor
from .searchindex import Indexer
from .snapshot import Extent, Snapshots
from .stores import Store, Upload

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long after our last note write a repository is watched for writers that dropped our lines.
REPAIR_WINDOW = 3600.0
#: Newest snapshot of a session that saw no commit for this long is deleted once uploaded.
SNAPSHOT_IDLE = 24 * 3600.0
#: At most this many jobs per batch. A burst over many repositories (a script committing in 100
#: of them round-robin) gives each repository only a few of them, and a batch costs one upload
#: per session and one notes commit per repository: the limit must be far above one job per
#: repository, or each commit pays those alone (bench/bench_fleet.py measured 1.0 job per
#: repository per batch at 0.5 s holds).
BATCH_LIMIT = 5000
#: Sessions linked to a commit within this window have their remote copy kept current.
FOLLOW_WINDOW = 24 * 3600.0
#: A commit that arrives within this long of the one before is part of a burst: claiming waits
#: until the burst has been quiet this long, so the rest of it shares one upload.
COALESCE = 0.1
#: A burst that never goes quiet (a script committing in a loop) is claimed this long after it began.
#: Long enough that a burst spread over many repositories gives each of them several commits per
#: batch (whose cost is per repository and per session, not per commit); only a burst's commits
#: wait this long, and the rest of it is claimed as soon as it is quiet for COALESCE.
COALESCE_MOST = 5.0
#: Repositories whose notes commits a batch writes at once. Each is mostly git (two processes,
#: three kept pipes), so on 2 cores the last batch of a burst over 100 repositories ends in
#: about half the time with a few side by side; more only queue up behind the cores.
NOTE_THREADS = 4


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


def ref_stamp(git_dir: Path, ref: str) -> FileStamp:
    """A fingerprint of `ref` that changes whenever any git moves it, read without running git.

    git keeps a ref as a loose file (rewritten through `<ref>.lock` and a rename), in
    `packed-refs` after `git pack-refs`/`gc`, or, with the reftable backend, in tables listed
    by `reftable/tables.list` (rewritten on every update); all of them live in the common
    dir a linked worktree's `commondir` file names (git's Documentation/gitrepository-layout.txt
    and refs/files-backend.c, refs/reftable-backend.c). A move of the ref rewrites one of these
    files, so the stamp differs; an unchanged stamp means nobody wrote the notes.
    """
    common = read_common_dir(git_dir)
    return stat_stamp(
        (
            os.path.join(common, ref),
            os.path.join(common, "packed-refs"),
            os.path.join(common, "reftable", "tables.list"),
        )
    )


def loose_ref(git_dir: Path, ref: str) -> str | None:
    """The object id `ref`'s loose file names, read without running git (None when it has none:
    packed, reftable, or a symbolic ref).

    The stamp after our own notes write counts as seen only if the ref still names our commit
    once the stamp is taken: a writer that moved it in between changed the file, so its stamp
    is never taken for ours (git's files backend: refs/files-backend.c writes `<oid>\n`)."""
    try:
        text = Path(read_common_dir(git_dir), ref).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return text if text and not text.startswith("ref:") else None


@dataclass
class Gate:
    """Closed while the store is unreachable; the whole queue waits for one probe."""

    failures: int = 0
    closed_until: float = 0.0
    reason: str | None = None


class Arrivals:
    """When commits arrived, so the worker waits only for a burst, never for a lone commit.

    Waiting a fixed moment after every wake-up would share one upload among a burst's commits
    (a rebase, a script), but a lone commit would pay it too: most of its note latency. A
    commit that follows the previous one within `quiet` seconds shows a burst is going on; only
    then is claiming held until the burst has been quiet for `quiet` seconds (and at most `most`
    seconds after it began). Times come from the caller, so tests drive it with injected time.

    It also knows whether the worker sleeps (`Worker.loop` reports each turn's start and end),
    so an arrival wakes it only when that can change what it does: during a hold each commit
    only moves the hold's end later, and a worker already due to turn by then would wake, find
    the hold, and sleep again (one wasted turn on the I/O thread per commit of a burst).
    """

    def __init__(self, quiet: float = COALESCE, most: float = COALESCE_MOST) -> None:
        self.quiet, self.most = quiet, most
        self.last: float | None = None
        self.burst_since: float | None = None
        #: The sleeping worker's next turn (None: nothing due), or busy: `_asleep` False.
        self._asleep = False
        self._due: float | None = None
        self._lock = threading.Lock()  # the event loop records, the I/O thread asks

    def arrived(self, now: float) -> bool:
        """Record a commit; whether to wake the worker for it. Yes when it is busy (only a wake
        makes it look again after its batch), asleep with nothing due, or due only after the
        moment this commit may be claimed (the end of the hold it sets, or now)."""
        with self._lock:
            if self.last is not None and now - self.last <= self.quiet:
                self.burst_since = self.last if self.burst_since is None else self.burst_since
            else:
                self.burst_since = None
            self.last = now
            if not self._asleep or self._due is None:
                return True
            claimable = now if self.burst_since is None else min(now + self.quiet, self.burst_since + self.most)
            return self._due > claimable

    def turning(self) -> None:
        """The worker's turn begins: every arrival wakes it until it sleeps again."""
        with self._lock:
            self._asleep = False

    def sleeping(self, due: float | None) -> None:
        """The worker's turn ended: it turns next at `due` unless woken (None: nothing due)."""
        with self._lock:
            self._asleep, self._due = True, due

    def hold(self, now: float) -> float:
        """Seconds to hold off claiming: 0 unless a burst is still arriving."""
        with self._lock:
            if self.burst_since is None or self.last is None:
                return 0.0
            until = min(self.last + self.quiet, self.burst_since + self.most)
            if now >= until:
                self.burst_since = None  # this burst is claimed; the next commit starts afresh
                return 0.0
            return until - now


@dataclass(frozen=True)
class Tick:
    """What one turn of the worker did, and when the next turn may find work."""

    claimed: int
    #: Seconds to sleep unless woken: 0 to go again at once, None for "until something arrives".
    wait: float | None


class Worker:
    """The UPLOAD -> NOTE side of the queue, driven one turn at a time (`loop`).

    Like huey's consumer (coleifer/huey, huey/consumer.py: `Worker.loop(now=None)`), every turn
    takes its time from its caller: the daemon passes nothing (the clock), tests pass `now` and
    step through backoff, gates and bursts without waiting for any of it.
    """

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
        indexer: Indexer | None = None,
        keep_done: float | None = None,
    ) -> None:
        self.queue, self.db, self.store, self.snapshots = queue, db, store, snapshots
        self.notes_ref, self.policy, self.clock = notes_ref, policy, clock
        #: Seconds a done job's row outlives its snapshot (config `keep_done_days`); None: forever.
        self.keep_done = keep_done
        self.gate = Gate()
        self.store_id = store.ident()
        #: Repositories whose notes we wrote, and when: watched for a while by `repair_notes`.
        self._noted_in: dict[Path, float] = {}
        #: Told of each repository whose notes this worker wrote (the daemon's repository
        #: states recompute it at once rather than at their next sweep).
        self.on_noted: Callable[[Path], None] | None = None
        #: Per watched repository, how its notes ref looked before our last write or repair there.
        self._ref_seen: dict[Path, FileStamp] = {}
        #: The store's `generation` when we last looked (a store starts at 0, having created nothing).
        self._generation = 0
        self.redactor = redactor
        #: Each snapshot's redacted copy on disk, grown by its new lines only (outgoing.py).
        self.copies = outgoing.RedactedCopies(snapshots.redacted)
        #: Temporary prefix copies made for this batch's uploads, deleted once it is sent.
        self._scratch: list[Path] = []
        #: Search index writer: fed, after each note, the redacted bytes that were uploaded.
        self.indexer = indexer
        #: This batch's redacted session per remote path (what was, or already is, in the store).
        self._planned: dict[str, outgoing.View] = {}
        self.arrivals = Arrivals()
        #: Long-lived git processes per repository written to lately: a burst's notes commits
        #: start none per batch; closed after plumbing.IDLE unused (`follow`) and by `close`.
        self.plumbing = plumbing.Pool(clock=self.now)
        #: Writes the notes commits of one batch's repositories side by side (`_note_all`).
        self._noting = ThreadPoolExecutor(max_workers=NOTE_THREADS, thread_name_prefix="tracekeeper-notes")
        #: The time of the turn in progress (`loop(now=...)`); None: ask the clock.
        self._now: float | None = None

    def now(self) -> float:
        return self.clock() if self._now is None else self._now

    @contextlib.contextmanager
    def _at(self, now: float | None) -> Iterator[None]:
        """Every timestamp the turn writes (claims, backoff, notes) is `now`, when given."""
        self._now = now
        try:
            yield
        finally:
            self._now = None

    def loop(self, now: float | None = None) -> Tick:
        """One turn: hold for a burst still arriving, else claim and process one batch."""
        self.arrivals.turning()
        with self._at(now):
            hold = self.arrivals.hold(self.now())
            if hold > 0:
                tick = Tick(0, hold)
            else:
                claimed = self.run_once()
                tick = Tick(claimed, 0.0 if claimed else self.wait_time())
            # A turn that raised stays "busy" above: every arrival wakes the daemon's loop.
            self.arrivals.sleeping(None if tick.wait is None else self.now() + tick.wait)
            return tick

    def follow(self, debounce: float, now: float | None = None) -> int:
        """One turn of the housekeeping between batches: refresh followed sessions, repair notes."""
        with self._at(now):
            done = self.refresh_sessions(debounce) + self.repair_notes()
            self.plumbing.close_idle()
            records.RECORDS.flush()
            return done

    def close(self) -> None:
        """The daemon's stop, after the last batch: the kept git processes end with it, and the
        resume records not written yet are."""
        self._noting.shutdown(wait=True)
        self.plumbing.close()
        records.RECORDS.flush(everything=True)

    # --- scheduling -------------------------------------------------------------------

    def wait_time(self) -> float | None:
        """Seconds until there may be work; None when the queue has nothing pending at all."""
        due = self.db.run(self.queue.next_due)
        if due is None:
            return None
        return max(0.0, max(due, self.gate.closed_until) - self.now())

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
        """Forget the running state of the redacted copies (new rules, or a session the user
        forgot); the copies on disk are checked again (rule set, hashes) before any reuse."""
        self.copies.drop()

    def run_once(self) -> int:
        """Process one batch of due jobs; returns how many were claimed."""
        now = self.now()
        if now < self.gate.closed_until:
            return 0
        jobs = self.db.run(self.queue.claim_due, now, BATCH_LIMIT, self.policy.attempt_timeout * 2)
        if not jobs:
            return 0
        # Read by bench/bench_fleet.py: how well a burst is batched (jobs per notes commit).
        log.debug("claimed %d job(s) in %d repositories", len(jobs), len({job.git_dir for job in jobs}))
        try:
            self.process(jobs)
        except Exception as exc:
            # A bug must not strand claimed jobs in `uploading`: hand them back with the reason.
            log.exception("batch of %d job(s) crashed", len(jobs))
            for job in jobs:
                self.db.run(self.queue.defer_if_uploading, job.id, f"internal error: {exc!r}", self.now() + 60)
        self.collect_snapshots()
        return len(jobs)

    # --- one batch --------------------------------------------------------------------

    def process(self, jobs: list[Job]) -> None:
        self._planned = {}
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
            finally:
                self._clear_scratch()
            # Created anew by this put, before it sent anything (Store.put): what it sent is there,
            # what the queue recorded as "already there" is not, and its links would be dead.
            renewed = self._store_renewed()
            for path, error in failed.items():
                for job in groups.pop(path, []):
                    self._fail(job, f"the store rejected {path}: {error}")
            sent = [(path, job) for path, job in chosen.items() if path in groups]
            self.db.run(self.queue.record_uploads, self.store_id, sent, self.now())  # one transaction
            now = self.now()
            if renewed:
                for path in [p for p in groups if p not in chosen]:
                    for job in groups.pop(path):  # planned again at once, now with nothing recorded
                        self.db.run(self.queue.defer, job.id, "the store was created anew; uploading again", now, now)
        self.gate = Gate()
        self._note_all([(job, views[job.id]) for group in groups.values() for job in group])
        self._planned = {}  # handed to the index thread; a long session is not kept here too

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
        self._clear_scratch()  # a batch that crashed before its put
        uploads: list[Upload] = []
        chosen: dict[str, Job] = {}
        views: dict[int, tuple[int, str, dict[str, int]]] = {}
        for path, group in list(groups.items()):
            best = max(group, key=lambda j: (j.bytes or 0, j.id))
            by_snapshot: dict[str, list[Job]] = defaultdict(list)
            for job in group:
                by_snapshot[job.snapshot or ""].append(job)
            try:
                # One redaction pass per snapshot: the prefixes of all its jobs come out of it.
                for snapshot, members in by_snapshot.items():
                    top = best if snapshot == best.snapshot else max(members, key=lambda j: (j.bytes or 0, j.id))
                    view = self._view(top, [job.last_line or 0 for job in members])
                    if snapshot == best.snapshot:
                        out = view
                    for job in members:
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
            self._planned[path] = out
            held = self.db.run(self.queue.uploaded, self.store_id, path)
            if held and ((held.snapshot == best.snapshot and held.bytes >= (best.bytes or 0)) or held.job_id > best.id):
                continue  # the store already has these bytes (or a newer generation of the session)
            uploads.append(Upload(remote_path=path, data=self._upload_file(out)))
            chosen[path] = best
        return uploads, chosen, views

    def _view(self, job: Job, lines: list[int]) -> outgoing.View:
        """The job's snapshot prefix, redacted on disk (only lines new since last time are scanned)."""
        return self.copies.view(
            Path(job.snapshot or ""),
            raw_bytes=job.bytes or 0,
            raw_lines=job.last_line or 0,
            raw_sha256=job.sha256,
            lines=lines,
            redactor=self.redactor,
        )

    def _upload_file(self, view: outgoing.View) -> Path:
        """The file to upload for a view; a temporary prefix copy is deleted after the batch."""
        path, temporary = view.upload_file()
        if temporary:
            self._scratch.append(path)
        return path

    def _clear_scratch(self) -> None:
        for path in self._scratch:
            path.unlink(missing_ok=True)
        self._scratch.clear()

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
            # streamed from the snapshot, from where the last commit of the session left off; None is left out
            usage=tokens.job_usage(job, self.redactor, self.copies.root),
        )

    def _note_all(self, batch: list[tuple[Job, tuple[int, str, dict[str, int]]]]) -> None:
        """Every uploaded job's link, in one notes commit per repository (notes.add)."""
        by_repo: dict[str, list[tuple[Job, notes.TraceLink]]] = defaultdict(list)
        # One read for the whole batch: the database thread also serves every commit of the burst.
        commits = self.db.run(self.queue.commits_of, [claimed.id for claimed, _ in batch]) if batch else {}
        for claimed, view in batch:
            current = commits.get(claimed.id)
            if current is None:
                continue  # dropped: a rewrite replaced the commit, whose own job carries the link
            job = dataclasses.replace(claimed, commit_sha=current[0], first_line=current[1])
            by_repo[job.git_dir].append((job, self._link(job, view)))
        # Repositories are independent (each its own notes ref, kept processes and lock); what
        # they share is thread-safe (the database thread, the pool, `on_noted`).
        written: list[tuple[Job, notes.TraceLink]] = []
        for done in self._noting.map(lambda repo: self._note_repo(Path(repo[0]), repo[1]), by_repo.items()):
            written += done
        self._complete(written)

    def _note_repo(self, git_dir: Path, items: list[tuple[Job, notes.TraceLink]]) -> list[tuple[Job, notes.TraceLink]]:
        """One repository's notes commit; returns the jobs whose links it holds."""
        if not git_dir.exists():
            for job, _ in items:
                self._fail(job, f"repository {job.git_dir} no longer exists")
            return []
        live: list[tuple[Job, notes.TraceLink]] = []
        lines: dict[str, list[str]] = {}
        for job, link in items:
            live.append((job, link))
            lines.setdefault(job.commit_sha, []).extend(link.lines())
        try:
            seen = ref_stamp(git_dir, self.notes_ref)
            # commits_only: the writer's own cat-file tells which commits still exist (no extra git).
            with self.plumbing.lease(git_dir) as kept:
                written = notes.add(git_dir, self.notes_ref, lines, commits_only=True, plumbing=kept)
            if written.commit is not None:
                after = ref_stamp(git_dir, self.notes_ref)
                if loose_ref(git_dir, self.notes_ref) == written.commit:
                    seen = after  # the move is ours: the repair has nothing to look at
            self._noted_in[git_dir], self._ref_seen[git_dir] = self.now(), seen
        except TransientError as exc:
            self._defer_all([job for job, _ in live], exc)
            return []
        except GitError as exc:
            self._defer_all([job for job, _ in live], TransientError(str(exc)))
            return []
        absent = set(written.absent)
        for job, _ in live:
            if job.commit_sha in absent:
                # A note on a missing object is accepted by git; nobody would ever see it.
                self._fail(job, f"commit {job.commit_sha[:12]} no longer exists in {job.repo_display}")
        live = [(job, link) for job, link in live if job.commit_sha not in absent]
        if self.on_noted is not None:
            try:
                self.on_noted(git_dir)
            except Exception:  # only a hint to a cache (its sweep finds the write anyway)
                log.exception("could not pass on the notes written in %s", git_dir)
        return live

    def _complete(self, written: list[tuple[Job, notes.TraceLink]]) -> None:
        """Every noted job of the batch done, in one queue transaction (one fsync): paid per
        repository, one after the other, those were most of the time from a burst's last commit
        to its last note. A kill before it leaves the jobs to be noted again, which changes
        nothing: their lines are in the notes already."""
        if not written:
            return
        noted: dict[str, list[tuple[Job, notes.TraceLink]]] = defaultdict(list)
        marked = self.db.run(
            self.queue.complete_all,
            [(job.id, link.url, link.redacted, job.commit_sha) for job, link in written],
            self.now(),
        )
        for job, link in written:
            if job.id not in marked:
                # A rewrite moved the job to another commit while we wrote this note: note that one too.
                self.db.run(
                    self.queue.defer, job.id, "moved to a rewritten commit; noting it next", self.now(), self.now()
                )
                continue
            log.info("noted %s %s/%s -> %s", job.commit_sha[:12], job.agent, job.session_id, link.url)
            noted[link.url].append((job, link))
        self._index(noted)

    def _index(self, noted: dict[str, list[tuple[Job, notes.TraceLink]]]) -> None:
        """After the notes: hand each session's uploaded (redacted) bytes to the search index."""
        if self.indexer is None:
            return
        for url, items in noted.items():
            job = items[0][0]
            view = self._planned.get(job.remote_path or "")
            if view is None:
                continue
            try:
                # Opened here, read on the index thread: the open file keeps these bytes readable
                # even if the snapshot (and its redacted copy) is collected after this batch.
                source = view.file.open("rb")
            except OSError as exc:
                log.warning("search index: %s/%s not indexed: %s", job.agent, job.session_id, exc)
                continue
            self.indexer.add(
                url=url,
                agent=job.agent,
                session=job.session_id,
                source=source,
                size=view.size,
                links=[(j.git_dir, j.commit_sha, link.first_line, link.last_line) for j, link in items],
                source_id=view.ident,
            )

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
        self.gate.closed_until = self.now() + delay
        self.gate.reason = str(exc)
        log.warning("store unavailable, next try in %.0fs: %s", delay, exc)

    def _defer(self, job: Job, exc: TransientError) -> None:
        now = self.now()
        delay = backoff(self.policy, job.attempts + 1, exc.retry_after)
        self.db.run(self.queue.defer, job.id, str(exc), now + delay, now)

    def _defer_all(self, jobs: list[Job], exc: TransientError) -> None:
        for job in jobs:
            self._defer(job, exc)

    def _fail(self, job: Job, reason: str) -> None:
        log.error("job %d (%s %s) failed: %s", job.id, job.commit_sha[:12], job.session_id, reason)
        self.db.run(self.queue.fail, job.id, reason, self.now())

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
        now = self.now()
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
                with self.plumbing.lease(git_dir) as kept:
                    restored = notes.repair(git_dir, self.notes_ref, plumbing=kept).restored
                if restored:
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
        now = self.now()
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
        out = self._view(grown, [extent.lines])
        try:
            failed = self.store.put([Upload(remote_path=job.remote_path, data=self._upload_file(out))])
        finally:
            self._clear_scratch()
        if failed:
            raise PermanentError(failed[job.remote_path])
        self.db.run(self.queue.record_upload, self.store_id, job.remote_path, grown, self.now())
        log.info("refreshed %s/%s: %d lines now at %s", job.agent, job.session_id, extent.lines, job.remote_path)
        return True

    def _discard_snapshot(self, snapshot: Path) -> None:
        self.db.run(self.snapshots.forget, snapshot)

    def collect_snapshots(self) -> int:
        """Delete snapshot files nothing needs any more (on the db thread: ingest appends there),
        then retire done jobs older than the retention (one indexed delete)."""

        def collect() -> int:
            paths = self.queue.take_collectable(self.now(), SNAPSHOT_IDLE)
            for path in paths:
                self.snapshots.forget(Path(path))
                self.queue.drop_snapshot(path)
            root = self.snapshots.root
            # One indexed read per file left in the directory (live sessions' snapshots).
            orphans = [p for p in root.iterdir() if not self.queue.references(str(p))] if root.exists() else []
            for orphan in orphans:
                self.snapshots.forget(orphan)
            if self.keep_done is not None:  # after the drops above: rows they freed may go too
                self.queue.retire_done(self.now() - self.keep_done)
            return len(paths) + len(orphans) + self.snapshots.collect_copies()

        return self.db.run(collect)
