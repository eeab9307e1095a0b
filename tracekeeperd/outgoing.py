"""What leaves the machine: a snapshot prefix after redaction, kept on disk and grown in place.

Redaction runs on every byte before any upload (fail closed: if it cannot complete, nothing is
sent). It keeps lines one-to-one, so each commit's view of the session is a prefix of the
redacted session ending at its last line: the note gives the redacted prefix's length and
sha256, which anyone can verify against the uploaded object.

Memory must not depend on the transcript's size (sessions of hundreds of megabytes are
common), so nothing here holds a transcript: the redacted copy of each snapshot is a file next
to it, grown piece by piece (`Redactor.redact_piece`, whole lines, about `CHUNK` bytes at a
time), and uploaded from its path. Beside it a small JSON record says how far it got: raw bytes
and lines consumed, the redactor's resume state, sha256 of both sides, the rule set. So only
bytes appended since the last upload are ever redacted, across daemon restarts too. The copy
is thrown away (and redacted again from the start) when the redactor would write other bytes
(`Redactor.output_id`: rules, allow list, home scrub) or the snapshot no longer starts with
the bytes it was made from: after a restart the record's raw sha256 is checked against the
snapshot, and while running every extension is checked against the sha256 ingest recorded
for the job's whole prefix (our running hash of what we read must equal it).

Per commit the cost is the new bytes (redacted, hashed, appended) plus the upload of the file;
the running sha256 states live in memory, so a note's prefix hash needs no re-read. Only a
prefix that ends before the copy's end (an old commit noted late, jobs a rebase copied) is
found by one streaming pass over the copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import records
from .errors import PermanentError
from .paths import open_private
from .redact import MAX_LINE_BYTES, RedactionError, Redactor, Resume

if TYPE_CHECKING:
    from hashlib import _Hash

log = logging.getLogger(__name__)

#: Raw bytes read (and redacted) per step: the memory a redaction needs, whatever the file size.
CHUNK = 1 << 20
#: Running hash states kept per snapshot (a few hundred bytes each), newest last.
LIVE_ENTRIES = 64
_RECORD_VERSION = 2  # 2: `ident`
#: Suffixes of a copy's files: no MIME type is guessed from them, so an upload's content type
#: comes from its remote path as it did when bytes were uploaded (huggingface_hub `_buckets.py`,
#: `_BucketAddFile.__post_init__`: the source path first, then the destination).
COPY_SUFFIXES = (".redacted", ".findings", ".state", ".upload", ".usage")  # .usage: tokens.Checkpoint


def copy_files(redacted_root: Path, snapshot: Path) -> list[Path]:
    """Every file the redacted copy of `snapshot` may have, for whoever deletes the snapshot."""
    return [redacted_root / (snapshot.name + suffix) for suffix in COPY_SUFFIXES]


@dataclass
class _Copy:
    """How far a snapshot's redacted copy got, with the running hashes of both sides."""

    snapshot: str
    ruleset: str
    raw_bytes: int
    raw_hash: _Hash
    out_bytes: int
    out_hash: _Hash
    resume: Resume
    findings_bytes: int
    ident: str
    """Names this copy's bytes: new whenever the copy is started again from byte 0, kept while it
    only grows (across restarts too), so a reader resuming at an offset (the search index) can
    tell whether the offset is still in the same bytes."""

    def record(self) -> dict[str, Any]:
        return {
            "version": _RECORD_VERSION,
            "snapshot": self.snapshot,
            "ruleset": self.ruleset,
            "raw_bytes": self.raw_bytes,
            "raw_sha256": self.raw_hash.hexdigest(),
            "out_bytes": self.out_bytes,
            "out_sha256": self.out_hash.hexdigest(),
            "lines": self.resume.lines,
            "in_pem": self.resume.in_pem,
            "findings_bytes": self.findings_bytes,
            "ident": self.ident,
        }


