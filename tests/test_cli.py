"""`tracekeeper status / flush / retry` as a user runs them: exit codes, one-line errors, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from .harness import Daemon, Env, daemon_once, make_repo, running_daemon, session_repo, wait_for
from .hubstub import running_hub


def test_status_json_has_the_documented_shape(env: Env) -> None:
    repo, _ = session_repo(env, 2)
    with running_daemon(env) as daemon:
        assert env.status()["repos_quiet"] == 0  # the daemon keeps its list of repositories...
        sha = repo.commit_noted("x")
        data = env.status("--all")  # ...and reads it again after a commit registered a new one
    assert set(data) == {
        "daemon",
        "queue",
        "jobs",
        "oldest_pending",
        "repos",
        "repos_quiet",
        "jobs_not_shown",
        "error",
    }
    assert data["jobs_not_shown"] == 0 and data["error"] is None
    assert data["repos"] == [] and data["repos_quiet"] == 1  # no remote: nothing to push, counted
    assert data["daemon"]["running"] is True
    assert data["daemon"]["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    assert data["daemon"]["socket"] == str(env.socket)
    assert data["queue"] == {"pending": 0, "uploading": 0, "done": 1, "failed": 0}
    (job,) = data["jobs"]
    assert {"repo", "commit", "state", "attempts", "next_attempt_at", "last_error", "url"} <= set(job)
    assert job["commit"] == sha and job["state"] == "done" and job["url"].startswith("file://")
    assert job["repo"] == str(repo.path)


def test_status_without_daemon_reads_the_queue_from_disk(env: Env) -> None:
    repo, _ = session_repo(env, 2)
    with running_daemon(env):
        sha = repo.commit_noted("x")
    data = env.status("--all")
    assert data["daemon"]["running"] is False
    assert data["queue"]["done"] == 1
    assert data["jobs"][0]["commit"] == sha


def test_offline_status_loads_none_of_the_daemons_runtime(env: Env) -> None:
    """The CLI may import the library, never the daemon's runtime: an offline `status` must
    not pay for aiohttp and watchdog (nor load the daemon's composition, tracekeeperd.app)."""
    (env.spool / "bad").mkdir(parents=True)
    (env.spool / "bad" / "0123.1.commit").write_text("{broken")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tracekeeper", "status", "--json"],
        env=env.vars,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=env.root,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["daemon"]["running"] is False
    assert (data["daemon"]["spool"]["waiting"], data["daemon"]["spool"]["dead_letter"]) == (0, 1)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "tracekeeperd.queue" in imported  # the check sees the library's imports
    for heavy in ("aiohttp", "watchdog", "tracekeeperd.app", "tracekeeperd.ipc", "tracekeeperd.worker"):
        assert not {name for name in imported if name == heavy or name.startswith(heavy + ".")}, heavy


def test_flush_times_out_with_the_reason_and_retry_recovers(env: Env) -> None:
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write", TRACEKEEPER_RETRY_CAP="30")
        hub.create_bucket("alice/agent-traces")
        repo, _ = session_repo(env, 2)
        hub.go_offline()
        with running_daemon(env):
            sha = repo.commit("x")
            wait_for(lambda: env.status()["jobs"] and env.status()["jobs"][0]["attempts"] >= 1, what="a try")
            flushed = env.cli("flush", "--timeout", "1", check=False)
            assert flushed.returncode == 4
            assert flushed.stderr.startswith("Error: 1 job(s) still pending after 1s: cannot reach the Hub")
            assert flushed.stderr.count("\n") == 1
            hub.go_online()
            ok = env.cli("flush", "--timeout", "30")
            assert ok.stdout.strip() == "1 uploaded, 0 pending"
            assert repo.note(sha)


def test_commands_that_need_the_daemon_say_so_through_the_one_error_table(env: Env) -> None:
    """flush, retry and drop print what every other command prints for a missing daemon: the
    error table's line and hint, exit 3 (they once had their own wording, and no hint)."""
    for command in (["flush"], ["retry"], ["drop", "--failed"]):
        proc = env.cli(*command, check=False)
        assert proc.returncode == 3
        assert proc.stderr == (
            f"Error: tracekeeperd is not running (no answer on {env.socket})\n"
            "hint: start it with: tracekeeperd   (or: tracekeeper service install)\n"
        )


def test_retry_without_failures_and_human_status(env: Env) -> None:
    with running_daemon(env):
        assert env.cli("retry").stdout == "re-queued 0 job(s)\n"
        text = env.cli("status").stdout
    assert "tracekeeperd 0.1.0 running" in text
    assert "queue   0 pending, 0 uploading, 0 done, 0 failed" in text


def test_daemon_stops_cleanly_on_sigterm_and_removes_its_socket(env: Env) -> None:
    daemon = Daemon(env).start()
    assert env.socket.exists()
    assert (env.runtime / "spool-watched").exists()  # tells the hook it may skip the socket poke
    assert daemon.stop() == 0
    assert not env.socket.exists()
    assert not (env.runtime / "spool-watched").exists()
    assert "tracekeeperd stopped" in daemon.output()


def test_bad_configuration_is_one_line(env: Env) -> None:
    config = env.write_config('store = "s3://nope"\n')
    proc = daemon_once(env)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"tracekeeperd: error: {config}: store: unknown store 's3://nope': use hf://buckets/<namespace>/<name>"
        " or file:///path\n"
    )
    config.write_text("store = [\n")
    proc = daemon_once(env)
    assert proc.returncode == 1 and proc.stderr.startswith(f"tracekeeperd: error: cannot read {config}")
    assert json.loads(env.cli("status", "--json").stdout)["daemon"]["running"] is False


