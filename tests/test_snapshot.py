"""Unit tests for `tracekeeperd.snapshot`: what a commit saw survives a rewritten or deleted transcript."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tracekeeperd.snapshot import Extent, Snapshots, TranscriptError, open_transcript, read_prefix

FIXTURES = Path(__file__).parent / "fixtures"
#: gemini-cli before v0.39 writes `JSON.stringify(conversation, null, 2)` with no final newline.
GEMINI_LEGACY = FIXTURES / "gemini" / "agent-history_real-session-01.no-final-newline.json"
#: The commit time used throughout; transcripts are stamped relative to it.
COMMIT = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC).timestamp()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record(n: int, stamp: object = None) -> bytes:
    record: dict[str, object] = {"type": "event_msg", "n": n}
    if stamp is not None:
        record["timestamp"] = stamp
    return json.dumps(record).encode() + b"\n"


def _write(path: Path, data: bytes, *, mtime: float = COMMIT) -> None:
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def _append(path: Path, data: bytes, *, mtime: float = COMMIT) -> None:
    with path.open("ab") as fh:
        fh.write(data)
    os.utime(path, (mtime, mtime))


@pytest.fixture
def snaps(tmp_path: Path) -> Snapshots:
    return Snapshots(tmp_path / "snapshots")


@pytest.fixture
def transcript(tmp_path: Path) -> Path:
    return tmp_path / "t.jsonl"


def _take(
    snaps: Snapshots, transcript: Path, previous: tuple[Path, Extent] | None = None, name: str = "gen1.jsonl"
) -> tuple[Path, Extent]:
    return snaps.take(transcript, committed_at=COMMIT, previous=previous, new_name=name)


# --- complete lines --------------------------------------------------------------------


def test_only_complete_lines_belong_to_the_commit(snaps: Snapshots, transcript: Path) -> None:
    _write(transcript, b"one\ntwo\nhalf a li")
    path, extent = _take(snaps, transcript)
    assert path == snaps.root / "gen1.jsonl"
    assert path.read_bytes() == b"one\ntwo\n"
    assert extent == Extent(bytes=8, lines=2, sha256=_sha(b"one\ntwo\n"))
    assert read_prefix(path, extent.bytes) == b"one\ntwo\n"
    assert (path.stat().st_mode & 0o777) == 0o600


def test_empty_and_newline_free_transcripts_give_an_empty_extent(snaps: Snapshots, transcript: Path) -> None:
    _write(transcript, b"")
    _, empty = _take(snaps, transcript, name="a.jsonl")
    _write(transcript, b"no newline yet")
    _, partial = _take(snaps, transcript, name="b.jsonl")
    assert empty == partial == Extent(0, 0, _sha(b""))


# --- appending to a growing session ----------------------------------------------------


def test_a_whole_json_document_is_kept_whole(snaps: Snapshots, tmp_path: Path) -> None:
    """Gemini's legacy `.json` is one document without a final newline: its closing brace belongs too."""
    doc = GEMINI_LEGACY.read_bytes()
    assert not doc.endswith(b"\n")
    transcript = tmp_path / "session-2026-06-05T04-59-dcbe78d3.json"
    _write(transcript, doc)
    snapshot, extent = _take(snaps, transcript)
    kept = snapshot.read_bytes()
    # Ended by a newline (whitespace after a JSON value) so the line-oriented parts see one complete document.
    assert kept == doc + b"\n" and json.loads(kept) == json.loads(doc)
    assert extent == Extent(bytes=len(doc) + 1, lines=doc.count(b"\n") + 1, sha256=_sha(doc + b"\n"))

    # Unchanged: the same snapshot and extent (commits back to back share it).
    assert _take(snaps, transcript, (snapshot, extent), name="gen2.json") == (snapshot, extent)

    # The CLI rewrites the whole file: a new document is a new generation, never an append.
    record = json.loads(doc)
    record["messages"].append({"id": "m3", "type": "user", "content": "and now?", "timestamp": record["lastUpdated"]})
    rewritten = json.dumps(record, indent=2).encode()
    _write(transcript, rewritten)
    again, extent2 = _take(snaps, transcript, (snapshot, extent), name="gen3.json")
    assert again != snapshot and again.read_bytes() == rewritten + b"\n"
    assert extent2.lines == rewritten.count(b"\n") + 1
    assert snapshot.read_bytes() == doc + b"\n"  # what the earlier commit saw is untouched


