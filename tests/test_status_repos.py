"""`tracekeeper status` in one round trip (issue #10): with a daemon, the notes-sync state of
every known repository comes from the daemon's memory, and the CLI runs no git at all.

A `git` wrapper first on PATH logs each run into the file `TK_GIT_LOG` names; the CLI gets
its own log, so what it ran is told apart from what the daemon ran.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Env, Repo, make_env, make_repo, running_daemon
from tests.test_ingest_git import _calls, _wrapper
from tracekeeperd.queue import Queue
from tracekeeperd.repostate import NotesStates

REF = "refs/notes/hf-traces"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(**_wrapper(tmp_path / "bin", tmp_path / "daemon-git.log"))


def _status(env: Env, log: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tracekeeper", "status", "--json"],
        env={**env.vars, "TK_GIT_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=env.root,
    )
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _known(env: Env, count: int) -> tuple[list[tuple[str, str]], Repo]:
    """`count` repositories the daemon has seen (registered as ingest does), the first with a
    remote whose notes were fetched once."""
    repos = [make_repo(env, f"r{n}") for n in range(count)]
    first = repos[0]
    bare = env.root / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], env=env.vars, check=True)
    first.git("remote", "add", "origin", str(bare))
    sha = first.commit("one")
    first.git("notes", f"--ref={REF}", "add", "-m", "hf-trace: file:///x", sha)
    first.git("update-ref", f"refs/notes/remotes/origin/{REF.rsplit('/', 1)[-1]}", REF)  # as a fetch leaves it
    queue = Queue(env.state / "queue.sqlite3")
    known = []
    for n, repo in enumerate(repos):
        common = str(repo.path / ".git")
        queue.add_repo(common, f"r{n}-0000000{n % 10}", str(repo.path))
        known.append((common, str(repo.path)))
    queue.close()
    return known, first


def test_status_with_many_repositories_runs_no_git_in_the_cli(env: Env, tmp_path: Path) -> None:
    known, first = _known(env, 12)
    cli_log = tmp_path / "cli-git.log"
    with running_daemon(env):
        data = _status(env, cli_log)
        assert data["daemon"]["running"] is True
        assert _calls(cli_log) == [], "the CLI ran git although the daemon answered"
        assert [r["repo"] for r in data["repos"]] == [display for _, display in known]
        offline = NotesStates(REF).view(known)  # what the CLI computes when no daemon runs
        assert data["repos"] == offline
        [origin] = data["repos"][0]["remotes"]
        assert origin["remote"] == "origin" and origin["unpushed"] == 0

        # A note written in the repository moves the ref: the next answer knows.
        sha = first.commit("two")
        first.git("notes", f"--ref={REF}", "add", "-m", "hf-trace: file:///y", sha)
        data = _status(env, cli_log)
        assert data["repos"][0]["remotes"][0]["unpushed"] == 1
        assert _calls(cli_log) == []


def test_repositories_unchanged_since_are_not_asked_again(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known, _ = _known(env, 3)
    log = tmp_path / "in-process-git.log"
    for key, value in {**env.vars, "TK_GIT_LOG": str(log)}.items():
        monkeypatch.setenv(key, value)  # this process's git goes through the wrapper too
    states = NotesStates(REF)
    first = states.view(known)
    runs = len(_calls(log))
    assert runs > 0
    assert states.view(known) == first
    assert len(_calls(log)) == runs, "no git for repositories whose refs did not move"
    shutil.rmtree(known[1][0].removesuffix("/.git"))
    assert [r["repo"] for r in states.view(known)] == [known[0][1], known[2][1]], "a deleted one is left out"


def test_a_slow_repository_does_not_hold_the_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon answers `status` within its wait even while git is slow for a repository; the
    repository is `pending` until its state is known, then shown as computed."""
    work = tmp_path / "app"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    gate = tmp_path / "gate"
    env = {**_wrapper(tmp_path / "bin", tmp_path / "git.log"), "TK_GIT_GATE": str(gate), "TK_GIT_GATE_ARG": "remote"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    known = [(str(work / ".git"), str(work))]
    states = NotesStates(REF)
    assert states.view(known, wait=0.2) == [{"repo": str(work), "remotes": [], "pending": True}]
    gate.touch()
    assert states.view(known) == [{"repo": str(work), "remotes": []}]
