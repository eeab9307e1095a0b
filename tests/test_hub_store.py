"""The daemon against the real huggingface_hub + hf_xet, talking to a Hub stand-in on 127.0.0.1.

Mocked: only the Hub's REST API (tests/hubstub.py), because huggingface.co is unreachable here.
The transfer itself is the real hf_xet's RemoteClient, talking to the stand-in's xet CAS over HTTP.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import re
import shutil
import signal
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import (
    UUID_A,
    UUID_B,
    Daemon,
    Env,
    Repo,
    append_lines,
    make_env,
    make_repo,
    note_links,
    running_daemon,
    session_repo,
    wait_for,
)
from .hubstub import HubStub, running_hub

BUCKET = "alice/agent-traces"
TOKEN = "hf_alice_write"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def hub(env: Env) -> Iterator[HubStub]:
    with running_hub(env.root / "cas") as stub:
        env.vars.update(HF_ENDPOINT=stub.endpoint, HF_TOKEN=TOKEN)
        yield stub


def _repo_with_session(env: Env, name: str = "app", lines: int = 5) -> Repo:
    return session_repo(env, lines, name)[0]


def _remote_path(note: str) -> str:
    (meta,) = note_links(note)
    return str(meta["url"].split(f"/buckets/{BUCKET}/tree/", 1)[1])


def test_default_bucket_is_created_private_and_note_points_at_it(env: Env, hub: HubStub) -> None:
    repo = _repo_with_session(env)
    with running_daemon(env):
        sha = repo.commit("first")
        note = wait_for(lambda: repo.note(sha), what="the note")
        append_lines(env.transcript(), 2, start=6)
        committed = time.time()
        second = repo.commit("second")
        wait_for(lambda: repo.note(second), what="the second note")
        status = env.status()
    # Each upload asks the bucket's visibility after the previous upload, however recent the
    # last answer was (the start-up probe answers only the first).
    sent = [(r.method, r.path) for r in hub.requests]
    batches = [i for i, request in enumerate(sent) if request == ("POST", f"/api/buckets/{BUCKET}/batch")]
    assert len(batches) == 2
    assert ("GET", f"/api/buckets/{BUCKET}") in sent[batches[0] + 1 : batches[1]]
    path = _remote_path(note)
    assert note.splitlines()[0] == f"hf-trace: {hub.endpoint}/buckets/{BUCKET}/tree/{path}"
    assert path.startswith("app-") and path.endswith(f"/sessions/codex-{UUID_A}.jsonl")
    assert hub.is_private(BUCKET)
    data = env.transcript().read_bytes()
    assert hub.read_file(BUCKET, path) == data
    (meta,) = note_links(note)
    assert meta["sha256"] == hashlib.sha256(data[: meta["bytes"]]).hexdigest()
    store = status["daemon"]["store"]
    checked_at = store.pop("checked_at")
    assert store == {
        "kind": "hf",
        "location": f"hf://buckets/{BUCKET}",
        "private": True,
        "reachable": True,
        "detail": None,
    }
    assert committed <= checked_at <= time.time()  # asked for this commit's upload, not before it


def test_explicit_store_setting_and_recipe_bucket_variable(env: Env, hub: HubStub) -> None:
    env.vars["HF_TRACE_BUCKET"] = "alice/team-traces"
    repo = _repo_with_session(env)
    with running_daemon(env):
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), what="the note")
    assert "/buckets/alice/team-traces/tree/" in note
    assert hub.is_private("alice/team-traces")


def test_public_bucket_is_refused_and_nothing_is_sent(env: Env, hub: HubStub) -> None:
    hub.create_bucket(BUCKET, private=False)
    repo = _repo_with_session(env)
    with running_daemon(env):
        sha = repo.commit("x")
        jobs = wait_for(lambda: [j for j in env.status()["jobs"] if j["state"] == "failed"], what="failure")
        flush = env.cli("flush", "--timeout", "5", check=False)
    assert "is public" in jobs[0]["last_error"]
    assert repo.note(sha) == ""
    assert hub.count(path_suffix="/batch") == 0
    assert hub.count(path_suffix="/xet-write-token") == 0
    assert hub.files(BUCKET) == {}
    assert flush.returncode == 0  # it failed before the flush began: `retry` or `drop` is for it
    assert "1 job(s) failed before this flush" in flush.stderr and "Traceback" not in flush.stderr


def test_bad_token_fails_with_a_clear_reason(env: Env, hub: HubStub) -> None:
    env.vars["HF_TOKEN"] = "hf_not_a_real_token"
    repo = _repo_with_session(env)
    with running_daemon(env):
        repo.commit("x")
        jobs = wait_for(lambda: [j for j in env.status()["jobs"] if j["state"] == "failed"], what="failure")
    assert "refused the token (401" in jobs[0]["last_error"]
    assert "hf_not_a_real_token" not in jobs[0]["last_error"]


def test_hub_offline_then_back_backlog_drains_by_itself(env: Env, hub: HubStub) -> None:
    hub.create_bucket(BUCKET)
    repo = _repo_with_session(env)
    hub.go_offline()
    with running_daemon(env):
        shas = [repo.commit(f"offline {i}") for i in range(3)]
        status = wait_for(
            lambda: (s := env.status())["daemon"]["offline_until"] and s["queue"]["pending"] == 3 and s,
            what="the daemon to notice the Hub is down",
        )
        assert "cannot reach the Hub" in status["daemon"]["offline_reason"]
        assert all(repo.note(sha) == "" for sha in shas)
        wait_for(lambda: "store unreachable" in env.cli("status").stdout, what="status to say so")
        hub.go_online()
        for sha in shas:
            wait_for(lambda sha=sha: repo.note(sha), timeout=30, what="the backlog to drain")
        final = env.status("--all")
    assert final["queue"] == {"pending": 0, "uploading": 0, "done": 3, "failed": 0}
    assert hub.count(path_suffix="/batch") == 1  # three commits of one session: one upload


def test_daemon_killed_while_uploading_then_restarted_notes_exactly_once(env: Env, hub: HubStub) -> None:
    hub.create_bucket(BUCKET)
    hub.hold([f"/api/buckets/{BUCKET}/batch"])  # the batch stays in flight until released
    repo = _repo_with_session(env)
    daemon = Daemon(env).start()
    try:
        shas = [repo.commit(f"c{i}") for i in range(2)]
        wait_for(lambda: env.status()["queue"]["uploading"] >= 1, what="an upload in flight")
        daemon.stop(signal.SIGKILL)
    finally:
        daemon.stop()
    assert env.status()["queue"]["uploading"] >= 1  # what the dead daemon left behind
    hub.release()
    with running_daemon(env):
        env.cli("flush", "--timeout", "30")
        notes = [repo.note(sha) for sha in shas]
    for note in notes:
        assert note.count("hf-trace: ") == 1
        assert note.count("hf-trace-meta: ") == 1


def test_two_repositories_with_the_same_name_do_not_overwrite_each_other(env: Env, hub: HubStub) -> None:
    one = make_repo(env, "app", env.root / "work").install()
    two = make_repo(env, "app", env.root / "personal").install()
    t1 = env.transcript(f"rollout-a-{UUID_A}.jsonl")
    t2 = env.transcript("rollout-b-11111111-2222-3333-4444-555555555555.jsonl")
    append_lines(t1, 2)
    append_lines(t2, 7)
    one.activate(t1)
    two.activate(t2, session_id=UUID_A)  # even the same session id
    with running_daemon(env):
        s1, s2 = one.commit("one"), two.commit("two")
        n1 = wait_for(lambda: one.note(s1), what="note 1")
        n2 = wait_for(lambda: two.note(s2), what="note 2")
    p1, p2 = _remote_path(n1), _remote_path(n2)
    assert p1 != p2
    assert p1.split("/")[0].startswith("app-") and p2.split("/")[0].startswith("app-")
    assert hub.read_file(BUCKET, p1) == t1.read_bytes()
    assert hub.read_file(BUCKET, p2) == t2.read_bytes()


def test_read_only_token_is_a_permanent_failure(hub: HubStub) -> None:
    for env in make_env(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_read"):
        repo = _repo_with_session(env)
        with running_daemon(env):
            repo.commit("x")
            jobs = wait_for(lambda env=env: [j for j in env.status()["jobs"] if j["state"] == "failed"], what="x")
        assert "read-only" in jobs[0]["last_error"]


def test_token_saved_under_hf_home_selects_the_hub_store(env: Env, hub: HubStub) -> None:
    """`hf auth login` saves the token in $HF_HOME/token: no HF_TOKEN needed."""
    del env.vars["HF_TOKEN"]
    hf_home = env.root / "hf-home"
    hf_home.mkdir()
    (hf_home / "token").write_text(TOKEN)
    env.vars["HF_HOME"] = str(hf_home)
    repo = _repo_with_session(env)
    with running_daemon(env):
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), what="the note")
    assert note.startswith(f"hf-trace: {hub.endpoint}/buckets/{BUCKET}/tree/")


def test_sigterm_during_an_upload_finishes_or_hands_back_the_batch(env: Env, hub: HubStub) -> None:
    hub.create_bucket(BUCKET)
    hub.hold([f"/api/buckets/{BUCKET}/batch"])  # the batch stays in flight until released
    repo = _repo_with_session(env)
    daemon = Daemon(env).start()
    try:
        sha = repo.commit("x")
        wait_for(lambda: env.status()["queue"]["uploading"] == 1, what="an upload in flight")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping: finishing the batch in flight" in daemon.output(), what="the daemon to stop")
        hub.release()  # SIGTERM arrived mid-upload; now the upload may end
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        hub.release()
        daemon.stop()
    after = env.status("--all")
    assert after["queue"]["uploading"] == 0  # nothing left mid-flight
    assert after["queue"]["done"] + after["queue"]["pending"] == 1
    if after["queue"]["done"]:
        assert repo.note(sha)


def test_the_token_never_appears_in_logs_status_or_notes(env: Env, hub: HubStub) -> None:
    hub.create_bucket(BUCKET)
    repo = _repo_with_session(env)
    texts = []
    with running_daemon(env) as daemon:
        repo.commit_noted("ok")
        texts += [daemon.output(), env.cli("status", "--all").stdout, env.cli("status", "--all", "--json").stdout]
    wrong = "hf_WrongButSecretTokenValue12345"
    env.vars["HF_TOKEN"] = wrong
    env.vars["TRACEKEEPER_STORE"] = f"hf://buckets/{BUCKET}"
    with running_daemon(env) as daemon:
        repo.commit("refused")
        wait_for(lambda: env.status()["queue"]["failed"] >= 1, what="a failure")
        texts += [daemon.output(), env.cli("status", "--all").stdout, env.cli("status", "--all", "--json").stdout]
    texts.append(repo.git("log", "--notes=hf-traces"))
    assert "refused the token (401" in texts[-2]
    assert all("DEBUG" in text for text in (texts[0], texts[3]))  # the daemon ran with --log-level debug
    for text in texts:
        assert TOKEN not in text
        assert wrong not in text


def test_a_growing_session_is_refreshed_in_the_bucket_and_notes_stay_verifiable(env: Env, hub: HubStub) -> None:
    env.vars["TRACEKEEPER_FOLLOW_DEBOUNCE"] = "0.3"
    hub.create_bucket(BUCKET)
    repo = _repo_with_session(env, lines=3)
    transcript = env.transcript()
    with running_daemon(env) as daemon:
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), what="the note")
        append_lines(transcript, 5, start=4)
        wait_for(lambda: "refreshed codex/" in daemon.output(), what="the refresh")
        batches = hub.count(path_suffix="/batch")
    path = _remote_path(note)
    remote = hub.read_file(BUCKET, path)
    assert remote == transcript.read_bytes()
    (meta,) = note_links(note)
    assert hashlib.sha256(remote[: meta["bytes"]]).hexdigest() == meta["sha256"]
    assert batches == 2  # the commit's upload, then one refresh


# --- visibility is checked before every upload ------------------------------------------------


def test_a_bucket_made_public_refuses_the_very_next_upload(env: Env, hub: HubStub) -> None:
    """The issue's timeline: uploads fine, someone flips the bucket public, a commit 4 s later."""
    hub.create_bucket(BUCKET)
    repo = _repo_with_session(env, lines=3)
    with running_daemon(env):
        first = repo.commit("while private")
        wait_for(lambda: repo.note(first), what="the first note")
        before = hub.files(BUCKET)
        flipped_at = time.time()
        hub.set_private(BUCKET, False)
        append_lines(env.transcript(), 2, start=4)
        second = repo.commit("after the flip")
        failed = wait_for(lambda: [j for j in env.status()["jobs"] if j["state"] == "failed"], what="the refusal")
        store = env.status()["daemon"]["store"]
        text = env.cli("status").stdout
    assert [j["commit"] for j in failed] == [second]
    assert "is public" in failed[0]["last_error"]
    assert repo.note(second) == ""
    assert hub.files(BUCKET) == before  # not a byte of the second upload reached the bucket
    assert store["private"] is False
    assert store["checked_at"] >= flipped_at
    assert "PUBLIC, checked" in text