@dataclass(frozen=True)
class View:
    """The redaction of a snapshot's first `raw_bytes`: what to upload and what notes say of it."""

    file: Path
    """Holds the redacted bytes; they are its first `size` bytes (the copy may run further)."""
    size: int
    findings: Path
    prefixes: dict[int, tuple[int, str]]
    """Per line count asked for: (length, sha256) of the redacted prefix made of those lines."""
    ident: str
    """The copy's `_Copy.ident`: the same for every view of a copy that has only grown."""

    def prefix(self, lines: int) -> tuple[int, str]:
        """(length, sha256) of the redacted prefix made of the first `lines` lines."""
        if lines <= 0:
            return 0, hashlib.sha256().hexdigest()
        return self.prefixes[lines]

    def counts(self, first: int, last: int) -> dict[str, int]:
        """Secrets removed from lines first..last, per rule (streamed from the findings file)."""
        found: Counter[str] = Counter()
        with contextlib.suppress(FileNotFoundError), self.findings.open("rb") as fh:
            for entry in fh:
                line, _, rule = entry.rstrip(b"\n").partition(b"\t")
                if first <= int(line) <= last:
                    found[rule.decode()] += 1
        return dict(sorted(found.items()))

    def upload_file(self) -> tuple[Path, bool]:
        """A file holding exactly the redacted bytes, and whether it is a temporary copy.

        Usually the copy itself. When the copy already runs further (a commit noted after a
        later one was uploaded), its prefix is copied, streamed, to a temporary file.
        """
        if self.file.stat().st_size == self.size:
            return self.file, False
        temporary = self.file.with_name(self.file.name.removesuffix(".redacted") + ".upload")
        with self.file.open("rb") as src, open_private(temporary) as dst:
            _copy_range(src, dst, self.size)
        return temporary, True


