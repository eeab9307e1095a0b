"""Redacted copies on disk: only new bytes are redacted, whatever the file size, across restarts.

The library level of the large-file work (issue #10): `outgoing.RedactedCopies` over real
snapshot files in a temp dir and the real `Redactor`, wrapped only to count the bytes it is
handed and the size of each piece (the "bounded read" the daemon promises).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracekeeperd import outgoing
from tracekeeperd.outgoing import RedactedCopies, View
from tracekeeperd.paths import write_private
from tracekeeperd.redact import RedactionConfig, RedactionError, Redactor, Resume, Rule
from tracekeeperd.snapshot import Snapshots

from .secretgen import corpus, write_transcript

PEM_HEAD = b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
PEM_BODY = [b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW%d\n" % i for i in range(6)]
PEM_TAIL = b"-----END OPENSSH PRIVATE KEY-----\n"


class Counting(Redactor):
    """The real redactor; remembers how many bytes it was handed and the largest piece."""

    def __init__(self, config: RedactionConfig | None = None) -> None:
        super().__init__(config or RedactionConfig())
        self.seen = 0
        self.largest = 0

    def redact_piece(self, data: bytes, resume: Resume) -> tuple[bytes, object, Resume]:  # type: ignore[override]
        self.seen += len(data)
        self.largest = max(self.largest, len(data))
        return super().redact_piece(data, resume)


def _lines(data: bytes) -> int:
    return data.count(b"\n")


def _view(copies: RedactedCopies, snapshot: Path, redactor: Redactor, *, wanted: list[int] | None = None) -> View:
    data = snapshot.read_bytes()
    return copies.view(
        snapshot,
        raw_bytes=len(data),
        raw_lines=_lines(data),
        raw_sha256=hashlib.sha256(data).hexdigest(),
        lines=wanted or [_lines(data)],
        redactor=redactor,
    )


def _uploaded(view: View) -> bytes:
    path, _ = view.upload_file()
    return path.read_bytes()


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    path = tmp_path / "snapshots" / "s1.jsonl"
    path.parent.mkdir()
    return path


@pytest.fixture
def copies(tmp_path: Path) -> RedactedCopies:
    return RedactedCopies(tmp_path / "redacted")


def test_pieces_redact_exactly_like_one_pass_and_a_key_split_between_them_is_still_removed() -> None:
    """A plain-text private key whose body continues in the next piece (the next commit)."""
    lines = corpus(rounds=1).lines
    head = [*lines[:40], PEM_HEAD, *PEM_BODY[:3]]
    tail = [*PEM_BODY[3:], PEM_TAIL, *lines[40:]]
    redactor = Redactor()
    whole, report = redactor.redact_bytes(b"".join(head + tail))
    first, r1, resume = redactor.redact_piece(b"".join(head), Resume())
    second, r2, end = redactor.redact_piece(b"".join(tail), resume)
    assert first + second == whole
    assert [(f.rule, f.line) for f in r1.findings + r2.findings] == [(f.rule, f.line) for f in report.findings]
    assert end.lines == len(head) + len(tail)
    for body in PEM_BODY:
        assert body.strip() not in whole


#: Units a transcript is made of: one corpus line, or a whole plain-text key over several lines.
_UNITS = [[line] for line in corpus(rounds=1).lines] + [[PEM_HEAD, *PEM_BODY, PEM_TAIL]]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    units=st.lists(
        st.one_of(st.integers(min_value=0, max_value=len(_UNITS) - 2), st.just(len(_UNITS) - 1)),
        min_size=1,
        max_size=40,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_any_cut_into_pieces_redacts_like_one_pass(units: list[int], cuts: list[int]) -> None:
    """Any transcript cut anywhere between lines, inside a multi-line key too (its state carries)."""
    lines = [line for i in units for line in _UNITS[i]]
    redactor = Redactor()
    whole, report = redactor.redact_bytes(b"".join(lines))
    out, findings, resume = b"", [], Resume()
    bounds = sorted({min(c, len(lines)) for c in cuts} | {0, len(lines)})
    for a, b in itertools.pairwise(bounds):
        piece, r, resume = redactor.redact_piece(b"".join(lines[a:b]), resume)
        out += piece
        findings += [(f.rule, f.line, f.column) for f in r.findings]
    assert out == whole
    assert findings == [(f.rule, f.line, f.column) for f in report.findings]


def test_a_grown_snapshot_redacts_only_its_new_bytes(snapshot: Path, copies: RedactedCopies) -> None:
    write_transcript(snapshot, 2_000_000)
    redactor = Counting()
    first = _view(copies, snapshot, redactor)
    assert redactor.seen == snapshot.stat().st_size
    grown = snapshot.read_bytes()
    before = len(grown)
    extra = snapshot.with_name("extra.jsonl")
    write_transcript(extra, 100_000, seed=11)
    with snapshot.open("ab") as fh:
        fh.write(extra.read_bytes())
    redactor.seen = 0
    second = _view(copies, snapshot, redactor, wanted=[_lines(grown), _lines(snapshot.read_bytes())])
    assert redactor.seen == snapshot.stat().st_size - before  # the 100 KB, not the 2 MB
    full, _ = Redactor().redact_bytes(snapshot.read_bytes())
    assert _uploaded(second) == full
    # What the note says of each commit's prefix is what hashing the uploaded bytes says.
    for lines in (_lines(grown), _lines(snapshot.read_bytes())):
        length, digest = second.prefix(lines)
        assert digest == hashlib.sha256(full[:length]).hexdigest()
        assert full[:length].count(b"\n") == lines
    assert first.prefix(_lines(grown)) == second.prefix(_lines(grown))


def test_a_restart_keeps_the_redacted_offset(snapshot: Path, tmp_path: Path) -> None:
    write_transcript(snapshot, 1_000_000)
    _view(RedactedCopies(tmp_path / "redacted"), snapshot, Counting())
    before = snapshot.stat().st_size
    with snapshot.open("ab") as fh:
        fh.write(b"".join(corpus(rounds=1).lines))
    restarted, redactor = RedactedCopies(tmp_path / "redacted"), Counting()  # a new process: nothing in memory
    view = _view(restarted, snapshot, redactor)
    assert redactor.seen == snapshot.stat().st_size - before
    assert _uploaded(view) == Redactor().redact_bytes(snapshot.read_bytes())[0]
    assert view.counts(1, _lines(snapshot.read_bytes())) == dict(
        sorted(Redactor().redact_bytes(snapshot.read_bytes())[1].counts.items())
    )


def test_a_crash_between_writing_the_copy_and_its_record_keeps_only_what_the_record_says(
    snapshot: Path, tmp_path: Path
) -> None:
    """The daemon died while extending: the copy and its findings ran past their record (whose
    write is the extension's last step). A restart cuts both back to the record and redacts the
    rest again, so neither half-written bytes nor their findings are uploaded or counted twice."""
    planted = corpus(rounds=1)
    half = len(planted.lines) // 2
    snapshot.write_bytes(b"".join(planted.lines[:half]))
    first = _view(RedactedCopies(tmp_path / "redacted"), snapshot, Counting())
    with snapshot.open("ab") as fh:
        fh.write(b"".join(planted.lines[half:]))
    with first.file.open("ab") as fh:
        fh.write(b'{"half": "written, then the crash')  # an extension's bytes, no record for them
    with first.findings.open("ab") as fh:
        fh.write(f"{half + 1}\tgithub-pat\n".encode())
    redactor = Counting()
    view = _view(RedactedCopies(tmp_path / "redacted"), snapshot, redactor)
    full, report = Redactor().redact_bytes(snapshot.read_bytes())
    assert redactor.seen == snapshot.stat().st_size - len(b"".join(planted.lines[:half]))
    assert _uploaded(view) == full
    assert view.counts(1, _lines(full)) == dict(sorted(report.counts.items()))
    assert view.ident == first.ident  # the same bytes up to the record: the index may resume in them


def test_findings_lost_in_a_power_cut_are_found_again_not_a_crash_at_every_batch(
    snapshot: Path, tmp_path: Path
) -> None:
    """After a power cut a file extended just before it can come back with its new blocks
    zero-filled (XFS, ext4 without data=ordered): the record was renamed into place but the
    findings it counts never reached the disk. The copy and its record check out by their
    hashes; its findings must too, or `counts` raises on every batch that holds the session."""
    planted = corpus(rounds=1)
    snapshot.write_bytes(b"".join(planted.lines))
    first = _view(RedactedCopies(tmp_path / "redacted"), snapshot, Counting())
    size = first.findings.stat().st_size
    assert size > 0
    first.findings.write_bytes(b"\0" * size)
    view = _view(RedactedCopies(tmp_path / "redacted"), snapshot, Counting())
    full, report = Redactor().redact_bytes(snapshot.read_bytes())
    assert view.counts(1, _lines(full)) == dict(sorted(report.counts.items()))
    assert _uploaded(view) == full


def test_a_changed_ruleset_redacts_again_from_the_start(snapshot: Path, tmp_path: Path) -> None:
    snapshot.write_bytes(b'{"note": "acme_0123456789abcdef token"}\n' * 50)
    acme = Rule(id="acme-key", pattern=r"acme_[0-9a-f]{16}", keywords=("acme_",))
    strict = Counting(RedactionConfig(extra_rules=(acme,)))
    running = RedactedCopies(tmp_path / "redacted")
    for restarted in (True, False):
        _view(running, snapshot, Counting())  # the default rules' copy, on disk and in memory
        copies = RedactedCopies(tmp_path / "redacted") if restarted else running
        strict.seen = 0
        view = _view(copies, snapshot, strict)
        assert strict.seen == snapshot.stat().st_size
        assert b"acme_0123456789abcdef" not in _uploaded(view)
        assert view.counts(1, 50) == {"acme-key": 50}


@pytest.mark.parametrize(
    ("before", "after", "gone"),
    [
        # `scrub_home` turned on: the whole session goes up again, so its old lines must lose the path too
        (
            RedactionConfig(),
            RedactionConfig(scrub_home=True, home="/home/zoe-q", user="zoe-q"),
            b"/home/zoe-q",
        ),
        # a string that was allowed is a secret after all
        (
            RedactionConfig(
                allow=("hf_Zq8Rw3Lx0Vb5Nc7Tp1Yk4Mj9Hg2Fd6Sa",),
            ),
            RedactionConfig(),
            b"hf_Zq8Rw3Lx0Vb5",
        ),
        # a user rule given one more keyword: it now matches where it did not
        (
            RedactionConfig(extra_rules=(Rule("acme-key", r"k[0-9a-f]{16}", ("acme:",)),)),
            RedactionConfig(extra_rules=(Rule("acme-key", r"k[0-9a-f]{16}", ("acme:", "key")),)),
            b"k0123456789abcdef",
        ),
    ],
)
def test_a_copy_is_redacted_again_when_anything_that_changes_its_bytes_changes(
    snapshot: Path, tmp_path: Path, before: RedactionConfig, after: RedactionConfig, gone: bytes
) -> None:
    """The copy on disk is continued only if the redactor would write the same bytes: not only
    its rules' patterns but their keywords, the allow list and the home scrub (a SIGHUP or a
    restart with a new config), or the next upload carries the old lines as they were."""
    snapshot.write_bytes(
        b'{"cwd": "/home/zoe-q/src", "t": "hf_Zq8Rw3Lx0Vb5Nc7Tp1Yk4Mj9Hg2Fd6Sa", "k": "key k0123456789abcdef"}\n' * 3
    )
    first = _view(RedactedCopies(tmp_path / "redacted"), snapshot, Redactor(before))
    assert gone in _uploaded(first)
    for restarted in (False, True):
        copies = RedactedCopies(tmp_path / "redacted")
        _view(copies, snapshot, Redactor(before))
        if restarted:
            copies = RedactedCopies(tmp_path / "redacted")
        assert gone not in _uploaded(_view(copies, snapshot, Redactor(after)))


def test_a_copy_keeps_its_ident_while_it_grows_and_a_new_one_is_other_files(snapshot: Path, tmp_path: Path) -> None:
    """The search index resumes at an offset in the copy while its `ident` is unchanged: so the
    ident must survive growth and restarts, change when the copy starts again from byte 0, and a
    reader still holding the old copy open (the index thread) must keep reading the old bytes."""
    snapshot.write_bytes(b'{"note": "acme_0123456789abcdef token"}\n' * 50)
    first = _view(RedactedCopies(tmp_path / "redacted"), snapshot, Counting())
    with snapshot.open("ab") as fh:
        fh.write(b'{"note": "more"}\n')
    grown = _view(RedactedCopies(tmp_path / "redacted"), snapshot, Counting())  # after a restart
    assert grown.ident == first.ident
    held = grown.file.open("rb")
    with held:
        before = held.read()
        held.seek(0)
        acme = Rule(id="acme-key", pattern=r"acme_[0-9a-f]{16}", keywords=("acme_",))
        strict = _view(RedactedCopies(tmp_path / "redacted"), snapshot, Counting(RedactionConfig(extra_rules=(acme,))))
        assert strict.ident != grown.ident
        assert held.read() == before  # still the old copy's bytes, not the new copy's
    assert b"acme_0123456789abcdef" in before and b"acme_0123456789abcdef" not in _uploaded(strict)


def test_a_rewritten_prefix_redacts_again_from_the_start(snapshot: Path, tmp_path: Path) -> None:
    token = b"hf_" + b"QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"
    snapshot.write_bytes(b'{"n": 1, "text": "nothing here"}\n' * 100)
    running = RedactedCopies(tmp_path / "redacted")
    _view(running, snapshot, Counting())
    # Grown, but its first line is other bytes (a new secret): not a continuation of the copy.
    rewritten = b'{"n": 1, "text": "' + token + b'"}\n' + b'{"n": 1, "text": "nothing here"}\n' * 99
    snapshot.write_bytes(rewritten + b'{"n": 2}\n')
    for copies in (running, RedactedCopies(tmp_path / "redacted")):
        redactor = Counting()
        view = _view(copies, snapshot, redactor)
        assert redactor.seen == snapshot.stat().st_size
        assert token not in _uploaded(view)
        assert _uploaded(view) == Redactor().redact_bytes(snapshot.read_bytes())[0]
        snapshot.write_bytes(snapshot.read_bytes().replace(b'"n": 2', b'"n": 3'))  # and once more after a restart


def test_secrets_across_read_chunks_are_removed(
    snapshot: Path, copies: RedactedCopies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads far smaller than a line: every secret straddles a read; pieces stay whole lines."""
    monkeypatch.setattr(outgoing, "CHUNK", 97)
    planted = corpus(rounds=1)
    snapshot.write_bytes(planted.data())
    redactor = Counting()
    view = _view(copies, snapshot, redactor)
    stored = _uploaded(view)
    assert stored == Redactor().redact_bytes(planted.data())[0]
    for secret in planted.planted:
        assert secret.secret.encode() not in stored, secret.kind
    assert redactor.largest <= max(len(line) for line in planted.lines) + 97


