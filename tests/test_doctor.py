"""`tracekeeper doctor`: a healthy setup passes, and each broken thing is named with its fix.

End-to-end cases run the command in a subprocess with the test's HOME and the real daemon;
checks that read machine state (inotify limits, the clock) are called directly with a
`Context` pointing at temp files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tracekeeper import doctor as doctor_mod
from tracekeeper.doctor import Context, Status
from tracekeeperd.paths import resolve

from .harness import Env, Repo, make_repo, running_daemon


def run_doctor(env: Env, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from tracekeeper import cli; sys.exit(cli.main(['doctor', *sys.argv[1:]]))"
    return subprocess.run(
        [sys.executable, "-c", code, "-C", str(repo), *args],
        env=env.vars,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def checks(env: Env, repo: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = run_doctor(env, repo, "--json")
    doc = json.loads(proc.stdout)
    assert doc["ok"] == (proc.returncode == 0)
    return proc.returncode, {c["name"]: c for c in doc["checks"]}


def install(env: Env, repo: Repo, *args: str) -> None:
    env.cli("install", "-C", str(repo.path), *args)


@pytest.fixture
def repo(env: Env) -> Repo:
    r = make_repo(env)
    r.commit("base")
    return r


def test_a_healthy_setup_passes_with_one_line_per_check(env: Env, repo: Repo) -> None:
    install(env, repo)
    with running_daemon(env):
        proc = run_doctor(env, repo.path)
        code, found = checks(env, repo.path)
    assert proc.returncode == 0 and code == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[-1] in ("all good",) or lines[-1].startswith("0 problem(s)")
    assert len(lines) == len(found) + 1
    assert all(line[0] in "✓!✗" for line in lines[:-1])
    assert [c["status"] for c in found.values()].count("fail") == 0
    for name in ("daemon", "store", "repo-hooks", "hooks-path", "refspecs", "active-file", "spool"):
        assert found[name]["status"] == "ok", found[name]
    assert found["store"]["message"].startswith("store file://")
    assert found["hf-token"]["status"] == "ok"  # a local store needs none
    assert any(line.startswith("✓ daemon ") for line in lines)


def test_daemon_down_fails_with_how_to_start_it(env: Env, repo: Repo) -> None:
    install(env, repo)
    proc = run_doctor(env, repo.path)
    assert proc.returncode == 1
    line = next(ln for ln in proc.stdout.splitlines() if " daemon " in ln)
    assert line.startswith("✗ daemon ") and "-> fix: start it: `tracekeeperd &`" in line
    _, found = checks(env, repo.path)
    assert found["store"]["status"] == "warn" and "not running" in found["store"]["message"]


def test_missing_hook_fails_and_says_tracekeeper_install(env: Env, repo: Repo) -> None:
    with running_daemon(env):
        code, found = checks(env, repo.path)
    assert code == 1
    assert found["repo-hooks"]["status"] == "fail"
    assert "post-commit hook not installed" in found["repo-hooks"]["message"]
    assert found["repo-hooks"]["fix"] == "`tracekeeper install`"


def test_previous_hook_not_executable_is_a_warning_with_chmod(env: Env, repo: Repo) -> None:
    previous = repo.git_dir / "hooks" / "post-commit"
    previous.write_text("#!/bin/sh\necho hi\n")
    previous.chmod(0o644)
    install(env, repo)
    with running_daemon(env):
        code, found = checks(env, repo.path)
    assert code == 0
    check = found["repo-hooks"]
    assert check["status"] == "warn" and "is not executable" in check["message"]
    assert check["fix"] == f"`chmod +x {previous}.pre-tracekeeper` if it should run"


def test_hook_moved_by_lefthook_or_hooks_path_elsewhere_fails(env: Env, repo: Repo) -> None:
    install(env, repo)
    hooks = repo.git_dir / "hooks"
    os.replace(hooks / "post-commit", hooks / "post-commit.old")  # what `lefthook install` does
    (hooks / "post-commit").write_text('#!/bin/sh\ncall_lefthook run "post-commit" "$@" # lefthook\n')
    (hooks / "post-commit").chmod(0o755)
    _, found = checks(env, repo.path)
    assert found["repo-hooks"]["status"] == "fail" and "lefthook renamed" in found["repo-hooks"]["message"]
    install(env, repo)  # repairs
    _, found = checks(env, repo.path)
    assert found["repo-hooks"]["status"] == "ok"
    (hooks / "post-commit").unlink()
    install(env, repo)
    elsewhere = repo.path / "team-hooks"
    elsewhere.mkdir()
    repo.git("config", "core.hooksPath", "team-hooks")
    _, found = checks(env, repo.path)
    assert found["hooks-path"]["status"] == "fail" and "which git does not run" in found["hooks-path"]["message"]
    repo.git("config", "core.hooksPath", "missing-dir")
    _, found = checks(env, repo.path)
    assert found["hooks-path"]["status"] == "fail" and "git runs no hooks at all" in found["hooks-path"]["message"]


def test_forced_notes_refspec_fails_with_the_command_that_removes_it(env: Env, repo: Repo) -> None:
    install(env, repo)
    repo.git("remote", "add", "origin", str(env.root / "remote.git"))
    repo.git("config", "--add", "remote.origin.fetch", "+refs/notes/*:refs/notes/*")
    with running_daemon(env):
        code, found = checks(env, repo.path)
    assert code == 1
    check = found["refspecs"]
    assert check["status"] == "fail" and "+refs/notes/*:refs/notes/*" in check["message"]
    fix = check["fix"]
    assert fix.startswith("`git config --fixed-value --unset remote.origin.fetch '+refs/notes/*:refs/notes/*'`")
    repo.git("config", "--fixed-value", "--unset", "remote.origin.fetch", "+refs/notes/*:refs/notes/*")
    repo.git("config", "--add", "remote.origin.fetch", "+refs/notes/*:refs/notes/remotes/origin/*")
    _, found = checks(env, repo.path)
    assert found["refspecs"]["status"] == "ok"  # forcing into a tracking ref is the safe pattern


def test_stale_active_file_is_a_warning(env: Env, repo: Repo) -> None:
    install(env, repo)
    active = repo.activate(env.root / "gone.jsonl")
    with running_daemon(env):
        code, found = checks(env, repo.path)
    assert code == 0
    check = found["active-file"]
    assert check["status"] == "warn" and str(env.root / "gone.jsonl") in check["message"]
    assert check["fix"].startswith(f"delete {active} if that session is over")
    active.write_text("{not json")
    _, found = checks(env, repo.path)
    assert found["active-file"]["status"] == "fail"


def test_active_file_not_touched_for_long_is_stale(env: Env, repo: Repo) -> None:
    transcript = env.transcript()
    transcript.write_text("{}\n")
    active = repo.git_dir / "hf-traces-active.json"
    seen = time.time() - 3 * 86400
    active.write_text(json.dumps({"sessions": [{"transcript_path": str(transcript), "seen_at": seen}]}))
    ctx = Context(repo.path, paths=resolve(env.vars), env=env.vars)
    check = doctor_mod.check_active_file(ctx)
    assert check is not None and check.status is Status.WARN and "72 h" in check.message
    ctx.now = seen + 60
    check = doctor_mod.check_active_file(ctx)
    assert check is not None and check.status is Status.OK


def test_spool_backlog_is_a_warning_and_set_aside_files_a_failure(env: Env, repo: Repo) -> None:
    env.spool.mkdir(parents=True)
    waiting = env.spool / f"{'a' * 40}.1.commit"
    waiting.write_text("tracekeeper-spool 1\n")
    ctx = Context(repo.path, paths=resolve(env.vars), env=env.vars)
    check = doctor_mod.check_spool(ctx)
    assert (
        check.status is Status.WARN
        and "1 commit(s) waiting" in check.message
        and "start tracekeeperd" in (check.fix or "")
    )
    waiting.unlink()
    (env.spool / "bad").mkdir()
    (env.spool / "bad" / "x.1.commit").write_text("junk")
    (env.spool / "bad" / "y.1.rewrite").write_text("junk")
    (env.spool / "bad" / "y.1.rewrite.reason").write_text("not a tracekeeper rewrite file\n")
    os.utime(env.spool / "bad" / "x.1.commit", (time.time() - 600,) * 2)
    check = doctor_mod.check_spool(Context(repo.path, paths=resolve(env.vars), env=env.vars))
    assert check.status is Status.FAIL and "2 commit file(s) set aside" in check.message
    assert check.message.endswith("the newest because: not a tracekeeper rewrite file")
    proc = run_doctor(env, repo.path)
    assert "✗ spool " in proc.stdout


def test_spool_lag_while_the_daemon_runs_is_a_warning(env: Env, repo: Repo) -> None:
    env.spool.mkdir(parents=True)
    waiting = env.spool / f"{'b' * 40}.1.commit"
    waiting.write_text("tracekeeper-spool 1\n")
    os.utime(waiting, (time.time() - 600,) * 2)
    ctx = Context(repo.path, paths=resolve(env.vars), env=env.vars)
    ctx._asked, ctx._status = True, {"daemon": {"running": True}}  # a daemon that is not ingesting
    check = doctor_mod.check_spool(ctx)
    assert check.status is Status.WARN and "although the daemon runs" in check.message


def test_inotify_limits(tmp_path: Path, env: Env, repo: Repo) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux only")
    (tmp_path / "max_user_watches").write_text("8192\n")
    (tmp_path / "max_user_instances").write_text("128\n")
    ctx = Context(repo.path, paths=resolve(env.vars), env=env.vars, inotify=tmp_path)
    check = doctor_mod.check_inotify(ctx)
    assert check is not None and check.status is Status.WARN
    assert "fs.inotify.max_user_watches=8192" in check.message and "sysctl" in (check.fix or "")
    (tmp_path / "max_user_watches").write_text("524288\n")
    check = doctor_mod.check_inotify(ctx)
    assert check is not None and check.status is Status.OK


def test_guard_agents_and_codex_trust_are_reported(env: Env, repo: Repo) -> None:
    install(env, repo, "--guard", "--strict")
    (env.home / ".codex").mkdir()
    env.cli("agents", "install", "--agent", "codex")
    _, found = checks(env, repo.path)
    assert found["guard"]["status"] == "ok" and "(blocks)" in found["guard"]["message"]
    assert found["codex-trust"]["status"] == "warn" and "start `codex`" in found["codex-trust"]["fix"]
    assert found["agents"]["status"] == "ok" and "codex" in found["agents"]["message"]


def test_codex_trust_for_an_older_definition_is_not_reported_as_trusted(env: Env, repo: Repo) -> None:
    """Codex runs a hook only while the stored trusted_hash is that of its current definition
    (openai/codex codex-rs/hooks/src/engine/discovery.rs): a hash for another one is 'modified'."""
    codex = env.home / ".codex"
    codex.mkdir()
    env.cli("agents", "install", "--agent", "codex")
    hooks = json.loads((codex / "hooks.json").read_text())["hooks"]
    lines = []
    for event, snake in (
        ("SessionStart", "session_start"),
        ("UserPromptSubmit", "user_prompt_submit"),
        ("Stop", "stop"),
    ):
        assert len(hooks[event]) == 1
        lines.append(f'[hooks.state."{codex / "hooks.json"}:{snake}:0:0"]\ntrusted_hash = "sha256:{"0" * 64}"\n')
    (codex / "config.toml").write_text("\n".join(lines))
    _, found = checks(env, repo.path)
    check = found["codex-trust"]
    assert check["status"] == "warn", check
    assert "changed since it was trusted" in check["message"] and "start `codex`" in check["fix"]


def test_outside_a_repository_the_repo_checks_are_skipped(env: Env) -> None:
    elsewhere = env.root / "plain-dir"
    elsewhere.mkdir()
    _, found = checks(env, elsewhere)
    assert found["repo-hooks"]["status"] == "warn" and "not in a git repository" in found["repo-hooks"]["message"]
    assert "refspecs" not in found and "active-file" not in found


def test_hf_store_without_a_token_fails(env: Env, repo: Repo) -> None:
    env.vars["TRACEKEEPER_STORE"] = "hf://buckets/alice/agent-traces"
    _, found = checks(env, repo.path)
    assert found["hf-token"]["status"] == "fail" and "hf auth login" in found["hf-token"]["fix"]
    env.vars["HF_TOKEN"] = "hf_not_a_real_token"
    _, found = checks(env, repo.path)
    assert found["hf-token"]["status"] == "ok"


def test_doctor_spells_out_control_characters_of_a_transcript_path(env: Env, repo: Repo) -> None:
    """The active file is an agent's payload: the transcript path it names reaches the terminal
    in doctor's line, control characters spelled out (--json escapes them)."""
    repo.activate(env.root / "gone\x1b]0;pwned\x07\u202e.jsonl")
    proc = run_doctor(env, repo.path)
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\u202e" not in proc.stdout, proc.stdout
    assert "gone\\x1b]0;pwned\\x07\\u202e.jsonl" in proc.stdout, proc.stdout
