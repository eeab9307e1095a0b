"""Long-lived git plumbing per busy repository: a burst's notes writes start no process to read
objects, make trees or swap refs.

Each notes write needs `cat-file --batch`, `mktree --batch` and `update-ref --stdin`; started
per write, a burst over 100 repositories paid three git start-ups per repository per batch
(bench/bench_fleet.py). All three answer one request at a time and flush each answer
(git/git builtin/cat-file.c `batch_objects` with `--batch`, builtin/mktree.c `--batch`,
builtin/update-ref.c `report_ok` for start/prepare/commit), so one of each can serve every
write to a repository while it is busy. So can `hash-object -w --stdin-paths` (it flushes each
answer to a pipe: write-or-die.c `maybe_flush_or_die`): one for the note blobs, one with `-t
tree` for the trees (in place of `mktree`, which looks up every entry's object on every
write: notes.py `_Session.mktree`), one with `-t commit` for the notes commits after a
repository's first (notes.py `_commit`). So a kept repository holds up to five (`cat-file`,
three `hash-object`, `update-ref`), and a write starts no process at all. A `Pool` keeps them
per git dir, closes those of a repository idle for `idle` seconds, and all of them at the
daemon's stop.

A process is reused only after a lease that ended cleanly: anything raised inside a lease may
have left one mid-answer, so the lease's processes are closed and the next one starts afresh.
A process that exited (`update-ref` dies when a compare-and-swap is refused) is restarted on
its next use.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import git
from .errors import GitError

#: Seconds a repository's processes outlive its last write: longer than the daemon's longest
#: hold of a burst (worker.COALESCE_MOST), so a burst keeps them from batch to batch.
IDLE = 30.0
#: File descriptors a kept repository holds: stdin, stdout and a stderr file for each of 5 gits.
FDS_PER_REPO = 15
#: Descriptors left for everything else (queue, sockets, watches, uploads, short-lived gits).
FD_RESERVE = 256
#: Kept repositories even under a tight limit (macOS gives a process 256 by default).
MIN_KEPT = 4


#: How far the daemon raises its own soft descriptor limit: room for ~530 kept repositories, and
#: below macOS's OPEN_MAX (10,240, <sys/syslimits.h>), past which setrlimit fails with EINVAL
#: even when the hard limit says unlimited (its setrlimit(2) man page, COMPATIBILITY).
FD_WANTED = 8192


#: (before, after) of the daemon's `raise_fd_limit`, logged once it has started (a daemon that
#: refuses to start says only why, on one line).
FD_LIMIT: tuple[int, int] | None = None


def raise_fd_limit(wanted: int = FD_WANTED) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit, never down);
    (before, after).

    Service managers start the daemon low for select()'s sake: systemd gives 1,024 and says a
    program that does not use select() should raise its own soft limit to the hard one
    (systemd.exec(5), LimitNOFILE=; so the unit sets none), launchd gives 256. The daemon waits
    with epoll/kqueue/poll only, and its kept git processes take 15 descriptors a repository:
    at 1,024 only ~51 repositories keep theirs. A refusal (a sandbox, a platform's own cap)
    keeps the limit it had: fewer kept repositories, nothing broken."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    global FD_LIMIT
    FD_LIMIT = (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    return FD_LIMIT


def room() -> int:
    """How many repositories to keep: what the descriptor limit leaves (a systemd service's
    default soft limit is 1,024: about 51)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 16
    return max(MIN_KEPT, (soft - FD_RESERVE) // FDS_PER_REPO)


class Watchdog:
    """Every write's deadline on one thread, started on first use: a burst writes thousands of
    notes commits, and a timer per write started (and ended) a thread for each.

    `arm` returns a token for `disarm`; an action whose deadline passes first runs on the
    watchdog's thread (`Plumbing.kill`: a read blocked on a hung git then ends in an error).
    Disarmed deadlines stay in the heap until they would have passed or it is compacted."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Callable[[], None]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, action: Callable[[], None]) -> int:
        with self._cond:
            token = next(self._tokens)
            self._armed[token] = action
            heapq.heappush(self._heap, (self.clock() + seconds, token))
            if len(self._heap) > 2 * len(self._armed) + 64:  # a burst of short writes: drop the disarmed
                self._heap = [entry for entry in self._heap if entry[1] in self._armed]
                heapq.heapify(self._heap)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tracekeeper-git-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                left = deadline - self.clock()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                action = self._armed.pop(token)
            action()  # outside the lock: a kill may take a moment, and arm must not wait on it


#: The daemon's one watchdog (notes.py `_Session`).
WATCHDOG = Watchdog()


class Plumbing:
    """One repository's long-lived git processes, by name, started on first use."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self._pipes: dict[str, git.Pipe] = {}
        self._scratch: Path | None = None
        #: What notes commits look like here, learnt from the first one commit-tree made
        #: (notes.py `_commit`): later ones go to a kept `hash-object -t commit`.
        self.commit_like: tuple[bytes, bytes, bytes] | None = None
        #: Notes trees by oid, parsed (notes.py `_Session.tree`): what an oid names never changes.
        self.trees: dict[str, Any] = {}

    def scratch(self) -> Path:
        """A private directory (0700) for files git reads by path (`hash-object --stdin-paths`),
        kept with the processes: no directory made and removed per write."""
        if self._scratch is None or not self._scratch.is_dir():
            import tempfile

            self._scratch = Path(tempfile.mkdtemp(prefix="tracekeeper-notes-"))
        return self._scratch

    def pipe(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> git.Pipe:
        """The running process called `name`, started with `args` unless it still runs."""
        pipe = self._pipes.get(name)
        if pipe is not None and pipe.proc.poll() is None:
            return pipe
        if pipe is not None:
            pipe.close()
        self._pipes[name] = pipe = git.Pipe(self.git_dir, args, env=env)
        return pipe

    def pids(self) -> list[int]:
        return [pipe.proc.pid for pipe in self._pipes.values() if pipe.proc.poll() is None]

    def kill(self) -> None:
        """Stop them now (from another thread: a write's deadline); `close` still reaps them."""
        for pipe in list(self._pipes.values()):
            pipe.kill()

    def close(self) -> None:
        for pipe in self._pipes.values():
            pipe.close()
        self._pipes.clear()
        self.commit_like = None
        self.trees.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


class Pool:
    """Plumbing per git dir, each lent to one write at a time (the worker writes a batch's
    repositories side by side, and the daemon's stop and idle closing come from other threads:
    hence the lock). A repository leased again while lent gets a set of its own, which is kept
    only if no other set is by the time it ends."""

    def __init__(
        self, idle: float = IDLE, clock: Callable[[], float] = time.monotonic, max_kept: int | None = None
    ) -> None:
        self.idle, self.clock = idle, clock
        #: Past this many, a repository's processes are closed after its write, not kept; the
        #: kept ones stay (evicting them would make a round-robin over more repositories than
        #: this start every process anew, each time).
        self.max_kept = room() if max_kept is None else max_kept
        self._lock = threading.Lock()
        self._held: dict[Path, tuple[Plumbing, float]] = {}  # git dir -> (plumbing, last used)
        self._closed = False

    @contextlib.contextmanager
    def lease(self, git_dir: Path) -> Iterator[Plumbing]:
        with self._lock:
            if self._closed:
                raise GitError("the daemon is stopping: no new git processes", -1, "")
            held = self._held.pop(git_dir, None)  # out of the pool while in use: never closed under a write
        plumbing = held[0] if held else Plumbing(git_dir)
        clean = False
        try:
            yield plumbing
            clean = True
        finally:
            if not clean:
                plumbing.close()
            with self._lock:
                # Another lease of this repository that ended first keeps its own set: ours would
                # replace it in the pool and leave its processes running, closed by nobody.
                keep = (
                    not self._closed
                    and git_dir not in self._held
                    and (held is not None or len(self._held) < self.max_kept)
                )
                if keep:
                    self._held[git_dir] = (plumbing, self.clock())
            if not keep:
                plumbing.close()

    def pids(self, git_dir: Path) -> list[int]:
        with self._lock:
            held = self._held.get(git_dir)
        return held[0].pids() if held else []

    def close_idle(self) -> int:
        """Close the processes of every repository unused for `idle` seconds; how many."""
        now = self.clock()
        with self._lock:
            idle = [path for path, (_, used) in self._held.items() if now - used >= self.idle]
            closing = [self._held.pop(path)[0] for path in idle]
        for plumbing in closing:
            plumbing.close()
        return len(closing)

    def close(self) -> None:
        """The daemon's stop: every process ends (and is reaped) now, none starts after."""
        with self._lock:
            self._closed = True
            closing = [plumbing for plumbing, _ in self._held.values()]
            self._held.clear()
        for plumbing in closing:
            plumbing.close()
