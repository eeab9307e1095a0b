"""A job's token usage for its note: the commit's slice of its snapshot, streamed line by line.

Read from the raw snapshot, not from the redacted copy that was uploaded: token counts are no
secret, but redaction may rewrite the ids that tell one response written over several lines
from a new one (Claude's message ids, Gemini's and pi's entry ids), and then a response would be
charged twice or not at all. The snapshot is streamed a chunk at a time and only lines that name
a usage key are decoded (agents/usage.py), so a 100 MB session the worker has just redacted is
never held in memory a second time. The answer depends only on the snapshot's first `bytes`
bytes, which never change (snapshots only grow; a rewritten transcript starts a new file), so it
is kept per (snapshot, bytes, range): a rebase that noted 50 commits of one session with the
same range reads it once.

Reading resumes: a slice can only be judged with what came before it (agents/usage.py), but
what came before is summed up in the reader's `UsageState`. So after each slice a `Checkpoint`
(the line reached, the byte offset where the next line starts, the state there) is kept, in
memory and in a small JSON sidecar beside the snapshot's redacted copy (`<name>.usage`, one of
outgoing.COPY_SUFFIXES, so it goes when the snapshot goes). The next commit of the session reads
only the lines after it, across daemon restarts too: per commit the cost is the new bytes, not
the session. A checkpoint is used only when it is sound: the range starts after it, it lies
within the job's bytes, and the snapshot still holds the bytes it was taken over (its first and
last `PROBE` bytes hash the same: a new file at the same path is not continued). Otherwise the
slice is read from line 1, which is always right, and a new checkpoint is kept if it got further.

The counts are no secret, but the model names are transcript text that the note carries to every
remote: they are redacted with the rules the uploaded copy was redacted with (`redacted_names`).

Gemini's legacy `.json` session is one document rewritten whole; each version's range is the
whole document (snapshot.py), so its usage is the whole document's, read as pseudo-lines
(`gemini.legacy_json_lines`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from . import records
from .agents import DETECT_LINES, format_for, get_format
from .agents.gemini import legacy_json_lines
from .agents.reading import LineReader
from .agents.usage import UNKNOWN_MODEL, ModelUsage, Usage, UsageState, slice_usage
from .errors import PermanentError
from .queue import Job
from .redact import RedactionError, Redactor
from .snapshot import is_document, read_prefix

log = logging.getLogger(__name__)

#: Suffix of a snapshot's usage checkpoint, beside its redacted copy (outgoing.COPY_SUFFIXES).
SUFFIX = ".usage"
#: Checkpoints kept in memory, one per snapshot, newest last; older ones are read back from disk.
LIVE_CHECKPOINTS = 16
#: Bytes hashed at the snapshot's start and just before a checkpoint's offset to tell it is the same file.
PROBE = 4096
#: Bytes read at a time to sniff the format from a snapshot's first lines.
_HEAD_CHUNK = 1 << 16
_RECORD_VERSION = 1


@lru_cache(maxsize=64)
def _document_usage(snapshot: str, size: int, *, agent: str, session_id: str) -> Usage | None:
    """A legacy Gemini `.json` version's usage: the whole document's (its range is the whole
    document, snapshot.py), read as pseudo-lines; kept per (snapshot, size)."""
    pseudo = legacy_json_lines(read_prefix(Path(snapshot), size))
    fmt = format_for(agent, session_id, pseudo, ".json")
    return None if fmt is None else slice_usage(fmt, enumerate(pseudo, start=1))


@dataclass
class Checkpoint:
    """How far the usage reading of a snapshot got: lines 1..`line` are read, the next line starts
    at byte `offset`, `state` is what they leave; `probe` names the bytes they were read from."""

    snapshot: str
    format: str
    line: int
    offset: int
    probe: str
    state: UsageState

    def record(self) -> dict[str, Any]:
        return {
            "version": _RECORD_VERSION,
            "snapshot": self.snapshot,
            "format": self.format,
            "line": self.line,
            "offset": self.offset,
            "probe": self.probe,
            "state": self.state.to_json(),
        }

    @classmethod
    def from_record(cls, value: object, snapshot: Path) -> Checkpoint | None:
        """A record `record` wrote for this snapshot, or None (another version, damaged, or another file)."""
        if not isinstance(value, dict) or value.get("version") != _RECORD_VERSION:
            return None
        name, fmt, line, offset, bytes_probe = (
            value.get(key) for key in ("snapshot", "format", "line", "offset", "probe")
        )
        if name != str(snapshot) or not isinstance(fmt, str) or not isinstance(bytes_probe, str):
            return None
        if type(line) is not int or type(offset) is not int or line < 1 or offset < 1:
            return None
        state = UsageState.from_json(value.get("state"))
        return None if state is None else cls(name, fmt, line, offset, bytes_probe, state)


def probe(fh: BinaryIO, offset: int) -> str:
    """sha256 of the first and the last `PROBE` bytes before `offset` (with `offset` itself): enough
    to tell the snapshot a checkpoint was taken from from a new file at the same path, without
    re-reading it. Snapshots are the daemon's own append-only files (snapshot.py)."""
    hasher = hashlib.sha256(str(offset).encode())
    fh.seek(0)
    hasher.update(fh.read(min(PROBE, offset)))
    fh.seek(max(0, offset - PROBE))
    hasher.update(fh.read(min(PROBE, offset)))
    return hasher.hexdigest()


