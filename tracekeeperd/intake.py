"""RECEIVE from the spool: the files the git hooks write, taken by a watcher and a periodic scan.

The spool file is the durable hand-off between a hook and the daemon: it is read, its jobs are
persisted (ingest.py, on the database thread), and only then deleted, so a crash in between
replays a duplicate and never loses a commit. The watcher (watchdog, close-after-write) makes
intake immediate; the scan at start and every SPOOL_RESCAN seconds is the safety net behind it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import spool
from .errors import PermanentError, TracekeeperError
from .ingest import Ingestor, IngestResult

log = logging.getLogger(__name__)

#: Safety net behind the spool watcher: a full spool scan this often.
SPOOL_RESCAN = 60.0

#: Runs a blocking function on the daemon's database thread.
OnDb = Callable[..., Awaitable[Any]]


class SpoolIntake:
    """Spool files -> durable jobs. `after` hands each result back to the daemon (note copies
    for the I/O thread, a wake-up for the worker)."""

    def __init__(
        self,
        spool_dir: Path,
        ingestor: Ingestor,
        *,
        on_db: OnDb,
        after: Callable[[IngestResult], None],
        marker: Path,
    ) -> None:
        self.spool_dir = spool_dir
        self.ingestor = ingestor
        self.on_db = on_db
        self.after = after
        #: Present while an inotify watcher runs: tells the hook a rename here already wakes us.
        self.marker = marker
        self._observer: Any = None
        self._stopping = False

    def ingest_sync(self, path: Path) -> IngestResult:
        """Read, persist, then delete: a crash in between only replays a duplicate.

        A commit file and a rewrite file (post-rewrite) take the same path; only the parser and
        the ingest step differ.
        """
        event: spool.CommitEvent | spool.RewriteEvent
        try:
            event = spool.read_rewrite(path) if path.name.endswith(spool.REWRITE_SUFFIX) else spool.read(path)
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
        path.unlink(missing_ok=True)
        return result

    async def ingest_file(self, path: Path) -> IngestResult:
        result: IngestResult = await self.on_db(self.ingest_sync, path)
        self.after(result)
        return result

    async def drain(self) -> int:
        taken = 0
        for path in spool.pending(self.spool_dir):
            try:
                result = await self.ingest_file(path)
            except TracekeeperError as exc:  # e.g. git failed on a repo: keep the file, try later
                log.warning("spool file %s kept for later: %s", path.name, exc)
                continue
            except Exception:  # a full disk, a broken database: keep the file, keep the scan alive
                log.exception("spool file %s kept for later", path.name)
                continue
            taken += 1 if result.note != "already taken" else 0
        return taken

    def start_watcher(self) -> None:
        """Watch the spool directory (on the running loop); without it the scan still runs."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        loop = asyncio.get_running_loop()
        intake = self

        class SpoolHandler(FileSystemEventHandler):
            def _take(self, path: str) -> None:
                if path.endswith((spool.SUFFIX, spool.REWRITE_SUFFIX)):
                    loop.call_soon_threadsafe(lambda: loop.create_task(intake.ingest_file(Path(path))))

            def on_moved(self, event: FileSystemEvent) -> None:
                self._take(os.fsdecode(event.dest_path))

            def on_closed(self, event: FileSystemEvent) -> None:
                self._take(os.fsdecode(event.src_path))

        observer = Observer()
        observer.daemon = True
        try:
            observer.schedule(SpoolHandler(), str(self.spool_dir), recursive=False)
            observer.start()
        except OSError as exc:  # inotify limits: the socket poke and the periodic scan remain
            log.warning("cannot watch the spool directory (%s); relying on the socket and a scan", exc)
            return
        self._observer = observer
        if type(observer).__name__ == "InotifyObserver":
            # Tells the hook that a rename in the spool already wakes us: it can skip curl.
            self.marker.write_text(f"{os.getpid()}\n")
            self.marker.chmod(0o600)

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

    def stop(self) -> None:
        """Stop taking files: the marker goes first, so the hook pokes the socket meanwhile."""
        self._stopping = True
        self.marker.unlink(missing_ok=True)
        if self._observer is not None:
            self._observer.stop()
