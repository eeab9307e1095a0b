"""`tracekeeper status` in one round trip (issue #10): with a daemon, the notes-sync state of
every known repository comes from the daemon's memory, kept current off the request path (its
own writes, a background pass over the refs), and the CLI runs no git at all. Only repositories
with something to say are listed; the rest is a count.

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

from tests.harness import Env, Repo, make_env, make_repo, running_daemon, wait_for
from tests.test_ingest_git import _calls, _wrapper
from tracekeeperd import notesync, repostate
from tracekeeperd.queue import Queue
from tracekeeperd.repostate import NotesStates, summarise

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
        # Nothing to say for any of them (the first has pushed all its notes): a count, no list.
        assert data["repos"] == [] and data["repos_quiet"] == 12
        offline = NotesStates(REF).view(known)  # what the CLI computes when no daemon runs
        assert summarise(offline) == ([], 12)
        [origin] = offline[0]["remotes"]
        assert origin["remote"] == "origin" and origin["unpushed"] == 0

        # A note written by hand in the repository moves the ref: the daemon's background pass
        # finds it (no request looks), and from then on the repository is listed.
        sha = first.commit("two")
        first.git("notes", f"--ref={REF}", "add", "-m", "hf-trace: file:///y", sha)
        data = wait_for(lambda: (d := _status(env, cli_log))["repos"] and d, what="the sweep to see the note")
        [entry] = data["repos"]
        assert entry["repo"] == str(first.path) and entry["remotes"][0]["unpushed"] == 1
        assert data["repos_quiet"] == 11
        assert data["repos"] == summarise(NotesStates(REF).view(known))[0], "the same fields as without a daemon"
        assert _calls(cli_log) == []
        text = subprocess.run(
            [sys.executable, "-m", "tracekeeper", "status"],
            env=env.vars,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=env.root,
        ).stdout
        assert f"notes   1 not pushed to origin from {first.path}" in text
        assert "repos   11 other repositories with nothing to push" in text


def _counting_stats(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the files `repostate` stats (its one way of looking at a repository)."""
    looked = [0]
    real = repostate._stamp

    def counted(paths: tuple[str, ...]) -> repostate.Stamp:
        looked[0] += len(paths)
        return real(paths)

    monkeypatch.setattr(repostate, "_stamp", counted)
    return looked


def _in_process_git(env: Env, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**env.vars, "TK_GIT_LOG": str(log)}.items():
        monkeypatch.setenv(key, value)  # this process's git goes through the wrapper too