class Checkpoints:
    """The usage checkpoints: a few in memory, each also on disk under `root` (None: memory only)."""

    def __init__(self) -> None:
        self._live: OrderedDict[str, Checkpoint] = OrderedDict()
        self.lock = threading.Lock()

    def clear(self) -> None:
        self._live.clear()

    def get(self, snapshot: Path, root: Path | None) -> Checkpoint | None:
        point = self._live.get(str(snapshot))
        if point is not None or root is None:
            return point
        target = root / (snapshot.name + SUFFIX)
        try:
            return Checkpoint.from_record(json.loads(records.RECORDS.pending(target) or target.read_bytes()), snapshot)
        except (OSError, ValueError):
            return None

    def take(self, snapshot: Path) -> None:
        """Forget the live checkpoint while its state is being advanced: if the read fails half
        way, the next one starts from the record on disk (or line 1), never from a half-read state."""
        self._live.pop(str(snapshot), None)

    def keep(self, point: Checkpoint, root: Path | None) -> None:
        self._live[point.snapshot] = point
        self._live.move_to_end(point.snapshot)
        while len(self._live) > LIVE_CHECKPOINTS:
            self._live.popitem(last=False)
        if root is None:
            return
        # Atomically, like outgoing's records, and while the snapshot grows at most once per
        # records.EVERY: an older checkpoint only makes a restart read more (`_resumed_usage`
        # checks its probe), and a lost one reads from line 1.
        target = root / (Path(point.snapshot).name + SUFFIX)
        records.RECORDS.write(target, json.dumps(point.record()).encode(), needs=Path(point.snapshot))


CHECKPOINTS = Checkpoints()


def _through(reader: LineReader, last: int) -> Iterator[tuple[int, bytes]]:
    """The reader's lines up to line `last`, not one further: its offset is then where line
    `last + 1` starts."""
    while (item := reader.next()) is not None:
        yield item
        if item[0] >= last:
            return


def _resumed_usage(
    path: Path, size: int, *, agent: str, session_id: str, first: int, last: int, root: Path | None
) -> Usage | None:
    """Lines first..last's usage, read from the snapshot's checkpoint when it is sound, else from
    line 1; the checkpoint then moves to line `last`."""
    with CHECKPOINTS.lock, path.open("rb") as fh:
        point = CHECKPOINTS.get(path, root)
        fmt = None if point is None else get_format(point.format)
        resumed = None
        if point is not None and point.line < first and point.offset <= size and probe(fh, point.offset) == point.probe:
            resumed = point
        if resumed is not None and fmt is not None:
            CHECKPOINTS.take(path)
            state, reader = resumed.state, LineReader(fh, resumed.offset, size, resumed.line + 1)
        else:
            resumed = None
            head = [line for _, line in itertools.islice(LineReader(fh, 0, size, 1, _HEAD_CHUNK), DETECT_LINES)]
            fmt = format_for(agent, session_id, head)
            if fmt is None or fmt.usage is None:
                return None
            state, reader = UsageState(), LineReader(fh, 0, size, 1)
        start = reader.offset
        usage = slice_usage(fmt, _through(reader, last), start=first, end=last, state=state)
        log.debug(
            "read usage of %s lines %d..%d: %d bytes from byte %d",
            path.name,
            first,
            last,
            reader.offset - start,
            start,
        )
        if reader.number - 1 == last and (resumed is not None or point is None or point.line < last):
            reached = Checkpoint(str(path), fmt.name, last, reader.offset, probe(fh, reader.offset), state)
            CHECKPOINTS.keep(reached, root)
    return usage


@lru_cache(maxsize=64)
def _cached_usage(
    snapshot: str, size: int, *, agent: str, session_id: str, first: int, last: int, root: str | None
) -> Usage | None:
    return _resumed_usage(
        Path(snapshot),
        size,
        agent=agent,
        session_id=session_id,
        first=first,
        last=last,
        root=None if root is None else Path(root),
    )


def redacted_names(usage: Usage, redactor: Redactor) -> Usage:
    """``usage`` with each model name as the redacted copy would have it; a name the redactor
    cannot finish with is not sent (fail closed, like the copy): it counts as an unknown model."""
    renamed: dict[str, ModelUsage] = {}
    for name, counts in usage.models:
        try:
            out = redactor.redact_bytes(name.encode())[0].decode(errors="replace")
        except RedactionError:
            out = UNKNOWN_MODEL
        renamed[out] = renamed[out] + counts if out in renamed else counts
    return Usage.of(renamed)


def job_usage(job: Job, redactor: Redactor, checkpoints: Path | None = None) -> Usage | None:
    """Tokens per model the job's commit spent (its lines first..last), or None when unknown:
    the agent records no usage, the slice holds no usage record, or the snapshot cannot be read
    now (then the note says unknown rather than holding back a link that is already uploaded).
    Model names are redacted by ``redactor``: the note leaves the machine. ``checkpoints`` is
    the directory that keeps where reading got to across restarts (the redacted copies' root)."""
    if not job.snapshot or job.bytes is None:
        return None
    first, last = job.first_line or 1, job.last_line or 0
    who = {"agent": job.agent, "session_id": job.session_id}
    try:
        if is_document(Path(job.transcript or "")):
            usage = _document_usage(job.snapshot, job.bytes, **who)
        elif last < max(first, 1):
            usage = None
        else:
            root = None if checkpoints is None else str(checkpoints)
            usage = _cached_usage(job.snapshot, job.bytes, first=first, last=last, root=root, **who)
    except (OSError, PermanentError) as exc:  # not cached: lru_cache keeps only answers
        log.warning("token usage of %s/%s unknown: %s", job.agent, job.session_id, exc)
        return None
    return None if usage is None else redacted_names(usage, redactor)
