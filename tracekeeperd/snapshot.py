"""Keep what a commit saw of its transcript, even if the file is later rewritten or deleted.

At ingest the daemon copies the transcript's complete lines into its own snapshot file under
the state directory. Transcripts are append-only in practice, so one snapshot per session
grows by appending; each job only records how many bytes of it belong to its commit (plus
their sha256 and line count). A transcript that shrank or changed before the snapshot's end
was rewritten: it starts a new snapshot generation instead of corrupting the old one.

When a commit is ingested late (the daemon was down for a day), lines written after the
commit are cut off using the records' own `timestamp` fields, so the note describes what the
commit saw, not what the agent did afterwards.

Gemini's legacy `.json` session is not a log but one JSON document, rewritten whole and
without a final newline (gemini-cli's `writeConversation`: `fs.writeFileSync(file,
JSON.stringify(conversation, null, 2))`). "Complete lines only" would drop its closing brace,
so a document is kept whole once it parses, ended with a newline (whitespace after a JSON
value) so every line-oriented reader sees it complete; each new version is a new generation,
and its range is the whole document.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import PermanentError
from .outgoing import COPY_SUFFIXES, copy_files

if TYPE_CHECKING:
    from hashlib import _Hash

_CHUNK = 1 << 20
#: Bytes compared at the start and just before the end of the already-copied prefix.
_PROBE = 4096
#: A transcript modified this long after the commit is treated as having grown since.
_LATE_GRACE = 0.5
#: Transcripts that are one JSON document rewritten whole, not a log of lines (Gemini < v0.39).
DOCUMENT_SUFFIXES = (".json",)
#: How long a document that does not parse is re-read: the CLI may be rewriting it right now.
_DOCUMENT_SETTLE = 1.0


def is_document(transcript: Path) -> bool:
    """Whether a transcript is one whole JSON document (kept and ranged whole) rather than lines."""
    return transcript.name.endswith(DOCUMENT_SUFFIXES)


@dataclass(frozen=True)
class Extent:
    """The first `bytes` bytes of a snapshot: `lines` complete lines hashing to `sha256`."""

    bytes: int
    lines: int
    sha256: str


class TranscriptError(PermanentError):
    """The transcript cannot be read as a regular file."""


def open_transcript(path: Path) -> BinaryIO:
    """Open a transcript for reading, refusing anything but a regular file with one name.

    The roots check looks at the path, so a symlink or a hard link inside a transcript
    directory would smuggle any file out (`ln ~/.aws/credentials .../rollout-x.jsonl`). Agents
    create their transcripts and never link them, so a second link is refused like a symlink;
    both are judged on the opened descriptor, so the file read is the file checked.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TranscriptError(f"transcript {path} does not exist (stale hf-traces-active.json?)") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the final component is a symlink
            raise TranscriptError(f"transcript {path} is a symlink; refusing to follow it") from None
        raise TranscriptError(f"cannot read transcript {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise TranscriptError(f"transcript {path} is not a regular file")
    if st.st_nlink > 1:
        os.close(fd)
        raise TranscriptError(
            f"transcript {path} has {st.st_nlink} hard links; refusing to read it (a transcript has one name)"
        )
    return os.fdopen(fd, "rb")


def _timestamp(line: bytes) -> float | None:
    """Epoch seconds of a JSONL record's top-level `timestamp`, when it has a readable one."""
    if b'"timestamp"' not in line:
        return None
    try:
        record = json.loads(line)
        value = record.get("timestamp") if isinstance(record, dict) else None
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        if isinstance(value, int | float):
            return float(value) / (1000.0 if value > 1e11 else 1.0)
    except (ValueError, TypeError, OverflowError, RecursionError):
        # RecursionError: json.loads on a pathologically nested record; treat as unstamped.
        return None
    return None


class Snapshots:
    """Snapshot files plus a cache of running hashes, so a growing session is not re-hashed."""

    def __init__(self, root: Path, redacted: Path | None = None) -> None:
        self.root = root
        #: Where each snapshot's redacted copy lives (outgoing.py); deleted with its snapshot.
        self.redacted = redacted if redacted is not None else root.with_name("redacted")
        self._hashers: dict[Path, tuple[int, _Hash]] = {}

    def _hasher_at(self, snapshot: Path, size: int) -> _Hash:
        cached = self._hashers.get(snapshot)
        if cached and cached[0] == size:
            return cached[1].copy()
        hasher = hashlib.sha256()
        with snapshot.open("rb") as fh:
            remaining = size
            while remaining:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:
                    raise OSError(f"snapshot {snapshot} is shorter than {size} bytes")
                hasher.update(chunk)
                remaining -= len(chunk)
        return hasher

    def take(
        self,
        transcript: Path,
        *,
        committed_at: float,
        previous: tuple[Path, Extent] | None,
        new_name: str,
    ) -> tuple[Path, Extent]:
        """Extend (or start) the session's snapshot to what the transcript held at commit time."""
        if is_document(transcript):
            return self._take_document(transcript, previous, new_name)
        with open_transcript(transcript) as src:
            st = os.fstat(src.fileno())
            late = st.st_mtime > committed_at + _LATE_GRACE
            if previous and self._continues(src, st.st_size, *previous):
                snapshot, base = previous
            else:
                snapshot, base = self._new_generation(new_name), Extent(0, 0, hashlib.sha256().hexdigest())
            return self._extend(src, st.st_size, snapshot, base, committed_at if late else None)

    def _take_document(
        self, transcript: Path, previous: tuple[Path, Extent] | None, new_name: str
    ) -> tuple[Path, Extent]:
        """The whole document, once it parses; the previous snapshot if it is the same document.

        No late cut: a document has no lines to cut at, and a rewrite cannot be un-done.
        """
        data = _read_document(transcript)
        if not data.endswith(b"\n"):
            data += b"\n"
        extent = Extent(bytes=len(data), lines=data.count(b"\n"), sha256=hashlib.sha256(data).hexdigest())
        if previous is not None and previous[1] == extent:
            try:
                if read_prefix(previous[0], extent.bytes) == data:
                    return previous
            except (OSError, PermanentError):
                pass  # collected or damaged: keep this version as a new generation
        snapshot = self._new_generation(new_name)
        fd = os.open(snapshot, os.O_WRONLY | os.O_CLOEXEC)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._hashers.pop(snapshot, None)
        return snapshot, extent

    def _new_generation(self, name: str) -> Path:
        """A new, empty snapshot file called `name`, or a variant of it: never a file that exists,
        which earlier commits' jobs may still read. Ingest names a generation after the
        millisecond it starts in, so a rewrite within that millisecond (or a clock stepped back
        onto it) repeats a name, and opening it to write would truncate the older generation."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        stem, suffix = Path(name).stem, Path(name).suffix
        for attempt in itertools.count():
            path = self.root / (name if attempt == 0 else f"{stem}.{attempt}{suffix}")
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            except FileExistsError:
                continue
            self._hashers.pop(path, None)
            return path
        raise AssertionError("unreachable")  # pragma: no cover

    def _continues(self, src: BinaryIO, size: int, snapshot: Path, extent: Extent) -> bool:
        """True if the transcript still starts with the snapshot's prefix (probed, not re-read)."""
        try:
            snap_size = snapshot.stat().st_size
        except FileNotFoundError:
            return False
        if size < extent.bytes or snap_size < extent.bytes:
            return False
        with snapshot.open("rb") as snap:
            for offset in {0, max(0, extent.bytes - _PROBE)}:
                length = min(_PROBE, extent.bytes - offset)
                src.seek(offset)
                snap.seek(offset)
                if src.read(length) != snap.read(length):
                    return False
        return True

    def _extend(
        self, src: BinaryIO, size: int, snapshot: Path, base: Extent, cut_after: float | None
    ) -> tuple[Path, Extent]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        hasher = self._hasher_at(snapshot, base.bytes) if base.bytes else hashlib.sha256()
        total, lines = base.bytes, base.lines
        src.seek(base.bytes)
        remaining = size - base.bytes
        pending = b""
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(snapshot, flags, 0o600)
        try:
            # Drop bytes beyond the recorded extent: a crash between append and enqueue.
            os.ftruncate(fd, base.bytes)
            os.lseek(fd, base.bytes, os.SEEK_SET)
            stop = False
            while remaining > 0 and not stop:
                chunk = src.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                data = pending + chunk
                end = data.rfind(b"\n") + 1  # only complete lines belong to a commit
                complete, pending = data[:end], data[end:]
                if cut_after is not None:
                    complete, stop = _cut(complete, cut_after)
                if complete:
                    _write_all(fd, complete)
                    hasher.update(complete)
                    total += len(complete)
                    lines += complete.count(b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._hashers[snapshot] = (total, hasher.copy())
        return snapshot, Extent(bytes=total, lines=lines, sha256=hasher.hexdigest())

    def forget(self, snapshot: Path) -> None:
        self._hashers.pop(snapshot, None)
        snapshot.unlink(missing_ok=True)
        for path in copy_files(self.redacted, snapshot):
            path.unlink(missing_ok=True)

    def collect_copies(self) -> int:
        """Delete redacted copies whose snapshot is gone (a crash between the two deletes)."""
        if not self.redacted.is_dir():
            return 0
        deleted = 0
        for path in self.redacted.iterdir():
            name = path.name.removesuffix(".tmp")
            snapshot = next((name.removesuffix(s) for s in COPY_SUFFIXES if name.endswith(s)), None)
            if snapshot is not None and not (self.root / snapshot).exists():
                path.unlink(missing_ok=True)
                deleted += 1
        return deleted

    def discard(self, snapshots: list[str]) -> int:
        """Delete snapshot files a forgotten session left; only files directly in our root."""
        deleted = 0
        for name in snapshots:
            path = Path(name)
            if path.parent == self.root:
                self.forget(path)
                deleted += 1
        return deleted


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte or raise: `os.write` may write fewer (a disk filling up, a size limit),
    and an extent counts what we meant to write, so a short write must end in an error."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_document(transcript: Path) -> bytes:
    """The document's bytes once they parse as JSON, re-read for a moment while they do not.

    The CLI rewrites the file in place (truncate, then write), so a read can catch it half
    written; one that still does not parse after `_DOCUMENT_SETTLE` seconds is refused.
    """
    deadline = time.monotonic() + _DOCUMENT_SETTLE
    delay = 0.01
    while True:
        with open_transcript(transcript) as src:
            data = src.read()
        try:
            json.loads(data)
            return data
        except (ValueError, RecursionError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if time.monotonic() >= deadline:
            raise TranscriptError(f"transcript {transcript} is not a complete JSON document ({problem}); nothing kept")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _cut(block: bytes, cut_after: float) -> tuple[bytes, bool]:
    """Complete lines up to the first record stamped after `cut_after`; True if cut there."""
    offset = 0
    for line in block.split(b"\n")[:-1]:  # `splitlines` would also end a line at a bare CR
        ts = _timestamp(line)
        if ts is not None and ts > cut_after:
            return block[:offset], True
        offset += len(line) + 1
    return block, False


def read_prefix(snapshot: Path, size: int) -> bytes:
    with snapshot.open("rb") as fh:
        data = fh.read(size)
    if len(data) != size:
        raise PermanentError(f"snapshot {snapshot} is shorter than the {size} bytes the commit saw")
    return data