def test_a_large_snapshot_is_read_in_bounded_pieces(snapshot: Path, copies: RedactedCopies) -> None:
    write_transcript(snapshot, 20_000_000)
    redactor = Counting()
    view = _view(copies, snapshot, redactor)
    assert redactor.seen == snapshot.stat().st_size
    assert redactor.largest <= outgoing.CHUNK + 64 * 1024  # one chunk plus the line it cut
    assert view.upload_file() == (view.file, False)  # uploaded from the copy itself, no temp copy
    assert hashlib.sha256(view.file.read_bytes()).hexdigest() == view.prefix(_lines(snapshot.read_bytes()))[1]


def test_an_older_commit_gets_a_prefix_of_a_copy_that_ran_further(snapshot: Path, copies: RedactedCopies) -> None:
    lines = corpus(rounds=1).lines
    snapshot.write_bytes(b"".join(lines))
    _view(copies, snapshot, Redactor())
    older = b"".join(lines[:30])
    redactor = Counting()
    view = copies.view(
        snapshot,
        raw_bytes=len(older),
        raw_lines=30,
        raw_sha256=hashlib.sha256(older).hexdigest(),
        lines=[10, 30],
        redactor=redactor,
    )
    assert redactor.seen == 0
    expected = Redactor().redact_bytes(older)[0]
    path, temporary = view.upload_file()
    assert temporary and path.read_bytes() == expected
    assert view.prefix(10) == (
        len(Redactor().redact_bytes(b"".join(lines[:10]))[0]),
        hashlib.sha256(Redactor().redact_bytes(b"".join(lines[:10]))[0]).hexdigest(),
    )