class RedactedCopies:
    """The on-disk redacted copies of snapshots (one per snapshot file), grown incrementally."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._live: OrderedDict[str, _Copy] = OrderedDict()

    def drop(self) -> None:
        """Forget the running hashes (new rules, forgotten sessions); the files are re-verified."""
        self._live.clear()

    def view(
        self,
        snapshot: Path,
        *,
        raw_bytes: int,
        raw_lines: int,
        raw_sha256: str | None,
        lines: Iterable[int],
        redactor: Redactor,
    ) -> View:
        """The redaction of `snapshot`'s first `raw_bytes` (`raw_lines` lines, sha256 `raw_sha256`
        as ingest recorded it, when known), with the prefixes ending at each of `lines`.

        Raises RedactionError (nothing may be uploaded), FileNotFoundError (the snapshot is
        gone), OSError or PermanentError (the snapshot is shorter than asked: being extended).
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        redacted, findings, state, *_ = copy_files(self.root, snapshot)
        wanted = sorted({n for n in lines if n > 0} | ({raw_lines} if raw_lines > 0 else set()))
        copy = self._current(snapshot, redactor.output_id)
        if copy is not None and copy.raw_bytes > raw_bytes:
            copy = self._verified(snapshot, copy)  # rare: make sure the longer copy is still right
        if copy is not None and copy.raw_bytes > raw_bytes:
            self._keep(snapshot, copy)
            prefixes = _scan(redacted, wanted)
            return View(redacted, prefixes[raw_lines][0] if raw_lines else 0, findings, prefixes, copy.ident)
        if (
            copy is not None
            and copy.raw_bytes
            and raw_sha256 is not None
            and not _continues(snapshot, copy, raw_bytes, raw_sha256)
        ):
            copy = None  # the snapshot no longer starts with what the copy was made from
        if copy is None:
            copy = self._fresh(snapshot, redactor.output_id)
        before, start = copy.resume.lines, copy.raw_bytes
        try:
            prefixes = self._extend(snapshot, copy, raw_bytes, [n for n in wanted if n > before], redactor)
        finally:
            self._keep(snapshot, copy)  # extended, or unchanged with its files cut back
        _write_record(state, copy)
        log.debug("redacted %d new bytes of %s (from byte %d)", copy.raw_bytes - start, snapshot.name, start)
        older = [n for n in wanted if n <= before]
        if older:
            prefixes.update(_scan(redacted, older))
        return View(redacted, copy.out_bytes, findings, prefixes, copy.ident)

    # --- the copy's state ---------------------------------------------------------------

    def _keep(self, snapshot: Path, copy: _Copy) -> None:
        key = str(snapshot)
        self._live[key] = copy
        self._live.move_to_end(key)
        while len(self._live) > LIVE_ENTRIES:
            self._live.popitem(last=False)

    def _current(self, snapshot: Path, ruleset: str) -> _Copy | None:
        """The copy to continue: the running one if its files are intact, else the one on disk."""
        redacted, findings, _, *_ = copy_files(self.root, snapshot)
        copy = self._live.pop(str(snapshot), None)
        if copy is not None and copy.ruleset == ruleset:
            try:
                if redacted.stat().st_size >= copy.out_bytes and findings.stat().st_size >= copy.findings_bytes:
                    _truncate(redacted, copy.out_bytes)  # bytes a failed extension left
                    _truncate(findings, copy.findings_bytes)
                    return copy
            except OSError:
                pass
        return self._load(snapshot, ruleset)

    def _load(self, snapshot: Path, ruleset: str) -> _Copy | None:
        """The copy a previous run left, once both sides hash to what its record says."""
        redacted, findings, state, *_ = copy_files(self.root, snapshot)
        try:
            record = json.loads(records.RECORDS.pending(state) or state.read_bytes())
            if (
                not isinstance(record, dict)
                or record.get("version") != _RECORD_VERSION
                or record.get("snapshot") != str(snapshot)
                or record.get("ruleset") != ruleset
            ):
                return None
            raw_bytes, out_bytes = int(record["raw_bytes"]), int(record["out_bytes"])
            findings_bytes = int(record["findings_bytes"])
            ident = str(record["ident"])
            if findings.stat().st_size < findings_bytes or not _findings_intact(findings, findings_bytes):
                return None
            raw_hash = _hash_file(snapshot, raw_bytes)
            out_hash = _hash_file(redacted, out_bytes)
            if raw_hash is None or out_hash is None:
                return None
            if raw_hash.hexdigest() != record["raw_sha256"] or out_hash.hexdigest() != record["out_sha256"]:
                return None
            _truncate(redacted, out_bytes)
            _truncate(findings, findings_bytes)
            resume = Resume(lines=int(record["lines"]), in_pem=bool(record["in_pem"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return _Copy(str(snapshot), ruleset, raw_bytes, raw_hash, out_bytes, out_hash, resume, findings_bytes, ident)

    def _verified(self, snapshot: Path, copy: _Copy) -> _Copy | None:
        raw_hash = _hash_file(snapshot, copy.raw_bytes)
        if raw_hash is None or raw_hash.hexdigest() != copy.raw_hash.hexdigest():
            return None
        return copy

    def _fresh(self, snapshot: Path, ruleset: str) -> _Copy:
        redacted, findings, state, *_ = copy_files(self.root, snapshot)
        records.RECORDS.drop(state)  # nothing pending of the old copy is written after this
        state.unlink(missing_ok=True)  # the record goes first: a crash now leaves no stale claim
        for path in (redacted, findings):
            # New files, not the old ones cut to 0: a reader that still holds the old copy open (the
            # search index's thread) goes on reading the bytes it was handed.
            path.unlink(missing_ok=True)
            open_private(path).close()
        ident = secrets.token_hex(8)
        return _Copy(str(snapshot), ruleset, 0, hashlib.sha256(), 0, hashlib.sha256(), Resume(), 0, ident)

    # --- the work -----------------------------------------------------------------------

    def _extend(
        self, snapshot: Path, copy: _Copy, raw_bytes: int, wanted: list[int], redactor: Redactor
    ) -> dict[int, tuple[int, str]]:
        """Redact snapshot bytes copy.raw_bytes..raw_bytes onto the copy, piece by piece.

        On any failure the copy's files are cut back to where they were and `copy` is
        unchanged: a half-done extension is never kept or uploaded.
        """
        redacted, findings, _, *_ = copy_files(self.root, snapshot)
        raw_hash, out_hash = copy.raw_hash.copy(), copy.out_hash.copy()
        resume, raw_at, out_at, findings_at = copy.resume, copy.raw_bytes, copy.out_bytes, copy.findings_bytes
        prefixes: dict[int, tuple[int, str]] = {}
        pending = list(wanted)
        try:
            with snapshot.open("rb") as src, redacted.open("r+b") as dst, findings.open("r+b") as found:
                dst.seek(out_at)
                found.seek(findings_at)
                src.seek(raw_at)
                for piece in _pieces(src, raw_bytes - raw_at):
                    out, report, after = redactor.redact_piece(piece, resume)
                    if out.count(b"\n") != piece.count(b"\n"):
                        raise RedactionError("redaction changed the number of lines; refusing to upload")
                    raw_hash.update(piece)
                    cursor = seen = hashed = 0  # `seen` newlines of `out` lie before `cursor`
                    while pending and pending[0] <= after.lines:
                        while seen < pending[0] - resume.lines:
                            nl = out.find(b"\n", cursor)
                            cursor, seen = (len(out) if nl < 0 else nl + 1), seen + 1
                        out_hash.update(out[hashed:cursor])
                        hashed = cursor
                        prefixes[pending.pop(0)] = (out_at + cursor, out_hash.hexdigest())
                    out_hash.update(out[hashed:])
                    dst.write(out)
                    if report.findings:
                        entries = b"".join(f"{f.line}\t{f.rule}\n".encode() for f in report.findings)
                        found.write(entries)
                        findings_at += len(entries)
                    raw_at, out_at, resume = raw_at + len(piece), out_at + len(out), after
        except BaseException:
            with contextlib.suppress(OSError):
                _truncate(redacted, copy.out_bytes)
                _truncate(findings, copy.findings_bytes)
            raise
        copy.raw_hash, copy.out_hash, copy.resume = raw_hash, out_hash, resume
        copy.raw_bytes, copy.out_bytes, copy.findings_bytes = raw_at, out_at, findings_at
        return prefixes


def _pieces(src: Any, length: int) -> Iterable[bytes]:
    """The next `length` bytes of `src` as pieces of whole lines, about CHUNK bytes each.

    A line longer than a chunk is gathered whole (up to the redactor's own limit): a secret
    is never cut in two by where a read happened to stop.
    """
    pending = b""
    remaining = length
    while remaining > 0:
        chunk = src.read(min(CHUNK, remaining))
        if not chunk:
            raise PermanentError(f"snapshot is shorter than the {length} bytes asked for")
        remaining -= len(chunk)
        data = pending + chunk if pending else chunk
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) > MAX_LINE_BYTES:
                raise RedactionError(f"a line over {MAX_LINE_BYTES} bytes; refusing to upload it unredacted")
            pending = data
            continue
        pending = data[end:]
        yield data[:end]
    if pending:
        yield pending


def _scan(path: Path, wanted: list[int]) -> dict[int, tuple[int, str]]:
    """(length, sha256) of the prefixes of `path` ending with each wanted line, in one pass."""
    prefixes: dict[int, tuple[int, str]] = {}
    pending = sorted(set(wanted))
    hasher, lines, offset = hashlib.sha256(), 0, 0
    with path.open("rb") as fh:
        while pending and (chunk := fh.read(CHUNK)):
            pos = 0
            while pending:
                nl = chunk.find(b"\n", pos)
                if nl < 0:
                    break
                lines += 1
                hasher.update(chunk[pos : nl + 1])
                pos = nl + 1
                if lines == pending[0]:
                    prefixes[pending.pop(0)] = (offset + pos, hasher.hexdigest())
            hasher.update(chunk[pos:])
            offset += len(chunk)
    if pending:
        raise PermanentError(f"redacted copy {path} has fewer than {pending[0]} lines")
    return prefixes


def _continues(snapshot: Path, copy: _Copy, raw_bytes: int, raw_sha256: str) -> bool:
    """Whether the copy's bytes, then the snapshot's new ones, hash to what ingest recorded.

    Ingest hashed the snapshot's whole prefix as it wrote it (`Extent.sha256`); our running
    hash covers what we redacted. Only the new bytes are read to check that the two agree,
    so a snapshot rewritten under the copy is never continued, without re-reading its prefix.
    """
    hasher = copy.raw_hash.copy()
    with snapshot.open("rb") as fh:
        fh.seek(copy.raw_bytes)
        remaining = raw_bytes - copy.raw_bytes
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                return False
            hasher.update(chunk)
            remaining -= len(chunk)
    return hasher.hexdigest() == raw_sha256


def _hash_file(path: Path, size: int) -> _Hash | None:
    """sha256 of the first `size` bytes, streamed; None when the file is shorter."""
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        remaining = size
        while remaining:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                return None
            hasher.update(chunk)
            remaining -= len(chunk)
    return hasher


_FINDING = re.compile(rb"[0-9]+\t[a-z0-9]+(?:-[a-z0-9]+)*\n")


def _findings_intact(path: Path, size: int) -> bool:
    """Whether the first `size` bytes are whole findings lines. The record names no hash of
    them, and a power cut can leave blocks appended just before it zero-filled (the record's
    rename landed, the data did not); `View.counts` would then fail on every batch."""
    seen = 0
    with path.open("rb") as fh:
        for line in fh:  # streamed: a session may hold many secrets
            if seen >= size:
                break
            if not _FINDING.fullmatch(line):
                return False
            seen += len(line)
    return seen == size


def _truncate(path: Path, size: int) -> None:
    if path.stat().st_size != size:
        os.truncate(path, size)


def _copy_range(src: Any, dst: Any, size: int) -> None:
    remaining = size
    while remaining:
        chunk = src.read(min(CHUNK, remaining))
        if not chunk:
            raise PermanentError("redacted copy is shorter than its record")
        dst.write(chunk)
        remaining -= len(chunk)


def _write_record(state: Path, copy: _Copy) -> None:
    """Atomically (temp file, rename), so a crash leaves the old record or the new one; while
    the copy keeps growing, at most once per records.EVERY (`_load` checks a record against
    both files, so an older one only makes a restart redact more again)."""
    records.RECORDS.write(state, json.dumps(copy.record()).encode(), needs=Path(copy.snapshot))


__all__ = ["CHUNK", "COPY_SUFFIXES", "RedactedCopies", "View", "copy_files"]