def test_a_session_refresh_after_the_flip_is_refused_too(env: Env, hub: HubStub) -> None:
    env.vars["TRACEKEEPER_FOLLOW_DEBOUNCE"] = "0.3"
    hub.create_bucket(BUCKET)
    repo = _repo_with_session(env, lines=3)
    with running_daemon(env) as daemon:
        repo.commit_noted("x")
        before = hub.files(BUCKET)
        hub.set_private(BUCKET, False)
        append_lines(env.transcript(), 5, start=4)
        wait_for(lambda: "could not refresh codex/" in daemon.output(), what="the refused refresh")
        log = daemon.output()
    assert "is public" in log.split("could not refresh codex/", 1)[1].splitlines()[0]
    assert hub.files(BUCKET) == before


# --- 401/403 on any step are permanent --------------------------------------------------------


def test_a_token_that_lost_write_access_fails_the_job_and_leaves_the_queue_open(env: Env, hub: HubStub) -> None:
    """The 403 comes from the xet-write-token endpoint, which hf_xet reports as a ConnectionError."""
    hub.create_bucket(BUCKET)
    env.vars["TRACEKEEPER_STORE"] = f"hf://buckets/{BUCKET}"
    first = _repo_with_session(env, "first")
    second = make_repo(env, "second").install()
    other = env.transcript(f"rollout-b-{UUID_B}.jsonl")
    append_lines(other, 3)
    second.activate(other, session_id=UUID_B)
    with running_daemon(env):
        hub.add_user("alice", TOKEN, role="read")  # the token lost write access
        repo_a = first.commit("refused")
        job = wait_for(lambda: [j for j in env.status()["jobs"] if j["state"] == "failed"], what="the failure")[0]
        status = env.status()
        hub.add_user("alice", TOKEN, role="write")  # fixed on the Hub: other work flows at once
        repo_b = second.commit("flows")
        wait_for(lambda: second.note(repo_b), what="the other repository's note")
        assert first.note(repo_a) == ""
        env.cli("retry")
        env.cli("flush", "--timeout", "30")
        noted = first.note(repo_a)
    assert job["commit"] == repo_a
    assert "403" in job["last_error"] and "write access" in job["last_error"]
    assert "tracekeeper retry" in job["last_error"]  # says what to do
    assert status["daemon"]["offline_until"] is None  # no gate closed for the whole queue
    assert hub.count(path_suffix="/batch") == 2 and noted


