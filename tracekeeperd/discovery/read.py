"""Cheap reads of one transcript for the session index: its head for identity, its tail for activity.

The index keeps up with thousands of files and hundreds of appended lines a second, so no read
here is proportional to a transcript's length:

* a new (or replaced) file is read from the start only until its identity is known: the
  records ``detect`` needs and the first one carrying a cwd (``HEAD_CAP`` at most);
* its last activity comes from the last complete lines before EOF (``TAIL_WINDOW``);
* a file that grew is read from the byte offset where the previous read stopped, and only
  its last ``TAIL_WINDOW`` bytes are parsed.

Only ``.jsonl.zst`` (Codex's compressed, finished rollouts) and Gemini's legacy ``.json``
(rewritten whole) are read whole when they change; the ``.zst`` is streamed, so memory stays
bounded by the head and tail windows, not by the session's size.

Identity and times come from the parsers in ``tracekeeperd.agents`` (``detect`` and each
format's ``session_meta``), fed only the head or tail lines.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from ..agents import DETECT_LINES, SessionMeta, TranscriptFormat, detect, get_format
from ..agents.gemini import legacy_json_lines
from ..agents.records import parse_record

#: Read the head in pieces of this size until DETECT_LINES complete lines are in.
HEAD_CHUNK = 64 * 1024
#: How far into a file to look for its identity (a cwd-bearing record) before giving up.
HEAD_CAP = 1024 * 1024
#: How many bytes before EOF are parsed for the latest timestamp.
TAIL_WINDOW = 256 * 1024
#: Gemini's legacy whole-file sessions larger than this are not parsed (they would be read whole).
WHOLE_JSON_CAP = 64 * 1024 * 1024
#: Formats whose records carry the cwd: their head is incomplete until one record says it.
CWD_FORMATS = frozenset({"codex", "claude", "copilot", "pi"})

ReadKind = Literal["head", "tail", "whole", "none"]


class NotRegularFile(OSError):
    """The path is (now) a symlink, a directory or a special file: never a transcript."""


@dataclass(frozen=True, slots=True)
class Entry:
    """What the index knows about one candidate file; also one row of the ledger.

    ``agent`` is None while the file is not (or not yet) a transcript: empty, still being
    written, or garbage. ``offset`` is where the next read of an appended file starts (the end
    of the last complete line seen). ``(size, mtime_ns, ino)`` is the change signature the
    ledger compares against; ``head_done`` says the identity is settled, so growth only
    needs the tail.
    """

    path: str
    agent: str | None
    session_id: str | None
    cwd: str | None
    project_hash: str | None
    started_at: float | None
    last_activity_at: float | None
    size: int
    mtime_ns: int
    ino: int
    offset: int
    head_done: bool

    def unchanged(self, st: os.stat_result) -> bool:
        """True when the file still has the signature this entry was built from."""
        return self.size == st.st_size and self.mtime_ns == st.st_mtime_ns and self.ino == st.st_ino


@dataclass(frozen=True, slots=True)
class _Facts:
    """What one read established, before it is merged with the file's signature.

    ``fmt`` None means "no transcript (yet)". ``consumed`` is the end of the complete lines
    read from the start; ``whole`` says they were the whole file (no tail read needed);
    ``done`` says the identity is settled; ``last`` is the latest record timestamp seen.
    """

    fmt: TranscriptFormat | None
    meta: SessionMeta | None
    consumed: int
    whole: bool
    done: bool
    last: float | None = None


def _nothing(consumed: int = 0, *, done: bool) -> _Facts:
    return _Facts(None, None, consumed, whole=False, done=done)


def accepts(agent: str, path: str) -> bool:
    """Whether a file under a root of ``agent`` can be a session transcript, by its name alone.

    Keeps the rest of each agent's directory out of the index: Gemini's ``logs.json`` and
    checkpoints, Copilot's ``workspace.yaml``, and the subagent transcripts of Claude
    (``agent-<id>.jsonl``, ``<session>/subagents/``) and Gemini (``chats/<parent>/<id>.jsonl``),
    which belong to their parent session rather than being sessions of their own.
    """
    name = os.path.basename(path)
    parent = os.path.basename(os.path.dirname(path))
    if agent == "codex":
        return name.startswith("rollout-") and name.endswith((".jsonl", ".jsonl.zst"))
    if agent == "claude":
        return name.endswith(".jsonl") and not name.startswith("agent-") and parent != "subagents"
    if agent == "gemini":
        return parent == "chats" and name.startswith("session-") and name.endswith((".jsonl", ".json"))
    if agent == "cursor":
        return name.endswith(".jsonl") and "/agent-transcripts/" in path
    if agent == "copilot":
        return name == "events.jsonl"
    if agent == "pi":
        return name.endswith(".jsonl")
    return name.endswith((".jsonl", ".jsonl.zst", ".json"))


def _stamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open without following a final symlink or blocking on a FIFO, and insist on a regular file
    with one name: a hard link is another file's second name, refused like a symlink (see
    ``snapshot.open_transcript``, which refuses the same when a commit links it)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
            raise NotRegularFile(errno.ELOOP, "symlink", path) from error
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, "not a regular file", path)
    if st.st_nlink > 1:
        os.close(fd)
        raise NotRegularFile(errno.EMLINK, "hard-linked", path)
    return fd, st


def _choose_format(path: str, first: Sequence[bytes]) -> TranscriptFormat | None:
    """The format of a head that has at least one non-blank line.

    Content decides (``detect``). Garbage (no line is a JSON object) is no transcript at all,
    whereas ``detect`` would fall back to the path and make it an empty session.
    """
    if not any(parse_record(line) is not None for line in first):
        return None
    return detect(Path(path), first)


def _complete_lines(data: bytes) -> tuple[list[bytes], int]:
    """Like ``agents.split_lines``: only newline-terminated lines count, and the bytes they use."""
    end = data.rfind(b"\n")
    if end < 0:
        return [], 0
    return [line.removesuffix(b"\r") for line in data[:end].split(b"\n")], end + 1


def _head_lines(fd: int, size: int) -> tuple[list[bytes], int]:
    """Complete lines from the start: DETECT_LINES of them if the file (and HEAD_CAP) allow."""
    buffer = bytearray()
    while len(buffer) < min(size, HEAD_CAP):
        chunk = os.pread(fd, min(HEAD_CHUNK, HEAD_CAP - len(buffer)), len(buffer))
        if not chunk:
            break
        buffer += chunk
        if buffer.count(b"\n") >= DETECT_LINES:
            break
    return _complete_lines(bytes(buffer))


def _find_cwd(fd: int, fmt: TranscriptFormat, path: Path, start: int, size: int) -> tuple[str | None, int]:
    """Read on past the head for the first record with a cwd (Claude opens with cwd-less records)."""
    position = start
    limit = min(size, HEAD_CAP)
    while position < limit:
        lines, used = _complete_lines(os.pread(fd, min(HEAD_CHUNK * 4, limit - position), position))
        if not used:
            break
        position += used
        cwd = fmt.session_meta(path, lines).cwd
        if cwd is not None:
            return cwd, position
    return None, position


def _identify(path: str, lines: Sequence[bytes], consumed: int, size: int) -> _Facts:
    """Format and meta of a head; ``done`` unless a cwd-bearing format has not said its cwd yet."""
    if not any(line.strip() for line in lines):
        # Empty, or its first record is still being written: look again when it grows.
        return _nothing(done=size >= HEAD_CAP)
    fmt = _choose_format(path, lines[:DETECT_LINES])
    if fmt is None:
        return _nothing(consumed, done=len(lines) >= DETECT_LINES or size >= HEAD_CAP)
    meta = fmt.session_meta(Path(path), lines)
    done = meta.cwd is not None or fmt.name not in CWD_FORMATS or consumed >= HEAD_CAP
    return _Facts(fmt, meta, consumed, whole=consumed >= size, done=done, last=_stamp(meta.last_activity_at))


def _read_head(fd: int, path: str, size: int) -> _Facts:
    lines, consumed = _head_lines(fd, size)
    facts = _identify(path, lines, consumed, size)
    if facts.fmt is None or facts.meta is None or facts.done or consumed >= size:
        return facts
    cwd, scanned = _find_cwd(fd, facts.fmt, Path(path), consumed, size)
    meta = replace(facts.meta, cwd=cwd)
    return replace(facts, meta=meta, done=cwd is not None or scanned >= HEAD_CAP)


def _last_stamp(fmt: TranscriptFormat, path: Path, lines: Sequence[bytes]) -> float | None:
    """The latest timestamp among the last lines, widening the look-back only when needed."""
    for count in (4, 32, len(lines)):
        stamp = _stamp(fmt.session_meta(path, lines[-count:]).last_activity_at)
        if stamp is not None or count >= len(lines):
            return stamp
    return None


def _newline_before(fd: int, start: int, end: int) -> int:
    """Position just after the last newline in [start, end), or ``start`` if there is none."""
    position = end
    while position > start:
        low = max(start, position - HEAD_CHUNK)
        found = os.pread(fd, position - low, low).rfind(b"\n")
        if found >= 0:
            return low + found + 1
        position = low
    return start


def _read_tail(fd: int, fmt: TranscriptFormat, path: str, start: int, size: int) -> tuple[float | None, int]:
    """(latest timestamp among the complete lines after ``start``, new offset); parses TAIL_WINDOW at most."""
    if size <= start:
        return None, start
    low = max(start, size - TAIL_WINDOW)
    data = os.pread(fd, size - low, low)
    cut = data.rfind(b"\n")
    if cut < 0:
        # No newline in the window: a record still being written, or one longer than the window.
        return None, _newline_before(fd, start, low)
    lines, _used = _complete_lines(data[: cut + 1])
    if low > start:
        lines = lines[1:]  # the window began mid-line
    return (_last_stamp(fmt, Path(path), lines) if lines else None), low + cut + 1


def _zst_chunks(fd: int) -> Iterator[bytes]:
    import zstandard

    with open(fd, "rb", closefd=False) as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        with reader:
            while chunk := reader.read(HEAD_CHUNK * 4):
                yield chunk


def _read_zst(fd: int, path: str) -> _Facts:
    """Stream-decompress: keep the head (identity) and a rolling tail window (last activity)."""
    import zstandard

    head = bytearray()
    tail = b""
    total = 0
    try:
        for chunk in _zst_chunks(fd):
            total += len(chunk)
            if len(head) < HEAD_CAP:
                head += chunk[: HEAD_CAP - len(head)]
            tail = (tail + chunk)[-TAIL_WINDOW:]
    except zstandard.ZstdError:
        return _nothing(done=True)
    name = path.removesuffix(".zst")
    lines, consumed = _complete_lines(bytes(head) + (b"\n" if total == len(head) else b""))
    facts = _identify(name, lines, consumed, total)
    if facts.fmt is None or total == len(head):
        return replace(facts, done=True)
    tail_lines, _used = _complete_lines(tail + b"\n")
    last = _last_stamp(facts.fmt, Path(name), tail_lines[1:])
    return replace(facts, done=True, last=max(last, facts.last or last) if last is not None else facts.last)


def _read_legacy_json(fd: int, path: str, size: int) -> _Facts:
    """Gemini before v0.39: one JSON document rewritten whole, so it is parsed whole."""
    if size > WHOLE_JSON_CAP:
        return _nothing(done=True)
    chunks = []
    position = 0
    while chunk := os.pread(fd, 1 << 20, position):
        chunks.append(chunk)
        position += len(chunk)
    lines = legacy_json_lines(b"".join(chunks))
    # No lines: half-written (the CLI rewrites in place) or not a session; looked at again when it changes.
    return replace(_identify(path, lines, size, size), done=True)


def _project_root(path: str) -> str | None:
    """Gemini ≥ v0.29 keeps the project's absolute path in ``tmp/<slug>/.project_root``."""
    marker = os.path.join(os.path.dirname(os.path.dirname(path)), ".project_root")
    try:
        with open(marker, "rb") as handle:
            text = handle.read(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text if os.path.isabs(text) else None


def _activity(agent: str, last: float | None, st: os.stat_result) -> float:
    """Record time when the records say it; the write time for Cursor (whose records have no clock)."""
    if last is None:
        return st.st_mtime
    return max(last, st.st_mtime) if agent == "cursor" else last


def _entry(path: str, st: os.stat_result, facts: _Facts, offset: int, prev: Entry | None) -> Entry:
    meta = facts.meta
    if meta is None or facts.fmt is None:
        return Entry(
            path, None, None, None, None, None, None, st.st_size, st.st_mtime_ns, st.st_ino, offset, facts.done
        )
    cwd = meta.cwd
    if facts.fmt.name == "gemini" and cwd is None:
        cwd = _project_root(path)
    started = _stamp(meta.started_at) or (prev.started_at if prev else None) or st.st_mtime
    return Entry(
        path=path,
        agent=facts.fmt.name,
        session_id=meta.session_id,
        cwd=cwd,
        project_hash=meta.project_hash,
        started_at=started,
        last_activity_at=_activity(facts.fmt.name, facts.last, st),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ino=st.st_ino,
        offset=offset,
        head_done=facts.done,
    )


def _still_appended(fd: int, prev: Entry, st: os.stat_result) -> bool:
    """Same inode, settled identity, grown, and the byte before the previous offset is still a newline.

    A changed signature without growth means a rewrite (or a touch): identify the file again.
    """
    if prev.ino != st.st_ino or st.st_size <= prev.size or st.st_size < prev.offset or not prev.head_done:
        return False
    return prev.offset == 0 or os.pread(fd, 1, prev.offset - 1) == b"\n"


def _fresh(fd: int, path: str, st: os.stat_result, prev: Entry | None) -> Entry:
    facts = _read_head(fd, path, st.st_size)
    if facts.fmt is None or facts.whole:
        return _entry(path, st, facts, facts.consumed, prev)
    tail_last, offset = _read_tail(fd, facts.fmt, path, facts.consumed, st.st_size)
    last = max((s for s in (facts.last, tail_last) if s is not None), default=None)
    return _entry(path, st, replace(facts, last=last), max(offset, facts.consumed), prev)


def _appended(fd: int, path: str, st: os.stat_result, prev: Entry) -> Entry:
    fmt = get_format(prev.agent) if prev.agent else None
    if fmt is None or prev.agent is None:  # settled as not a transcript: only the signature moves
        return replace(prev, size=st.st_size, mtime_ns=st.st_mtime_ns)
    last, offset = _read_tail(fd, fmt, path, prev.offset, st.st_size)
    if last is None:
        activity = prev.last_activity_at if fmt.name != "cursor" else st.st_mtime
    else:
        activity = max(_activity(fmt.name, last, st), prev.last_activity_at or last)
    return replace(prev, last_activity_at=activity, size=st.st_size, mtime_ns=st.st_mtime_ns, offset=offset)


def read_entry(path: str, prev: Entry | None) -> tuple[Entry, ReadKind]:
    """Bring the entry for ``path`` up to date with the file, reading as little as possible.

    Raises ``FileNotFoundError`` when the file is gone, ``NotRegularFile`` for anything but a
    regular file (a symlink included), and other ``OSError`` as they come.
    """
    fd, st = _open_regular(path)
    try:
        if prev is not None and prev.unchanged(st):
            return prev, "none"
        if path.endswith(".zst"):
            return _entry(path, st, _read_zst(fd, path), st.st_size, prev), "whole"
        if path.endswith(".json"):
            return _entry(path, st, _read_legacy_json(fd, path, st.st_size), st.st_size, prev), "whole"
        if prev is not None and _still_appended(fd, prev, st):
            return _appended(fd, path, st, prev), "tail"
        return _fresh(fd, path, st, prev), "head"
    finally:
        os.close(fd)
