"""The viewer's copy of `show.load`: the same sources in the same order, remembered between pages.

`show.load` reads a whole transcript, redacts it and hashes the commit's prefix on every call,
which is right for one `tracekeeper show` and wrong for a browser that pages through a 100 MB
session or lists twenty commits of it: each page would pay a full read, redaction and hash.
Here the redacted bytes of each source are kept (keyed by the file's identity, so a transcript
that grows is read again), lines are found through an offset index built once, and the prefix
hashes a note checks are resumed from checkpoints, so verifying twenty commits of one session
costs about one pass over it. What is shown is exactly what `show` would show: redacted bytes,
checked against the note's sha256, from the transcript, the snapshot or the store.
"""

from __future__ import annotations

import hashlib
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracekeeperd import notes
from tracekeeperd.agents import DETECT_LINES, TranscriptFormat, detect, get_format
from tracekeeperd.agents.gemini import legacy_json_lines
from tracekeeperd.errors import TracekeeperError
from tracekeeperd.redact import RedactionError
from tracekeeperd.stores.base import MissingTrace

from .. import show

if TYPE_CHECKING:
    from tracekeeperd.paths import Paths
    from tracekeeperd.redact import Redactor

#: Prefix hashes resume from the nearest checkpoint below; one every 8 MiB bounds a check's cost.
HASH_STEP = 8 << 20
#: Redacted sources kept in memory (least recently used goes first past this many bytes).
CACHE_BYTES = 768 << 20


@dataclass
class Blob:
    """One source's redacted bytes, with a line index and resumable prefix hashes."""

    data: bytes
    #: Gemini's legacy whole-file JSON: one pseudo-line per message (what its notes count).
    pseudo: list[bytes] | None = None
    _starts: array[int] | None = None
    _scanned: int = 0  # -1 once the index reaches the end
    _hashes: dict[int, Any] = field(default_factory=dict)
    _checked: dict[tuple[int, str], bool] = field(default_factory=dict)  # (length, sha256): answer
    _lock: threading.Lock = field(default_factory=threading.Lock)
    fmt: TranscriptFormat | None = None
    detected: bool = False

    def _index(self, upto: int | None = None) -> array[int]:
        """Start offsets of lines (plus the end of the last), found as far as line ``upto``
        needs (None: all): a first page near the start never scans the whole session."""
        if self._starts is None:
            self._starts = array("q", [0])
            self._scanned = 0
        starts = self._starts
        if self._scanned < 0 or (upto is not None and len(starts) > upto):
            return starts
        find, pos = self.data.find, starts[-1]
        while upto is None or len(starts) <= upto:
            cut = find(b"\n", pos)
            if cut < 0:
                self._scanned = -1  # the end is reached: the index is complete
                break
            pos = cut + 1
            starts.append(pos)
        return starts

    @property
    def count(self) -> int:
        if self.pseudo is not None:
            return len(self.pseudo)
        return len(self._index()) - 1

    def line(self, number: int) -> bytes:
        """Line ``number`` (1-based) without its newline (and a CR before it, as split_lines does)."""
        if self.pseudo is not None:
            return self.pseudo[number - 1]
        starts = self._index(number)
        return self.data[starts[number - 1] : starts[number] - 1].removesuffix(b"\r")

    def size(self, number: int) -> int:
        if self.pseudo is not None:
            return len(self.pseudo[number - 1])
        starts = self._index(number)
        return starts[number] - starts[number - 1]

    def has(self, number: int) -> bool:
        """Whether line ``number`` exists, scanning no further than it."""
        if self.pseudo is not None:
            return number <= len(self.pseudo)
        return len(self._index(number)) > number

    def numbered(self, first: int, last: int) -> Iterator[tuple[int, bytes]]:
        number = max(first, 1)
        while number <= last and self.has(number):
            yield number, self.line(number)
            number += 1

    def format(self, agent: str) -> TranscriptFormat | None:
        if not self.detected:
            first = [line for _, line in self.numbered(1, DETECT_LINES)]
            name = f"{agent}-session.json" if self.pseudo is not None else f"{agent}-session.jsonl"
            self.fmt = detect(Path(name), first) or get_format(agent)
            self.detected = True
        return self.fmt

    def inherit(self, older: Blob) -> None:
        """Keep ``older``'s line index and hash checkpoints: this blob starts with its bytes."""
        with older._lock:
            self._hashes = dict(older._hashes)
        if older._starts is not None:
            self._starts = array("q", older._starts)
            self._scanned = 0  # the new bytes are not scanned yet

    def matches(self, length: int, sha256: str) -> bool:
        """Whether the first ``length`` bytes hash to ``sha256`` (the note's check)."""
        if length > len(self.data):
            return False
        with self._lock:
            known = self._checked.get((length, sha256))
            if known is not None:
                return known
            base = max((mark for mark in self._hashes if mark <= length), default=0)
            digest = self._hashes[base].copy() if base else hashlib.sha256()
            view = memoryview(self.data)
            pos = base
            while pos + HASH_STEP <= length:
                digest.update(view[pos : pos + HASH_STEP])
                pos += HASH_STEP
                self._hashes.setdefault(pos, digest.copy())
            digest.update(view[pos:length])
            self._checked[(length, sha256)] = result = digest.hexdigest() == sha256
        return result


@dataclass(frozen=True)
class _Copy:
    """What a local file held when it was last read: enough to redact only what it appended."""

    key: tuple[Any, ...]  # the blob's key in the cache
    identity: tuple[int, int, int, int]  # device, inode, size, mtime (ns)
    raw_bytes: int  # complete lines read
    raw_sha256: str  # of those raw bytes
    blob: Blob


