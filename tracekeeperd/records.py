"""Resume records, written at most once per interval per file instead of once per batch.

The daemon keeps two kinds beside each snapshot: the redacted copy's record (outgoing.py: how
far the copy goes, the hashes of both sides) and the usage checkpoint (tokens.py: how far usage
was read, the reader's state). Each is only a point to resume from after a restart, checked
against the files before any use (hashes, a probe of the bytes), so an older one costs some
re-reading, never a wrong answer. Written per batch, they were two file replacements per
session per batch in a burst: a temp file renamed over the old one, which ext4 pays for with a
journal commit (its `auto_da_alloc` flushes a file renamed over another), about 0.3 ms each on
the machine of docs/benchmarks.md, the largest share of the worker's own CPU after redaction.

So the first record of a file is written at once (a lone commit's state is on disk as soon as
its batch ends, as before), and later ones within `every` seconds only replace the pending
bytes in memory; `flush` (the worker's housekeeping turn, and all at its stop) writes what is
due. A record whose file was deleted since (its snapshot collected, its copy started afresh) is
dropped, never written back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .paths import write_private

log = logging.getLogger(__name__)

#: Seconds between two writes of one record file while it keeps changing.
EVERY = 30.0


class Records:
    """Pending record bytes per file; the thread that writes (the worker's I/O thread) and the
    readers (`pending`) share it under one lock."""

    def __init__(self, every: float = EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._lock = threading.Lock()
        #: path -> (bytes to write, the file whose existence the record needs)
        self._pending: dict[Path, tuple[bytes, Path]] = {}
        #: path -> when it was last written (kept only while a write could still be deferred)
        self._written: dict[Path, float] = {}

    def write(self, path: Path, data: bytes, *, needs: Path) -> None:
        """Record `data` for `path`: now if it was not written within `every`, else at the next
        due `flush`. `needs` is the file the record describes (the snapshot): once it is gone,
        the record is dropped."""
        now = self._clock()
        with self._lock:
            last = self._written.get(path)
            if last is not None and now - last < self.every:
                self._pending[path] = (data, needs)
                return
            self._pending.pop(path, None)
            self._written[path] = now
        self._put(path, data)

    def pending(self, path: Path) -> bytes | None:
        """The record not written yet for `path`, newer than the file's, if there is one."""
        with self._lock:
            entry = self._pending.get(path)
        return None if entry is None else entry[0]

    def drop(self, path: Path) -> None:
        """`path` was deleted on purpose (a copy started afresh): nothing pending is written."""
        with self._lock:
            self._pending.pop(path, None)
            self._written.pop(path, None)

    def flush(self, *, everything: bool = False) -> int:
        """Write the records that are due (all of them with `everything`: the daemon's stop).
        Returns how many were written."""
        now = self._clock()
        with self._lock:
            due = [
                (path, data, needs)
                for path, (data, needs) in self._pending.items()
                if everything or now - self._written.get(path, 0.0) >= self.every
            ]
            for path, _, _ in due:
                del self._pending[path]
                self._written[path] = now
            # Forget write times that can no longer defer anything: the table stays small.
            for path in [p for p, at in self._written.items() if now - at >= self.every and p not in self._pending]:
                del self._written[path]
        written = 0
        for path, data, needs in due:
            if not needs.exists():
                continue  # its snapshot was collected meanwhile
            written += self._put(path, data)
        return written

    @staticmethod
    def _put(path: Path, data: bytes) -> int:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(path, data)
        except OSError as exc:  # only speed is lost: the next start reads from further back
            log.warning("resume record %s not saved: %s", path.name, exc)
            return 0
        return 1


#: The daemon's one table (the worker flushes it; outgoing.py and tokens.py write to it).
RECORDS = Records()
