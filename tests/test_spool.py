"""Unit tests for `tracekeeperd.spool`: the file format the shell hook writes and the daemon reads."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tracekeeperd import spool
from tracekeeperd.spool import MAGIC, SUFFIX, CommitEvent, SpoolError, parse, pending, quarantine, read, write

SHA = "0123456789abcdef0123456789abcdef01234567"
AT = 1_800_000_000.0


def _event(**kw: object) -> CommitEvent:
    fields: dict[str, object] = {
        "sha": SHA,
        "git_dir": Path("/src/app/.git"),
        "work_tree": Path("/src/app"),
        "committed_at": AT,
        "active": b'{"transcript_path": "/t.jsonl"}\n--\nnot a separator for us\n',
    }
    fields.update(kw)
    return CommitEvent(**fields)  # type: ignore[arg-type]


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    event = _event()
    path = write(spool_dir, event)
    assert path.parent == spool_dir and path.name.endswith(SUFFIX)
    assert (spool_dir.stat().st_mode & 0o777) == 0o700
    got = read(path, now=AT + 3600)  # not young: a young one with a non-JSON payload waits
    assert got == _event(spool_file=path)
    assert got.committed_at == AT, "the file's mtime is the commit time"
    assert not list(spool_dir.glob("*.tmp")), "the temp file was renamed away"


@pytest.mark.parametrize(
    "event",
    [
        _event(active=None),
        _event(active=b""),
        _event(work_tree=None),
        _event(sha="ab" * 32),  # SHA-256 repositories
        _event(git_dir=Path("/path with spaces/.git")),
    ],
)
def test_round_trip_variants(tmp_path: Path, event: CommitEvent) -> None:
    path = write(tmp_path, event)
    got = read(path, now=AT + 3600)
    assert (got.sha, got.git_dir, got.work_tree, got.active) == (
        event.sha,
        event.git_dir,
        event.work_tree,
        event.active,
    )


def test_reads_what_the_shell_hook_writes(tmp_path: Path) -> None:
    """The same bytes the POSIX hook's printf produces, including an empty work tree (bare repo)."""
    target = tmp_path / f"{SHA}.123{SUFFIX}"
    script = (
        "printf 'tracekeeper-spool 1\\nsha %s\\ngit-dir %s\\nwork-tree %s\\nactive %s\\n--\\n' "
        f"{SHA} /src/bare.git '' present > {target}; printf '{{\"a\": 1}}' >> {target}"
    )
    subprocess.run(["sh", "-c", script], check=True)
    os.utime(target, (AT, AT))
    got = read(target)
    assert (got.sha, got.git_dir, got.work_tree, got.active, got.committed_at) == (
        SHA,
        Path("/src/bare.git"),
        None,
        b'{"a": 1}',
        AT,
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (MAGIC + b"\nsha " + SHA.encode() + b"\ngit-dir /g\n", "separator"),
        (b"something else 1\nsha " + SHA.encode() + b"\ngit-dir /g\n--\n", "not a tracekeeper spool file"),
        (MAGIC + b"\nsha nothex\ngit-dir /g\n--\n", "bad commit sha"),
        (MAGIC + b"\nsha " + SHA[:-1].encode() + b"\ngit-dir /g\n--\n", "bad commit sha"),
        (MAGIC + b"\ngit-dir /g\n--\n", "bad commit sha"),
        (MAGIC + b"\nsha " + SHA.encode() + b"\ngit-dir relative/.git\n--\n", "not an absolute path"),
        (MAGIC + b"\nsha " + SHA.encode() + b"\n--\n", "not an absolute path"),
        (b"", "separator"),
    ],
)
def test_malformed_spool_files(data: bytes, fragment: str) -> None:
    with pytest.raises(SpoolError, match=fragment):
        parse(data, mtime=AT)


def test_uppercase_sha_is_normalised() -> None:
    data = MAGIC + b"\nsha " + SHA.upper().encode() + b"\ngit-dir /g\nactive absent\n--\n"
    assert parse(data, mtime=AT).sha == SHA


def test_an_oversized_copied_active_file_is_read_only_far_enough_to_refuse_it(tmp_path: Path) -> None:
    """The commit itself is fine: its active file becomes a failed job saying it is too large."""
    from tracekeeperd.active import MAX_BYTES

    path = tmp_path / f"big{SUFFIX}"
    path.write_bytes(MAGIC + b"\nsha " + SHA.encode() + b"\ngit-dir /g\nactive present\n--\n" + b"x" * (9 << 20))
    for now in (None, time.time() + 3600):  # young (the hook may still be copying) or not
        event = read(path, now=now)
        assert event.sha == SHA
        assert event.active is not None and MAX_BYTES < len(event.active) <= spool.MAX_COMMIT_FILE


