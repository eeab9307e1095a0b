"""Failed jobs can be retried or dropped, `flush` judges only the jobs it waited on, and `doctor`
reports failed jobs. Real daemon, real CLI, real git; the Hub is tests/hubstub.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .harness import Env, Repo, make_repo, running_daemon, session_repo, wait_for
from .hubstub import running_hub


def _broken(env: Env, name: str) -> Repo:
    """A repository whose next commit fails at ingest (a hook died writing the active file)."""
    repo = make_repo(env, name).install()
    repo.activate(env.transcript()).write_text('{"transcript_path": ')
    return repo


def _healthy(env: Env, name: str) -> Repo:
    return session_repo(env, 3, name)[0]


def _failed(env: Env) -> list[dict[str, Any]]:
    return [j for j in env.status()["jobs"] if j["state"] == "failed"]


def _doctor(env: Env) -> dict[str, dict[str, Any]]:
    proc = env.cli("doctor", "--json", check=False)
    return {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


def test_flush_is_not_failed_by_jobs_that_failed_before_it(env: Env) -> None:
    broken, healthy = _broken(env, "broken"), _healthy(env, "healthy")
    with running_daemon(env):
        broken.commit("x")
        wait_for(lambda: _failed(env), what="the failed job")
        sha = healthy.commit("y")
        flushed = env.cli("flush", "--timeout", "30", check=False)
        assert healthy.note(sha)
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.startswith("flushed: ")
    assert flushed.stderr == (
        "note: 1 job(s) failed before this flush; `tracekeeper status` says why, "
        "then `tracekeeper retry` or `tracekeeper drop --failed`\n"
    )


def test_flush_fails_when_a_job_it_waited_on_fails(env: Env) -> None:
    with running_hub(env.root / "cas") as hub:
        # Backoff long enough that only the flush makes the worker try again.
        env.vars.update(
            HF_ENDPOINT=hub.endpoint,
            HF_TOKEN="hf_alice_write",
            TRACEKEEPER_RETRY_BASE="300",
            TRACEKEEPER_RETRY_CAP="600",
        )
        hub.create_bucket("alice/agent-traces", private=False)
        repo = _healthy(env, "app")
        hub.go_offline()
        with running_daemon(env):
            repo.commit("x")
            wait_for(lambda: env.status()["daemon"]["offline_until"], what="the store to be found unreachable")
            assert env.status()["queue"]["pending"] == 1
            hub.go_online()
            flushed = env.cli("flush", "--timeout", "30", check=False)
            assert flushed.returncode == 5, flushed.stderr
            assert flushed.stderr.startswith("Error: 1 of the 1 job(s) this flush waited on failed: bucket ")
            assert "is public" in flushed.stderr and flushed.stderr.count("\n") == 1
            again = env.cli("flush", "--timeout", "5", check=False)
            assert again.returncode == 0 and "1 job(s) failed before this flush" in again.stderr


def test_failed_jobs_can_be_dropped_or_retried_by_id_and_doctor_reports_them(env: Env) -> None:
    first, second = _broken(env, "first"), _broken(env, "second")
    with running_daemon(env):
        first.commit("x")
        second.commit("y")
        jobs = wait_for(lambda: len(_failed(env)) == 2 and _failed(env), what="two failed jobs")
    by_repo = {job["repo"].rsplit("/", 1)[1]: job for job in jobs}
    check = _doctor(env)["queue"]  # the daemon is down: read from disk
    assert check["status"] == "fail"
    assert check["message"].startswith("2 failed job(s), not uploaded; the newest: ")
    assert "not valid JSON" in check["message"]
    assert "`tracekeeper retry`" in check["fix"] and "`tracekeeper drop --failed`" in check["fix"]

    with running_daemon(env):
        assert _doctor(env)["queue"]["status"] == "fail"
        usage = env.cli("drop", check=False)
        assert usage.returncode == 2 and "--failed" in usage.stderr.splitlines()[-1]
        both = env.cli("drop", "--failed", str(by_repo["first"]["id"]), check=False)
        assert both.returncode == 2
        unknown = env.cli("drop", "99999", check=False)
        assert (unknown.returncode, unknown.stdout) == (1, "dropped 0 failed job(s)\n")
        assert unknown.stderr == "Error: job 99999 is not a failed job (see `tracekeeper status`)\n"

        dropped = env.cli("drop", str(by_repo["first"]["id"]))
        assert dropped.stdout == "dropped 1 failed job(s)\n"
        assert [j["id"] for j in _failed(env)] == [by_repo["second"]["id"]]

        retried = env.cli("retry", str(by_repo["second"]["id"]))
        assert retried.stdout == (
            "re-queued 0 job(s)\n"
            "1 job(s) cannot be retried (they never captured a transcript): `tracekeeper drop --failed` clears them\n"
        )
        assert env.cli("drop", "--failed").stdout == "dropped 1 failed job(s)\n"
        assert env.status()["queue"]["failed"] == 0
        assert _doctor(env)["queue"]["status"] == "ok"
        assert env.cli("flush", "--timeout", "5").stderr == ""


# --- the queue's part, in-process against a real SQLite file ------------------------------


def test_retry_and_drop_by_id_touch_only_failed_jobs_and_take_any_number_of_ids(tmp_path: Path) -> None:
    from tracekeeperd.protocol import JobState
    from tracekeeperd.queue import NewJob, Queue

    queue = Queue(tmp_path / "queue.sqlite3")
    repo_id, _ = queue.add_repo("/src/app/.git", "app-00000000", "/src/app")

    def job(sha: str, snapshot: str | None) -> NewJob:
        return NewJob(repo_id, "/src/app/.git", "/src/app", sha, "codex", "s", "/t.jsonl", snapshot=snapshot)

    retryable = queue.add(job("a" * 40, "/snap"), 1.0, error="bucket is public")
    stuck = queue.add(job("b" * 40, None), 1.0, error="not valid JSON")
    pending = queue.add(job("c" * 40, "/snap"), 1.0)
    assert retryable and stuck and pending
    many = [*range(100_000, 140_000), retryable]  # more than SQLite's 32766 parameters
    assert queue.retry_failed(2.0, many) == (1, 0)
    assert queue.retry_failed(2.0, [stuck]) == (0, 1)
    assert queue.drop_failed([pending, 99]) == 0, "a pending job may be in a batch: never dropped"
    assert queue.drop_failed([stuck]) == 1
    assert queue.unsettled_ids() == [retryable, pending]
    assert [j.id for j in queue.by_ids([pending, stuck, retryable])] == [retryable, pending]
    assert {j.state for j in queue.by_ids(queue.unsettled_ids())} == {JobState.PENDING}
    queue.fail(retryable, "again", 3.0)
    assert queue.drop_failed(None) == 1 and queue.counts()["failed"] == 0
    queue.close()
