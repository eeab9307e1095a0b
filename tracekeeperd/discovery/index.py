"""Sessions found without hooks: an index of the agents' transcripts, kept current by watchdog.

When a commit arrives and no hook recorded a session for its worktree, the daemon asks
``SessionIndex.sessions_for(worktree, since)`` for the sessions whose cwd lies inside the
worktree and that were active since the previous commit.

How it stays cheap at 10,000 transcripts and hundreds of new lines a second:

* One worker thread does all the work (scanning, reading, the ledger, managing observers);
  watchdog's threads only drop paths into a pending set, so a burst of events on one file
  costs one read per batch, not one per event. Nothing here runs on (or blocks) an asyncio
  loop; ``sessions_for``, ``lookup`` and ``status`` are in-memory and take a lock briefly.
* A file is read by ``read``: its head once for identity, then only its appended
  bytes (or the last ``TAIL_WINDOW`` of them) for the latest timestamp.
* A SQLite ledger (``ledger``) keeps each file's (size, mtime, inode) signature
  with what was read from it, so a restart reads only files that changed.
* At idle every thread blocks: watchdog's inotify reader in ``poll()``, its emitters and
  dispatcher on queues without timeouts, and the worker on a condition whose only timeout is
  the next periodic reconcile (``reconcile_interval``, default 15 min).

Watching (``watch``): all roots share one native observer (one inotify instance;
``fs.inotify.max_user_instances`` is often only 128). A root whose watches cannot be placed
(``ENOSPC``/``EMFILE``, or subdirectories the kernel does not list as watched) moves to a
shared ``PollingObserver`` and ``status()`` says so, with sysctl advice. A queue overflow,
which watchdog only logs, triggers a reconcile against the in-memory ledger. A root that does
not exist yet is waited for by watching its nearest existing ancestor, so an agent installed
after the daemon started is picked up.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent
from watchdog.observers.api import BaseObserver, ObservedWatch

from ..agents import cursor_project_slug, gemini_project_hash
from ..agents.roots import Root
from .ledger import Ledger
from .read import Entry, NotRegularFile, ReadKind, accepts, read_entry
from .watch import (
    DIR_EVENTS,
    FILE_EVENTS,
    Handler,
    OverflowListener,
    has_pending,
    inotify_fds,
    limit_advice,
    observer_kind,
    watched_inodes,
)

log = logging.getLogger(__name__)

#: How long the event stream must stay quiet before ``wait_idle`` believes it is idle.
SETTLE = 0.05
#: A directory missing from the kernel's watch list is looked at again after this delay
#: before the root falls back to polling (its watch may still be on its way).
VERIFY_DELAY = 0.5


@dataclass(frozen=True)
class IndexedSession:
    """One transcript the index knows, as the commit linker needs it.

    ``cwd`` comes from the records (Gemini: the project's ``.project_root``; Cursor: None).
    Times are epoch seconds; ``last_activity_at`` is the latest record timestamp, or the
    file's mtime where records carry no clock (Cursor). ``size`` is the file size when last read.
    """

    agent: str
    session_id: str
    transcript: Path
    cwd: str | None
    project_hash: str | None
    started_at: float | None
    last_activity_at: float | None
    size: int


@dataclass
class _RootState:
    """The worker's bookkeeping for one root; ``status()`` reads it from other threads."""

    root: Root
    watch_path: str | None = None
    mode: str = "starting"
    watch: ObservedWatch | None = None
    observer: BaseObserver | None = None
    ancestor: str | None = None
    overflows: int = 0
    reconciles: int = 0
    last_error: str | None = None
    advice: str | None = None

    def contains(self, path: str) -> bool:
        base = self.watch_path
        return base is not None and (path == base or path.startswith(base.rstrip(os.sep) + os.sep))


@dataclass
class _Batch:
    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    new_dirs: set[str] = field(default_factory=set)
    overflows: set[str | None] = field(default_factory=set)
    check_roots: bool = False

    def __bool__(self) -> bool:
        return bool(self.files or self.dirs or self.new_dirs or self.overflows or self.check_roots)


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def _inside(path: str, bases: Iterable[str]) -> bool:
    return any(path == base or path.startswith(base.rstrip(os.sep) + os.sep) for base in bases)


def _cursor_slug(path: str) -> str | None:
    parts = path.split(os.sep)
    with contextlib.suppress(ValueError):
        index = parts.index("agent-transcripts")
        return parts[index - 1] if index > 0 else None
    return None


def _walk(top: str) -> Iterator[tuple[str, list[tuple[str, os.stat_result]]]]:
    """(directory, [(file path, lstat)]) for every directory under ``top``, symlinks not followed."""
    stack = [top]
    while stack:
        directory = stack.pop()
        files: list[tuple[str, os.stat_result]] = []
        try:
            with os.scandir(directory) as entries:
                for item in entries:
                    with contextlib.suppress(OSError):
                        if item.is_dir(follow_symlinks=False):
                            stack.append(item.path)
                        elif item.is_file(follow_symlinks=False):
                            files.append((item.path, item.stat(follow_symlinks=False)))
        except OSError:
            continue  # vanished or unreadable: inotify could not watch it either
        yield directory, files


def _default_observer() -> BaseObserver:
    from watchdog.observers import Observer

    return Observer()


class SessionIndex:
    """Agent sessions found on disk, by cwd and activity; see the module docstring.

    ``observer_factory`` builds the native observer (default: watchdog's ``Observer``); tests
    pass a small subclass that fails the way the kernel does. ``polling=True`` watches every
    root by polling from the start (network filesystems, where inotify sees no remote writes).
    """

    def __init__(
        self,
        roots: list[Root],
        db_path: Path | None = None,
        *,
        observer_factory: Callable[[], BaseObserver] | None = None,
        polling: bool = False,
        poll_interval: float = 10.0,
        reconcile_interval: float = 900.0,
        root_check_interval: float = 60.0,
        flush_interval: float = 2.0,
        coalesce: float = 0.02,
    ) -> None:
        self._states = [_RootState(root) for root in roots]
        self._db_path = db_path
        self._factory = observer_factory or _default_observer
        self._force_polling = polling
        self._poll_interval = poll_interval
        self._reconcile_interval = reconcile_interval
        self._root_check_interval = root_check_interval
        self._flush_interval = flush_interval
        self._coalesce = coalesce
        # Read by any thread under _lock; written only by the worker.
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        # Hand-over from watchdog's threads to the worker, under _cond.
        self._cond = threading.Condition()
        self._pending = _Batch()
        self._stopping = False
        self._busy = False
        self._ready = False
        self._last_event = 0.0
        self._counters: dict[str, int] = dict.fromkeys(
            ("events", "batches", "head", "tail", "whole", "reconciles", "overflows", "errors"), 0
        )
        self._scan_seconds: float | None = None
        self._fatal: str | None = None
        # Worker-only state.
        self._thread: threading.Thread | None = None
        self._ledger: Ledger | None = None
        self._ledger_error: str | None = None
        self._native: BaseObserver | None = None
        self._native_fd: int | None = None
        self._native_error: tuple[int | None, str] | None = None
        self._poller: BaseObserver | None = None
        self._ancestors: dict[str, tuple[ObservedWatch, set[int]]] = {}
        self._suspects: set[str] = set()
        self._verify_due: float | None = None
        self._dirty: dict[str, Entry | None] = {}
        self._last_flush = 0.0
        self._next_reconcile = 0.0
        self._next_root_check = 0.0
        self._root_handler = Handler(self._on_root_event)
        self._ancestor_handler = Handler(self._on_ancestor_event)
        self._overflow_listener = OverflowListener(self._on_overflow)

    # --- public API ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread: initial scan (incremental against the ledger), then watching.

        Returns at once; ``wait_idle`` tells when the initial scan is done.
        """
        if self._thread is not None:
            raise RuntimeError("SessionIndex.start() called twice")
        # watchdog 7.1.0 warns when `mkdir -p` races its recursive registration (the same
        # directory is registered twice); the watch is simply kept. Not worth a stderr line.
        warnings.filterwarnings(
            "ignore",
            message=r"Callback with id .* already exists for watch",
            category=RuntimeWarning,
            module=r"watchdog\.observers\.inotify",
        )
        self._overflow_listener.attach()
        self._thread = threading.Thread(target=self._run, name="tracekeeper-discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching, write the ledger and wait for the worker (a few hundred ms at most)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._overflow_listener.detach()

    def sessions_for(self, worktree: Path, since: float | None) -> list[IndexedSession]:
        """Sessions that worked inside ``worktree`` and were active at or after ``since``.

        A session matches when its cwd is the worktree or lies below it (``/a/b`` matches
        worktrees ``/a/b`` and ``/a``, not ``/a/bc``), compared both as given and with
        symlinks resolved. Gemini sessions match by ``projectHash`` (sha256 of the project
        root, so only the exact root) or by their ``.project_root``; Cursor sessions, which
        record no cwd, by their directory slug equalling the worktree's (lossy, exact root
        only). One result per (agent, session id): the most recently active transcript.
        Sorted by last activity, oldest first.
        """
        bases = {_norm(worktree), _norm(os.path.realpath(worktree))}
        hashes = {gemini_project_hash(base) for base in bases}
        slugs = {cursor_project_slug(base) for base in bases}
        with self._lock:
            entries = list(self._entries.values())
        best: dict[tuple[str, str], Entry] = {}
        for entry in entries:
            if entry.agent is None or entry.session_id is None:
                continue
            if since is not None and (entry.last_activity_at or 0.0) < since:
                continue
            if not self._matches(entry, bases, hashes, slugs) or not os.path.isfile(entry.path):
                continue  # (a file moved away is reported by watchdog only 0.5 s later)
            key = (entry.agent, entry.session_id)
            known = best.get(key)
            if known is None or (entry.last_activity_at or 0.0, entry.size) > (
                known.last_activity_at or 0.0,
                known.size,
            ):
                best[key] = entry
        found = [self._session(entry) for entry in best.values()]
        return sorted(found, key=lambda s: (s.last_activity_at or 0.0, s.session_id))

    def lookup(self, transcript: Path) -> IndexedSession | None:
        """The indexed session of one transcript file (e.g. a hook's ``transcript_path``)."""
        with self._lock:
            entry = self._entries.get(_norm(transcript)) or self._entries.get(os.path.realpath(transcript))
        return self._session(entry) if entry is not None and entry.agent is not None else None

    def status(self) -> dict[str, Any]:
        """Per root: how it is watched, what it holds, what went wrong and what to do about it."""
        with self._lock:
            entries = list(self._entries.values())
        with self._cond:
            counters = dict(self._counters)
            pending = len(self._pending.files) + len(self._pending.dirs)
            ready = self._ready
        files, sessions = self._per_root(entries)
        roots = []
        for index, state in enumerate(self._states):
            roots.append(
                {
                    "agent": state.root.agent,
                    "path": str(state.root.path),
                    "watch_path": state.watch_path,
                    "mode": state.mode,
                    "files": files[index],
                    "sessions": sessions[index],
                    "overflows": state.overflows,
                    "reconciles": state.reconciles,
                    "last_error": state.last_error,
                    "advice": state.advice,
                }
            )
        return {
            "running": self._thread is not None and self._thread.is_alive(),
            "ready": ready,
            "scan_seconds": self._scan_seconds,
            "files": len(entries),
            "sessions": sum(1 for e in entries if e.agent is not None),
            "pending": pending,
            "ledger": str(self._db_path) if self._db_path else None,
            "ledger_error": self._ledger_error,
            "error": self._fatal,
            "counters": counters,
            "roots": roots,
        }

    def _per_root(self, entries: list[Entry]) -> tuple[list[int], list[int]]:
        """(files, sessions) per root, each entry counted under its longest containing root."""
        files = [0] * len(self._states)
        sessions = [0] * len(self._states)
        prefixes = sorted(
            ((s.watch_path.rstrip(os.sep) + os.sep, i) for i, s in enumerate(self._states) if s.watch_path),
            key=lambda item: -len(item[0]),
        )
        for entry in entries:
            for prefix, index in prefixes:
                if entry.path.startswith(prefix):
                    files[index] += 1
                    sessions[index] += entry.agent is not None
                    break
        return files, sessions

    def wait_idle(self, timeout: float) -> bool:
        """For tests and benchmarks: True once the initial scan is done, every event the observers
        delivered has been processed, and nothing new arrived for ``SETTLE`` seconds after this
        call (so a write made just before it has reached the index). False on timeout.

        Polling roots only report at their next poll, and watchdog holds a file moved out of a
        watched tree for 0.5 s (waiting for a matching IN_MOVED_TO) before reporting it deleted:
        wait for those with a deadline instead.
        """
        called = time.monotonic()
        deadline = called + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                quiet = now - max(called, self._last_event)
                idle = self._is_idle()
                if idle and quiet >= SETTLE and not self._kernel_pending():
                    return True
                if now >= deadline or (self._thread is not None and not self._thread.is_alive()):
                    return False
                wait = SETTLE - quiet if idle and quiet < SETTLE else deadline - now
                self._cond.wait(max(0.005, min(wait, deadline - now)))

    # --- helpers shared by the API ------------------------------------------------------

    @staticmethod
    def _matches(entry: Entry, bases: set[str], hashes: set[str], slugs: set[str]) -> bool:
        if entry.cwd is not None and _inside(os.path.normpath(entry.cwd), bases):
            return True
        if entry.agent == "gemini":
            return entry.project_hash in hashes
        if entry.agent == "cursor":
            return _cursor_slug(entry.path) in slugs
        return False

    @staticmethod
    def _session(entry: Entry) -> IndexedSession:
        return IndexedSession(
            agent=entry.agent or "",
            session_id=entry.session_id or "",
            transcript=Path(entry.path),
            cwd=entry.cwd,
            project_hash=entry.project_hash,
            started_at=entry.started_at,
            last_activity_at=entry.last_activity_at,
            size=entry.size,
        )

    def _is_idle(self) -> bool:
        """Under _cond: scanned, nothing pending or in progress, no watch check outstanding."""
        return self._ready and not self._pending and not self._busy and self._verify_due is None

    def _kernel_pending(self) -> bool:
        """Events the kernel or watchdog still hold for the native observer."""
        fd, native = self._native_fd, self._native
        if native is None:
            return False
        return (fd is not None and has_pending(fd)) or not native.event_queue.empty()

    # --- event intake (watchdog threads) --------------------------------------------------

    def _on_root_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        with self._cond:
            self._counters["events"] += 1
            self._last_event = time.monotonic()
            if event.is_directory:
                self._pending.dirs.add(src)
                if dest:
                    self._pending.dirs.add(dest)
                if event.event_type == "created":
                    self._pending.new_dirs.add(src)
                elif event.event_type in {"deleted", "moved"}:
                    self._pending.check_roots = True  # maybe the root itself went
            else:
                self._pending.files.add(src)
                if dest:
                    self._pending.files.add(dest)
            self._cond.notify_all()

    def _on_ancestor_event(self, event: FileSystemEvent) -> None:
        with self._cond:
            self._last_event = time.monotonic()
            self._pending.check_roots = True
            self._cond.notify_all()

    def _on_overflow(self, path: str | None) -> None:
        with self._cond:
            self._pending.overflows.add(path)
            self._cond.notify_all()

    # --- the worker -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._setup()
            while (batch := self._next_batch()) is not None:
                try:
                    self._process(batch)
                    self._timers()
                finally:
                    with self._cond:
                        self._busy = False
                        self._counters["batches"] += 1
                        self._cond.notify_all()
        except Exception as error:  # a crash must show in status(), not kill the daemon
            log.exception("session discovery stopped")
            self._fatal = f"{type(error).__name__}: {error}"
        finally:
            self._teardown()

    def _setup(self) -> None:
        began = time.monotonic()
        loaded: list[Entry] = []
        if self._db_path is not None:
            try:
                self._ledger = Ledger(self._db_path)
                loaded = self._ledger.load()
            except Exception as error:  # unwritable state dir: index without persistence
                log.warning("session ledger %s unusable, every start will read every file: %s", self._db_path, error)
                self._ledger, self._ledger_error = None, f"{type(error).__name__}: {error}"
        self._native = self._make_native()
        for state in self._states:
            self._activate(state)
        with self._lock:
            self._entries = {e.path: e for e in loaded if self._root_of(e.path) is not None}
        self._dirty.update({e.path: None for e in loaded if e.path not in self._entries})
        for state in self._states:
            if state.watch_path is not None:
                self._scan_root(state)
        self._flush()
        now = time.monotonic()
        self._next_reconcile = now + self._reconcile_interval
        self._next_root_check = now + self._root_check_interval
        self._scan_seconds = now - began
        with self._cond:
            self._ready = True
            self._cond.notify_all()

    def _teardown(self) -> None:
        observers = [o for o in (self._native, self._poller) if o is not None]
        for observer in observers:
            with contextlib.suppress(Exception):
                observer.stop()
        for observer in observers:
            with contextlib.suppress(Exception):
                observer.join(timeout=5)
        with contextlib.suppress(Exception):
            self._flush()
        if self._ledger is not None:
            self._ledger.close()
        with self._cond:
            self._ready = True  # nothing more will happen: let waiters return
            self._cond.notify_all()

    def _next_batch(self) -> _Batch | None:
        """Block until there is work or a timer is due; then let a burst coalesce briefly."""
        with self._cond:
            while not self._stopping and not self._pending:
                left = self._next_timer() - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._stopping:
                return None
            if self._pending:  # watchdog reports an overflow twice, a burst as many events: take them together
                until = time.monotonic() + self._coalesce
                while not self._stopping and (left := until - time.monotonic()) > 0:
                    self._cond.wait(left)
            batch, self._pending = self._pending, _Batch()
            self._busy = True
            return batch

    def _next_timer(self) -> float:
        due = [self._next_reconcile]
        if self._verify_due is not None:
            due.append(self._verify_due)
        if any(s.mode == "absent" for s in self._states):
            due.append(self._next_root_check)
        if self._dirty:
            due.append(self._last_flush + self._flush_interval)
        return min(due)

    def _process(self, batch: _Batch) -> None:
        reconcile = self._overflowed(batch.overflows)
        if batch.check_roots or None in batch.overflows:
            self._check_roots()
        files = set(batch.files)
        for directory in _topmost(batch.dirs):
            self._rescan_dir(directory, files)
        for path in files:
            self._refresh(path)
        if batch.new_dirs:
            self._verify_dirs(batch.new_dirs)
        for state in reconcile:
            self._reconcile(state)

    def _timers(self) -> None:
        now = time.monotonic()
        if self._verify_due is not None and now >= self._verify_due:
            self._verify_suspects()
        if now >= self._next_reconcile:
            self._check_roots()
            for state in self._states:
                if state.watch_path is not None:
                    self._reconcile(state)
            self._next_reconcile = now + self._reconcile_interval
        if now >= self._next_root_check:
            if any(s.mode == "absent" for s in self._states):
                self._check_roots()
            self._next_root_check = now + self._root_check_interval
        if self._dirty and now >= self._last_flush + self._flush_interval:
            self._flush()

    # --- observers and roots (worker) -------------------------------------------------------

    def _make_native(self) -> BaseObserver | None:
        """The shared native observer, or None (polling everywhere) if it cannot be had."""
        if self._force_polling:
            return None
        before = inotify_fds()
        try:
            observer = self._factory()
            observer.start()
        except Exception as error:  # EMFILE from inotify_init (no instance left), or no usable libc
            code = error.errno if isinstance(error, OSError) else None
            self._native_error = (code, f"{error.strerror or error}" if isinstance(error, OSError) else str(error))
            log.warning("native file watching unavailable, polling instead: %s", error)
            return None
        created = inotify_fds() - before
        self._native_fd = created.pop() if len(created) == 1 and observer_kind(observer) == "inotify" else None
        return observer

    def _activate(self, state: _RootState) -> None:
        """Watch an existing root natively (or by polling when that fails); wait for a missing one."""
        path = str(state.root.path)
        if not os.path.isdir(path):
            self._to_absent(state)
            return
        self._release_ancestor(state)
        state.watch_path = os.path.realpath(path)
        if self._native is None:
            code, message = self._native_error or (None, "")
            self._to_polling(state, code, message)
            return
        try:
            state.watch = self._native.schedule(
                self._root_handler, state.watch_path, recursive=True, event_filter=FILE_EVENTS
            )
        except OSError as error:  # the root's own watch: ENOSPC "inotify watch limit reached"
            self._to_polling(state, error.errno, f"{error.strerror or error}")
            return
        state.observer = self._native
        state.mode = observer_kind(self._native)

    def _to_polling(self, state: _RootState, code: int | None, message: str) -> None:
        self._unschedule(state)
        if self._force_polling:
            state.last_error, state.advice = None, None
        else:
            state.last_error = message or "native watching failed"
            state.advice = limit_advice(code, self._poll_interval)
            log.warning("%s: %s; %s", state.root.path, state.last_error, state.advice)
        if self._poller is None:
            from watchdog.observers.polling import PollingObserver

            self._poller = PollingObserver(timeout=self._poll_interval)
            self._poller.start()
        assert state.watch_path is not None
        try:
            state.watch = self._poller.schedule(
                self._root_handler, state.watch_path, recursive=True, event_filter=FILE_EVENTS
            )
        except OSError as error:
            state.mode, state.last_error = "unwatched", f"{error.strerror or error}"
            return
        state.observer, state.mode = self._poller, "polling"

    def _to_absent(self, state: _RootState) -> None:
        self._unschedule(state)
        if state.watch_path is not None:
            self._drop_under(state.watch_path)
        state.watch_path, state.mode = None, "absent"
        self._watch_ancestor(state)

    def _unschedule(self, state: _RootState) -> None:
        if state.watch is not None and state.observer is not None:
            with contextlib.suppress(Exception):
                state.observer.unschedule(state.watch)
        state.watch, state.observer = None, None

    def _watch_ancestor(self, state: _RootState) -> None:
        """Watch the nearest existing ancestor of a missing root for directories appearing."""
        ancestor = next((str(p) for p in state.root.path.parents if p.is_dir()), None)
        if ancestor == state.ancestor:
            return
        self._release_ancestor(state)
        state.ancestor = ancestor
        if ancestor is None:
            return
        index = self._states.index(state)
        if ancestor in self._ancestors:
            self._ancestors[ancestor][1].add(index)
        elif self._native is not None:
            with contextlib.suppress(OSError):  # the periodic root check still finds it
                watch = self._native.schedule(
                    self._ancestor_handler, ancestor, recursive=False, event_filter=DIR_EVENTS
                )
                self._ancestors[ancestor] = (watch, {index})

    def _release_ancestor(self, state: _RootState) -> None:
        ancestor, state.ancestor = state.ancestor, None
        if ancestor is None or ancestor not in self._ancestors:
            return
        watch, users = self._ancestors[ancestor]
        users.discard(self._states.index(state))
        if not users:
            del self._ancestors[ancestor]
            if self._native is not None:
                with contextlib.suppress(Exception):
                    self._native.unschedule(watch)

    def _check_roots(self) -> None:
        """Activate roots that appeared, retire roots that vanished, follow ancestors deeper."""
        for state in self._states:
            if state.watch_path is not None and not os.path.isdir(state.watch_path):
                self._to_absent(state)
            for _attempt in range(3):  # watch the new ancestor first, then look again: no gap
                if state.watch_path is not None:
                    break
                if state.root.path.is_dir():
                    self._activate(state)
                    if state.watch_path is not None:
                        self._scan_root(state)
                    break
                self._watch_ancestor(state)

    def _overflowed(self, paths: set[str | None]) -> list[_RootState]:
        """Count overflows per root and return the roots to reconcile."""
        if not paths:
            return []
        native = [s for s in self._states if s.observer is not None and s.observer is self._native]
        if None in paths:
            self._count("overflows")
        hit = [s for s in native if s.watch_path in paths]
        for state in hit:
            state.overflows += 1
        return native if None in paths else hit

    # --- watch verification (worker) -------------------------------------------------------

    def _unwatched(self, directories: Iterable[str]) -> dict[int, list[str]]:
        """Directories under natively watched roots that the kernel does not list as watched, by root.

        Only trusted for a root whose own directory is listed: a kernel that does not show
        watches in fdinfo must not send every root to polling.
        """
        inodes = watched_inodes(self._native_fd) if self._native_fd is not None else None
        if not inodes:
            return {}
        missing: dict[int, list[str]] = {}
        trusted: dict[int, bool] = {}
        for directory in directories:
            state = self._root_of(directory)
            if state is None or state.observer is not self._native or state.watch_path is None:
                continue
            index = self._states.index(state)
            if index not in trusted:
                trusted[index] = _inode(state.watch_path) in inodes
            ino = _inode(directory)
            if trusted[index] and ino is not None and ino not in inodes:
                missing.setdefault(index, []).append(directory)
        return missing

    def _verify_dirs(self, directories: Iterable[str]) -> None:
        """Queue directories whose watch watchdog failed to place without telling (looked at again later)."""
        for found in self._unwatched(directories).values():
            self._suspects.update(found)
        if self._suspects and self._verify_due is None:
            self._verify_due = time.monotonic() + VERIFY_DELAY

    def _verify_suspects(self) -> None:
        suspects, self._suspects = self._suspects, set()
        self._verify_due = None
        for index, directories in self._unwatched(sorted(suspects)).items():
            state = self._states[index]
            message = (
                f"inotify watch limit reached: {len(directories)} directories under the root are not watched"
                f" (first: {directories[0]})"
            )
            self._to_polling(state, errno.ENOSPC, message)
            self._scan_root(state)

    # --- files (worker) ----------------------------------------------------------------------

    def _root_of(self, path: str) -> _RootState | None:
        best: _RootState | None = None
        for state in self._states:
            if state.contains(path) and (best is None or len(state.watch_path or "") > len(best.watch_path or "")):
                best = state
        return best

    def _scan_root(self, state: _RootState) -> None:
        """Walk a root, read what changed since the ledger, drop what is gone, verify watches."""
        if state.watch_path is None:
            return
        seen: set[str] = set()
        directories: list[str] = []
        for directory, files in _walk(state.watch_path):
            if self._stopping:  # stop() during a cold scan of thousands of files: do not make it wait
                return
            directories.append(directory)
            for path, lst in files:
                if accepts(state.root.agent, path):
                    seen.add(path)
                    self._refresh(path, lst)
        self._drop_under(state.watch_path, keep=seen)
        if state.observer is self._native:
            self._verify_dirs(directories)

    def _reconcile(self, state: _RootState) -> None:
        """Catch up on events that were lost (overflow) or never sent (a missed watch)."""
        state.reconciles += 1
        self._count("reconciles")
        self._scan_root(state)

    def _rescan_dir(self, directory: str, files: set[str]) -> None:
        """A directory appeared, moved or vanished: queue its files, or drop what it held."""
        state = self._root_of(directory)
        if state is None:
            return
        if not os.path.isdir(directory) or os.path.islink(directory):
            self._drop_under(directory)
            return
        for _directory, found in _walk(directory):
            files.update(path for path, _lst in found if accepts(state.root.agent, path))

    def _refresh(self, path: str, lst: os.stat_result | None = None) -> None:
        """Re-read one file if its signature changed; forget it if it is gone or not a regular file."""
        state = self._root_of(path)
        if state is None or not accepts(state.root.agent, path):
            return
        prev = self._entries.get(path)
        try:
            lst = lst or os.lstat(path)
            if not stat.S_ISREG(lst.st_mode):
                raise NotRegularFile(errno.EINVAL, "not a regular file", path)
            if prev is not None and prev.unchanged(lst):
                return
            entry, kind = read_entry(path, prev)
        except (FileNotFoundError, NotADirectoryError, NotRegularFile):
            self._forget(path)
            return
        except Exception as error:  # unreadable file or a parser bug: report, keep going
            self._count("errors")
            state.last_error = f"{path}: {type(error).__name__}: {error}"
            return
        self._store(entry, kind)

    def _count(self, name: str) -> None:
        with self._cond:
            self._counters[name] += 1

    def _store(self, entry: Entry, kind: ReadKind) -> None:
        if kind != "none":
            self._count(kind)
        with self._lock:
            self._entries[entry.path] = entry
        self._dirty[entry.path] = entry

    def _forget(self, path: str) -> None:
        with self._lock:
            known = self._entries.pop(path, None)
        if known is not None:
            self._dirty[path] = None

    def _drop_under(self, directory: str, keep: set[str] | None = None) -> None:
        prefix = directory.rstrip(os.sep) + os.sep
        with self._lock:
            gone = [
                p for p in self._entries if (p == directory or p.startswith(prefix)) and (keep is None or p not in keep)
            ]
            for path in gone:
                del self._entries[path]
        self._dirty.update(dict.fromkeys(gone))

    def _flush(self) -> None:
        """Write the changed rows of the ledger in one transaction."""
        dirty, self._dirty = self._dirty, {}
        self._last_flush = time.monotonic()
        if self._ledger is None or not dirty:
            return
        upserts = [entry for entry in dirty.values() if entry is not None]
        deletes = [path for path, entry in dirty.items() if entry is None]
        try:
            self._ledger.write(upserts, deletes)
        except Exception as error:  # a full disk must not stop the index; the ledger is a cache
            log.warning("session ledger not written: %s", error)
            self._count("errors")


def _inode(path: str) -> int | None:
    """The inode of a directory (not following a final symlink), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino if stat.S_ISDIR(st.st_mode) else None


def _topmost(directories: Iterable[str]) -> list[str]:
    """Drop directories that lie under another one in the set (one ``rm -rf`` = one rescan)."""
    kept: list[str] = []
    for directory in sorted(directories):
        if kept and (directory == kept[-1] or directory.startswith(kept[-1].rstrip(os.sep) + os.sep)):
            continue
        kept.append(directory)
    return kept