# --- rate limits ------------------------------------------------------------------------------


def test_a_429_on_the_upload_is_not_slept_through_and_the_next_try_is_persisted(env: Env, hub: HubStub) -> None:
    """huggingface_hub's own backoff would sleep t+1 s five times inside the batch call."""
    hub.create_bucket(BUCKET)
    batch = f"/api/buckets/{BUCKET}/batch"
    hub.fail_next(1, status=429, paths=[batch], reset_in=120)
    repo = _repo_with_session(env)
    with running_daemon(env) as daemon:
        started = time.time()
        sha = repo.commit("x")
        job = wait_for(
            lambda: [j for j in env.status()["jobs"] if j["state"] == "pending" and j["attempts"] >= 1],
            what="the job to be deferred",
        )[0]
        log = daemon.output()
    assert "rate limit" in job["last_error"] and "120" in job["last_error"]
    assert job["next_attempt_at"] >= started + 119  # the Hub's window, not our own short backoff
    assert "Rate limited. Waiting" not in log  # the library did not sleep on it
    assert [r.status for r in hub.requests if r.path == batch] == [429]
    with running_daemon(env):  # a restart keeps the schedule
        again = env.status()["jobs"][0]
        assert (again["state"], again["next_attempt_at"]) == ("pending", job["next_attempt_at"])
        assert [r.status for r in hub.requests if r.path == batch] == [429]
        env.cli("flush", "--timeout", "30")
        assert repo.note(sha)
    assert [r.status for r in hub.requests if r.path == batch] == [429, 200]