def test_a_half_written_json_document_is_not_kept(snaps: Snapshots, tmp_path: Path) -> None:
    """The CLI rewrites in place: a truncated document is refused with the reason, never stored broken."""
    transcript = tmp_path / "session-2026-06-05T04-59-dcbe78d3.json"
    _write(transcript, GEMINI_LEGACY.read_bytes()[:200])
    with pytest.raises(TranscriptError, match=r"is not a complete JSON document") as info:
        _take(snaps, transcript)
    assert str(transcript) in str(info.value) and "\n" not in str(info.value)
    assert not snaps.root.exists() or not any(snaps.root.iterdir())


def test_a_grown_transcript_is_appended_to_the_same_snapshot(snaps: Snapshots, transcript: Path) -> None:
    first = b"".join(_record(i) for i in range(3))
    _write(transcript, first + b'{"partial')
    path1, ext1 = _take(snaps, transcript)
    more = b"".join(_record(i) for i in range(3, 10))
    _write(transcript, first + more)
    path2, ext2 = _take(snaps, transcript, previous=(path1, ext1), name="gen2.jsonl")
    assert path2 == path1, "a grown transcript continues its snapshot"
    assert not (snaps.root / "gen2.jsonl").exists()
    assert path2.read_bytes() == first + more
    assert ext2 == Extent(bytes=len(first + more), lines=10, sha256=_sha(first + more))


def test_running_hash_cache_matches_a_fresh_hash(tmp_path: Path, snaps: Snapshots, transcript: Path) -> None:
    """The cached hasher (warm) and a re-hash from the file (a restarted daemon) must agree."""
    data = b""
    previous: tuple[Path, Extent] | None = None
    for step in range(4):
        data += b"".join(_record(step * 10 + i) for i in range(step + 1))
        _write(transcript, data)
        previous = _take(snaps, transcript, previous=previous)
    assert previous is not None
    data += _record(99)
    _write(transcript, data)
    warm = _take(snaps, transcript, previous=previous)
    # A fresh Snapshots has no cache; it must hash the existing prefix from the file. Undo the
    # warm append first so both start from the same extent.
    with previous[0].open("r+b") as fh:
        fh.truncate(previous[1].bytes)
    cold = _take(Snapshots(snaps.root), transcript, previous=previous)
    assert warm == cold
    assert warm[1].sha256 == _sha(data)
    assert warm[1].lines == data.count(b"\n")


def test_no_growth_returns_the_same_extent(snaps: Snapshots, transcript: Path) -> None:
    _write(transcript, _record(1) + _record(2))
    first = _take(snaps, transcript)
    again = _take(snaps, transcript, previous=first, name="other.jsonl")
    assert again == first
    assert not (snaps.root / "other.jsonl").exists()


def test_snapshot_longer_than_its_extent_is_truncated_before_appending(snaps: Snapshots, transcript: Path) -> None:
    """A crash between the append and the enqueue leaves bytes no job owns: they are dropped."""
    base = _record(1) + _record(2)
    _write(transcript, base)
    path, extent = _take(snaps, transcript)
    with path.open("ab") as fh:
        fh.write(b"garbage from a crashed append\nand more")
    full = base + _record(3)
    _write(transcript, full)
    for fresh in (snaps, Snapshots(snaps.root)):  # with and without the cached hasher
        with path.open("r+b") as fh:  # restore the crash leftovers for the second round
            fh.truncate(extent.bytes)
            fh.seek(extent.bytes)
            fh.write(b"leftover\n")
        got_path, got = fresh.take(transcript, committed_at=COMMIT, previous=(path, extent), new_name="x.jsonl")
        assert got_path == path
        assert path.read_bytes() == full
        assert got == Extent(len(full), 3, _sha(full))


