"""The daemon: one object that owns the queue, the store, the worker, the watcher and the socket.

Data path, top to bottom: RECEIVE (ipc.py, the spool watcher) -> PERSIST (ingest.py, queue.py)
-> UPLOAD -> NOTE (worker.py). The event loop only waits and dispatches: SQLite and snapshot
I/O run on the database thread, uploads and git on an I/O thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from . import __version__, ipc, notes, plumbing, redact, spool
from . import status as status_view
from .active import ActiveSession
from .agents.roots import default_roots
from .config import Config
from .discovery import SessionIndex
from .errors import ConfigError, TracekeeperError
from .ingest import Ingestor, IngestResult, allowed_roots
from .intake import SpoolIntake
from .listener import BoundSocket, InstanceLock, bind
from .protocol import JobState
from .queue import Job, Queue
from .redact import Redactor
from .repostate import NotesStates, summarise
from .searchindex import Indexer
from .snapshot import Snapshots
from .stores import Store, open_store
from .worker import DbThread, Worker

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often linked sessions are checked for growth (their upload waits for the debounce).
FOLLOW_INTERVAL = 5.0
#: The longest `status` waits for repositories' notes-sync state being computed (the CLI gives up
#: on the daemon after 5 s); those not ready yet are shown as before, or `pending`.
STATUS_REPOS_WAIT = 2.0
#: Seconds between two background passes over the known repositories' refs (repostate.sweep):
#: how late `status` may learn of a `git push`/`fetch` made outside the daemon. ~18 ms of
#: `stat`s for 1,000 repositories per pass. The daemon's own notes write is taken in at once,
#: a burst's at most once per `repostate.SETTLE` per repository (the pass starts the due ones).
REPO_SWEEP_INTERVAL = 2.0
#: How often the queue's file is checked to still be the one the daemon writes (a stat).
QUEUE_CHECK = 2.0


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) we are ready / what we are doing; a no-op elsewhere."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    address = "\0" + target[1:] if target.startswith("@") else target
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


class Daemon:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.paths = config.paths
        self.db = DbThread()
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracekeeper-io")
        self.lock = InstanceLock(self.paths.lock)
        self.store = store
        self.queue: Queue | None = None
        self.worker: Worker | None = None
        self.ingestor: Ingestor | None = None
        self.index: SessionIndex | None = None
        self.search: Indexer | None = None
        self.listener: BoundSocket | None = None
        self.runner: web.AppRunner | None = None
        self.wake = asyncio.Event()
        #: Set (and replaced) whenever job states may have changed: what a waiting flush awaits.
        self._progress = asyncio.Event()
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self.intake: SpoolIntake | None = None
        self._stopping = False
        self._spool_marker = self.paths.runtime_dir / "spool-watched"
        #: Every known repository's notes-sync state, for `status` (recomputed on ref changes).
        self.notes_states = NotesStates(config.notes_ref)
        #: The known repositories as the database last listed them: read again only after an
        #: ingest (the one way a repository becomes known) or by the sweep, not per `status`.
        self._known_repos: list[tuple[str, str]] | None = None
        self._repos_generation = 0  # +1 per ingest: a list read across one is not kept

    async def _repositories(self) -> list[tuple[str, str]]:
        assert self.queue is not None
        generation = self._repos_generation
        known: list[tuple[str, str]] = await self._on_db(self.queue.repositories)
        if generation == self._repos_generation:
            self._known_repos = known
        return known

    # --- life cycle -------------------------------------------------------------------

    async def _on_db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.db.executor, fn, *args)

    async def start(self) -> None:
        self.lock.acquire()
        for directory in (self.paths.state_dir, self.paths.spool, self.paths.snapshots):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.queue = await self._on_db(Queue, self.paths.db)
        recovered = await self._on_db(self.queue.recover, time.time())
        if recovered:
            log.info("handed back %d job(s) that were in flight when the daemon last stopped", recovered)
        if self.store is None:
            self.store = open_store(self.config)
        redactor = build_redactor(self.config)
        snapshots = Snapshots(self.paths.snapshots)
        self.search = Indexer(self.paths.search_db)
        self.index = SessionIndex(default_roots(), db_path=self.paths.state_dir / "sessions.sqlite3")
        await asyncio.get_running_loop().run_in_executor(self.io, self.index.start)
        self.ingestor = Ingestor(
            self.queue,
            snapshots,
            allowed_roots(self.config.transcript_roots),
            discover=self._discover,
        )
        self.worker = Worker(
            self.queue,
            self.db,
            self.store,
            snapshots,
            notes_ref=self.config.notes_ref,
            policy=self.config.retry,
            redactor=redactor,
            indexer=self.search,
            keep_done=_days(self.config.keep_done_days),
        )
        self.listener = bind(self.paths.socket)
        self._spool_marker = self.listener.path.parent / "spool-watched"
        self._spool_marker.unlink(missing_ok=True)  # a stale one from a killed daemon
        self.runner = web.AppRunner(ipc.build(self), access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.SockSite(self.runner, self.listener.sock).start()
        self.intake = SpoolIntake(
            self.paths.spool, self.ingestor, db=self.db.executor, after=self._after_ingest, marker=self._spool_marker
        )
        self.intake.start_watcher()
        loop = asyncio.get_running_loop()
        # Learn early whether the bucket is reachable and private, so `status` can say so.
        loop.run_in_executor(self.io, self._check_store)
        # And each known repository's notes-sync state, so the first `status` finds it computed.
        known = await self._repositories()  # kept: the first `status` need not read it again
        loop.run_in_executor(None, self.notes_states.view, known)
        # The daemon's own notes writes change a repository's state: recompute it at once.
        self.worker.on_noted = lambda git_dir: self.notes_states.touch(str(git_dir))
        self._tasks = [
            loop.create_task(self._work(), name="worker"),
            loop.create_task(self.intake.rescan()),
            loop.create_task(self._follow()),
            loop.create_task(self._guard_queue()),
            loop.create_task(self._sweep_repos()),
        ]
        log.info(
            "tracekeeperd %s listening on %s, store %s, notes %s",
            __version__,
            self.listener.path,
            self.store.ident(),
            self.config.notes_ref,
        )
        if plumbing.FD_LIMIT is not None:
            before, after = plumbing.FD_LIMIT
            log.info(
                "open files: soft limit %d (was %d): up to %d repositories keep their git processes",
                after,
                before,
                plumbing.room(),
            )
        sd_notify(f"READY=1\nSTATUS=listening on {self.listener.path}")

    def _discover(self, work_tree: Path, since: float | None) -> list[ActiveSession]:
        assert self.index is not None
        return [
            ActiveSession(agent=s.agent, session_raw=s.session_id or "session", transcript=s.transcript)
            for s in self.index.sessions_for(work_tree, since)
        ]

    def _check_store(self) -> None:
        assert self.store is not None
        try:
            self.store.preflight()
        except TracekeeperError as exc:
            log.warning("store %s: %s", self.store.ident(), exc)

    async def reload(self) -> None:
        """SIGHUP: re-read the configuration; a broken one is reported and the old one kept."""
        from . import config as config_mod

        def prepare() -> tuple[Config, Store, Redactor]:  # reads files, compiles rules: off the loop
            config = config_mod.load()
            return config, open_store(config), build_redactor(config)

        try:
            config, store, redactor = await asyncio.get_running_loop().run_in_executor(None, prepare)
        except TracekeeperError as exc:
            for line in config_mod.problems_of(exc) if isinstance(exc, ConfigError) else [str(exc)]:
                log.error("reload failed, keeping the running configuration: %s", line)
            return
        worker = self.worker
        assert worker is not None

        def swap() -> None:  # on the I/O thread, so never in the middle of a batch
            worker.reconfigure(store, notes_ref=config.notes_ref, policy=config.retry, redactor=redactor)
            worker.keep_done = _days(config.keep_done_days)

        await asyncio.get_running_loop().run_in_executor(self.io, swap)
        if config.notes_ref != self.config.notes_ref:  # the old one's threads and git end first
            old, self.notes_states = self.notes_states, NotesStates(config.notes_ref)
            await asyncio.get_running_loop().run_in_executor(None, old.close)
        self.config, self.store = config, store
        logging.getLogger().setLevel(config.log_level.upper())
        log.info("configuration reloaded: store %s, notes %s", store.ident(), config.notes_ref)
        self.wake.set()

    async def stop(self) -> None:
        """Finish the batch in flight (uploads are bounded), then close everything in order."""
        self._stopping = True
        sd_notify("STOPPING=1")
        self.wake.set()
        if self.intake is not None:  # it removes the marker only if it wrote it (a refused second
            await self.intake.stop()  # daemon runs stop() too, and must leave the running one's)
        if self.index is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.index.stop)
        for task in self._tasks:
            if task.get_name() != "worker":
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
        if self.listener is not None:
            self.listener.close()
        self.io.shutdown(wait=True)
        if self.worker is not None:  # after its last batch: its kept git processes end now
            self.worker.close()
        # After the worker (its last notes write may touch a state), before the lock is released.
        await asyncio.get_running_loop().run_in_executor(None, self.notes_states.close)
        if self.search is not None:  # after the worker: it may have handed over a last session
            await asyncio.get_running_loop().run_in_executor(None, self.search.stop)
        if self.queue is not None:
            await self._on_db(self.queue.close)
        self.db.shutdown()
        self.lock.release()
        if self.listener is not None:
            log.info("tracekeeperd stopped")

    # --- RECEIVE ------------------------------------------------------------------------

    async def ingest(self, event: spool.CommitEvent) -> IngestResult:
        assert self.ingestor is not None
        # git first, on a pool thread: the database thread serves every commit and `status`.
        await asyncio.get_running_loop().run_in_executor(None, self.ingestor.prepare, event)
        result: IngestResult = await self._on_db(self.ingestor.ingest, event)
        self._after_ingest(result)
        return result

    def _after_ingest(self, result: IngestResult) -> None:
        self._known_repos = None  # it may have registered a repository
        self._repos_generation += 1
        for git_dir, source, target in result.copies:
            self.io.submit(self._copy_note, git_dir, source, target)
        # Not for a commit the sleeping worker turns in time for anyway (a burst's hold): its
        # turn would only find the hold moved later (worker.Arrivals.arrived).
        if result.job_ids and (self.worker is None or self.worker.arrivals.arrived(time.time())):
            self.wake.set()
        self._signal_progress()  # a rewrite may have moved or merged jobs a flush waits for

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    def _copy_note(self, git_dir: Path, source: str, target: str) -> None:
        """On the I/O thread, which writes every note, so two writers never race on the ref."""
        try:
            notes.copy(git_dir, self.config.notes_ref, source, target)
        except TracekeeperError as exc:
            log.warning("could not copy the links of %s to %s: %s", source[:12], target[:12], exc)
            return
        if self.search is not None:
            self.search.copy(git_dir, source, target)

    async def ingest_spool_file(self, path: Path) -> IngestResult:
        """`/v1/commit` naming a spool file (the hook's poke when nothing watches the spool)."""
        assert self.intake is not None
        return await self.intake.ingest_file(path)

    async def _guard_queue(self) -> None:
        """Notice the queue's file deleted or replaced even while no job moves (every write checks
        too): the live state is written back before a restart could lose it."""
        assert self.queue is not None
        while not self._stopping:
            await asyncio.sleep(QUEUE_CHECK)
            try:
                await self._on_db(self.queue.ensure_on_disk)
            except Exception:  # e.g. the disk is full right now: the next check tries again
                log.exception("could not write the queue back")

    async def _sweep_repos(self) -> None:
        """Keep every known repository's notes-sync state current off the request path: the
        refs of a repository change under `git push`/`fetch` without the daemon knowing."""
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await asyncio.sleep(REPO_SWEEP_INTERVAL)
            try:
                # Read again only after an ingest (which drops the list): not every 2 s.
                known = self._known_repos if self._known_repos is not None else await self._repositories()
                await loop.run_in_executor(None, self.notes_states.sweep, known)
            except Exception:  # the next pass tries again
                log.exception("checking the known repositories failed")

    async def _follow(self) -> None:
        """Keep linked sessions' remote copies current (between batches, on the I/O thread)."""
        assert self.worker is not None
        loop = asyncio.get_running_loop()
        interval = max(0.05, min(FOLLOW_INTERVAL, self.config.follow_debounce / 2))
        while not self._stopping:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(self.io, self.worker.follow, self.config.follow_debounce)
            except Exception:
                log.exception("refreshing followed sessions failed")

    # --- UPLOAD -> NOTE -------------------------------------------------------------------

    async def _work(self) -> None:
        """Turn the worker (worker.loop) until stopped; between turns, sleep until due or woken."""
        assert self.worker is not None
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self.wake.clear()
            try:
                tick = await loop.run_in_executor(self.io, self.worker.loop)
            except Exception:  # the worker must outlive any bug: log it, pause, carry on
                log.exception("worker loop failed; retrying after a pause")
                await asyncio.sleep(1.0)
                continue
            if tick.claimed:
                self._signal_progress()
                await self._publish_status()
            if tick.wait == 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=tick.wait)

    async def _publish_status(self) -> None:
        assert self.queue is not None
        counts = await self._on_db(self.queue.counts)
        sd_notify(f"STATUS={counts['pending']} pending, {counts['failed']} failed, {counts['done']} done")

    # --- commands -------------------------------------------------------------------------

    async def flush(self, timeout: float = 0.0) -> dict[str, Any]:
        """Make every pending job due now, then wait up to `timeout` seconds for them to settle.

        Judged are only the jobs pending or uploading when the flush began: one that failed
        earlier is for `retry` or `drop` (else `flush && git push` could never pass again), and
        one queued meanwhile is for the next flush (else a busy agent could keep it waiting).
        """
        assert self.queue is not None and self.worker is not None
        queue = self.queue

        def begin() -> tuple[int, list[int]]:
            return queue.flush(time.time()), queue.unsettled_ids()

        due, ids = await self._on_db(begin)
        self.worker.open_gate()
        self.wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            progress = self._progress  # taken before looking, so no change between is missed
            jobs: list[Job] = await self._on_db(queue.by_ids, ids)
            unsettled = [j for j in jobs if j.state in (JobState.PENDING, JobState.UPLOADING)]
            remaining = deadline - loop.time()
            if not unsettled or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), remaining)
        failed = [j for j in jobs if j.state is JobState.FAILED]
        counts = await self._on_db(queue.counts)
        gate = self.worker.gate
        offline = gate.reason if gate.closed_until > time.time() else None
        return {
            "due": due,
            "waited": len(ids),
            "done": sum(j.state is JobState.DONE for j in jobs),
            "pending": len(unsettled),
            "failed": [j.view() for j in failed],
            "failed_before": max(0, counts[JobState.FAILED.value] - len(failed)),
            "reason": offline or next((j.last_error for j in unsettled if j.last_error), None),
        }

    async def _not_failed(self, ids: list[int] | None) -> list[int]:
        """Those of `ids` that name no failed job (a typo, or a job that is not failed)."""
        if ids is None:
            return []
        assert self.queue is not None
        jobs: list[Job] = await self._on_db(self.queue.by_ids, ids)
        failed = {job.id for job in jobs if job.state is JobState.FAILED}
        return [i for i in dict.fromkeys(ids) if i not in failed]

    async def retry(self, ids: list[int] | None = None) -> dict[str, Any]:
        """Failed jobs (all, or `ids`) back to pending; without ids, set-aside spool entries too."""
        assert self.queue is not None and self.worker is not None and self.intake is not None
        intake = self.intake
        not_failed = await self._not_failed(ids)
        # retry_failed already counts only the jobs left failed (those with no snapshot).
        retried, still_failed = await self._on_db(self.queue.retry_failed, time.time(), ids)

        def revive() -> list[str]:
            """On the database thread, which alone counts tries: no ingest of a revived entry can
            run between its move back and the reset of its tries."""
            names = spool.revive(self.paths.spool)
            for name in names:
                intake.forget_tries(name)
            return names

        revived: list[str] = [] if ids is not None else await self._on_db(revive)
        if revived:  # a rename from the dead-letter folder is no close-after-write: scan now
            task = asyncio.get_running_loop().create_task(intake.drain_once())
            self._tasks.append(task)  # held (a bare task can be collected mid-run), then let go
            task.add_done_callback(self._tasks.remove)
        self.worker.open_gate()
        self.wake.set()
        self._signal_progress()
        return {"retried": retried, "still_failed": still_failed, "respooled": len(revived), "not_failed": not_failed}

    async def drop(self, ids: list[int] | None) -> dict[str, Any]:
        """Forget failed jobs (all, or `ids`); for all, the set-aside spool entries go too."""
        assert self.queue is not None
        not_failed = await self._not_failed(ids)
        dropped: int = await self._on_db(self.queue.drop_failed, ids)
        discarded: int = 0 if ids is not None else await self._on_db(spool.discard_dead_letters, self.paths.spool)
        self._signal_progress()
        return {"dropped": dropped, "discarded": discarded, "not_failed": not_failed}

    async def forget(self, sessions: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """`tracekeeper forget`: on the I/O thread, between batches, so no upload of these
        sessions is in flight while their records are cleared (see Queue.forget)."""
        assert self.queue is not None and self.worker is not None
        queue, worker = self.queue, self.worker

        def on_io() -> list[dict[str, Any]]:
            worker.drop_redacted()  # a forgotten session's redacted bytes are not kept either
            if self.search is not None:  # nor its words in the search index
                self.search.forget(sessions)
            return self.db.run(queue.forget_sessions, sessions, time.time(), worker.snapshots.discard)

        result: list[dict[str, Any]] = await asyncio.get_running_loop().run_in_executor(self.io, on_io)
        for item in result:
            agent, session_id, cancelled = item["agent"], item["session_id"], item["cancelled"]
            log.info("forgot %s/%s (%d queued upload(s) cancelled)", agent, session_id, cancelled)
        return result

    async def unforget(self, session: str) -> list[tuple[str, str]]:
        """`tracekeeper forget --undo`: the session may be linked and uploaded again."""
        assert self.queue is not None
        pairs: list[tuple[str, str]] = await self._on_db(self.queue.unforget, session)
        for agent, session_id in pairs:
            log.info("%s/%s may be linked again", agent, session_id)
        return pairs

    async def status(self, *, include_done: bool = False) -> dict[str, Any]:
        assert self.queue is not None and self.store is not None and self.worker is not None
        gate, now, queue, index = self.worker.gate, time.time(), self.queue, self.index
        store = self.store.info()

        def build() -> dict[str, Any]:
            """SQLite, directory listings and a pass over every indexed transcript: off the loop."""
            facts = status_view.running(
                pid=os.getpid(),
                version=__version__,
                socket=self.listener.path if self.listener else self.paths.socket,
                state_dir=self.paths.state_dir,
                started_at=self.started_at,
                notes_ref=self.config.notes_ref,
                store=store,
                offline_until=gate.closed_until if gate.closed_until > now else None,
                offline_reason=gate.reason if gate.closed_until > now else None,
                discovery=index.status() if index is not None else None,
            )
            return status_view.build(queue, self.paths.spool, include_done=include_done, daemon=facts)

        data: dict[str, Any] = await self._on_db(build)
        # From memory, kept current by the sweep and the worker (repostate.py): no `stat`, no
        # git per known repository; only one never seen before is computed, on a pool thread.
        known = self._known_repos
        if known is None:
            known = await self._repositories()
        entries = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.notes_states.answer(known, wait=STATUS_REPOS_WAIT)
        )
        data["repos"], data["repos_quiet"] = summarise(entries)
        return data


def _days(days: float | None) -> float | None:
    return None if days is None else days * 86400.0


def build_redactor(config: Config) -> Redactor:
    """The redactor every upload goes through; a broken user rule stops the daemon (fail closed)."""
    try:
        return redact.from_settings(config.redaction)
    except redact.RedactionError as exc:
        raise ConfigError(f"redaction: {exc}") from exc


async def serve(config: Config) -> None:
    """Run until SIGTERM/SIGINT."""
    import signal

    daemon = Daemon(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(daemon.reload()))
    try:
        await daemon.start()
    except BaseException:
        await daemon.stop()
        raise
    await stop.wait()
    log.info("stopping: finishing the batch in flight")
    await daemon.stop()