def test_forgetting_a_snapshot_deletes_its_redacted_copy(snapshot: Path, tmp_path: Path) -> None:
    snapshots = Snapshots(snapshot.parent)
    copies = RedactedCopies(snapshots.redacted)
    snapshot.write_bytes(b'{"a": 1}\n')
    _view(copies, snapshot, Redactor())
    assert any(snapshots.redacted.iterdir())
    orphan = snapshots.redacted / "gone.jsonl.redacted"
    orphan.write_bytes(b"x")
    assert snapshots.collect_copies() == 1 and not orphan.exists()
    snapshots.forget(snapshot)
    assert list(snapshots.redacted.iterdir()) == []


def test_a_failed_redaction_keeps_nothing(snapshot: Path, copies: RedactedCopies) -> None:
    snapshot.write_bytes(b'{"a": 1}\n')
    first = _view(copies, snapshot, Redactor())

    class Broken(Redactor):
        def redact_piece(self, data: bytes, resume: Resume) -> tuple[bytes, object, Resume]:  # type: ignore[override]
            raise RedactionError("engine exploded")

    with snapshot.open("ab") as fh:
        fh.write(b'{"b": 2}\n')
    with pytest.raises(RedactionError, match="engine exploded"):
        _view(copies, snapshot, Broken())
    assert first.file.read_bytes() == b'{"a": 1}\n'

    class Joiner(Redactor):
        def redact_piece(self, data: bytes, resume: Resume) -> tuple[bytes, object, Resume]:  # type: ignore[override]
            out, report, after = super().redact_piece(data, resume)
            return out.replace(b"\n", b" ", 1), report, after

    with pytest.raises(RedactionError, match="changed the number of lines"):
        _view(copies, snapshot, Joiner())
    assert _uploaded(_view(copies, snapshot, Redactor())) == b'{"a": 1}\n{"b": 2}\n'