# --- rewritten transcripts ------------------------------------------------------------


def test_rewritten_content_starts_a_new_generation(snaps: Snapshots, transcript: Path) -> None:
    original = _record(1) + _record(2) + _record(3)
    _write(transcript, original)
    old_path, old = _take(snaps, transcript)
    rewritten = _record(1) + _record(20) + _record(3) + _record(4)  # same length prefix, new content
    _write(transcript, rewritten)
    new_path, new = _take(snaps, transcript, previous=(old_path, old), name="gen2.jsonl")
    assert new_path == snaps.root / "gen2.jsonl"
    assert new_path.read_bytes() == rewritten
    assert new == Extent(len(rewritten), 4, _sha(rewritten))
    assert old_path.read_bytes() == original, "the old generation is what earlier commits saw"


def test_a_shrunk_transcript_starts_a_new_generation(snaps: Snapshots, transcript: Path) -> None:
    original = _record(1) + _record(2) + _record(3)
    _write(transcript, original)
    old_path, old = _take(snaps, transcript)
    _write(transcript, _record(1))
    new_path, new = _take(snaps, transcript, previous=(old_path, old), name="gen2.jsonl")
    assert new_path != old_path
    assert new == Extent(len(_record(1)), 1, _sha(_record(1)))
    assert old_path.read_bytes() == original


def test_a_new_generation_never_takes_over_an_existing_snapshot_file(
    snaps: Snapshots, transcript: Path, tmp_path: Path
) -> None:
    """Ingest names a generation after the millisecond it starts in: a transcript rewritten
    within the same one (or a clock stepped back onto it) gives the name of a file that earlier
    commits' jobs still read. The new generation must go elsewhere, not truncate theirs."""
    original = _record(1) + _record(2) + _record(3)
    _write(transcript, original)
    old_path, old = _take(snaps, transcript, name="same-ms.jsonl")
    _write(transcript, _record(7))
    new_path, new = _take(snaps, transcript, previous=(old_path, old), name="same-ms.jsonl")
    assert old_path.read_bytes() == original, "what earlier commits saw"
    assert new_path != old_path and new_path.parent == snaps.root
    assert new_path.read_bytes() == _record(7) and new == Extent(len(_record(7)), 1, _sha(_record(7)))
    document = tmp_path / "session-2026-11-25T09-00-abc.json"
    document.write_bytes(b'{"messages": []}')
    doc_path, _ = snaps.take(document, committed_at=COMMIT, previous=None, new_name="same-ms.jsonl")
    assert doc_path not in (old_path, new_path)
    assert old_path.read_bytes() == original and new_path.read_bytes() == _record(7)


def test_a_missing_previous_snapshot_starts_a_new_generation(snaps: Snapshots, transcript: Path) -> None:
    _write(transcript, _record(1))
    old_path, old = _take(snaps, transcript)
    old_path.unlink()
    _write(transcript, _record(1) + _record(2))
    new_path, new = _take(snaps, transcript, previous=(old_path, old), name="gen2.jsonl")
    assert new_path == snaps.root / "gen2.jsonl"
    assert new.lines == 2


def test_forget_removes_file_and_cache(snaps: Snapshots, transcript: Path) -> None:
    _write(transcript, _record(1))
    path, _ = _take(snaps, transcript)
    snaps.forget(path)
    assert not path.exists()
    snaps.forget(path)  # idempotent


# --- late ingest: cut by the records' own timestamps ----------------------------------


