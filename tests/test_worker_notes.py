"""The worker notes a whole batch in one notes commit per repository.

Real parts: a real SQLite queue, real snapshot files, the local directory store, real git
repositories; the worker is driven directly (tests/workerkit.py) rather than through the daemon
so that every job is certainly claimed in one batch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tracekeeperd import git, notes
from tracekeeperd.config import RetryPolicy
from tracekeeperd.queue import JobState
from tracekeeperd.redact import Redactor
from tracekeeperd.stores import LocalStore

from .test_notes_write import alive
from .workerkit import NOW, REF, worker_kit


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def test_one_batch_is_one_notes_commit_per_repository(tmp_path: Path) -> None:
    gone = "0" * 40  # a commit that does not exist: that job fails, the rest are noted
    with worker_kit(tmp_path) as kit:
        snapshot = kit.snapshot("s1.jsonl", 5)
        repos = {name: kit.repo(name, 12) for name in ("app", "lib")}
        ids = {
            name: [kit.add(name, sha, snapshot, session=f"s{i % 3}") for i, sha in enumerate([*shas, gone])]
            for name, (_, shas) in repos.items()
        }
        assert kit.worker.run_once() == 2 * 13
        states = {job.id: job.state for job in kit.queue.jobs()}
    for name, (git_dir, shas) in repos.items():
        assert [states[i] for i in ids[name]] == [JobState.DONE] * 12 + [JobState.FAILED]
        count = git.output(git_dir, ["rev-list", "--count", REF])
        assert count == "1", f"{name}: one notes commit for the whole batch"
        for i, sha in enumerate(shas):
            (link,) = notes.parse(notes.read(git_dir, REF, sha))
            assert link.session_id == f"s{i % 3}" and link.url.endswith(f"/codex-s{i % 3}.jsonl")


def test_reconfigure_switches_store_notes_ref_and_opens_the_gate(tmp_path: Path) -> None:
    """SIGHUP goes through Worker.reconfigure: the next batch uses the new store and notes ref,
    and a gate the old store closed no longer holds the queue back."""
    with worker_kit(tmp_path, LocalStore(tmp_path / "old")) as kit:
        git_dir, (sha,) = kit.repo("app", 1)
        key = kit.repos["app"][2]
        kit.add("app", sha, kit.snapshot("s.jsonl", 1))
        worker = kit.worker
        worker.gate.closed_until, worker.gate.reason = NOW + 3600, "old store unreachable"
        assert worker.run_once() == 0, "the closed gate holds the queue"
        new = LocalStore(tmp_path / "new")
        worker.reconfigure(new, notes_ref="refs/notes/other", policy=RetryPolicy(), redactor=Redactor())
        assert worker.store_id == new.ident() and worker.gate.closed_until == 0.0
        assert worker.run_once() == 1
        assert [j.state for j in kit.queue.jobs()] == [JobState.DONE]
    assert (tmp_path / "new" / key / "sessions" / "codex-s.jsonl").is_file()
    assert not (tmp_path / "old").exists() or not any((tmp_path / "old").rglob("*.jsonl"))
    (link,) = notes.parse(notes.read(git_dir, "refs/notes/other", sha))
    assert link.url.endswith("/codex-s.jsonl")
    assert git.run(git_dir, ["rev-parse", "--verify", "-q", REF], check=False).returncode != 0


@pytest.fixture
def repairs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each repository `notes.repair` is run for; a spy: the real repair still runs."""
    seen: list[Path] = []
    real_repair = notes.repair

    def counting_repair(where: Path, ref: str, **kwargs: notes.Plumbing | None) -> notes.Written:
        seen.append(where)
        return real_repair(where, ref, **kwargs)

    monkeypatch.setattr(notes, "repair", counting_repair)
    return seen


def test_notes_repair_runs_git_only_when_the_notes_ref_moved(tmp_path: Path, repairs: list[Path]) -> None:
    """The housekeeping tick asks every recently noted repository for lost lines every few
    seconds for an hour: with nobody else writing notes it must not start git each time."""
    with worker_kit(tmp_path) as kit:
        git_dir, (sha,) = kit.repo("app", 1)
        kit.add("app", sha, kit.snapshot("s.jsonl", 1))
        worker = kit.worker
        assert worker.run_once() == 1
        ours = notes.read(git_dir, REF, sha)
        for _ in range(5):
            assert worker.repair_notes() == 0
        assert len(repairs) <= 1, "nothing moved the notes ref: no git for it"
        # A user's stale `git notes add -f` drops our line: the next tick puts it back.
        subprocess.run(
            ["git", "notes", f"--ref={REF}", "add", "-f", "-m", "reviewed-by: bob", sha],
            cwd=git_dir.parent,
            env=git.clean_env(),
            check=True,
            capture_output=True,
        )
        before = len(repairs)
        assert worker.repair_notes() == 1
        assert len(repairs) == before + 1
        back = notes.read(git_dir, REF, sha)
        for _ in range(5):
            assert worker.repair_notes() == 0
        assert len(repairs) <= before + 2
    assert "reviewed-by: bob" in back and all(line in back for line in ours.splitlines())


