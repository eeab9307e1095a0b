"""Daemon memory does not depend on transcript size, and a growing session stays fully redacted.

The real daemon as its own process over its socket, real git, the local store. Memory is the
daemon's peak resident set (VmHWM in /proc/<pid>/status, Linux), read once the note is written.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .harness import Env, make_repo, note_links, running_daemon, wait_for
from .secretgen import corpus, write_transcript

MiB = 1 << 20
#: Far below the 200 MB transcript; the daemon itself (Python, aiohttp, huggingface_hub) is ~60 MiB.
PEAK_BOUND = 140 * MiB


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _sha256_file(path: Path) -> tuple[int, str]:
    hasher, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(MiB):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def test_a_200_mb_transcript_is_redacted_and_uploaded_in_bounded_memory(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript()
    _, secrets = write_transcript(transcript, 200 * MiB)
    with transcript.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(MiB), b""))
    assert secrets > 1000
    repo.activate(transcript)
    with running_daemon(env) as daemon:
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), timeout=600, what="the note of a 200 MB session")
        assert daemon.proc is not None
        peak = _peak_rss(daemon.proc.pid)
    print(f"daemon peak RSS: {peak / MiB:.0f} MiB")
    assert peak < PEAK_BOUND, f"daemon peak RSS {peak / MiB:.0f} MiB for a 200 MB transcript"
    (meta,) = note_links(note)
    stored = env.stored(meta["url"])
    assert (meta["bytes"], meta["sha256"]) == _sha256_file(stored)
    assert meta["lines"] == [1, lines]
    assert sum(meta["redacted"]["counts"].values()) >= secrets


def test_a_private_key_written_across_two_commits_is_removed_from_the_upload(env: Env) -> None:
    """A key pasted over plain-text lines, its body still being written at the first commit.

    The second upload redacts only the lines added since the first; whether a line belongs
    to a key must carry over from the first part, as it does when the file is redacted whole.
    """
    body = [f"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW{i:02d}" for i in range(8)]
    repo = make_repo(env).install()
    transcript = env.transcript()
    head = '{"type": "session_meta"}\n-----BEGIN OPENSSH PRIVATE KEY-----\n'
    transcript.write_text(head + "\n".join(body[:4]) + "\n")
    repo.activate(transcript)
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="the first note")
        with transcript.open("a") as fh:
            fh.write("\n".join(body[4:]) + "\n-----END OPENSSH PRIVATE KEY-----\n")
        second = repo.commit("second")
        note = wait_for(lambda: repo.note(second), what="the second note")
    (meta,) = note_links(note)
    stored = env.stored(meta["url"]).read_text()
    for line in body:
        assert line not in stored
    assert stored.count("\n") == transcript.read_text().count("\n")


def test_a_restarted_daemon_redacts_only_what_the_session_added(env: Env) -> None:
    """The redacted copy and its offset survive a restart: the next commit redacts the new lines."""
    planted = corpus(rounds=1)
    half = len(planted.lines) // 2
    repo = make_repo(env).install()
    transcript = env.transcript()
    transcript.write_bytes(b"".join(planted.lines[:half]))
    repo.activate(transcript)
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="the first note")
    before = transcript.stat().st_size
    with transcript.open("ab") as fh:
        fh.write(b"".join(planted.lines[half:]))
    with running_daemon(env) as daemon:
        second = repo.commit("second")
        note = wait_for(lambda: repo.note(second), what="the note after a restart")
        log = daemon.output()
    redacted = [int(m) for m in re.findall(r"redacted (\d+) new bytes of ", log)]
    assert redacted == [transcript.stat().st_size - before], log[-3000:]
    (meta,) = note_links(note)
    stored = env.stored(meta["url"])
    assert (meta["bytes"], meta["sha256"]) == _sha256_file(stored)
    data = stored.read_bytes()
    for secret in planted.planted:
        assert secret.secret.encode() not in data, secret.kind
    assert data.count(b"\n") == transcript.read_bytes().count(b"\n")