@pytest.mark.parametrize(
    "later",
    [
        "2026-11-25T09:00:05Z",
        "2026-11-25T09:00:05.250Z",
        "2026-11-25T09:00:05+00:00",
        "2026-11-25T10:00:05+01:00",
        int((COMMIT + 5) * 1000),  # epoch milliseconds
        COMMIT + 5,  # epoch seconds
    ],
)
def test_late_ingest_excludes_lines_stamped_after_the_commit(snaps: Snapshots, transcript: Path, later: object) -> None:
    before = (
        _record(1, "2026-11-25T08:59:00Z")
        + _record(2)  # no timestamp: kept, it precedes the first later line
        + _record(3, int((COMMIT - 1) * 1000))
        + _record(4, "2026-11-25T09:00:00+00:00")  # exactly at the commit: not after it
    )
    after = _record(5, later) + _record(6) + _record(7, "2026-11-25T08:00:00Z")
    _write(transcript, before + after, mtime=COMMIT + 3600)  # written to long after the commit
    path, extent = _take(snaps, transcript)
    assert path.read_bytes() == before
    assert extent == Extent(len(before), 4, _sha(before))


def test_late_ingest_cut_applies_to_the_appended_part(snaps: Snapshots, transcript: Path) -> None:
    first = _record(1, "2026-11-25T08:00:00Z")
    _write(transcript, first)
    previous = snaps.take(transcript, committed_at=COMMIT - 1800, previous=None, new_name="g.jsonl")
    grown = first + _record(2, "2026-11-25T08:59:59Z") + _record(3, "2026-11-25T09:30:00Z")
    _write(transcript, grown, mtime=COMMIT + 3600)
    _, extent = _take(snaps, transcript, previous=previous)
    assert extent.lines == 2
    assert previous[0].read_bytes() == first + _record(2, "2026-11-25T08:59:59Z")


def test_a_late_cut_ends_at_a_line_end_even_after_a_bare_carriage_return(snaps: Snapshots, transcript: Path) -> None:
    """A record stamped after the commit that follows a bare CR on its line (a tool's progress
    output, pasted raw): lines are what newlines end, and that line is no record (it does not
    parse), so nothing is cut. Cut at the CR, the snapshot would end mid-line, and every later
    piece of its redaction would start mid-line, numbering lines (and notes' prefixes) one off."""
    data = _record(1, "2026-11-25T08:59:00Z") + b"downloading 10%\r" + _record(2, "2026-11-25T09:30:00Z") + _record(3)
    _write(transcript, data, mtime=COMMIT + 3600)
    path, extent = _take(snaps, transcript)
    assert path.read_bytes() == data
    assert extent == Extent(len(data), 3, _sha(data))


def test_a_transcript_not_modified_since_the_commit_is_not_cut(snaps: Snapshots, transcript: Path) -> None:
    """Within the grace period the file is what the commit saw, whatever its records claim."""
    data = _record(1, "2026-11-25T09:00:00Z") + _record(2, "2030-01-01T00:00:00Z")
    _write(transcript, data, mtime=COMMIT + 0.4)
    _, extent = _take(snaps, transcript)
    assert extent.lines == 2


def test_unreadable_timestamps_do_not_cut(snaps: Snapshots, transcript: Path) -> None:
    data = (
        _record(1, "yesterday")
        + _record(2, {"nested": 1})
        + b'{"timestamp": "2026-13-45T99:00:00Z", "n": 3}\n'
        + b'not json but mentions "timestamp"\n'
        + b'["timestamp", 1]\n'
    )
    _write(transcript, data, mtime=COMMIT + 3600)
    _, extent = _take(snaps, transcript)
    assert extent.lines == 5


# --- transcripts that are not regular files --------------------------------------------


def test_missing_transcript(snaps: Snapshots, tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="does not exist"):
        _take(snaps, tmp_path / "gone.jsonl")