@dataclass
class Slice:
    """A note's link with the bytes behind it (as much of the session as is known)."""

    link: notes.TraceLink
    blob: Blob
    source: str  # "transcript", "snapshot", "store"
    verified: bool


class Loader:
    """Thread-safe: pages are built on worker threads."""

    def __init__(self, paths: Paths, redactor: Redactor | None, cache_bytes: int = CACHE_BYTES) -> None:
        self.paths = paths
        self.redactor = redactor
        self.cache_bytes = cache_bytes
        self._blobs: OrderedDict[tuple[Any, ...], Blob] = OrderedDict()
        self._copies: dict[tuple[Any, ...], _Copy] = {}
        self._lock = threading.Lock()

    def _remember(self, key: tuple[Any, ...], blob: Blob) -> Blob:
        with self._lock:
            self._blobs[key] = blob
            self._blobs.move_to_end(key)
            total = sum(len(b.data) for b in self._blobs.values())
            while total > self.cache_bytes and len(self._blobs) > 1:
                gone, dropped = self._blobs.popitem(last=False)
                total -= len(dropped.data)
                # Forget what the file held too, or its blob would outlive the cache.
                self._copies = {k: copy for k, copy in self._copies.items() if copy.key != gone}
        return blob

    def _cached(self, key: tuple[Any, ...]) -> Blob | None:
        with self._lock:
            blob = self._blobs.get(key)
            if blob is not None:
                self._blobs.move_to_end(key)
            return blob

    @staticmethod
    def _blob(data: bytes) -> Blob:
        # As show.Trail.conversation decides: no line reads as a transcript record, and the
        # bytes are one JSON document.
        head = data[: 1 << 20].split(b"\n", DETECT_LINES)[:DETECT_LINES]
        if detect(Path("transcript.jsonl"), head) is None and data.lstrip()[:1] == b"{":
            pseudo = legacy_json_lines(data)
            if pseudo:
                return Blob(data, pseudo=pseudo)
        return Blob(data)

    def local(self, path: Path, redact: bool) -> Blob | None:
        """A transcript or snapshot on this disk, redacted if the note says redaction ran.

        An agent appends to its transcript while it works. When the same file only grew (its
        old bytes hash as before), the lines already redacted are kept and only the new ones
        are redacted, as the daemon does for uploads (outgoing.extend): watching a live 100 MB
        session costs a hash of it per change, not a redaction of it. Anything else (a rewrite,
        a new file under the name) is read again whole.
        """
        try:
            stat = path.stat()
        except OSError:
            return None
        key = ("file", str(path), redact)
        with self._lock:
            known = self._copies.get(key)
        identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if known is not None and known.identity == identity:
            return self._cached(known.key) or known.blob
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        raw = raw[: raw.rfind(b"\n") + 1]
        digest = hashlib.sha256(memoryview(raw)[: known.raw_bytes] if known else b"")
        grown = (
            known is not None
            and known.identity[:2] == identity[:2]
            and len(raw) >= known.raw_bytes
            and digest.hexdigest() == known.raw_sha256
        )
        old = known.blob if known is not None and grown else None
        tail = raw[known.raw_bytes :] if known is not None and grown else raw
        if not grown:
            digest = hashlib.sha256()
        digest.update(tail)
        if redact and self.redactor is not None:
            try:
                redacted = self.redactor.redact_bytes(tail)[0]
            except RedactionError:
                return None
            if redacted.count(b"\n") != tail.count(b"\n"):
                return None  # lines must stay one to one, as for an upload
            tail = redacted
        blob = self._blob(old.data + tail) if old is not None else self._blob(tail)
        if old is not None and old.pseudo is None and blob.pseudo is None:
            blob.inherit(old)
        blob = self._remember(("blob", *key, identity), blob)
        with self._lock:
            self._copies[key] = _Copy(("blob", *key, identity), identity, len(raw), digest.hexdigest(), blob)
        return blob

    def _store(self, link: notes.TraceLink) -> Blob:
        key = ("url", link.url)
        blob = self._cached(key)
        if blob is not None and blob.matches(link.bytes, link.sha256):
            return blob
        try:
            data = show.fetch_url(link.url)
        except MissingTrace as exc:
            raise show.ShowError(
                f"{exc}; `tracekeeper status` on the machine that made the commit shows whether it is still queued"
            ) from None
        except (OSError, TracekeeperError) as exc:
            raise show.ShowError(f"cannot fetch {link.url}: {exc}") from None
        return self._remember(key, self._blob(data))

    def load(self, sha: str, link: notes.TraceLink) -> Slice:
        """`show.load`'s answer: the first copy on this machine whose redacted bytes match the note
        (a `file://` store's, then the transcript's, then the snapshot's), else the store's."""
        redact = link.redacted is not None
        if link.url.startswith("file:"):
            # A local store holds the redacted upload on this disk: reading it saves a redaction
            # pass over the transcript (about 1 s per 100 MB), and the hash check is the same.
            try:
                stored = self._store(link)
            except show.ShowError:
                pass
            else:
                if stored.matches(link.bytes, link.sha256):
                    return Slice(link, stored, "store", True)
        for source, path in show._local_candidates(self.paths, sha, link):
            local = self.local(path, redact)
            if local is not None and local.matches(link.bytes, link.sha256):
                return Slice(link, local, source, True)
        stored = self._store(link)
        return Slice(link, stored, "store", stored.matches(link.bytes, link.sha256))
