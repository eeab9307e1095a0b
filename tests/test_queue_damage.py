"""A damaged queue database is reported (with JSON for scripts), and one deleted under the running
daemon is written back from the daemon's live connection. Real SQLite files, damaged for real."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .harness import Env, append_lines, daemon_once, make_repo, running_daemon, wait_for


def _queue_with_jobs(env: Env) -> str:
    """A queue holding one done and one failed job, made by the real daemon; returns the done commit."""
    good = make_repo(env, "good").install()
    transcript = env.transcript()
    append_lines(transcript, 2)
    good.activate(transcript)
    broken = make_repo(env, "broken").install()
    broken.activate(transcript).write_text("{")
    with running_daemon(env):
        sha = good.commit("x")
        broken.commit("y")
        wait_for(lambda: env.status()["queue"] == {"pending": 0, "uploading": 0, "done": 1, "failed": 1})
    return sha


def _page_of(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    return int((root - 1) * size)


def _damage(db: Path, where: str) -> None:
    with db.open("r+b") as fh:
        if where == "header":
            fh.write(b"this is no longer a database")  # "file is not a database"
        else:
            fh.seek(_page_of(db, "jobs"))  # the jobs table's root page: "database disk image is malformed"
            fh.write(b"\xde\xad" * 2048)


@pytest.mark.parametrize("where", ["header", "jobs-page"])
def test_a_damaged_queue_is_reported_as_json_and_refused_by_the_daemon(env: Env, where: str) -> None:
    _queue_with_jobs(env)
    db = env.state / "queue.sqlite3"
    _damage(db, where)
    proc = env.cli("status", "--json", check=False)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["daemon"]["running"] is False
    assert data["error"].startswith(f"the queue {db} is damaged (")
    assert proc.stderr == f"Error: {data['error']}\n"
    human = env.cli("status", check=False)
    assert human.returncode == 1 and "tracekeeperd is not running" in human.stdout
    assert human.stderr == f"Error: {data['error']}\n"
    refused = daemon_once(env)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"tracekeeperd: error: the queue {db} is damaged (")
    assert refused.stderr.count("\n") == 1


def test_a_queue_damaged_under_the_running_daemon_is_reported_as_json(env: Env) -> None:
    _queue_with_jobs(env)
    db = env.state / "queue.sqlite3"
    with running_daemon(env) as daemon:
        with sqlite3.connect(db) as other:
            # Everything into the main file, then a write, so the daemon drops its page cache
            # and reads the (then damaged) page from disk, as after a disk fault.
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            other.execute("PRAGMA user_version = 7")
        other.close()
        _damage(db, "jobs-page")
        proc = env.cli("status", "--json", check=False)
        assert proc.returncode == 1, proc.stderr
        data = json.loads(proc.stdout)
        assert data["daemon"]["running"] is True and data["daemon"]["pid"] == daemon.proc.pid  # type: ignore[union-attr]
        assert data["error"].startswith(f"the queue {db} is damaged (database disk image is malformed)")
        assert proc.stderr == f"Error: {data['error']}\n"
        doctor = {c["name"]: c for c in json.loads(env.cli("doctor", "--json", check=False).stdout)["checks"]}
        assert doctor["queue"]["status"] == "fail" and doctor["queue"]["message"] == data["error"]


def test_a_queue_deleted_under_the_running_daemon_is_written_back(env: Env) -> None:
    sha = _queue_with_jobs(env)
    db = env.state / "queue.sqlite3"
    repo = make_repo(env, "later").install()
    repo.activate(env.transcript())
    with running_daemon(env) as daemon:
        for path in db.parent.glob("queue.sqlite3*"):
            path.unlink()  # `rm queue.sqlite3*`, or a cleaner that wiped the state directory's files
        wait_for(db.exists, what="the queue written back")
        later = repo.commit("after the deletion")
        wait_for(lambda: repo.note(later), what="the note of a commit made after it")
        assert "written back" in daemon.output()
    with running_daemon(env):  # what was queued survives the restart
        data = env.status("--all")
    assert data["queue"] == {"pending": 0, "uploading": 0, "done": 2, "failed": 1}
    assert {job["commit"] for job in data["jobs"] if job["state"] == "done"} == {sha, later}
    assert sorted(p.name for p in db.parent.glob("queue.sqlite3*")) == ["queue.sqlite3"]


def test_a_queue_replaced_under_the_running_daemon_is_kept_aside_and_the_live_one_written_back(env: Env) -> None:
    sha = _queue_with_jobs(env)
    db = env.state / "queue.sqlite3"
    with running_daemon(env) as daemon:
        other = db.with_name("other.sqlite3")
        with sqlite3.connect(other) as conn:
            conn.execute("CREATE TABLE restored (x)")
        conn.close()
        other.replace(db)  # someone put another copy in its place
        (aside,) = wait_for(lambda: list(db.parent.glob("queue.sqlite3.replaced-*")), what="the other copy aside")
        # The file is set aside before the daemon logs why: wait for the line, not just the file.
        wait_for(lambda: "was replaced" in daemon.output(), what="the daemon saying the queue was replaced")
        data = env.status("--all")
    assert {job["commit"] for job in data["jobs"] if job["state"] == "done"} == {sha}
    with sqlite3.connect(aside) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("restored",)]
    conn.close()
