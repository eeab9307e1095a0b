"""A burst of commits is claimed in large batches, and a batch costs the same whatever its size.

Issue #10: commits spread round-robin over many repositories, each repository saw about one
commit per claimed batch (bench/bench_fleet.py: 53 batches of median 17 jobs over 100
repositories, 1.0 job per repository per batch), so every commit paid a notes commit of its own
and a SQLite commit of its own. Real parts: the SQLite queue, snapshot files, the local store,
git repositories; the worker is driven turn by turn with injected time (tests/workerkit.py).
The git wrapper on PATH and the transaction counter are spies: every call still happens.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tracekeeperd import git, notes
from tracekeeperd.queue import JobState, Queue
from tracekeeperd.worker import COALESCE, COALESCE_MOST

from .test_notes_write import git_first_on_path
from .workerkit import NOW, REF, WorkerKit, worker_kit


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def _notes_commits(kit: WorkerKit, repo: str) -> int:
    return int(git.output(kit.repos[repo][0], ["rev-list", "--count", REF]))


def test_a_burst_round_robin_over_repositories_is_claimed_in_large_batches(tmp_path: Path) -> None:
    repos = ["a", "b", "c", "d"]
    per_repo = 15
    assert per_repo * len(repos) * 0.05 < COALESCE_MOST
    with worker_kit(tmp_path) as kit:
        shas = {name: kit.repo(name, per_repo)[1] for name in repos}
        claims: list[int] = []
        at = NOW
        for i in range(per_repo):  # a script committing every 50 ms, round-robin, for 3 s
            for name in repos:
                snapshot = kit.snapshot(f"{name}-{i}.jsonl", i + 1)
                kit.add(name, shas[name][i], snapshot, session=f"s-{name}", at=at)
                kit.worker.arrivals.arrived(at)
                if claimed := kit.worker.loop(now=at).claimed:
                    claims.append(claimed)
                at += 0.05
        last = at - 0.05
        while claimed := kit.worker.loop(now=last + COALESCE).claimed:
            claims.append(claimed)
        assert [job.state for job in kit.queue.jobs()] == [JobState.DONE] * (len(repos) * per_repo)
        assert sum(claims) == len(repos) * per_repo
        # The lone first commit cannot know a burst follows; the rest, 3 s of commits without a
        # quiet moment (within COALESCE_MOST), is one batch: one notes commit per repository.
        assert claims == [1, len(repos) * per_repo - 1]
        assert {name: _notes_commits(kit, name) for name in repos} == {"a": 2, "b": 1, "c": 1, "d": 1}
        for name in repos:
            for i, sha in enumerate(shas[name]):
                (link,) = notes.parse(notes.read(kit.repos[name][0], REF, sha))
                assert link.last_line == i + 1


def _git_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `git` first on PATH that logs its subcommand, then runs the real git."""
    log = tmp_path / "git-calls.log"
    git_first_on_path(tmp_path / "spy-bin", monkeypatch, f'echo "$*" >> "{log}"\n')
    return log


def _count_transactions(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    count = [0]
    real = queue._tx

    def counted() -> AbstractContextManager[object]:
        count[0] += 1
        return real()

    monkeypatch.setattr(queue, "_tx", counted)
    return count


def _batch_costs(root: Path, monkeypatch: pytest.MonkeyPatch, commits: int) -> tuple[list[str], int]:
    """(git runs, queue transactions) of one batch of `commits` commits in one repository."""
    with worker_kit(root) as kit, monkeypatch.context() as patch:
        _, shas = kit.repo("app", commits)
        snapshot = kit.snapshot("s.jsonl", 5)  # one session's snapshot, as ingest keeps it
        for sha in shas:
            kit.add("app", sha, snapshot)
        log = _git_spy(root, patch)
        transactions = _count_transactions(kit.queue, patch)
        assert kit.worker.run_once() == commits
        calls = [" ".join(line.split()[1:2]) for line in log.read_text().splitlines()]
        assert [job.state for job in kit.queue.jobs()] == [JobState.DONE] * commits
        assert _notes_commits(kit, "app") == 1
        return calls, transactions[0]


def test_a_batch_in_one_repository_costs_the_same_git_runs_and_queue_commits_for_any_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = _batch_costs(tmp_path / "small", monkeypatch, 2)
    large = _batch_costs(tmp_path / "large", monkeypatch, 24)
    assert large == small, "nothing per commit: 24 commits cost what 2 do"
    # The notes writer alone, its first write in this repository: its cat-file (which also
    # tells which commits exist), hash-object for the blobs and one for the trees, commit-tree,
    # update-ref (tests/test_notes_plumbing.py: later batches start none of them).
    assert sorted(large[0]) == ["cat-file", "commit-tree", "hash-object", "hash-object", "update-ref"]


def _transactions_for(root: Path, monkeypatch: pytest.MonkeyPatch, repos: int) -> int:
    """Queue transactions of one batch of 2 commits in each of `repos` repositories."""
    with worker_kit(root) as kit, monkeypatch.context() as patch:
        snapshot = kit.snapshot("s.jsonl", 5)
        for n in range(repos):
            _, shas = kit.repo(f"r{n}", 2)
            for sha in shas:
                kit.add(f"r{n}", sha, snapshot, session=f"s{n}")
        transactions = _count_transactions(kit.queue, patch)
        assert kit.worker.run_once() == 2 * repos
        assert [job.state for job in kit.queue.jobs()] == [JobState.DONE] * (2 * repos)
        assert all(_notes_commits(kit, f"r{n}") == 1 for n in range(repos))
        return transactions[0]


def test_a_batch_over_many_repositories_completes_its_jobs_in_one_queue_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last batch of a burst over 100 repositories paid one queue commit (an fsync) per
    repository after its notes commit, one after the other: most of the time from the last
    commit to the last note. Its jobs are marked done together once every repository's notes
    are written (a kill in between re-notes them: the lines are there, nothing changes)."""
    one = _transactions_for(tmp_path / "one", monkeypatch, 1)
    six = _transactions_for(tmp_path / "six", monkeypatch, 6)
    assert six == one, f"{six} queue commits for 6 repositories, {one} for 1"


def test_a_batchs_notes_commits_in_different_repositories_are_written_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last batch of a burst over 100 repositories wrote their notes commits one after the
    other (~20 ms each on 2 cores, most of it git): the tail. Repositories are independent, so
    a few are written at once. A `git commit-tree` wrapper shows it: each waits (up to a
    deadline that only a serial writer reaches) until another repository's is running too."""
    gate, met = tmp_path / "gate", tmp_path / "met.log"
    gate.mkdir()
    gate_body = (
        'case " $* " in *" commit-tree "*)\n'
        f'  : > "{gate}/$$"; n=0\n'
        f'  while [ "$(ls "{gate}" | wc -l)" -lt 2 ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n + 1)); done\n'
        f'  ls "{gate}" | wc -l >> "{met}" ;;\n'
        "esac\n"
    )
    with worker_kit(tmp_path / "kit") as kit:
        snapshot = kit.snapshot("s.jsonl", 5)
        for name in ("a", "b"):
            (sha,) = kit.repo(name, 1)[1]
            kit.add(name, sha, snapshot, session=name)
        git_first_on_path(tmp_path / "gate-bin", monkeypatch, gate_body)
        assert kit.worker.run_once() == 2
        assert [job.state for job in kit.queue.jobs()] == [JobState.DONE] * 2
        assert _notes_commits(kit, "a") == _notes_commits(kit, "b") == 1
    assert [int(n) for n in met.read_text().split()] == [2, 2], "each saw the other's notes commit under way"