def test_a_used_up_rate_limit_window_is_waited_out_not_hammered(env: Env, hub: HubStub) -> None:
    hub.create_bucket(BUCKET)
    hub.exhaust_rate_limit("api", resets_in=90)
    repo = _repo_with_session(env)
    with running_daemon(env):
        repo.commit("x")
        job = wait_for(
            lambda: [j for j in env.status()["jobs"] if j["state"] == "pending" and j["attempts"] >= 1],
            what="the job to be deferred",
        )[0]
        status = env.status()
        limited = [r for r in hub.requests if r.status == 429]
    assert "rate limit" in job["last_error"]
    assert job["next_attempt_at"] >= time.time() + 60
    assert status["daemon"]["offline_until"] >= job["next_attempt_at"] - 1  # the whole queue waits
    # one refused probe at start-up (status), one for the job: no in-attempt retries into a 429
    assert len(limited) <= 2


# --- a missing trace, a deleted bucket --------------------------------------------------------


def test_show_of_a_trace_missing_from_the_bucket_says_so_in_one_line(env: Env, hub: HubStub) -> None:
    from huggingface_hub import HfApi

    repo = _repo_with_session(env)
    with running_daemon(env):
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), what="the note")
    env.transcript().unlink()
    shutil.rmtree(env.state)  # a teammate's machine: only the bucket has the trace
    HfApi(endpoint=hub.endpoint, token=TOKEN).batch_bucket_files(BUCKET, delete=[_remote_path(note)])
    shown = env.cli("show", sha, "-C", str(repo.path), check=False)
    assert shown.returncode == 1
    assert shown.stdout == ""
    (line,) = shown.stderr.splitlines()
    assert line.startswith("Error: ") and "not in the bucket" in line and BUCKET in line
    assert "UserWarning" not in shown.stderr and "No such file" not in shown.stderr


