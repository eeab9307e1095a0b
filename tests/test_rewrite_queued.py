"""A commit rewritten while its upload is still queued gets its note on the new SHA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekeeperd import notes
from tracekeeperd.stores import LocalStore, Upload

from .harness import Env, Repo, append_lines, make_repo, note_links, running_daemon, wait_for
from .hubstub import HubStub, running_hub
from .workerkit import NOW, REF, WorkerKit, transcript_lines


@pytest.fixture
def hub(env: Env) -> Iterator[HubStub]:
    with running_hub(env.root / "cas") as stub:
        env.vars.update(HF_ENDPOINT=stub.endpoint, HF_TOKEN="hf_alice_write")
        stub.create_bucket("alice/agent-traces")
        yield stub


def _repo(env: Env) -> Repo:
    repo = make_repo(env).install()  # post-commit and post-rewrite
    repo.start_session(3)
    return repo


def test_amend_while_the_upload_is_queued_notes_only_the_new_commit(env: Env, hub: HubStub) -> None:
    repo = _repo(env)
    hub.go_offline()
    with running_daemon(env):
        old = repo.commit("first try")
        wait_for(lambda: env.status()["queue"]["pending"] == 1, what="a queued job")
        append_lines(env.transcript(), 2, start=4)
        repo.git("commit", "-q", "--amend", "-m", "second try")
        new = repo.git("rev-parse", "HEAD")
        wait_for(lambda: not list(env.spool.iterdir()), what="the rewrite to be taken")
        hub.go_online()
        note = wait_for(lambda: repo.note(new), timeout=30, what="the note on the amended commit")
        wait_for(lambda: env.status()["queue"]["pending"] == 0, what="the queue to drain")
    assert old != new
    assert repo.note(old) == ""
    (meta,) = note_links(note)
    assert meta["lines"] == [1, 5]
    assert env.status("--all")["queue"]["done"] == 1


def test_rebase_of_queued_commits_moves_their_links(env: Env, hub: HubStub) -> None:
    repo = _repo(env)
    repo.git("commit", "-q", "--allow-empty", "-m", "base")  # noted like any other (session active)
    base = repo.git("rev-parse", "HEAD")
    hub.go_offline()
    with running_daemon(env):
        repo.git("checkout", "-q", "-b", "feature")
        olds = [repo.commit(f"feature {i}", file=f"f{i}.txt") for i in range(2)]
        repo.git("checkout", "-q", "main")
        repo.activate(env.transcript(), hook_event_name="Stop")
        (repo.path / "main.txt").write_text("main\n")
        repo.git("add", "main.txt")
        repo.git("commit", "-q", "-m", "main moves", extra_env={"TRACEKEEPER_SPOOL_DIR": str(env.root / "void")})
        repo.git("rebase", "-q", "main", "feature")
        news = repo.git("rev-list", "main..feature").split()[::-1]
        wait_for(lambda: not list(env.spool.iterdir()), what="rebase events taken")
        hub.go_online()
        for sha in news:
            wait_for(lambda sha=sha: repo.note(sha), timeout=30, what=f"note on {sha}")
    assert len(news) == 2 and not set(news) & set(olds)
    assert all(repo.note(sha) == "" for sha in olds)
    assert base not in news


def test_cherry_pick_of_a_queued_commit_gets_the_links_when_they_land(env: Env, hub: HubStub) -> None:
    repo = _repo(env)
    repo.commit("base")
    hub.go_offline()
    with running_daemon(env):
        repo.git("checkout", "-q", "-b", "side")
        source = repo.commit("on side", file="side.txt")
        repo.git("checkout", "-q", "main")
        repo.git("cherry-pick", source)
        copy = repo.git("rev-parse", "HEAD")
        repo.git("cherry-pick", "-x", "--allow-empty", "--keep-redundant-commits", copy)  # a copy of the copy
        copy2 = repo.git("rev-parse", "HEAD")
        wait_for(lambda: not list(env.spool.iterdir()), what="the picks to be taken")
        hub.go_online()
        for sha in (source, copy, copy2):
            wait_for(lambda sha=sha: repo.note(sha), timeout=30, what=f"note on {sha}")
    assert note_links(repo.note(copy)) == note_links(repo.note(source)) == note_links(repo.note(copy2))


def test_an_amend_taken_in_while_the_new_commits_job_is_uploading_still_notes_the_whole_range(
    tmp_path: Path,
) -> None:
    """The amend's own commit is queued first (lines 4-5: after the old commit's 1-3) and its
    batch is already uploading when the rewrite is taken in. The rewrite drops the old commit's
    job as a duplicate and gives the new one the old one's start: the note written at the end of
    that batch must say so (lines 1-5), not what the job said when it was claimed. (Seen in CI:
    with the hub back online, the worker had claimed the new commit's job before the rewrite
    landed.) The worker and queue are real; the rewrite is run on the database thread from
    inside the upload, where the daemon's database thread would interleave it."""
    from .workerkit import worker_kit

    kits: list[WorkerKit] = []

    class RewriteDuringUpload(LocalStore):
        def put(self, uploads: list[Upload]) -> dict[str, str]:
            kit = kits[0]
            _git_dir, repo_id, _key = kit.repos["app"]
            kit.worker.db.run(kit.queue.retarget, repo_id, old, new, NOW + 1)
            return super().put(uploads)

    with worker_kit(tmp_path, RewriteDuringUpload(tmp_path / "store")) as kit:
        kits.append(kit)
        git_dir, (old, new) = kit.repo("app", 2)
        snapshot = kit.snapshot("s.jsonl", 3)
        first = kit.add("app", old, snapshot, at=NOW)
        kit.queue.db.execute("UPDATE jobs SET next_attempt_at = ? WHERE id = ?", (NOW + 3600, first))
        with snapshot.open("ab") as fh:
            fh.write(transcript_lines(4, 5))
        second = kit.add("app", new, snapshot, at=NOW)
        kit.queue.db.execute("UPDATE jobs SET first_line = 4 WHERE id = ?", (second,))
        assert kit.worker.loop(now=NOW + 1).claimed == 1
        assert notes.read(git_dir, REF, old) == ""
        (meta,) = note_links(notes.read(git_dir, REF, new))
    assert meta["lines"] == [1, 5]