def test_an_oversized_rewrite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / f"big{spool.REWRITE_SUFFIX}"
    path.write_bytes(spool.REWRITE_MAGIC + b"\ngit-dir /g\n--\n" + b"x" * (17 << 20))
    with pytest.raises(SpoolError, match="larger than 16 MiB"):
        spool.read_rewrite(path, now=time.time() + 3600)


def test_a_path_with_a_nul_is_refused() -> None:
    data = MAGIC + b"\nsha " + SHA.encode() + b"\ngit-dir /g\0x\nactive absent\n--\n"
    with pytest.raises(SpoolError, match="NUL"):
        parse(data, mtime=AT)


def test_a_young_file_with_a_deep_copied_active_file_is_handed_on(tmp_path: Path) -> None:
    path = write(tmp_path, _event(active=b"[" * 100_000 + b"]" * 100_000, committed_at=time.time()))
    assert read(path).active is not None  # not left waiting "until complete" forever


def test_dead_letters_are_listed_revived_and_discarded(tmp_path: Path) -> None:
    first = write(tmp_path, _event(sha="a" * 40, committed_at=AT))
    second = write(tmp_path, _event(sha="b" * 40, committed_at=AT + 10))
    quarantine(first, "could not be ingested\nafter 5 tries")
    quarantine(second, "bad commit sha")
    assert spool.dead_letters(tmp_path) == [tmp_path / "bad" / second.name, tmp_path / "bad" / first.name]
    assert spool.dead_letter_reason(tmp_path / "bad" / first.name) == "could not be ingested after 5 tries"
    assert spool.revive(tmp_path) == [second.name, first.name]
    assert pending(tmp_path) == [first, second] and spool.dead_letters(tmp_path) == []
    assert not list((tmp_path / "bad").iterdir()), "the reasons go with them"
    quarantine(first, "again")
    assert spool.discard_dead_letters(tmp_path) == 1
    assert not list((tmp_path / "bad").iterdir())


def test_pending_ignores_tmp_files_and_sorts_oldest_first(tmp_path: Path) -> None:
    assert pending(tmp_path / "missing") == []
    newer = write(tmp_path, _event(sha="b" * 40, committed_at=AT + 10))
    older = write(tmp_path, _event(sha="a" * 40, committed_at=AT))
    (tmp_path / f"{'c' * 40}.99{SUFFIX}.tmp").write_bytes(b"half written")
    (tmp_path / "README").write_text("not ours")
    (tmp_path / "bad").mkdir()
    assert pending(tmp_path) == [older, newer]


def test_quarantine_moves_aside_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / f"{SHA}.1{SUFFIX}"
    path.write_bytes(b"garbage")
    moved = quarantine(path, "not a tracekeeper spool file")
    assert moved == tmp_path / "bad" / path.name
    assert not path.exists()
    assert moved.read_bytes() == b"garbage", "kept for a human, never silently dropped"
    assert (tmp_path / "bad" / (path.name + ".reason")).read_text() == "not a tracekeeper spool file\n"
    assert pending(tmp_path) == [], "a quarantined file is not picked up again"


def test_a_young_file_with_a_half_copied_active_file_is_left_for_later(tmp_path: Path) -> None:
    """The hook's `cat` may still be writing when a scan looks: not a broken active file yet."""
    path = tmp_path / ("a" * 40 + ".1.commit")
    path.write_bytes(
        b"tracekeeper-spool 1\nsha " + b"a" * 40 + b'\ngit-dir /r/.git\nwork-tree /r\nactive present\n--\n{"ses'
    )
    with pytest.raises(spool.SpoolIncomplete):
        spool.read(path)
    old = time.time() - 3600
    os.utime(path, (old, old))
    event = spool.read(path)  # no longer young: handed on, and the broken active file is reported
    assert event.active == b'{"ses'