def test_a_repository_keeps_its_git_plumbing_between_batches_until_idle_or_stop(tmp_path: Path) -> None:
    """A burst's batches in one repository share one set of long-lived git processes
    (tracekeeperd/plumbing.py); the housekeeping turn closes them once the repository has been
    idle for plumbing.IDLE, the worker's close (the daemon's stop) closes the rest."""
    from tracekeeperd import plumbing

    with worker_kit(tmp_path) as kit:
        worker = kit.worker
        repos = {name: kit.repo(name, 2) for name in ("app", "lib")}
        snapshot = kit.snapshot("s.jsonl", 1)
        for name, (_, shas) in repos.items():
            kit.add(name, shas[0], snapshot)
        assert worker.loop(now=NOW).claimed == 2
        kept = {name: worker.plumbing.pids(git_dir) for name, (git_dir, _) in repos.items()}
        # cat-file, hash-object (blobs), hash-object -t tree, update-ref; one more, the commits'
        # hash-object, from a repository's second notes commit on
        assert all(len(pids) == 4 and all(map(alive, pids)) for pids in kept.values()), kept
        worker.follow(debounce=86400, now=NOW + 1)  # our own write leaves the repair nothing to read
        kit.add("app", repos["app"][1][1], snapshot, at=NOW + 10)
        assert worker.loop(now=NOW + 10).claimed == 1
        again = worker.plumbing.pids(repos["app"][0])
        assert again[:4] == kept["app"] and len(again) == 5, "the second batch started none of them again"
        kept["app"] = again
        worker.follow(debounce=86400, now=NOW + 11)
        worker.follow(debounce=86400, now=NOW + plumbing.IDLE - 0.5)
        assert all(map(alive, kept["app"] + kept["lib"])), "lib unused for less than plumbing.IDLE: kept"
        worker.follow(debounce=86400, now=NOW + plumbing.IDLE + 0.5)
        assert not any(map(alive, kept["lib"])), "lib idle since the first batch: closed"
        assert all(map(alive, kept["app"]))
        worker.close()
        assert not any(map(alive, kept["app"])), "the worker's close ends the rest"
    for name, (git_dir, shas) in repos.items():
        count = 2 if name == "app" else 1
        assert [bool(notes.read(git_dir, REF, sha)) for sha in shas] == [True, count == 2]


def test_the_workers_own_notes_writes_leave_nothing_for_the_repair_to_look_at(
    tmp_path: Path, repairs: list[Path]
) -> None:
    """In a burst every batch writes each repository's notes, and the housekeeping turn ran the
    repair (a notes read through git) after each of them, only because our own write had moved
    the ref. Ours is known: once the ref is checked to still name our commit, only a later
    writer makes the next turn look. A user's stale write after ours is still put right."""
    with worker_kit(tmp_path) as kit:
        git_dir, shas = kit.repo("app", 4)
        snapshot = kit.snapshot("s.jsonl", 1)
        for n, sha in enumerate(shas[:3]):
            kit.add("app", sha, snapshot, at=NOW + n)
            assert kit.worker.loop(now=NOW + n + 0.5).claimed == 1
            assert kit.worker.repair_notes() == 0
        assert repairs == [], "our own writes made the housekeeping turn read the notes"
        ours = notes.read(git_dir, REF, shas[2])
        subprocess.run(
            ["git", "notes", f"--ref={REF}", "add", "-f", "-m", "reviewed-by: bob", shas[2]],
            cwd=git_dir.parent,
            env=git.clean_env(),
            check=True,
            capture_output=True,
        )
        assert kit.worker.repair_notes() == 1
        assert repairs == [git_dir]
        back = notes.read(git_dir, REF, shas[2])
    assert "reviewed-by: bob" in back and all(line in back for line in ours.splitlines())