def test_a_bucket_deleted_while_the_daemon_runs_is_created_again_private(env: Env, hub: HubStub) -> None:
    from huggingface_hub import HfApi

    repo = _repo_with_session(env, lines=3)
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="the first note")
        HfApi(endpoint=hub.endpoint, token=TOKEN).delete_bucket(BUCKET)
        append_lines(env.transcript(), 2, start=4)
        second = repo.commit("second")
        note = wait_for(lambda: repo.note(second), what="the note after the bucket came back")
        states = env.status("--all")["queue"]
    assert hub.is_private(BUCKET)
    assert hub.read_file(BUCKET, _remote_path(note)) == env.transcript().read_bytes()
    assert states["failed"] == 0
    # The bucket was created again before the second upload was sent: it went once, into it.
    assert hub.count(path_suffix="/batch") == 2


def test_a_recreated_bucket_gets_the_session_again_not_a_link_to_what_was_lost(env: Env, hub: HubStub) -> None:
    """The queue remembers what it uploaded so it never sends the same bytes twice; a bucket
    deleted (and created again) holds none of it, so a commit that saw no new bytes must not be
    noted with a link to an object that no longer exists."""
    from huggingface_hub import HfApi

    repo = _repo_with_session(env, lines=3)
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="the first note")
        HfApi(endpoint=hub.endpoint, token=TOKEN).delete_bucket(BUCKET)
        second = repo.commit("second, same transcript")  # nothing new to send: the bytes were "there"
        note = wait_for(lambda: repo.note(second), what="the note after the bucket came back")
        states = env.status("--all")["queue"]
    assert hub.is_private(BUCKET)
    assert hub.read_file(BUCKET, _remote_path(note)) == env.transcript().read_bytes()
    assert states["failed"] == 0 and states["pending"] == 0