def test_sighup_reloads_the_configuration(env: Env) -> None:
    import signal

    repo, _ = session_repo(env, 2)
    config = env.home / ".config" / "tracekeeper" / "config.toml"
    config.parent.mkdir(parents=True)
    with running_daemon(env) as daemon:
        assert daemon.proc is not None
        config.write_text('store = "s3://broken"\n')
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed, keeping the running configuration" in daemon.output(), what="refusal")
        config.write_text(f'store = "file://{env.root / "elsewhere"}"\nnotes_ref = "other"\n')
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.output(), what="reload")
        assert env.status()["daemon"]["store"]["location"] == (env.root / "elsewhere").as_uri()
        sha = repo.commit("x")
        wait_for(lambda: repo.note(sha, "refs/notes/other"), what="note on the new ref")
    assert list((env.root / "elsewhere").rglob("*.jsonl"))


def test_status_shows_notes_not_yet_pushed_per_repository(env: Env) -> None:
    remote = env.root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], env=env.vars, check=True)
    repo = make_repo(env)
    repo.git("remote", "add", "origin", str(remote))
    repo.install()
    repo.start_session(2)
    with running_daemon(env):
        repo.commit_noted("x")
        data = env.status()
        text = env.cli("status").stdout
    (entry,) = data["repos"]
    assert data["repos_quiet"] == 0
    (origin,) = entry["remotes"]
    assert origin["remote"] == "origin" and origin["unpushed"] == 1
    assert f"notes   1 not pushed to origin from {repo.path}" in text


def test_bad_configuration_is_reported_alike_by_the_daemon_the_cli_and_doctor(env: Env) -> None:
    """One validator: every problem, one line each, wherever the configuration is read."""
    repo = make_repo(env)
    config = env.write_config('bukcet = "alice/traces"\nlog_level = "loud"\n')
    env.vars["HF_TRACE_NOTES_REF"] = "refs/heads/main"
    expected = [
        f"{config}: unknown key 'bukcet' (did you mean 'bucket'?)",
        "HF_TRACE_NOTES_REF: notes ref 'refs/heads/main' is outside refs/notes/, where git keeps notes",
        f"{config}: log_level: unknown log level 'loud' (use debug, info, warning or error)",
    ]
    daemon = daemon_once(env)
    assert (daemon.returncode, daemon.stderr) == (1, "".join(f"tracekeeperd: error: {line}\n" for line in expected))
    install = env.cli("install", "-C", str(repo.path), check=False)
    assert (install.returncode, install.stderr) == (1, "".join(f"Error: {line}\n" for line in expected))
    doctor = env.cli("doctor", "-C", str(repo.path), "--json", check=False)
    assert doctor.returncode == 1
    checks = json.loads(doctor.stdout)["checks"]
    assert [c["message"] for c in checks if c["name"] == "config"] == expected
    assert all(c["status"] == "fail" for c in checks if c["name"] == "config")

    env.vars["HF_TRACE_NOTES_REF"] = "hf-traces"
    config.write_text("")
    env.vars["TRACEKEEPER_LOG_LEVEL"] = "VERBOSE"  # the environment is checked as strictly
    daemon = daemon_once(env)
    assert daemon.stderr == (
        "tracekeeperd: error: TRACEKEEPER_LOG_LEVEL: unknown log level 'VERBOSE' (use debug, info, warning or error)\n"
    )


def test_status_spells_out_control_characters_in_what_a_job_quotes(env: Env) -> None:
    """A job's error and names can quote hostile text (a transcript's path, a payload's
    session id, a Hub answer): the status table spells its control characters out, as `show` does."""
    from tracekeeperd.queue import NewJob, Queue

    env.state.mkdir(parents=True, exist_ok=True)
    queue = Queue(env.state / "queue.sqlite3")
    repo_id, _ = queue.add_repo("/src/app\x1b[2J/.git", "app-00000000", "/src/app\x1b[2J")
    job = NewJob(repo_id, "/src/app/.git", "/src/app\x1b[2J", "a" * 40, "codex", "s\x1b]0;t\x07", "/t.jsonl")
    assert queue.add(job, 1.0, error="cannot read /t\x1b]52;c;Y3VybA==\x07.jsonl \u202egnp")
    queue.close()
    env.vars["COLUMNS"] = "400"
    proc = env.cli("status", check=False)
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\u202e" not in proc.stdout, proc.stdout
    assert "cannot read /t\\x1b]52;c;Y3VybA==\\x07.jsonl \\u202egnp" in proc.stdout, proc.stdout
    assert "app\\x1b[2J" in proc.stdout and "codex/s\\x1b]0;t\\x07" in proc.stdout, proc.stdout
