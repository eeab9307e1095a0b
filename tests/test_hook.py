"""The post-commit hook and its installer, exercised through real `git commit`s."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from .harness import Env, Repo, append_lines, make_repo, note_links, running_daemon, session_repo, wait_for
from .hubstub import running_hub


def _commit_output(repo: Repo, message: str) -> subprocess.CompletedProcess[str]:
    (repo.path / "f.txt").write_text(message)
    repo.git("add", "f.txt")
    return subprocess.run(
        ["git", "commit", "-m", message], cwd=repo.path, env=repo.env.vars, capture_output=True, text=True, check=False
    )


def test_hook_is_silent_and_never_fails_the_commit_daemon_up_or_down(env: Env) -> None:
    repo, _ = session_repo(env, 1)
    plain = make_repo(env, "plain")
    baseline = _commit_output(plain, "baseline")
    down = _commit_output(repo, "daemon down")
    assert down.returncode == 0
    assert down.stderr == baseline.stderr == ""
    assert down.stdout.replace("(root-commit) ", "").split("]")[1] == baseline.stdout.replace(
        "(root-commit) ", ""
    ).split("]")[1].replace("baseline", "daemon down")
    with running_daemon(env):
        up = _commit_output(repo, "daemon up")
        assert up.returncode == 0 and up.stderr == ""
        wait_for(lambda: repo.note(repo.git("rev-parse", "HEAD")), what="note")


def test_hook_survives_an_unusable_spool_directory(env: Env) -> None:
    repo = make_repo(env).install()
    blocker = env.root / "blocker"
    blocker.write_text("")
    env.vars["TRACEKEEPER_SPOOL_DIR"] = str(blocker / "spool")  # cannot be created
    result = _commit_output(repo, "still commits")
    assert result.returncode == 0 and result.stderr == ""


def test_install_chains_an_existing_hook_and_uninstall_restores_it(env: Env) -> None:
    repo = make_repo(env)
    hooks = repo.git_dir / "hooks"
    original = "#!/usr/bin/env python3\nimport pathlib\npathlib.Path('ran.txt').write_text('yes')\n"
    (hooks / "post-commit").write_text(original)
    (hooks / "post-commit").chmod(0o755)
    out = env.cli("install", "-C", str(repo.path)).stdout
    assert "chaining the previous hook, kept as post-commit.pre-tracekeeper" in out
    assert env.cli("install", "-C", str(repo.path)).stdout.startswith("unchanged ")
    repo.start_session(2)
    with running_daemon(env):
        repo.commit_noted("x")
    assert (repo.path / "ran.txt").read_text() == "yes"
    assert env.cli("uninstall", "-C", str(repo.path)).stdout.startswith("restored ")
    assert (hooks / "post-commit").read_text() == original
    assert os.access(hooks / "post-commit", os.X_OK)
    assert not (hooks / "post-commit.pre-tracekeeper").exists()
    assert env.cli("uninstall", "-C", str(repo.path)).stdout.startswith("no tracekeeper hook at ")


def test_install_respects_core_hooks_path(env: Env) -> None:
    repo = make_repo(env)
    shared = env.root / "team-hooks"
    repo.git("config", "core.hooksPath", str(shared))
    assert env.cli("install", "-C", str(repo.path)).stdout.startswith(f"installed {shared}/post-commit")
    assert not (repo.git_dir / "hooks" / "post-commit").exists()
    repo.start_session(1)
    with running_daemon(env):
        repo.commit_noted("x")


def test_install_refuses_ambiguous_state_and_non_repositories(env: Env) -> None:
    repo = make_repo(env)
    hooks = repo.git_dir / "hooks"
    for name in ("post-commit", "post-commit.pre-tracekeeper"):
        (hooks / name).write_text("#!/bin/sh\n")
    clash = env.cli("install", "-C", str(repo.path), check=False)
    assert clash.returncode == 1
    assert clash.stderr.startswith("Error: both ") and clash.stderr.count("\n") == 1
    elsewhere = env.root / "not-a-repo"
    elsewhere.mkdir()
    outside = env.cli("install", "-C", str(elsewhere), check=False)
    assert outside.returncode == 1
    assert outside.stderr.startswith("Error: not a git repository") and "Traceback" not in outside.stderr


def test_without_curl_the_spool_watcher_still_picks_commits_up(env: Env) -> None:
    tools = env.root / "bin"
    tools.mkdir()
    for tool in ("git", "sh", "mkdir", "cat", "mv", "env"):
        found = shutil.which(tool)
        assert found
        (tools / tool).symlink_to(found)
    repo, _ = session_repo(env, 1)
    with running_daemon(env):
        sha = repo.git("rev-parse", "HEAD", check=False)
        (repo.path / "g.txt").write_text("x")
        repo.git("add", "g.txt")
        repo.git("commit", "-q", "-m", "no curl", extra_env={"PATH": str(tools)})
        sha = repo.git("rev-parse", "HEAD")
        wait_for(lambda: repo.note(sha), what="note via the spool watcher")


def test_a_rebase_of_fifty_noted_commits_moves_their_links_in_few_uploads(env: Env) -> None:
    """Fifty quick hooks, no new links for re-created commits, and the session uploaded once or twice."""
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write")
        repo, transcript = session_repo(env, 3)
        with running_daemon(env):
            repo.commit("base")
            repo.git("checkout", "-q", "-b", "feature")
            olds = [repo.commit(f"feature {i}", file=f"f{i}.txt") for i in range(50)]
            repo.git("checkout", "-q", "main")
            repo.commit("main moves", file="main.txt")
            for sha in olds:
                wait_for(lambda sha=sha: repo.note(sha), timeout=60, what=f"note on {sha}")
            before = hub.count(path_suffix="/batch")
            append_lines(transcript, 2, start=4)  # the session goes on: a rebase must not claim it
            repo.git("rebase", "-q", "main", "feature")
            news = repo.git("rev-list", "main..feature").split()[::-1]
            assert len(news) == 50 and not set(news) & set(olds)
            for new, old in zip(news, olds, strict=True):
                wait_for(lambda new=new: repo.note(new), timeout=60, what=f"note on {new}")
                assert note_links(repo.note(new)) == note_links(repo.note(old))
        assert hub.count(path_suffix="/batch") - before <= 1


def test_a_cherry_pick_carries_the_originals_links(env: Env) -> None:
    repo, transcript = session_repo(env, 3)
    with running_daemon(env):
        repo.commit("base")
        repo.git("checkout", "-q", "-b", "topic")
        original = repo.commit("agent change", file="agent.txt")
        wait_for(lambda: repo.note(original), what="note on the original")
        repo.git("checkout", "-q", "main")
        append_lines(transcript, 2, start=4)
        repo.git("cherry-pick", "-x", original)
        picked = repo.git("rev-parse", "HEAD")
        wait_for(lambda: repo.note(picked), what="note on the cherry-pick")
    assert note_links(repo.note(picked)) == note_links(repo.note(original))


def test_spool_left_by_a_crashed_hook_is_ignored_until_complete(env: Env) -> None:
    env.spool.mkdir(parents=True)
    partial = env.spool / ("f" * 40 + ".1.commit.tmp")
    partial.write_text("tracekeeper-spool 1\nsha ")
    with running_daemon(env):
        status = env.status()
    spooled = status["daemon"]["spool"]
    # Neither waiting nor set aside, as the base version's whole-dict check said: a partial file
    # is no dead letter, so there is no reason to show either.
    assert (spooled["waiting"], spooled["dead_letter"], spooled["dead_letter_reason"]) == (0, 0, None)
    assert partial.exists()


def test_unreadable_spool_file_is_moved_aside_with_its_reason(env: Env) -> None:
    env.spool.mkdir(parents=True)
    junk = env.spool / "junk.1.commit"
    junk.write_text("not a spool file at all")
    os.utime(junk, (time.time() - 3600,) * 2)  # not one a hook could still be writing
    young = env.spool / "young.2.commit"
    young.write_text("tracekeeper-spool 1\nsha ")  # a hook mid-write
    with running_daemon(env):
        wait_for(lambda: env.status()["daemon"]["spool"]["dead_letter"] == 1, what="quarantine")
    reason = (env.spool / "bad" / "junk.1.commit.reason").read_text()
    assert reason == "missing the '--' separator line\n"
    assert young.exists()  # left for its close event
    assert Path(env.spool / "bad" / "junk.1.commit").read_text() == "not a spool file at all"


def _counting_path(env: Env) -> tuple[str, Path]:
    """A PATH on which every command name resolves to a shim that logs the name, then runs the
    real command: counts the processes a shell script starts, whatever it starts."""
    shims = env.root / "shims"
    shims.mkdir()
    log = env.root / "execs"
    real_path = env.vars["PATH"]
    counter = env.root / "count.sh"
    counter.write_text(
        f'#!/bin/sh\nname=${{0##*/}}\necho "$name" >> \'{log}\'\nPATH=\'{real_path}\' exec "$name" "$@"\n'
    )
    counter.chmod(0o755)
    for directory in real_path.split(":"):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if not (shims / name).exists() and os.access(os.path.join(directory, name), os.X_OK):
                (shims / name).symlink_to(counter)
    return str(shims), log


def test_hook_with_the_daemon_down_starts_only_git(env: Env) -> None:
    """Daemon down, session active: one `git rev-parse`, nothing else (the active file is copied
    into the spool by the shell itself, byte for byte, even without a final newline)."""
    repo = make_repo(env).install()
    transcript = env.transcript()
    append_lines(transcript, 1)
    active = repo.activate(transcript)
    sha = repo.commit("first")
    path, log = _counting_path(env)
    for spool_file in env.spool.glob("*.commit"):
        spool_file.unlink()
    hook = repo.git_dir / "hooks" / "post-commit"
    proc = subprocess.run([str(hook)], cwd=repo.path, env={**env.vars, "PATH": path}, capture_output=True, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    assert log.read_text().split() == ["git"]
    [spool_file] = env.spool.glob(f"{sha}.*.commit")
    head, _, copied = spool_file.read_bytes().partition(b"\n--\n")
    assert b"\nactive present" in head
    assert copied == active.read_bytes() and not copied.endswith(b"\n")


def test_hook_copies_a_large_active_file_exactly(env: Env) -> None:
    """Past the lines the shell copies itself, `cat` takes the rest: still byte for byte."""
    repo = make_repo(env).install()
    transcript = env.transcript()
    append_lines(transcript, 1)
    active = repo.activate(transcript)
    lines = [f'  "k{i}": "{"x" * (i % 50)} \\\\ \\t {i}",' for i in range(500)]
    active.write_text("{\n" + "\n".join(lines) + '\n  "session_id": "s", "transcript_path": "/t"\n}\n')
    sha = repo.commit("big")
    [spool_file] = env.spool.glob(f"{sha}.*.commit")
    assert spool_file.read_bytes().partition(b"\n--\n")[2] == active.read_bytes()