def test_the_spool_scan_lists_the_directory_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spool left to grow while the daemon was down holds many entries: listing and stat-ing
    them must happen on the database thread, never on the loop that serves the socket."""
    import asyncio
    import threading

    from tracekeeperd.intake import SpoolIntake
    from tracekeeperd.worker import DbThread

    listed_on: list[str] = []
    real_pending = spool.pending

    def recording_pending(spool_dir: Path) -> list[Path]:
        listed_on.append(threading.current_thread().name)
        return real_pending(spool_dir)

    monkeypatch.setattr(spool, "pending", recording_pending)
    db = DbThread()
    intake = SpoolIntake(tmp_path, None, db=db.executor, after=lambda _: None, marker=tmp_path / "m")  # type: ignore[arg-type]
    try:
        assert asyncio.run(intake.drain()) == 0
    finally:
        db.shutdown()
    assert listed_on and all(name.startswith("tracekeeper-db") for name in listed_on)


def test_spool_watcher_hears_only_what_it_acts_on(tmp_path: Path) -> None:
    """The spool watcher acts on close-after-write and on renames; every other event is work in
    watchdog's threads (read, group, queue, dispatch) for nothing. A burst spools one file per
    commit, and the daemon itself opens, reads and deletes each file twice over: those must not
    come back to it as events. A real watchdog observer on a real directory; only `take` (the
    ingest behind the watcher) records instead of ingesting."""
    import asyncio

    from tracekeeperd.intake import SpoolIntake

    async def main() -> tuple[list[str], int]:
        taken: list[str] = []
        spool_dir = tmp_path / "spool"
        spool_dir.mkdir()
        intake = SpoolIntake(spool_dir, None, db=None, after=lambda _: None, marker=tmp_path / "m")  # type: ignore[arg-type]

        def arrived(path: Path, _loop: object) -> None:
            taken.append(path.name)

        intake.arrived = arrived  # type: ignore[method-assign]
        intake.start_watcher()

        async def until_taken(name: str) -> None:
            for _ in range(500):
                if name in taken:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"{name} was never taken: {taken}")

        try:
            first = spool_dir / f"a.1{SUFFIX}"
            first.write_bytes(b"tracekeeper-spool 1\n")  # written in place, as the hook does
            await until_taken(first.name)
            for _ in range(2):  # what the daemon does with it: prepare, ingest, delete
                first.read_bytes()
            first.unlink()
            (spool_dir / f"b.1{SUFFIX}").write_bytes(b"tracekeeper-spool 1\n")
            await until_taken(f"b.1{SUFFIX}")
            (spool_dir / "c.tmp").write_bytes(b"tracekeeper-spool 1\n")
            (spool_dir / "c.tmp").rename(spool_dir / f"c.1{SUFFIX}")
            await until_taken(f"c.1{SUFFIX}")
        finally:
            await intake.stop()
        return taken, intake.watch_events

    taken, events = asyncio.run(main())
    assert taken == [f"a.1{SUFFIX}", f"b.1{SUFFIX}", f"c.1{SUFFIX}"]
    # a, b: one close-after-write each; c: its close as c.tmp, then the rename.
    assert events == 4


def test_a_spool_file_is_read_once_per_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool thread reads the entry to ask git ahead (`Ingestor.prepare`); the database
    thread, the daemon's one serial lane, must not open and parse it a second time. Real
    Ingestor, queue, snapshots and git repository; the read is counted, not replaced."""
    import asyncio
    from typing import Any

    from tracekeeperd import git
    from tracekeeperd.ingest import Ingestor
    from tracekeeperd.intake import SpoolIntake
    from tracekeeperd.queue import Queue
    from tracekeeperd.snapshot import Snapshots
    from tracekeeperd.worker import DbThread

    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    work = tmp_path / "src" / "app"
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(work)], env=git.clean_env(), check=True)
    reads: list[str] = []
    real_load = spool._load

    def counting_load(path: Path, *args: Any, **kwargs: Any) -> Any:
        reads.append(path.name)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(spool, "_load", counting_load)
    queue = Queue(tmp_path / "state" / "queue.sqlite3")
    db = DbThread()
    ingestor = Ingestor(queue, Snapshots(tmp_path / "state" / "snapshots"), roots=(tmp_path.resolve(),))

    spool_dir = tmp_path / "spool"
    results = []
    intake = SpoolIntake(spool_dir, ingestor, db=db.executor, after=results.append, marker=tmp_path / "m")
    event = CommitEvent(sha="a" * 40, git_dir=work / ".git", work_tree=work, committed_at=time.time(), active=None)
    path = write(spool_dir, event)
    try:
        result = asyncio.run(intake.ingest_file(path))
    finally:
        db.shutdown()
        queue.close()
    assert result.note == "no active agent session" and results == [result]
    assert not path.exists(), "taken: deleted once persisted"
    assert reads == [path.name]


