"""Every known repository's notes-sync state, kept so `status` answers from memory.

Computing one repository's state (notesync.notes_status) takes a handful of git processes;
`status` once did that for every repository on every call (440 processes, 1.09 s for 110
repositories). Here it is computed once, and again only for a repository whose state can have
changed: one of the files git rewrites when a notes ref, a tracking ref, the remotes or the
sync record change has a new inode, size or mtime (git's Documentation/gitrepository-layout.txt:
loose refs, `packed-refs`, `reftable/tables.list`, `config`; sync.py writes the record). Looking
costs a few `stat`s per repository and no git.

The daemon keeps one `NotesStates` for its life and never looks per request: a `status` answers
from memory (`answer`), whatever the number of repositories. What can change a state is either
the daemon's own notes write (the worker says so: `touch`) or someone else's git (`git push`,
`git fetch`, `git notes`, `tracekeeper pull`), which a background `sweep` on a timer finds by
the stamps: 1,000 repositories cost ~18 ms of `stat`s per pass, off the request path (one
inotify watch per repository would be a thread each with watchdog). The CLI without a daemon
makes one per call and looks once (`view`).

An answer lists only the repositories with something to say (`summarise`): notes not pushed,
an error, a state not known yet; the rest is a count, so the answer stays small for 1,000.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import notesync
from .config import normalize_notes_ref
from .errors import TracekeeperError
from .git import FileStamp, read_common_dir, stat_stamp

#: After the daemon's own notes write, a repository's state is computed again at once unless a
#: write of its own already did that less than this many seconds ago; then once, this long after
#: that one (the sweep starts it). In a burst the worker writes each repository's notes once per
#: batch, a few seconds apart, and with a remote each computation is ~5 git processes (~11 ms,
#: `bench_fleet.py --only burst-remote`): a burst's state is then computed at most once per
#: SETTLE per repository, and the last write is always taken in, at most SETTLE plus a sweep
#: interval later. A lone commit is taken in at once, as before.
SETTLE = 10.0

#: (path, inode, size, mtime in ns) per watched file, None where there is none.
Stamp = FileStamp

# The stat stamp and the common dir are git.py's (the worker's notes-ref stamp uses them too);
# bound here under these names so a test can count the stamps taken.
_stamp = stat_stamp
_common = read_common_dir


def _watched(common: str, ref: str, remotes: Iterable[str]) -> tuple[str, ...]:
    """The files whose change can change the state (strings: a stat per file is the whole cost).

    `config` comes first: a repository deleted since shows as its stamp's first entry gone. A
    repository with reftable keeps every ref in it; one without has loose refs and
    `packed-refs` (switching backends rewrites `config`, which is watched either way).

    Without a remote no ref is an input (the state is "no remotes"; a remote added rewrites
    `config`): the daemon's own notes writes, every commit of a burst, then change nothing
    watched and run no git (`touch`)."""
    remotes = tuple(remotes)
    if not remotes:
        refs: tuple[str, ...] = ()
    elif os.path.isdir(os.path.join(common, "reftable")):
        refs = (os.path.join(common, "reftable", "tables.list"),)
    else:
        refs = (
            os.path.join(common, "packed-refs"),
            os.path.join(common, ref),
            *(os.path.join(common, notesync.tracking_ref(remote, ref)) for remote in remotes),
        )
    return (os.path.join(common, "config"), os.path.join(common, notesync.STATE_FILE), *refs)


def quiet(entry: dict[str, Any]) -> bool:
    """Nothing to report: no notes waiting to be pushed, no error, the state known."""
    if entry.get("error") or entry.get("pending"):
        return False
    return not any(remote.get("unpushed") for remote in entry.get("remotes") or [])


def summarise(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(the entries with something to say, in order; how many had nothing to say)."""
    listed = [entry for entry in entries if not quiet(entry)]
    return listed, len(entries) - len(listed)