def test_symlinked_transcript_is_refused(snaps: Snapshots, transcript: Path, tmp_path: Path) -> None:
    _write(transcript, _record(1))
    link = tmp_path / "link.jsonl"
    link.symlink_to(transcript)
    with pytest.raises(TranscriptError, match="symlink"):
        _take(snaps, link)


def test_hard_linked_transcript_is_refused(snaps: Snapshots, tmp_path: Path) -> None:
    """A second name for a file elsewhere (`ln ~/.aws/credentials rollout-x.jsonl`) is no transcript."""
    secret = tmp_path / "credentials"
    _write(secret, b'{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}\n')
    link = tmp_path / "rollout-x.jsonl"
    os.link(secret, link)
    with pytest.raises(TranscriptError, match=r"has 2 hard links; refusing to read it \(a transcript has one") as info:
        _take(snaps, link)
    assert str(link) in str(info.value) and "\n" not in str(info.value)
    assert not snaps.root.exists() or not any(snaps.root.iterdir())  # nothing copied


def test_fifo_transcript_is_refused_without_blocking(snaps: Snapshots, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(TranscriptError, match="not a regular file"):
        _take(snaps, fifo)


def test_directory_transcript_is_refused(snaps: Snapshots, tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="not a regular file"):
        _take(snaps, tmp_path)


def test_errors_are_one_line_and_name_the_file(tmp_path: Path) -> None:
    target = tmp_path / "gone.jsonl"
    with pytest.raises(TranscriptError) as info:
        open_transcript(target)
    assert str(target) in str(info.value)
    assert "\n" not in str(info.value)


def test_read_prefix_refuses_a_short_snapshot(tmp_path: Path) -> None:
    snap = tmp_path / "s.jsonl"
    snap.write_bytes(b"abc\n")
    assert read_prefix(snap, 2) == b"ab"
    with pytest.raises(Exception, match="shorter than the 10 bytes"):
        read_prefix(snap, 10)


def test_a_pathologically_nested_record_does_not_break_the_cut(snaps: Snapshots, transcript: Path) -> None:
    """json.loads raises RecursionError (not ValueError) on deep nesting; one odd record must not fail ingest."""
    deep = b'{"timestamp": "2026-11-25T08:00:00Z", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    data = _record(1, "2026-11-25T08:00:00Z") + deep + _record(3, "2026-11-25T10:00:00Z")
    _write(transcript, data, mtime=COMMIT + 3600)
    _, extent = _take(snaps, transcript)
    assert extent.lines == 2


_SHORT_WRITE_CHILD = """
import hashlib, json, resource, signal, sys
from pathlib import Path
from tracekeeperd.snapshot import Snapshots

transcript, root, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
snaps = Snapshots(root)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit is cut short, then EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    path, extent = snaps.take(transcript, committed_at=0.0, previous=None, new_name="s.jsonl")
except OSError as exc:
    print(json.dumps({"error": exc.errno}))
else:
    data = path.read_bytes()[: extent.bytes]
    same = hashlib.sha256(data).hexdigest() == extent.sha256
    print(json.dumps({"bytes": extent.bytes, "kept": len(data), "same": same}))
"""


def test_a_short_write_never_gives_an_extent_beyond_the_bytes_kept(tmp_path: Path) -> None:
    """A full disk (here a file size limit, which the kernel enforces the same way: the write
    that crosses it is cut short, the next one fails) must not leave an extent that claims
    bytes the snapshot does not have: its job would point past the file's end forever."""
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(b"".join(_record(n) for n in range(400)))  # ~12 KB: one read, one write
    proc = subprocess.run(
        [sys.executable, "-c", _SHORT_WRITE_CHILD, str(transcript), str(tmp_path / "snapshots"), "4096"],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    result = json.loads(proc.stdout)
    # Either the failure surfaces (the spool file stays for a retry), or the extent is true.
    assert result == {"error": errno.EFBIG} or (result["kept"] == result["bytes"] and result["same"]), result