def test_the_watcher_hands_a_spool_file_to_the_database_thread_without_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit of a burst used to cross the event loop three times (the watcher's task, the
    pool thread's read and back, the database thread and back). The watcher's own thread is
    already off the loop: it reads the entry, the database thread persists it, and the loop
    only hears the result. A real watchdog observer, a real Ingestor, queue and repository;
    where each step runs is recorded, nothing is replaced."""
    import asyncio
    import threading
    from typing import Any

    from tracekeeperd import git
    from tracekeeperd.ingest import Ingestor, IngestResult
    from tracekeeperd.intake import SpoolIntake
    from tracekeeperd.queue import Queue
    from tracekeeperd.snapshot import Snapshots
    from tracekeeperd.worker import DbThread

    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    work = tmp_path / "src" / "app"
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(work)], env=git.clean_env(), check=True)
    where: dict[str, list[str]] = {"read": [], "ingest": [], "after": []}
    real_load, real_ingest = spool._load, Ingestor.ingest

    def load(path: Path, *args: Any, **kwargs: Any) -> Any:
        where["read"].append(threading.current_thread().name)
        return real_load(path, *args, **kwargs)

    def ingest(self: Ingestor, *args: Any, **kwargs: Any) -> IngestResult:
        where["ingest"].append(threading.current_thread().name)
        return real_ingest(self, *args, **kwargs)

    monkeypatch.setattr(spool, "_load", load)
    monkeypatch.setattr(Ingestor, "ingest", ingest)
    queue = Queue(tmp_path / "state" / "queue.sqlite3")
    db = DbThread()
    ingestor = Ingestor(queue, Snapshots(tmp_path / "state" / "snapshots"), roots=(tmp_path.resolve(),))
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    loop_thread: list[str] = []

    async def main() -> list[IngestResult]:
        loop_thread.append(threading.current_thread().name)
        results: list[IngestResult] = []
        done = asyncio.Event()

        def after(result: IngestResult) -> None:
            where["after"].append(threading.current_thread().name)
            results.append(result)
            done.set()

        intake = SpoolIntake(spool_dir, ingestor, db=db.executor, after=after, marker=tmp_path / "m")
        intake.start_watcher()
        try:
            now = time.time()
            event = CommitEvent(sha="a" * 40, git_dir=work / ".git", work_tree=work, committed_at=now, active=None)
            write(spool_dir, event)  # as the hook does: a temp file renamed into the spool
            await asyncio.wait_for(done.wait(), timeout=30)
        finally:
            await intake.stop()
        return results

    try:
        results = asyncio.run(main())
    finally:
        db.shutdown()
        queue.close()
    assert [r.note for r in results] == ["no active agent session"]
    assert pending(spool_dir) == [], "taken: deleted once persisted"
    assert len(where["read"]) == 1, where
    assert not where["read"][0].startswith(("asyncio", loop_thread[0])), f"read on {where['read'][0]}"
    assert where["ingest"] == [where["ingest"][0]] and where["ingest"][0].startswith("tracekeeper-db"), where
    assert where["after"] == loop_thread, "the result comes back to the loop, once"


def test_a_spool_file_the_watcher_is_reading_when_the_daemon_stops_is_ingested_and_handed_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool file the watcher is handling when the daemon stops: watchdog's dispatch thread is
    inside `arrived` (reading ahead, asking git). Ending the observer waits for that handler
    (watchdog runs handlers under the lock its stop takes), so `stop` must wait off the loop,
    and then for the arrival to be persisted and handed back (`after`) before the daemon
    closes the I/O thread `after` hands note copies to, and the database. It used to end the
    observer on the loop: the loop stood still until the handler finished, up to a git
    timeout, and the result came back whenever. Real watchdog observer, queue, Ingestor and
    repository; only `prepare` is held at a gate that the loop itself opens."""
    import asyncio
    import threading

    from tracekeeperd import git
    from tracekeeperd.ingest import Ingestor, IngestResult
    from tracekeeperd.intake import SpoolIntake
    from tracekeeperd.queue import Queue
    from tracekeeperd.snapshot import Snapshots
    from tracekeeperd.worker import DbThread

    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    work = tmp_path / "src" / "app"
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(work)], env=git.clean_env(), check=True)
    entered, gate = threading.Event(), threading.Event()
    real_prepare = Ingestor.prepare

    released: list[bool] = []

    def held(self: Ingestor, event: object) -> None:
        entered.set()
        released.append(gate.wait(30))  # False: the loop never got to open it
        real_prepare(self, event)  # type: ignore[arg-type]

    monkeypatch.setattr(Ingestor, "prepare", held)
    queue = Queue(tmp_path / "state" / "queue.sqlite3")
    db = DbThread()
    ingestor = Ingestor(queue, Snapshots(tmp_path / "state" / "snapshots"), roots=(tmp_path.resolve(),))
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()

    async def main() -> list[IngestResult]:
        results: list[IngestResult] = []
        intake = SpoolIntake(spool_dir, ingestor, db=db.executor, after=results.append, marker=tmp_path / "m")
        intake.start_watcher()
        event = CommitEvent(sha="a" * 40, git_dir=work / ".git", work_tree=work, committed_at=time.time(), active=None)
        write(spool_dir, event)
        assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 30)
        # The dispatch thread is inside `arrived`, past its stop check; the gate opens as soon as
        # the loop runs again, which it must while the watcher ends.
        asyncio.get_running_loop().call_soon(gate.set)
        await intake.stop()
        return results

    try:
        results = asyncio.run(main())
    finally:
        gate.set()
        db.shutdown()
        queue.close()
    assert released == [True], "the loop stood still while the watcher ended"
    assert [r.note for r in results] == ["no active agent session"], "handed back before stop returned"
    assert pending(spool_dir) == [], "taken: deleted once persisted"
