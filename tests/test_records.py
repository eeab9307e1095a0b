"""Resume records (records.py): a growing session's records are written once per interval, not
once per batch, and an older record on disk is only ever a point to resume from (issue #10,
burst CPU: each write replaces a file, a journal commit on ext4).

The worker, its queue, snapshots and git repository are real (tests/workerkit.py); time is
injected into the worker and into the records table."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from tests.workerkit import NOW, transcript_lines, worker_kit
from tracekeeperd import records
from tracekeeperd.outgoing import RedactedCopies
from tracekeeperd.redact import Redactor


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(records, "RECORDS", records.Records(every=30.0, clock=lambda: now[0]))
    return now


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """File name -> how many times a record was written to it (the writes themselves happen)."""
    counted: collections.Counter[str] = collections.Counter()
    real = records.write_private

    def counting(path: Path, data: bytes) -> None:
        counted[path.name] += 1
        real(path, data)

    monkeypatch.setattr(records, "write_private", counting)
    return counted


def test_a_session_growing_through_many_batches_writes_its_record_once_per_interval(
    tmp_path: Path, clock: list[float], writes: collections.Counter[str]
) -> None:
    with worker_kit(tmp_path) as kit:
        _git_dir, shas = kit.repo("app", 6)
        snapshot = kit.snapshot("s.jsonl", 5)
        state = kit.root / "redacted" / "s.jsonl.state"
        for batch in range(5):
            with snapshot.open("ab") as fh:
                fh.write(transcript_lines(6 + 10 * batch, 15 + 10 * batch))
            kit.add("app", shas[batch], snapshot, at=NOW + batch)
            assert kit.worker.loop(now=NOW + batch + 0.5).claimed == 1
            clock[0] += 2.0  # a burst: a batch every two seconds
        assert writes[state.name] == 1, "the record was written per batch, not once per interval"
        first = json.loads(state.read_bytes())
        assert first["raw_bytes"] < snapshot.stat().st_size, "what is on disk is the first batch's"

        kit.worker.follow(86400, now=NOW + 10)  # the housekeeping turn, before the interval is up
        assert writes[state.name] == 1
        clock[0] += 30.0
        kit.worker.follow(86400, now=NOW + 40)  # once it is up: the newest record is written
        assert writes[state.name] == 2
        assert json.loads(state.read_bytes())["raw_bytes"] == snapshot.stat().st_size

        with snapshot.open("ab") as fh:
            fh.write(transcript_lines(56, 60))
        kit.add("app", shas[5], snapshot, at=NOW + 41)
        assert kit.worker.loop(now=NOW + 41.5).claimed == 1  # within the interval again: pending
        assert writes[state.name] == 2
    # The kit's exit closes the worker (the daemon's stop): everything pending is written.
    assert writes[state.name] == 3
    assert json.loads(state.read_bytes())["raw_bytes"] == snapshot.stat().st_size


def test_a_restart_with_an_older_record_redacts_the_rest_again_and_gets_the_same_copy(
    tmp_path: Path, clock: list[float], writes: collections.Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon killed with records still pending leaves an older record beside a longer copy:
    the next one cuts the copy back to what the record vouches for and redacts the rest again."""
    snapshot = tmp_path / "s.jsonl"
    token = b"hf_" + b"QxTbKwZpLmRvNcYsHdJgFaUeWiOyPtBrXq"  # the shape of a Hub token (tests/secretgen.py)
    secret = b'{"type":"message","text":"token ' + token + b'"}\n'
    snapshot.write_bytes(transcript_lines(1, 5) + secret)
    root = tmp_path / "redacted"
    copies = RedactedCopies(root)

    def view(over: RedactedCopies) -> bytes:
        data = snapshot.read_bytes()
        got = over.view(
            snapshot,
            raw_bytes=len(data),
            raw_lines=data.count(b"\n"),
            raw_sha256=None,
            lines=[],
            redactor=Redactor(),
        )
        return got.file.read_bytes()[: got.size]

    view(copies)
    for n in range(3):
        with snapshot.open("ab") as fh:
            fh.write(transcript_lines(10 + n, 10 + n) + secret)
        view(copies)
    assert writes["s.jsonl.state"] == 1, "later records are pending"

    # A new process: nothing pending, the older record on disk.
    monkeypatch.setattr(records, "RECORDS", records.Records(every=30.0, clock=lambda: clock[0]))
    restarted = view(RedactedCopies(root))
    fresh = view(RedactedCopies(tmp_path / "fresh"))
    assert restarted == fresh
    assert token not in restarted