class NotesStates:
    """Per repository (by common git dir): the files watched, the stamp its state was computed
    at, and the state."""

    def __init__(self, notes_ref: str, *, settle: float = SETTLE, clock: Callable[[], float] = time.monotonic) -> None:
        self.notes_ref = normalize_notes_ref(notes_ref)
        self.settle = settle
        self._clock = clock
        #: When a write of the daemon's own last made a repository's state be computed.
        self._written_at: dict[str, float] = {}
        #: Repositories written again within `settle`: when their one computation is due.
        self._deferred: dict[str, float] = {}
        self._lock = threading.Lock()
        self._known: dict[str, tuple[tuple[str, ...], Stamp, dict[str, Any]]] = {}
        self._running: dict[str, concurrent.futures.Future[None]] = {}
        #: Repositories whose directory was missing at the last look (left out of answers).
        self._gone: set[str] = set()
        #: Touched while being computed: computed once more when that run ends.
        self._again: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tracekeeper-notes-state")
        #: Set by `close` (the daemon's stop): nothing new is started after it.
        self._closed = False

    def _compute(self, common: str, display: str) -> tuple[tuple[str, ...], Stamp, dict[str, Any]]:
        # The stamp is taken before the git reads: a change during them shows as a new stamp
        # next time, so it is never hidden behind an answer computed before it.
        before = self._known.get(common)
        watched = before[0] if before else _watched(common, self.notes_ref, ())
        stamp = _stamp(watched)
        try:
            # Where it is, from the queue's record: a recompute after each notes write (once per
            # repository per batch in a burst) runs no git to find the repository again.
            where = notesync.Where(Path(common), Path(display), common=Path(common))
            states = notesync.notes_status(where if where.cwd.is_dir() else where.cwd, self.notes_ref)
        except (TracekeeperError, OSError) as exc:  # a broken repository must not break `status`
            return watched, stamp, {"repo": display, "remotes": [], "error": str(exc)}
        now_watched = _watched(common, self.notes_ref, [state.remote for state in states])
        if now_watched != watched:  # now with the tracking refs of the remotes it has
            watched, stamp = now_watched, _stamp(now_watched)
        return watched, stamp, {"repo": display, "remotes": [state.view() for state in states]}

    def _refresh(self, common: str, display: str) -> None:
        try:
            computed = self._compute(common, display)
            with self._lock:
                self._known[common] = computed
        finally:
            with self._lock:  # once more if touched meanwhile, never seen as not running between
                if common in self._again and not self._closed:
                    self._again.discard(common)
                    self._running[common] = self._pool.submit(self._refresh, common, display)
                else:
                    self._running.pop(common, None)

    def _submit(self, common: str, display: str) -> concurrent.futures.Future[None] | None:
        """Compute (common, display) on the pool unless that already runs (None once closed)."""
        with self._lock:
            if self._closed:
                return None
            future = self._running.get(common)
            if future is None:
                future = self._pool.submit(self._refresh, common, display)
                self._running[common] = future
            return future

    def touch(self, git_dir: str) -> None:
        """The daemon wrote notes in this repository: compute its state again now (the
        sweep would find it too, up to an interval later)."""
        common = _common(git_dir)
        with self._lock:
            if common in self._running:
                self._again.add(common)  # it may have read the refs before this write
                return
        entry = self._known.get(common)
        if entry is None:
            return  # never computed: the next `answer` or sweep does
        if _stamp(entry[0]) == entry[1]:
            return  # the write changed none of the state's inputs (a repository without a remote)
        now = self._clock()
        with self._lock:
            if common in self._deferred:
                return  # already due once, after this write
            last = self._written_at.get(common)
            if last is not None and now - last < self.settle:
                self._deferred[common] = last + self.settle
                return
            self._written_at[common] = now
        self._submit(common, entry[2]["repo"])

    def _due(self) -> list[concurrent.futures.Future[None]]:
        """Start the deferred computations whose time has come (the sweep's timer drives it)."""
        now = self._clock()
        with self._lock:
            due = [common for common, at in self._deferred.items() if at <= now]
            for common in due:
                del self._deferred[common]
                self._written_at[common] = now
        futures = []
        for common in due:
            entry = self._known.get(common)
            future = self._submit(common, entry[2]["repo"]) if entry is not None else None
            if future is not None:
                futures.append(future)
        return futures

    def close(self) -> None:
        """The daemon's stop: let the computations in flight end (git processes, bounded) and
        start none after, so no git runs on behalf of a daemon that said it stopped."""
        with self._lock:
            self._closed = True
            self._again.clear()
            self._deferred.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._running.clear()  # a cancelled one never ran its `finally`

    def _look(self, repositories: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[Any]]:
        """Stat every repository; start computing those whose stamp changed. (the ones that
        exist, the computations started)."""
        live = []
        futures = []
        for common, display in repositories:
            entry = self._known.get(common)
            stamp = _stamp(entry[0]) if entry is not None else None
            if (stamp is None or stamp[0] is None) and not os.path.isdir(common):
                self._gone.add(common)  # no `config` any more: the repository is gone, not shown
                continue
            self._gone.discard(common)
            live.append((common, display))
            if entry is not None and entry[1] == stamp:
                continue
            if common in self._deferred:
                continue  # our own writes changed it: computed once when due (`_due`)
            future = self._submit(common, display)
            if future is not None:
                futures.append(future)
        return live, futures

    def sweep(self, repositories: list[tuple[str, str]]) -> int:
        """The background pass (the daemon's timer): a few `stat`s per repository, git only
        for those whose refs, config or sync record changed, and the computations deferred
        after the daemon's own writes once they are due. Returns how many it recomputes."""
        due = self._due()
        return len({*due, *self._look(repositories)[1]})  # one started by both counts once

    def answer(self, repositories: list[tuple[str, str]], *, wait: float | None = None) -> list[dict[str, Any]]:
        """The state of each repository from memory, as the last sweep or write left it: no
        `stat`, no git for a repository already known. One seen for the first time is computed
        now, and one being computed again (a write the daemon just made, a change the sweep
        found) is waited for: at most `wait` seconds, else shown as it was, or `pending`. The
        work is the repositories that changed, never all of them."""
        with self._lock:
            futures: list[concurrent.futures.Future[None]] = list(self._running.values())
        for common, display in repositories:
            if common in self._known or common in self._gone or common in self._running:
                continue
            if not os.path.isdir(common):
                self._gone.add(common)
                continue
            future = self._submit(common, display)
            if future is not None:
                futures.append(future)
        if futures:
            concurrent.futures.wait(futures, timeout=wait)
        return self._entries(repositories)

    def _entries(self, repositories: list[tuple[str, str]]) -> list[dict[str, Any]]:
        out = []
        for common, display in repositories:
            if common in self._gone:
                continue
            entry = self._known.get(common)
            out.append(entry[2] if entry is not None else {"repo": display, "remotes": [], "pending": True})
        return out

    def view(self, repositories: list[tuple[str, str]], *, wait: float | None = None) -> list[dict[str, Any]]:
        """The state of each (common git dir, working tree) that still exists, in that order.

        git runs only for repositories whose stamp changed, several at once, each at most once
        at a time however many callers ask. With `wait`, answers after that many seconds at
        most: a repository still being computed is shown as it was, or as `pending` the first
        time (a daemon that just started with 1,000 repositories must still answer `status`
        within the CLI's timeout).
        """
        live, futures = self._look(repositories)
        if futures:
            concurrent.futures.wait(futures, timeout=wait)
        return self._entries(live)