def test_an_answer_looks_at_no_repository_and_the_sweep_finds_changes(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's `status` answers from memory: no `stat`, no git per known repository; a
    change made outside the daemon is found by the background pass (`sweep`), not by a request."""
    known, first = _known(env, 3)
    log = tmp_path / "in-process-git.log"
    _in_process_git(env, log, monkeypatch)
    states = NotesStates(REF)
    before = states.view(known)  # as the daemon does when it starts
    looked, runs = _counting_stats(monkeypatch), len(_calls(log))
    assert states.answer(known) == before
    assert looked[0] == 0 and len(_calls(log)) == runs, "a request looked at the repositories"

    sha = first.commit("two")
    first.git("notes", f"--ref={REF}", "add", "-m", "hf-trace: file:///y", sha)
    assert states.answer(known) == before, "a request does not look, so it does not see it yet"
    assert states.sweep(known) == 1, "the sweep recomputes the one repository that changed"
    assert looked[0] > 0
    after = states.answer(known)  # waits for the recomputation in flight
    assert after[0]["remotes"][0]["unpushed"] == 1 and after[1:] == before[1:]
    assert summarise(after) == ([after[0]], 2)
    runs = len(_calls(log))
    assert states.sweep(known) == 0 and len(_calls(log)) == runs, "nothing changed: no git"

    shutil.rmtree(known[1][0].removesuffix("/.git"))
    states.sweep(known)
    assert [r["repo"] for r in states.answer(known)] == [known[0][1], known[2][1]], "a deleted one is left out"


def test_the_daemons_own_write_is_taken_in_at_once(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker tells the states of each repository it wrote notes in (`touch`, given the
    git dir as jobs carry it, a linked worktree's too): the next answer has it, no sweep needed."""
    known, first = _known(env, 2)
    _in_process_git(env, tmp_path / "git.log", monkeypatch)
    states = NotesStates(REF)
    before = states.view(known)
    worktree = tmp_path / "linked"
    first.git("worktree", "add", "-q", str(worktree))
    linked_git_dir = subprocess.run(
        ["git", "rev-parse", "--absolute-git-dir"],
        check=True,
        cwd=worktree,
        env=env.vars,
        capture_output=True,
        text=True,
    ).stdout.strip()
    sha = first.commit("two")
    first.git("notes", f"--ref={REF}", "add", "-m", "hf-trace: file:///y", sha)
    looked: list[str] = []
    real = repostate._stamp

    def recorded(paths: tuple[str, ...]) -> repostate.Stamp:
        looked.extend(paths)
        return real(paths)

    monkeypatch.setattr(repostate, "_stamp", recorded)
    states.touch(linked_git_dir)
    after = states.answer(known)
    assert after[0]["remotes"][0]["unpushed"] == 1 and after[1] == before[1]
    watched = set(repostate._watched(known[0][0], REF, ["origin"]))
    assert looked and set(looked) == watched, "only the written one looked at"


def test_repositories_unchanged_since_are_not_asked_again(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known, _ = _known(env, 3)
    log = tmp_path / "in-process-git.log"
    _in_process_git(env, log, monkeypatch)
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


def test_closing_waits_for_running_git_and_refuses_new_work(env: Env, tmp_path: Path) -> None:
    """The daemon's stop closes the states: no git still running on the pool after the daemon
    says it stopped (and released its lock), and a late `touch` or `sweep` starts nothing."""
    import threading

    known, first = _known(env, 2)
    states = NotesStates(REF)
    states.view(known)
    for common, _display in known:
        states.touch(common)  # two computations in flight
    states.close()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("tracekeeper-notes-state")]
    assert alive == [], f"pool threads outlive close: {alive}"
    first.git("notes", f"--ref={REF}", "add", "-m", "hf-trace: file:///y", first.commit("two"))
    assert states.sweep(known) == 0, "a closed NotesStates starts no computation"
    states.touch(known[1][0])  # the worker's last write, after stop: no error
    assert [r["repo"] for r in states.answer(known)] == [known[0][1], known[1][1]]


def test_recomputing_a_known_repository_does_not_look_for_it_again(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon recomputes a repository's state after each notes write (a burst: once per
    repository per batch). Its git dir and directory are known (the queue's record), so git is
    not asked to find them again: only the reads of the state itself run."""
    known, first = _known(env, 2)
    log = tmp_path / "in-process-git.log"
    _in_process_git(env, log, monkeypatch)
    states = NotesStates(REF)
    try:
        before = states.view(known)
        first.git("notes", f"--ref={REF}", "add", "-m", "hf-trace: file:///y", first.commit("two"))
        log.write_text("")
        for common, _ in known:
            states.touch(common)
        assert wait_for(lambda: len(states._running) == 0, timeout=30)
        after = states.view(known)
    finally:
        states.close()
    assert after[0]["remotes"][0]["unpushed"] == before[0]["remotes"][0]["unpushed"] + 1
    assert after[1] == before[1]
    asked = _calls(log)
    assert asked, "the touched repositories were computed again"
    finding = [c for c in asked if "--show-toplevel" in c or "--absolute-git-dir" in c or "--git-common-dir" in c]
    assert finding == [], finding


def test_a_burst_of_own_writes_computes_a_repositorys_state_once_per_settle_and_takes_in_the_last(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a burst the worker writes each repository's notes once per batch, seconds apart; with a
    remote each computation is a handful of git processes. The first write is taken in at once,
    later ones within `settle` are computed once when due (the sweep starts it), and the answer
    then has every write. Time is injected."""
    known, first = _known(env, 2)
    _in_process_git(env, tmp_path / "git.log", monkeypatch)
    computed: list[str] = []
    real = notesync.notes_status

    def counting(repo: object, notes_ref: str = REF) -> list[notesync.RemoteNotesStatus]:
        computed.append(str(repo))
        return real(repo, notes_ref)  # type: ignore[arg-type]

    monkeypatch.setattr(notesync, "notes_status", counting)
    now = [100.0]
    states = NotesStates(REF, settle=10.0, clock=lambda: now[0])
    states.view(known)
    assert len(computed) == 2

    def write(n: int) -> None:  # what the worker's notes write leaves, then its `touch`
        sha = first.commit(f"burst {n}")
        first.git("notes", f"--ref={REF}", "add", "-m", f"hf-trace: file:///{n}", sha)
        states.touch(known[0][0])

    def unpushed() -> int:
        return int(states.answer(known, wait=30)[0]["remotes"][0]["unpushed"])

    now[0] = 101.0
    write(1)
    assert unpushed() == 1 and len(computed) == 3, "a lone write is taken in at once"
    for n, at in ((2, 104.0), (3, 107.0), (4, 109.0)):
        now[0] = at
        write(n)
    assert len(computed) == 3 and unpushed() == 1, "writes within the settle wait for one computation"
    now[0] = 110.5
    assert states.sweep(known) == 0, "the changed stamp alone does not start it before it is due"
    now[0] = 111.0
    assert states.sweep(known) == 1
    assert unpushed() == 4 and len(computed) == 4, "the last write is taken in"
    assert states.sweep(known) == 0
    now[0] = 200.0
    write(5)
    assert unpushed() == 5 and len(computed) == 5, "after a quiet spell a write is taken in at once again"
    states.close()


def test_a_notes_write_in_a_repository_without_a_remote_runs_no_git_for_its_state(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a remote, a repository's state (no remotes, nothing to push) has no ref among its
    inputs: only `config` (a remote added) and the sync record can change it. So the daemon's
    own notes writes (every commit of a burst) and the sweep after them start no git for it,
    while a remote added later is still found. Before, each write recomputed it: `git remote`
    and more, about once per SETTLE per repository through a whole burst."""
    known, _first = _known(env, 2)
    lone = known[1]  # no remote
    repo = Repo(env, Path(lone[1]))
    _in_process_git(env, tmp_path / "git.log", monkeypatch)
    computed: list[str] = []
    real = notesync.notes_status

    def counting(where: object, notes_ref: str = REF) -> list[notesync.RemoteNotesStatus]:
        computed.append(str(getattr(where, "cwd", where)))
        return real(where, notes_ref)  # type: ignore[arg-type]

    monkeypatch.setattr(notesync, "notes_status", counting)
    now = [100.0]
    states = NotesStates(REF, settle=10.0, clock=lambda: now[0])
    try:
        states.view(known)
        assert len(computed) == 2
        for n in range(3):
            now[0] += 20.0  # past the settle each time: every write would be computed at once
            repo.git("notes", f"--ref={REF}", "add", "-m", f"hf-trace: file:///{n}", repo.commit(f"c{n}"))
            states.touch(lone[0])
            states.sweep(known)
            assert states.answer(known, wait=30)[1] == {"repo": lone[1], "remotes": []}
        # The first view computes both on the pool, in either order; nothing after it.
        assert sorted(computed) == sorted([known[0][1], lone[1]]), (
            "own notes writes recomputed a repository without a remote"
        )

        bare = env.root / "second.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], env=env.vars, check=True)
        repo.git("remote", "add", "origin", str(bare))
        assert states.sweep(known) == 1, "a remote added (config) is found"
        after = states.answer(known, wait=30)[1]
        assert [r["remote"] for r in after["remotes"]] == ["origin"]
    finally:
        states.close()


def test_recomputing_a_state_after_a_notes_write_does_not_ask_git_for_the_remotes_again(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a remote, each of the daemon's own notes writes makes the repository's state be
    computed again (once per SETTLE in a burst). Its remotes and their fetch refspecs come from
    files a notes write does not touch: they are read again only when those change (`git remote
    add` rewrites `config`), so the recompute runs git for the refs alone."""
    known, first = _known(env, 1)
    log = tmp_path / "in-process-git.log"
    _in_process_git(env, log, monkeypatch)
    now = [100.0]
    states = NotesStates(REF, settle=10.0, clock=lambda: now[0])
    try:
        states.view(known)
        log.write_text("")
        now[0] += 20.0
        first.git("notes", f"--ref={REF}", "add", "-m", "hf-trace: file:///y", first.commit("two"))
        states.touch(known[0][0])
        after = states.answer(known, wait=30)
        asked = _calls(log)
        assert asked, "the write was taken in"
        about_remotes = [c for c in asked if " remote" in f" {c}" or "config" in c]
        assert about_remotes == [], about_remotes
        assert after[0]["remotes"][0]["unpushed"] == 1

        bare = env.root / "second.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], env=env.vars, check=True)
        first.git("remote", "add", "second", str(bare))
        assert states.sweep(known) == 1
        names = [r["remote"] for r in states.answer(known, wait=30)[0]["remotes"]]
        assert names == ["origin", "second"], "a remote added is found"
    finally:
        states.close()
