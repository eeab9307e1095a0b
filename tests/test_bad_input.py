"""Whatever an agent hook (or anyone) leaves in hf-traces-active.json, and whatever the spool holds,
ends as something `status` shows: a failed job with a reason, or a spool entry set aside.

Real daemon, real hook, real git; the bad inputs are real files (a FIFO included).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tracekeeper.api import Client

from .harness import Env, Repo, make_repo, running_daemon, session_repo, wait_for

DEEP = b"[" * 200_000 + b"]" * 200_000
#: Larger than the spool's own cap on a commit file (4 MiB), so the hook's copy is too.
HUGE = b'{"transcript_path": "/t.jsonl", "pad": "' + b"a" * (5 << 20) + b'"}'
NOT_AN_OBJECT = b"42"

EXPECTED = {
    "deep": "nested too deeply",
    "huge": "larger than 1 MiB",
    "number": "must hold a JSON object, got int",
    "fifo": "not a regular file",
}


def tracebacks_above_debug(log: str) -> int:
    """Tracebacks logged at info level or above (the harness runs the daemon with debug logging,
    where a traceback for developers is fine; a user's log must read as one line per problem)."""
    count, level = 0, ""
    for line in log.splitlines():
        stamp = re.match(r"\d{4}-\d\d-\d\d [\d:,]+ (\w+) ", line)
        if stamp:
            level = stamp.group(1)
        elif line.startswith("Traceback") and level != "DEBUG":
            count += 1
    return count


def _bad_repos(env: Env, with_fifo: bool) -> dict[str, Repo]:
    repos: dict[str, Repo] = {}
    for name, content in (("deep", DEEP), ("huge", HUGE), ("number", NOT_AN_OBJECT)):
        repo = make_repo(env, name).install()
        repo.activate(env.transcript()).write_bytes(content)
        repos[name] = repo
    if with_fifo:
        # The hook sees no regular file here (`[ -f ]`); a daemon asked over the socket reads it.
        repo = make_repo(env, "fifo")
        active = repo.activate(env.transcript())
        active.unlink()
        os.mkfifo(active)  # reading it would block until some writer came: forever
        repos["fifo"] = repo
    return repos


def _failed_by_repo(env: Env, count: int) -> dict[str, str]:
    def failed() -> dict[str, str] | None:
        jobs = [j for j in env.status()["jobs"] if j["state"] == "failed"]
        return {Path(j["repo"]).name: j["last_error"] for j in jobs} if len(jobs) == count else None

    return wait_for(failed, what=f"{count} failed jobs")


def test_bad_active_files_become_failed_jobs_while_the_daemon_watches(env: Env) -> None:
    repos = _bad_repos(env, with_fifo=True)
    with running_daemon(env) as daemon:
        for repo in repos.values():
            repo.commit("x")
        fifo = repos["fifo"]
        body = {"sha": fifo.git("rev-parse", "HEAD"), "git_dir": str(fifo.git_dir), "work_tree": str(fifo.path)}
        answer = Client(env.socket, timeout=20).request("POST", "/commit", body)
        assert len(answer["failed"]) == 1
        reasons = _failed_by_repo(env, len(repos))
        assert "Traceback" not in daemon.output(), daemon.output()[-3000:]
        assert env.status()["daemon"]["running"] is True
    for name, reason in reasons.items():
        assert EXPECTED[name] in reason, (name, reason)
        assert "hf-traces-active.json" in reason and "\n" not in reason
    assert not list(env.spool.glob("*.commit")), "nothing is left stuck in the spool"
    assert not (env.spool / "bad").exists() or not list((env.spool / "bad").iterdir())


def test_bad_active_files_copied_by_the_hook_become_failed_jobs(env: Env) -> None:
    """Daemon down: the hook copies each file into the spool (the huge one past the spool's cap)."""
    repos = _bad_repos(env, with_fifo=False)
    for repo in repos.values():
        repo.commit("x")
    assert len(list(env.spool.glob("*.commit"))) == len(repos)
    with running_daemon(env) as daemon:
        reasons = _failed_by_repo(env, len(repos))
        assert "Traceback" not in daemon.output()
    for name, reason in reasons.items():
        assert EXPECTED[name] in reason, (name, reason)
    assert not list(env.spool.glob("*.commit"))


def test_a_spool_entry_that_keeps_failing_is_set_aside_shown_and_retried(env: Env) -> None:
    repo, _ = session_repo(env, 2)
    snapshots = env.state / "snapshots"
    with running_daemon(env) as daemon:
        # Something ingest cannot get past whatever the entry says: snapshots can't be written.
        snapshots.rmdir()
        snapshots.write_text("not a directory")
        sha = repo.commit("x")
        (entry,) = wait_for(lambda: list(env.spool.glob("*.commit")), what="the spool file")
        client = Client(env.socket)
        wait_for(lambda: "kept for later" in daemon.output(), what="the first failed try")
        for _ in range(10):  # every delivery is a try, whoever makes it (socket, watcher, scan)
            if not entry.exists():
                break
            client.request("POST", "/commit", {"spool": entry.name})
        dead = env.spool / "bad" / entry.name
        assert dead.exists() and not entry.exists()
        reason = (env.spool / "bad" / (entry.name + ".reason")).read_text()
        assert reason.startswith("could not be ingested after 5 tries: ") and "FileExistsError" in reason
        assert tracebacks_above_debug(daemon.output()) == 0

        spool = env.status()["daemon"]["spool"]
        assert (spool["waiting"], spool["dead_letter"]) == (0, 1)
        assert spool["dead_letter_reason"] == reason.strip()
        assert f"1 set aside in {env.spool / 'bad'}" in env.cli("status").stdout
        found = {c["name"]: c for c in json.loads(env.cli("doctor", "--json", check=False).stdout)["checks"]}
        assert found["spool"]["status"] == "fail" and "FileExistsError" in found["spool"]["message"]
        assert "tracekeeper retry" in found["spool"]["fix"]

        snapshots.unlink()
        snapshots.mkdir(mode=0o700)
        retried = env.cli("retry").stdout
        assert "1 set-aside commit file(s) back in the spool" in retried
        wait_for(lambda: repo.note(sha), what="the note once the entry is taken again")
    assert not dead.exists()
