"""RECEIVE from the spool: the files the git hooks write, taken by a watcher and a periodic scan.

The spool file is the durable hand-off between a hook and the daemon: it is read, its jobs are
persisted (ingest.py, on the database thread), and only then deleted, so a crash in between
replays a duplicate and never loses a commit. The watcher (watchdog, close-after-write) makes
intake immediate; the scan at start and every SPOOL_RESCAN seconds is the safety net behind it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import spool
from .errors import PermanentError, TracekeeperError, TransientError
from .ingest import Ingestor, IngestResult

log = logging.getLogger(__name__)

#: Safety net behind the spool watcher: a full spool scan this often.
SPOOL_RESCAN = 60.0


class SpoolIntake:
    """Spool files -> durable jobs, persisted on `db` (the daemon's database thread, its one
    serial lane). `after` hands each result back to the daemon on the event loop (note copies
    for the I/O thread, a wake-up for the worker)."""

    def __init__(
        self,
        spool_dir: Path,
        ingestor: Ingestor,
        *,
        db: concurrent.futures.Executor,
        after: Callable[[IngestResult], None],
        marker: Path,
    ) -> None:
        self.spool_dir = spool_dir
        self.ingestor = ingestor
        self.db = db
        self.after = after
        #: Present while an inotify watcher runs: tells the hook a rename here already wakes us.
        self.marker = marker
        self._observer: Any = None
        self._stopping = False
        self._marker_written = False
        #: Failed ingests per spool file name (touched on the database thread only).
        self._tries: dict[str, int] = {}
        #: Events the watcher was handed (watchdog's dispatch thread only): tests count them.
        self.watch_events = 0
        #: The watcher's ingests on the database thread not handed back yet (`stop` waits).
        self._arriving: set[concurrent.futures.Future[IngestResult]] = set()

    def ingest_sync(self, path: Path, event: spool.CommitEvent | spool.RewriteEvent | None = None) -> IngestResult:
        """Read (unless the pool thread already did: `read_ahead`), persist, then delete: a crash
        in between only replays a duplicate.

        A commit file and a rewrite file (post-rewrite) take the same path; only the parser and
        the ingest step differ.
        """
        if event is not None and not path.exists():
            # Read ahead, then taken by another delivery (the scan and the watcher): the same
            # answer as the read below would give. Deletes and moves happen on this thread only.
            return IngestResult(note="already taken")
        if event is None:
            try:
                event = _read(path)
            except FileNotFoundError:
                return IngestResult(note="already taken")
            except spool.SpoolIncomplete:
                return IngestResult(note="still being written")
            except (spool.SpoolError, OSError) as exc:
                spool.quarantine(path, str(exc))
                log.error("unreadable spool file %s moved aside: %s", path.name, exc)
                return IngestResult(failed=[str(exc)])
        try:
            if isinstance(event, spool.RewriteEvent):
                result = self.ingestor.rewrite(event)
            else:
                result = self.ingestor.ingest(event)
        except PermanentError as exc:
            spool.quarantine(path, str(exc))
            log.error("spool file %s cannot be processed: %s", path.name, exc)
            return IngestResult(failed=[str(exc)])
        except Exception as exc:
            return self._failed_try(path, exc)
        self._tries.pop(path.name, None)
        path.unlink(missing_ok=True)
        return result

    def _failed_try(self, path: Path, exc: Exception) -> IngestResult:
        """Keep the entry for another try; after spool.MAX_TRIES, set it aside with the reason.

        Whatever an entry holds must not stick in the spool forever with only a traceback in a
        log: a bug that one input triggers would otherwise be retried every minute, unseen by
        `status`. Failures of the machine rather than of the entry (a full disk, a locked or
        broken database, a busy repository) never use up tries: every entry would fail alike.
        """
        what = f"{type(exc).__name__}: {exc}"
        if _environmental(exc):
            log.warning("spool file %s kept for later: %s", path.name, what)
            return IngestResult(note=f"kept for later: {what}")
        tries = self._tries.get(path.name, 0) + 1
        log.debug("spool file %s: try %d failed", path.name, tries, exc_info=exc)
        if tries < spool.MAX_TRIES:
            self._tries[path.name] = tries
            log.warning("spool file %s kept for later (try %d of %d): %s", path.name, tries, spool.MAX_TRIES, what)
            return IngestResult(note=f"kept for later (try {tries} of {spool.MAX_TRIES}): {what}")
        self._tries.pop(path.name, None)
        reason = f"could not be ingested after {tries} tries: {what}"
        try:
            spool.quarantine(path, reason)
        except FileNotFoundError:
            return IngestResult(note="already taken")
        log.error("spool file %s set aside in %s: %s", path.name, path.parent / spool.DEAD_LETTER, reason)
        return IngestResult(failed=[reason])

    def forget_tries(self, name: str) -> None:
        """A dead letter put back by `retry` starts again with all its tries."""
        self._tries.pop(name, None)

    def read_ahead(self, path: Path) -> spool.CommitEvent | spool.RewriteEvent | None:
        """On a pool thread: read the entry and ask git what its ingest will need
        (Ingestor.prepare), so the database thread, the one serial lane, neither waits on git
        nor reads the file again. None when it does not read cleanly: the database thread then
        reads it itself and decides (quarantine, later, taken), as it always did."""
        try:
            event = _read(path)
        except (spool.SpoolError, OSError):
            return None
        self.ingestor.prepare(event)
        return event

    async def on_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    async def ingest_file(self, path: Path) -> IngestResult:
        event = await asyncio.get_running_loop().run_in_executor(None, self.read_ahead, path)
        result: IngestResult = await self.on_db(self.ingest_sync, path, event)
        self.after(result)
        return result

    async def take(self, path: Path) -> bool:
        """Ingest one spool file for the scan, which has nobody to raise to."""
        try:
            result = await self.ingest_file(path)
        except Exception as exc:
            _kept(path, exc)
            return False
        return result.note != "already taken" and not (result.note or "").startswith("kept for later")

    def arrived(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        """A spool file the watcher saw, on watchdog's dispatch thread: already off the event
        loop, so it reads the entry there (`read_ahead`) and hands it straight to the database
        thread; only the result goes to the loop (`after`). Through the loop each commit cost
        two more wake-ups of it and a hop to a pool thread and back, a commit's largest share
        of the daemon's CPU after the ingest itself in a burst (`bench_fleet.py --only burst`).
        Whatever goes wrong leaves the file in the spool for the scan, as `take` does."""
        if self._stopping:
            return
        try:
            event = self.read_ahead(path)
        except Exception:  # a bug in the look-ahead: the database thread reads the entry itself
            log.debug("read-ahead of %s failed", path.name, exc_info=True)
            event = None
        try:
            future = self.db.submit(self.ingest_sync, path, event)
        except RuntimeError:  # the database thread has stopped: the next start's scan takes it
            return
        self._arriving.add(future)  # set.add/discard hold the GIL: no lock between the threads

        def landed(done: concurrent.futures.Future[IngestResult]) -> None:
            self._arriving.discard(done)
            try:
                result = done.result()
            except Exception as exc:
                _kept(path, exc)
                return
            self.after(result)

        def back(done: concurrent.futures.Future[IngestResult]) -> None:
            # RuntimeError: the loop has closed (the daemon stopped); the job is persisted.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(landed, done)

        future.add_done_callback(back)

    async def drain(self) -> int:
        """Take every waiting entry; the listing (a stat per entry) runs on the database thread,
        since a spool that grew while the daemon was down may hold thousands."""
        taken = 0
        waiting: list[Path] = await self.on_db(spool.pending, self.spool_dir)
        for path in waiting:
            taken += await self.take(path)
        return taken

    async def drain_once(self) -> None:
        """One scan now: files renamed back from the dead-letter folder make no close-after-write."""
        taken = await self.drain()
        if taken:
            log.info("took %d commit(s) put back into the spool", taken)

    def start_watcher(self) -> None:
        """Watch the spool directory (on the running loop); without it the scan still runs."""
        from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        loop = asyncio.get_running_loop()
        intake = self

        class SpoolHandler(FileSystemEventHandler):
            def dispatch(self, event: FileSystemEvent) -> None:
                intake.watch_events += 1
                super().dispatch(event)

            def _take(self, path: str) -> None:
                if path.endswith((spool.SUFFIX, spool.REWRITE_SUFFIX)):
                    intake.arrived(Path(path), loop)

            def on_moved(self, event: FileSystemEvent) -> None:
                self._take(os.fsdecode(event.dest_path))

            def on_closed(self, event: FileSystemEvent) -> None:
                self._take(os.fsdecode(event.src_path))

        observer = Observer()
        observer.daemon = True
        try:
            # Only the events acted on: without a filter watchdog asks inotify for everything
            # (open, modify, close-no-write, delete, the directory's own changes), ~8 events per
            # spool file, most of them the daemon's own reads and delete of it; each one costs
            # watchdog's reader, emitter and dispatcher threads (watchdog/observers/inotify.py,
            # InotifyEmitter.get_event_mask_from_filter: the filter becomes the inotify mask).
            observer.schedule(
                SpoolHandler(), str(self.spool_dir), recursive=False, event_filter=[FileClosedEvent, FileMovedEvent]
            )
            observer.start()
        except OSError as exc:  # inotify limits: the socket poke and the periodic scan remain
            log.warning("cannot watch the spool directory (%s); relying on the socket and a scan", exc)
            return
        self._observer = observer
        if type(observer).__name__ == "InotifyObserver":
            # Tells the hook that a rename in the spool already wakes us: it can skip curl.
            self.marker.write_text(f"{os.getpid()}\n")
            self.marker.chmod(0o600)
            self._marker_written = True

    async def rescan(self) -> None:
        """Ingest what the hook spooled while we were down, then re-check now and then."""
        while not self._stopping:
            try:
                taken = await self.drain()
            except Exception:  # e.g. the spool directory became unreadable: keep trying
                log.exception("spool scan failed")
                taken = 0
            if taken:
                log.info("took %d commit(s) from the spool", taken)
            await asyncio.sleep(SPOOL_RESCAN)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop taking files: the marker goes first, so the hook pokes the socket meanwhile.

        Then, off the loop, the watcher ends, and the loop waits for its last arrivals to be
        persisted and handed back (`after`) before the daemon closes what `after` hands work to
        (the I/O thread's note copies) and the database. Ending watchdog's observer waits for the
        handler in progress (watchdog 7.1 observers/api.py: `dispatch_events` calls handlers
        under the observer's lock, which `unschedule_all` takes on stop), and that handler may be
        in `arrived`, reading ahead or asking git. `timeout` bounds that wait (a git process has
        its own); what it leaves, the next start's scan takes."""
        self._stopping = True
        self._remove_marker()
        observer, self._observer = self._observer, None
        if observer is not None:

            def end() -> None:
                observer.stop()
                observer.join(timeout)

            await asyncio.get_running_loop().run_in_executor(None, end)
        for future in list(self._arriving):
            # `back` was added to it before this wait's own callback: `landed` runs first.
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(future)

    def _remove_marker(self) -> None:
        """Only a marker this daemon wrote, still naming it: another daemon's is not ours."""
        if not self._marker_written:
            return
        try:
            if self.marker.read_text().strip() == str(os.getpid()):
                self.marker.unlink()
        except FileNotFoundError:
            pass
        self._marker_written = False


def _kept(path: Path, exc: BaseException) -> None:
    """An ingest that failed outside the entry's own handling: the file stays for the scan."""
    if isinstance(exc, TracekeeperError):  # e.g. the dead-letter folder cannot be made: try later
        log.warning("spool file %s kept for later: %s", path.name, exc)
    else:  # a bug outside the entry's own ingest: keep the file, keep serving
        log.error("spool file %s kept for later", path.name, exc_info=exc)


def _read(path: Path) -> spool.CommitEvent | spool.RewriteEvent:
    return spool.read_rewrite(path) if path.name.endswith(spool.REWRITE_SUFFIX) else spool.read(path)


def _environmental(exc: BaseException) -> bool:
    """A failure of this machine (retried without limit), not of one spool entry."""
    if isinstance(exc, TransientError):
        return True
    if type(exc) in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return True  # locked, full, or damaged: every entry would fail alike
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