def test_a_removed_local_store_directory_gets_the_session_again(env: Env) -> None:
    repo = _repo_with_session(env, lines=3)  # no token: the default local store
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="the first note")
        shutil.rmtree(env.local_store)
        second = repo.commit("second, same transcript")
        note = wait_for(lambda: repo.note(second), what="the second note")
    url = next(line for line in note.splitlines() if line.startswith("hf-trace: ")).removeprefix("hf-trace: ")
    assert Path(url.removeprefix("file://")).read_bytes() == env.transcript().read_bytes()


# --- the default set-up: nothing pre-set in the environment ----------------------------------

#: What the harness pre-sets for every daemon; a user's machine has none of them.
HUB_PRESETS = (
    "HF_HUB_DISABLE_TELEMETRY",
    "HF_XET_TELEMETRY_ENABLED",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "HF_HUB_DISABLE_UPDATE_CHECK",
    "HF_XET_CLIENT_RETRY_MAX_ATTEMPTS",
    "HF_XET_CLIENT_RETRY_BASE_DELAY",
    "HF_XET_CLIENT_RETRY_MAX_DURATION",
)


def test_the_daemon_log_has_no_progress_bars_in_the_default_setup(env: Env, hub: HubStub) -> None:
    for key in HUB_PRESETS:
        env.vars.pop(key, None)
    hub.create_bucket(BUCKET)
    repo = _repo_with_session(env, lines=50)
    with running_daemon(env) as daemon:
        repo.commit_noted("x")
        # The worker logs "noted" after the queue transaction that follows the note's write
        # (tracekeeperd/worker.py `_complete`): the note can be readable before the line is.
        wait_for(lambda: "noted " in daemon.output(), what="the 'noted' line")  # the upload ran in this daemon
        log = daemon.output()
    assert "\r" not in log and "it/s]" not in log and "%|" not in log


# --- dependencies: public API of huggingface_hub, declared packages only ---------------------

SOURCES = [ROOT / "tracekeeperd", ROOT / "client" / "tracekeeper"]


def _imports() -> list[tuple[Path, str]]:
    """Every absolute module a source file imports, with `from m import n` also giving `m.n`."""
    found: list[tuple[Path, str]] = []
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found += [(path, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.append((path, node.module))
                    found += [(path, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_only_public_modules_of_huggingface_hub_are_imported() -> None:
    private = [
        f"{path.relative_to(ROOT)}: {name}"
        for path, name in _imports()
        if name.split(".")[0] in ("huggingface_hub", "hf_xet") and any(p.startswith("_") for p in name.split("."))
    ]
    assert private == []


def test_every_third_party_import_is_a_declared_dependency() -> None:
    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {canonical(re.split(r"[^A-Za-z0-9._-]", req, maxsplit=1)[0]) for req in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    undeclared = sorted(
        {
            f"{path.relative_to(ROOT)}: {top}"
            for path, name in _imports()
            if (top := name.split(".")[0]) not in sys.stdlib_module_names
            and top not in ("tracekeeper", "tracekeeperd")
            and not any(canonical(dist) in declared for dist in providers.get(top, []))
        }
    )
    assert undeclared == []
