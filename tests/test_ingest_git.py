"""Ingest's git work (issue #10): cached per repository, and never on the database thread.

A `git` wrapper first on PATH logs every invocation (and can hold one back): the count of git
processes and what the daemon still answers while git is slow are behaviour, not timing.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Env, append_lines, make_env, make_repo, running_daemon, wait_for
from tracekeeperd import git
from tracekeeperd.ingest import Ingestor
from tracekeeperd.queue import Queue
from tracekeeperd.snapshot import Snapshots
from tracekeeperd.spool import CommitEvent

T0 = 1_800_000_000.0

#: Logs its arguments, one line per run; with TK_GIT_GATE set, a run with the argument
#: TK_GIT_GATE_ARG (default `--git-common-dir`, asked only by the daemon's ingest) waits until
#: that file exists, after saying so.
WRAPPER = """#!/bin/sh
printf '%s\\n' "$*" >> "$TK_GIT_LOG"
case " $* " in
  *" ${TK_GIT_GATE_ARG:---git-common-dir} "*)
    if [ -n "$TK_GIT_GATE" ]; then
      : > "$TK_GIT_GATE.waiting"
      n=0
      while [ ! -e "$TK_GIT_GATE" ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n + 1)); done
    fi ;;
esac
exec REAL_GIT "$@"
"""


def _wrapper(directory: Path, log: Path) -> dict[str, str]:
    """PATH and variables that put the logging wrapper in front of the real git."""
    real = shutil.which("git")
    assert real is not None
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "git"
    script.write_text(WRAPPER.replace("REAL_GIT", real))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}", "TK_GIT_LOG": str(log)}


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# --- in-process: how many git processes one commit costs ---------------------------------


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    work = tmp_path / "src" / "app"
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(work)], env=git.clean_env(), check=True)
    yield work / ".git"


def test_a_known_repository_costs_no_git_process_per_commit(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "git.log"
    for key, value in _wrapper(tmp_path / "bin", log).items():
        monkeypatch.setenv(key, value)
    queue = Queue(tmp_path / "state" / "queue.sqlite3")
    ingestor = Ingestor(queue, Snapshots(tmp_path / "state" / "snapshots"), roots=(tmp_path.resolve(),))
    transcript = tmp_path / "t.jsonl"
    try:
        on_db: list[str] = []
        for n in range(10):
            append_lines(transcript, 3, start=3 * n + 1)
            payload = {"session_id": "s1", "agent": "codex", "transcript_path": str(transcript)}
            event = CommitEvent(f"{n:040x}", repo, repo.parent, T0 + n, json.dumps(payload).encode())
            ingestor.prepare(event)  # the daemon runs this off the database thread
            before = len(_calls(log))
            result = ingestor.ingest(event, now=T0 + n)
            on_db += _calls(log)[before:]
            assert len(result.job_ids) == 1, result
    finally:
        queue.close()
    assert on_db == [], "ingest itself (the database thread) ran git"
    assert len(_calls(log)) <= 2, f"git per repository, not per commit: {_calls(log)}"


def test_a_repository_that_went_away_is_still_reported(repo: Path, tmp_path: Path) -> None:
    """The cache must not hide a repository deleted since: its commit fails as before."""
    queue = Queue(tmp_path / "state" / "queue.sqlite3")
    ingestor = Ingestor(queue, Snapshots(tmp_path / "state" / "snapshots"), roots=(tmp_path.resolve(),))
    transcript = tmp_path / "t.jsonl"
    append_lines(transcript, 3)
    payload = json.dumps({"session_id": "s1", "agent": "codex", "transcript_path": str(transcript)}).encode()
    try:
        event = CommitEvent("a" * 40, repo, repo.parent, T0, payload)
        ingestor.prepare(event)
        assert ingestor.ingest(event, now=T0).job_ids
        shutil.rmtree(repo)
        from tracekeeperd.errors import PermanentError

        with pytest.raises(PermanentError, match="not a usable git repository"):
            ingestor.ingest(CommitEvent("b" * 40, repo, repo.parent, T0 + 1, payload), now=T0 + 1)
    finally:
        queue.close()


# --- the daemon: git is slow, the database thread is not held -------------------------------


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    log = tmp_path / "git.log"
    yield from make_env(**_wrapper(tmp_path / "bin", log), TK_GIT_GATE=str(tmp_path / "gate"))


def test_status_answers_while_an_ingest_waits_for_git(env: Env, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()  # open while the daemon starts and the repository is installed
    with running_daemon(env):
        repo = make_repo(env).install()
        transcript = env.transcript()
        append_lines(transcript, 3)
        repo.activate(transcript)
        gate.unlink()
        Path(f"{gate}.waiting").unlink(missing_ok=True)
        sha = repo.commit("one")
        wait_for(Path(f"{gate}.waiting").exists, what="the daemon's ingest to ask git for the common dir")
        data = env.status()  # runs on the database thread: it must not wait for that git
        assert data["daemon"]["responding"] is True and data["error"] is None
        gate.touch()
        wait_for(lambda: "hf-trace:" in repo.note(sha), what="the note once git answers")


def test_a_commit_whose_active_file_is_read_live_asks_git_nothing_for_discovery(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook may leave the active file for the daemon to read (`active_live`): then no
    session needs discovery, and preparing must not ask git for the parent commit's time."""
    log = tmp_path / "git.log"
    for key, value in _wrapper(tmp_path / "bin", log).items():
        monkeypatch.setenv(key, value)
    queue = Queue(tmp_path / "state" / "queue.sqlite3")
    asked: list[Path] = []
    ingestor = Ingestor(
        queue,
        Snapshots(tmp_path / "state" / "snapshots"),
        roots=(tmp_path.resolve(),),
        discover=lambda work_tree, since: asked.append(work_tree) or [],
    )
    transcript = tmp_path / "t.jsonl"
    append_lines(transcript, 3)
    (repo / "hf-traces-active.json").write_text(
        json.dumps({"session_id": "s1", "agent": "codex", "transcript_path": str(transcript)})
    )
    try:
        for n in range(3):
            spool_file = tmp_path / f"{n}.commit"
            event = CommitEvent(
                f"{n:040x}", repo, repo.parent, ingestor.started_at + n, None, spool_file=spool_file, active_live=True
            )
            for _ in range(3):  # the watcher, the hook's poke and a rescan may all prepare one entry
                ingestor.prepare(event)
            assert len(ingestor.ingest(event, now=T0 + n).job_ids) == 1
    finally:
        queue.close()
    assert not [call for call in _calls(log) if call.split()[1:2] == ["log"]], _calls(log)
    assert asked == []