# --- uploads from a file ----------------------------------------------------------------------


def test_the_local_store_copies_an_upload_file_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    from tracekeeperd.stores import LocalStore, Upload

    source = tmp_path / "copy.redacted"
    write_transcript(source, 30_000_000)
    store = LocalStore(tmp_path / "traces")
    store.preflight()
    tracemalloc.start()
    try:
        assert store.put([Upload("app-1/sessions/codex-s1.jsonl", source)]) == {}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # Python allocations while copying 30 MB: a chunk or two
    target = tmp_path / "traces" / "app-1" / "sessions" / "codex-s1.jsonl"
    assert target.read_bytes() == source.read_bytes()
    assert (target.stat().st_mode & 0o777) == 0o600


def test_the_hub_store_uploads_a_file_path_through_hf_xet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real huggingface_hub + hf_xet against the Hub stand-in (only its REST API is mocked)."""
    from tracekeeperd.stores import HfStore, Upload

    from .hubstub import running_hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    source = tmp_path / "s.jsonl.redacted"
    write_transcript(source, 3_000_000)
    with running_hub(tmp_path / "cas") as hub:
        hub.create_bucket("alice/agent-traces", private=True)
        store = HfStore("alice/agent-traces", hub.endpoint, "hf_alice_write")
        store.preflight()
        assert store.put([Upload("app-1/sessions/codex-s1.jsonl", source)]) == {}
        assert hub.read_file("alice/agent-traces", "app-1/sessions/codex-s1.jsonl") == source.read_bytes()


_GROWN = corpus(rounds=1)
#: A session whose plain-text key (CRLF, as a Windows tool prints it) sits between corpus lines.
_PEM_AT = len(b"".join(_GROWN.lines[:60]))
_GROWN_DATA = (
    b"".join(_GROWN.lines[:60])
    + PEM_HEAD.replace(b"\n", b"\r\n")
    + b"".join(line.replace(b"\n", b"\r\n") for line in PEM_BODY)
    + PEM_TAIL.replace(b"\n", b"\r\n")
    + b"".join(_GROWN.lines[60:120])
)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    cuts=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=len(_GROWN_DATA)),
            st.integers(min_value=_PEM_AT, max_value=_PEM_AT + 600),  # inside the key, often
        ),
        max_size=8,
    ),
    restarts=st.lists(st.booleans(), min_size=9, max_size=9),
)
def test_a_session_committed_at_any_byte_and_restarted_anywhere_never_uploads_a_secret(
    cuts: list[int], restarts: list[bool]
) -> None:
    """The whole path: the agent has written up to any byte (mid-line too) at each commit;
    each commit's snapshot (snapshot.py) is redacted on disk (a new daemon process between
    any two): what goes up is always the one-pass redaction of the snapshot, with no secret."""
    import tempfile

    redactor = Redactor()
    needles = [n.encode() for p in _GROWN.planted if p.line < 120 for n in p.needles]
    needles += [body.strip() for body in PEM_BODY]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        transcript = root / "t.jsonl"
        snaps = Snapshots(root / "snapshots")
        copies = RedactedCopies(root / "redacted")
        previous = None
        for cut, restart in zip([*sorted(set(cuts)), len(_GROWN_DATA)], restarts, strict=False):
            transcript.write_bytes(_GROWN_DATA[:cut])
            previous = snaps.take(transcript, committed_at=2e9, previous=previous, new_name="s.jsonl")
            path, extent = previous
            if restart:
                copies = RedactedCopies(root / "redacted")
            if not extent.lines:
                continue
            view = copies.view(
                path,
                raw_bytes=extent.bytes,
                raw_lines=extent.lines,
                raw_sha256=extent.sha256,
                lines=[extent.lines],
                redactor=redactor,
            )
            uploaded = _uploaded(view)
            assert uploaded == redactor.redact_bytes(path.read_bytes()[: extent.bytes])[0]
            assert not [n for n in needles if n in uploaded]
        assert extent.bytes == len(_GROWN_DATA)


def test_files_beside_the_copies_are_private_whatever_the_umask(snapshot: Path, tmp_path: Path) -> None:
    """Found by the data-path review: the copy's record and a temporary upload file took the
    umask (0644 under 022), though they hold transcript-derived state like the 0600 snapshots."""
    old = os.umask(0o022)
    try:
        lines = corpus(rounds=1).lines
        snapshot.write_bytes(b"".join(lines[:20]))
        copies = RedactedCopies(tmp_path / "redacted")
        first = _view(copies, snapshot, Counting())
        with snapshot.open("ab") as fh:
            fh.writelines(lines[20:30])
        _view(copies, snapshot, Counting())  # the copy now runs further than the first view
        temporary, is_temporary = first.upload_file()
        assert is_temporary
        checkpoint = tmp_path / "redacted" / "s1.jsonl.usage"
        write_private(checkpoint, b"{}")
        files = [path for path in (tmp_path / "redacted").rglob("*") if path.is_file()]
        assert temporary in files and checkpoint in files
        modes = {path.name: oct(path.stat().st_mode & 0o777) for path in files}
        assert set(modes.values()) == {"0o600"}, modes
    finally:
        os.umask(old)
